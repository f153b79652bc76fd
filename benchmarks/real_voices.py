"""EER and minDCF on real recorded voices (`jeffreys prepare debvoices`): the MFCC-statistics
baseline and trained models, on the three trial lists of DATA/eval, with intervals.

* ``mfcc_cosine``: :mod:`jeffreys.baseline`'s ``cosine`` back-end (the definition of
  benchmarks/synth_baseline.py), standardised with the statistics of ``--baseline-train``
  (the embedded corpus's ``train`` split for the figures of docs/real-voices.md; default
  DATA/train);
* ``NAME``: ``--model NAME=model.pt``, repeatable; several models under one NAME are seeds of
  one system. Embeddings of DATA/eval centred by the bundle's mean (``meta["mean"]``, as
  `jeffreys demo` and `jeffreys extract --store-mean` leave it) or, for a bundle without one,
  by the mean embedding of ``--mean-data``; cosine scoring. ``--train-mean`` adds
  ``NAME+trainmean``: centred by the mean of ``--mean-utts`` DATA/train utterances instead
  (unlabelled real speech).

Per run: EER, minDCF (p_target 0.01) and a percentile bootstrap interval resampling
enrolment speakers (as `jeffreys metrics --ci --ci-by speaker --utt2spk DATA/eval/utt2spk`).
Per system: the mean EER over its seeds and an interval covering seed and speaker variance;
``--reference NAME``: the relative EER change of every other system against it (negative =
better), paired over seeds and speakers — both through
:func:`jeffreys.experiment.statistics.set_statistics`, as `jeffreys experiment` reports them —
with its bootstrap ``p`` and ``p_adjusted``: Holm over every such comparison this invocation
prints (every system but the reference × every trial list; the top-level ``multiplicity``
names method and family). A change is distinguishable only when ``p_adjusted < 0.05``. CPU
seconds are this process's user+sys. Prints one JSON object.

    python benchmarks/real_voices.py --data data/debvoices --baseline-train demo/corpus/train \\
        --model demo=demo/model.pt --reference mfcc_cosine
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from jeffreys.baseline import MfccBaseline, cosine, datadir_stats
from jeffreys.data.datadir import read_datadir
from jeffreys.data.trials import read_trials
from jeffreys.extract import extract
from jeffreys.experiment.stages import subset_utts, write_subset
from jeffreys.experiment.statistics import adjust_comparisons, set_statistics
from jeffreys.metrics import bootstrap_ci, evaluate, speaker_groups
from jeffreys.models.bundle import load_bundle

TRIAL_LISTS = ("trials", "trials_same_gender", "trials_cross_lang")


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class TrialList:
    """A trial list with what every scoring and bootstrap of it needs."""

    def __init__(self, path: Path, utt2spk: dict[str, str]):
        self.trials = read_trials(path)
        self.labels = self.trials.label.astype(bool)
        _, self.group = np.unique(speaker_groups(self.trials.enroll, utt2spk), return_inverse=True)
        self.n_groups = int(self.group.max()) + 1

    def scores(self, emb: dict[str, np.ndarray]) -> np.ndarray:
        tr = self.trials
        return cosine(np.stack([emb[u] for u in tr.enroll]), np.stack([emb[u] for u in tr.test]))


def run_figures(scores: np.ndarray, tl: TrialList, n_boot: int, seed: int) -> dict:
    res = evaluate(scores, tl.labels)
    ci = bootstrap_ci(scores, tl.labels, n_boot=n_boot, seed=seed, groups=tl.group)
    return {
        "eer": round(float(res["eer"]), 4),
        "eer_ci": [round(v, 4) for v in ci["eer"]],
        "min_dcf": round(float(res["min_dcf"][0.01]), 4),
        "min_dcf_ci": [round(v, 4) for v in ci["min_dcf"][0.01]],
        "trials": len(tl.labels),
        "targets": int(tl.labels.sum()),
    }


def seed_intervals(runs: dict[str, list[np.ndarray]], tl: TrialList, reference: str | None, n_boot: int, seed: int) -> dict:
    """Per system: the mean EER over its seeds with an interval resampling seeds and speakers,
    and the relative change against ``reference`` paired over seeds and speakers
    (:func:`jeffreys.experiment.statistics.set_statistics`, as `jeffreys experiment` reports).
    A reference with one run (the baseline: no seed moves it) enters with those scores for
    every seed; otherwise the first seeds common to both are paired."""
    out = {}
    for name, scores in runs.items():
        st = set_statistics({name: scores}, tl.labels, tl.group, {}, n_boot=n_boot, seed=seed)
        row = {"seeds": len(scores), "eer_mean": round(st.means[name]["eer"], 4),
               "eer_mean_ci": [round(v, 4) for v in st.intervals[name]["eer"]]}  # fmt: skip
        if reference is not None and name != reference:
            ref = runs[reference]
            n = len(scores) if len(ref) == 1 else min(len(scores), len(ref))
            pair = {reference: ref * n if len(ref) == 1 else ref[:n], name: scores[:n]}
            c = set_statistics(pair, tl.labels, tl.group, reference, n_boot=n_boot, seed=seed).comparisons[name]["eer"]
            # p unrounded until the family is adjusted (main)
            row["vs_" + reference] = {"seeds": n, "diff_rel": round(c["diff_rel"], 4),
                                      "ci": [round(v, 4) for v in c["ci"]], "p": c["p"]}  # fmt: skip
        out[name] = row
    return out


def subset_dir(src: Path, dst: Path, n: int, seed: int) -> Path:
    """A data dir of ``n`` utterances of ``src``, spread over speakers as the experiment
    runner draws its training subsets (all when fewer)."""
    dd = read_datadir(src)
    return write_subset(dd, subset_utts(dd, n, seed), dst)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="output of `jeffreys prepare debvoices`")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH", help="a model bundle (repeatable; one NAME per system, one PATH per seed)")
    ap.add_argument("--baseline-train", type=Path, help="data dir standardising the baseline (default DATA/train)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the MFCC baseline")
    ap.add_argument("--mean-data", type=Path, help="data dir whose mean embedding centres a bundle without a mean")
    ap.add_argument("--train-mean", action="store_true", help="also centre each model by DATA/train's mean embedding")
    ap.add_argument("--mean-utts", type=int, default=300, help="DATA/train utterances for that mean (default 300)")
    ap.add_argument("--reference", help="system the others are compared with (e.g. mfcc_cosine)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scores-dir", type=Path, help="also save each run's scores there (NAME.TRIALLIST.npy, in trial order)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    eval_dir = args.data / "eval"
    utt2spk = read_datadir(eval_dir, check_files=False).utt2spk
    lists = {name: TrialList(eval_dir / name, utt2spk) for name in TRIAL_LISTS if (eval_dir / name).is_file()}
    out: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}",
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/real_voices.py " + " ".join(sys.argv[1:]),
        "runs": {},
    }
    scored: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in lists}  # list -> system -> runs

    def add_run(system: str, run: str, emb: dict[str, np.ndarray], extra: dict) -> None:
        row = {"system": system}
        for name, tl in lists.items():
            s = tl.scores(emb)
            scored[name].setdefault(system, []).append(s)
            row[name] = run_figures(s, tl, args.n_boot, args.seed)
            if args.scores_dir is not None:
                args.scores_dir.mkdir(parents=True, exist_ok=True)
                np.save(args.scores_dir / f"{run.replace('/', '_')}.{name}.npy", s.astype(np.float32))
        out["runs"][run] = {**row, **extra}

    if not args.no_baseline:
        c0 = cpu_seconds()
        _, xtr, _ = datadir_stats(args.baseline_train or args.data / "train")
        base = MfccBaseline.fit(xtr)
        utts, x, _ = datadir_stats(eval_dir)
        add_run("mfcc_cosine", "mfcc_cosine", dict(zip(utts, base.embed(x))),
                {"standardised_on": str(args.baseline_train or args.data / "train"), "cpu_s": round(cpu_seconds() - c0, 1)})  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        train_sub = subset_dir(args.data / "train", Path(tmp) / "train_sub", args.mean_utts, args.seed) if args.train_mean else None
        for k, spec in enumerate(args.model):
            name, _, path = spec.partition("=")
            if not path:
                ap.error(f"--model {spec!r}: want NAME=PATH")
            run = f"{name}#{sum(1 for s in args.model[:k] if s.partition('=')[0] == name)}"
            c0, t0 = cpu_seconds(), time.perf_counter()
            bundle = load_bundle(path)
            ids, e = extract(bundle, eval_dir, progress=False, num_workers=0)
            mean, how = bundle.meta.get("mean"), "bundle mean"
            if mean is None and args.mean_data is not None:
                mean, how = extract(bundle, args.mean_data, progress=False, num_workers=0)[1].mean(0), f"mean of {args.mean_data}"
            if mean is None:
                how = "none (the bundle has no mean)"
            centred = e - np.asarray(mean, np.float32) if mean is not None else e
            extra = {"model": path, "centred_by": how, "extract_cpu_s": round(cpu_seconds() - c0, 1),
                     "extract_wall_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
            add_run(name, run, dict(zip(ids, centred)), extra)
            if train_sub is not None:
                _, t = extract(bundle, train_sub, progress=False, num_workers=0)
                add_run(name + "+trainmean", run.replace("#", "+trainmean#"), dict(zip(ids, e - t.mean(0))), {"model": path})
    if args.reference is not None and args.reference not in scored["trials"]:
        ap.error(f"--reference {args.reference!r}: no such system")
    out["systems"] = {}
    for name, tl in lists.items():
        for system, row in seed_intervals(scored[name], tl, args.reference, args.n_boot, args.seed).items():
            out["systems"].setdefault(system, {})[name] = row
    if args.reference is not None:  # one family: every comparison printed
        out["multiplicity"] = adjust_comparisons(out["systems"])
        for per_list in out["systems"].values():
            for row in per_list.values():
                c = row.get("vs_" + args.reference)
                if c is not None:
                    c["p"] = round(c["p"], 4)
                    c["p_adjusted"] = None if c["p_adjusted"] is None else round(c["p_adjusted"], 4)
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
