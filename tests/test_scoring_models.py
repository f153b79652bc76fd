"""Multi-utterance enrolment models in scoring, against a literal float64 loop; errors; the
CLI on a prepared SdSV replica."""

import numpy as np
import pytest
import replicas

from jeffreys.cli import main
from jeffreys.data.datadir import read_datadir
from jeffreys.data.trials import read_models, read_scores, read_trials, write_trials
from jeffreys.embeddings import write_embeddings
from jeffreys.errors import InputError
from jeffreys.scoring import asnorm, compute_mean, cosine_scores, save_mean, snorm
from test_scoring import literal_snorm  # the loop without models


@pytest.fixture
def data():
    rng = np.random.default_rng(1)
    ids = [f"u{i:02d}" for i in range(30)]
    spk = np.arange(30) // 5
    m = (rng.standard_normal((6, 12))[spk] * 2 + rng.standard_normal((30, 12)) + 2.0).astype(np.float32)
    models = {"mA": ["u00", "u01", "u02"], "mB": ["u05"], "mC": ["u10", "u11", "u12", "u13"], "u29": ["u20", "u21"]}
    trials = [("mA", "u03"), ("mA", "u07"), ("mB", "u06"), ("mC", "u14"), ("mC", "u04"),
              ("u00", "u04"), ("u29", "u22"), ("u29", "u29")]
    cohort = (rng.standard_normal((25, 12)) * 2 + 2.0).astype(np.float32)
    return ids, m, models, trials, cohort


def unit(v):
    return v / np.linalg.norm(v)


def literal_side(emb, models, x, mean):
    """Enrolment side in float64: a model is the mean of its utterances' centred,
    length-normalised embeddings (a model id wins over an utterance id); else the utterance."""
    if x in models:
        return np.mean([unit(emb[u].astype(np.float64) - mean) for u in models[x]], axis=0)
    return emb[x].astype(np.float64) - mean


def literal_cos(a, b):
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def literal_scores(emb, models, trials, mean):
    return np.array([literal_cos(literal_side(emb, models, e, mean), emb[t].astype(np.float64) - mean) for e, t in trials])


@pytest.mark.parametrize("centred", [True, False])
def test_cosine_with_models_against_loop(data, centred):
    ids, m, models, trials, _ = data
    emb = dict(zip(ids, m))
    mean = compute_mean(m) if centred else None
    ref = literal_scores(emb, models, trials, np.zeros(12) if mean is None else mean.astype(np.float64))
    got = cosine_scores((ids, m), None, trials, mean=mean, models=models)
    assert np.allclose(got, ref, atol=1e-6)
    # a separate test table
    got2 = cosine_scores((ids, m), (ids, m), trials, mean=mean, models=models)
    assert np.allclose(got2, ref, atol=1e-6)
    # the order matters: normalising before averaging differs from averaging raw vectors
    raw = np.mean([m[ids.index(u)] for u in models["mC"]], axis=0)
    other = literal_cos(raw - (0 if mean is None else mean), emb["u14"] - (0 if mean is None else mean))
    assert abs(got[3] - other) > 1e-4


def test_without_models_a_model_id_is_missing(data):
    ids, m, models, trials, _ = data
    with pytest.raises(InputError, match="3 ids of the trial list \\(enrolment side\\) have no embedding in embeddings; first: mA, mB, mC"):
        cosine_scores((ids, m), None, trials)
    # and with models, an id that is neither a model nor an utterance
    with pytest.raises(InputError, match=r"1 ids of the trial list \(enrolment side; not models of models\) have no embedding in embeddings; first: ghost"):
        cosine_scores((ids, m), None, trials + [("ghost", "u01")], models=models)
    with pytest.raises(InputError, match=r"trial list \(test side\) have no embedding in embeddings; first: mA"):
        cosine_scores((ids, m), None, [("u01", "mA")], models=models)


def test_model_naming_an_utterance_without_embedding(tmp_path, data):
    ids, m, models, trials, _ = data
    (tmp_path / "models").write_text("mA u00 u01\nmB u05 u99 u98\n")
    with pytest.raises(InputError, match=r"models:2: model 'mB': enrolment utterance 'u99' has no embedding in embeddings"):
        cosine_scores((ids, m), None, trials[:2], models=tmp_path / "models")
    with pytest.raises(InputError, match=r"^models: model 'mB': enrolment utterance 'zz'"):
        cosine_scores((ids, m), None, trials[:2], models={"mB": ["zz"]})


def test_model_averaging_to_zero(data):
    ids, m, _, _, _ = data
    m2 = m.copy()
    m2[1] = -m2[0]
    with pytest.raises(InputError, match="model 'z': its normalised enrolment embeddings average to zero"):
        cosine_scores((ids, m2), None, [("z", "u03")], models={"z": ["u00", "u01"]})


@pytest.mark.parametrize("top_n", [None, 7])
def test_snorm_asnorm_with_models_against_loop(data, top_n):
    ids, m, models, trials, cohort = data
    trials = [p for p in trials if p[1] not in models]  # (the loop below looks both sides up alike)
    emb = dict(zip(ids, m))
    mean = compute_mean(m)
    raw = cosine_scores((ids, m), None, trials, mean=mean, models=models)
    kw = dict(mean=mean, models=models)
    got = snorm(raw, trials, (ids, m), None, cohort, **kw) if top_n is None else asnorm(raw, trials, (ids, m), None, cohort, top_n=top_n, **kw)
    # the models as embeddings of their own, whose centred versions are the literal sides
    mean64 = mean.astype(np.float64)
    sides = {**{u: v.astype(np.float64) for u, v in emb.items()}, **{x: literal_side(emb, models, x, mean64) + mean64 for x in models}}
    assert np.allclose(got, literal_snorm(sides, trials, cohort, mean64, top_n), atol=1e-5)


def test_cli_score_prepared_sdsv(tmp_path, capsys):
    src, dst = tmp_path / "sdsv", tmp_path / "data"
    rep = replicas.sdsv(src, keyed=True)
    assert main(["prepare", "sdsv", str(src), str(dst), "--no-durations"]) == 0
    utts = read_datadir(dst).utts
    rng = np.random.default_rng(2)
    m = rng.standard_normal((len(utts), 8)).astype(np.float32) + 1.0
    write_embeddings(tmp_path / "xv", utts, m, fmt="kaldi")
    mean = compute_mean(m)
    save_mean(tmp_path / "mean.npy", mean)
    args = ["score", str(tmp_path / "xv.scp"), "--trials", str(dst / "trials"), "--mean", str(tmp_path / "mean.npy"),
            "--out", str(tmp_path / "scores")]
    # the trials name models: without --models, the usual missing-ids error
    assert main(args) == 2
    assert "first: model_00002, model_00001" in capsys.readouterr().err
    assert main(args + ["--models", str(dst / "models")]) == 0
    s = read_scores(tmp_path / "scores")
    t = read_trials(dst / "trials")
    assert (s.enroll, s.test) == (t.enroll, t.test) == ([x for x, _, _ in rep["trials"]], [y for _, y, _ in rep["trials"]])
    ref = literal_scores(dict(zip(utts, m)), read_models(dst / "models"), list(zip(t.enroll, t.test)), mean.astype(np.float64))
    assert np.allclose(s.score, ref, atol=1e-6)
    # AS-norm with models through the CLI as well
    write_embeddings(tmp_path / "coh", [f"c{i}" for i in range(6)], rng.standard_normal((6, 8)), fmt="npy")
    assert main(args + ["--models", str(dst / "models"), "--cohort", str(tmp_path / "coh.npy"), "--top-n", "3"]) == 0
    # a models file line naming an utterance without embedding
    (tmp_path / "models").write_text("model_00001 enr_000001\nmodel_00002 enr_000004 enr_999999\n")
    assert main(args + ["--models", str(tmp_path / "models")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'models'}:2: model 'model_00002': enrolment utterance 'enr_999999' has no embedding" in err
    assert len(err.strip().splitlines()) == 1
    write_trials(tmp_path / "t2", [("nobody", "evl_000001", True)])
    assert main(args[:3] + [str(tmp_path / "t2")] + args[4:] + ["--models", str(dst / "models")]) == 2
    assert "first: nobody" in capsys.readouterr().err
