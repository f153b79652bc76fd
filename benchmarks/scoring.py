"""Time the scoring back-end on a VoxCeleb1-H-sized problem: 550 000 trials over 145 160
utterances of 1 251 speakers, 256-dim float32 embeddings; centred cosine (id look-up
included), then adaptive S-norm (cohort 5 994 x 256, top 300) with --asnorm, and the
writing / reading of the scores file; the same trials scored against 3-utterance enrolment
models (SdSV-style ``models``: one model per enrolment utterance, the other two of its
speaker); reading a trial list of --trial-lines lines in both formats (Kaldi
``e t target|nontarget``, VoxCeleb ``1|0 e t``).

    .venv/bin/python benchmarks/scoring.py [--trials 550000] [--asnorm] [--trial-lines 1000000]

Prints one JSON object (seconds).
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from jeffreys.data.trials import read_scores, read_trials, write_trials
from jeffreys.scoring import asnorm, compute_mean, cosine_scores, write_scores


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=550_000)
    ap.add_argument("--speakers", type=int, default=1251)
    ap.add_argument("--utterances", type=int, default=145_160)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--asnorm", action="store_true")
    ap.add_argument("--trial-lines", type=int, default=1_000_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    spk = rng.integers(0, args.speakers, args.utterances)
    centres = rng.standard_normal((args.speakers, args.dim)).astype(np.float32)
    emb = centres[spk] + rng.standard_normal((args.utterances, args.dim)).astype(np.float32)
    ids = [f"id{s:05d}/{i:06d}.wav" for i, s in enumerate(spk)]
    # distinct pairs: a scores file may score a pair once (read_scores refuses repeats)
    pairs = rng.integers(0, args.utterances, (args.trials + args.trials // 10 + 100, 2))
    _, first = np.unique(pairs[:, 0] * args.utterances + pairs[:, 1], return_index=True)
    e, t = pairs[np.sort(first)[: args.trials]].T
    trials = ([ids[i] for i in e], [ids[i] for i in t])
    mean = compute_mean(emb)
    out = {"benchmark": "scoring", "trials": args.trials, "utterances": args.utterances,
           "speakers": args.speakers, "dim": args.dim, "cpus": os.cpu_count()}
    t0 = time.perf_counter()
    s = cosine_scores((ids, emb), None, trials, mean=mean)
    out["cosine_s"] = round(time.perf_counter() - t0, 3)
    models = _models(ids, spk, sorted(set(trials[0])), rng)
    t0 = time.perf_counter()
    cosine_scores((ids, emb), None, trials, mean=mean, models=models)
    out["cosine_3utt_models_s"] = round(time.perf_counter() - t0, 3)
    out["models"] = len(models)
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
        n = args.trial_lines
        e, t, y = rng.integers(0, args.utterances, n), rng.integers(0, args.utterances, n), rng.random(n) < 0.5
        rows = list(zip([ids[i] for i in e], [ids[i] for i in t], y.tolist()))
        write_trials(Path(d) / "kaldi", rows)
        with open(Path(d) / "vox", "w") as f:
            f.writelines(f"{int(c)} {a} {b}\n" for a, b, c in rows)
        out["trial_lines"] = n
        for fmt in ("kaldi", "vox"):
            t0 = time.perf_counter()
            r = read_trials(Path(d) / fmt)
            out[f"read_trials_{fmt}_s"] = round(time.perf_counter() - t0, 3)
            assert len(r) == n and r.enroll[-1] == rows[-1][0]
    print(json.dumps(out, indent=1))


def _models(ids, spk, enrol, rng):
    """Enrolment id -> itself and two other utterances of its speaker (where it has them)."""
    by_spk = {}
    for u, s in zip(ids, spk.tolist()):
        by_spk.setdefault(s, []).append(u)
    index = {u: i for i, u in enumerate(ids)}
    out = {}
    for u in enrol:
        same = by_spk[spk[index[u]]]
        out[u] = [u] + [same[k] for k in rng.choice(len(same), min(2, len(same)), replace=False) if same[k] != u][:2]
    return out


if __name__ == "__main__":
    main()
