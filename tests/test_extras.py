"""The light install: the core works without any extra (checked in a subprocess where their
modules cannot be imported), a feature whose extra is missing is one line naming the
`pip install` that fixes it, and the package metadata agrees with jeffreys.extras."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

from jeffreys.cli import main
from jeffreys.errors import JeffreysError
from jeffreys.extras import EXTRAS, MissingExtra, require
from jeffreys.models import save_bundle
from test_extract import make_wave, tiny_model
from train_helpers import make_datadir, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = sorted(m for modules in EXTRAS.values() for m in modules)

# None in sys.modules is what Python's import system reports as "not installed": `import m`
# raises ModuleNotFoundError and importlib.util.find_spec(m) returns None (torch probes some).
BLOCKER = f"""
import sys
BLOCKED = {BLOCKED!r}
for _m in BLOCKED:
    sys.modules[_m] = None
"""


def run_without_extras(code: str, tmp_path: Path) -> dict:
    script = tmp_path / "script.py"
    script.write_text(BLOCKER + textwrap.dedent(code))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={"PYTHONPATH": str(ROOT / "tests"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["stderr"] = r.stderr
    return out


def test_the_loss_imports_without_any_extra(tmp_path):
    out = run_without_extras("""
        import json, sys, torch
        from jeffreys.losses import JeffreysLoss
        loss = JeffreysLoss(alpha=0.1, beta=0.025)(torch.randn(4, 10), torch.tensor([1, 2, 3, 4]))
        print(json.dumps({"finite": bool(torch.isfinite(loss))}))
    """, tmp_path)
    assert out["finite"] is True


def test_core_train_embed_score_without_extras(tmp_path):
    data = make_datadir(tmp_path / "data")
    sets = tiny_overrides(data, steps=2)
    bundle = save_bundle(tmp_path / "m.pt", tiny_model(1), None, [], meta={"threshold": 0.0})
    out = run_without_extras(f"""
        import json, sys
        import numpy as np
        import jeffreys
        from jeffreys.cli import main
        from jeffreys.extras import MissingExtra
        open("c.yaml", "w").write("{{}}")
        rc = main(["train", "c.yaml", "--exp-dir", "exp", *[a for o in {sets!r} for a in ("--set", o)]])
        m = jeffreys.load({str(bundle)!r})
        w = np.sin(np.arange(16000) / 7.0).astype(np.float32)
        v = m.verify(w, 0.5 * w, sample_rate=16000)
        errors = {{}}
        for name, call in [("onnx", lambda: jeffreys.load("x.onnx")),
                           ("export", lambda: __import__("jeffreys.export", fromlist=["x"]).export_onnx({str(bundle)!r}, "x.onnx")),
                           ("rooms", lambda: __import__("jeffreys.data.augment", fromlist=["x"]).simulate_rirs(1, 16000, 0)),
                           ("plots", lambda: __import__("jeffreys.report", fromlist=["x"]).plot_det({{"a": (np.array([0.9, 0.1]), np.array([1, 0]))}}, "d.png"))]:
            try:
                call()
            except MissingExtra as e:
                errors[name] = str(e)
        rc_synth = main(["prepare", "synth", "synth_out"])
        print(json.dumps({{"train": rc, "same": v.same, "errors": errors, "synth": rc_synth}}))
    """, tmp_path)
    assert out["train"] == 0, out["stderr"][-2000:]
    assert out["same"] is True and out["synth"] == 2
    assert ("jeffreys prepare: error: the embedded corpus needs espeakng_loader (the [synth] extra), which is not "
            "installed: pip install 'jeffreys[synth]'\n") in out["stderr"]
    log = (tmp_path / "exp" / "train.log").read_text()
    assert "TensorBoard is not installed" in log and "pip install 'jeffreys[tensorboard]'" in log
    assert not (tmp_path / "exp" / "tb").exists() and (tmp_path / "exp" / "model.pt").is_file()
    want = {"onnx": ("loading an ONNX model needs onnx", "onnx"), "export": ("jeffreys export needs onnx", "onnx"),
            "rooms": ("simulated rooms", "synth"), "plots": ("figures needs matplotlib", "plots")}
    assert set(out["errors"]) == set(want)
    for name, (what, extra) in want.items():
        msg = out["errors"][name]
        assert what in msg and msg.endswith(f"pip install 'jeffreys[{extra}]'") and "\n" not in msg, msg


def test_missing_extra_messages_in_process(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an absent package looks like to import
    with pytest.raises(MissingExtra) as e:
        require("onnxruntime", "loading an ONNX model")
    assert isinstance(e.value, ImportError) and isinstance(e.value, JeffreysError)
    assert str(e.value) == ("loading an ONNX model needs onnxruntime (the [onnx] extra), which is not installed: "
                            "pip install 'jeffreys[onnx]'")
    monkeypatch.setitem(sys.modules, "onnx", None)
    bundle = save_bundle(tmp_path / "m.pt", tiny_model(1), None, [])
    assert main(["export", str(bundle), "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err == "jeffreys export: error: jeffreys export needs onnx (the [onnx] extra), which is not installed: " \
                  "pip install 'jeffreys[onnx]'\n"
    assert not (tmp_path / "m.onnx").exists()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    scores = tmp_path / "s.txt"
    scores.write_text("a b 0.9 target\nc d 0.1 nontarget\n")
    assert main(["det", str(scores), "--out", str(tmp_path / "d.png")]) == 2
    assert "pip install 'jeffreys[plots]'" in capsys.readouterr().err


def test_the_cli_turns_an_extra_import_error_into_one_line(monkeypatch, capsys):
    import jeffreys.verify

    def boom(argv):
        raise ModuleNotFoundError("No module named 'pyroomacoustics'", name="pyroomacoustics")

    monkeypatch.setattr(jeffreys.verify, "cli_verify", boom)
    assert main(["verify"]) == 2
    assert capsys.readouterr().err == ("jeffreys verify: error: jeffreys verify needs pyroomacoustics (the [synth] extra), "
                                       "which is not installed: pip install 'jeffreys[synth]'\n")

    def other(argv):
        raise ModuleNotFoundError("No module named 'nosuchthing'", name="nosuchthing")

    monkeypatch.setattr(jeffreys.verify, "cli_verify", other)
    with pytest.raises(ModuleNotFoundError):  # not an extra: a bug or a broken install, shown as such
        main(["verify"])


def test_package_metadata_matches_the_extras():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    opt = meta["optional-dependencies"]
    dist = {"espeakng_loader": "espeakng-loader"}
    name = lambda req: re.split(r"[<>=\[ ;]", req, maxsplit=1)[0].lower()  # noqa: E731
    core = {name(r) for r in meta["dependencies"]}
    for extra, modules in EXTRAS.items():
        assert {name(r) for r in opt[extra]} == {dist.get(m, m) for m in modules}, extra
        assert not core & {dist.get(m, m) for m in modules}
    assert opt["all"] == [f"jeffreys[{','.join(EXTRAS)}]"]
    torch_req = next(r for r in meta["dependencies"] if name(r) == "torch")
    assert torch_req == "torch>=2.9,<2.15"  # the range tested at both ends (docs/install.md)
    pkg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["jeffreys"]
    assert "py.typed" in pkg and (ROOT / "src" / "jeffreys" / "py.typed").is_file()
    assert "'.[all,test]'" in (ROOT / "Makefile").read_text()


def test_the_api_embeds_in_memory_audio_as_files(tmp_path):
    """(A core path with no file at all: arrays in, decision out.)"""
    import jeffreys

    m = jeffreys.load(save_bundle(tmp_path / "m.pt", tiny_model(2), None, []))
    w = make_wave(16000, 1)
    assert m.embed(w, sample_rate=16000).shape == (8,) and np.isfinite(m.score(w, w[::-1].copy(), sample_rate=16000))
