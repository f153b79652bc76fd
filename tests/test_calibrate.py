"""`jeffreys calibrate`: calibration, operating point, speaker-bootstrap intervals, the
speakers that would halve them, and one decision for verify, the API and ONNX.

References are independent of the code under test: scores from the model run on each file
alone (float64 cosine written out here), false-accept/false-reject counts by brute force,
the resampled rates recomputed per speaker from the drawn multiplicities, the lowest
threshold meeting a false-accept target by trying every distinct score, the power-law fit
by the closed-form least-squares slope.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

import jeffreys
from jeffreys.calibrate import calibrate, far_threshold, halving, held_out, speaker_bootstrap
from jeffreys.cli import main
from jeffreys.data.datadir import read_datadir
from jeffreys.data.trials import read_trials
from jeffreys.errors import InputError
from jeffreys.metrics import bootstrap_ci, multiplicities
from jeffreys.models import load_bundle, save_bundle
from test_extract import alone, tiny_model

SYNTH = ["--train-speakers", "4", "--utts-per-speaker", "2", "--eval-speakers", "12", "--eval-utts-per-speaker", "3",
         "--min-dur", "1.0", "--max-dur", "1.5", "--jobs", "2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The embedded corpus, small, made by `jeffreys prepare synth`."""
    dst = tmp_path_factory.mktemp("calibrate") / "synth"
    assert main(["prepare", "synth", str(dst), *SYNTH]) == 0
    return dst


@pytest.fixture
def bundle(tmp_path):
    return save_bundle(tmp_path / "model.pt", tiny_model(5), None, [], meta={"mean": [0.02 * k for k in range(8)]})


def reference_scores(model, datadir, mean) -> tuple[np.ndarray, np.ndarray, list[str]]:
    dd = read_datadir(datadir)
    tl = read_trials(datadir / "trials")
    emb = {}
    for u in set(tl.enroll) | set(tl.test):
        e = alone(model, sf.read(dd.wav[u], dtype="float32")[0]) - np.asarray(mean)
        emb[u] = e / math.sqrt(float(e @ e))
    s = np.array([float(emb[e] @ emb[t]) for e, t in zip(tl.enroll, tl.test)])
    return s, np.asarray(tl.label, dtype=bool), [dd.utt2spk[e] for e in tl.enroll]


@pytest.fixture(scope="module")
def calibrated(corpus, tmp_path_factory):
    """A bundle calibrated by `jeffreys calibrate` on the corpus's in_domain split, and the report."""
    import json

    root = tmp_path_factory.mktemp("calibrated")
    bundle = save_bundle(root / "model.pt", tiny_model(5), None, [], meta={"mean": [0.02 * k for k in range(8)]})
    rc = main(["calibrate", str(bundle), str(corpus / "in_domain"), "--n-boot", "100", "--quiet", "--out", str(root / "r.json")])
    assert rc == 0
    return bundle, json.loads((root / "r.json").read_text())


def test_calibrate_on_the_embedded_corpus(corpus, calibrated, bundle, capsys):
    data = corpus / "in_domain"
    before = bundle.read_bytes()
    assert main(["calibrate", str(bundle), str(data), "--no-write", "--n-boot", "10", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert bundle.read_bytes() == before and "not written (--no-write)" in out
    assert "false accepts" in out and "speakers to add to halve it" in out and "held-out check" in out
    bundle, report = calibrated
    meta = load_bundle(bundle).meta
    model, mean = load_bundle(bundle).model, meta["mean"]
    a, b = meta["calibration"]["a"], meta["calibration"]["b"]
    assert meta["threshold"] == report["threshold"] and "jeffreys calibrate on" in meta["threshold_source"]
    assert meta["calibration_report"]["values"] == report["values"]

    s, y, spk = reference_scores(model, data, mean)
    from jeffreys.scoring import LinearCalibration

    ref = LinearCalibration.fit(s, y, prior=0.5)
    assert a == pytest.approx(ref.a, rel=1e-3) and b == pytest.approx(ref.b, rel=1e-3, abs=1e-3)
    t = meta["threshold"]
    assert t == pytest.approx(-b / a, abs=1e-12)  # p_target 0.5: llr >= 0
    fa, fr = np.mean(s[~y] >= t), np.mean(s[y] < t)
    assert report["values"]["false_accept"] == pytest.approx(fa, abs=1.5 / (~y).sum())
    assert report["values"]["false_reject"] == pytest.approx(fr, abs=1.5 / y.sum())
    assert report["speakers"] == 12 and report["trials"]["count"] == len(y)
    for k, (lo, hi) in report["ci"].items():
        assert lo <= report["values"][k] <= hi or k.startswith(("act_dcf", "min_dcf")), k


def test_verify_the_api_and_onnx_decide_alike_after_calibrate(corpus, calibrated, tmp_path):
    """The same pairs through `jeffreys verify`'s function, the API on the bundle and the API
    on its ONNX export: one decision, and the reference score's side of the threshold."""
    pytest.importorskip("onnxruntime")
    from jeffreys.export import export_onnx
    from jeffreys.verify import verify

    bundle, report = calibrated
    data = corpus / "in_domain"
    model, meta = load_bundle(bundle).model, load_bundle(bundle).meta
    s, _, _ = reference_scores(model, data, meta["mean"])
    t = meta["threshold"]
    export_onnx(bundle, tmp_path / "model.onnx")
    mb, mo = jeffreys.load(bundle), jeffreys.load(tmp_path / "model.onnx")
    assert mo.threshold == mb.threshold == t and mo.meta["calibration"] == mb.meta["calibration"]
    dd, tl = read_datadir(data), read_trials(data / "trials")
    decided = []
    for (e, u), sref in list(zip(zip(tl.enroll, tl.test), s))[::9]:
        fa_, fb_ = dd.wav[e], dd.wav[u]
        d = [verify(bundle, fa_, fb_)["same_speaker"], mb.verify(fa_, fb_).same, mo.verify(fa_, fb_).same]
        assert d[0] == d[1] == d[2], (e, u, d)
        if abs(sref - t) > 1e-5:
            assert d[0] == (sref >= t)
        decided.append(d[0])
    assert True in decided and False in decided


def test_operating_points_and_bad_input(corpus, bundle, capsys):
    data = corpus / "in_domain"
    r = calibrate(bundle, data, max_false_accept=0.1, n_boot=20, write=False)
    assert r["values"]["false_accept"] <= 0.1
    r2 = calibrate(bundle, data, threshold=0.5, n_boot=20, write=False)
    assert r2["threshold"] == 0.5 and r2["threshold_llr"] == pytest.approx(r2["calibration"]["a"] * 0.5 + r2["calibration"]["b"])
    r3 = calibrate(bundle, data, p_target=0.01, n_boot=20, write=False)
    c = r3["calibration"]
    assert c["prior"] == 0.01 and r3["threshold"] == pytest.approx((math.log(99) - c["b"]) / c["a"])
    assert r3["p_targets"] == [0.01]
    for argv, match in [
        ([str(bundle.with_suffix(".onnx")), str(data)], "calibrate writes into a bundle"),
        ([str(bundle), str(data), "--p-target", "1.5"], "strictly between 0 and 1"),
        ([str(bundle), str(data), "--max-false-accept", "nan"], "finite"),
        ([str(bundle), str(data), "--trials", str(corpus / "other_lang" / "trials")], "are not in"),
    ]:
        rc = main(["calibrate", *argv, "--quiet"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and match in err and "\n" not in err, err
    with pytest.raises(SystemExit) as e:  # argparse: one operating point
        main(["calibrate", str(bundle), str(data), "--p-target", "0.5", "--threshold", "1"])
    assert e.value.code == 2 and "not allowed with" in capsys.readouterr().err
    with pytest.raises(InputError, match="choose one operating point"):
        calibrate(bundle, data, p_target=0.5, threshold=1.0)


def test_one_class_trials_and_generated_trials(corpus, bundle, tmp_path):
    data = corpus / "in_domain"
    only = tmp_path / "targets"
    lines = [ln for ln in (data / "trials").read_text().splitlines() if ln.endswith(" target")]
    only.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="target and non-target trials"):
        calibrate(bundle, data, only, n_boot=10, write=False)
    r = calibrate(bundle, corpus / "train", n_boot=10, write=False)  # no trials file there: generated
    assert r["trials"]["source"].startswith("generated from") and r["trials"]["targets"] == 4  # 4 speakers x C(2, 2)


def test_a_failed_calibration_leaves_the_bundle_untouched(corpus, bundle, tmp_path):
    before = bundle.read_bytes()
    (tmp_path / "out").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        calibrate(bundle, corpus / "in_domain", n_boot=10, out=tmp_path / "out")
    assert bundle.read_bytes() == before


# --------------------------------------------------------------------------- the pieces
def synthetic(n_spk: int = 24, per: int = 4, seed: int = 0):
    """Trials of n_spk speakers with a speaker effect: scores of one speaker's trials share an offset."""
    rng = np.random.default_rng(seed)
    offset = rng.normal(0, 0.4, n_spk)
    enroll_spk, test_spk, scores, labels = [], [], [], []
    for s in range(n_spk):
        for k in range(per):
            for t in range(n_spk):
                same = s == t
                if not same and rng.random() > 0.3:
                    continue
                enroll_spk.append(f"s{s:02d}")
                test_spk.append(f"s{t:02d}")
                labels.append(same)
                scores.append((2.0 if same else 0.0) + offset[s] + rng.normal())
    return np.array(scores), np.array(labels), enroll_spk, test_spk


def test_intervals_are_bootstrap_ci_replicates():
    s, y, es, _ = synthetic()
    llr = 1.7 * s - 1.1
    values, cis = speaker_bootstrap(s, llr, y, es, 1.0, (0.01, 0.5), 300, 3)
    want = bootstrap_ci(llr, y, p_targets=(0.01, 0.5), n_boot=300, seed=3, groups=es,
                        metrics=("eer", "min_dcf", "act_dcf", "cllr", "min_cllr"))
    assert cis["eer"] == want["eer"] and cis["cllr"] == want["cllr"] and cis["min_cllr"] == want["min_cllr"]
    for p in (0.01, 0.5):
        assert cis[f"min_dcf@{p:g}"] == want["min_dcf"][p] and cis[f"act_dcf@{p:g}"] == want["act_dcf"][p]
    # the rates, recomputed per speaker from the same draws
    spk = sorted(set(es))
    acc_non = np.array([np.sum((s >= 1.0) & ~y & (np.array(es) == g)) for g in spk])
    n_non = np.array([np.sum(~y & (np.array(es) == g)) for g in spk])
    rej_tar = np.array([np.sum((s < 1.0) & y & (np.array(es) == g)) for g in spk])
    n_tar = np.array([np.sum(y & (np.array(es) == g)) for g in spk])
    rng = np.random.default_rng(3)
    fa, fr = [], []
    for _ in range(300):
        c = multiplicities(rng, len(spk))
        if (c * n_tar).sum() and (c * n_non).sum():
            fa.append((c * acc_non).sum() / (c * n_non).sum())
            fr.append((c * rej_tar).sum() / (c * n_tar).sum())
    assert cis["false_accept"] == pytest.approx(tuple(np.quantile(fa, [0.025, 0.975])), abs=1e-12)
    assert cis["false_reject"] == pytest.approx(tuple(np.quantile(fr, [0.025, 0.975])), abs=1e-12)
    assert values["false_accept"] == pytest.approx(np.mean(s[~y] >= 1.0))


def test_far_threshold_is_the_lowest_meeting_the_target():
    rng = np.random.default_rng(1)
    s = np.round(rng.normal(size=400), 1)  # many ties
    y = rng.random(400) < 0.3
    for f in (0.0, 0.01, 0.05, 0.2, 0.5, 0.99):
        t = far_threshold(s, y, f)
        fa = lambda thr: np.mean(s[~y] >= thr)  # noqa: E731
        assert fa(t) <= f
        feasible = [c for c in np.unique(s) if fa(c) <= f]
        best = min(feasible) if feasible else math.inf
        assert np.array_equal(s >= t, s >= best)  # the same accepted trials as the brute-force lowest


def test_halving_fits_the_width_power_law():
    s, y, es, ts = synthetic(n_spk=32)
    llr = s - 1.0
    h = halving(s, llr, y, es, 1.0, (0.5,), 0)
    assert h["speakers"] == 32
    assert {"false_accept", "false_reject", "eer", "cllr", "min_dcf@0.5", "act_dcf@0.5", "min_cllr"} == set(h["measures"])
    for k, m in h["measures"].items():
        sizes = np.array([float(n) for n in m["widths"]])
        w = np.array(list(m["widths"].values()))
        assert sizes[0] == 16 and 32 in sizes  # from N/2 on
        x, z = np.log(sizes), np.log(w)
        g = -np.sum((x - x.mean()) * (z - z.mean())) / np.sum((x - x.mean()) ** 2)  # least-squares slope, closed form
        assert m["exponent"] == pytest.approx(g, rel=1e-9)
        assert m["more_speakers"] is None or m["more_speakers"] == math.ceil(32 * 2 ** (1 / g) - 32)
    # rates and Cllr average per-speaker contributions: their width falls as m^-1/2, so about 3N more halve it
    for k in ("false_accept", "false_reject", "cllr"):
        assert 0.38 < h["measures"][k]["exponent"] < 0.62, (k, h["measures"][k])
        assert 55 < h["measures"][k]["more_speakers"] < 160
    keep = np.array([e < "s06" for e in es])  # 6 enrolment speakers: too few to stand for a population
    few = halving(s[keep], llr[keep], y[keep], list(np.array(es)[keep]), 1.0, (0.5,), 0)
    assert "why_not" in few and few["measures"] == {}


def test_held_out_check_on_separable_speakers():
    s, y, es, ts = synthetic(n_spk=20)
    s = np.where(y, 10.0, -10.0) + 0.1 * np.random.default_rng(0).normal(size=len(s))
    from jeffreys.scoring import LinearCalibration

    full = LinearCalibration.fit(s, y)
    r = held_out(s, y, es, ts, 0.5, {"p_target": 0.5}, 5, 0, full=(full, -full.b / full.a))
    assert r["folds"] == 5 and 0 < r["trials"] <= len(s)
    assert r["false_accept"] == 0.0 and r["false_reject"] == 0.0 and r["cllr"] < 0.01
    assert r["in_sample"]["false_accept"] == 0.0 and r["in_sample"]["cllr"] < 0.01
    # a fold's trials are those among its own speakers: targets all, non-targets about 1/5
    assert r["targets"] == int(y.sum()) and r["trials"] - r["targets"] < 0.4 * (~y).sum()
    assert "why_not" in held_out(s[:10], y[:10], ["a"] * 10, ["a"] * 5 + ["b"] * 5, 0.5, {"p_target": 0.5}, 5, 0)
