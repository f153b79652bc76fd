"""Scoring back-end: mean-centred cosine, S-norm / adaptive S-norm, linear calibration.

The paper's back-end (Sec. 5.1): embeddings are centred by the mean of the *training* set
(computed once with :func:`compute_mean`, saved next to the model with :func:`save_mean`),
length-normalised, and a trial's score is the cosine of its two embeddings. Optional stages:

* score normalisation against a cohort (e.g. the training speakers' mean embeddings):
  S-norm ``((s - mu_e)/sd_e + (s - mu_t)/sd_t) / 2`` with each side's statistics over the whole
  cohort, or adaptive S-norm over each side's ``top_n`` highest cohort scores;
* :class:`LinearCalibration`: ``llr = a * score + b`` trained by prior-weighted logistic
  regression on a development trial list (as BOSARIS ``train_linear_calibration``), so that
  scores become natural-log likelihood ratios (actDCF and Cllr then mean something).

Embeddings are given as anything :meth:`jeffreys.embeddings.EmbeddingTable.of` accepts: an
``(ids, matrix)`` pair (what :func:`jeffreys.embeddings.read_embeddings` returns), a mapping
id -> vector, or a path. Trials are a :class:`jeffreys.data.trials.Trials`, a
:class:`~jeffreys.data.trials.Scores`, a pair ``(enroll_ids, test_ids)`` or a sequence of
``(enroll, test)`` pairs. A trial naming an id without embedding is an error listing the
first missing ids.

Multi-utterance enrolment (SdSV task 2; SITW ``models`` files): with ``models`` (a
``models`` file path, see :func:`jeffreys.data.trials.read_models`, or a mapping model id
-> enrolment utterance ids), a trial's enrolment side may name a model. Its embedding is
built as in Kaldi / the SdSV baseline: each enrolment utterance's embedding is centred by
``mean`` (when given) and length-normalised, the normalised vectors are averaged, and the
cosine with the (centred, length-normalised) test embedding renormalises that average.
A model id shadows an utterance of the same id; every model must name utterances of the
enrolment embeddings (else an error naming the models file line).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, compress, repeat
from pathlib import Path

import numpy as np

from .data.trials import Models
from .embeddings import EmbeddingTable
from .errors import InputError
from .fileio import AtomicFiles, atomic_write, check_output, read_npy, read_text, save_npy

BATCH = 1 << 15  # trials per gathered batch: 2 x 32768 x 256 float32 = 64 MiB


# ----------------------------------------------------------------------------- the mean
def compute_mean(matrix) -> np.ndarray:
    """Mean embedding (float32, shape (D,)), accumulated in float64."""
    m = np.asarray(matrix)
    if m.ndim != 2 or len(m) == 0:
        raise InputError(f"compute_mean needs a non-empty N x D matrix (got shape {m.shape})")
    return m.mean(axis=0, dtype=np.float64).astype(np.float32)


def save_mean(path: str | Path, mean, *, files: AtomicFiles | None = None) -> None:
    """The mean as a float32 ``.npy`` vector, atomically (``files``: in the caller's transaction)."""
    m = np.asarray(mean, dtype=np.float32)
    if files is None:
        with atomic_write(path, "wb") as f:
            save_npy(f, m)
    else:
        save_npy(files.open(path, "wb"), m)


def load_mean(path: str | Path) -> np.ndarray:
    """The float32 mean vector of a ``.npy`` file (no pickles); an InputError naming the
    file if it is not one finite 1-D vector."""
    p = Path(path)
    m = read_npy(p, "mean .npy", size_limit="JEFFREYS_MAX_EMBEDDING_BYTES")
    if m.ndim != 1 or m.dtype.kind not in "fiu" or not np.isfinite(m).all():
        raise InputError(f"{p}: the mean must be a finite 1-D vector (got shape {m.shape}, dtype {m.dtype})")
    from .decision import check_mean

    check_mean(m, p, "the mean")
    return m.astype(np.float32)


# ----------------------------------------------------------------------------- helpers
def trial_pairs(trials) -> tuple[list[str], list[str]]:
    """(enroll ids, test ids) of any accepted trial-list form."""
    if hasattr(trials, "enroll") and hasattr(trials, "test"):
        return list(trials.enroll), list(trials.test)
    if isinstance(trials, tuple) and len(trials) == 2 and not isinstance(trials[0], str):
        e, t = trials
        if len(e) != len(t):
            raise InputError(f"{len(e)} enrolment ids but {len(t)} test ids")
        return list(e), list(t)
    pairs = list(trials)
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _normalised(table: EmbeddingTable, mean, rows: np.ndarray | None = None) -> np.ndarray:
    """Centred (if ``mean`` is given) and length-normalised rows (all, or ``rows``); a zero
    vector is an error naming its id."""
    x = table.matrix.copy() if rows is None else table.matrix[rows]  # a fresh array: work in place
    if mean is not None:
        mean = np.asarray(mean, dtype=np.float32)
        if mean.shape != (x.shape[1],):
            raise InputError(f"mean has shape {mean.shape} but the embeddings of {table.where} have dimension {x.shape[1]}")
        x -= mean
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))
    zero = np.flatnonzero(norm == 0)
    if len(zero):
        u = table.ids[zero[0] if rows is None else rows[zero[0]]]
        raise InputError(f"{table.where}: embedding of {u!r} is zero after centring; cosine undefined")
    x /= norm[:, None]
    return x


def _as_table(x, where: str) -> EmbeddingTable:
    if isinstance(x, np.ndarray):
        return EmbeddingTable([f"row{i}" for i in range(len(x))], x, where)
    return EmbeddingTable.of(x, where)


def _enrol_rows(table: EmbeddingTable, ids: list[str], models: Models | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row of each enrolment id: an utterance's row in ``table``, or ``len(table.ids) + k``
    for the k-th model; and the models' utterance rows (concatenated) and counts."""
    if not models:
        return table.rows(ids, "trial list (enrolment side)"), np.empty(0, np.int64), np.empty(0, np.int64)
    sizes = np.fromiter(map(len, models.values()), dtype=np.int64, count=len(models))
    try:
        members = np.fromiter(map(table.index.__getitem__, chain.from_iterable(models.values())), dtype=np.int64, count=int(sizes.sum()))
    except KeyError:
        m, u = next((m, u) for m, utts in models.items() for u in utts if u not in table.index)
        raise InputError(f"{models.locate(m)}: model {m!r}: enrolment utterance {u!r} has no embedding in {table.where}") from None
    k = np.fromiter(map({m: i for i, m in enumerate(models)}.get, ids, repeat(-1)), dtype=np.int64, count=len(ids))
    utt = k < 0
    rows = k + len(table.ids)
    if utt.any():
        rows[utt] = table.rows(list(compress(ids, utt)), f"trial list (enrolment side; not models of {models.where})")
    return rows, members, sizes


def _normalised_used(table: EmbeddingTable, mean, sides: list[np.ndarray], models: Models | None = None,
                     members: np.ndarray | None = None, sizes: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Normalise only the rows ``sides`` use: utterance rows, and model rows ``>= len(table.ids)``
    built from ``members`` (the models' utterance rows, ``sizes`` a model). Returns the
    normalised matrix and each side's rows in it."""
    n = len(table.ids)
    rows = np.concatenate(sides)
    if models is None or len(sizes) == 0:
        used, pos = np.unique(rows, return_inverse=True)
        x = _normalised(table, mean, used)
    else:
        direct = rows < n
        used, inv = np.unique(np.concatenate((rows[direct], members)), return_inverse=True)
        x = _normalised(table, mean, used)
        k = int(direct.sum())
        x = np.concatenate((x, _model_means(x, inv[k:], sizes, models)))
        pos = len(used) + rows - n
        pos[direct] = inv[:k]
    return x, np.split(pos.ravel(), np.cumsum([len(r) for r in sides])[:-1])


def _model_means(x: np.ndarray, members: np.ndarray, sizes: np.ndarray, models: Models) -> np.ndarray:
    """Length-normalised mean of the (already normalised) rows ``members`` of each model
    (``sizes`` rows a model), as one sparse x dense product. The 1/size of the mean is left
    out: the length normalisation removes it."""
    from scipy.sparse import csr_matrix

    indptr = np.concatenate(([0], np.cumsum(sizes)))
    v = csr_matrix((np.ones(len(members), np.float32), members, indptr), shape=(len(sizes), len(x))) @ x
    norm = np.sqrt(np.einsum("ij,ij->i", v, v))
    zero = np.flatnonzero(norm <= 1e-6 * np.sqrt(sizes))  # zero but for float32 rounding
    if len(zero):
        m = list(models)[zero[0]]
        raise InputError(f"{models.locate(m)}: model {m!r}: its normalised enrolment embeddings average to zero; cosine undefined")
    v /= norm[:, None]
    return v


def _sides(enroll, test, trials, mean, models=None):
    """Normalised embeddings of the trial sides and each trial's row in them: ``(a, ia, b,
    ib)``. With ``test=None`` both sides share one table, normalised once. ``models``: the
    enrolment side may name models (rows appended to ``a``)."""
    e_ids, t_ids = trial_pairs(trials)
    models = None if models is None else Models.of(models)
    te = _as_table(enroll, "embeddings" if test is None else "enrolment")
    tt = te if test is None else _as_table(test, "test")
    re, members, sizes = _enrol_rows(te, e_ids, models)
    rt = tt.rows(t_ids, "trial list (test side)")
    if tt is te:
        a, (ia, ib) = _normalised_used(te, mean, [re, rt], models, members, sizes)
        return a, ia, a, ib
    a, (ia,) = _normalised_used(te, mean, [re], models, members, sizes)
    b, (ib,) = _normalised_used(tt, mean, [rt])
    return a, ia, b, ib


def _rowwise_dot(a: np.ndarray, ia: np.ndarray, b: np.ndarray, ib: np.ndarray) -> np.ndarray:
    out = np.empty(len(ia), dtype=np.float64)
    for s in range(0, len(ia), BATCH):
        sl = slice(s, s + BATCH)
        out[sl] = np.einsum("ij,ij->i", a[ia[sl]], b[ib[sl]])
    return out


# ----------------------------------------------------------------------------- scores
def cosine_scores(enroll, test, trials, mean=None, models=None) -> np.ndarray:
    """Cosine score of each trial (float64, trial order) after centring by ``mean``.

    ``test=None`` looks both sides up in ``enroll`` (one embedding file for the whole
    evaluation set, the usual case). ``models`` (a path or a mapping model -> utterance
    ids): trials may name enrolment models, scored with the mean of their utterances'
    centred, length-normalised embeddings (module docstring).
    """
    return _rowwise_dot(*_sides(enroll, test, trials, mean, models))


def _cohort_stats(x: np.ndarray, cohort: np.ndarray, top_n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each row's cosine scores against the cohort (all of
    them, or the ``top_n`` highest)."""
    mu = np.empty(len(x))
    sd = np.empty(len(x))
    step = max(1, (1 << 24) // max(1, len(cohort)))  # ~64 MiB of float32 scores per block
    for s in range(0, len(x), step):
        c = x[s : s + step] @ cohort.T
        if top_n is not None and top_n < c.shape[1]:
            c = np.partition(c, c.shape[1] - top_n, axis=1)[:, -top_n:]
        c = c.astype(np.float64)
        mu[s : s + step] = c.mean(axis=1)
        sd[s : s + step] = c.std(axis=1)
    return mu, sd


def asnorm(scores, trials, enroll, test, cohort, top_n: int | None = 300, mean=None, models=None) -> np.ndarray:
    """Adaptive S-norm: each side normalised by the statistics of its ``top_n`` highest
    cohort scores (``top_n=None``: the whole cohort, i.e. S-norm); returns the mean of the
    two normalised scores. ``cohort``: embeddings (any accepted form, or an N x D array),
    centred by the same ``mean``. ``models``: as in :func:`cosine_scores`; a model's cohort
    statistics are those of its mean embedding."""
    s = np.asarray(scores, dtype=np.float64)
    if len(s) != len(trial_pairs(trials)[0]):
        raise InputError(f"{len(s)} scores for {len(trial_pairs(trials)[0])} trials")
    if top_n is not None and top_n < 2:
        raise InputError(f"top_n must be at least 2 (got {top_n})")
    c = _normalised(_as_table(cohort, "cohort"), mean)
    a, ia, b, ib = _sides(enroll, test, trials, mean, models)
    mu_a, sd_a = _cohort_stats(a, c, top_n)
    mu_b, sd_b = (mu_a, sd_a) if b is a else _cohort_stats(b, c, top_n)
    if (sd_a == 0).any() or (sd_b == 0).any():
        raise InputError(f"cohort scores of an utterance have zero spread ({len(c)} cohort embeddings, top_n={top_n})")
    return 0.5 * ((s - mu_a[ia]) / sd_a[ia] + (s - mu_b[ib]) / sd_b[ib])


def snorm(scores, trials, enroll, test, cohort, mean=None, models=None) -> np.ndarray:
    """Symmetric score normalisation against the whole cohort (see :func:`asnorm`)."""
    return asnorm(scores, trials, enroll, test, cohort, top_n=None, mean=mean, models=models)


# ----------------------------------------------------------------------------- calibration
def _logit(p: float) -> float:
    return math.log(p / (1 - p))


@dataclass
class LinearCalibration:
    """``llr = a * score + b``, natural-log likelihood ratios."""

    a: float = 1.0
    b: float = 0.0
    prior: float = 0.5

    @classmethod
    def fit(cls, scores, labels, prior: float = 0.5) -> LinearCalibration:
        """Minimise the prior-weighted cross-entropy (BOSARIS): targets weigh ``prior`` and
        non-targets ``1 - prior`` in total, and the prior log-odds are added to the LLR
        before the logistic, so ``a * s + b`` is an LLR whatever the class proportions."""
        from scipy.optimize import minimize
        from scipy.special import expit

        if not 0 < prior < 1:
            raise InputError(f"prior must lie strictly between 0 and 1 (got {prior})")
        s = np.asarray(scores, dtype=np.float64)
        y = np.asarray(labels).astype(bool)
        if len(s) != len(y):
            raise InputError(f"{len(s)} scores but {len(y)} labels")
        bad = np.flatnonzero(~np.isfinite(s))
        if len(bad):
            raise InputError(f"calibration needs finite scores; score at index {bad[0]} is {s[bad[0]]}")
        n_t, n_n = int(y.sum()), int((~y).sum())
        if n_t == 0 or n_n == 0:
            raise InputError(f"calibration needs targets and non-targets (got {n_t} and {n_n})")
        # standardise for conditioning; map back at the end
        m, sd = s.mean(), s.std() or 1.0
        x = (s - m) / sd
        w = np.where(y, prior / n_t, (1 - prior) / n_n)
        sign = np.where(y, -1.0, 1.0)  # target: softplus(-z), non-target: softplus(z)
        lo = _logit(prior)

        def f(theta):
            z = theta[0] * x + theta[1] + lo
            loss = np.logaddexp(0, sign * z)
            g = w * (expit(z) - y)  # d loss_i / d z
            return float(np.dot(w, loss)), np.array([np.dot(g, x), g.sum()])

        res = minimize(f, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", options={"gtol": 1e-10, "maxiter": 1000})
        a_std, b_std = res.x
        a, b = float(a_std / sd), float(b_std - a_std * m / sd)
        from .decision import check_calibration

        check_calibration(a, b, "the fitted calibration (are the scores perfectly separated, or nearly constant?)")
        return cls(a=a, b=b, prior=prior)

    def apply(self, scores) -> np.ndarray:
        return self.a * np.asarray(scores, dtype=np.float64) + self.b

    def save(self, path: str | Path, *, files: AtomicFiles | None = None) -> None:
        """JSON ``{"type": "linear", "a", "b", "prior"}``, atomically (``files``: in the caller's transaction)."""
        text = json.dumps({"type": "linear", "a": self.a, "b": self.b, "prior": self.prior}) + "\n"
        if files is None:
            with atomic_write(path) as f:
                f.write(text)
        else:
            files.open(path).write(text)

    @classmethod
    def load(cls, path: str | Path) -> LinearCalibration:
        """Read a calibration written by :meth:`save`: ``a`` and ``b`` finite numbers, ``prior``
        in (0, 1); anything else (NaN included) is an InputError naming the file."""
        p = Path(path)

        def no_constant(name: str):
            raise ValueError(f"{name} is not a number JSON allows")

        text = read_text(p, "calibration")[1]
        try:
            d = json.loads(text, parse_constant=no_constant)
        except (ValueError, RecursionError) as e:
            raise InputError(f"{p}: not a JSON calibration ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        want = '{"type": "linear", "a": A, "b": B, "prior": P}'
        if not isinstance(d, dict) or d.get("type") != "linear" or not all(
            isinstance(d.get(k), (int, float)) and not isinstance(d.get(k), bool) for k in ("a", "b", "prior")
        ):
            raise InputError(f"{p}: expected {want}")
        a, b, prior = (float(d[k]) for k in ("a", "b", "prior"))
        if not (math.isfinite(a) and math.isfinite(b) and 0 < prior < 1):
            raise InputError(f"{p}: a and b must be finite numbers and prior in (0, 1), got a={a} b={b} prior={prior}")
        from .decision import check_calibration

        check_calibration(a, b, p)
        return cls(a, b, prior)


# ----------------------------------------------------------------------------- files
def write_scores(path: str | Path, trials, scores, *, files: AtomicFiles | None = None) -> None:
    """``enroll test score`` lines in trial order (scores with 10 significant digits), written
    atomically (``files``: in the caller's transaction)."""
    e_ids, t_ids = trial_pairs(trials)
    s = np.asarray(scores, dtype=np.float64)
    if len(s) != len(e_ids):
        raise InputError(f"{len(s)} scores for {len(e_ids)} trials")
    bad = np.flatnonzero(np.isnan(s))
    if len(bad):
        raise InputError(f"{path}: score of trial {e_ids[bad[0]]} {t_ids[bad[0]]} is NaN")
    lines = (f"{e} {t} {v:.10g}\n" for e, t, v in zip(e_ids, t_ids, s.tolist()))
    if files is None:
        with atomic_write(path) as f:
            f.writelines(lines)
    else:
        files.open(path).writelines(lines)


def _load_tables(paths: Sequence[str], allow_pipes: bool = False) -> EmbeddingTable:
    tables = [EmbeddingTable.of(p, where=p, allow_pipes=allow_pipes) for p in paths]
    return tables[0] if len(tables) == 1 else EmbeddingTable.merge(tables)


def cli_score(argv: list[str]) -> int:
    from .data.trials import read_models, read_trials
    from .metrics import load_scored_trials

    ap = argparse.ArgumentParser(
        prog="jeffreys score",
        description="Score a trial list by the cosine of mean-centred embeddings, with optional "
        "S-norm / AS-norm and linear calibration; writes 'enroll test score' lines.",
    )
    ap.add_argument("embeddings", nargs="+", help="embedding files (.scp/.ark/.npy or prefix); ids from all of them")
    ap.add_argument("--trials", required=True, help="Kaldi or VoxCeleb trial list")
    ap.add_argument("--out", required=True, help="scores file to write")
    ap.add_argument("--models", help="enrolment models file ('MODEL UTT1 UTT2 ...' lines, as `jeffreys prepare sitw|sdsv` "
                    "write): trials may name a model, scored with the mean of its utterances' normalised embeddings")
    ap.add_argument("--mean", help="training-set mean (.npy) to subtract before length normalisation")
    ap.add_argument("--cohort", help="cohort embeddings for S-norm (AS-norm with --top-n)")
    ap.add_argument("--top-n", type=int, help="adaptive S-norm: use each side's N highest cohort scores")
    cal = ap.add_mutually_exclusive_group()
    cal.add_argument("--calibration", help="apply a saved linear calibration (JSON)")
    cal.add_argument("--train-calibration", metavar="DEV_SCORES",
                     help="fit a calibration on a development scores file (labels from --dev-trials) and apply it")
    ap.add_argument("--dev-trials", help="trial list of DEV_SCORES (else its 4th column)")
    ap.add_argument("--prior", type=float, default=0.5, help="prior of the calibration objective (default 0.5)")
    ap.add_argument("--save-calibration", help="where to save the fitted calibration (JSON)")
    ap.add_argument("--allow-pipes", action="store_true",
                    help="run `cmd |` entries of embedding scp files (without a shell); refused by default")
    args = ap.parse_args(argv)
    for out in (args.out, args.save_calibration):
        if out:
            check_output(out)
    if args.top_n is not None and not args.cohort:
        raise InputError("--top-n needs --cohort")
    if args.save_calibration and not args.train_calibration:
        raise InputError("--save-calibration needs --train-calibration")

    trials = read_trials(args.trials)
    emb = _load_tables(args.embeddings, args.allow_pipes)
    mean = load_mean(args.mean) if args.mean else None
    models = read_models(args.models) if args.models else None
    s = cosine_scores(emb, None, trials, mean=mean, models=models)
    if args.cohort:
        cohort = EmbeddingTable.of(args.cohort, args.cohort, allow_pipes=args.allow_pipes)
        s = asnorm(s, trials, emb, None, cohort, top_n=args.top_n, mean=mean, models=models)
    fitted = None
    if args.calibration:
        s = LinearCalibration.load(args.calibration).apply(s)
    elif args.train_calibration:
        dev, labels = load_scored_trials(args.train_calibration, args.dev_trials)
        fitted = LinearCalibration.fit(dev.score, labels, prior=args.prior)
        s = fitted.apply(s)
    with AtomicFiles() as files:  # the calibration and the scores appear together or not at all
        if fitted is not None and args.save_calibration:
            fitted.save(args.save_calibration, files=files)
        write_scores(args.out, trials, s, files=files)
    return 0
