"""jeffreys.metrics against independent references: O(N^2) float64 sweeps, sklearn's
roc_curve + brentq (the VoxSRC scorer), a monotone-chain convex hull, sklearn's isotonic
regression, hand-computed tiny cases; plus edge cases, bad input and the CLI."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_curve

from jeffreys.cli import main
from jeffreys.errors import InputError
from jeffreys.metrics import bootstrap_ci, det_points, evaluate, optimal_llr, speaker_groups


# ----------------------------------------------------------------------------- references
def brute_points(scores, labels):
    """(pfa, pmiss) at every distinct threshold (accept score >= t) and at +inf, O(N^2)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    tar, non = s[y], s[~y]
    ts = sorted(set(s.tolist()))
    pts = [(float(np.mean(non >= t)), float(np.mean(tar < t)), t) for t in ts]
    pts.append((0.0, 1.0, math.inf))
    return pts


def brute_min_dcf(scores, labels, p, c_miss=1.0, c_fa=1.0):
    norm = min(c_miss * p, c_fa * (1 - p))
    return min((c_miss * p * pm + c_fa * (1 - p) * pf) / norm for pf, pm, _ in brute_points(scores, labels))


def brute_eer(scores, labels):
    """Crossing of the polyline through all brute-force points with Pmiss = Pfa."""
    pts = [(1.0, 0.0)] + [(pf, pm) for pf, pm, _ in brute_points(scores, labels)]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        d0, d1 = y0 - x0, y1 - x1
        if d0 <= 0 <= d1 and d1 != d0:
            a = -d0 / (d1 - d0)
            return x0 + a * (x1 - x0)
        if d0 == 0 == d1:
            return x0
    raise AssertionError("no crossing")


def voxsrc_eer(scores, labels):
    fpr, tpr, _ = roc_curve(labels, scores, pos_label=1)
    return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0, xtol=1e-14)


def hull_eer(scores, labels):
    """EER of the lower convex hull of the brute-force ROC (monotone chain)."""
    pts = sorted({(pf, pm) for pf, pm, _ in brute_points(scores, labels)} | {(1.0, 0.0), (0.0, 1.0)})
    hull = []
    for p in pts:
        while len(hull) >= 2:
            (ax, ay), (bx, by) = hull[-2], hull[-1]
            if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) <= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    for (x0, y0), (x1, y1) in zip(hull, hull[1:]):  # pfa ascending, pmiss descending
        d0, d1 = y0 - x0, y1 - x1
        if d0 >= 0 >= d1:
            if d0 == d1:
                return x0
            a = d0 / (d0 - d1)
            return x0 + a * (x1 - x0)
    raise AssertionError("no crossing")


def direct_cllr(scores, labels):
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    return 0.5 * (np.mean(np.log2(1 + np.exp(-s[y]))) + np.mean(np.log2(1 + np.exp(s[~y]))))


def random_set(seed, n=300, ties=False, p_tar=0.3):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < p_tar
    y[:2] = [True, False]
    s = rng.standard_normal(n) + 1.5 * y
    if ties:
        s = np.round(s * 2) / 2
    return s, y.astype(int)


# ----------------------------------------------------------------------------- references agree
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_against_brute_force_and_sklearn(seed, ties):
    s, y = random_set(seed, ties=ties)
    r = evaluate(s, y, p_targets=(0.01, 0.05, 0.5), c_miss=1, c_fa=1)
    assert r["eer"] == pytest.approx(brute_eer(s, y), abs=1e-12)
    assert r["eer"] == pytest.approx(voxsrc_eer(s, y), abs=1e-9)
    assert r["eer_rocch"] == pytest.approx(hull_eer(s, y), abs=1e-12)
    assert r["eer_rocch"] <= r["eer"] + 1e-12  # the hull lies below the ROC
    for p in (0.01, 0.05, 0.5):
        assert r["min_dcf"][p] == pytest.approx(brute_min_dcf(s, y, p), abs=1e-12)
        # the reported threshold attains the minimum with the ">=" rule
        t = r["min_dcf_threshold"][p]
        pm, pf = np.mean(s[y == 1] < t), np.mean(s[y == 0] >= t)
        assert (p * pm + (1 - p) * pf) / min(p, 1 - p) == pytest.approx(r["min_dcf"][p], abs=1e-12)
        assert r["min_dcf_point"][p] == pytest.approx((pf, pm))
    assert r["n_target"] == int(np.sum(y)) and r["n_nontarget"] == int(np.sum(1 - y))


def test_costs_enter_min_dcf():
    s, y = random_set(7, ties=True)
    r = evaluate(s, y, p_targets=(0.1,), c_miss=10, c_fa=1)
    assert r["min_dcf"][0.1] == pytest.approx(brute_min_dcf(s, y, 0.1, 10, 1), abs=1e-12)


def test_hand_computed_ties():
    # targets 1 2 2, non-targets 0 2 3: polyline (1,0) (2/3,0) (2/3,1/3) (1/3,1) (0,1);
    # the tie group at 2 is the diagonal (2/3,1/3)-(1/3,1), crossing Pmiss=Pfa at 5/9.
    s = [1, 2, 2, 0, 2, 3]
    y = [1, 1, 1, 0, 0, 0]
    r = evaluate(s, y, p_targets=(0.5,))
    assert r["eer"] == pytest.approx(5 / 9)
    # at p=0.5 the normalised cost is Pmiss+Pfa: 1, 2/3, 1, 4/3, 1 -> 2/3 at threshold 1
    assert r["min_dcf"][0.5] == pytest.approx(2 / 3)
    assert r["min_dcf_threshold"][0.5] == 1
    pfa, pmiss = det_points(s, y)
    # vertices: start, A(t=1), B(above 1), A(t=2), B(above 2), end
    assert np.allclose(pfa, [1, 2 / 3, 2 / 3, 2 / 3, 1 / 3, 0])
    assert np.allclose(pmiss, [0, 0, 1 / 3, 1 / 3, 1, 1])


def test_all_tied():
    r = evaluate(np.full(10, 0.3), [1, 0] * 5)
    assert r["eer"] == 0.5 and r["eer_rocch"] == 0.5
    assert r["min_dcf"][0.01] == 1.0
    assert r["min_cllr"] == pytest.approx(1.0)  # one PAV block: LLR 0 everywhere


def test_separable():
    r = evaluate([3, 4, 5, 0, 1, 2], [1, 1, 1, 0, 0, 0], p_targets=(0.01, 0.5))
    assert r["eer"] == 0 and r["eer_rocch"] == 0
    assert r["min_dcf"] == {0.01: 0.0, 0.5: 0.0}
    assert r["min_cllr"] == 0.0
    assert r["min_dcf_threshold"][0.01] == 3


def test_inverted():
    r = evaluate([0, 1, 2, 3], [1, 1, 0, 0])
    assert r["eer"] == 1.0


def test_one_target():
    s = np.array([0.5, 0.1, 0.2, 0.9, 0.3])
    y = np.array([1, 0, 0, 0, 0])
    r = evaluate(s, y, p_targets=(0.01, 0.5))
    assert r["eer"] == pytest.approx(brute_eer(s, y)) and r["eer"] == pytest.approx(voxsrc_eer(s, y))
    assert r["min_dcf"][0.5] == pytest.approx(brute_min_dcf(s, y, 0.5))


def test_infinite_scores_are_ordered():
    s = np.array([np.inf, 1.0, 2.0, -np.inf, 0.0, 1.5, np.inf])
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    r = evaluate(s, y, p_targets=(0.01, 0.3))
    assert r["eer"] == pytest.approx(brute_eer(s, y))
    assert r["eer_rocch"] == pytest.approx(hull_eer(s, y))
    for p in (0.01, 0.3):
        assert r["min_dcf"][p] == pytest.approx(brute_min_dcf(s, y, p))
    assert r["cllr"] == math.inf  # a non-target at +inf
    assert math.isfinite(r["min_cllr"])
    r2 = evaluate([np.inf, 1.0, -np.inf, 0.0], [1, 1, 0, 0])
    assert r2["eer"] == 0 and math.isfinite(r2["cllr"])


def test_nan_is_an_error_naming_the_index():
    with pytest.raises(InputError, match="index 2 is NaN"):
        evaluate([0.1, 0.2, np.nan, 0.4], [1, 0, 1, 0])


@pytest.mark.parametrize("labels,msg", [([0, 0, 0], "no target"), ([1, 1, 1], "no non-target"),
                                        ([1, 2, 0], "labels must be 1"), ([1, 0], "3 scores but 2 labels")])
def test_bad_labels(labels, msg):
    with pytest.raises(InputError, match=msg):
        evaluate([0.1, 0.2, 0.3], labels)


def test_bad_prior():
    with pytest.raises(InputError, match="p_target"):
        evaluate([0.1, 0.2], [1, 0], p_targets=(1.0,))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=2, max_size=40), st.randoms())
def test_permutation_invariance(pairs, rnd):
    s = np.array([p[0] for p in pairs], dtype=np.float64) / 2
    y = np.array([p[1] for p in pairs])
    if y.all() or not y.any():
        return
    order = list(range(len(s)))
    rnd.shuffle(order)
    a = evaluate(s, y, p_targets=(0.01, 0.2))
    b = evaluate(s[order], y[order], p_targets=(0.01, 0.2))
    assert a == b
    assert a["eer"] == pytest.approx(brute_eer(s, y), abs=1e-12)


# ----------------------------------------------------------------------------- Cllr, actDCF
@pytest.mark.parametrize("seed", range(3))
def test_cllr_direct_formula_and_min_cllr(seed):
    s, y = random_set(seed, ties=(seed == 2))
    r = evaluate(s, y)
    assert r["cllr"] == pytest.approx(direct_cllr(s, y), rel=1e-12)
    assert r["min_cllr"] <= r["cllr"]
    # sklearn's isotonic regression (ties pooled) is the independent PAV
    p = IsotonicRegression(y_min=0, y_max=1).fit(s, y).predict(s)
    prior = np.mean(y)
    with np.errstate(divide="ignore"):
        llr = np.log(p) - np.log1p(-p) - math.log(prior / (1 - prior))
    yb = y.astype(bool)
    ref = 0.5 * (np.mean(np.logaddexp(0, -llr[yb])) + np.mean(np.logaddexp(0, llr[~yb]))) / math.log(2)
    assert r["min_cllr"] == pytest.approx(ref, rel=1e-9)
    ours = optimal_llr(s, y)
    assert np.allclose(ours, llr, rtol=1e-9, atol=1e-12, equal_nan=False)
    assert evaluate(ours, y)["cllr"] == pytest.approx(r["min_cllr"], rel=1e-9)
    # the optimal transform is already optimal
    assert evaluate(ours, y)["min_cllr"] == pytest.approx(r["min_cllr"], rel=1e-9)


def test_act_dcf_at_bayes_threshold():
    s, y = random_set(4)
    for p in (0.01, 0.1, 0.5):
        thr = math.log((1 - p) / p)
        tar, non = s[y == 1], s[y == 0]
        ref = (p * np.mean(tar < thr) + (1 - p) * np.mean(non >= thr)) / min(p, 1 - p)
        r = evaluate(s, y, p_targets=(p,))
        assert r["act_dcf"][p] == pytest.approx(ref)
        assert r["act_dcf"][p] >= r["min_dcf"][p] - 1e-12


def test_float32_large_matches_float64():
    rng = np.random.default_rng(1)
    n = 200_000
    y = rng.random(n) < 0.01
    s32 = (rng.standard_normal(n) + 2 * y).astype(np.float32)
    a, b = evaluate(s32, y), evaluate(s32.astype(np.float64), y)
    assert a == b or all(a[k] == pytest.approx(b[k]) for k in ("eer", "min_cllr", "cllr"))
    assert a["eer"] == pytest.approx(voxsrc_eer(s32.astype(np.float64), y), abs=1e-9)


# ----------------------------------------------------------------------------- bootstrap
def test_bootstrap_is_seeded_and_brackets_the_estimate():
    s, y = random_set(3, n=2000, p_tar=0.1)
    a = bootstrap_ci(s, y, n_boot=200, seed=5, metrics=("eer", "min_dcf", "cllr"))
    b = bootstrap_ci(s, y, n_boot=200, seed=5, metrics=("eer", "min_dcf", "cllr"))
    assert a == b and a["by"] == "trial" and a["n_skipped"] == 0
    r = evaluate(s, y)
    lo, hi = a["eer"]
    assert lo < r["eer"] < hi and hi - lo < 0.1
    assert a["min_dcf"][0.01][0] <= r["min_dcf"][0.01] <= a["min_dcf"][0.01][1]
    assert a["cllr"][0] < r["cllr"] < a["cllr"][1]
    assert bootstrap_ci(s, y, n_boot=200, seed=6)["eer"] != a["eer"]


def test_bootstrap_by_speaker_is_wider_when_speakers_differ():
    # each speaker shifts all its scores: trials of a speaker are dependent
    rng = np.random.default_rng(0)
    spk = np.repeat(np.arange(20), 100)
    y = rng.random(len(spk)) < 0.2
    s = rng.standard_normal(len(spk)) + 2 * y + rng.standard_normal(20)[spk] * 1.5
    by_trial = bootstrap_ci(s, y, n_boot=200, seed=0)
    by_spk = bootstrap_ci(s, y, n_boot=200, seed=0, groups=[f"s{i}" for i in spk])
    assert by_spk["by"] == "group"
    width = lambda ci: ci["eer"][1] - ci["eer"][0]  # noqa: E731
    assert width(by_spk) > 1.5 * width(by_trial)


def test_speaker_groups():
    assert speaker_groups(["id1/a/1.wav", "id2/b/2.wav"]) == ["id1", "id2"]
    assert speaker_groups(["u1", "u2"], {"u1": "A", "u2": "B"}) == ["A", "B"]
    with pytest.raises(InputError, match="'u1'"):
        speaker_groups(["u1"])
    with pytest.raises(InputError, match="first: u3"):
        speaker_groups(["u3"], {"u1": "A"})


# ----------------------------------------------------------------------------- the CLI
@pytest.fixture
def scored(tmp_path):
    s, y = random_set(11, n=400, ties=True)
    ids = [(f"id{i % 7}/a/{i}.wav", f"id{(i * 3) % 7}/b/{i}.wav") for i in range(len(s))]
    (tmp_path / "scores").write_text("".join(f"{e} {t} {v:.6f}\n" for (e, t), v in zip(ids, s)))
    trials = tmp_path / "trials"
    # VoxCeleb format, in another order
    trials.write_text("".join(f"{int(l)} {e} {t}\n" for (e, t), l in reversed(list(zip(ids, y)))))
    return tmp_path, np.round(s, 6), y, ids


def test_cli_metrics_json(scored, capsys):
    d, s, y, _ = scored
    assert main(["metrics", str(d / "scores"), "--trials", str(d / "trials"), "--p-target", "0.01", "0.05", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    r = evaluate(s, y, p_targets=(0.01, 0.05))
    assert out["eer"] == pytest.approx(r["eer"])
    assert out["min_dcf"]["0.05"] == pytest.approx(r["min_dcf"][0.05])
    assert out["n_target"] == r["n_target"]


def test_cli_metrics_text_with_ci_by_speaker(scored, capsys):
    d, *_ = scored
    assert main(["metrics", str(d / "scores"), "--trials", str(d / "trials"), "--ci", "--ci-by", "speaker", "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "EER" in out and "%" in out and "bootstrap intervals by group" in out


def test_cli_metrics_four_columns(tmp_path, capsys):
    (tmp_path / "s").write_text("a b 2 target\nc d 1 nontarget\ne f 3 1\ng h 0 0\n")
    assert main(["metrics", str(tmp_path / "s"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["eer"] == 0


def test_cli_metrics_errors(scored, tmp_path, capsys):
    d, *_ = scored
    assert main(["metrics", str(d / "scores")]) == 2
    assert "no labels" in capsys.readouterr().err
    # a scored pair missing from the trial list: named with its line
    (tmp_path / "t2").write_text("".join((d / "trials").read_text().splitlines(True)[1:]))
    assert main(["metrics", str(d / "scores"), "--trials", str(tmp_path / "t2")]) == 2
    err = capsys.readouterr().err
    assert "not in" in err and "line 400" in err
    # a NaN score names its line
    (tmp_path / "bad").write_text("a b 1\nc d nan\n")
    (tmp_path / "tb").write_text("a b target\nc d nontarget\n")
    assert main(["metrics", str(tmp_path / "bad"), "--trials", str(tmp_path / "tb")]) == 2
    assert "bad:2: score is NaN" in capsys.readouterr().err
    # an unscored trial
    (tmp_path / "one").write_text("a b 1\n")
    assert main(["metrics", str(tmp_path / "one"), "--trials", str(tmp_path / "tb")]) == 2
    assert "have no score; first: c d" in capsys.readouterr().err


# ----------------------------------------------------------------------------- scores files
def test_read_scores_fast_path_equals_line_by_line(tmp_path):
    from jeffreys.data.trials import _scores_slow, read_scores

    rng = np.random.default_rng(0)
    text = "".join(f"e{i}\tt{i}  {v!r}\n" for i, v in enumerate(rng.standard_normal(1000).tolist()))
    (tmp_path / "s").write_text(text)
    fast = read_scores(tmp_path / "s")
    slow = _scores_slow(tmp_path / "s", text.splitlines())
    assert fast.enroll == slow.enroll and fast.test == slow.test and fast.label is None
    assert np.array_equal(fast.score, slow.score)
    # lines trading fields (2 + 4) must not pass the fast path
    (tmp_path / "x").write_text("a b\nc d 1 2\n")
    with pytest.raises(InputError, match="x:1: expected 'enroll test score', got 2 fields"):
        read_scores(tmp_path / "x")
    (tmp_path / "y").write_text("a b one\n")
    with pytest.raises(InputError, match="y:1: score 'one' is not a number"):
        read_scores(tmp_path / "y")
    with pytest.raises(InputError, match="no such scores file"):
        read_scores(tmp_path / "nope")


def test_bootstrap_skips_replicates_without_targets_and_checks_arguments():
    s = [3, 2, 1, 0, 0.5, 1.5]
    y = [1, 1, 0, 0, 0, 0]
    r = bootstrap_ci(s, y, n_boot=100, seed=0, groups=["A", "A", "B", "C", "D", "E"], metrics=("eer", "cllr"))
    assert 0 < r["n_skipped"] < 100 and r["eer"] == (0.0, 0.0)
    with pytest.raises(InputError, match="unknown metric 'auc'"):
        bootstrap_ci(s, y, metrics=("auc",))
    with pytest.raises(InputError, match="5 groups but 6 trials"):
        bootstrap_ci(s, y, groups=list("ABCDE"))
    with pytest.raises(InputError, match="ci must lie"):
        bootstrap_ci(s, y, ci=95)


def test_act_dcf_threshold_is_exact_for_float32():
    # Bayes thresholds log((1-p)/p) fall between float32 values, rounding up for some p and
    # down for others; scores just below / above must be a miss / a false alarm either way.
    ps = (0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3)
    directions = set()
    for p in ps:
        thr = math.log((1 - p) / p)
        near = np.float32(thr)
        directions.add(float(near) > thr)
        lo = near if float(near) < thr else np.nextafter(near, np.float32(-np.inf))
        hi = np.nextafter(lo, np.float32(np.inf))
        assert float(lo) < thr < float(hi)
        s = np.array([lo, hi, lo, hi], dtype=np.float32)
        y = np.array([1, 1, 0, 0])
        r = evaluate(s, y, p_targets=(p,))
        assert r["act_dcf"][p] == pytest.approx((p * 0.5 + (1 - p) * 0.5) / min(p, 1 - p))
        assert evaluate(s.astype(np.float64), y, p_targets=(p,))["act_dcf"] == r["act_dcf"]
    assert directions == {True, False}  # both rounding directions were exercised


def test_eer_threshold_against_brute_force():
    from jeffreys.metrics import eer_threshold

    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.3
    s = np.round(rng.normal(y * 1.5, 1.0), 1)  # ties
    t = eer_threshold(s, y)
    best = min(np.unique(s), key=lambda c: (abs(np.mean(s[y] < c) - np.mean(s[~y] >= c)), c))
    assert t == best
