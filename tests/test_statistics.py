"""Seed and speaker statistics of an experiment against a brute force written differently:
explicit trial lists per replicate, sklearn's ROC for the EER, numpy percentiles."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from jeffreys.experiment.statistics import adjust_comparisons, distinguishable, interval_excludes_zero, set_statistics
from jeffreys.metrics import evaluate


def eer_sklearn(scores, labels) -> float:
    """EER where the interpolated ROC crosses Pmiss = Pfa (the VoxSRC scorer's way)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1 - tpr
    i = np.flatnonzero(fnr <= fpr)[0]
    if i == 0:
        return float(fnr[0])
    # crossing of the segment (fpr[i-1], fnr[i-1]) -> (fpr[i], fnr[i]) with fnr = fpr
    a, b = fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]
    t = a / (a - b)
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def make_scores(rng, n_spk=12, per=6, shift=1.5, seed_noise=0.0, n_seeds=3):
    """Trials among speakers (targets: same speaker), scores with a per-speaker difficulty."""
    spk = np.repeat(np.arange(n_spk), per)
    i, j = np.triu_indices(len(spk), 1)
    labels = spk[i] == spk[j]
    difficulty = rng.normal(0, 0.5, n_spk)[spk[i]]
    base = rng.normal(0, 1, len(i)) + shift * labels - difficulty * labels
    runs = [base + rng.normal(0, seed_noise, len(i)) + rng.normal(0, 0.3, len(i)) for _ in range(n_seeds)]
    return runs, labels, spk[i]


def brute_force(scores, labels, groups, reference, n_boot, seed, ci=0.95):
    """The pigeonhole bootstrap spelled out: the same random draws, explicit trial lists."""
    rng = np.random.default_rng(seed)
    systems = list(scores)
    r = len(scores[systems[0]])
    ids, inv = np.unique(groups, return_inverse=True)
    boot = {s: [] for s in systems}
    for _ in range(n_boot):
        drawn = rng.integers(0, r, r)
        w = np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids))
        keep = np.repeat(np.arange(len(labels)), w[inv])
        if labels[keep].all() or not labels[keep].any():
            continue
        for s in systems:
            boot[s].append(np.mean([eer_sklearn(scores[s][k][keep], labels[keep]) for k in drawn]))
    lo_q, hi_q = 100 * (1 - ci) / 2, 100 * (1 + ci) / 2
    out = {s: tuple(np.percentile(v, [lo_q, hi_q])) for s, v in boot.items()}
    d = [(np.array(boot[s]) - np.array(boot[reference])) / np.array(boot[reference]) for s in systems if s != reference]
    return out, [tuple(np.percentile(x, [lo_q, hi_q])) for x in d]


def test_means_and_intervals_match_the_brute_force():
    rng = np.random.default_rng(3)
    a, labels, groups = make_scores(rng, seed_noise=0.3)
    b = [x + 0.4 * labels for x in a]  # a better system on the same trials
    st = set_statistics({"a": a, "b": b}, labels, groups, "a", n_boot=60, seed=5)
    for name, runs in (("a", a), ("b", b)):
        per = [evaluate(x, labels)["eer"] for x in runs]
        assert st.per_seed[name]["eer"] == pytest.approx(per, abs=1e-12)
        assert st.means[name]["eer"] == pytest.approx(np.mean(per), abs=1e-12)
        assert per == pytest.approx([eer_sklearn(x, labels) for x in runs], abs=1e-9)
    intervals, deltas = brute_force({"a": a, "b": b}, labels, groups, "a", n_boot=60, seed=5)
    for name in ("a", "b"):
        assert st.intervals[name]["eer"] == pytest.approx(intervals[name], abs=1e-9)
    assert st.comparisons["b"]["eer"]["ci"] == pytest.approx(list(deltas[0]), abs=1e-9)
    assert st.comparisons["b"]["eer"]["reference"] == "a" and st.comparisons["b"]["eer"]["seeds"] == 3


def test_identical_systems_are_never_distinguishable():
    rng = np.random.default_rng(0)
    a, labels, groups = make_scores(rng)
    # a monotone transform of the same scores: the same EER and minDCF on every resample
    st = set_statistics({"a": a, "twin": [2 * x + 1 for x in a]}, labels, groups, "a", n_boot=100)
    assert adjust_comparisons(st.comparisons) == {"method": "holm", "family": 3}
    for metric in ("eer", "min_dcf"):
        c = st.comparisons["twin"][metric]
        assert c["diff_rel"] == 0 and c["ci"] == [0, 0] and c["p"] == 1.0 and c["p_adjusted"] == 1.0
        assert not interval_excludes_zero(c) and not distinguishable(c)


def test_a_clearly_better_system_is_distinguishable():
    rng = np.random.default_rng(1)
    a, labels, groups = make_scores(rng, shift=1.0)
    b = [x + 1.5 * labels for x in a]
    st = set_statistics({"a": a, "b": b}, labels, groups, {"b": "a"}, n_boot=200)
    c = st.comparisons["b"]["eer"]
    assert c["diff_rel"] < -0.3 and c["ci"][1] < 0 and interval_excludes_zero(c)
    assert c["p"] == pytest.approx(2 / 201) and c["seeds_better"] == 3
    adjust_comparisons({"b": {"eer": c}})  # a family of one: the p itself
    assert c["p_adjusted"] == c["p"] and distinguishable(c)


def test_seed_spread_widens_the_interval():
    rng = np.random.default_rng(2)
    a, labels, groups = make_scores(rng, n_seeds=1)
    same = [a[0]] * 4  # four seeds that trained identically: only speakers vary
    # seeds that train better or worse: a separation of their own (per-trial noise would average out)
    spread = [a[0] + shift * labels for shift in (-0.6, -0.2, 0.2, 0.6)]
    # the same four seed draws and speaker draws in both: only the seeds' spread differs
    one = set_statistics({"s": same}, labels, groups, {}, n_boot=300, seed=1).intervals["s"]["eer"]
    wide = set_statistics({"s": spread}, labels, groups, {}, n_boot=300, seed=1).intervals["s"]["eer"]
    assert wide[1] - wide[0] > 1.2 * (one[1] - one[0])


def test_bad_input():
    rng = np.random.default_rng(0)
    a, labels, groups = make_scores(rng)
    with pytest.raises(ValueError, match="same seeds"):
        set_statistics({"a": a, "b": a[:2]}, labels, groups, "a")
    st = set_statistics({"a": a}, labels, groups, {}, n_boot=0)
    assert st.intervals == {} and st.comparisons == {} and len(st.per_seed["a"]["eer"]) == 3
