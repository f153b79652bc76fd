"""Trial lists.

Two formats are read, detected per line:

* Kaldi: ``enroll test target|nontarget``
* VoxCeleb: ``1|0 enroll test`` (enroll/test are paths such as ``id10270/x/00001.wav``)

and one is written (Kaldi). Scores files are ``enroll test score``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

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
        f"{' '.join(parts)!r}"
    )


def read_trials(path: str | Path) -> Trials:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: no such trials file") from None
    enroll, test, label = [], [], []
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        e, t, y = parse_trial_line(parts, f"{path}:{n}")
        enroll.append(e)
        test.append(t)
        label.append(y)
    if not enroll:
        raise InputError(f"{path}: no trials")
    return Trials(enroll, test, np.asarray(label, dtype=bool))


def write_trials(path: str | Path, trials: Iterable[tuple[str, str, bool]]) -> None:
    """Write Kaldi-format trials in the given order."""
    with open(path, "w", encoding="utf-8") as f:
        for e, t, y in trials:
            f.write(f"{e} {t} {'target' if y else 'nontarget'}\n")


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


def _read_bytes(path: Path, what: str) -> tuple[bytes, str]:
    try:
        data = path.read_bytes()
        return data, data.decode("utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a {what} file") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _scores_slow(path: Path, lines: list[str]) -> Scores:
    """Line-by-line parse: the reference, and the path that names a bad line."""
    enroll, test, score, label, numbers = [], [], [], [], []
    ncols = None
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (3, 4) or (ncols is not None and len(parts) != ncols):
            want = "'enroll test score" + (" label'" if ncols == 4 else "'")
            raise InputError(f"{path}:{n}: expected {want}, got {len(parts)} fields: {line.strip()!r}")
        ncols = len(parts)
        try:
            v = float(parts[2])
        except ValueError:
            raise InputError(f"{path}:{n}: score {parts[2]!r} is not a number") from None
        if v != v:
            raise InputError(f"{path}:{n}: score is NaN")
        if ncols == 4:
            if parts[3] not in _LABEL_WORDS:
                raise InputError(f"{path}:{n}: label {parts[3]!r} is not target|nontarget|1|0")
            label.append(_LABEL_WORDS[parts[3]])
        enroll.append(parts[0])
        test.append(parts[1])
        score.append(v)
        numbers.append(n)
    if not enroll:
        raise InputError(f"{path}: no scores")
    return Scores(enroll, test, np.asarray(score, dtype=np.float64),
                  np.asarray(label, dtype=bool) if ncols == 4 else None, np.asarray(numbers))


def _fields_per_line(data: bytes, ncols: int, n_tokens: int) -> bool:
    """True when every line of ``data`` has exactly ``ncols`` ASCII-whitespace-separated
    fields and they total ``n_tokens`` (what ``str.split`` found), checked in vectorised
    chunks ending at newlines."""
    total, pos, step = 0, 0, 1 << 26
    while pos < len(data):
        end = data.find(b"\n", min(pos + step, len(data) - 1))
        end = len(data) if end < 0 else end + 1
        a = np.frombuffer(data, np.uint8, count=end - pos, offset=pos)
        tok = (a > 32) | ((a < 9) | ((a > 13) & (a < 32)))
        start = tok.copy()
        start[1:] &= ~tok[:-1]
        newlines = np.flatnonzero(a == 10)
        n_lines = len(newlines) + (0 if a[-1] == 10 else 1)
        counts = np.bincount(np.searchsorted(newlines, np.flatnonzero(start)), minlength=n_lines)
        if len(counts) != n_lines or not (counts == ncols).all():
            return False
        total += int(counts.sum())
        pos = end
    return total == n_tokens


def read_scores(path: str | Path) -> Scores:
    """Read ``enroll test score [target|nontarget|1|0]`` lines.

    Large files (10^7 lines) take a fast path: one ``str.split`` of the whole text, a
    vectorised check that every line has the same 3 or 4 fields, one float conversion of
    the score column. Anything irregular (blank lines, a bad field, NaN) is re-read line by line,
    so that the error names the line.
    """
    path = Path(path)
    data, text = _read_bytes(path, "scores")
    tokens = text.split()
    for ncols in (3, 4):
        if not tokens or len(tokens) % ncols or not _fields_per_line(data, ncols, len(tokens)):
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
        return Scores(tokens[0::ncols], tokens[1::ncols], score, label)
    return _scores_slow(path, text.splitlines())


def label_scores(scores: Scores, trials_path: str | Path, scores_path: str | Path = "scores") -> np.ndarray:
    """Labels of each scored (enroll, test) pair from a trial list; a pair not in the list is
    an error naming the first ones, and so is a trial left without a score."""
    trials = read_trials(trials_path)
    if trials.enroll == scores.enroll and trials.test == scores.test:
        return trials.label
    index: dict[tuple[str, str], bool] = {}
    for e, t, y in zip(trials.enroll, trials.test, trials.label.tolist()):
        if index.setdefault((e, t), y) != y:
            raise InputError(f"{trials_path}: trial {e} {t} appears as both target and non-target")
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
        first = ", ".join(f"line {where[i]}: {scores.enroll[i]} {scores.test[i]}" for i in missing[:3])
        raise InputError(f"{scores_path}: {len(missing)} scored pairs are not in {trials_path}; first: {first}")
    if len(set(zip(scores.enroll, scores.test))) < len(index):
        scored = set(zip(scores.enroll, scores.test))
        unscored = [k for k in index if k not in scored]
        raise InputError(
            f"{scores_path}: {len(unscored)} trials of {trials_path} have no score; first: "
            + ", ".join(" ".join(k) for k in unscored[:3])
        )
    return label
