"""CPU time of reading a scores file (``jeffreys.data.trials.read_scores``), which includes
the check that no (enroll, test) pair is scored twice.

    python benchmarks/scores_file.py [--lines 1000000] [--repeat 5]

Distinct random pairs over 145 160 VoxCeleb-like ids, one score each; prints JSON with the
best and median process CPU time of ``--repeat`` reads (one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from jeffreys.data.trials import read_scores  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--utterances", type=int, default=145_160)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    ids = [f"id{s:05d}/{i:06d}.wav" for i, s in enumerate(rng.integers(0, 1251, args.utterances))]
    pairs = rng.integers(0, len(ids), (args.lines + args.lines // 10 + 100, 2))
    _, first = np.unique(pairs[:, 0] * len(ids) + pairs[:, 1], return_index=True)
    e, t = pairs[np.sort(first)[: args.lines]].T
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "scores"
        with open(path, "w") as f:
            f.writelines(f"{ids[a]} {ids[b]} {v:.10g}\n" for a, b, v in zip(e, t, rng.standard_normal(len(e))))
        cpu = []
        for _ in range(args.repeat):
            c0 = time.process_time()
            sc = read_scores(path)
            cpu.append(time.process_time() - c0)
        assert len(sc.score) == args.lines
    cpu.sort()
    print(json.dumps({"benchmark": "scores_file", "lines": args.lines, "repeat": args.repeat,
                      "read_scores_cpu_s_best": round(cpu[0], 3), "read_scores_cpu_s_median": round(cpu[len(cpu) // 2], 3)}))


if __name__ == "__main__":
    main()
