"""The training stage: one run per (system, seed), planned, scheduled and stamped.

A run whose stamp matches its config is not redone; an interrupted run of the same config
resumes from its checkpoints; anything else in its directory is a stale run of another
config and goes. Runs execute in this process (one at a time, progress bar shown), as
``jeffreys train`` subprocesses several at a time (``train_jobs``: on a small CPU model two
single-threaded runs train faster than one on two threads), or one at a time under a
launcher (``train_launcher``, e.g. torchrun on the GPUs of a node).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import interrupts
from ..config import load_config, save_config, to_dict
from ..errors import InputError
from .config import ExperimentConfig, SystemSpec, train_config_of
from .stages import Stamps, digest


def run_dir(out: Path, system: str, seed: int) -> Path:
    """Where the runs of one system and seed live: train/, emb/, scores/, metrics/, probe/."""
    return out / "systems" / system / f"seed-{seed}"


@dataclass
class TrainJob:
    """A run that still has to be trained: its config, directory, stamp key, resume flag."""

    name: str  # SYSTEM/seed-S
    config: Any
    exp: Path
    key: str
    resume: bool


def plan_training(spec: SystemSpec, seed: int, cfg: ExperimentConfig, out: Path, stamps: Stamps) -> Path | TrainJob:
    """The model of a (system, seed) when it exists (reused or stamped), else the job that makes it."""
    if spec.model is not None:
        path = spec.model_path(seed)
        if not path.is_file():
            raise InputError(f"system {spec.name!r}: model {path} not found")
        return path
    from ..train import comparable

    tcfg = train_config_of(spec, cfg, seed)
    exp = run_dir(out, spec.name, seed) / "train"
    name = f"{spec.name}/seed-{seed}"
    key = digest(comparable(to_dict(tcfg)))
    if stamps.done(f"{name}/train", key, [exp / "model.pt"]):
        return exp / "model.pt"
    resume = False
    ckpt, old = exp / "checkpoints", exp / "config.yaml"
    if ckpt.is_dir() and any(ckpt.iterdir()) and old.exists():
        from ..train import TrainConfig

        try:
            resume = digest(comparable(to_dict(load_config(TrainConfig, old)))) == key
        except InputError:
            resume = False
    if exp.exists() and not resume:
        shutil.rmtree(exp)
    return TrainJob(name, tcfg, exp, key, resume)


def run_training(jobs: list[TrainJob], cfg: ExperimentConfig, stamps: Stamps, log) -> None:
    """Train the jobs: in this process, ``cfg.train_jobs`` subprocesses at a time, or one at a
    time under ``cfg.train_launcher``. A status line per running job every 20 s."""
    if not jobs:
        return
    parallel = 1 if cfg.train_launcher else cfg.train_jobs
    if parallel == 1 and not cfg.train_launcher:
        from ..train import train

        for job in jobs:
            log(f"{job.name}: {'resuming' if job.resume else 'training'} -> {job.exp}")
            train(job.config, job.exp, resume=job.resume)
            stamps.mark(f"{job.name}/train", job.key)
        return
    _run_subprocesses(jobs, parallel, cfg.train_launcher, stamps, log)


def _command(job: TrainJob, launcher: list[str]) -> list[str]:
    cfg_file = job.exp.parent / "train_config.yaml"
    save_config(job.config, cfg_file)
    prefix = list(launcher) if launcher else [sys.executable]
    # Each training is its own rendezvous: nodes moving on to the next training must not
    # join the previous one while it closes (torchrun takes the last --rdzv-id given).
    rdzv = [a.split("=", 1)[1] for a in launcher if a.startswith(("--rdzv-id=", "--rdzv_id="))]
    if rdzv:
        prefix.append(f"--rdzv-id={rdzv[-1]}-{job.key[:8]}")
    cmd = prefix + ["-m", "jeffreys", "train", str(cfg_file), "--exp-dir", str(job.exp)]
    return cmd + (["--resume"] if job.resume else [])


def _run_subprocesses(jobs: list[TrainJob], parallel: int, launcher: list[str], stamps: Stamps, log) -> None:
    threads = max(1, (os.cpu_count() or 1) // parallel)
    env = dict(os.environ) if launcher else dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))

    def _terminate(signum, frame):  # SIGTERM: stop the children too (the finally below)
        raise SystemExit(128 + signum)

    queue, running = list(jobs), {}
    last_status = time.monotonic()
    main_thread = threading.current_thread() is threading.main_thread()
    # Under the CLI, jeffreys.interrupts already turns SIGINT/SIGTERM/SIGHUP into an exception.
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread and not interrupts.active() else None
    try:
        while queue or running:
            while queue and len(running) < parallel:
                job = queue.pop(0)
                job.exp.parent.mkdir(parents=True, exist_ok=True)
                cmd = _command(job, launcher)
                outf = open(job.exp.parent / "train.out", "w", encoding="utf-8")
                how = " ".join(launcher) if launcher else f"{threads} thread(s)"
                log(f"{job.name}: {'resuming' if job.resume else 'training'} -> {job.exp} ({how}, output in {outf.name})")
                try:
                    proc = subprocess.Popen(cmd, stdout=outf, stderr=subprocess.STDOUT, env=env)
                except OSError as e:
                    outf.close()
                    raise InputError(f"training {job.name}: cannot start {cmd[0]!r} ({e.strerror})") from None
                running[job.name] = (job, proc, outf)
            time.sleep(1.0)
            for name, (job, proc, outf) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                outf.close()
                del running[name]
                if rc != 0:
                    raise InputError(f"training {name} failed (exit {rc}): {_last_line(Path(outf.name))} (see {outf.name})")
                stamps.mark(f"{name}/train", job.key)
                log(f"{name}: trained")
            if running and time.monotonic() - last_status >= 20:
                last_status = time.monotonic()
                for name, (_, _, outf) in running.items():
                    log(f"  {name}: {_last_line(Path(outf.name)) or 'starting (loading data, generating augmentation material)'}")
    finally:
        # The same signal first, so that each `jeffreys train` removes its temporaries (it
        # got it already when the signal went to the process group); SIGKILL if it lingers.
        stop = interrupts.received() or signal.SIGTERM
        for _, proc, _ in running.values():
            if proc.poll() is None:
                proc.send_signal(stop)
        for _, proc, outf in running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            outf.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _last_line(path: Path) -> str:
    """The last progress update of a log (tqdm rewrites its line with carriage returns)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    parts = [p.strip() for p in text.replace("\r", "\n").split("\n") if p.strip()]
    return parts[-1][:160] if parts else ""


__all__ = ["TrainJob", "plan_training", "run_dir", "run_training"]
