"""Training-step cost of NCHW against channels_last, over model widths, on two vector ISAs.

The data behind ``memory_format: auto`` (:mod:`jeffreys.models.memory_format`). For each
model of the grid: SGD steps (ResNet on precomputed features, AAM head, Jeffreys loss,
backward, update) with the network put in each layout by ``memory_format.apply`` (the
trainer's path, narrow-convolution guard included), the two layouts interleaved round by
round so that load on the machine falls on both alike; median process-CPU and wall seconds
per step over the rounds. Each ISA runs in a child process with its environment:
``native`` as the machine is, ``avx2`` with ``ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2`` (oneDNN's and ATen's AVX2 kernels on this CPU). Per row: the
ratio channels_last / NCHW (below 1: channels_last cheaper), the rounds' spread of that
ratio (the noise), what ``auto`` picks in that environment, and auto's cost against NCHW.
Prints JSON.

    .venv/bin/python benchmarks/memory_format.py [--threads 2] [--rounds 5] [--isas native,avx2] [--models demo,...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

from jeffreys.losses import build_head, build_loss
from jeffreys.models import ResNetConfig, SpeakerModel, preset
from jeffreys.models.memory_format import apply, choose, cpu_vector_isa

# name -> (config, batch, chunk seconds): batches keep a step to about a second on 2 cores.
MODELS = {
    "tiny-4-8": (preset("demo", widths=[4, 4, 8, 8], num_mel_bins=16, embed_dim=8), 64, 2.0),
    "demo-16-128": (preset("demo"), 32, 2.0),
    "narrow-32-256": (preset("demo", widths=[32, 64, 128, 256]), 16, 2.0),
    "wespeaker-32-256": (preset("wespeaker"), 4, 2.0),
    "paper-128-256": (preset("paper"), 2, 2.0),
}
ISAS = {"native": {}, "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}
NUM_CLASSES = 200


def step_fn(cfg: ResNetConfig, batch: int, seconds: float, fmt: str):
    torch.manual_seed(0)
    model = SpeakerModel(cfg)
    head = build_head("aam", cfg.embed_dim, NUM_CLASSES, scale=30.0, margin=0.2)
    net, _ = apply(torch.nn.ModuleList([model, head]), "cpu", fmt)
    loss_fn = build_loss("jeffreys", alpha=0.1, beta=0.025)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    feats = model.features(torch.randn(batch, int(seconds * cfg.sample_rate)) * 0.1)
    labels = torch.randint(0, NUM_CLASSES, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(head(model.embed_features(feats), labels), labels).backward()
        opt.step()

    step()  # warm-up: allocations, oneDNN primitive creation
    return step


def child(names: list[str], rounds: int, steps: int) -> list[dict]:
    rows = []
    for name in names:
        cfg, batch, seconds = MODELS[name]
        steppers = {fmt: step_fn(cfg, batch, seconds, fmt) for fmt in ("contiguous", "channels_last")}
        cpu = {fmt: [] for fmt in steppers}
        wall = {fmt: [] for fmt in steppers}
        for _ in range(rounds):
            for fmt, step in steppers.items():
                c, w = time.process_time(), time.perf_counter()
                for _ in range(steps):
                    step()
                cpu[fmt].append((time.process_time() - c) / steps)
                wall[fmt].append((time.perf_counter() - w) / steps)
        ratios = [cl / nchw for cl, nchw in zip(cpu["channels_last"], cpu["contiguous"])]
        auto = choose(SpeakerModel(cfg), "cpu", "auto")
        med = {fmt: statistics.median(v) for fmt, v in cpu.items()}
        rows.append({
            "model": name, "widths": cfg.widths, "depths": cfg.depths, "batch": batch, "chunk_seconds": seconds,
            "cpu_s_per_step": {f: round(v, 4) for f, v in med.items()},
            "wall_s_per_step": {f: round(statistics.median(v), 4) for f, v in wall.items()},
            "channels_last_over_nchw": round(statistics.median(ratios), 3),
            "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
            "auto": auto, "auto_over_nchw": round(med[auto] / med["contiguous"], 3),
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2, help="steps per format per round")
    ap.add_argument("--isas", default=",".join(ISAS))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    names = a.models.split(",")
    torch.set_num_threads(a.threads)
    if a.child:
        print(json.dumps({"cpu_vector_isa": cpu_vector_isa(), "rows": child(names, a.rounds, a.steps)}))
        return
    out = {}
    for isa in a.isas.split(","):
        env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}
        cmd = [sys.executable, __file__, "--child", f"--threads={a.threads}", f"--rounds={a.rounds}",
               f"--steps={a.steps}", f"--models={a.models}"]
        done = subprocess.run(cmd, env={**env, **ISAS[isa]}, capture_output=True, text=True, check=True)
        out[isa] = json.loads(done.stdout)
    print(json.dumps({
        "benchmark": "training step, NCHW vs channels_last (memory_format.apply), per ISA",
        "torch": torch.__version__, "threads": a.threads, "rounds": a.rounds, "steps_per_round": a.steps,
        "machine": platform.machine(), "isas": {k: ISAS[k] for k in out}, "results": out,
    }, indent=2))


if __name__ == "__main__":
    main()
