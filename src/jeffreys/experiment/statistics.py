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
``p = min(1, 2 (min(#{d* <= 0}, #{d* >= 0}) + 1) / (B + 1))``.

A run reports many comparisons (every system but the reference, every evaluation set, EER,
minDCF and Cllr), and with 36 of them at 5 % about two would pass by chance alone. So a
difference is **distinguishable** only after control over the run's whole family:
:func:`adjust_comparisons` applies Holm's step-down method (:func:`holm`; family-wise error
<= ``1 - ci``, valid under any dependence between the comparisons, which share seeds and
speakers) once over every comparison carrying a p, writes ``p_adjusted`` beside ``p``, and
returns the ``multiplicity`` record; :func:`distinguishable` reads ``p_adjusted`` only. Each
interval stays the comparison's own (unadjusted) interval: it may exclude 0 while the
comparison is not distinguishable. A bootstrap p is never below ``2 / (B + 1)``
(:func:`p_floor`), so Holm over ``m`` comparisons can call nothing distinguishable unless
``2 m / (B + 1) < 1 - ci`` (:func:`resolution_note`).

With few seeds the seed factor is resampled from few values, and the bootstrap under-states
its spread (by a factor ``(n-1)/n`` in variance): three seeds give a rough interval, which
the per-seed values in ``results.json`` let a reader check.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
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


# ----------------------------------------------------------------------------- multiplicity
MULTIPLICITY_METHOD = "holm"
METHOD_NAMES = {"holm": "Holm"}


def _usable(p) -> bool:
    return p is not None and not isinstance(p, str) and math.isfinite(float(p))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values, in the order given: with the ``m`` usable p-values
    sorted, ``p_(1) <= ... <= p_(m)``, the adjusted ``p_(i) = max_{k <= i} min(1, (m - k + 1) p_(k))``
    (tied p-values get the same adjusted value). None and NaN entries are no hypotheses: they
    stay out of ``m`` and come back as None. Rejecting where the adjusted p is below ``alpha``
    keeps the probability of any false claim in the family at most ``alpha``, whatever the
    dependence between the tests (Holm, Scand. J. Statist. 1979)."""
    idx = [i for i, p in enumerate(pvalues) if _usable(p)]
    for i in idx:
        if not 0.0 <= float(pvalues[i]) <= 1.0:
            raise ValueError(f"p-value {pvalues[i]!r} (entry {i}) is outside [0, 1]")
    m = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for k, i in enumerate(sorted(idx, key=lambda j: float(pvalues[j]))):
        running = max(running, min(1.0, (m - k) * float(pvalues[i])))
        out[i] = running
    return out


def _records(tree) -> Iterator[dict]:
    """Every comparison record (a dict with ``p`` and ``diff_rel``) under ``tree``, in order."""
    if isinstance(tree, Mapping):
        if "p" in tree and "diff_rel" in tree:
            yield tree  # type: ignore[misc]
            return
        for v in tree.values():
            yield from _records(v)


def adjust_comparisons(tree, method: str = MULTIPLICITY_METHOD) -> dict:
    """Control the error over one reported family: every comparison record under ``tree``
    (``comparisons[NAME][SET][METRIC]`` of ``results.json``, or any nesting of such records)
    gets ``p_adjusted`` (None where its ``p`` is None or NaN, which then is no member of the
    family). Returns the ``multiplicity`` record ``{"method", "family"}`` (family: the
    comparisons carrying a p). Apply it once per family, to everything the run reports."""
    if method != "holm":
        raise ValueError(f"unknown multiplicity method {method!r} (have: holm)")
    recs = list(_records(tree))
    adjusted = holm([r["p"] for r in recs])
    for r, a in zip(recs, adjusted):
        items = [(k, v) for k, v in r.items() if k != "p_adjusted"]
        r.clear()
        for k, v in items:  # beside "p", for a reader of results.json
            r[k] = v
            if k == "p":
                r["p_adjusted"] = a
    return {"method": method, "family": sum(a is not None for a in adjusted)}


def alpha_of(level: float) -> float:
    """The error rate of a level: 0.05 for 0.95 (rounded, so that 1 - 0.95 is not 0.05000000000000004)."""
    return round(1.0 - float(level), 12)


def distinguishable(comparison: Mapping, alpha: float = 0.05) -> bool:
    """Whether a comparison is a claim: its ``p_adjusted`` (after :func:`adjust_comparisons`
    over the run's family) is below ``alpha``. A record without ``p_adjusted`` is an error:
    an unadjusted p is never read as a claim."""
    if "p_adjusted" not in comparison:
        raise ValueError("comparison has no p_adjusted: control its family first (statistics.adjust_comparisons)")
    q = comparison["p_adjusted"]
    return _usable(q) and float(q) < alpha


def interval_excludes_zero(comparison: Mapping) -> bool:
    """Whether the comparison's own (unadjusted) interval excludes 0: p < 1 - level alone, no claim."""
    lo, hi = comparison["ci"]
    return bool(lo > 0 or hi < 0)


def p_floor(n_boot: int) -> float:
    """The smallest bootstrap p-value ``n_boot`` replicates can give: ``2 / (n_boot + 1)``."""
    return 2.0 / (n_boot + 1)


def min_replicates(family: int, alpha: float = 0.05) -> int:
    """The fewest replicates with which Holm over ``family`` comparisons can reach ``alpha``
    at all (the smallest p at its floor): ``2 family / (B + 1) < alpha``."""
    return int(math.floor(2 * family / alpha + 1e-9))


def multiplicity_text(multiplicity: Mapping) -> str:
    """'Holm over 36 comparisons' for tables and lists."""
    n = multiplicity["family"]
    return f"{METHOD_NAMES.get(multiplicity['method'], multiplicity['method'])} over {n} comparison{'s' if n != 1 else ''}"


def resolution_note(multiplicity: Mapping, n_boot: int, alpha: float = 0.05) -> str | None:
    """A sentence when the bootstrap cannot give a p small enough for any claim in this family
    (None when it can)."""
    m = multiplicity["family"]
    if m == 0 or m * p_floor(n_boot) < alpha:
        return None
    return (f"with {n_boot} replicates no p is below 2/{n_boot + 1} = {p_floor(n_boot):.4f}, so "
            f"{multiplicity_text(multiplicity)} cannot reach {alpha:g}: nothing can be distinguishable; "
            f"it takes at least {min_replicates(m, alpha)} replicates (metrics.n_boot), more for a p above its floor.")


__all__ = ["METRICS", "MULTIPLICITY_METHOD", "SetStatistics", "adjust_comparisons", "alpha_of", "distinguishable", "holm",
           "interval_excludes_zero", "min_replicates", "multiplicity_text", "p_floor", "resolution_note", "set_statistics"]
