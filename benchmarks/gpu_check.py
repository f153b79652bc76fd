"""The GPU path in one prepared run (at most 8 minutes on one GPU); prints JSON.

    python benchmarks/gpu_check.py            # on a machine with a CUDA GPU (torch built with CUDA)
    python benchmarks/gpu_check.py --smoke    # the same code on the CPU, in seconds (tests/test_gpu_check.py)

Everything runs through the project's own classes, as ``jeffreys train`` / ``jeffreys
extract`` do: ``jeffreys.train.Trainer`` on ``recipes/voxceleb/conf/base.yaml`` (the paper
preset, AAM head; the Jeffreys loss of the AAM-Jeffreys system; AMP = float16 autocast +
GradScaler, channels_last, the recipe's defaults), ``jeffreys.extract.extract``, and
``benchmarks/loss.py``'s loss cases. Training data: ``benchmarks/sample_cost.py``'s generated
speech-like corpus (8 speakers, VoxCeleb2-like lengths; wav, FLAC, m4a).

1. ``amp_vs_float32``: ``--steps`` steps (batch 64 x 2 s) with ``amp: true`` and again with
   ``amp: false`` from the same seed and data; the per-step losses from the runs' TensorBoard
   events. Checks: every loss and final weight finite; the first step's losses (same weights,
   same batch: float16 rounding only) and the windowed means of the two curves agree within
   ``--curve-tolerance`` (the trajectories part after a few steps, as any two roundings do).
2. ``loss_vs_cross_entropy``: ``JeffreysLoss`` forward + backward against ``F.cross_entropy``
   on the device, batch 128, 5 994 and 100 000 classes: median time (synchronised) and peak
   memory (``torch.cuda.max_memory_allocated`` above the logits; on the CPU, loss.py's
   profiler peak), and their ratios.
3. ``embeddings_cuda_vs_cpu``: the float32-trained model of (1) extracted on the device and
   on the CPU (Fbank front-end included): largest absolute and norm-relative difference,
   smallest cosine. (cuDNN may use TF32 for float32 convolutions: differences of ~1e-3
   relative are expected from that alone.)
4. ``train_rate``: samples/s of the paper preset at batch 128 x 4 s with AMP and
   channels_last, as the recipe trains (deterministic algorithms), timed over the steps after
   ``--rate-warmup`` from TensorBoard wall times; wav crops without augmentation and
   ``--workers`` DataLoader workers, so that the GPU, not the loader, sets the pace.
5. ``dataloader_workers``: sample_cost.py's CPU ms per 4 s training sample (decode + crop +
   the recipe's augmentation; wav, FLAC, m4a) measured on this machine's CPU, times the rate
   of (4): the worker processes that keep this GPU fed.

``--smoke`` runs 1-5 on the CPU with a 4-channel model, a few steps and small batches: the
numbers mean nothing, the code paths are the same (AMP is then off, as the trainer ignores it
on a CPU: ``amp_active`` says so).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import loss as loss_bench  # benchmarks/loss.py
import sample_cost  # benchmarks/sample_cost.py

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "recipes" / "voxceleb" / "conf" / "base.yaml"
JEFFREYS = ["loss.kind=jeffreys", "loss.alpha=0.1", "loss.beta=0.025", "optim.weight_decay=0.0"]  # the AAM-Jeffreys system
TINY = ["model.preset=demo", "model.widths=[4,4,8,8]", "model.depths=[1,1,1,1]", "model.num_mel_bins=16", "model.embed_dim=8"]


def settings(smoke: bool) -> dict:
    if smoke:
        return dict(model=TINY, curve_batch=4, curve_seconds=0.5, steps=6, window=2, rate_batch=8, rate_seconds=1.0,
                    rate_warmup=1, rate_steps=3, classes=(100, 1000), loss_repeats=3, embed_utts=4, files=8,
                    cost_samples=10, cost_rounds=1)
    return dict(model=[], curve_batch=64, curve_seconds=2.0, steps=300, window=50, rate_batch=128, rate_seconds=4.0,
                rate_warmup=10, rate_steps=40, classes=(5994, 100_000), loss_repeats=20, embed_utts=16, files=48,
                cost_samples=200, cost_rounds=2)


# ----------------------------------------------------------------------------- training
def train_run(exp: Path, data: Path, overrides: list[str]) -> dict:
    """Train with base.yaml + overrides (jeffreys.train.Trainer, as `jeffreys train` does);
    return the TensorBoard loss events, the final checkpoint's scaler and the bundle."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from jeffreys.train import Trainer, load_train_config

    cfg = load_train_config(BASE, [f"data.train={data}", "data.augment.prob=0.0", "data.sampling=speaker",
                                   "progress=false", "log_every=1", "checkpoint_every=100000", *overrides])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer = Trainer(cfg, exp)
    bundle = trainer.run()
    seconds = time.perf_counter() - t0
    events = EventAccumulator(str(exp / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    loss = events.Scalars("train/loss")
    last = torch.load(sorted((exp / "checkpoints").glob("step-*.pt"))[-1], map_location="cpu", weights_only=True)
    weights = torch.load(bundle, map_location="cpu", weights_only=True)["state_dict"]
    return {
        "steps": [e.step for e in loss], "loss": [e.value for e in loss], "wall": [e.wall_time for e in loss],
        "seconds": seconds, "bundle": bundle, "scale": (last.get("scaler") or {}).get("scale"),
        "weights_finite": all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point()),
        "amp_active": trainer.amp,  # the trainer's own decision (AMP on CUDA only)
        "gpu_peak_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
    }


def amp_vs_float32(root: Path, data: Path, s: dict, dev: str, tolerance: float) -> tuple[dict, Path]:
    per_speaker = math.ceil(s["steps"] * s["curve_batch"] / 8)  # one epoch covers every step (8 speakers)
    common = [*s["model"], *JEFFREYS, f"device={dev}", f"batch_size={s['curve_batch']}", f"steps={s['steps']}",
              f"data.chunk_seconds={s['curve_seconds']}", f"data.chunks_per_speaker={per_speaker}",
              f"data.num_workers={min(8, max(1, (os.cpu_count() or 2) - 2))}"]
    amp = train_run(root / "amp", data, [*common, "amp=true"])
    fp32 = train_run(root / "fp32", data, [*common, "amp=false"])
    w = s["window"]
    windows = []
    for a in range(0, len(fp32["loss"]), w):
        ma, mf = float(np.mean(amp["loss"][a : a + w])), float(np.mean(fp32["loss"][a : a + w]))
        windows.append({"steps": [a + 1, min(a + w, len(fp32["loss"]))], "amp": round(ma, 5), "float32": round(mf, 5),
                        "rel_diff": round(abs(ma - mf) / abs(mf), 5)})
    first = abs(amp["loss"][0] - fp32["loss"][0]) / abs(fp32["loss"][0])
    finite = bool(np.isfinite(amp["loss"]).all() and np.isfinite(fp32["loss"]).all() and amp["weights_finite"] and fp32["weights_finite"])
    worst = max(x["rel_diff"] for x in windows)
    return {
        "preset": "paper" if not s["model"] else "tiny (smoke)", "loss": "jeffreys (alpha 0.1, beta 0.025)",
        "batch": s["curve_batch"], "chunk_seconds": s["curve_seconds"], "steps": len(amp["loss"]),
        "amp_active": amp["amp_active"], "seconds": {"amp": round(amp["seconds"], 2), "float32": round(fp32["seconds"], 2)},
        "grad_scale_final": amp["scale"], "first_step_rel_diff": round(first, 6), "windows": windows,
        "max_window_rel_diff": worst, "all_finite": finite, "tolerance": tolerance,
        "agree": bool(finite and first <= tolerance and worst <= tolerance),
    }, fp32["bundle"]


def train_rate(root: Path, data: Path, s: dict, dev: str, workers: int) -> dict:
    steps = s["rate_warmup"] + s["rate_steps"]
    run = train_run(root / "rate", data, [
        *s["model"], *JEFFREYS, f"device={dev}", "amp=true", "channels_last=true", f"batch_size={s['rate_batch']}",
        f"steps={steps}", f"data.chunk_seconds={s['rate_seconds']}", f"data.num_workers={workers}",
        f"data.chunks_per_speaker={math.ceil(steps * s['rate_batch'] / 8)}"])
    k = s["rate_warmup"] - 1  # the event of step `rate_warmup`: timing starts when it is done
    timed = run["steps"][-1] - run["steps"][k]
    rate = timed * s["rate_batch"] / (run["wall"][-1] - run["wall"][k])
    return {"preset": "paper" if not s["model"] else "tiny (smoke)", "batch": s["rate_batch"], "chunk_seconds": s["rate_seconds"],
            "amp_active": run["amp_active"], "channels_last": True, "deterministic": True, "num_workers": workers,
            "steps_timed": timed, "samples_per_s": round(rate, 2), "gpu_peak_bytes": run["gpu_peak_bytes"],
            "all_finite": bool(np.isfinite(run["loss"]).all())}


# ----------------------------------------------------------------------------- the loss
def loss_vs_cross_entropy(s: dict, dev: str) -> dict:
    fns = {k: v for k, v in loss_bench.cases().items() if k in ("cross_entropy", "jeffreys", "jeffreys_authors_dense")}
    out = {}
    for k in s["classes"]:
        torch.manual_seed(0)
        x = (torch.randn(128, k, device=dev) * 3.0).requires_grad_()  # AAM-scaled cosines are of this order
        y = torch.randint(0, k, (128,), device=dev)
        row = {}
        for name, fn in fns.items():
            for _ in range(3):
                loss_bench.step(fn, x, y)
            times = []
            for _ in range(s["loss_repeats"]):
                sync(dev)
                t0 = time.perf_counter()
                loss_bench.step(fn, x, y)
                sync(dev)
                times.append(time.perf_counter() - t0)
            if dev == "cuda":
                sync(dev)
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                loss_bench.step(fn, x, y)
                sync(dev)
                peak = torch.cuda.max_memory_allocated() - base
            else:
                peak = loss_bench.peak_bytes(fn, x, y)
            row[name] = {"median_ms": round(statistics.median(times) * 1e3, 4), "peak_bytes": int(peak)}
        ce = row["cross_entropy"]
        for name in fns:
            row[name]["time_vs_ce"] = round(row[name]["median_ms"] / ce["median_ms"], 3)
            row[name]["memory_vs_ce"] = round(row[name]["peak_bytes"] / ce["peak_bytes"], 3) if ce["peak_bytes"] else None
        out[str(k)] = row
    return {"device": dev, "batch": 128, "dtype": "float32", "repeats": s["loss_repeats"], "classes": out}


def sync(dev: str) -> None:
    if dev == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- embeddings
def embeddings_device_vs_cpu(root: Path, data: Path, bundle: Path, s: dict, dev: str) -> dict:
    from jeffreys.data.datadir import read_datadir, write_datadir
    from jeffreys.extract import extract

    dd = read_datadir(data)
    utts = dd.utts[: s["embed_utts"]]
    sub = write_datadir(root / "embed_data", {u: dd.wav[u] for u in utts}, {u: dd.utt2spk[u] for u in utts},
                        utt2dur={u: dd.utt2dur[u] for u in utts})
    _, on_dev = extract(bundle, sub, device=dev, progress=False)
    _, on_cpu = extract(bundle, sub, device="cpu", progress=False)
    a, b = on_dev.astype(np.float64), on_cpu.astype(np.float64)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return {"devices": [dev, "cpu"], "utterances": len(utts), "audio_seconds": round(sum(dd.utt2dur[u] for u in utts), 1),
            "max_abs_diff": float(np.abs(a - b).max()),
            "max_rel_diff": float((np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)).max()),
            "min_cosine": float(cos.min()), "all_finite": bool(np.isfinite(a).all() and np.isfinite(b).all())}


# ----------------------------------------------------------------------------- data loading
def dataloader_workers(root: Path, dirs: dict, s: dict, rate: float, seed: int) -> dict:
    """sample_cost.py's per-sample CPU cost (crop + augmentation, one thread) on this CPU, x rate."""
    from jeffreys.data.augment import AugmentConfig, Augmenter
    from jeffreys.data.dataset import TrainDataset

    musan, rirs = sample_cost.build_noise_sources(root / "noise", seed)
    aug = AugmentConfig(prob=0.8, musan=str(musan), rirs=str(rirs))  # the recipe's base.yaml
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    try:
        ms = {}
        rng = np.random.default_rng(seed)
        for fmt in sample_cost.FORMATS:
            ds = TrainDataset(dirs[fmt], chunk_seconds=sample_cost.CHUNK_S, seed=seed, augment=Augmenter(aug))
            for i in range(2):
                ds[(99, i)]  # warm-up: imports, first opens
            rounds = [sample_cost.cpu_ms_per_item(ds.__getitem__, [(r, int(i)) for i in rng.integers(0, len(ds), s["cost_samples"])])
                      for r in range(s["cost_rounds"])]
            ms[fmt] = round(float(np.median(rounds)), 3)
    finally:
        torch.set_num_threads(threads)
    return {"cpu_ms_per_sample": ms, "samples": s["cost_samples"], "rounds": s["cost_rounds"],
            "at_samples_per_s": round(rate, 2), "augment_prob": aug.prob,
            "workers": {f: max(1, math.ceil(rate * v / 1e3)) for f, v in ms.items()},
            "basis": "rate of train_rate x CPU ms per sample (benchmarks/sample_cost.py's measurement, this CPU, one thread)"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny model, a few steps: the code paths only")
    ap.add_argument("--steps", type=int, default=None, help="steps of each AMP / float32 run (default 300)")
    ap.add_argument("--curve-tolerance", type=float, default=0.1, help="largest relative difference of the windowed loss means (default 0.1)")
    ap.add_argument("--rate-batch", type=int, default=None, help="batch of the rate run (default 128; lower it on a GPU with less memory)")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers of the rate run (default: CPUs - 2, at most 16)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    s = settings(args.smoke)
    if args.steps:
        s["steps"] = args.steps
    dev = "cpu" if args.smoke else "cuda"
    if dev == "cuda" and not torch.cuda.is_available():  # e.g. `make bench` on a CPU machine: say so, do not fail
        print(json.dumps({"benchmark": "gpu_check", "mode": "gpu", "skipped": "no CUDA device (torch.cuda.is_available() "
                          f"is False; torch {torch.__version__}); --smoke runs the same code on the CPU"}, indent=1))
        return 0
    s["rate_batch"] = args.rate_batch or s["rate_batch"]
    workers = args.workers if args.workers is not None else (1 if args.smoke else max(1, min(16, (os.cpu_count() or 4) - 2)))
    t0 = time.perf_counter()
    sections = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check.") as tmp:
        root = Path(tmp)
        dirs, _ = sample_cost.build_corpus(root / "corpus", s["files"], 64, args.seed)
        t = time.perf_counter()
        curves, bundle = amp_vs_float32(root, dirs["wav"], s, dev, args.curve_tolerance)
        sections["amp_vs_float32"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        loss = loss_vs_cross_entropy(s, dev)
        sections["loss_vs_cross_entropy"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        emb = embeddings_device_vs_cpu(root, dirs["wav"], bundle, s, dev)
        sections["embeddings"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        rate = train_rate(root, dirs["wav"], s, dev, workers)
        sections["train_rate"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        feed = dataloader_workers(root, dirs, s, rate["samples_per_s"], args.seed)
        sections["dataloader_workers"] = round(time.perf_counter() - t, 1)
    print(json.dumps({
        "benchmark": "gpu_check", "mode": "smoke" if args.smoke else "gpu", "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(0) if dev == "cuda" else f"cpu ({platform.machine()})",
        "cpus": os.cpu_count(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if dev == "cuda" else None,
        "tf32": {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
        "amp_vs_float32": curves, "loss_vs_cross_entropy": loss, "embeddings_cuda_vs_cpu": emb,
        "train_rate": rate, "dataloader_workers": feed,
        "checks": {"finite": bool(curves["all_finite"] and emb["all_finite"] and rate["all_finite"]),
                   "curves_agree": curves["agree"],
                   "embeddings_close": bool(emb["max_rel_diff"] < 1e-2 and emb["min_cosine"] > 0.9999)},
        "section_seconds": sections, "elapsed_s": round(time.perf_counter() - t0, 1),
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
