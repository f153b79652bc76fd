"""A run SIGKILLed mid-epoch and resumed ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from jeffreys.train import load_train_config, train

from train_helpers import make_datadir, tiny_overrides

# Augmentation on (it draws from the item generators), margin ramp and lr warm-up on (they
# depend on the step), two workers: everything a resume has to restore.
SETTINGS = [
    "loss.kind=jeffreys", "schedule.warmup_epochs=1", "schedule.margin_ramp_epochs=2",
    "data.augment.prob=0.8", "data.augment.simulated_rirs=2", "data.num_workers=2",
    "checkpoint_every=3", "epochs=3",
]


def _cmd(conf: Path, exp: Path, datadir: Path, cache: Path, resume: bool = False) -> list[str]:
    """``jeffreys train`` in a subprocess, with checkpoints every 3 steps and at epoch ends."""
    sets = tiny_overrides(datadir, *SETTINGS, f"data.augment.cache_dir={cache}")
    cmd = [sys.executable, "-m", "jeffreys", "train", str(conf), "--exp-dir", str(exp)]
    cmd += [a for s in sets for a in ("--set", s)]
    return cmd + (["--resume"] if resume else [])


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env.pop("JEFFREYS_TRAIN_FAULT", None)
    env.update(extra)
    return env


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path):
    datadir = make_datadir(tmp_path / "data")  # 16 chunks, batch 4: 4 steps per epoch, 12 steps
    conf = tmp_path / "c.yaml"
    conf.write_text("")
    cache = tmp_path / "cache"

    full = tmp_path / "full"  # uninterrupted, in this process (same single thread)
    sets = tiny_overrides(datadir, *SETTINGS, f"data.augment.cache_dir={cache}")
    train(load_train_config(conf, sets), full)

    # Stalls after step 7 (epoch 2, step 3 of 4); the last checkpoint is step 6, so step 7
    # is done again after the resume.
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(conf, killed, datadir, cache), env=_env(JEFFREYS_TRAIN_FAULT="stall@7"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = killed / "train.log"
    deadline = time.monotonic() + 300
    while not (log.is_file() and "stalling after step 7" in log.read_text()):
        assert proc.poll() is None, "training exited before the stall"
        assert time.monotonic() < deadline, "training did not reach step 7"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert [p.name for p in sorted((killed / "checkpoints").glob("*.pt"))] == ["step-00000004.pt", "step-00000006.pt"]
    assert not (killed / "model.pt").exists()

    out = subprocess.run(_cmd(conf, killed, datadir, cache, resume=True), env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "resumed from" in log.read_text() and "step-00000006.pt at step 6" in log.read_text()

    a = torch.load(full / "model.pt", weights_only=True)
    b = torch.load(killed / "model.pt", weights_only=True)
    for part in ("state_dict", "head_state_dict"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    # The runs did train past the checkpoint they share: step 9's weights differ from the end's.
    ckpt = torch.load(killed / "checkpoints" / "step-00000009.pt", weights_only=True)
    assert ckpt["step"] == 9 and ckpt["epoch"] == 2 and ckpt["step_in_epoch"] == 1
    assert any(not torch.equal(ckpt["model"][k], b["state_dict"][k]) for k in ckpt["model"])
