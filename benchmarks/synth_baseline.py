"""Build time of the embedded corpus and the EER of an MFCC-statistics baseline per split.

The baseline is :mod:`jeffreys.baseline`: per utterance the mean and standard deviation of
20 MFCCs over energy-VAD frames (40 dims), with two back-ends trained on the ``train`` split
only: ``cosine`` (each dimension standardised with the training mean and std, cosine score)
and ``lda`` (the same, then LDA to ``--lda-dim`` dims, centred on the training mean).

EER from ``jeffreys.metrics.evaluate`` (exact ROC EER). Prints one JSON object.

    python benchmarks/synth_baseline.py                 # build the default corpus, then score
    python benchmarks/synth_baseline.py --corpus DIR    # score an existing corpus
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from jeffreys.baseline import MfccBaseline, cosine, datadir_stats
from jeffreys.corpora.synth import EVAL_SPLITS, build_synth_corpus
from jeffreys.data.trials import read_trials
from jeffreys.metrics import evaluate


def cosine_eer(emb: dict[str, np.ndarray], trials_path: Path) -> float:
    tr = read_trials(trials_path)
    e = np.stack([emb[u] for u in tr.enroll])
    t = np.stack([emb[u] for u in tr.test])
    return float(evaluate(cosine(e, t), tr.label)["eer"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, help="an existing corpus (default: build the default one in a temp dir)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--lda-dim", type=int, default=32)
    args = ap.parse_args()

    out: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}"}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus
        if corpus is None:
            t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            corpus = build_synth_corpus(Path(tmp) / "synth", seed=args.seed, jobs=args.jobs)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            out["build_wall_s"] = round(time.perf_counter() - t0, 1)
            out["build_cpu_s"] = round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 1)
            out["build_command"] = f"build_synth_corpus(DST, seed={args.seed}, jobs={args.jobs})"
        info = json.loads((corpus / "info.json").read_text())
        out["corpus"] = {k: info[k] for k in ("seed", "sizes")}
        t0 = time.perf_counter()
        _, xtr, spk = datadir_stats(corpus / "train")
        plain = MfccBaseline.fit(xtr)
        with_lda = MfccBaseline.fit(xtr, spk, args.lda_dim)
        out["splits"] = {}
        for name in EVAL_SPLITS:
            utts, x, _ = datadir_stats(corpus / name)
            trials = corpus / name / "trials"
            out["splits"][name] = {
                "eer_cosine": round(cosine_eer(dict(zip(utts, plain.embed(x))), trials), 4),
                "eer_lda": round(cosine_eer(dict(zip(utts, with_lda.embed(x))), trials), 4),
                "trials": info["splits"][name]["trials"],
                "targets": info["splits"][name]["targets"],
            }
        out["baseline_s"] = round(time.perf_counter() - t0, 1)
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
