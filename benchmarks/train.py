"""Training-step throughput (samples/s) of each model preset, next to a plain PyTorch ResNet.

For each preset: one SGD step (forward, AAM head, Jeffreys loss, backward, update) of
``jeffreys.models.SpeakerModel`` on a batch of precomputed features (in the memory layout
``memory_format: auto`` picks on this machine, as the trainer does), the same step of a
plain ResNet of the same shape written below from torch.nn only (NCHW, cosine head + F.cross_entropy), and our whole step from waveforms as
``jeffreys train`` runs it (fbank front-end included). Median over the timed steps after one
warm-up step, best of two alternating rounds; wall-clock and process-CPU-time throughputs
(the latter is what a shared, loaded machine can still measure). Prints JSON.

    .venv/bin/python benchmarks/train.py [--threads 2] [--presets paper,wespeaker,demo] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from jeffreys.features import Fbank
from jeffreys.losses import build_head, build_loss
from jeffreys.models import PRESETS, SpeakerModel, param_count
from jeffreys.models.memory_format import apply

# Batch sizes keep a step of the big presets to seconds on a 2-core CPU.
SETTINGS = {"paper": (8, 2.0, 1), "wespeaker": (16, 2.0, 2), "demo": (64, 2.0, 4)}
ROUNDS = 2  # ours and plain alternate, best round kept: other jobs' load hits both alike
NUM_CLASSES = 200


class PlainBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(y + (x if self.proj is None else self.proj(x)))


class PlainResNet(nn.Module):
    """The textbook speaker ResNet: stem, basic-block stages, mean+std pooling, linear."""

    def __init__(self, cfg):
        super().__init__()
        stem = cfg.stem_width or cfg.widths[0]
        layers = [nn.Conv2d(1, stem, 3, cfg.stem_stride, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU()]
        cin, freq = stem, -(-cfg.num_mel_bins // cfg.stem_stride)
        for w, d, s in zip(cfg.widths, cfg.depths, cfg.strides):
            for i in range(d):
                layers.append(PlainBlock(cin, w, s if i == 0 else 1))
                cin = w
            freq = -(-freq // s)
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(2 * cin * freq, cfg.embed_dim)
        self.norm = nn.BatchNorm1d(cfg.embed_dim, affine=False) if cfg.embed_bn else nn.Identity()
        self.classes = nn.Parameter(torch.randn(NUM_CLASSES, cfg.embed_dim))

    def forward(self, feats):
        x = self.body(feats.transpose(1, 2).unsqueeze(1)).flatten(1, 2)
        emb = self.norm(self.fc(torch.cat([x.mean(-1), x.std(-1)], 1)))
        return 30.0 * F.linear(F.normalize(emb), F.normalize(self.classes))


def _time_steps(step, n: int) -> tuple[float, float]:
    """Median wall seconds and median process CPU seconds of a step."""
    step()  # warm-up (allocations, oneDNN primitive creation)
    wall, cpu = [], []
    for _ in range(n):
        t, c = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def bench_ours(cfg, batch, seconds, steps, compile_=False, fbank=True):
    torch.manual_seed(0)
    model, _ = apply(SpeakerModel(cfg), "cpu", "auto")
    head = build_head("aam", cfg.embed_dim, NUM_CLASSES, scale=30.0, margin=0.2)
    loss_fn = build_loss("jeffreys", alpha=0.1, beta=0.025)
    opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.1, momentum=0.9)
    net = torch.compile(model) if compile_ else model
    waves = torch.randn(batch, int(seconds * cfg.sample_rate)) * 0.1
    feats = model.features(waves)
    labels = torch.randint(0, NUM_CLASSES, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        emb = net(waves) if fbank else model.embed_features(feats)
        loss_fn(head(emb, labels).float(), labels).backward()
        opt.step()

    return _time_steps(step, steps)


def bench_plain(cfg, batch, seconds, steps):
    torch.manual_seed(0)
    net = PlainResNet(cfg)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    with torch.no_grad():
        feats = Fbank(cfg.num_mel_bins, cfg.sample_rate)(torch.randn(batch, int(seconds * cfg.sample_rate)) * 0.1)
    labels = torch.randint(0, NUM_CLASSES, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(feats), labels).backward()
        opt.step()

    return _time_steps(step, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--presets", default=",".join(SETTINGS))
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of our model")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for name in args.presets.split(","):
        cfg = PRESETS[name]
        batch, seconds, steps = SETTINGS[name]
        o, p, f = [], [], []
        for _ in range(ROUNDS):
            o.append(bench_ours(cfg, batch, seconds, steps, fbank=False))
            p.append(bench_plain(cfg, batch, seconds, steps))
            f.append(bench_ours(cfg, batch, seconds, steps))
        (ours, ours_cpu), (plain, plain_cpu), (full, full_cpu) = [tuple(map(min, zip(*r))) for r in (o, p, f)]
        row = {
            "preset": name, "parameters": param_count(cfg), "batch": batch, "chunk_seconds": seconds,
            "ours_samples_per_s": round(batch / ours, 2), "plain_samples_per_s": round(batch / plain, 2),
            "ours_over_plain": round(plain / ours, 3),
            # On a shared machine wall time depends on the other jobs; CPU time much less so.
            "ours_samples_per_cpu_s": round(batch / ours_cpu, 2), "plain_samples_per_cpu_s": round(batch / plain_cpu, 2),
            # the whole step of `jeffreys train`: fbank of the waveforms included
            "ours_with_fbank_samples_per_s": round(batch / full, 2), "ours_with_fbank_samples_per_cpu_s": round(batch / full_cpu, 2),
        }
        if args.compile:
            wall, cpu = bench_ours(cfg, batch, seconds, steps, True)
            row["compiled_samples_per_s"], row["compiled_samples_per_cpu_s"] = round(batch / wall, 2), round(batch / cpu, 2)
        results.append(row)
    print(json.dumps({
        "benchmark": "training step (fbank + ResNet + AAM head + Jeffreys loss, SGD)",
        "torch": torch.__version__, "threads": args.threads, "machine": platform.processor() or platform.machine(),
        "load_average_1min": round(os.getloadavg()[0], 2), "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
