"""ONNX export: onnxruntime's embeddings equal PyTorch's, for inputs of any batch and length.

Tolerance: ``jeffreys.export.TOLERANCE`` = 1e-4, as ||onnx - torch|| / ||torch|| per
embedding (both float32; measured ~2e-6 on the tiny model here). The shapes checked differ
from the traced one (batch 2, 2 s), including batch 1 and a single 25 ms frame.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from jeffreys.cli import main
from jeffreys.export import TOLERANCE, export_onnx
from jeffreys.models import save_bundle
from test_extract import tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model(2)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, model):
    return save_bundle(tmp_path_factory.mktemp("export") / "model.pt", model, None, [], meta={"threshold": 0.3, "mean": [0.5] * 8})


def rel_err(got, want):
    return float(np.max(np.linalg.norm(got - want, axis=1) / np.linalg.norm(want, axis=1)))


def test_waveform_export_matches_pytorch(bundle, model, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", str(bundle), "--onnx", str(out)]) == 0
    assert "max relative difference" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["waves"]
    g = torch.Generator().manual_seed(5)
    for batch, samples in [(1, 400), (1, 16000), (3, 12345), (4, 80000)]:
        x = 0.2 * torch.randn(batch, samples, generator=g)
        got = session.run(None, {"waves": x.numpy()})[0]
        with torch.no_grad():
            want = model(x).numpy()
        assert got.shape == (batch, 8)
        assert rel_err(got, want) < TOLERANCE
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["jeffreys.input"] == "waveform" and props["jeffreys.sample_rate"] == "16000"
    assert json.loads(props["jeffreys.meta"]) == {"threshold": 0.3, "mean": [0.5] * 8}


def test_features_export_matches_pytorch(model, tmp_path):
    out = tmp_path / "feats.onnx"
    summary = export_onnx(model, out, input="features")
    assert summary["max_rel_diff"] < TOLERANCE
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = model.features(0.2 * torch.randn(2, 20000, generator=torch.Generator().manual_seed(6)))
    with torch.no_grad():
        want = model.embed_features(x).numpy()
    assert rel_err(session.run(None, {"feats": x.numpy()})[0], want) < TOLERANCE


def test_export_errors(tmp_path, capsys):
    (tmp_path / "bad.pt").write_bytes(b"junk")
    assert main(["export", str(tmp_path / "bad.pt"), "--onnx", str(tmp_path / "o.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.pt" in err and "\n" not in err
    assert not (tmp_path / "o.onnx").exists()


def test_vad_waveform_export_takes_one_utterance_a_run(model, tmp_path):
    """A model with Kaldi's front-end (sliding mean, energy VAD): the graph selects the voiced
    frames itself, so its batch is 1; each row equals the model's, silences of any length."""
    import dataclasses

    from jeffreys.models.resnet import SpeakerModel

    kaldi = SpeakerModel(dataclasses.replace(model.config, feature_norm="sliding", cmn_window=40, vad="energy"))
    kaldi.load_state_dict(model.state_dict())
    kaldi.eval()
    out = tmp_path / "vad.onnx"
    summary = export_onnx(kaldi, out)
    assert summary["max_rel_diff"] < TOLERANCE and summary["input_shape"] == "[1, samples]"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == 1
    g = torch.Generator().manual_seed(7)
    x = 0.2 * torch.randn(4, 12345, generator=g)
    for i, gap in enumerate([0, 3000, 6000, 12345]):  # the last: all silent, so every frame kept
        x[i, 2000 - (gap == 12345) * 2000 : 2000 + gap] *= 1e-4
    _, keep = kaldi.voiced_features(x)
    assert len(set(keep.sum(1).tolist())) == 3 and keep[0].all() and keep[3].all()
    with torch.no_grad():
        want = kaldi(x).numpy()
    got = np.concatenate([session.run(None, {"waves": x[i : i + 1].numpy()})[0] for i in range(4)])
    assert rel_err(got, want) < TOLERANCE
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert {k: props[f"jeffreys.{k}"] for k in ("feature_norm", "cmn_window", "vad", "vad_energy_threshold",
                                                 "vad_proportion_threshold")} == \
        {"feature_norm": "sliding", "cmn_window": "40", "vad": "energy", "vad_energy_threshold": "5.5",
         "vad_proportion_threshold": "0.12"}
