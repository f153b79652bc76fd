"""Scoring back-end against literal loops: centred cosine, S-norm, AS-norm; calibration; CLI."""

import json

import numpy as np
import pytest

from jeffreys.cli import main
from jeffreys.data.trials import read_scores, read_trials, write_trials
from jeffreys.embeddings import write_embeddings
from jeffreys.errors import InputError
from jeffreys.metrics import evaluate
from jeffreys.scoring import (
    LinearCalibration,
    asnorm,
    compute_mean,
    cosine_scores,
    load_mean,
    save_mean,
    snorm,
    write_scores,
)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    n_spk, per = 12, 4
    centres = rng.standard_normal((n_spk, 16)) * 2
    ids = [f"spk{s:02d}/u{k}" for s in range(n_spk) for k in range(per)]
    m = (np.repeat(centres, per, axis=0) + rng.standard_normal((n_spk * per, 16)) + 3.0).astype(np.float32)
    pairs = [(ids[i], ids[j], ids[i][:5] == ids[j][:5]) for i in range(len(ids)) for j in range(i + 1, len(ids)) if (i + j) % 3 == 0]
    cohort = (rng.standard_normal((30, 16)) * 2 + 3.0).astype(np.float32)
    return ids, m, pairs, cohort


def cos(a, b):
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def test_cosine_against_loop(data):
    ids, m, pairs, _ = data
    mean = compute_mean(m)
    assert np.allclose(mean, m.astype(np.float64).mean(0), atol=1e-6)
    emb = dict(zip(ids, m))
    got = cosine_scores((ids, m), None, [(e, t) for e, t, _ in pairs], mean=mean)
    ref = [cos(emb[e] - mean, emb[t] - mean) for e, t, _ in pairs]
    assert np.allclose(got, ref, atol=1e-6)
    # separate enrolment/test tables, dict input, no mean
    got2 = cosine_scores(emb, (ids, m), ([e for e, _, _ in pairs], [t for _, t, _ in pairs]))
    assert np.allclose(got2, [cos(emb[e], emb[t]) for e, t, _ in pairs], atol=1e-6)
    # centring helps: the shared offset of 3.0 makes raw cosines less discriminant here
    y = [l for *_, l in pairs]
    assert evaluate(got, y)["eer"] <= evaluate(got2, y)["eer"]


def test_missing_embedding_is_an_error(data):
    ids, m, _, _ = data
    with pytest.raises(InputError, match="2 ids of the trial list \\(test side\\) have no embedding in embeddings; first: nope1, nope2"):
        cosine_scores((ids, m), None, [(ids[0], "nope1"), (ids[1], "nope2"), (ids[2], "nope1")])


def test_mean_file(tmp_path, data):
    _, m, _, _ = data
    save_mean(tmp_path / "mean.npy", compute_mean(m))
    assert np.array_equal(load_mean(tmp_path / "mean.npy"), compute_mean(m))
    np.save(tmp_path / "bad.npy", np.zeros((2, 2)))
    with pytest.raises(InputError, match="bad.npy: the mean must be a finite 1-D vector"):
        load_mean(tmp_path / "bad.npy")
    with pytest.raises(InputError, match="mean has shape"):
        cosine_scores((["a"], m[:1]), None, [("a", "a")], mean=np.zeros(3))


def literal_snorm(emb, pairs, cohort, mean, top_n):
    out = []
    for e, t in pairs:
        s = cos(emb[e] - mean, emb[t] - mean)
        z = []
        for u in (e, t):
            c = sorted((cos(emb[u] - mean, k - mean) for k in cohort), reverse=True)
            c = np.array(c[:top_n] if top_n else c)
            z.append((s - c.mean()) / c.std())
        out.append((z[0] + z[1]) / 2)
    return np.array(out)


@pytest.mark.parametrize("top_n", [None, 5])
def test_snorm_and_asnorm_against_loop(data, top_n):
    ids, m, pairs, cohort = data
    emb = dict(zip(ids, m))
    mean = compute_mean(m)
    tr = [(e, t) for e, t, _ in pairs]
    raw = cosine_scores(emb, None, tr, mean=mean)
    got = snorm(raw, tr, emb, None, cohort, mean=mean) if top_n is None else asnorm(raw, tr, emb, None, cohort, top_n=top_n, mean=mean)
    assert np.allclose(got, literal_snorm(emb, tr, cohort, mean, top_n), atol=1e-5)


def test_calibration_improves_cllr_of_shifted_scores():
    rng = np.random.default_rng(0)
    n = 4000
    y = rng.random(n) < 0.2
    llr = np.where(y, 2.0, -2.0) + rng.standard_normal(n) * 2.0  # calibrated LLRs: N(+-2, 2^2) ...
    bad = 3.0 * llr + 7.0  # ... miscalibrated by scale and shift
    before = evaluate(bad, y)
    cal = LinearCalibration.fit(bad, y)
    after = evaluate(cal.apply(bad), y)
    assert after["cllr"] < 0.5 * before["cllr"]
    assert after["cllr"] == pytest.approx(after["min_cllr"], abs=0.02)
    assert after["eer"] == before["eer"]  # monotone: discrimination unchanged
    # the fit recovers the inverse map (N(+-2, 4) are exactly calibrated LLRs)
    assert cal.a == pytest.approx(1 / 3, rel=0.1) and cal.b == pytest.approx(-7 / 3, abs=0.3)
    # it minimises the prior-weighted objective: nudging the parameters does not help
    def objective(a, b):
        z = a * bad + b
        return 0.5 * np.mean(np.logaddexp(0, -z[y])) + 0.5 * np.mean(np.logaddexp(0, z[~y]))
    best = objective(cal.a, cal.b)
    for da, db in [(1e-3, 0), (-1e-3, 0), (0, 1e-2), (0, -1e-2)]:
        assert objective(cal.a + da, cal.b + db) > best


def test_calibration_file_and_errors(tmp_path):
    c = LinearCalibration(2.0, -1.0, 0.1)
    c.save(tmp_path / "c.json")
    assert LinearCalibration.load(tmp_path / "c.json") == c
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(InputError, match="x.json: expected"):
        LinearCalibration.load(tmp_path / "x.json")
    with pytest.raises(InputError, match="index 1 is inf"):
        LinearCalibration.fit([0.0, np.inf], [1, 0])
    with pytest.raises(InputError, match="targets and non-targets"):
        LinearCalibration.fit([0.0, 1.0], [1, 1])


def test_write_scores_round_trip(tmp_path):
    write_scores(tmp_path / "s", [("a", "b"), ("c", "d")], [0.123456789012, -1e-12])
    r = read_scores(tmp_path / "s")
    assert r.enroll == ["a", "c"] and np.allclose(r.score, [0.123456789012, -1e-12], rtol=1e-9)


def test_cli_score(tmp_path, data, capsys):
    ids, m, pairs, cohort = data
    write_embeddings(tmp_path / "xv", ids, m, fmt="kaldi")
    write_embeddings(tmp_path / "coh", [f"c{i}" for i in range(len(cohort))], cohort, fmt="npy")
    save_mean(tmp_path / "mean.npy", compute_mean(m))
    write_trials(tmp_path / "trials", pairs)
    assert main(["score", str(tmp_path / "xv.scp"), "--trials", str(tmp_path / "trials"), "--mean",
                 str(tmp_path / "mean.npy"), "--out", str(tmp_path / "scores")]) == 0
    r = read_scores(tmp_path / "scores")
    tr = read_trials(tmp_path / "trials")
    assert r.enroll == tr.enroll
    assert np.allclose(r.score, cosine_scores((ids, m), None, tr, mean=compute_mean(m)), atol=1e-8)
    # AS-norm + a calibration trained on these scores, saved
    assert main(["score", str(tmp_path / "xv"), "--trials", str(tmp_path / "trials"), "--mean", str(tmp_path / "mean.npy"),
                 "--cohort", str(tmp_path / "coh.npy"), "--top-n", "10", "--train-calibration", str(tmp_path / "scores"),
                 "--dev-trials", str(tmp_path / "trials"), "--save-calibration", str(tmp_path / "cal.json"),
                 "--out", str(tmp_path / "scores2")]) == 0
    assert json.loads((tmp_path / "cal.json").read_text())["type"] == "linear"
    assert main(["metrics", str(tmp_path / "scores2"), "--trials", str(tmp_path / "trials")]) == 0
    # a trial naming an utterance without embedding: one-line error, exit 2
    write_trials(tmp_path / "t2", pairs[:2] + [("ghost/u1", ids[0], False)])
    assert main(["score", str(tmp_path / "xv.scp"), "--trials", str(tmp_path / "t2"), "--out", str(tmp_path / "s3")]) == 2
    assert "first: ghost/u1" in capsys.readouterr().err
