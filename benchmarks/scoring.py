"""Time the scoring back-end on a VoxCeleb1-H-sized problem: 550 000 trials over 145 160
utterances of 1 251 speakers, 256-dim float32 embeddings; centred cosine (id look-up
included), then adaptive S-norm (cohort 5 994 x 256, top 300) with --asnorm, and the
writing / reading of the scores file.

    .venv/bin/python benchmarks/scoring.py [--trials 550000] [--asnorm]

Prints one JSON object (seconds).
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from jeffreys.data.trials import read_scores
from jeffreys.scoring import asnorm, compute_mean, cosine_scores, write_scores


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=550_000)
    ap.add_argument("--speakers", type=int, default=1251)
    ap.add_argument("--utterances", type=int, default=145_160)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--asnorm", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    spk = rng.integers(0, args.speakers, args.utterances)
    centres = rng.standard_normal((args.speakers, args.dim)).astype(np.float32)
    emb = centres[spk] + rng.standard_normal((args.utterances, args.dim)).astype(np.float32)
    ids = [f"id{s:05d}/{i:06d}.wav" for i, s in enumerate(spk)]
    e = rng.integers(0, args.utterances, args.trials)
    t = rng.integers(0, args.utterances, args.trials)
    trials = ([ids[i] for i in e], [ids[i] for i in t])
    mean = compute_mean(emb)
    out = {"benchmark": "scoring", "trials": args.trials, "utterances": args.utterances,
           "speakers": args.speakers, "dim": args.dim, "cpus": os.cpu_count()}
    t0 = time.perf_counter()
    s = cosine_scores((ids, emb), None, trials, mean=mean)
    out["cosine_s"] = round(time.perf_counter() - t0, 3)
    if args.asnorm:
        cohort = rng.standard_normal((5994, args.dim)).astype(np.float32)
        t0 = time.perf_counter()
        asnorm(s, trials, (ids, emb), None, cohort, top_n=300, mean=mean)
        out["asnorm_top300_cohort5994_s"] = round(time.perf_counter() - t0, 3)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        write_scores(Path(d) / "scores", trials, s)
        out["write_scores_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        read_scores(Path(d) / "scores")
        out["read_scores_s"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
