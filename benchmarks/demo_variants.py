"""Paired effect of a training change on the demo's table: runs of ``jeffreys demo`` that
differ in one option (``--set KEY=VALUE``) against a reference run, system by system.

Each variant's system X is compared with the reference's system X on every evaluation set,
paired over the seeds and the evaluation speakers (the same bootstrap as the demo's own
comparisons, :func:`jeffreys.experiment.statistics.set_statistics`), and Holm's adjustment runs
over the whole family (variants x systems x sets x metrics). The runs must share their
corpus, seeds and trials (``jeffreys demo`` with the same ``--seed``); this is checked.

    .venv/bin/python benchmarks/demo_variants.py REF_DIR NAME=DIR [NAME=DIR ...] [--n-boot 5000]

Prints JSON (every comparison with its interval, p and p_adjusted) and, with --markdown FILE,
writes the table of relative EER changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from jeffreys.data.datadir import read_datadir
from jeffreys.data.trials import label_scores, read_scores
from jeffreys.experiment.statistics import adjust_comparisons, distinguishable, min_replicates, set_statistics
from jeffreys.fileio import read_text
from jeffreys.metrics import speaker_groups


def _results(run: Path) -> dict:
    return json.loads(read_text(run / "results.json", "results")[1])  # within the list limits


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reference", type=Path, help="the reference run's output directory")
    ap.add_argument("variants", nargs="+", metavar="NAME=DIR", help="a variant's name and output directory")
    ap.add_argument("--n-boot", type=int, default=5000)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    runs = {"ref": args.reference}
    for v in args.variants:
        name, _, where = v.partition("=")
        runs[name] = Path(where)
    res = {k: _results(d) for k, d in runs.items()}
    ref = res["ref"]
    seeds = ref["environment"]["seeds"]
    systems = list(ref["systems"])
    sets = [s for s in ref["systems"][systems[0]]["eval"]]
    for k, r in res.items():
        if r["environment"]["seeds"] != seeds or list(r["systems"]) != systems:
            sys.exit(f"{runs[k]}: other seeds or systems than the reference")
    p_target = ref["systems"][systems[0]]["eval"][sets[0]]["p_target"]
    family: dict = {}
    report: dict = {"reference": str(args.reference), "variants": {k: str(v) for k, v in runs.items() if k != "ref"},
                    "seeds": seeds, "n_boot": args.n_boot, "sets": {}}
    for ev in sets:
        trials_path = args.reference / "corpus" / ev / "trials"
        for k, d in runs.items():
            if _digest(d / "corpus" / ev / "trials") != _digest(trials_path):
                sys.exit(f"{d}: another trial list for {ev} than the reference's")
        scores, labels = {}, None
        for k, d in runs.items():
            for s in systems:
                per_seed = []
                for seed in seeds:
                    path = d / "systems" / s / f"seed-{seed}" / "scores" / f"{ev}.txt"
                    sc = read_scores(path)
                    lab = label_scores(sc, trials_path, path)
                    if labels is None:
                        labels, enroll = lab, sc.enroll
                    elif not (np.array_equal(lab, labels) and sc.enroll == enroll):
                        sys.exit(f"{path}: trials in another order than the reference's")
                    per_seed.append(np.asarray(sc.score))
                scores[f"{k}/{s}"] = per_seed
        groups = speaker_groups(enroll, read_datadir(args.reference / "corpus" / ev, check_files=False).utt2spk)
        refs = {f"{k}/{s}": f"ref/{s}" for k in runs if k != "ref" for s in systems}
        st = set_statistics(scores, labels, groups, refs, p_target=p_target, n_boot=args.n_boot, seed=0)
        report["sets"][ev] = {"means": {n: {m: float(v) for m, v in st.means[n].items()} for n in scores},
                              "comparisons": st.comparisons}
        family[ev] = st.comparisons
    multiplicity = adjust_comparisons(family)
    report["multiplicity"] = {**multiplicity, "min_replicates": min_replicates(multiplicity["family"])}
    rows = ["| variant | system | " + " | ".join(sets) + " |", "|---|---|" + "---|" * len(sets)]
    for k in runs:
        if k == "ref":
            continue
        for s in systems:
            cells = []
            for ev in sets:
                c = family[ev][f"{k}/{s}"]["eer"]
                lo, hi = c["ci"]
                mark = " **" if distinguishable(c) else ""
                cells.append(f"{100 * c['diff_rel']:+.0f} % [{100 * lo:+.0f}, {100 * hi:+.0f}]{mark}")
            rows.append(f"| {k} | {s} | " + " | ".join(cells) + " |")
    report["markdown"] = "\n".join(rows)
    if args.markdown:
        args.markdown.write_text(report["markdown"] + "\n")
    json.dump(report, sys.stdout, indent=1, default=float)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
