"""Embedding files: Kaldi ark/scp (via kaldiio) and ``.npy`` matrix + id list.

Two layouts, both written from ``(ids, matrix)`` and read back as ``(ids, float32 matrix)``
in file order:

* ``fmt="kaldi"``: ``PREFIX.ark`` (binary float32 vectors) and ``PREFIX.scp``
  (``id PREFIX.ark:offset``), the layout of Kaldi's and WeSpeaker's ``xvector.scp``.
* ``fmt="npy"``: ``PREFIX.npy`` (an ``N x D`` float32 matrix) and ``PREFIX.ids`` (one id a
  line, row order).

:func:`read_embeddings` detects the layout from the path (``.scp``, ``.ark``, ``.npy``,
``.ids``, or a prefix with one of them). An scp entry that is a command (``cmd |``) is
refused: embedding files are data, never programs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .errors import InputError

FORMATS = ("kaldi", "npy")


def _prefix(path_or_prefix: str | Path) -> Path:
    p = Path(path_or_prefix)
    return p.with_suffix("") if p.suffix in (".ark", ".scp", ".npy", ".ids") else p


def _check_ids(ids: Sequence[str], n_rows: int, where: str) -> list[str]:
    """Ids as a list; a count mismatch, an empty id, whitespace in one or a duplicate is an
    error naming it. The common all-good case is checked at C speed (join/split, set)."""
    ids = [str(i) for i in ids]
    if len(ids) != n_rows:
        raise InputError(f"{where}: {len(ids)} ids for {n_rows} embeddings")
    if len("\n".join(ids).split()) != len(ids) or "" in ids:
        for i, u in enumerate(ids):
            if len(u.split()) != 1 or u.strip() != u:
                raise InputError(f"{where}: id {u!r} (row {i}) is empty or contains whitespace")
    if len(set(ids)) != len(ids):
        seen: dict[str, int] = {}
        for i, u in enumerate(ids):
            if u in seen:
                raise InputError(f"{where}: duplicate id {u!r} (rows {seen[u]} and {i})")
            seen[u] = i
    return ids


def write_embeddings(path_or_prefix: str | Path, ids: Sequence[str], matrix, fmt: str = "kaldi") -> list[Path]:
    """Write ``matrix`` (N x D) with one id per row; returns the paths written.

    ``path_or_prefix`` may end in ``.ark``/``.scp``/``.npy``/``.ids`` or be a bare prefix;
    the files are ``PREFIX.ark`` + ``PREFIX.scp`` (kaldi) or ``PREFIX.npy`` + ``PREFIX.ids``
    (npy). Rows are stored as float32, in the given order.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown embedding format {fmt!r} (choose from {', '.join(FORMATS)})")
    m = np.asarray(matrix, dtype=np.float32)
    if m.ndim != 2:
        raise InputError(f"embeddings must be an N x D matrix (got shape {m.shape})")
    prefix = _prefix(path_or_prefix)
    ids = _check_ids(ids, len(m), str(prefix))
    bad = np.flatnonzero(~np.isfinite(m).all(axis=1))
    if len(bad):
        raise InputError(f"{prefix}: embedding of {ids[bad[0]]!r} is not finite ({len(bad)} such rows)")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "kaldi":
        import kaldiio

        ark, scp = prefix.with_name(prefix.name + ".ark"), prefix.with_name(prefix.name + ".scp")
        kaldiio.save_ark(str(ark), {u: m[i] for i, u in enumerate(ids)}, scp=str(scp))
        return [ark, scp]
    npy, idf = prefix.with_name(prefix.name + ".npy"), prefix.with_name(prefix.name + ".ids")
    np.save(npy, m)
    idf.write_text("".join(u + "\n" for u in ids), encoding="utf-8")
    return [npy, idf]


def _stack(ids: list[str], rows: list[np.ndarray], where: str) -> tuple[list[str], np.ndarray]:
    if not rows:
        raise InputError(f"{where}: no embeddings")
    dims = {r.shape for r in rows}
    if len(dims) > 1:
        first = rows[0].shape
        i = next(i for i, r in enumerate(rows) if r.shape != first)
        raise InputError(f"{where}: embedding of {ids[i]!r} has shape {rows[i].shape}, {ids[0]!r} has {first}")
    m = np.asarray(rows, dtype=np.float32)
    if m.ndim != 2:
        raise InputError(f"{where}: embeddings must be vectors (got rows of shape {rows[0].shape})")
    return ids, m


def _read_scp(path: Path) -> tuple[list[str], np.ndarray]:
    import kaldiio

    ids, rows = [], []
    text = path.read_text(encoding="utf-8")
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split(maxsplit=1)
        if not parts:
            continue
        if len(parts) != 2:
            raise InputError(f"{path}:{n}: expected 'id ark:offset', got {line.strip()!r}")
        u, loc = parts[0], parts[1].strip()
        if loc.endswith("|"):
            raise InputError(f"{path}:{n}: {u!r} is a command ({loc!r}); embedding scp entries must be files")
        target = Path(loc.rsplit(":", 1)[0] if ":" in loc else loc)
        if not target.is_absolute():
            # kaldiio resolves relative to the cwd, as Kaldi does; also accept scp-relative
            if not target.exists() and (path.parent / target).exists():
                loc = str(path.parent / loc)
        try:
            rows.append(np.asarray(kaldiio.load_mat(loc)))
        except FileNotFoundError:
            raise InputError(f"{path}:{n}: {u!r}: no such file {str(target)!r}") from None
        except Exception as e:  # kaldiio raises bare ValueErrors etc. on corrupt data
            raise InputError(f"{path}:{n}: {u!r}: cannot read {loc!r}: {e}") from None
        ids.append(u)
    ids = _check_ids(ids, len(ids), str(path))
    return _stack(ids, rows, str(path))


def _read_ark(path: Path) -> tuple[list[str], np.ndarray]:
    import kaldiio

    ids, rows = [], []
    try:
        for u, v in kaldiio.load_ark(str(path)):
            ids.append(u)
            rows.append(np.asarray(v))
    except Exception as e:
        raise InputError(f"{path}: not a readable Kaldi ark ({e}) after {len(ids)} entries") from None
    ids = _check_ids(ids, len(ids), str(path))
    return _stack(ids, rows, str(path))


def _read_npy(npy: Path, idf: Path) -> tuple[list[str], np.ndarray]:
    try:
        m = np.load(npy, allow_pickle=False)
    except ValueError as e:
        raise InputError(f"{npy}: not a numeric .npy matrix ({e})") from None
    if m.ndim != 2 or m.dtype.kind not in "fiu":
        raise InputError(f"{npy}: expected an N x D numeric matrix, got shape {m.shape} dtype {m.dtype}")
    if not idf.exists():
        raise InputError(f"{npy}: no id list {idf.name} next to it")
    ids = [line.strip() for line in idf.read_text(encoding="utf-8").splitlines() if line.strip()]
    ids = _check_ids(ids, len(m), str(idf))
    return ids, m.astype(np.float32, copy=False)


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """``(ids, N x D float32 matrix)`` from an scp, ark, npy (+ ``.ids``) or a prefix of one.

    Errors (one line, naming the file and line or id): a missing file, a piped scp entry,
    duplicate ids, rows of different dimension, non-finite values.
    """
    p = Path(path)
    if p.suffix not in (".scp", ".ark", ".npy", ".ids"):
        found = [p.with_name(p.name + s) for s in (".scp", ".npy", ".ark")]
        found = [f for f in found if f.exists()]
        if not p.is_file() and not found:
            raise InputError(f"{p}: no such embeddings file (nor {p.name}.scp / .npy / .ark)")
        if not p.is_file():
            p = found[0]
    if not p.exists():
        raise InputError(f"{p}: no such embeddings file")
    if p.suffix == ".scp":
        ids, m = _read_scp(p)
    elif p.suffix in (".npy", ".ids"):
        ids, m = _read_npy(p.with_suffix(".npy"), p.with_suffix(".ids"))
    elif p.suffix == ".ark":
        ids, m = _read_ark(p)
    else:  # a file without a known suffix: an scp is text, an ark is binary
        head = p.read_bytes()[:4096]
        ids, m = _read_ark(p) if b"\0" in head else _read_scp(p)
    bad = np.flatnonzero(~np.isfinite(m).all(axis=1))
    if len(bad):
        raise InputError(f"{p}: embedding of {ids[bad[0]]!r} is not finite ({len(bad)} such rows)")
    return ids, m


class EmbeddingTable:
    """Rows of an embedding matrix addressed by id (what scoring looks trials up in)."""

    def __init__(self, ids: Sequence[str], matrix, where: str = "embeddings"):
        self.matrix = np.asarray(matrix, dtype=np.float32)
        self.ids = _check_ids(ids, len(self.matrix), where)
        self.index = {u: i for i, u in enumerate(self.ids)}
        self.where = where

    @classmethod
    def of(cls, x, where: str = "embeddings") -> EmbeddingTable:
        """From an EmbeddingTable, an ``(ids, matrix)`` pair, a mapping id -> vector, or a path."""
        if isinstance(x, EmbeddingTable):
            return x
        if isinstance(x, (str, Path)):
            return cls(*read_embeddings(x), where=str(x))
        if isinstance(x, Mapping):
            ids = list(x)
            return cls(ids, np.asarray([np.asarray(x[u], dtype=np.float32) for u in ids]), where)
        ids, m = x
        return cls(ids, m, where)

    @classmethod
    def merge(cls, tables: Sequence[EmbeddingTable]) -> EmbeddingTable:
        ids: list[str] = []
        for t in tables:
            ids.extend(t.ids)
        return cls(ids, np.concatenate([t.matrix for t in tables]), " + ".join(t.where for t in tables))

    def rows(self, ids: Sequence[str], what: str = "trial list") -> np.ndarray:
        """Row index of each id; missing ids are an error listing the first ones."""
        try:
            return np.array(list(map(self.index.__getitem__, ids)), dtype=np.int64)
        except KeyError:
            missing = list(dict.fromkeys(u for u in ids if u not in self.index))
            raise InputError(
                f"{len(missing)} ids of the {what} have no embedding in {self.where}; first: {', '.join(missing[:5])}"
            ) from None
