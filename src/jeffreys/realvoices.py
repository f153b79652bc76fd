"""The demo's optional real-voice stage: the systems against the MFCC-statistics baseline on
recorded voices (a ``jeffreys prepare debvoices`` output, or any data dir with trial lists).

:func:`real_voice_sets` adds the evaluation sets to an experiment: ``real`` (every pair of the
evaluation utterances), ``real_same_gender`` and ``real_cross_lang`` where those lists exist.
The runner then embeds, centres and scores them like any other set, with the table's seed
intervals. :func:`compare_with_baseline` puts the MFCC-statistics baseline
(:mod:`jeffreys.baseline`, ``cosine`` back-end standardised on the same training subset the
systems are centred with) on the same trials and compares every system with it, paired over
training seeds and evaluation speakers (:mod:`jeffreys.experiment.statistics`): the baseline
depends on no seed, so it enters as the same scores for every seed. These comparisons are a
family of their own: ``real_voices.json`` carries their ``p_adjusted`` (Holm over every
system, list and metric of the stage) and its own ``multiplicity`` record, apart from the
experiment's ``results.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import InputError
from .experiment.config import EvalSpec, ExperimentConfig
from .fileio import write_text_atomic

# (set name, trial list file) in the order they are reported.
TRIAL_LISTS = (("real", "trials"), ("real_same_gender", "trials_same_gender"), ("real_cross_lang", "trials_cross_lang"))
BASELINE = "mfcc_stats"


def real_eval_dir(root: str | Path) -> Path:
    """The evaluation data dir of ``root``: ``root/eval`` (a ``prepare debvoices`` output) or
    ``root`` itself when it holds a ``trials`` file."""
    root = Path(root)
    for d in (root / "eval", root):
        if (d / "trials").is_file() and (d / "wav.scp").is_file():
            return d
    raise InputError(f"{root}: no real-voice evaluation set (expected eval/trials and eval/wav.scp, "
                     f"as `jeffreys prepare debvoices` writes them)")


def real_voice_sets(root: str | Path) -> list[EvalSpec]:
    """The evaluation sets of the real voices under ``root`` (lists that are absent are left out)."""
    d = real_eval_dir(root)
    return [EvalSpec(name, str(d), str(d / f), domain="real") for name, f in TRIAL_LISTS if (d / f).is_file()]


def _scores_in_trial_order(path: Path, trials) -> np.ndarray:
    from .data.trials import read_scores

    sc = read_scores(path)
    if sc.enroll != trials.enroll or sc.test != trials.test:
        raise InputError(f"{path}: scores are not in the order of the trial list; delete the run's scores and re-run")
    return sc.score


def compare_with_baseline(cfg: ExperimentConfig, out: Path, sets: list[EvalSpec], baseline_train: Path, log) -> dict:
    """The baseline on every real-voice set and each system's paired change against it.
    Reads the runs' scores from ``out``; writes ``out/real_voices.json`` and returns it."""
    from .baseline import MfccBaseline, cosine, datadir_stats
    from .data.datadir import read_datadir
    from .data.trials import read_trials
    from .experiment.training import run_dir
    from .experiment.statistics import adjust_comparisons, set_statistics
    from .metrics import speaker_groups

    m = cfg.metrics
    _, x_train, _ = datadir_stats(baseline_train)
    model = MfccBaseline.fit(x_train)
    by_dir: dict[str, tuple[dict, dict]] = {}
    report: dict = {"baseline": {"name": BASELINE, "standardised_on": str(baseline_train),
                                 "what": "mean and std of 20 MFCCs over energy-VAD frames, standardised, cosine"},
                    "sets": {}}
    for ev in sets:
        if ev.data not in by_dir:
            utts, x, _ = datadir_stats(ev.data)
            by_dir[ev.data] = (dict(zip(utts, model.embed(x))), read_datadir(ev.data, check_files=False).utt2spk)
        emb, utt2spk = by_dir[ev.data]
        tri = read_trials(ev.trials)
        try:
            base = cosine(np.stack([emb[u] for u in tri.enroll]), np.stack([emb[u] for u in tri.test]))
        except KeyError as e:
            raise InputError(f"{ev.trials}: utterance {e.args[0]} is not in {ev.data}") from None
        scores = {s.name: [_scores_in_trial_order(run_dir(out, s.name, seed) / "scores" / f"{ev.name}.txt", tri)
                           for seed in cfg.seeds] for s in cfg.systems}
        scores[BASELINE] = [base] * len(cfg.seeds)  # no seed moves it
        st = set_statistics(scores, tri.label, speaker_groups(tri.enroll, utt2spk),
                            {s.name: BASELINE for s in cfg.systems}, p_target=m.p_target, n_boot=m.n_boot, ci=m.ci, seed=m.seed)
        report["sets"][ev.name] = {
            "trials": len(tri), "targets": tri.n_target,
            "systems": {s: {"eer": st.means[s]["eer"], "min_dcf": st.means[s]["min_dcf"],
                            "eer_ci": list(st.intervals[s]["eer"]) if st.intervals else None,
                            "per_seed_eer": st.per_seed[s]["eer"]} for s in scores},
            "vs_baseline": dict(st.comparisons),
        }
        log(f"{ev.name}: MFCC-statistics baseline EER {100 * st.means[BASELINE]['eer']:.2f} %")
    # one family: every system against the baseline on every list, EER, minDCF and Cllr
    report["multiplicity"] = adjust_comparisons({name: r["vs_baseline"] for name, r in report["sets"].items()})
    write_text_atomic(out / "real_voices.json", json.dumps(report, indent=2) + "\n")
    return report


def real_voices_markdown(report: dict, labels: dict[str, str], level: float = 0.95, n_boot: int | None = None) -> str:
    """Per real-voice set: each system's seed-mean EER with its interval, the baseline's, and
    the system's relative change against the baseline (negative = better), bold where it is
    distinguishable after control over the stage's family (``p_adjusted``, ``report["multiplicity"]``).
    ``n_boot``: the replicates, to say when they are too few for any claim in that family."""
    from .experiment.statistics import alpha_of, distinguishable, multiplicity_text, resolution_note

    alpha = alpha_of(level)
    mult = report["multiplicity"]
    lines = []
    for name, r in report["sets"].items():
        lines += [f"\n{name} ({r['trials']} trials, {r['targets']} targets)\n",
                  "| System | EER % [interval] | minDCF | vs MFCC baseline: ΔEER [interval], p, adj. |", "|---|---:|---:|---:|"]
        for s, v in r["systems"].items():
            ci = v["eer_ci"]
            eer = f"{100 * v['eer']:.2f}" + (f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]" if ci else "")
            c = r["vs_baseline"].get(s)
            if c is None:
                delta = "(reference)"
            else:
                e = c["eer"]
                lo, hi = e["ci"]
                delta = f"{100 * e['diff_rel']:+.1f} % [{100 * lo:+.1f}, {100 * hi:+.1f}]"
                if e["p_adjusted"] is not None:
                    delta += f", p {e['p']:.3f}, adj. {e['p_adjusted']:.3f}"
                delta = f"**{delta}**" if distinguishable(e, alpha) else f"{delta} n.d."
            label = "MFCC statistics (baseline)" if s == BASELINE else labels.get(s, s)
            lines.append(f"| {label} | {eer} | {v['min_dcf']:.3f} | {delta} |")
    lines.append(f"\nSeed means; [{100 * level:g} % intervals] over training seeds and evaluation speakers; the change "
                 f"against the baseline is paired over both (negative = better); adj.: its p adjusted by "
                 f"{multiplicity_text(mult)} (every system, list and metric of this stage, a family apart from "
                 f"results.json's; family-wise error <= {100 * alpha:g} %). **Bold**: distinguishable (adjusted p < "
                 f"{alpha:g}); n.d.: not distinguishable, even where the interval alone excludes 0.")
    note = resolution_note(mult, n_boot, alpha) if n_boot else None
    if note:
        lines.append(f"Note: {note[0].upper()}{note[1:]}")
    return "\n".join(lines) + "\n"


__all__ = ["BASELINE", "TRIAL_LISTS", "compare_with_baseline", "real_eval_dir", "real_voice_sets", "real_voices_markdown"]
