"""recipes/realvoices/run.sh end to end from its stage 3, on tiny data.

Stages 1-2 need the network and Debian packages; here the test writes stage 2's outputs
itself, in miniature: the embedded corpus (DIR/data/synth, a few synthetic speakers), the
debvoices replica of tests/test_corpora_debvoices.py prepared into DIR/data/debvoices, and
MBROLA voices from the stand-in synthesiser of tests/test_mbrola.py in DIR/data/mbrola. Then
`STAGE=3 run.sh DIR` combines, trains conf/train.yaml, stores the mean, calibrates on the
MBROLA dev voices and evaluates both sets against MFCC statistics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from jeffreys.corpora import mbrola, quiet
from jeffreys.corpora.debvoices import prepare_debvoices
from jeffreys.corpora.synth import build_synth_corpus
from test_corpora_debvoices import replica
from test_mbrola import FakeEspeak, fake_root, needs_cc

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "recipes" / "realvoices" / "run.sh"
# 20 MBROLA training voices (the stand-in makes them for nothing): 303 training utterances in all,
# 4 steps of batch_size 64 an epoch; with fewer the 4 epochs are too few steps (the first at
# lr 0, warmup) for the model to tell the two dev voices apart, and calibration refuses.
TRAIN_VOICES = [v.name for v in mbrola.manifest() if v.split == "train"][:20]
DEV_VOICES, EVAL_VOICES = ["en1", "fr4"], ["us3", "fr2", "de5"]


def stage2(tmp: Path, d: Path, monkeypatch) -> None:
    """What run.sh's stage 2 leaves in DIR/data, tiny: 48 synthetic, 15 recorded and 240
    diphone training utterances."""
    with quiet():
        build_synth_corpus(d / "synth", train_speakers=8, utts_per_speaker=6, eval_speakers=2, eval_utts_per_speaker=2,
                           dev_speakers=2, min_dur=1.0, max_dur=1.5, jobs=2)  # fmt: skip
        replica(tmp / "deb")
        prepare_debvoices(tmp / "deb", d / "debvoices", jobs=1)
        monkeypatch.setattr(mbrola, "synthesiser", lambda job: FakeEspeak(job.voice.name))
        root = fake_root(tmp / "mb", voices=TRAIN_VOICES + DEV_VOICES + EVAL_VOICES)
        mbrola.prepare_mbrola(root, d / "mbrola", voices=TRAIN_VOICES + DEV_VOICES + EVAL_VOICES, utts_per_voice=12,
                              eval_utts_per_voice=3, min_dur=1.0, max_dur=1.5, jobs=2)  # fmt: skip
    for sub in ("synth/train", "debvoices/train", "debvoices/eval/trials", "mbrola/train", "mbrola/dev/trials",
                "mbrola/eval/trials"):  # fmt: skip
        assert (d / sub).exists(), sub


@pytest.mark.slow
@needs_cc
def test_run_sh_from_stage_3_on_tiny_data(tmp_path, monkeypatch):
    from jeffreys.api import FewVoicesWarning, SyntheticModelWarning, load

    out = tmp_path / "recipe"
    stage2(tmp_path, out / "data", monkeypatch)
    env = {**os.environ, "STAGE": "3", "PYTHON": sys.executable}
    jeffreys = Path(sys.executable).with_name("jeffreys")
    if jeffreys.is_file():
        env["JEFFREYS"] = str(jeffreys)
    start = time.monotonic()
    r = subprocess.run(["bash", str(RUN), str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"run.sh failed after {time.monotonic() - start:.0f} s:\n{r.stdout}\n{r.stderr}"

    model = out / "model.pt"
    assert model.is_file()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = load(model)
    kinds = [w.category for w in caught]
    assert FewVoicesWarning in kinds and SyntheticModelWarning not in kinds, [str(w.message) for w in caught]
    td = rec.meta["train_data"]
    assert td["corpus"] == "combined" and td["synthetic"] is False
    assert [p["kind"] for p in td["parts"]] == ["synthetic", "recorded", "diphone"]
    cal = rec.meta["calibration"]
    assert cal["a"] > 0 and {"b", "prior"} <= set(cal)
    assert "mbrola/dev" in rec.meta["threshold_source"]
    assert rec.mean is not None  # stage 5's --store-mean

    res = json.loads((out / "results.json").read_text())
    assert set(res) == {"debvoices", "mbrola"}
    for name in res:
        systems = res[name]["systems"]
        assert {"recipe", "mfcc_cosine"} <= set(systems)
        assert "trials" in systems["recipe"] and "trials" in systems["mfcc_cosine"]
        assert "vs_mfcc_cosine" in systems["recipe"]["trials"]
        assert 0 <= systems["recipe"]["trials"]["eer_mean"] <= 1
    lines = r.stdout.splitlines()
    assert any(x.startswith("recorded voices") for x in lines), r.stdout
    assert any(x.startswith("held-out MBROLA voices") for x in lines), r.stdout
    assert "realvoices" in lines[-1] and "done" in lines[-1]
