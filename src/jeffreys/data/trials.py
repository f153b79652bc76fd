"""Trial lists.

Two formats are read, detected per line:

* Kaldi: ``enroll test target|nontarget``
* VoxCeleb: ``1|0 enroll test`` (enroll/test are paths such as ``id10270/x/00001.wav``)

and one is written (Kaldi); unlabelled ``enroll test`` pairs are read by
:func:`read_trial_pairs`. Scores files are ``enroll test score``. Lines and fields are read
by the rule of :mod:`jeffreys.data.tables` (lines end at ``\\n`` only, fields are separated
by ASCII white space), within the list limits of :func:`jeffreys.fileio.read_text`.

A trial is an (enroll, test) pair: a trial list or a scores file that lists a pair twice
is refused (the error names the file and both lines), never counted twice. A ``models`` file
(``MODEL UTT1 [UTT2 ...]``, written by the SITW and SdSV preparers) names the enrolment
utterances of each model that trials may name on their enrolment side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, excerpt, shown
from ..fileio import atomic_write, read_text, split_lines
from .tables import WHITESPACE, fields, read_table

_KALDI = {"target": True, "nontarget": False}
_VOX = {"1": True, "0": False}


@dataclass
class Trials:
    enroll: list[str]
    test: list[str]
    label: np.ndarray  # bool, True for a target trial

    def __len__(self) -> int:
        return len(self.enroll)

    @property
    def n_target(self) -> int:
        return int(self.label.sum())


def parse_trial_line(parts: list[str], where: str) -> tuple[str, str, bool]:
    if len(parts) == 3:
        if parts[2] in _KALDI:
            return parts[0], parts[1], _KALDI[parts[2]]
        if parts[0] in _VOX:
            return parts[1], parts[2], _VOX[parts[0]]
    raise InputError(
        f"{where}: not a trial line (want 'enroll test target|nontarget' or '1|0 enroll test'): "
        f"{excerpt(' '.join(parts))}"
    )


def _trials_slow(path: Path, lines: list[str]) -> tuple[Trials, list[int]]:
    """Line-by-line parse: any mix of the two formats, blank lines skipped, and the path
    that names a bad line. Returns the trials and the line number of each."""
    enroll, test, label, numbers = [], [], [], []
    for n, line in enumerate(lines, 1):
        parts = fields(line)
        if not parts:
            continue
        e, t, y = parse_trial_line(parts, f"{shown(path)}:{n}")
        enroll.append(e)
        test.append(t)
        label.append(y)
        numbers.append(n)
    if not enroll:
        raise InputError(f"{shown(path)}: no trials")
    return Trials(enroll, test, np.asarray(label, dtype=bool)), numbers


def read_trials(path: str | Path) -> Trials:
    """Read a Kaldi (``e t target|nontarget``) or VoxCeleb (``1|0 e t``) trial list.

    Large lists (10^7 lines) take a fast path, as :func:`read_scores`: one ``str.split`` of
    the whole text, a vectorised check that every line has 3 fields, and the format decided
    for the whole file from the words of the label column (Kaldi wins where both fit, as
    on a single line). Anything else (blank lines, mixed formats, a bad line) is
    read line by line, so that the error names the line. A trial (enroll, test) listed
    twice is an error naming both lines.
    """
    path = Path(path)
    data, text = read_text(path, "trials")
    tokens = text.split()
    heads = _field_heads(data, 3, len(tokens)) if tokens and len(tokens) % 3 == 0 else None
    trials, numbers = None, None
    if heads is not None:
        # every label word checked at C speed (list.count); the labels from first bytes
        first, last = tokens[0::3], tokens[2::3]
        n_kaldi = last.count("target") + last.count("nontarget")
        if n_kaldi == len(last):
            trials = Trials(first, tokens[1::3], heads[:, 2] == ord("t"))
        elif n_kaldi == 0 and first.count("1") + first.count("0") == len(first):
            trials = Trials(tokens[1::3], last, heads[:, 0] == ord("1"))
    if trials is None:
        trials, numbers = _trials_slow(path, split_lines(text))
    _refuse_repeats(trials.enroll, trials.test, numbers, path, _TRIAL_AGAIN)
    return trials


def read_trial_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Unlabelled trials, ``enroll test`` a line, in file order (``trial_pairs`` of a set
    whose key is not public, e.g. SdSV task 2: scored into a submission file)."""
    path = Path(path)
    rows = read_table(path, 2, 2)
    pairs = [(p[0], p[1]) for _, p in rows]
    if not pairs:
        raise InputError(f"{shown(path)}: no trial pairs")
    _refuse_repeats([p[0] for p in pairs], [p[1] for p in pairs], [n for n, _ in rows], path, _TRIAL_AGAIN)
    return pairs


def write_trials(path: str | Path, trials: Iterable[tuple[str, str, bool]]) -> None:
    """Write Kaldi-format trials in the given order (atomically)."""
    with atomic_write(path) as f:
        for e, t, y in trials:
            f.write(f"{e} {t} {'target' if y else 'nontarget'}\n")


def generate_trials(utt2spk: Mapping[str, str], n: int, *, target_fraction: float = 0.5,
                    seed: int = 0) -> list[tuple[str, str, bool]]:
    """A trial list for a labelled set without one: ``round(n * target_fraction)`` same-speaker
    pairs and the rest different-speaker pairs, each drawn uniformly without replacement
    among all unordered pairs of utterances of its kind (fewer when fewer exist). Every
    pair is ``(u, v)`` with ``u < v``; the list is sorted. Seeded: the same inputs give the
    same list."""
    from math import comb, isqrt

    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise InputError(f"the number of trials must be an integer >= 2, got {n!r}")
    if not 0 < target_fraction < 1:
        raise InputError(f"target_fraction must lie strictly between 0 and 1, got {target_fraction}")
    rng = np.random.default_rng(seed)
    utts = sorted(utt2spk)
    by_spk: dict[str, list[str]] = {}
    for u in utts:
        by_spk.setdefault(utt2spk[u], []).append(u)
    groups = [us for _, us in sorted(by_spk.items())]
    sizes = np.array([comb(len(us), 2) for us in groups], dtype=np.int64)
    n_tar_all = int(sizes.sum())
    n_non_all = comb(len(utts), 2) - n_tar_all
    if n_tar_all == 0 or n_non_all == 0:
        raise InputError(f"cannot make trials: {len(groups)} speakers, {n_tar_all} same-speaker pairs "
                         "(a speaker needs 2 utterances; target and non-target trials need 2 speakers)")
    n_tar = min(n_tar_all, max(1, round(n * target_fraction)))
    n_non = min(n_non_all, max(1, n - n_tar))
    out: list[tuple[str, str, bool]] = []
    ends = np.cumsum(sizes)
    for k in rng.choice(n_tar_all, n_tar, replace=False):  # the k-th same-speaker pair
        g = int(np.searchsorted(ends, k, side="right"))
        j = int(k - (ends[g] - sizes[g]))
        b = (1 + isqrt(1 + 8 * j)) // 2  # pair j of a speaker's utterances: (a, b), a < b
        a = j - b * (b - 1) // 2
        out.append((groups[g][a], groups[g][b], True))
    spk = np.array([utt2spk[u] for u in utts])
    if n_non_all <= 4 * n_non:  # few: list them all and draw
        i, j = np.triu_indices(len(utts), 1)
        keep = spk[i] != spk[j]
        pick = rng.choice(int(keep.sum()), n_non, replace=False)
        pairs = zip(i[keep][pick].tolist(), j[keep][pick].tolist())
    else:  # many: draw pairs of utterances, keep new different-speaker ones
        chosen: set[tuple[int, int]] = set()
        while len(chosen) < n_non:
            x, y = rng.integers(0, len(utts), (2, 2 * (n_non - len(chosen)) + 16))
            for a, b in zip(np.minimum(x, y).tolist(), np.maximum(x, y).tolist()):
                if a != b and spk[a] != spk[b] and (a, b) not in chosen:
                    chosen.add((a, b))
                    if len(chosen) == n_non:
                        break
        pairs = iter(chosen)
    out += [(utts[a], utts[b], False) for a, b in pairs]
    return sorted(out)


# ----------------------------------------------------------------------------- models files
class Models(dict):
    """Enrolment models: model id -> its enrolment utterance ids (a dict), with where each
    model was read (``where``, and ``lines``: model -> line number when read from a file)."""

    def __init__(self, items=(), where: str = "models", lines: Mapping[str, int] | None = None):
        super().__init__(items)
        self.where = where
        self.lines = dict(lines or {})

    def locate(self, model: str) -> str:
        """``file:line`` of a model (or the source's name when not read from a file)."""
        n = self.lines.get(model)
        return f"{self.where}:{n}" if n else self.where

    @classmethod
    def of(cls, x) -> Models:
        """From a Models, a path (see :func:`read_models`) or a mapping model -> utterance ids."""
        if isinstance(x, Models):
            return x
        if isinstance(x, (str, Path)):
            return read_models(x)
        if not isinstance(x, Mapping):
            raise InputError(f"models must be a path or a mapping model -> utterance ids (got {type(x).__name__})")
        out = cls()
        for m, utts in x.items():
            utts = [utts] if isinstance(utts, str) else list(map(str, utts))
            if not utts:
                raise InputError(f"models: model {excerpt(m)} has no enrolment utterances")
            out[str(m)] = utts
        if not out:
            raise InputError("models: no models")
        return out


def read_models(path: str | Path) -> Models:
    """Read a ``models`` file: ``MODEL UTT1 [UTT2 ...]`` a line, in file order.

    One-line errors naming file:line: a blank line, a model without utterances, a model
    listed twice; an empty file. An utterance listed twice in a model counts twice in its
    mean, as Kaldi's ``ivector-mean`` would.
    """
    path = Path(path)
    out = Models(where=str(path))
    for n, parts in read_table(path, 1, None):
        m = parts[0]
        if len(parts) == 1:
            raise InputError(f"{shown(path)}:{n}: model {excerpt(m)} has no enrolment utterances")
        if m in out:
            raise InputError(f"{shown(path)}:{n}: duplicate model {excerpt(m)} (first on line {out.lines[m]})")
        out[m] = parts[1:]
        out.lines[m] = n
    if not out:
        raise InputError(f"{shown(path)}: no models")
    return out


# ----------------------------------------------------------------------------- scores files
_LABEL_WORDS = {"target": True, "nontarget": False, "1": True, "0": False}


@dataclass
class Scores:
    """A scores file: ``enroll test score`` per line, optionally a 4th column label."""

    enroll: list[str]
    test: list[str]
    score: np.ndarray  # float64
    label: np.ndarray | None  # bool, when every line has a 4th column
    lines: np.ndarray | None = None  # 1-based line number of each row, None if no blank lines


def _scores_slow(path: Path, lines: list[str]) -> Scores:
    """Line-by-line parse: the reference, and the path that names a bad line."""
    enroll, test, score, label, numbers = [], [], [], [], []
    ncols = None
    for n, line in enumerate(lines, 1):
        parts = fields(line)
        if not parts:
            continue
        if len(parts) not in (3, 4) or (ncols is not None and len(parts) != ncols):
            want = "'enroll test score" + (" label'" if ncols == 4 else "'")
            raise InputError(f"{shown(path)}:{n}: expected {want}, got {len(parts)} fields: {excerpt(line.strip(WHITESPACE))}")
        ncols = len(parts)
        try:
            v = float(parts[2])
        except ValueError:
            raise InputError(f"{shown(path)}:{n}: score {excerpt(parts[2])} is not a number") from None
        if v != v:
            raise InputError(f"{shown(path)}:{n}: score is NaN")
        if ncols == 4:
            if parts[3] not in _LABEL_WORDS:
                raise InputError(f"{shown(path)}:{n}: label {excerpt(parts[3])} is not target|nontarget|1|0")
            label.append(_LABEL_WORDS[parts[3]])
        enroll.append(parts[0])
        test.append(parts[1])
        score.append(v)
        numbers.append(n)
    if not enroll:
        raise InputError(f"{shown(path)}: no scores")
    return Scores(enroll, test, np.asarray(score, dtype=np.float64),
                  np.asarray(label, dtype=bool) if ncols == 4 else None, np.asarray(numbers))


def _field_heads(data: bytes, ncols: int, n_tokens: int) -> np.ndarray | None:
    """First byte of every field, as an ``(n_lines, ncols)`` array, when every line of
    ``data`` has exactly ``ncols`` ASCII-whitespace-separated fields and they total
    ``n_tokens`` (what ``str.split`` found); else None. Checked in vectorised chunks ending
    at newlines: with ``ncols`` fields a line, line k holds field starts ``ncols*k ..
    ncols*k + ncols-1``, so the last of them lies before newline k and the next one after it."""
    heads, total, pos, step = [], 0, 0, 1 << 26
    while pos < len(data):
        end = data.find(b"\n", min(pos + step, len(data) - 1))
        end = len(data) if end < 0 else end + 1
        a = np.frombuffer(data, np.uint8, count=end - pos, offset=pos)
        tok = (a > 32) | ((a < 9) | ((a > 13) & (a < 32)))  # not ASCII whitespace (9-13, 32)
        start = tok.copy()
        start[1:] &= ~tok[:-1]
        starts = np.flatnonzero(start)
        newlines = np.flatnonzero(a == 10)
        n_lines = len(newlines) + (0 if a[-1] == 10 else 1)
        if len(starts) != ncols * n_lines:
            return None
        last, nxt = starts[ncols - 1 :: ncols], starts[ncols::ncols]
        if not ((last[: len(newlines)] < newlines).all() and (nxt > newlines[: len(nxt)]).all()):
            return None
        heads.append(a[starts].reshape(n_lines, ncols))
        total += len(starts)
        pos = end
    return np.concatenate(heads) if total == n_tokens else None


_TRIAL_AGAIN = "trial {pair} is listed again (first on line {first}); each trial must be listed once"
_SCORE_AGAIN = "pair {pair} is scored again (first on line {first}); each trial must be scored once"


def _refuse_repeats(enroll: list[str], test: list[str], lines, path: Path, message: str) -> None:
    """Each (enroll, test) pair once: a pair listed twice (maybe with both labels) would count
    as two trials and change every metric. ``lines``: the line number of each pair (None:
    pair i is on line i + 1). Pairs are compared by their hash first (one int64 each,
    sorted: ~0.3 s per 10^6 lines), then, only where two hashes are equal, exactly."""
    h = np.fromiter(map(hash, zip(enroll, test)), dtype=np.int64, count=len(enroll))
    s = np.sort(h)
    shared = s[1:][s[1:] == s[:-1]]
    if len(shared) == 0:
        return
    seen: dict[tuple[str, str], int] = {}
    for i in np.flatnonzero(np.isin(h, shared)).tolist():  # file order
        key = (enroll[i], test[i])
        if key not in seen:
            seen[key] = i
            continue
        where = lines if lines is not None else np.arange(1, len(enroll) + 1)
        raise InputError(f"{shown(path)}:{where[i]}: " + message.format(pair=_pair(*key), first=where[seen[key]]))
    # equal hashes of different pairs: nothing repeated


def _refuse_repeated_pairs(sc: Scores, path: Path) -> Scores:
    """A scores file scores each (enroll, test) pair once (:func:`_refuse_repeats`)."""
    _refuse_repeats(sc.enroll, sc.test, sc.lines, path, _SCORE_AGAIN)
    return sc


def read_scores(path: str | Path) -> Scores:
    """Read ``enroll test score [target|nontarget|1|0]`` lines.

    Large files (10^7 lines) take a fast path: one ``str.split`` of the whole text, a
    vectorised check that every line has the same 3 or 4 fields, one float conversion of
    the score column. Anything irregular (blank lines, a bad field, NaN) is re-read line by line,
    so that the error names the line. A pair scored twice is an error naming both lines.
    """
    path = Path(path)
    data, text = read_text(path, "scores")
    tokens = text.split()
    for ncols in (3, 4):
        if not tokens or len(tokens) % ncols or _field_heads(data, ncols, len(tokens)) is None:
            continue
        try:
            # float() per token beats numpy's str -> float cast by 4x
            score = np.fromiter(map(float, tokens[2::ncols]), dtype=np.float64, count=len(tokens) // ncols)
        except ValueError:
            break
        if np.isnan(score).any():
            break
        label = None
        if ncols == 4:
            words = np.asarray(tokens[3::ncols])
            label = np.isin(words, ("target", "1"))
            if not (label | np.isin(words, ("nontarget", "0"))).all():
                break
        return _refuse_repeated_pairs(Scores(tokens[0::ncols], tokens[1::ncols], score, label), path)
    return _refuse_repeated_pairs(_scores_slow(path, split_lines(text)), path)


def label_scores(scores: Scores, trials_path: str | Path, scores_path: str | Path = "scores") -> np.ndarray:
    """Labels of each scored (enroll, test) pair from a trial list; a pair not in the list is
    an error naming the first ones, and so is a trial left without a score."""
    trials = read_trials(trials_path)  # each pair once (a repeated trial is refused there)
    if trials.enroll == scores.enroll and trials.test == scores.test:
        return trials.label
    index = dict(zip(zip(trials.enroll, trials.test), trials.label.tolist()))
    label = np.empty(len(scores.score), dtype=bool)
    missing = []
    for i, key in enumerate(zip(scores.enroll, scores.test)):
        y = index.get(key)
        if y is None:
            missing.append(i)
            continue
        label[i] = y
    if missing:
        where = scores.lines if scores.lines is not None else np.arange(1, len(scores.score) + 1)
        first = ", ".join(f"line {where[i]}: {_pair(scores.enroll[i], scores.test[i])}" for i in missing[:3])
        raise InputError(f"{shown(scores_path)}: {len(missing)} scored pairs are not in {shown(trials_path)}; first: {first}")
    if len(scores.score) < len(index):  # pairs are unique (read_scores) and all in the trials
        scored = set(zip(scores.enroll, scores.test))
        unscored = [k for k in index if k not in scored]
        raise InputError(
            f"{shown(scores_path)}: {len(unscored)} trials of {shown(trials_path)} have no score; first: "
            + ", ".join(_pair(*k) for k in unscored[:3])
        )
    return label


def _pair(enroll: str, test: str) -> str:
    """A trial in a message: both ids, each as it is when short and plain, else an excerpt."""
    return " ".join(x if len(x) <= 40 and x.isprintable() else excerpt(x, 40) for x in (enroll, test))
