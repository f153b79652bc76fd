"""What each training idea bought on real voices: paired comparisons from saved scores.

Reads the per-run scores that ``benchmarks/real_voices.py --scores-dir DIR`` saves
(``NAME#K.LIST.npy``: system NAME, seed index K, in the order of DATA/eval/LIST) and compares
each ``SYSTEM:REFERENCE`` pair on one trial list with :func:`jeffreys.experiment.statistics.set_statistics`:
the seed-mean EER of both, and the relative change (negative = better) with an interval
paired over seeds (seed K of both) and evaluation speakers, and its bootstrap p-value. When
the two systems have different numbers of seeds, the first ones common to both are used.
The pairs of one invocation are one family: each gets ``p_adjusted`` (Holm over all of
them, the top-level ``multiplicity`` names method and family), and a change is
distinguishable only when ``p_adjusted < 0.05``. Prints one JSON object.

    python benchmarks/real_voices_curve.py --data data/debvoices --scores DIR \\
        --pair level:base --pair level_mixed100:level [--list trials] [--n-boot 400]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import sys
from pathlib import Path

import numpy as np

from jeffreys.data.datadir import read_datadir
from jeffreys.data.trials import read_trials
from jeffreys.experiment.statistics import adjust_comparisons, set_statistics
from jeffreys.metrics import speaker_groups


def seed_scores(scores_dir: Path, name: str, trial_list: str) -> list[np.ndarray]:
    """Scores of every seed of ``name`` on ``trial_list``, by seed index."""
    pat = re.compile(rf"{re.escape(name)}#(\d+)\.{re.escape(trial_list)}\.npy")
    found = sorted((int(m.group(1)), p) for p in scores_dir.iterdir() if (m := pat.fullmatch(p.name)))
    return [np.load(p, allow_pickle=False) for _, p in found]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="output of `jeffreys prepare debvoices`")
    ap.add_argument("--scores", type=Path, required=True, help="--scores-dir of benchmarks/real_voices.py")
    ap.add_argument("--pair", action="append", required=True, metavar="SYSTEM:REFERENCE")
    ap.add_argument("--list", default="trials", help="trial list of DATA/eval (default trials)")
    ap.add_argument("--n-boot", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    ev = args.data / "eval"
    tri = read_trials(ev / args.list)
    groups = speaker_groups(tri.enroll, read_datadir(ev, check_files=False).utt2spk)
    out = {"machine": f"{platform.machine()}, Python {platform.python_version()}", "date": datetime.date.today().isoformat(),
           "command": "python benchmarks/real_voices_curve.py " + " ".join(sys.argv[1:]), "list": args.list, "pairs": {}}
    for pair in args.pair:
        system, _, ref = pair.partition(":")
        a, b = seed_scores(args.scores, system, args.list), seed_scores(args.scores, ref, args.list)
        n = min(len(a), len(b))
        if n == 0 or not ref:
            print(f"real_voices_curve: no saved scores for {pair!r} in {args.scores}", file=sys.stderr)
            return 2
        st = set_statistics({ref: b[:n], system: a[:n]}, tri.label, groups, ref, n_boot=args.n_boot, seed=args.seed)
        c = st.comparisons[system]["eer"]
        out["pairs"][pair] = {"seeds": n, "eer": st.means[system]["eer"], "reference_eer": st.means[ref]["eer"],
                              "diff_rel": c["diff_rel"], "ci": c["ci"], "p": c["p"]}
    out["multiplicity"] = adjust_comparisons(out["pairs"])  # every pair of this invocation: one family
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
