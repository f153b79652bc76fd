"""Extraction speed: utterances/s of each model preset on this machine, printed as JSON.

For every preset (random weights: speed does not depend on them) the same utterances
(lengths uniform in [--min-seconds, --max-seconds], as VoxCeleb1 test files, mean 8 s) are
embedded by:

* ``plain``: a plain PyTorch ResNet of the same shape written below (torchvision-style
  basic blocks, mean+std pooling, linear), one utterance at a time on the same filterbanks;
* ``ours``: :class:`jeffreys.extract.PieceBatcher`, the code behind ``jeffreys extract``
  (exact whole utterances; distinct lengths, so batches of one), default memory format;
* ``ours_crop``: the same with ``crop_fraction`` 0.05 (utterances of similar length batched);
* ``ours_channels_last``: the model in channels_last memory format (what ``jeffreys
  extract`` does by default since it measured 1.3-1.4x faster here);
* ``ours_compile``: ``torch.compile(model, dynamic=True)``; its compile time (first pass)
  is reported separately from the timed second pass.

Usage: ``python benchmarks/extract.py [--presets demo wespeaker paper] [--utts N]
[--threads 2] [--variants ...] [--repeats 3]``. After a warm-up pass, the variants run in\ninterleaved rounds and each figure is the best round. Timings on a shared machine vary with its load, which is
recorded (``loadavg``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
from torch import nn

from jeffreys.extract import PieceBatcher
from jeffreys.models import PRESETS, SpeakerModel, param_count

VARIANTS = ("plain", "ours", "ours_crop", "ours_channels_last", "ours_compile")


class PlainBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        return nn.functional.relu(self.bn2(self.conv2(out)) + idt)


class PlainResNet(nn.Module):
    """A textbook ResNet over [B, 1, mels, frames] with mean+std pooling: the baseline."""

    def __init__(self, cfg):
        super().__init__()
        stem = cfg.stem_width or cfg.widths[0]
        layers = [nn.Conv2d(1, stem, 3, cfg.stem_stride, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU()]
        cin = stem
        for w, d, s in zip(cfg.widths, cfg.depths, cfg.strides):
            for i in range(d):
                layers.append(PlainBlock(cin, w, s if i == 0 else 1))
                cin = w
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(cfg.stats_dim, cfg.embed_dim)

    def forward(self, feats):  # [B, frames, mels]
        x = self.body(feats.transpose(1, 2).unsqueeze(1))
        x = x.flatten(1, 2)
        return self.fc(torch.cat([x.mean(-1), torch.sqrt(x.var(-1, unbiased=False) + 1e-5)], 1))


def run_ours(model, waves, forward=None, crop=0.0) -> np.ndarray:
    b = PieceBatcher(model, [str(i) for i in range(len(waves))], forward=forward, crop_fraction=crop)
    for i in sorted(range(len(waves)), key=lambda i: len(waves[i])):
        b.add(i, waves[i])
    return b.finish()


def run_plain(model, plain, waves):
    with torch.inference_mode():
        return [plain(model.fbank(torch.from_numpy(w)[None])) for w in waves]


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_preset(name: str, waves: list[np.ndarray], variants, repeats: int) -> dict:
    """Variants run in interleaved rounds (so each sees the same machine load), best of rounds."""
    torch.manual_seed(0)
    cfg = PRESETS[name]
    model = SpeakerModel(cfg).eval()
    plain = PlainResNet(cfg).eval()
    assert sum(p.numel() for p in plain.parameters()) == param_count(cfg), "baseline must have the same shape"
    n = len(waves)
    res: dict = {"params": param_count(cfg), "utterances": n, "audio_seconds": round(sum(map(len, waves)) / 16000, 1)}
    runs = {}
    for v in variants:
        if v == "plain":
            runs[v] = lambda: run_plain(model, plain, waves)
        elif v == "ours":
            runs[v] = lambda: run_ours(model, waves)
        elif v == "ours_crop":
            runs[v] = lambda: run_ours(model, waves, crop=0.05)
        elif v == "ours_channels_last":
            cl = SpeakerModel(cfg).eval().to(memory_format=torch.channels_last)
            runs[v] = lambda: run_ours(cl, waves)
        elif v == "ours_compile":
            fwd = torch.compile(model, dynamic=True)
            # The first pass compiles (and recompiles for new batch sizes); timed apart.
            res["compile_first_pass_s"] = round(timed(lambda: run_ours(model, waves, forward=fwd)), 2)
            runs[v] = lambda: run_ours(model, waves, forward=fwd)
        else:
            raise SystemExit(f"unknown variant {v!r} (known: {', '.join(VARIANTS)})")
    for v, fn in runs.items():
        if v != "ours_compile":
            fn()  # warm-up: oneDNN creates kernels for each new input shape on first use
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for v, fn in runs.items():
            best[v] = min(best[v], timed(fn))
    for v in runs:
        res[f"{v}_utt_per_s"] = round(n / best[v], 3)
        print(json.dumps({"preset": name, "variant": v, "utt_per_s": res[f"{v}_utt_per_s"]}), flush=True)
    if "plain" in runs:
        for v in runs:
            if v != "plain":
                res[f"{v}_vs_plain"] = round(res[f"{v}_utt_per_s"] / res["plain_utt_per_s"], 3)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["demo", "wespeaker", "paper"])
    p.add_argument("--utts", type=int, nargs="+", default=[24, 8, 4], help="utterances per preset (one value or one per preset)")
    p.add_argument("--min-seconds", type=float, default=4.0)
    p.add_argument("--max-seconds", type=float, default=12.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--repeats", type=int, default=3, help="timed rounds after a warm-up, the best is kept (default 3)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    utts = a.utts * len(a.presets) if len(a.utts) == 1 else a.utts
    rng = np.random.default_rng(0)
    out = {
        "benchmark": "extract",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": a.threads,
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "presets": {},
    }
    for name, n in zip(a.presets, utts):
        lengths = rng.uniform(a.min_seconds, a.max_seconds, n)
        waves = [(0.1 * rng.standard_normal(int(s * 16000))).astype(np.float32) for s in lengths]
        out["presets"][name] = bench_preset(name, waves, a.variants, a.repeats)
    out["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
