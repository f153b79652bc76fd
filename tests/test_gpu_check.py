"""benchmarks/gpu_check.py --smoke: the GPU check's code paths on the CPU (trainer with the AMP
setting, the loss against cross-entropy, extraction on two devices, the training rate, the
data loader's workers). Structure, finiteness and internal consistency; no timings."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@pytest.fixture(scope="module")
def report():
    r = subprocess.run([sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


@pytest.mark.slow
def test_smoke_runs_every_section_on_the_cpu(report):
    assert report["benchmark"] == "gpu_check" and report["mode"] == "smoke" and report["device"].startswith("cpu")
    assert set(report["section_seconds"]) == {"amp_vs_float32", "loss_vs_cross_entropy", "embeddings", "train_rate", "dataloader_workers"}
    assert report["checks"] == {"finite": True, "curves_agree": True, "embeddings_close": True}

    c = report["amp_vs_float32"]
    assert c["amp_active"] is False  # the trainer ignores amp on a CPU; on CUDA it is True
    assert c["steps"] == 6 and [w["steps"] for w in c["windows"]] == [[1, 2], [3, 4], [5, 6]]
    assert all(_finite(w[k]) for w in c["windows"] for k in ("amp", "float32", "rel_diff"))
    assert c["max_window_rel_diff"] == max(w["rel_diff"] for w in c["windows"])
    assert c["all_finite"] is True and _finite(c["first_step_rel_diff"])

    loss = report["loss_vs_cross_entropy"]
    assert loss["device"] == "cpu" and set(loss["classes"]) == {"100", "1000"}
    for row in loss["classes"].values():
        assert set(row) == {"cross_entropy", "jeffreys", "jeffreys_authors_dense"}
        assert row["cross_entropy"]["time_vs_ce"] == 1.0 and row["cross_entropy"]["memory_vs_ce"] == 1.0
        for cell in row.values():
            assert cell["median_ms"] > 0 and isinstance(cell["peak_bytes"], int) and cell["peak_bytes"] > 0
            assert cell["time_vs_ce"] == round(cell["median_ms"] / row["cross_entropy"]["median_ms"], 3)

    emb = report["embeddings_cuda_vs_cpu"]
    assert emb["devices"] == ["cpu", "cpu"] and emb["utterances"] == 4 and emb["all_finite"]
    assert emb["max_abs_diff"] == 0.0 and emb["min_cosine"] == pytest.approx(1.0)  # same device: the same numbers

    rate = report["train_rate"]
    assert rate["amp_active"] is False and rate["steps_timed"] == 3 and _finite(rate["samples_per_s"]) and rate["samples_per_s"] > 0

    feed = report["dataloader_workers"]
    assert set(feed["cpu_ms_per_sample"]) == {"wav", "flac", "m4a"} and feed["at_samples_per_s"] == rate["samples_per_s"]
    for fmt, ms in feed["cpu_ms_per_sample"].items():
        assert ms > 0 and feed["workers"][fmt] == max(1, math.ceil(feed["at_samples_per_s"] * ms / 1e3))


def test_without_cuda_the_gpu_mode_says_it_is_skipped():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the full check would run")
    r = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "no CUDA device" in json.loads(r.stdout)["skipped"]
