"""Statistics over training seeds and evaluation speakers: what a comparison can claim.

A system's result on an evaluation set is the **mean over its training seeds** of the metric
of each seed's scores. Two sources of chance move it: the seeds (initial weights, the order
and augmentation of the data) and the evaluation speakers. The interval resamples both,
independently, as the factors of a crossed design (Owen's "pigeonhole" bootstrap, Ann.
Appl. Stat. 2007, slightly conservative): each replicate draws seeds with replacement and
enrolment speakers with replacement (whole speakers: all their trials), and takes the mean
over the drawn seeds of the metric on the drawn speakers.

A **comparison** of a system with the reference is paired: both see the same drawn seeds
(seed ``s`` of both starts from the same initial weights and data order, since those depend
on the seed only) and the same drawn speakers. Its figure is the relative change of the
seed-mean metric, ``(system - reference) / reference`` (negative = better), with the
replicates' percentile interval and a two-sided bootstrap p-value,
``p = min(1, 2 (min(#{d* <= 0}, #{d* >= 0}) + 1) / (B + 1))``; a difference is called
distinguishable at level ``ci`` exactly when its interval excludes 0.

With few seeds the seed factor is resampled from few values, and the bootstrap under-states
its spread (by a factor ``(n-1)/n`` in variance): three seeds give a rough interval, which
the per-seed values in ``results.json`` let a reader check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import SortedTrials, multiplicities, percentile_interval

METRICS = ("eer", "min_dcf", "cllr")


def _values(row: dict, p_target: float) -> list[float]:
    return [float(row["eer"]), float(row["min_dcf"][p_target]), float(row["cllr"])]


@dataclass
class SetStatistics:
    """One evaluation set: per system, seed-mean metrics, intervals, paired comparisons."""

    means: dict[str, dict[str, float]]  # system -> metric -> mean over seeds
    per_seed: dict[str, dict[str, list[float]]]  # system -> metric -> value of each seed
    intervals: dict[str, dict[str, tuple[float, float]]]  # system -> metric -> (lo, hi)
    comparisons: dict[str, dict[str, dict]]  # system -> metric -> the DESIGN.md record
    n_boot: int
    n_skipped: int


def set_statistics(
    scores: dict[str, list[np.ndarray]],
    labels: np.ndarray,
    groups: list | np.ndarray | None,
    references: str | dict[str, str],
    *,
    p_target: float = 0.01,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> SetStatistics:
    """Statistics of the systems' scores on one trial list.

    ``scores[system]``: one score array per seed (the same seeds, in the same order, for every
    system; the same trials in the same order everywhere). ``references``: the system each
    system is compared with (a name: every other system with that one). ``groups``: the resampling unit of
    each trial (its enrolment speaker), or None to resample single trials. Weights always
    attach to trials, not to ranks, so both sides of a comparison see the same resample.
    ``n_boot = 0``: means and per-seed values only.
    """
    systems = list(scores)
    if isinstance(references, str):
        references = {s: references for s in systems if s != references}
    n_seeds = {len(v) for v in scores.values()}
    if len(n_seeds) != 1:
        raise ValueError(f"every system needs the same seeds, got {sorted(n_seeds)} runs")
    r = n_seeds.pop()
    if groups is None:
        groups = np.arange(len(labels))
    trials = {s: [SortedTrials(x, labels, groups) for x in runs] for s, runs in scores.items()}
    full = {s: np.array([_values(t.evaluate((p_target,), METRICS), p_target) for t in runs]) for s, runs in trials.items()}
    means = {s: dict(zip(METRICS, v.mean(axis=0))) for s, v in full.items()}
    per_seed = {s: {m: list(map(float, v[:, k])) for k, m in enumerate(METRICS)} for s, v in full.items()}
    if n_boot == 0:
        return SetStatistics(means, per_seed, {}, {}, 0, 0)

    rng = np.random.default_rng(seed)
    first = trials[systems[0]][0]
    boot = {s: [] for s in systems}  # replicate -> seed-mean metrics
    skipped = 0
    for _ in range(n_boot):
        drawn = rng.integers(0, r, r)  # seeds, with replacement
        w = {"group_w": multiplicities(rng, first.n_groups)}
        if not first.has_both(**w):  # a draw without targets or non-targets (same for all systems)
            skipped += 1
            continue
        for s in systems:
            per = {k: _values(trials[s][k].evaluate((p_target,), METRICS, **w), p_target) for k in set(drawn.tolist())}
            boot[s].append(np.mean([per[k] for k in drawn], axis=0))
    if skipped == n_boot:
        raise ValueError("every bootstrap replicate lacked targets or non-targets; too few speakers")
    arr = {s: np.array(v) for s, v in boot.items()}  # [replicates, metric]
    intervals = {s: {m: percentile_interval(a[:, k], ci) for k, m in enumerate(METRICS)} for s, a in arr.items()}
    comparisons = {}
    for s, ref in references.items():
        comparisons[s] = {m: _compare(full[s][:, k], full[ref][:, k], means[s][m], means[ref][m], arr[s][:, k],
                                      arr[ref][:, k], ref, ci)
                          for k, m in enumerate(METRICS)}
    return SetStatistics(means, per_seed, intervals, comparisons, n_boot, skipped)


def _relative(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, (a - b) / np.where(b > 0, b, 1.0), np.nan)


def _compare(sys_seeds, ref_seeds, sys_mean, ref_mean, sys_boot, ref_boot, reference: str, ci: float) -> dict:
    d = _relative(sys_boot, ref_boot)
    d = d[np.isfinite(d)]
    point = float(_relative(sys_mean, ref_mean))
    if len(d) == 0:
        return {"reference": reference, "diff_rel": point, "ci": [float("nan"), float("nan")], "p": float("nan"),
                "seeds": len(sys_seeds), "seeds_better": int(np.sum(sys_seeds < ref_seeds))}
    lo, hi = percentile_interval(d, ci)
    p = min(1.0, 2.0 * (min(int(np.sum(d <= 0)), int(np.sum(d >= 0))) + 1) / (len(d) + 1))
    return {
        "reference": reference, "diff_rel": point, "ci": [lo, hi], "p": p,
        "seeds": len(sys_seeds),
        # the sign test's raw material: seeds where the system's own run beat the reference's
        "seeds_better": int(np.sum(sys_seeds < ref_seeds)),
    }


def distinguishable(comparison: dict) -> bool:
    """Whether the interval of a comparison excludes 0 (so p is below 1 - level)."""
    lo, hi = comparison["ci"]
    return bool(lo > 0 or hi < 0)


__all__ = ["METRICS", "SetStatistics", "distinguishable", "set_statistics"]
