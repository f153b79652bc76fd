"""Evaluation power: interval half-width against the number of evaluation speakers.

For trained models and one evaluation split of the embedded corpus, draws ``--subsets``
random sets of N speakers for each N of ``--sizes``, scores every target pair and every
non-target pair of the same gender and language within the set (centred cosine, the paper's
back-end), and measures with the experiment's statistics (:mod:`jeffreys.experiment.statistics`,
one seed per model, so these intervals cover evaluation speakers only):

* the 95 % half-width of the first model's EER (percentage points, and relative to the EER);
* with two models, the 95 % half-width of the paired relative change of EER between them and
  how often that change is distinguishable from 0;

and the CPU cost that N speakers add to an experiment: synthesis (``--synth-cpu-per-utt``,
measured by the caller when building the corpus) and extraction (measured here, per model).
Prints one JSON object.

    python benchmarks/eval_power.py --corpus DIR --models aam.pt jeffreys.pt --labels AAM Jeffreys
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import torch


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def read_map(path: Path) -> dict[str, str]:
    return dict(line.split()[:2] for line in path.read_text().splitlines() if line.strip())


def centred_unit(emb: np.ndarray, mean: np.ndarray) -> np.ndarray:
    x = emb.astype(np.float64) - mean
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def trial_list(speakers: list[str], spk2utt: dict, spk2gender: dict, spk2lang: dict):
    """All target pairs, and all non-target pairs of the same gender and language."""
    enroll, test, label = [], [], []
    for s in speakers:
        for a, b in combinations(spk2utt[s], 2):
            enroll.append(a), test.append(b), label.append(True)
    for s, t in combinations(speakers, 2):
        if spk2gender[s] == spk2gender[t] and spk2lang[s] == spk2lang[t]:
            for a in spk2utt[s]:
                for b in spk2utt[t]:
                    enroll.append(a), test.append(b), label.append(False)
    return enroll, test, np.array(label)


def main() -> None:
    from jeffreys.data.datadir import read_datadir
    from jeffreys.experiment.stages import subset_utts, write_subset
    from jeffreys.experiment.statistics import set_statistics
    from jeffreys.extract import extract

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="an embedded corpus (jeffreys prepare synth)")
    ap.add_argument("--models", type=Path, nargs="+", required=True, help="trained bundles; the first is the reference")
    ap.add_argument("--labels", nargs="+", help="their names (default: file stems)")
    ap.add_argument("--split", default="in_domain")
    ap.add_argument("--sizes", default="20,40,80,120,160,240", help="numbers of evaluation speakers")
    ap.add_argument("--subsets", type=int, default=8, help="random speaker sets per size")
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--train-utts", type=int, default=400, help="training utterances for the centring mean")
    ap.add_argument("--synth-cpu-per-utt", type=float, default=None, help="CPU seconds per synthesised utterance")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    labels = args.labels or [m.stem for m in args.models]
    split = read_datadir(args.corpus / args.split)
    spk2gender = read_map(args.corpus / args.split / "spk2gender")
    utt2lang = read_map(args.corpus / args.split / "utt2lang")
    spk2lang = {s: utt2lang[us[0]] for s, us in split.spk2utt.items()}
    train = read_datadir(args.corpus / "train")
    sub = subset_utts(train, args.train_utts, 0)
    emb, cost = {}, {}
    with tempfile.TemporaryDirectory(prefix="eval_power.") as tmp:
        sub_dir = write_subset(train, sub, Path(tmp) / "train_subset")
        means = {name: np.asarray(extract(path, sub_dir, progress=False, num_workers=1, crop_fraction=0.1)[1]).mean(axis=0)
                 for path, name in zip(args.models, labels)}
    for path, name in zip(args.models, labels):
        t = cpu_seconds()
        ids, e = extract(path, args.corpus / args.split, progress=False, num_workers=1, crop_fraction=0.1)
        cost[name] = (cpu_seconds() - t) / len(ids)
        emb[name] = dict(zip(ids, centred_unit(np.asarray(e), means[name])))

    rng = np.random.default_rng(args.seed)
    speakers = sorted(split.spk2utt)
    utts_per_spk = float(np.mean([len(u) for u in split.spk2utt.values()]))
    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        if n > len(speakers):
            continue
        hw, rel, dhw, dist, eers, n_trials = [], [], [], [], [], []
        for _ in range(args.subsets):
            chosen = sorted(rng.choice(speakers, n, replace=False).tolist())
            enroll, test, y = trial_list(chosen, split.spk2utt, spk2gender, spk2lang)
            scores = {name: [np.einsum("ij,ij->i", np.stack([emb[name][u] for u in enroll]),
                                       np.stack([emb[name][u] for u in test]))] for name in labels}
            groups = [split.utt2spk[u] for u in enroll]
            st = set_statistics(scores, y, groups, labels[0], n_boot=args.n_boot, seed=int(rng.integers(1 << 30)))
            lo, hi = st.intervals[labels[0]]["eer"]
            eer = st.means[labels[0]]["eer"]
            eers.append(eer), hw.append((hi - lo) / 2), rel.append((hi - lo) / 2 / eer if eer > 0 else np.nan)
            n_trials.append(len(y))
            if len(labels) > 1:
                c = st.comparisons[labels[1]]["eer"]
                dhw.append((c["ci"][1] - c["ci"][0]) / 2)
                dist.append(c["ci"][0] > 0 or c["ci"][1] < 0)
        row = {"speakers": n, "trials": int(np.mean(n_trials)), "eer_percent": 100 * float(np.mean(eers)),
               "eer_ci_halfwidth_points": 100 * float(np.mean(hw)), "eer_ci_halfwidth_relative": float(np.nanmean(rel))}
        if dhw:
            row["delta_eer_rel_ci_halfwidth"] = float(np.mean(dhw))
            row["distinguishable_fraction"] = float(np.mean(dist))
        row["extraction_cpu_s_per_model"] = {k: round(v * n * utts_per_spk, 2) for k, v in cost.items()}
        if args.synth_cpu_per_utt:
            row["synthesis_cpu_s_per_split"] = round(args.synth_cpu_per_utt * n * utts_per_spk, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({
        "benchmark": "eval_power", "corpus": str(args.corpus.name), "split": args.split, "models": labels,
        "subsets": args.subsets, "n_boot": args.n_boot, "utts_per_speaker": utts_per_spk,
        "extraction_cpu_ms_per_utt": {k: round(1e3 * v, 2) for k, v in cost.items()},
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}, 1 thread",
        "date": time.strftime("%Y-%m-%d"), "rows": rows,
    }, indent=1))


if __name__ == "__main__":
    main()
