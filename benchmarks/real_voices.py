"""EER and minDCF on real recorded voices (`jeffreys prepare debvoices`): the MFCC-statistics
baseline and any number of trained models, on the three trial lists of DATA/eval.

* ``mfcc_cosine``: :mod:`jeffreys.baseline`'s ``cosine`` back-end (the same definition as
  benchmarks/synth_baseline.py), standardised with the statistics of ``--baseline-train``
  (default DATA/train: unlabelled real speech, only a mean and a scale per dimension);
* ``NAME``: each ``--model NAME=model.pt``, embeddings of DATA/eval centred by the bundle's
  own mean (its training set's, as `jeffreys score --mean` with that mean does) or, for a
  bundle without one, by the mean embedding of ``--mean-data`` (e.g. the 800 training
  utterances `jeffreys demo` extracts for it), cosine;
  with ``--train-mean``, also ``NAME+trainmean``: centred by the mean embedding of
  ``--mean-utts`` utterances of DATA/train instead (unlabelled in-domain speech).

Intervals: percentile bootstrap resampling enrolment speakers (`jeffreys metrics --ci
--ci-by speaker --utt2spk DATA/eval/utt2spk`). CPU seconds (user+sys of this process) per
system. Prints one JSON object.

    python benchmarks/real_voices.py --data data/debvoices --model demo=demo/model.pt
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from jeffreys.baseline import MfccBaseline, cosine, datadir_stats
from jeffreys.data.datadir import read_datadir, write_datadir
from jeffreys.data.trials import read_trials
from jeffreys.extract import extract
from jeffreys.metrics import bootstrap_ci, evaluate, speaker_groups
from jeffreys.models.bundle import load_bundle

TRIAL_LISTS = ("trials", "trials_same_gender", "trials_cross_lang")


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def figures(emb: dict[str, np.ndarray], eval_dir: Path, n_boot: int, seed: int) -> dict:
    """EER, minDCF (p_target 0.01) and speaker-bootstrap intervals on each trial list."""
    utt2spk = read_datadir(eval_dir, check_files=False).utt2spk
    out = {}
    for name in TRIAL_LISTS:
        path = eval_dir / name
        if not path.is_file():
            continue
        tr = read_trials(path)
        s = cosine(np.stack([emb[u] for u in tr.enroll]), np.stack([emb[u] for u in tr.test]))
        res = evaluate(s, tr.label)
        ci = bootstrap_ci(s, tr.label, n_boot=n_boot, seed=seed, groups=speaker_groups(tr.enroll, utt2spk))
        out[name] = {
            "eer": round(float(res["eer"]), 4),
            "eer_ci": [round(v, 4) for v in ci["eer"]],
            "min_dcf": round(float(res["min_dcf"][0.01]), 4),
            "min_dcf_ci": [round(v, 4) for v in ci["min_dcf"][0.01]],
            "trials": len(tr),
            "targets": tr.n_target,
        }
    return out


def subset_dir(src: Path, dst: Path, n: int, seed: int) -> Path:
    """A data dir of ``n`` utterances of ``src`` drawn with ``seed`` (all when fewer)."""
    dd = read_datadir(src)
    utts = dd.utts
    if len(utts) > n:
        utts = sorted(np.asarray(utts)[np.random.default_rng(seed).choice(len(utts), n, replace=False)].tolist())
    return write_datadir(dst, {u: dd.wav[u] for u in utts}, {u: dd.utt2spk[u] for u in utts})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="output of `jeffreys prepare debvoices`")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH", help="a model bundle (repeatable)")
    ap.add_argument("--baseline-train", type=Path, help="data dir standardising the baseline (default DATA/train)")
    ap.add_argument("--mean-data", type=Path, help="data dir whose mean embedding centres a bundle without a mean")
    ap.add_argument("--train-mean", action="store_true", help="also centre each model by DATA/train's mean embedding")
    ap.add_argument("--mean-utts", type=int, default=300, help="DATA/train utterances for that mean (default 300)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-baseline", action="store_true", help="skip the MFCC baseline")
    args = ap.parse_args()
    torch.set_num_threads(1)

    eval_dir = args.data / "eval"
    out: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}",
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/real_voices.py " + " ".join(sys.argv[1:]),
        "systems": {},
    }
    if not args.no_baseline:
        c0 = cpu_seconds()
        _, xtr, _ = datadir_stats(args.baseline_train or args.data / "train")
        base = MfccBaseline.fit(xtr)
        utts, x, _ = datadir_stats(eval_dir)
        out["systems"]["mfcc_cosine"] = figures(dict(zip(utts, base.embed(x))), eval_dir, args.n_boot, args.seed)
        out["systems"]["mfcc_cosine"]["cpu_s"] = round(cpu_seconds() - c0, 1)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        train_sub = subset_dir(args.data / "train", Path(tmp) / "train_sub", args.mean_utts, args.seed) if args.train_mean else None
        for spec in args.model:
            name, _, path = spec.partition("=")
            if not path:
                ap.error(f"--model {spec!r}: want NAME=PATH")
            c0, t0 = cpu_seconds(), time.perf_counter()
            bundle = load_bundle(path)
            ids, e = extract(bundle, eval_dir, progress=False, num_workers=0)
            mean, how = bundle.meta.get("mean"), "bundle mean"
            if mean is None and args.mean_data is not None:
                mean, how = extract(bundle, args.mean_data, progress=False, num_workers=0)[1].mean(0), f"mean of {args.mean_data}"
            centred = e - np.asarray(mean, np.float32) if mean is not None else e
            out["systems"][name] = figures(dict(zip(ids, centred)), eval_dir, args.n_boot, args.seed)
            out["systems"][name]["centred_by"] = how if mean is not None else "none (bundle has no mean)"
            if train_sub is not None:
                _, t = extract(bundle, train_sub, progress=False, num_workers=0)
                out["systems"][name + "+trainmean"] = figures(dict(zip(ids, e - t.mean(0))), eval_dir, args.n_boot, args.seed)
            out["systems"][name]["cpu_s"] = round(cpu_seconds() - c0, 1)
            out["systems"][name]["wall_s"] = round(time.perf_counter() - t0, 1)
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
