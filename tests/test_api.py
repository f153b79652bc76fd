"""The library face, `jeffreys.load`: bundle and ONNX export against independent references.

References: each recording embedded by the model called on it alone (no batching code),
centred and normalised in float64 here; enrolment written out as the mean of the
normalised centred embeddings (Kaldi's rule, as `score --models`). Tolerances: 1e-5
relative for the bundle (float rounding of batching), 1e-4 for ONNX (its export check's).
"""

from __future__ import annotations

import dataclasses

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import jeffreys
from jeffreys.errors import InputError
from jeffreys.models import save_bundle, update_bundle_meta
from jeffreys.models.resnet import SpeakerModel
from test_extract import SR, alone, make_datadir, make_wave, tiny_model

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
LENGTHS = [16000, 20000, 9000, 31000, 16050]


@pytest.fixture(scope="module")
def model():
    return tiny_model(4)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    out = []
    for i, n in enumerate(LENGTHS):
        p = root / f"f{i}.wav"
        sf.write(p, make_wave(n, i % 3), SR, subtype="FLOAT")
        out.append(p)
    return out


MEAN = [0.05 * k for k in range(8)]


@pytest.fixture
def bundle(tmp_path, model):
    return save_bundle(tmp_path / "model.pt", model, None, [], meta={"mean": MEAN})


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory, model):
    pytest.importorskip("onnxruntime")
    from jeffreys.export import export_onnx

    root = tmp_path_factory.mktemp("api_onnx")
    b = save_bundle(root / "model.pt", model, None, [], meta={"mean": MEAN, "threshold": 0.2})
    export_onnx(b, root / "model.onnx")
    return root / "model.onnx"


def reference(model, paths, mean=MEAN) -> np.ndarray:
    """Centred, unit-length float64 embeddings of each file, the model run on it alone."""
    rows = []
    for p in paths:
        e = alone(model, sf.read(p, dtype="float32")[0]) - np.asarray(mean, dtype=np.float64)
        rows.append(e / math.sqrt(float(e @ e)))
    return np.array(rows)


def test_embed_one_and_many_equal_the_model_alone(bundle, model, files):
    m = jeffreys.load(bundle)
    assert (m.backend, m.sample_rate, m.embed_dim) == ("bundle", SR, 8)
    want = reference(model, files)
    one = m.embed(files[0])
    assert one.shape == (8,) and one.dtype == np.float32
    assert np.linalg.norm(one - want[0]) < 1e-5
    many = m.embed([str(f) for f in files])
    assert many.shape == (len(files), 8)
    assert np.max(np.linalg.norm(many - want, axis=1)) < 1e-5
    assert np.allclose(np.linalg.norm(many, axis=1), 1.0, atol=1e-6)
    assert m.embed([]).shape == (0, 8)


def test_embed_is_extract_batched(bundle, model, tmp_path):
    """A list is embedded in the batches `jeffreys extract` forms: same rows as extract()."""
    from jeffreys.data.datadir import read_datadir
    from jeffreys.extract import extract

    dd = read_datadir(make_datadir(tmp_path))
    ids, raw = extract(bundle, dd, progress=False, num_workers=0)
    m = jeffreys.load(bundle)
    got = m.embed([dd.wav[u] for u in ids])
    want = raw.astype(np.float64) - MEAN
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert np.max(np.abs(got - want)) < 1e-6


def test_arrays_need_their_rate_and_are_resampled(bundle, model, files):
    m = jeffreys.load(bundle)
    wave = sf.read(files[1], dtype="float32")[0]
    assert np.linalg.norm(m.embed(wave, sample_rate=SR) - reference(model, files[1:2])[0]) < 1e-5
    import soxr

    w8 = soxr.resample(wave, SR, 8000)
    back = soxr.resample(w8, 8000, SR, quality="HQ").astype(np.float32)  # what load() does with it
    e8 = m.embed(w8.astype(np.float64), sample_rate=8000)
    want = alone(model, back) - np.asarray(MEAN)
    assert np.linalg.norm(e8 - want / np.linalg.norm(want)) < 1e-5
    mixed = m.embed([files[0], wave], sample_rate=SR)
    assert np.linalg.norm(mixed[1] - m.embed(files[1])) < 1e-5
    for bad, match in [(wave, "needs sample_rate="), (np.stack([wave, wave]), "1-D"), (wave.astype(np.int16), "float samples"),
                       ([1, 2, 3], "file path or a 1-D array")]:
        with pytest.raises(InputError, match=match):
            m.embed(bad)
    with pytest.raises(InputError, match="NaN"):
        m.embed(np.full(8000, np.nan, np.float32), sample_rate=SR)
    with pytest.raises(InputError, match="sample_rate must be a positive integer"):
        m.embed(wave, sample_rate=16000.5)


def test_score_is_the_centred_cosine(bundle, model, files):
    m = jeffreys.load(bundle)
    a, b = reference(model, files[:2])
    assert m.score(files[0], files[1]) == pytest.approx(float(a @ b), abs=1e-5)


def test_verify_applies_score_at_least_threshold(bundle, model, files):
    a, b = reference(model, files[:2])
    s = jeffreys.load(bundle).score(files[0], files[1])
    with pytest.raises(InputError, match="no decision threshold.*jeffreys calibrate"):
        jeffreys.load(bundle).verify(files[0], files[1])
    update_bundle_meta(bundle, threshold=s)  # a tie is accepted: score >= threshold
    v = jeffreys.load(bundle).verify(files[0], files[1])
    assert v.same is True and v.threshold == s and v.llr is None and v.score == pytest.approx(float(a @ b), abs=1e-5)
    update_bundle_meta(bundle, threshold=math.nextafter(s, math.inf))
    assert jeffreys.load(bundle).verify(files[0], files[1]).same is False
    # calibrated: the LLR is reported; a given threshold applies to it, a prior gives the Bayes threshold
    update_bundle_meta(bundle, calibration={"a": 4.0, "b": -4.0 * s + 1.0})
    m = jeffreys.load(bundle)
    v = m.verify(files[0], files[1], threshold=0.99)
    assert v.llr == pytest.approx(1.0, abs=1e-9) and v.same is True
    assert m.verify(files[0], files[1], p_target=0.2).same is False  # log(4) = 1.39 > 1
    assert m.verify(files[0], files[1], p_target=0.3).same is True  # log(7/3) = 0.85 < 1


def test_enroll_and_identify_open_set(bundle, model, files):
    m = jeffreys.load(bundle)
    ref = reference(model, files)
    m.enroll("x y", [files[0], files[3]])  # any name, spaces included
    m.enroll("z", files[1])
    assert m.enrolled == ["x y", "z"]
    model_x = ref[0] + ref[3]
    model_x /= np.linalg.norm(model_x)
    want = {"x y": float(model_x @ ref[4]), "z": float(ref[1] @ ref[4])}
    lo, hi = sorted(want.values())
    best = max(want, key=want.get)
    got = m.identify(files[4], top_k=3, threshold=-1.0)
    assert [n for n, _ in got] == sorted(want, key=want.get, reverse=True)
    for n, s in got:
        assert s == pytest.approx(want[n], abs=1e-5)
    assert [n for n, _ in m.identify(files[4], top_k=1, threshold=-1.0)] == [best]
    assert [n for n, _ in m.identify(files[4], top_k=3, threshold=(lo + hi) / 2)] == [best]
    assert m.identify(files[4], top_k=3, threshold=hi + 1e-3) == []  # open set: nobody
    m.enroll("z", [files[2]])  # re-enrolment replaces
    assert m.identify(files[4], top_k=3, threshold=-1.0)[-1][1] != pytest.approx(want["z"], abs=1e-6)
    with pytest.raises(InputError, match="top_k"):
        m.identify(files[4], top_k=0, threshold=0.0)
    with pytest.raises(InputError, match="no decision threshold"):
        m.identify(files[4])
    with pytest.raises(InputError, match="nobody is enrolled"):
        jeffreys.load(bundle).identify(files[4], threshold=0.0)
    with pytest.raises(InputError, match="no recordings"):
        m.enroll("w", [])


def test_onnx_export_embeds_scores_and_decides_as_the_bundle(onnx_file, model, files):
    o = jeffreys.load(onnx_file)
    b = jeffreys.load(onnx_file.with_suffix(".pt"))
    assert (o.backend, o.sample_rate, o.embed_dim, o.threshold) == ("onnx", SR, 8, 0.2)
    assert np.max(np.linalg.norm(o.embed(files) - reference(model, files), axis=1)) < 1e-4
    for i in range(len(files)):
        for j in range(i + 1, len(files)):
            assert o.score(files[i], files[j]) == pytest.approx(b.score(files[i], files[j]), abs=1e-4)
            assert o.verify(files[i], files[j]).same == b.verify(files[i], files[j]).same
    o.enroll("a", files[:2])
    assert o.identify(files[0], threshold=-1.0)[0][0] == "a"
    # `jeffreys verify` takes the export too (its exit status is the decision)
    from jeffreys.cli import main

    rc = main(["verify", str(onnx_file), str(files[0]), str(files[1]), "--json"])
    assert rc == (0 if b.verify(files[0], files[1]).same else 1)


@pytest.mark.parametrize("norm", ["mean", "level"])
def test_onnx_features_input(tmp_path, model, files, norm):
    """A features export computes the front-end outside the graph: it must normalise as the
    model did (its feature_norm travels in the metadata)."""
    pytest.importorskip("onnxruntime")
    from jeffreys.export import export_onnx

    if norm != "mean":
        level = SpeakerModel(dataclasses.replace(model.config, feature_norm=norm))
        level.load_state_dict(model.state_dict())
        model = level.eval()
    b = save_bundle(tmp_path / "model.pt", model, None, [], meta={"mean": MEAN})
    export_onnx(b, tmp_path / "feats.onnx", input="features")
    o = jeffreys.load(tmp_path / "feats.onnx")
    assert o._backend.fbank.level_norm == (norm == "level")
    assert np.max(np.linalg.norm(o.embed(files) - reference(model, files), axis=1)) < 1e-4
    bad = _rewrite_onnx(tmp_path / "feats.onnx", tmp_path / "bad.onnx", _set_prop("jeffreys.feature_norm", "cmvn"))
    with pytest.raises(InputError, match="'jeffreys.feature_norm' must be one of mean, level, sliding, none, got 'cmvn'"):
        jeffreys.load(bad)


def _rewrite_onnx(src: Path, dst: Path, edit) -> Path:
    import onnx

    proto = onnx.load(str(src))
    edit(proto)
    dst.write_bytes(proto.SerializeToString())  # as bytes: onnx.save would write the external data too
    return dst


def _set_prop(key: str, value: str | None):
    def edit(proto):
        props = {p.key: p.value for p in proto.metadata_props}
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
        del proto.metadata_props[:]
        for k, v in props.items():
            e = proto.metadata_props.add()
            e.key, e.value = k, v

    return edit


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("jeffreys.meta", '{"threshold": NaN}', "not valid JSON"),
        ("jeffreys.meta", "[1, 2]", "must be a JSON object"),
        ("jeffreys.meta", '{"threshold": "high"}', r"meta\['threshold'\] must be a finite number"),
        ("jeffreys.meta", '{"mean": [1, 2]}', r"meta\['mean'\] must be 8 finite numbers"),
        ("jeffreys.meta", '{"mean": [0, 0, 0, -2e6, 0, 0, 0, 1e300]}', r"meta\['mean'\]\[3\] = -2e\+06, beyond \+-1e\+06 \(2 such"),
        ("jeffreys.meta", '{"mean": ["0", 0, 0, 0, 0, 0, 0, 0]}', r"meta\['mean'\] must be 8 finite numbers"),
        ("jeffreys.meta", '{"calibration": {"a": -1.0, "b": 0.0}}', "must be positive"),
        ("jeffreys.sample_rate", "-16000", "'jeffreys.sample_rate' must be a positive integer"),
        ("jeffreys.sample_rate", "\u00b2", "'jeffreys.sample_rate' must be a positive integer"),  # isdigit, not int
        ("jeffreys.embed_dim", "9" * 5000, "'jeffreys.embed_dim' must be a positive integer"),
        ("jeffreys.input", "spectrogram", "'jeffreys.input' must be one of"),
        ("jeffreys.vad", "energy\n" + "x" * 5000, "'jeffreys.vad' must be one of none, energy, got 'energy\\\\nxx"),
        ("jeffreys.feature_norm", "cmvn", "'jeffreys.feature_norm' must be one of mean, level, sliding, none"),
        ("jeffreys.cmn_window", "0", "'jeffreys.cmn_window' must be a positive number of frames"),
        ("jeffreys.cmn_window", "9" * 5000, "'jeffreys.cmn_window' must be a positive number of frames"),
        ("jeffreys.cmn_window", "\u00b2", "'jeffreys.cmn_window' must be a positive number of frames"),
        ("jeffreys.vad_frames_context", "-1", "'jeffreys.vad_frames_context' must be an integer >= 0"),
        ("jeffreys.vad_proportion_threshold", "nan", r"'jeffreys.vad_proportion_threshold' must be in \(0, 1\)"),
        ("jeffreys.vad_energy_threshold", "inf", "'jeffreys.vad_energy_threshold' must be a finite number"),
        ("jeffreys.vad_energy_mean_scale", "1" * 5000, "'jeffreys.vad_energy_mean_scale' must be a number >= 0"),
        ("jeffreys.input", None, "not an export of `jeffreys export`"),
    ],
)
def test_onnx_metadata_is_checked_like_a_bundle_meta(onnx_file, tmp_path, key, value, match):
    bad = _rewrite_onnx(onnx_file, tmp_path / "bad.onnx", _set_prop(key, value))
    with pytest.raises(InputError, match=match) as e:
        jeffreys.load(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value) and len(str(e.value)) < 500 + len(str(bad))


def test_onnx_files_that_are_not_models_or_point_elsewhere(onnx_file, tmp_path):
    from onnx import TensorProto

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07 not a protobuf \xff\xff")
    with pytest.raises(InputError, match="junk.onnx"):
        jeffreys.load(junk)
    with pytest.raises(InputError, match="no such ONNX model file"):
        jeffreys.load(tmp_path / "none.onnx")

    def external(proto):
        t = proto.graph.initializer[0]
        t.data_location = TensorProto.EXTERNAL
        e = t.external_data.add()
        e.key, e.value = "location", "../../etc/passwd"

    ext = _rewrite_onnx(onnx_file, tmp_path / "ext.onnx", external)
    with pytest.raises(InputError, match="external data files; refused"):
        jeffreys.load(ext)

    # the same pointer hidden in a subgraph (an If branch) and in a local function
    from onnx import helper

    def pointer(name):
        t = helper.make_tensor(name, TensorProto.FLOAT, [1], [0.0])
        t.ClearField("float_data")
        t.data_location = TensorProto.EXTERNAL
        e = t.external_data.add()
        e.key, e.value = "location", "secret.bin"
        return t

    def in_subgraph(proto):
        branch = helper.make_graph([], "b", [], [helper.make_tensor_value_info("s", TensorProto.FLOAT, [1])],
                                   initializer=[pointer("s")])
        cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
        proto.graph.initializer.append(cond)
        proto.graph.node.append(helper.make_node("If", ["cond"], ["unused"], then_branch=branch, else_branch=branch))

    def in_function(proto):
        const = helper.make_node("Constant", [], ["y"], value=pointer("c"))
        proto.functions.append(helper.make_function("local", "f", [], ["y"], [const], [helper.make_opsetid("", 17)]))

    # metadata that does not describe the graph: refused at load, not at the first file
    liar = _rewrite_onnx(onnx_file, tmp_path / "liar.onnx", _set_prop("jeffreys.input", "features"))
    with pytest.raises(InputError, match="metadata says one features input of rank 3") as e:
        jeffreys.load(liar)
    assert "\n" not in str(e.value)

    for edit in (in_subgraph, in_function):
        hidden = _rewrite_onnx(onnx_file, tmp_path / f"{edit.__name__}.onnx", edit)
        with pytest.raises(InputError, match="external data files; refused"):
            jeffreys.load(hidden)


def test_onnx_model_past_the_model_limit_is_refused_before_it_is_read(onnx_file, tmp_path, monkeypatch):
    """The model limit of a bundle's file (JEFFREYS_MAX_MODEL_BYTES) holds for an ONNX model,
    which is read whole: files of random sizes past random limits are refused from their size,
    in one line naming the file, and nothing is parsed; the limit itself passes."""
    import onnx

    size = onnx_file.stat().st_size
    monkeypatch.setenv("JEFFREYS_MAX_MODEL_BYTES", str(size))
    assert jeffreys.load(onnx_file).backend == "onnx"
    monkeypatch.setenv("JEFFREYS_MAX_MODEL_BYTES", str(size - 1))
    with pytest.raises(InputError, match=rf"model\.onnx: the ONNX model is [\d.e+-]+ MiB, more than the limit"):
        jeffreys.load(onnx_file)
    parsed = []
    monkeypatch.setattr(onnx, "load_model_from_string", lambda data: parsed.append(len(data)))
    rng = np.random.default_rng(7)
    for trial in range(8):
        limit = int(rng.integers(1 << 10, 1 << 20))
        path = tmp_path / f"{trial}.onnx"
        with open(path, "wb") as f:  # sparse: holes cost no disk
            f.write(onnx_file.read_bytes()[:limit])
            f.truncate(limit + int(rng.choice([1, rng.integers(2, 1 << 20), 64 << 20])))
        monkeypatch.setenv("JEFFREYS_MAX_MODEL_BYTES", str(limit))
        with pytest.raises(InputError) as e:
            jeffreys.load(path)
        assert re.fullmatch(rf"{re.escape(str(path))}: the ONNX model is [\d.e+-]+ MiB, more than the limit of [\d.e+-]+ MiB "
                            r"\(raise it with --max-model-bytes or JEFFREYS_MAX_MODEL_BYTES\)", str(e.value)), str(e.value)
    assert not parsed


def test_devices_and_bad_bundles(bundle, onnx_file, tmp_path):
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            jeffreys.load(bundle, device="cuda")
    with pytest.raises(InputError, match="not a device"):
        jeffreys.load(bundle, device="tpu0")
    with pytest.raises(InputError, match="no provider"):
        jeffreys.load(onnx_file, device="mps")
    update_bundle_meta(bundle, mean=[1.0, 2.0])
    with pytest.raises(InputError, match=r"meta\['mean'\] must be 8 finite numbers"):
        jeffreys.load(bundle)
    (tmp_path / "x.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="x.pt: not a jeffreys model bundle"):
        jeffreys.load(tmp_path / "x.pt")


def test_silence_is_not_compared(bundle, files, tmp_path):
    from jeffreys.api import NoSpeech

    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(16000, np.float32), SR)
    update_bundle_meta(bundle, threshold=0.0)
    with pytest.raises(NoSpeech, match="no speech in .*quiet.wav \\(digital silence"):
        jeffreys.load(bundle).verify(files[0], quiet)


# --------------------------------------------------------------------------- the quickstart
def quickstart(doc: Path = DOC) -> str:
    """The python block after the '<!-- quickstart -->' marker of a page, verbatim."""
    text = doc.read_text(encoding="utf-8")
    m = re.search(r"<!-- quickstart -->\s*```python\n(.*?)```", text, flags=re.S)
    assert m, f"{doc.name} lost its marked quickstart block"
    return m.group(1)


def test_the_readme_shows_the_same_quickstart():
    assert quickstart(DOC.parents[1] / "README.md") == quickstart()


def test_the_quickstart_runs_as_written(tmp_path, monkeypatch, capsys):
    """The five lines of docs/api.md (the README's quickstart), verbatim, on a model built
    here and calibrated on labelled recordings by `jeffreys calibrate`."""
    from jeffreys.calibrate import calibrate
    from train_helpers import make_datadir as voices

    code = quickstart()
    assert len(code.strip().splitlines()) == 5
    data = voices(tmp_path / "data", speakers=4, utts=4)
    bundle = save_bundle(tmp_path / "model.pt", tiny_model(7), None, [])
    calibrate(bundle, data, n_boot=20)
    wavs = sorted((tmp_path / "data" / "wav").glob("*.wav"))
    (tmp_path / "a.wav").write_bytes(wavs[0].read_bytes())
    (tmp_path / "b.wav").write_bytes(wavs[1].read_bytes())
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOC), "exec"), {"__name__": "quickstart"})
    lines = capsys.readouterr().out.splitlines()
    m = jeffreys.load(bundle)
    assert lines[0] == "(8,)"
    assert float(lines[1]) == pytest.approx(m.score("a.wav", "b.wav"), abs=1e-6)
    assert lines[2] == str(m.verify("a.wav", "b.wav").same)
    assert json.loads(json.dumps(m.meta["calibration"]))["a"] > 0


def test_a_model_trained_on_the_embedded_corpus_says_so(tmp_path):
    """Its meta records what it was trained on; the API warns, `jeffreys verify` in one line."""
    import subprocess
    import sys
    import warnings

    from jeffreys.api import SyntheticModelWarning
    from jeffreys.data.datadir import describe, read_datadir
    from train_helpers import make_datadir as voices

    data = voices(tmp_path / "corpus", speakers=2, utts=2)
    assert describe(read_datadir(data))["synthetic"] is False  # no info.json: not claimed synthetic
    (tmp_path / "corpus" / "info.json").write_text(json.dumps({"corpus": "jeffreys synth"}))
    d = describe(read_datadir(data))
    assert d["synthetic"] is True and d["speakers"] == 2 and d["utterances"] == 4
    bundle = save_bundle(tmp_path / "model.pt", tiny_model(7), None, [], meta={"train_data": d, "threshold": 0.5})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jeffreys.load(bundle)
    assert [w.category for w in caught] == [SyntheticModelWarning] and "synthetic speech" in str(caught[0].message)
    wav = sorted((tmp_path / "corpus" / "wav").glob("*.wav"))[0]
    r = subprocess.run([sys.executable, "-m", "jeffreys", "verify", str(bundle), str(wav), str(wav)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("jeffreys verify: warning: ") and "trained only on synthetic speech" in r.stderr
    real = save_bundle(tmp_path / "real.pt", tiny_model(7), None, [], meta={"train_data": {**d, "synthetic": False}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jeffreys.load(real)
    assert not caught


def test_a_model_that_heard_a_few_real_voices_says_so(tmp_path):
    """A combined training set (synthetic voices and a few recorded ones) warns that the model
    heard a few real voices, not that it is synthetic; a synthetic-only one warns as before; a
    meta without a kind (VoxCeleb, older versions) says nothing."""
    import warnings

    from jeffreys.api import FewVoicesWarning, SyntheticModelWarning, few_voices_note
    from jeffreys.data.datadir import describe, read_datadir
    from train_helpers import make_datadir as voices

    data = voices(tmp_path / "corpus", speakers=2, utts=2)
    parts = [{"data": "synth/train", "corpus": "jeffreys synth", "kind": "synthetic", "speakers": 200, "utterances": 4000},
             {"data": "deb/train", "corpus": "debvoices", "kind": "recorded", "speakers": 7, "utterances": 551},
             {"data": "mb/train", "corpus": "mbrola", "kind": "diphone", "speakers": 25, "utterances": 2500}]
    (tmp_path / "corpus" / "train" / "info.json").write_text(json.dumps({"corpus": "combined", "parts": parts}))
    combined = describe(read_datadir(data))
    assert combined["synthetic"] is False and combined["kind"] == "mixed"

    def caught_at_load(train_data, name):
        bundle = save_bundle(tmp_path / name, tiny_model(7), None, [], meta={"train_data": train_data})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            jeffreys.load(bundle)
        return [(w.category, str(w.message)) for w in caught]

    (w,) = caught_at_load(combined, "combined.pt")
    assert w[0] is FewVoicesWarning and not issubclass(w[0], SyntheticModelWarning)
    assert w[1] == (f"{tmp_path / 'combined.pt'}: trained on 4000 synthetic utterances of 200 voices (jeffreys synth); "
                    "551 recorded utterances of 7 speakers (debvoices); 2500 diphone utterances of 25 recorded voices "
                    "(mbrola): a few real voices, not a corpus of thousands of recorded speakers such as VoxCeleb; "
                    "expect real-voice error rates like those in docs/real-voices.md")  # fmt: skip
    synthetic = {**combined, "parts": [parts[0], parts[0]], "kind": "synthetic", "synthetic": True}
    assert [c for c, _ in caught_at_load(synthetic, "synthetic.pt")] == [SyntheticModelWarning]
    old = {"data": str(data), "speakers": 2, "utterances": 4, "corpus": None, "synthetic": False}
    assert describe(read_datadir(voices(tmp_path / "vox", speakers=2, utts=2))) == {**old, "data": str(tmp_path / "vox" / "train")}
    assert caught_at_load(old, "old.pt") == []
    # the rule: some recorded or diphone voices, fewer than 1000 speakers that are not synthetic
    vox = {"data": "vox", "corpus": None, "kind": None, "speakers": 5994, "utterances": 1092009}
    assert few_voices_note({"corpus": "combined", "parts": [vox, parts[1]]}) is None
    assert few_voices_note({"corpus": "combined", "parts": [{**vox, "speakers": 900}, parts[1]]}) is not None
    assert few_voices_note({"corpus": "debvoices", "kind": "recorded", "speakers": 7, "utterances": 551}).startswith(
        "trained on 551 recorded utterances of 7 speakers (debvoices): a few real voices")
    assert few_voices_note({"corpus": "my lab", "kind": "recorded", "speakers": 1200, "utterances": 9000}) is None
    assert few_voices_note({"corpus": "combined", "parts": "not a list"}) is None


def test_a_device_name_is_taken_as_checked():
    from jeffreys.devices import resolve_device

    assert resolve_device(" cpu ").type == "cpu"  # the checked (stripped) name, not torch's traceback
    with pytest.raises(InputError, match="not a device"):
        resolve_device("gpu0")


def _vad_files(root: Path) -> list[Path]:
    """Recordings with near-silent stretches of different lengths; 0 and 1 share a length
    (one batch, rows of different numbers of voiced frames), 3 is a tenth of a second."""
    out = []
    for i, (n, gap) in enumerate([(16000, 0.1), (16000, 0.3), (24000, 0.2), (1600, 0.0)]):
        w = make_wave(n, i)
        w[n // 4 : n // 4 + int(gap * n)] *= 1e-4
        out.append(root / f"v{i}.wav")
        sf.write(out[-1], w, SR, subtype="FLOAT")
    return out


def test_onnx_exports_of_a_vad_model_embed_as_the_bundle(tmp_path, model):
    """The Kaldi front-end (sliding mean, energy VAD) through both kinds of export: the
    waveform graph holds the VAD (one utterance a run), a features export gets the kept
    frames from jeffreys.load; both as the model run on each file alone."""
    pytest.importorskip("onnxruntime")
    import torch

    from jeffreys.export import export_onnx

    kaldi = SpeakerModel(dataclasses.replace(model.config, feature_norm="sliding", cmn_window=50, vad="energy"))
    kaldi.load_state_dict(model.state_dict())
    kaldi.eval()
    files = _vad_files(tmp_path)
    _, keep = kaldi.voiced_features(torch.from_numpy(np.stack([sf.read(f, dtype="float32")[0] for f in files[:2]])))
    assert keep[0].sum() != keep[1].sum() and not keep.all()  # frames are dropped, differently
    want = reference(kaldi, files)
    b = save_bundle(tmp_path / "model.pt", kaldi, None, [], meta={"mean": MEAN})
    assert np.max(np.linalg.norm(jeffreys.load(b).embed(files) - want, axis=1)) < 1e-5
    for input in ("waveform", "features"):
        export_onnx(b, tmp_path / f"{input}.onnx", input=input)
        o = jeffreys.load(tmp_path / f"{input}.onnx")
        assert o._backend.one_row == (input == "waveform")
        assert np.max(np.linalg.norm(o.embed(files) - want, axis=1)) < 1e-4, input
    # an export from before the front-end keys reads as the front-end it had: mean, no VAD
    keys = ["jeffreys.feature_norm", "jeffreys.cmn_window", "jeffreys.vad", "jeffreys.vad_energy_threshold",
            "jeffreys.vad_energy_mean_scale", "jeffreys.vad_frames_context", "jeffreys.vad_proportion_threshold"]

    def strip(proto):
        for k in keys:
            _set_prop(k, None)(proto)

    old = jeffreys.load(_rewrite_onnx(tmp_path / "features.onnx", tmp_path / "old.onnx", strip))
    assert old._backend.fbank.norm == "mean" and old._backend.vad is None
    assert np.max(np.linalg.norm(old.embed(files) - reference(model, files), axis=1)) < 1e-4
