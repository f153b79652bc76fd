"""Build time of the embedded corpus and the EER of an MFCC-statistics baseline per split.

The baseline: 20 MFCCs (c1..c20 of a DCT-II of 40 Kaldi log mel filterbanks, 25 ms / 10 ms,
from ``jeffreys.features``), frames kept by an energy VAD (c0 above its 30th percentile
in the utterance), summarised per utterance by their mean and standard deviation (40
dims). Two back-ends, both trained on the ``train`` split only:

* ``cosine``: standardise each dimension with the training mean and std, cosine score;
* ``lda``: the same, then LDA to ``--lda-dim`` dims (within-/between-speaker scatter of
  the training speakers), centred on the training mean, cosine score.

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
import scipy.fft
import scipy.linalg
import torch

from jeffreys.audio import load_utterance
from jeffreys.corpora.synth import EVAL_SPLITS, build_synth_corpus
from jeffreys.data.datadir import read_datadir
from jeffreys.data.trials import read_trials
from jeffreys.features import Fbank
from jeffreys.metrics import evaluate


_FBANK = Fbank(num_mel_bins=40, sample_rate=16000, mean_norm=False)


def mfcc_stats(wave: np.ndarray, n_ceps: int = 20) -> np.ndarray:
    with torch.no_grad():
        logmel = _FBANK(torch.from_numpy(wave)).numpy().astype(np.float64)
    ceps = scipy.fft.dct(logmel, type=2, norm="ortho", axis=1)[:, : n_ceps + 1]
    keep = ceps[:, 0] >= np.percentile(ceps[:, 0], 30)
    c = ceps[keep, 1:]
    return np.concatenate([c.mean(0), c.std(0)])


def split_stats(path: Path) -> tuple[list[str], np.ndarray, list[str]]:
    dd = read_datadir(path)
    utts = dd.utts
    x = np.stack([mfcc_stats(load_utterance(dd, u, 16000)) for u in utts])
    return utts, x, [dd.utt2spk[u] for u in utts]


def lda(x: np.ndarray, spk: list[str], dim: int) -> np.ndarray:
    """Projection [D, dim] maximising between- over within-speaker scatter."""
    labels = np.unique(spk, return_inverse=True)[1]
    mu = x.mean(0)
    sw = np.zeros((x.shape[1],) * 2)
    sb = np.zeros_like(sw)
    for k in range(labels.max() + 1):
        xk = x[labels == k]
        mk = xk.mean(0)
        sw += (xk - mk).T @ (xk - mk)
        sb += len(xk) * np.outer(mk - mu, mk - mu)
    sw += 1e-6 * np.trace(sw) / len(sw) * np.eye(len(sw))
    _, vecs = scipy.linalg.eigh(sb, sw)
    return vecs[:, ::-1][:, :dim]


def cosine_eer(emb: dict[str, np.ndarray], trials_path: Path) -> float:
    tr = read_trials(trials_path)
    e = np.stack([emb[u] for u in tr.enroll])
    t = np.stack([emb[u] for u in tr.test])
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    return float(evaluate((e * t).sum(1), tr.label)["eer"])


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
        _, xtr, spk = split_stats(corpus / "train")
        mu, sd = xtr.mean(0), xtr.std(0) + 1e-8
        ztr = (xtr - mu) / sd
        proj = lda(ztr, spk, args.lda_dim)
        centre = (ztr @ proj).mean(0)
        out["splits"] = {}
        for name in EVAL_SPLITS:
            utts, x, _ = split_stats(corpus / name)
            z = (x - mu) / sd
            trials = corpus / name / "trials"
            out["splits"][name] = {
                "eer_cosine": round(cosine_eer(dict(zip(utts, z)), trials), 4),
                "eer_lda": round(cosine_eer(dict(zip(utts, z @ proj - centre)), trials), 4),
                "trials": info["splits"][name]["trials"],
                "targets": info["splits"][name]["targets"],
            }
        out["baseline_s"] = round(time.perf_counter() - t0, 1)
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
