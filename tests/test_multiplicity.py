"""Multiplicity control over a run's comparisons: Holm's adjusted p-values against references
written differently (a brute force over ranks, the step-down rejection procedure itself), the
family a run counts, and that every table, list and figure input reads ``p_adjusted``, not ``p``."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest

from jeffreys.experiment.results import separation_summary
from jeffreys.experiment.statistics import (
    adjust_comparisons, alpha_of, distinguishable, holm, interval_excludes_zero, min_replicates, resolution_note,
)
from jeffreys.realvoices import real_voices_markdown
from jeffreys.report import comparison_bars, comparisons_markdown, effect_markers


def holm_brute(pvalues):
    """For each usable p: the max over every p_j <= p of min(1, (m - r_j + 1) p_j), r_j the
    rank of p_j counted as 1 + the number of strictly smaller p-values (ties share the smallest rank)."""
    usable = [float(p) for p in pvalues if p is not None and not math.isnan(p)]
    m = len(usable)
    out = []
    for p in pvalues:
        if p is None or math.isnan(p):
            out.append(None)
            continue
        cands = []
        for q in usable:
            if q <= p:
                r = 1 + sum(1 for x in usable if x < q)
                cands.append(min(1.0, (m - r + 1) * q))
        out.append(max(cands))
    return out


def holm_rejects(pvalues, alpha):
    """Holm's procedure as published: walk the sorted p-values, reject H_(k) while
    p_(k) <= alpha / (m - k + 1), stop at the first that is not."""
    usable = sorted((p, i) for i, p in enumerate(pvalues) if p is not None and not math.isnan(p))
    m, rejected = len(usable), set()
    for k, (p, i) in enumerate(usable, start=1):
        if p > alpha / (m - k + 1):
            break
        rejected.add(i)
    return rejected


def test_holm_hand_computed():
    # sorted 0.005, 0.01, 0.03, 0.04: 4*0.005, 3*0.01, 2*0.03, max(0.06, 1*0.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.3]) == [0.3]  # a single comparison: its own p
    assert holm([]) == []
    assert holm([1.0, 1.0, 0.2]) == pytest.approx([1.0, 1.0, 0.6])
    assert holm([0.02, 0.02, 0.02]) == pytest.approx([0.06, 0.06, 0.06])  # ties: one value, not 0.06, 0.06, 0.04
    assert holm([0.4, 0.5]) == pytest.approx([0.8, 0.8])  # capped monotone: never below an earlier one
    assert holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1
    # None and NaN are no hypotheses: left out of m, given back as None
    assert holm([0.01, None, float("nan"), 0.02]) == pytest.approx([0.02, None, None, 0.02])
    assert holm([None, float("nan")]) == [None, None]
    with pytest.raises(ValueError, match="outside"):
        holm([0.1, 1.5])


@pytest.mark.parametrize("seed", range(40))
def test_holm_against_brute_force_and_the_procedure(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 13))
    # bootstrap-like p-values (a grid: many ties), some exact 1s, some tiny, some missing
    p = list(np.minimum(1.0, 2 * (rng.integers(0, 60, m) + 1) / 201))
    for i in rng.choice(m, size=int(rng.integers(0, 3)), replace=True):
        p[i] = [1.0, None, float("nan"), 1e-4][int(rng.integers(0, 4))]
    got = holm(p)
    want = holm_brute(p)
    assert [g is None for g in got] == [w is None for w in want]
    assert [g for g in got if g is not None] == pytest.approx([w for w in want if w is not None], abs=1e-12)
    for g, q in zip(got, p):
        if g is not None:
            assert q <= g <= 1.0  # never below the raw p
    for alpha in (0.01, 0.05, 0.1, 0.2):
        assert {i for i, g in enumerate(got) if g is not None and g <= alpha} == holm_rejects(p, alpha)


def test_holm_is_invariant_to_order():
    p = [0.03, 0.001, 0.2, 0.03, 1.0, 0.04]
    base = dict(zip(range(len(p)), holm(p)))
    for perm in itertools.islice(itertools.permutations(range(len(p))), 0, 200, 7):
        got = holm([p[i] for i in perm])
        assert {i: g for i, g in zip(perm, got)} == pytest.approx(base)


def _record(p, diff=-0.2, ci=(-0.3, -0.1), ref="aam"):
    return {"reference": ref, "diff_rel": diff, "ci": list(ci), "p": p, "seeds": 3, "seeds_better": 3}


def _comparisons(p_eer, p_other=0.6, nan_cllr=False):
    """results.json's block: 2 systems x 2 sets x 3 metrics, every EER and minDCF at ``p_eer``
    with an interval excluding 0."""
    return {s: {e: {"eer": _record(p_eer), "min_dcf": _record(p_eer),
                    "cllr": _record(float("nan"), ci=(float("nan"), float("nan"))) if nan_cllr else _record(p_other,
                                                                                                          0.01, (-0.1, 0.1))}
                for e in ("in_domain", "telephone")}
            for s in ("jeff", "ls")}


def test_adjust_comparisons_counts_the_family_and_writes_p_adjusted():
    cmp = _comparisons(0.01, nan_cllr=True)
    mult = adjust_comparisons(cmp)
    assert mult == {"method": "holm", "family": 8}  # 2 x 2 x 2 with a p; the NaN Cllr ones are out
    recs = [c for per in cmp.values() for per_m in per.values() for c in per_m.values()]
    assert len(recs) == 12 and all("p_adjusted" in c for c in recs)
    assert [c["p_adjusted"] for c in recs] == pytest.approx(holm_brute([c["p"] for c in recs]))
    assert all(c["p_adjusted"] is None for per in cmp.values() for per_m in per.values() for c in [per_m["cllr"]])
    assert cmp["jeff"]["in_domain"]["eer"]["p_adjusted"] == pytest.approx(0.08)  # 8 x 0.01
    with pytest.raises(ValueError, match="unknown multiplicity method"):
        adjust_comparisons(cmp, method="bonferroni-ish")


def test_distinguishable_reads_the_adjusted_p_only():
    c = _record(0.001)
    assert interval_excludes_zero(c)
    with pytest.raises(ValueError, match="no p_adjusted"):
        distinguishable(c)
    c["p_adjusted"] = 0.2
    assert not distinguishable(c)
    c["p_adjusted"] = 0.049
    assert distinguishable(c)
    c["p_adjusted"] = 0.05  # the boundary: 1 - 0.95 is 0.05 here, not 0.05000000000000004
    assert not distinguishable(c, alpha_of(0.95)) and alpha_of(0.95) == 0.05
    c["p_adjusted"] = None
    assert not distinguishable(c)


def _cfg(n_boot=1000, seeds=(0, 1, 2)):
    return SimpleNamespace(seeds=list(seeds), metrics=SimpleNamespace(ci=0.95, n_boot=n_boot))


LABELS = {"aam": "AAM", "jeff": "AAM-Jeffreys", "ls": "AAM + LS"}
SETS = ["in_domain", "telephone"]


def test_p_below_005_alone_is_not_a_claim_anywhere():
    # every EER and minDCF at p 0.01 with an interval excluding 0, in a family of 12: Holm
    # gives 12 x 0.01 = 0.12 to the smallest, so nothing is distinguishable
    cmp = _comparisons(0.01)
    mult = adjust_comparisons(cmp)
    assert mult["family"] == 12
    assert all(c["p"] < 0.05 <= c["p_adjusted"] and interval_excludes_zero(c)
               for per in cmp.values() for pm in per.values() for k, c in pm.items() if k != "cllr")
    md = comparisons_markdown(cmp, LABELS, SETS, 0.95, mult)
    rows = [line for line in md.splitlines() if line.startswith("| AAM")]
    assert len(rows) == 2 and all("**" not in r for r in rows) and all(r.count("n.d.") == 4 for r in rows)
    assert "p 0.010, adj. 0.120" in rows[0] and "Holm over 12 comparisons" in md
    summary = separation_summary(_cfg(n_boot=5000), cmp, LABELS, mult)
    assert "Holm over 12 comparisons" in summary
    assert "- distinguishable:" not in summary and "- no difference with the reference is distinguishable." in summary
    assert "- not distinguishable: 8 of 8" in summary
    assert "alone but not after adjustment" in summary and "AAM-Jeffreys vs AAM, telephone EER (p 0.010, adjusted 0.120)" in summary
    for system in cmp:
        gain, lo, hi, hatch = comparison_bars(cmp, system, SETS)
        assert hatch == [True] * 4 and gain == pytest.approx([20.0] * 4)
    assert effect_markers([(200.0, cmp["jeff"]["in_domain"]), (1000.0, cmp["ls"]["telephone"])]) == [False, False]


def test_a_p_that_survives_the_family_is_a_claim_everywhere():
    # the positive control of the test above: the same block, one comparison at p 0.001
    # (adjusted 12 x 0.001 = 0.012), the rest at 0.5
    cmp = _comparisons(0.5)
    cmp["jeff"]["telephone"]["eer"]["p"] = 0.001
    mult = adjust_comparisons(cmp)
    assert cmp["jeff"]["telephone"]["eer"]["p_adjusted"] == pytest.approx(0.012)
    md = comparisons_markdown(cmp, LABELS, SETS, 0.95, mult)
    jeff_row = next(line for line in md.splitlines() if line.startswith("| AAM-Jeffreys"))
    assert jeff_row.count("**") == 2 and "**-20.0 % [-30.0, -10.0] p 0.001, adj. 0.012**" in jeff_row
    summary = separation_summary(_cfg(n_boot=5000), cmp, LABELS, mult)
    assert "- distinguishable: AAM-Jeffreys vs AAM, telephone EER: -20.0 % [-30.0, -10.0], p 0.001, adjusted 0.012" in summary
    assert "- not distinguishable: 7 of 8" in summary and "alone but not after" not in summary
    assert comparison_bars(cmp, "jeff", SETS)[3] == [True, True, False, True]
    assert effect_markers([(1.0, cmp["jeff"]["telephone"]), (2.0, cmp["jeff"]["in_domain"])]) == [True, False]


def test_too_few_replicates_for_the_family_are_named():
    # a bootstrap p is never below 2 / (B + 1): Holm over 36 needs B >= 1440 to reach 0.05 at all
    assert min_replicates(36) == 1440 and min_replicates(45) == 1800
    assert 36 * 2 / (1440 + 1) < 0.05 <= 36 * 2 / (1439 + 1)
    mult = {"method": "holm", "family": 36}
    note = resolution_note(mult, 1000)
    assert note is not None and "Holm over 36 comparisons" in note and "1440" in note
    assert resolution_note(mult, 1439) is not None and resolution_note(mult, 1440) is None
    assert resolution_note({"method": "holm", "family": 0}, 20) is None
    cmp = _comparisons(0.01)
    summary = separation_summary(_cfg(n_boot=100), cmp, LABELS, adjust_comparisons(cmp))
    assert "with 100 replicates no p is below" in summary and "at least 480 replicates" in summary


def test_real_voices_markdown_reads_the_stage_family():
    def report(p):
        vs = {s: {"eer": _record(p, 0.3, (0.1, 0.6), "mfcc_stats"), "min_dcf": _record(0.9, 0.0, (-0.1, 0.1), "mfcc_stats"),
                  "cllr": _record(0.9, 0.0, (-0.1, 0.1), "mfcc_stats")} for s in ("aam", "jeff")}
        systems = {s: {"eer": 0.2, "min_dcf": 0.9, "eer_ci": [0.15, 0.25], "per_seed_eer": [0.2]}
                   for s in ("aam", "jeff", "mfcc_stats")}
        rep = {"sets": {"real": {"trials": 100, "targets": 10, "systems": systems, "vs_baseline": vs}}}
        rep["multiplicity"] = adjust_comparisons({k: r["vs_baseline"] for k, r in rep["sets"].items()})
        return rep

    weak = report(0.02)  # 6 comparisons: the two 0.02s get 6 x 0.02 = 0.12
    assert weak["multiplicity"] == {"method": "holm", "family": 6}
    md = real_voices_markdown(weak, LABELS, 0.95, n_boot=5000)
    rows = [line for line in md.splitlines() if line.startswith("| AAM")]
    assert len(rows) == 2 and all("**" not in r and r.endswith("n.d. |") for r in rows)
    assert "Holm over 6 comparisons" in md and "a family apart from results.json's" in md
    strong = report(0.001)
    md = real_voices_markdown(strong, LABELS, 0.95, n_boot=5000)
    rows = [line for line in md.splitlines() if line.startswith("| AAM")]
    assert all("**+30.0 % [+10.0, +60.0], p 0.001, adj. 0.006**" in r for r in rows)
    assert "Note:" not in md and "Note: With 100 replicates" in real_voices_markdown(strong, LABELS, 0.95, n_boot=100)
