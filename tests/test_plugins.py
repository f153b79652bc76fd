"""Plug-ins from outside the package: the examples of docs/contributing.md, written to files
of a temporary project, train through `jeffreys train` in a subprocess, and the bundle they
make records their kinds and reloads where their modules may be imported."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from jeffreys import registry
from jeffreys.errors import InputError
from jeffreys.models import load_bundle
from train_helpers import make_datadir, tiny_overrides

DOC = Path(__file__).resolve().parents[1] / "docs" / "contributing.md"


def write_examples(root: Path) -> list[Path]:
    """Every ```python block of the doc whose first line is '# file: PATH', written there."""
    written = []
    for block in re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S):
        first = block.splitlines()[0]
        if first.startswith("# file: "):
            path = root / first[len("# file: "):].strip()
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.parent / "__init__.py").touch()
            path.write_text(block)
            written.append(path)
    return written


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    names = {p.name for p in write_examples(root)}
    assert names == {"losses.py", "heads.py", "models.py", "corpus_flat.py"}  # the doc still shows all four
    return root


def _env(project: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "JEFFREYS_PLUGINS"}
    return dict(env, PYTHONPATH=os.pathsep.join([str(project), os.environ.get("PYTHONPATH", "")]), **extra)


def _train(project: Path, tmp_path: Path, config: dict) -> subprocess.CompletedProcess:
    datadir = make_datadir(tmp_path / "data")
    cfg = tmp_path / "plugin.yaml"
    cfg.write_text(yaml.safe_dump(config))
    sets = [a for o in tiny_overrides(datadir, "data.augment.prob=0.0", steps=3) if not o.startswith("model.")
            for a in ("--set", o)]
    cmd = [sys.executable, "-m", "jeffreys", "train", str(cfg), "--exp-dir", str(tmp_path / "exp"), *sets]
    return subprocess.run(cmd, env=_env(project), capture_output=True, text=True, timeout=300)


PLUGIN_CONFIG = {
    "model": {"kind": "mylab.models:TinyTDNN", "num_mel_bins": 24, "embed_dim": 16, "channels": 8},
    "head": {"kind": "mylab.heads:NormFaceHead", "scale": 20.0},
    "loss": {"kind": "mylab.losses:FocalLoss", "gamma": 1.5},
}


def test_plugins_train_and_reload(project, tmp_path, monkeypatch):
    r = _train(project, tmp_path, PLUGIN_CONFIG)
    assert r.returncode == 0, r.stderr[-2000:]
    bundle = tmp_path / "exp" / "model.pt"
    raw = torch.load(bundle, weights_only=True)
    assert raw["model"] == {"kind": "mylab.models:TinyTDNN", "num_mel_bins": 24, "embed_dim": 16, "channels": 8}
    assert raw["head"] == {"kind": "mylab.heads:NormFaceHead", "scale": 20.0, "embed_dim": 16, "num_classes": 4}
    assert raw["meta"]["train_config"]["loss"] == {"kind": "mylab.losses:FocalLoss", "gamma": 1.5}

    # This process has not imported the modules: the model file may not import them by itself.
    for m in ("mylab", "mylab.models", "mylab.heads"):
        monkeypatch.delitem(sys.modules, m, raising=False)
    monkeypatch.syspath_prepend(str(project))
    with pytest.raises(InputError, match="model kind 'mylab.models:TinyTDNN' is a plug-in"):
        load_bundle(bundle)
    assert "mylab.models" not in sys.modules
    monkeypatch.setattr(registry, "_allowed", set())
    registry.allow("mylab.models", "mylab.heads")
    b = load_bundle(bundle)
    assert type(b.model.embedder).__name__ == "TinyTDNN" and type(b.head).__name__ == "NormFaceHead"
    emb = b.model(torch.randn(2, 8000) * 0.1)
    assert emb.shape == (2, 16) and torch.isfinite(emb).all()

    # The CLI stages downstream work on it, allowed through the environment.
    out = tmp_path / "emb"
    r = subprocess.run([sys.executable, "-m", "jeffreys", "extract", str(bundle), str(tmp_path / "data" / "train"), str(out),
                        "--format", "npy"], env=_env(project, JEFFREYS_PLUGINS="mylab.models,mylab.heads"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert np.load(out.with_suffix(".npy")).shape == (16, 16)


def test_plugin_config_errors_name_file_and_key(project, tmp_path):
    bad = {**PLUGIN_CONFIG, "loss": {"kind": "mylab.losses:FocalLoss", "gama": 2.0}}
    r = _train(project, tmp_path, bad)
    assert r.returncode == 2
    assert re.fullmatch(r"jeffreys train: error: \S*plugin.yaml: key 'loss.gama': unknown key \(known: gamma\)\n", r.stderr)
    bad = {**PLUGIN_CONFIG, "head": {"kind": "mylab.heads:NoSuchHead"}}
    r = _train(project, tmp_path, bad)
    assert r.returncode == 2 and "head kind 'mylab.heads:NoSuchHead': mylab.heads has no NoSuchHead" in r.stderr
    bad = {**PLUGIN_CONFIG, "loss": {"kind": "mylab.losses:FocalLoss", "gamma": -1.0}}
    r = _train(project, tmp_path, bad)
    assert r.returncode == 2 and "loss 'mylab.losses:FocalLoss': gamma must be >= 0, got -1.0" in r.stderr
    assert r.stderr.count("\n") == 1


def test_corpus_preparer_example(project, tmp_path, monkeypatch):
    import soundfile as sf

    from jeffreys import corpora
    from jeffreys.data.datadir import read_datadir

    src = tmp_path / "flat"
    for spk in ("alice", "bob"):
        for k in range(2):
            (src / spk).mkdir(parents=True, exist_ok=True)
            sf.write(src / spk / f"u{k}.wav", np.zeros(1600, dtype=np.float32), 16000)
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.setitem(corpora.PREPARERS, "flat", "mylab.corpus_flat")
    assert corpora.cli_prepare(["flat", str(src), str(tmp_path / "dst")]) == 0
    dd = read_datadir(tmp_path / "dst")
    assert dd.utt2spk == {"alice-u0": "alice", "alice-u1": "alice", "bob-u0": "bob", "bob-u1": "bob"}
    with pytest.raises(InputError, match="no SPEAKER/\\*.wav files"):
        corpora.cli_prepare(["flat", str(tmp_path / "empty"), str(tmp_path / "dst2")])
