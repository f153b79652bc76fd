"""Embedding files: Kaldi ark/scp (via kaldiio) and ``.npy`` matrix + id list.

Two layouts, both written from ``(ids, matrix)`` and read back as ``(ids, float32 matrix)``
in file order:

* ``fmt="kaldi"``: ``PREFIX.ark`` (binary float32 vectors) and ``PREFIX.scp``
  (``id PREFIX.ark:offset``), the layout of Kaldi's and WeSpeaker's ``xvector.scp``.
* ``fmt="npy"``: ``PREFIX.npy`` (an ``N x D`` float32 matrix) and ``PREFIX.ids`` (one id a
  line, row order).

:func:`read_embeddings` detects the layout from the path (``.scp``, ``.ark``, ``.npy``,
``.ids``, or a prefix with one of them). Both files of a layout are written together
(:class:`jeffreys.fileio.AtomicFiles`): a reader never finds an scp without its ark.

Embedding files are data, never programs. kaldiio is used to parse Kaldi's matrix and
vector records, but files are opened here, never by kaldiio's opener (which runs ``cmd |``
and ``| cmd`` in a shell), and a record is handed to kaldiio only when it is a Kaldi
binary (``\0B``) or text (``[ ... ]``) matrix or vector: a pickled record (kaldiio's
``PKL``, which it would unpickle), audio and numpy records are refused. An scp entry that is
a command (``cmd |``, also with a range ``cmd |[0:9]``) is refused unless the caller opts in
with ``allow_pipes=True``; it then runs as :func:`jeffreys.audio.run_pipeline` runs
``wav.scp`` pipes, without a shell. An entry that starts with ``|`` is always refused.

Sizes are bounded by ``JEFFREYS_MAX_EMBEDDING_BYTES`` (:data:`jeffreys.fileio.LIMITS`,
4 GiB): an ark's or ``.npy``'s size before it is read, and, for an scp, the records it reads
summed as they come (an scp may name the same record a million times) and a command's
output (stopped at what is left).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .data.tables import WHITESPACE, split_key
from .errors import InputError, excerpt, shown
from .fileio import AtomicFiles, check_output, input_file, limit, read_npy, read_text, save_npy, split_lines

FORMATS = ("kaldi", "npy")
LIMIT = "JEFFREYS_MAX_EMBEDDING_BYTES"  # the size limit of embedding data (module docstring)


def _prefix(path_or_prefix: str | Path) -> Path:
    p = Path(path_or_prefix)
    return p.with_suffix("") if p.suffix in (".ark", ".scp", ".npy", ".ids") else p


def output_paths(path_or_prefix: str | Path, fmt: str = "kaldi") -> list[Path]:
    """The files :func:`write_embeddings` writes for ``path_or_prefix`` in format ``fmt``."""
    prefix = _prefix(path_or_prefix)
    exts = (".ark", ".scp") if fmt == "kaldi" else (".npy", ".ids")
    return [prefix.with_name(prefix.name + e) for e in exts]


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


def write_embeddings(path_or_prefix: str | Path, ids: Sequence[str], matrix, fmt: str = "kaldi", *,
                     files: AtomicFiles | None = None) -> list[Path]:
    """Write ``matrix`` (N x D) with one id per row; returns the paths written.

    ``path_or_prefix`` may end in ``.ark``/``.scp``/``.npy``/``.ids`` or be a bare prefix;
    the files are ``PREFIX.ark`` + ``PREFIX.scp`` (kaldi) or ``PREFIX.npy`` + ``PREFIX.ids``
    (npy). Rows are stored as float32, in the given order. Both files appear together or
    not at all; ``files``: a transaction of the caller's to write them in (with other
    outputs that must appear with them).
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
    if files is None:
        with AtomicFiles() as own:
            return write_embeddings(prefix, ids, m, fmt, files=own)
    first, second = output_paths(prefix, fmt)
    for p in (first, second):
        check_output(p)
    if fmt == "kaldi":
        import kaldiio

        lines = []
        f = files.open(first, "wb")  # the ark first: it is renamed before the scp that points into it
        for u, row in zip(ids, m):
            f.write(u.encode("utf-8") + b" ")
            lines.append(f"{u} {first}:{f.tell()}\n")
            kaldiio.save_mat(f, row)
        files.open(second, "w").writelines(lines)
    else:
        save_npy(files.open(first, "wb"), m)
        files.open(second, "w").write("".join(u + "\n" for u in ids))
    return [first, second]


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


# ----------------------------------------------------------------------------- Kaldi records
class _Bounded(io.RawIOBase):
    """A read-only file whose ``read(n)`` never asks for more than what is left: a record
    header claiming 2^31 x 2^31 floats then gives a short read (an error), not a huge
    allocation."""

    def __init__(self, f, size: int):
        self.f, self.size = f, size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def read(self, n: int = -1) -> bytes:
        if n is not None and 0 <= n <= 1 << 16:  # small reads cannot over-allocate
            return self.f.read(n)
        left = max(0, self.size - self.f.tell())
        return self.f.read(left if n is None or n < 0 else min(n, left))

    def close(self) -> None:
        self.f.close()
        super().close()


_REFUSED = {
    b"PKL": "a pickled Python object (refused: embedding files are data, never code)",
    b"NPY": "a numpy record, not a Kaldi matrix or vector",
    b"RIFF": "audio, not a Kaldi matrix or vector",
    b"fLaC": "audio, not a Kaldi matrix or vector",
    b"AUDIO": "audio, not a Kaldi matrix or vector",
}


def _read_record(fd, where: str) -> np.ndarray:
    """One Kaldi matrix or vector at the position of ``fd``: binary (``\0B``) or text
    (``[ ... ]``), parsed by kaldiio; any other record kind is refused before kaldiio sees it."""
    from kaldiio.matio import read_kaldi

    pos = fd.tell()
    head = fd.read(16)
    fd.seek(pos)
    if not head.startswith(b"\0B") and not head.lstrip(b" \t\r\n").startswith(b"["):
        why = next((w for k, w in _REFUSED.items() if head.startswith(k)), None)
        raise InputError(f"{where}: {why or 'not a Kaldi matrix or vector (' + repr(head[:8]) + ')'}")
    try:
        array = read_kaldi(fd)
    except Exception as e:  # kaldiio raises bare ValueErrors, AssertionErrors, struct errors on corrupt data
        raise InputError(f"{where}: corrupt Kaldi record ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise InputError(f"{where}: not a numeric Kaldi matrix or vector")
    return array


def _open_ark(path: Path, what: str = "Kaldi ark") -> _Bounded:
    p = input_file(path, what)
    try:
        f = open(p, "rb")
    except OSError as e:
        raise InputError(f"{p}: cannot read: {e.strerror}") from None
    size, max_bytes = os.fstat(f.fileno()).st_size, limit(LIMIT)
    if size > max_bytes:  # before any record is read: its rows would take about as much
        f.close()
        raise InputError(f"{shown(p)}: {size} bytes, more than the limit of {max_bytes} ({LIMIT} raises it)")
    return _Bounded(f, size)


_RANGE = re.compile(r"(.*?)\[([-0-9:, ]*)\]\s*$")


def _range(text: str, where: str) -> tuple[slice, ...]:
    """Kaldi's ``[a:b]`` / ``[a:b,c:d]`` (inclusive bounds; empty or ``:`` = all) as slices."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if part in ("", ":"):
            out.append(slice(None))
            continue
        a, sep, b = part.partition(":")
        try:
            out.append(slice(int(a), int(b) + 1) if sep else slice(int(a), int(a) + 1))
        except ValueError:
            raise InputError(f"{where}: bad range [{text}]") from None
    return tuple(out)


def _split_location(loc: str, where: str) -> tuple[str, str, int | None, tuple[slice, ...] | None]:
    """``(kind, target, offset, range)`` of an scp value: kind ``"file"`` (``path``,
    ``path:offset``) or ``"pipe"`` (``cmd |``), each with an optional ``[range]``."""
    loc = loc.strip()
    if loc.startswith("|"):
        raise InputError(f"{where}: {loc!r} is an output command ('| cmd'); an scp entry must name a file")
    slices = None
    m = _RANGE.fullmatch(loc)
    if m and m.group(1).strip():
        loc, slices = m.group(1).rstrip(), _range(m.group(2), where)
    if loc.endswith("|"):
        return "pipe", loc, None, slices
    if loc == "-":
        raise InputError(f"{where}: '-' (standard input) is not a file")
    path, sep, offset = loc.rpartition(":")
    if sep and offset.isdigit() and path:
        return "file", path, int(offset), slices
    return "file", loc, None, slices


def _read_scp(path: Path, allow_pipes: bool = False) -> tuple[list[str], np.ndarray]:
    ids, rows = [], []
    text = read_text(path, "scp")[1]
    arks: dict[str, _Bounded] = {}
    left = limit(LIMIT)  # bytes of records still allowed: lines may name one record many times
    try:
        for n, line in enumerate(split_lines(text), 1):  # Kaldi's reading (jeffreys.data.tables)
            u, loc = split_key(line)
            if not u:
                continue
            if not loc:
                raise InputError(f"{shown(path)}:{n}: expected 'id ark:offset', got {excerpt(line.strip(WHITESPACE))}")
            where = f"{shown(path)}:{n}: {excerpt(u)}"
            kind, target, offset, slices = _split_location(loc, where)
            if kind == "pipe":
                if not allow_pipes:
                    raise InputError(
                        f"{where} is a command ({loc!r}); refusing to run commands from an embeddings file "
                        "(pass --allow-pipes / allow_pipes=True to opt in; it runs without a shell)"
                    )
                from .audio import run_pipeline

                try:
                    data = run_pipeline(target, max_bytes=left, what=f"embeddings, the limit ({LIMIT} raises it)")
                except InputError as e:
                    raise InputError(f"{where}: {e}") from None
                if not data:
                    raise InputError(f"{where}: the command {loc!r} wrote nothing")
                row = _read_record(io.BytesIO(data), where)
            else:
                t = Path(target)
                if not t.is_absolute() and not os.path.exists(t) and os.path.exists(path.parent / t):
                    t = path.parent / t  # Kaldi resolves from the cwd; also accept scp-relative
                key = str(t)
                if key not in arks:
                    try:
                        arks[key] = _open_ark(t)
                    except InputError as e:
                        raise InputError(f"{where}: {e}") from None
                fd = arks[key]
                if offset is not None:
                    if offset > fd.size:
                        raise InputError(f"{where}: offset {offset} is past the end of {t} ({fd.size} bytes)")
                    fd.seek(offset)
                else:
                    fd.seek(0)
                row = _read_record(fd, where)
            left -= row.nbytes
            if left < 0:
                raise InputError(f"{where}: the records read pass {limit(LIMIT)} bytes, the limit ({LIMIT} raises it)")
            if slices is not None:
                try:
                    row = row[slices]
                except IndexError:
                    raise InputError(f"{where}: range does not fit a record of shape {row.shape}") from None
            rows.append(np.asarray(row))
            ids.append(u)
    finally:
        for fd in arks.values():
            fd.close()
    ids = _check_ids(ids, len(ids), str(path))
    return _stack(ids, rows, str(path))


def _read_ark(path: Path) -> tuple[list[str], np.ndarray]:
    from kaldiio.matio import read_token

    ids, rows = [], []
    fd = _open_ark(path)
    try:
        while True:
            try:
                u = read_token(fd)
            except UnicodeDecodeError:
                raise InputError(f"{path}: not a readable Kaldi ark: key {len(ids) + 1} is not UTF-8 text") from None
            if u is None:
                break
            rows.append(np.asarray(_read_record(fd, f"{path}: record {len(ids) + 1} ({u!r})")))
            ids.append(u)
    finally:
        fd.close()
    ids = _check_ids(ids, len(ids), str(path))
    return _stack(ids, rows, str(path))


def _read_npy(npy: Path, idf: Path) -> tuple[list[str], np.ndarray]:
    m = read_npy(npy, "embeddings .npy", size_limit=LIMIT)
    if m.ndim != 2 or m.dtype.kind not in "fiu":
        raise InputError(f"{npy}: expected an N x D numeric matrix, got shape {m.shape} dtype {m.dtype}")
    if not idf.exists():
        raise InputError(f"{npy}: no id list {idf.name} next to it")
    ids = [x for x in (line.strip(WHITESPACE) for line in split_lines(read_text(idf, "id list")[1])) if x]
    ids = _check_ids(ids, len(m), str(idf))
    return ids, m.astype(np.float32, copy=False)


def read_embeddings(path: str | Path, *, allow_pipes: bool = False) -> tuple[list[str], np.ndarray]:
    """``(ids, N x D float32 matrix)`` from an scp, ark, npy (+ ``.ids``) or a prefix of one.

    Errors (one line, naming the file and line or id): a missing file, a command in an scp
    (unless ``allow_pipes``), a record that is not a Kaldi matrix/vector (a pickle, audio),
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
    if p.suffix == ".scp":
        ids, m = _read_scp(p, allow_pipes)
    elif p.suffix in (".npy", ".ids"):
        ids, m = _read_npy(p.with_suffix(".npy"), p.with_suffix(".ids"))
    elif p.suffix == ".ark":
        ids, m = _read_ark(p)
    else:  # a file without a known suffix: an scp is text, an ark is binary
        with open(input_file(p, "embeddings"), "rb") as f:
            head = f.read(4096)
        ids, m = _read_ark(p) if b"\0" in head else _read_scp(p, allow_pipes)
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
    def of(cls, x, where: str = "embeddings", *, allow_pipes: bool = False) -> EmbeddingTable:
        """From an EmbeddingTable, an ``(ids, matrix)`` pair, a mapping id -> vector, or a path
        (``allow_pipes``: see :func:`read_embeddings`)."""
        if isinstance(x, EmbeddingTable):
            return x
        if isinstance(x, (str, Path)):
            return cls(*read_embeddings(x, allow_pipes=allow_pipes), where=str(x))
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
