"""Detection metrics of a verification trial list: EER, minDCF, actDCF, Cllr, DET points.

Everything here is exact and independent of the order of the trials. Scores are split by
label and each half is sorted once; every operating point is then a ``searchsorted`` of a
distinct target score into the sorted non-target scores, so a 10^7-trial list costs little
more than one ``np.sort`` (see ``benchmarks/metrics.py``).

Conventions (fractions everywhere, never percentages):

* A trial is *accepted* at threshold ``t`` when ``score >= t``; a group of tied scores is
  therefore never split: thresholds lie only between distinct score values.
* ROC / DET: the operating points at every distinct threshold, joined by straight lines.
  A tie group holding both targets and non-targets is one diagonal segment. ``eer`` is where
  this polyline crosses Pmiss = Pfa: the definition of the VoxSRC scorer (sklearn's
  ``roc_curve`` interpolated), computed without its sort of all trials.
* ``eer_rocch``: the crossing of the ROC convex hull (BOSARIS ``rocch2eer``); the hull comes
  from the pool-adjacent-violators fit with tied scores pooled.
* ``min_dcf[p]``: ``min_t C_miss p Pmiss(t) + C_fa (1-p) Pfa(t)`` divided by
  ``min(C_miss p, C_fa (1-p))`` (so a system that always accepts or always rejects scores
  at most 1). ``min_dcf_threshold[p]``: a threshold ``t`` attaining it with the ``>=`` rule;
  ``inf`` there means "reject every trial" (even ``+inf`` scores).
* ``act_dcf[p]``: the same cost at the Bayes threshold ``log(C_fa (1-p) / (C_miss p))``,
  scores read as natural-log likelihood ratios.
* ``cllr`` (bits): ``(mean_tar log2(1+e^-s) + mean_non log2(1+e^s)) / 2``; ``min_cllr`` the
  same after the optimal monotone (PAV) recalibration, ties pooled.

``±inf`` scores are allowed and ordered as numbers (Cllr becomes ``inf`` if a non-target is
``+inf`` or a target ``-inf``). NaN scores, labels other than 0/1, and a list without
targets or without non-targets are errors (:class:`jeffreys.errors.InputError`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError, nonnegative_int, positive

_LN2 = math.log(2.0)


# --------------------------------------------------------------------------- input checks
def _split(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validated (sorted target scores, sorted non-target scores)."""
    s = np.asarray(scores)
    y = np.asarray(labels)
    if s.ndim != 1 or y.ndim != 1:
        raise InputError(f"scores and labels must be 1-D (got shapes {s.shape} and {y.shape})")
    if len(s) != len(y):
        raise InputError(f"{len(s)} scores but {len(y)} labels")
    if s.dtype.kind not in "fiub":
        raise InputError(f"scores must be numbers (got dtype {s.dtype})")
    if s.dtype.kind != "f":
        s = s.astype(np.float64)
    nan = np.isnan(s)
    if nan.any():
        bad = np.flatnonzero(nan)
        raise InputError(f"score at index {bad[0]} is NaN ({len(bad)} NaN scores in all)")
    if y.dtype != bool:
        if y.dtype.kind not in "iuf":
            raise InputError(f"labels must be 1 (target) or 0 (non-target), not {y.dtype} values")
        ok = (y == 0) | (y == 1)
        if not ok.all():
            i = int(np.argmin(ok))
            raise InputError(f"labels must be 1 (target) or 0 (non-target): label at index {i} is {y[i]}")
        y = y.astype(bool)
    tar, non = s[y], s[~y]
    if len(tar) == 0:
        raise InputError(f"no target trials among {len(s)} trials")
    if len(non) == 0:
        raise InputError(f"no non-target trials among {len(s)} trials")
    tar.sort()
    non.sort()
    return tar, non


def _costs(c_miss, c_fa) -> None:
    positive(c_miss, "c_miss")
    positive(c_fa, "c_fa")


def _priors(p_targets) -> tuple[float, ...]:
    ps = (p_targets,) if np.isscalar(p_targets) else tuple(p_targets)
    for p in ps:
        if not 0.0 < float(p) < 1.0:
            raise InputError(f"p_target must lie strictly between 0 and 1 (got {p})")
    return tuple(float(p) for p in ps)


# --------------------------------------------------------------------------- the ROC
@dataclass(frozen=True)
class _ROC:
    """Operating points of sorted target / non-target scores.

    ``u`` are the distinct target scores (ascending). At threshold ``u[j]`` (point A_j) the
    miss count is ``miss_a[j]`` and the false-alarm count ``fa_a[j]``; just above the tie
    group at ``u[j]`` (point B_j) they are ``miss_b[j]`` and ``fa_b[j]``. Between B_j and
    A_{j+1} only non-targets change, so the ROC is the polyline (1,0), A_0, B_0, ..., B_{J-1},
    (0,1) in (Pfa, Pmiss).
    """

    n_tar: int
    n_non: int
    u: np.ndarray
    miss_a: np.ndarray
    miss_b: np.ndarray
    fa_a: np.ndarray
    fa_b: np.ndarray

    @classmethod
    def of(cls, tar: np.ndarray, non: np.ndarray) -> _ROC:
        n_t, n_n = len(tar), len(non)
        first = np.empty(n_t, dtype=bool)
        first[0] = True
        np.not_equal(tar[1:], tar[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        u = tar[starts]
        ends = np.append(starts[1:], n_t)
        below = np.searchsorted(non, u, side="left")  # non-targets < u
        upto = np.searchsorted(non, u, side="right")  # non-targets <= u
        return cls(n_t, n_n, u, starts, ends, n_n - below, n_n - upto)

    def polyline(self) -> tuple[np.ndarray, np.ndarray]:
        """(pfa, pmiss) vertices in order of increasing threshold."""
        J = len(self.u)
        fa = np.empty(2 * J + 2)
        miss = np.empty(2 * J + 2)
        fa[0], miss[0] = self.n_non, 0
        fa[1:-1:2], fa[2:-1:2] = self.fa_a, self.fa_b
        miss[1:-1:2], miss[2:-1:2] = self.miss_a, self.miss_b
        fa[-1], miss[-1] = 0, self.n_tar
        return fa / self.n_non, miss / self.n_tar

    def eer(self) -> float:
        pfa, pmiss = self.polyline()
        d = pmiss - pfa  # non-decreasing from -1 to 1 along the polyline
        k = int(np.argmax(d >= 0))
        if d[k] == 0:
            return float(pmiss[k])
        d0, d1 = d[k - 1], d[k]
        a = d0 / (d0 - d1)
        x = pfa[k - 1] + a * (pfa[k] - pfa[k - 1])
        y = pmiss[k - 1] + a * (pmiss[k] - pmiss[k - 1])
        return float(0.5 * (x + y))

    def min_dcf(self, p: float, c_miss: float, c_fa: float) -> tuple[float, float, float, float]:
        """(normalised minDCF, threshold, pfa, pmiss) at the optimum.

        Raising a threshold to the next target score never increases the cost, so the
        candidates are the distinct target scores and "reject all".
        """
        pmiss = np.append(self.miss_a / self.n_tar, 1.0)
        pfa = np.append(self.fa_a / self.n_non, 0.0)
        cost = c_miss * p * pmiss + c_fa * (1 - p) * pfa
        i = int(np.argmin(cost))
        thr = float(self.u[i]) if i < len(self.u) else math.inf
        norm = min(c_miss * p, c_fa * (1 - p))
        return float(cost[i] / norm), thr, float(pfa[i]), float(pmiss[i])

    def groups(self) -> tuple[np.ndarray, np.ndarray]:
        """(targets, non-targets) per group of the merged ascending order: the non-targets
        below u[0], then for each j the tie group at u[j] and the non-targets strictly
        between u[j] and u[j+1]. Pooling a non-target-only run changes no PAV solution
        (its members always end in one block), so this is exact."""
        J = len(self.u)
        t = np.zeros(2 * J + 1, dtype=np.int64)
        n = np.empty(2 * J + 1, dtype=np.int64)
        t[1::2] = self.miss_b - self.miss_a
        below = self.n_non - self.fa_a
        upto = self.n_non - self.fa_b
        n[0] = below[0]
        n[1::2] = upto - below
        n[2::2] = np.append(below[1:], self.n_non) - upto
        keep = (t + n) > 0
        return t[keep], n[keep]


def _pav_blocks(t: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Target and non-target counts per block of the increasing PAV fit of P(target)."""
    from scipy.optimize import isotonic_regression  # scipy.optimize takes ~0.5 s to import

    w = (t + n).astype(np.float64)
    res = isotonic_regression(t / w, weights=w, increasing=True)
    starts = np.asarray(res.blocks[:-1])
    return np.add.reduceat(t, starts), np.add.reduceat(n, starts)


def _min_cllr(bt: np.ndarray, bn: np.ndarray, n_t: int, n_n: int) -> float:
    """Cllr of the PAV LLRs log(P/(1-P)) - log(n_t/n_n) of blocks with (bt, bn) counts.

    With P = bt/(bt+bn): log(1 + e^-llr) = log((bt n_n + bn n_t) / (bt n_n)) and
    log(1 + e^llr) = log((bt n_n + bn n_t) / (bn n_t)); a block without targets adds nothing
    to the target half (and vice versa).
    """
    bt = bt.astype(np.float64)
    bn = bn.astype(np.float64)
    mix = bt * n_n + bn * n_t
    with np.errstate(divide="ignore", invalid="ignore"):
        c_tar = np.where(bt > 0, bt * np.log(mix / (bt * n_n)), 0.0).sum() / n_t
        c_non = np.where(bn > 0, bn * np.log(mix / (bn * n_t)), 0.0).sum() / n_n
    return float((c_tar + c_non) / (2 * _LN2))


def _rocch_eer(bt: np.ndarray, bn: np.ndarray, n_t: int, n_n: int) -> float:
    """BOSARIS rocch2eer on the hull vertices (the PAV block boundaries)."""
    pmiss = np.concatenate(([0.0], np.cumsum(bt) / n_t))
    pfa = np.concatenate(([1.0], 1.0 - np.cumsum(bn) / n_n))
    x0, x1, y0, y1 = pfa[:-1], pfa[1:], pmiss[:-1], pmiss[1:]
    det = x0 * y1 - x1 * y0
    den = (y1 - y0) + (x0 - x1)
    ok = (x0 != x1) & (y0 != y1) & (den != 0)
    cand = np.where(ok, det / np.where(ok, den, 1.0), 0.0)
    return float(max(cand.max(initial=0.0), 0.0))


def _softplus_sum(x: np.ndarray, negate: bool = False, step: int = 1 << 15) -> float:
    """sum(log(1 + e^(±x))) in float64, stable for large |x| and for ±inf.

    Processed in cache-sized chunks: the five element-wise passes then cost about one
    pass over memory (2x faster than whole-array passes at 10^7 scores)."""
    buf, pos = np.empty(step), np.empty(step)
    total = 0.0
    for s in range(0, len(x), step):
        c = x[s : s + step]
        b, p = buf[: len(c)], pos[: len(c)]
        np.abs(c, out=b)
        np.negative(b, out=b)
        np.exp(b, out=b)
        np.log1p(b, out=b)
        if negate:  # max(-c, 0) = -min(c, 0)
            np.minimum(c, 0.0, out=p)
            b -= p
        else:
            np.maximum(c, 0.0, out=p)
            b += p
        total += float(b.sum())
    return total


def _cllr(tar: np.ndarray, non: np.ndarray) -> float:
    return (_softplus_sum(tar, negate=True) / len(tar) + _softplus_sum(non) / len(non)) / (2 * _LN2)


def _count_below(a: np.ndarray, t: float) -> int:
    """Number of items of sorted ``a`` below the real number ``t``, exactly and without
    casting ``a``: for float32 ``a``, ``x < t`` iff ``x < c`` with ``c`` the smallest float32
    ``>= t`` (a float64 ``t`` would otherwise convert the whole array, or round ``t``)."""
    c = a.dtype.type(t)
    if float(c) < t:  # rounded down: step up (compared as Python floats: numpy would round t)
        c = np.nextafter(c, a.dtype.type(np.inf))
    return int(np.searchsorted(a, c, side="left"))


def _act_dcf(tar, non, p, c_miss, c_fa) -> float:
    thr = math.log(c_fa * (1 - p) / (c_miss * p))
    pmiss = _count_below(tar, thr) / len(tar)
    pfa = (len(non) - _count_below(non, thr)) / len(non)
    return float((c_miss * p * pmiss + c_fa * (1 - p) * pfa) / min(c_miss * p, c_fa * (1 - p)))


# --------------------------------------------------------------------------- public API
ALL_METRICS = ("eer", "eer_rocch", "min_dcf", "act_dcf", "cllr", "min_cllr")


def _evaluate_sorted(tar, non, ps, c_miss, c_fa, want=ALL_METRICS):
    """The metrics named in ``want`` of already sorted target / non-target scores."""
    roc = _ROC.of(tar, non)
    out: dict = {}
    if "eer" in want:
        out["eer"] = roc.eer()
    if "eer_rocch" in want or "min_cllr" in want:
        bt, bn = _pav_blocks(*roc.groups())
        if "eer_rocch" in want:
            out["eer_rocch"] = _rocch_eer(bt, bn, len(tar), len(non))
        if "min_cllr" in want:
            out["min_cllr"] = _min_cllr(bt, bn, len(tar), len(non))
    if "min_dcf" in want:
        md = {p: roc.min_dcf(p, c_miss, c_fa) for p in ps}
        out["min_dcf"] = {p: v[0] for p, v in md.items()}
        out["min_dcf_threshold"] = {p: v[1] for p, v in md.items()}
        out["min_dcf_point"] = {p: (v[2], v[3]) for p, v in md.items()}
    if "act_dcf" in want:
        out["act_dcf"] = {p: _act_dcf(tar, non, p, c_miss, c_fa) for p in ps}
    if "cllr" in want:
        out["cllr"] = _cllr(tar, non)
    return out


def evaluate(scores, labels, p_targets=(0.01,), c_miss: float = 1.0, c_fa: float = 1.0) -> dict:
    """All metrics of one trial list (see the module docstring for the definitions).

    ``scores``: 1-D numbers; ``labels``: 1/True for a target trial, 0/False otherwise.
    Returns ``{"eer", "eer_rocch", "min_dcf": {p: v}, "min_dcf_threshold": {p: t},
    "min_dcf_point": {p: (pfa, pmiss)}, "act_dcf": {p: v}, "cllr", "min_cllr", "n_target",
    "n_nontarget", "p_targets", "c_miss", "c_fa"}``, all fractions / bits as floats.
    """
    ps = _priors(p_targets)
    _costs(c_miss, c_fa)
    tar, non = _split(scores, labels)
    out = _evaluate_sorted(tar, non, ps, c_miss, c_fa)
    out.update(n_target=len(tar), n_nontarget=len(non), p_targets=list(ps), c_miss=c_miss, c_fa=c_fa)
    return out


def det_points(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """(pfa, pmiss) vertices of the ROC polyline, in order of increasing threshold."""
    return _ROC.of(*_split(scores, labels)).polyline()


def optimal_llr(scores, labels) -> np.ndarray:
    """Per-trial LLRs of the optimal monotone (PAV, ties pooled) recalibration; their Cllr
    is ``min_cllr``. Blocks without targets (non-targets) give ``-inf`` (``+inf``)."""
    s = np.asarray(scores, dtype=np.float64)
    tar, non = _split(s, labels)
    roc = _ROC.of(tar, non)
    t, n = roc.groups()
    bt, bn = _pav_blocks(t, n)
    with np.errstate(divide="ignore"):
        llr_block = np.log(bt / len(tar)) - np.log(bn / len(non))
    # A tie group lies inside one block: find a score's block from the rank of its first
    # occurrence in the merged order and the cumulative block sizes.
    merged = np.sort(np.concatenate((tar, non)))
    first = np.searchsorted(merged, s, side="left")
    return llr_block[np.searchsorted(np.cumsum(bt + bn), first, side="right")]


def multiplicities(rng: np.random.Generator, n: int) -> np.ndarray:
    """How often each of n items is drawn in n draws with replacement (O(n), no sort):
    the weights of one bootstrap replicate."""
    return np.bincount(rng.integers(0, n, n), minlength=n)


class SortedTrials:
    """One scored trial list, split by label and sorted once, to be evaluated on many
    resamples (bootstrap replicates): a resample repeats each trial by a weight, and
    repeating the items of a sorted array keeps it sorted, so no replicate sorts again.

    ``groups``: one hashable id per trial (e.g. the enrolment speaker); whole groups are
    then resampled together (:meth:`group_weights` / :meth:`evaluate` with ``group_w``).
    """

    def __init__(self, scores, labels, groups: Sequence[Hashable] | np.ndarray | None = None):
        s = np.asarray(scores)
        y = np.asarray(labels)
        _split(s, y)  # validation with the same messages as evaluate()
        s = s if s.dtype.kind == "f" else s.astype(np.float64)
        y = y.astype(bool)
        order = np.argsort(s, kind="stable")
        s_sorted, y_sorted = s[order], y[order]
        self.tar, self.non = s_sorted[y_sorted], s_sorted[~y_sorted]
        self.n_groups = 0
        if groups is not None:
            if len(groups) != len(s):
                raise InputError(f"{len(groups)} groups but {len(s)} trials")
            _, gidx = np.unique(np.asarray(groups), return_inverse=True)
            gidx = gidx.ravel()
            self.n_groups = int(gidx.max()) + 1
            self.g_tar, self.g_non = gidx[order][y_sorted], gidx[order][~y_sorted]

    def has_both(self, *, group_w: np.ndarray | None = None, tar_w: np.ndarray | None = None,
                 non_w: np.ndarray | None = None) -> bool:
        """Whether a resample (weights as in :meth:`evaluate`) holds targets and non-targets."""
        if group_w is not None:
            return bool(group_w[self.g_tar].any() and group_w[self.g_non].any())
        if tar_w is not None:
            return bool(tar_w.any() and non_w.any())
        return True

    def evaluate(self, p_targets=(0.01,), metrics: Sequence[str] = ALL_METRICS, *, group_w: np.ndarray | None = None,
                 tar_w: np.ndarray | None = None, non_w: np.ndarray | None = None, c_miss: float = 1.0,
                 c_fa: float = 1.0) -> dict | None:
        """The metrics of one resample: each group repeated ``group_w[g]`` times, or targets
        and non-targets by ``tar_w`` / ``non_w``; all trials once without weights. None when
        the resample holds no target or no non-target."""
        tar, non = self.tar, self.non
        if group_w is not None:
            tar, non = np.repeat(tar, group_w[self.g_tar]), np.repeat(non, group_w[self.g_non])
        elif tar_w is not None:
            tar, non = np.repeat(tar, tar_w), np.repeat(non, non_w)
        if len(tar) == 0 or len(non) == 0:
            return None
        return _evaluate_sorted(tar, non, _priors(p_targets), c_miss, c_fa, want=tuple(metrics))


def percentile_interval(values, ci: float) -> tuple[float, float]:
    """The central ``ci`` percentile interval of bootstrap replicates (NaNs ignored)."""
    lo, hi = np.nanquantile(np.asarray(values, dtype=np.float64), [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(lo), float(hi)


def bootstrap_ci(
    scores,
    labels,
    p_targets=(0.01,),
    c_miss: float = 1.0,
    c_fa: float = 1.0,
    ci: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    metrics: Sequence[str] = ("eer", "min_dcf"),
) -> dict:
    """Percentile bootstrap intervals of ``metrics`` (any of eer, eer_rocch, min_dcf,
    act_dcf, cllr, min_cllr).

    Without ``groups`` trials are resampled with replacement within each class (targets and
    non-targets separately, so every replicate keeps the class sizes). With ``groups`` (one
    hashable id per trial, e.g. the enrolment speaker: see :func:`speaker_groups`) whole
    groups are resampled, so trials sharing a speaker stay together; a replicate that draws
    no target or no non-target is skipped and counted in ``n_skipped``.

    Returns ``{"ci", "n_boot", "seed", "n_skipped", "by": "trial"|"group", name: (lo, hi)
    for scalar metrics, name: {p: (lo, hi)} for DCFs}``. Same seed, same intervals.
    """
    if not 0 < ci < 1:
        raise InputError(f"ci must lie strictly between 0 and 1 (got {ci})")
    if n_boot < 1:
        raise InputError(f"n_boot must be positive (got {n_boot})")
    nonnegative_int(seed, "seed")
    ps = _priors(p_targets)
    _costs(c_miss, c_fa)
    bad = [m for m in metrics if m not in ALL_METRICS]
    if bad:
        raise InputError(f"unknown metric {bad[0]!r} (known: {', '.join(ALL_METRICS)})")
    trials = SortedTrials(scores, labels, groups)
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    for _ in range(n_boot):
        if groups is None:
            w = {"tar_w": multiplicities(rng, len(trials.tar)), "non_w": multiplicities(rng, len(trials.non))}
        else:
            w = {"group_w": multiplicities(rng, trials.n_groups)}
        row = trials.evaluate(ps, metrics, c_miss=c_miss, c_fa=c_fa, **w)
        if row is not None:
            rows.append(row)
    skipped = n_boot - len(rows)
    if not rows:
        raise InputError("every bootstrap replicate lacked targets or non-targets; too few groups")
    out: dict = {"ci": ci, "n_boot": n_boot, "seed": seed, "n_skipped": skipped,
                 "by": "trial" if groups is None else "group"}
    for m in metrics:
        if m in ("min_dcf", "act_dcf"):
            out[m] = {p: percentile_interval([r[m][p] for r in rows], ci) for p in ps}
        else:
            out[m] = percentile_interval([r[m] for r in rows], ci)
    return out


def speaker_groups(enroll: Sequence[str], utt2spk: dict[str, str] | None = None,
                   models: dict[str, Sequence[str]] | None = None) -> list[str]:
    """The speaker of each trial's enrolment side, for :func:`bootstrap_ci`.

    With ``utt2spk`` the speaker is looked up; an enrolment id that is a model of ``models``
    (``MODEL -> enrolment utterances``, SITW/SdSV) takes the speaker of its utterances; an id
    found in neither is an error. Without ``utt2spk``, the speaker is the first path component
    of VoxCeleb-style ids (``id10270/x/00001.wav`` → ``id10270``).
    """
    if utt2spk is not None:
        if models:
            utt2spk = {**{m: utt2spk[us[0]] for m, us in models.items() if us and us[0] in utt2spk}, **utt2spk}
        missing = [u for u in enroll if u not in utt2spk]
        if missing:
            raise InputError(f"utt2spk has no speaker for {len(missing)} enrolment ids, first: {', '.join(missing[:5])}")
        return [utt2spk[u] for u in enroll]
    no_dir = [u for u in enroll if "/" not in u]
    if no_dir:
        raise InputError(
            f"cannot tell the speaker of {no_dir[0]!r} (no 'speaker/' prefix); give --utt2spk"
        )
    return [u.split("/", 1)[0] for u in enroll]


def eer_threshold(scores, labels) -> float:
    """A threshold at the equal-error point (accept ``score >= t``): among the distinct
    scores, the one where ``|Pmiss - Pfa|`` is smallest (ties: the lower one)."""
    tar, non = _split(scores, labels)
    cand = np.unique(np.concatenate((tar, non)))
    pmiss = np.searchsorted(tar, cand, side="left") / len(tar)
    pfa = 1 - np.searchsorted(non, cand, side="left") / len(non)
    return float(cand[np.argmin(np.abs(pmiss - pfa))])


# --------------------------------------------------------------------------- CLI
def jsonable(x):
    """``x`` (an :func:`evaluate` or :func:`bootstrap_ci` result) as plain JSON data:
    float dict keys as ``"0.01"``, tuples as lists, ``inf`` as the string ``"inf"``. The
    report tables accept the string keys back."""
    if isinstance(x, dict):
        return {(f"{k:g}" if isinstance(k, float) else str(k)): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return "inf" if x > 0 else ("-inf" if x < 0 else "nan")
    if isinstance(x, np.generic):
        return jsonable(x.item())
    return x


def _format_text(res: dict, ci: dict | None) -> str:
    def pm(name, p=None):
        if ci is None or name not in ci:
            return ""
        lo, hi = ci[name][p] if p is not None else ci[name]
        scale = 100 if name == "eer" else 1
        return f"  [{lo * scale:.4g}, {hi * scale:.4g}]"

    lines = [
        f"trials        {res['n_target'] + res['n_nontarget']} ({res['n_target']} target, {res['n_nontarget']} non-target)",
        f"EER           {res['eer'] * 100:.4f} %{pm('eer')}",
        f"EER (ROCCH)   {res['eer_rocch'] * 100:.4f} %",
    ]
    for p in res["min_dcf"]:
        lines.append(
            f"minDCF p={p:g}  {res['min_dcf'][p]:.4f}{pm('min_dcf', p)}   (threshold {res['min_dcf_threshold'][p]:.6g})"
        )
    for p in res["act_dcf"]:
        lines.append(f"actDCF p={p:g}  {res['act_dcf'][p]:.4f}")
    lines += [f"Cllr          {res['cllr']:.4f} bits", f"minCllr       {res['min_cllr']:.4f} bits"]
    if ci is not None:
        lines.append(f"({ci['ci'] * 100:g} % bootstrap intervals by {ci['by']}, {ci['n_boot']} replicates, seed {ci['seed']})")
    return "\n".join(lines)


def load_scored_trials(scores_path: str, trials_path: str | None):
    """(Scores, labels) of a scores file, labels from ``trials_path`` or the file's 4th column."""
    from .data.trials import label_scores, read_scores

    sc = read_scores(scores_path)
    if trials_path is None:
        if sc.label is None:
            raise InputError(
                f"{scores_path}: no labels: give --trials, or a 4th column target|nontarget (or 1|0)"
            )
        labels, source = sc.label, str(scores_path)
    else:
        labels, source = label_scores(sc, trials_path, scores_path), f"{scores_path} (labels from {trials_path})"
    n_tar = int(np.count_nonzero(labels))
    if n_tar == 0 or n_tar == len(labels):
        missing = "target" if n_tar == 0 else "non-target"
        raise InputError(f"{source}: no {missing} trials among its {len(labels)} scored trials; the metrics need both")
    return sc, labels


def cli_metrics(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="jeffreys metrics",
        description="EER, minDCF, actDCF, Cllr and minCllr of a scores file ('enroll test score' "
        "lines; labels from --trials, or a 4th column 'target|nontarget' or '1|0').",
    )
    ap.add_argument("scores")
    ap.add_argument("--trials", help="Kaldi ('e t target|nontarget') or VoxCeleb ('1|0 e t') trial list")
    ap.add_argument("--p-target", type=float, nargs="+", default=[0.01], metavar="P")
    ap.add_argument("--c-miss", type=float, default=1.0)
    ap.add_argument("--c-fa", type=float, default=1.0)
    ap.add_argument("--ci", action="store_true", help="bootstrap confidence intervals of EER and minDCF")
    ap.add_argument("--ci-level", type=float, default=0.95)
    ap.add_argument("--ci-by", choices=("trial", "speaker"), default="trial",
                    help="resample trials, or whole enrolment speakers (default: trial)")
    ap.add_argument("--utt2spk", help="speaker of each enrolment id for --ci-by speaker "
                    "(default: the id's first path component)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)

    sc, labels = load_scored_trials(args.scores, args.trials)
    res = evaluate(sc.score, labels, args.p_target, args.c_miss, args.c_fa)
    ci = None
    if args.ci:
        groups = None
        if args.ci_by == "speaker":
            u2s = None
            if args.utt2spk:
                from pathlib import Path

                from .data.tables import read_table

                u2s = {parts[0]: parts[1] for _, parts in read_table(Path(args.utt2spk))}
            groups = speaker_groups(sc.enroll, u2s)
        ci = bootstrap_ci(sc.score, labels, args.p_target, args.c_miss, args.c_fa, ci=args.ci_level,
                          n_boot=args.n_boot, seed=args.seed, groups=groups)
    if args.json:
        out = dict(res)
        if ci is not None:
            out["ci"] = ci
        json.dump(jsonable(out), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(_format_text(res, ci))
    return 0
