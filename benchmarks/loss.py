"""Forward+backward time and peak memory of the losses against ``F.cross_entropy``.

Usage: ``python benchmarks/loss.py [--batch 128] [--classes 5994 100000] [--repeats 30]
[--threads N]``. Prints one JSON object.

Each case runs loss(logits, labels).backward() on the same float32 CPU logits (leaf,
requires_grad). ``jeffreys`` and ``label_smoothing`` use the compiled kernel when it is
available ("kernel" in the output says), ``jeffreys_eager`` the eager implementation. Time: the cases are interleaved round by round (so load from other
processes hits them alike); the median and minimum over ``repeats`` rounds are reported,
after warm-up. Peak memory: the largest "Total Allocated" of torch's CPU allocator seen by
``torch.profiler`` (profile_memory=True) during one forward+backward, counting only
allocations made inside it (the logits themselves excluded, the returned gradient
included). Ratios are relative to ``F.cross_entropy``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from jeffreys.losses import JeffreysLoss, _native
from jeffreys.losses._reference import authors_dense_loss

ALPHA, BETA = 0.1, 0.025


def eager(fn):
    """fn with the compiled kernel switched off: the eager fused implementation."""
    def run(x, y):
        with _native.use_kernel("off"):
            return fn(x, y)
    return run


def cases() -> dict:
    jeffreys = JeffreysLoss(ALPHA, BETA)
    smoothing = JeffreysLoss(ALPHA, 0.0)
    return {
        "cross_entropy": lambda x, y: F.cross_entropy(x, y),
        "jeffreys": jeffreys,  # the compiled kernel where it builds (see "kernel" in the output)
        "label_smoothing": smoothing,
        "jeffreys_eager": eager(jeffreys),
        "jeffreys_authors_dense": lambda x, y: authors_dense_loss(x, y, ALPHA, BETA),
    }


def step(fn, x, y) -> None:
    fn(x, y).backward()
    x.grad = None


def peak_bytes(fn, x, y) -> int:
    """Peak bytes held by torch's CPU allocator during one forward+backward."""
    step(fn, x, y)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn(x, y).backward()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    x.grad = None
    events = sorted((e for e in events
                     if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0),
                    key=lambda e: e["ts"])
    if not events:
        return 0
    # The allocator's running total carries over what earlier sessions left counted;
    # measure from the total just before this step's first allocation.
    first = events[0]["args"]
    baseline = first["Total Allocated"] - first["Bytes"]
    return max(e["args"]["Total Allocated"] for e in events) - baseline


def time_cases(fns: dict, x, y, repeats: int) -> tuple[dict, dict]:
    """Wall-clock and process CPU seconds of every round, per case."""
    for fn in fns.values():
        for _ in range(3):
            step(fn, x, y)
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            step(fn, x, y)
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    return wall, cpu


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/loss.py", description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--classes", type=int, nargs="+", default=[5994, 100_000])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fns = cases()
    rows = []
    for num_classes in args.classes:
        # Scaled cosines of an AAM head (scale 30) are of this order.
        x = (torch.randn(args.batch, num_classes) * 3.0).requires_grad_()
        y = torch.randint(0, num_classes, (args.batch,))
        wall, cpu = time_cases(fns, x, y, args.repeats)
        peaks = {name: peak_bytes(fn, x, y) for name, fn in fns.items()}
        med = {name: median(t) for name, t in wall.items()}
        med_cpu = {name: median(t) for name, t in cpu.items()}
        for name in fns:
            rows.append({
                "loss": name,
                "batch": args.batch,
                "classes": num_classes,
                "median_ms": round(med[name] * 1e3, 3),
                "min_ms": round(min(wall[name]) * 1e3, 3),
                "time_vs_ce": round(med[name] / med["cross_entropy"], 3),
                "median_cpu_ms": round(med_cpu[name] * 1e3, 3),
                "cpu_time_vs_ce": round(med_cpu[name] / med_cpu["cross_entropy"], 3),
                "peak_mib": round(peaks[name] / 2**20, 2),
                "memory_vs_ce": round(peaks[name] / peaks["cross_entropy"], 3),
            })
    print(json.dumps({
        "benchmark": "loss forward+backward, float32 CPU",
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "kernel": _native.describe(),
        "alpha": ALPHA, "beta": BETA, "repeats": args.repeats,
        "memory_method": "torch.profiler profile_memory: max 'Total Allocated' (CPU) during one step",
        "rows": rows,
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
