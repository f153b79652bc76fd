"""The training index of a data dir: arrays, not per-utterance Python objects.

At VoxCeleb2 size (1,092,009 utterances) a :class:`~jeffreys.data.datadir.DataDir` of
dicts costs about 2 GB and 18 s to read, and every forked DataLoader worker copies it page
by page as reference counts are touched. :class:`UttIndex` holds the same content in a few
NumPy arrays (ids and paths packed as UTF-8 bytes with offsets, speaker and duration per
utterance, the utterances of each speaker as ranges of one array): about 120 bytes per
utterance, shared by forked workers without copies, since reading an array touches no
reference count.

:func:`read_index` reads the tables with vectorised checks of the rules
:func:`~jeffreys.data.datadir.read_datadir` applies (sorted unique ids, utt2spk matching
wav.scp, spk2utt the inverse of utt2spk, positive durations). Files outside the plain form
every writer produces (one white-space character between fields, none at the ends of a
line, decimal durations, no ``segments``) are read by ``read_datadir`` itself, so that
every accepted file means the same and every refused one gets the same message.

Audio files (``check_files``): ``"all"`` checks every path up front as ``read_datadir``
does; ``"sample"`` a seeded sample of :data:`SAMPLE_FILES` paths (a wrong root or an
unmounted disk fails at once; a single missing file fails when it is read, naming its
utterance); ``"auto"`` is ``"all"`` up to :data:`CHECK_ALL_UP_TO` utterances, ``"sample"``
above (a stat of every one of 1.09 M files takes several seconds); ``"none"``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, shown
from ..fileio import read_utf8
from .datadir import DataDir, _check_audio, read_datadir

CHECK_FILES = ("auto", "all", "sample", "none")
CHECK_ALL_UP_TO = 100_000
SAMPLE_FILES = 10_000
_BLOCK = 1 << 16  # rows per vectorised step
_ALTERNATE = np.arange(2 * _BLOCK) % 2 == 1  # gap, span, gap, span...
_MAX_KEY = 256  # longer ids take the reference reader (fixed-width comparisons would cost n x width)


class Strings(Sequence):
    """A read-only list of strings packed as UTF-8 bytes and offsets."""

    __slots__ = ("blob", "offsets")

    def __init__(self, blob: np.ndarray, offsets: np.ndarray):
        self.blob, self.offsets = blob, offsets

    @classmethod
    def of(cls, items: Sequence[str]) -> Strings:
        raw = [s.encode() for s in items]
        offsets = np.zeros(len(raw) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in raw], out=offsets[1:])
        return cls(np.frombuffer(b"".join(raw), dtype=np.uint8).copy(), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.blob[self.offsets[i] : self.offsets[i + 1]].tobytes().decode()

    def take(self, rows: np.ndarray) -> Strings:
        """The strings at ``rows``, in that order."""
        starts, ends = self.offsets[rows], self.offsets[np.asarray(rows) + 1]
        return Strings(_gather(self.blob, starts, ends), _offsets(ends - starts))

    def find(self, s: str) -> int:
        """Index of ``s`` in these strings, sorted in code-point order; -1 when absent."""
        key = s.encode()
        i = bisect_left(range(len(self)), key, key=self._bytes)
        return i if i < len(self) and self._bytes(i) == key else -1

    def _bytes(self, i: int) -> bytes:
        return self.blob[self.offsets[i] : self.offsets[i + 1]].tobytes()

    def __eq__(self, other) -> bool:
        if isinstance(other, Strings):
            return np.array_equal(self.offsets, other.offsets) and np.array_equal(self.blob, other.blob)
        return list(self) == list(other) if isinstance(other, (list, tuple)) else NotImplemented

    __hash__ = None  # mutable arrays

    @property
    def nbytes(self) -> int:
        return self.blob.nbytes + self.offsets.nbytes


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _gather(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The bytes ``buf[starts[i]:ends[i]]`` of every i, concatenated."""
    lengths = ends - starts
    out_off = _offsets(lengths)
    out = np.empty(int(out_off[-1]), dtype=np.uint8)
    for a in range(0, len(starts), _BLOCK):  # blocks: the byte indices cost 8 bytes each
        o = out_off[a : a + _BLOCK + 1]
        idx = np.repeat(starts[a : a + _BLOCK] - o[:-1], lengths[a : a + _BLOCK]) + np.arange(o[0], o[-1])
        out[o[0] : o[-1]] = buf[idx]
    return out


class UttIndex:
    """A data dir's utterances for training (module docstring). Utterance ``i`` is the
    i-th in sorted order; speaker ``k`` the k-th in sorted order.

    ``utts`` (:class:`Strings`), ``speakers`` (list), ``spk`` (speaker of each utterance),
    ``by_speaker``/``speaker_starts`` (the utterances of speaker k are
    ``by_speaker[speaker_starts[k]:speaker_starts[k+1]]``, ascending), ``entries``
    (wav.scp values), ``entry_of`` (the entry of each utterance: itself without segments),
    ``start``/``end`` (segment times, end -1 to the end) and ``dur`` (seconds) or None."""

    def __init__(self, path, utts: Strings, speakers: list[str], spk: np.ndarray, entries: Strings, *,
                 entry_of: np.ndarray | None = None, start: np.ndarray | None = None, end: np.ndarray | None = None,
                 dur: np.ndarray | None = None, allow_pipes: bool = False, recordings: Strings | None = None):
        self.path = Path(path)
        self.recordings = recordings  # the ids of ``entries`` with segments (else: ``utts``)
        self.utts, self.speakers, self.spk, self.entries = utts, speakers, spk.astype(np.int32, copy=False), entries
        self.entry_of, self.start, self.end, self.dur = entry_of, start, end, dur
        self.allow_pipes = allow_pipes
        self.by_speaker = np.argsort(self.spk, kind="stable").astype(np.int32)
        self.speaker_starts = _offsets(np.bincount(self.spk, minlength=len(speakers)))

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def from_datadir(cls, data: DataDir) -> UttIndex:
        utts = data.utts
        speakers = data.speakers
        label = {s: k for k, s in enumerate(speakers)}
        spk = np.fromiter((label[data.utt2spk[u]] for u in utts), dtype=np.int32, count=len(utts))
        dur = np.fromiter((data.utt2dur[u] for u in utts), dtype=np.float64, count=len(utts)) if data.utt2dur else None
        if data.segments is None:
            return cls(data.path, Strings.of(utts), speakers, spk, Strings.of([data.wav[u] for u in utts]), dur=dur,
                       allow_pipes=data.allow_pipes)
        recs = sorted(data.wav)
        rec_of = {r: i for i, r in enumerate(recs)}
        segs = [data.segments[u] for u in utts]
        return cls(data.path, Strings.of(utts), speakers, spk, Strings.of([data.wav[r] for r in recs]),
                   entry_of=np.array([rec_of[s[0]] for s in segs], dtype=np.int32),
                   start=np.array([s[1] for s in segs], dtype=np.float64), end=np.array([s[2] for s in segs], dtype=np.float64),
                   dur=dur, allow_pipes=data.allow_pipes, recordings=Strings.of(recs))

    def speaker_subset(self, count: int) -> UttIndex:
        """The utterances of the first ``count`` speakers only (same path, same files)."""
        rows = np.flatnonzero(self.spk < count)
        entry_of = self.entry_of[rows] if self.entry_of is not None else None
        return UttIndex(self.path, self.utts.take(rows), self.speakers[:count], self.spk[rows],
                        self.entries if entry_of is not None else self.entries.take(rows), entry_of=entry_of,
                        start=None if self.start is None else self.start[rows], end=None if self.end is None else self.end[rows],
                        dur=None if self.dur is None else self.dur[rows], allow_pipes=self.allow_pipes,
                        recordings=self.recordings)

    # ---- reading -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.utts)

    def utts_of(self, k: int) -> np.ndarray:
        """Utterance indices of speaker ``k`` (ascending)."""
        return self.by_speaker[self.speaker_starts[k] : self.speaker_starts[k + 1]]

    def row(self, utt: str | int) -> int:
        if not isinstance(utt, str):
            return int(utt)
        i = self.utts.find(utt)
        if i < 0:
            raise KeyError(utt)
        return i

    def source(self, utt: str | int) -> tuple[str, float, float | None]:
        """(wav.scp entry, start seconds, end seconds or None) of an utterance (index or id),
        as :meth:`DataDir.source`."""
        i = self.row(utt)
        if self.entry_of is None:
            return self.entries[i], 0.0, None
        end = float(self.end[i])
        return self.entries[int(self.entry_of[i])], float(self.start[i]), None if end < 0 else end

    def duration(self, utt: str | int) -> float | None:
        return None if self.dur is None else float(self.dur[self.row(utt)])

    def speaker(self, utt: str | int) -> str:
        return self.speakers[self.spk[self.row(utt)]]

    @property
    def nbytes(self) -> int:
        arrays = [self.spk, self.by_speaker, self.speaker_starts, self.entry_of, self.start, self.end, self.dur]
        return self.utts.nbytes + self.entries.nbytes + sum(a.nbytes for a in arrays if a is not None)

    # DataDir's mapping views, for code written against it (one lookup is a binary search)
    @property
    def utt2spk(self) -> Mapping[str, str]:
        return _View(self, self.speaker)

    @property
    def utt2dur(self) -> Mapping[str, float] | None:
        return None if self.dur is None else _View(self, self.duration)

    @property
    def spk2utt(self) -> Mapping[str, list[str]]:
        return _SpeakerView(self)


class _View(Mapping):
    def __init__(self, index: UttIndex, get):
        self.index, self.get_ = index, get

    def __getitem__(self, utt: str):
        return self.get_(self.index.row(utt))

    def __iter__(self) -> Iterator[str]:
        return iter(self.index.utts)

    def __len__(self) -> int:
        return len(self.index)


class _SpeakerView(Mapping):
    def __init__(self, index: UttIndex):
        self.index = index
        self.label = {s: k for k, s in enumerate(index.speakers)}

    def __getitem__(self, spk: str) -> list[str]:
        return [self.index.utts[i] for i in self.index.utts_of(self.label[spk])]

    def __iter__(self) -> Iterator[str]:
        return iter(self.index.speakers)

    def __len__(self) -> int:
        return len(self.index.speakers)


# ------------------------------------------------------------------------------- reader
class _Irregular(Exception):
    """A table outside the plain form: the reference reader takes the data dir."""


_PRINTABLE = bytes(range(32, 256)) + b"\n"


class _Table:
    """A text table's bytes with the start and end of each line (``\\n`` ends a line) and
    the position of every space; lines are non-empty, single spaces separate the fields,
    and no other control character occurs (anything else is _Irregular)."""

    def __init__(self, path: Path):
        self.path = path
        data = read_utf8(path)  # limits, UTF-8 check
        # empty: the reference reader's message; tabs, CR, NUL...: its reading rule
        if not data or data.translate(None, _PRINTABLE):
            raise _Irregular
        self.buf = np.frombuffer(data, dtype=np.uint8)
        nl = _positions(self.buf, 10)
        ends = nl if data.endswith(b"\n") else np.append(nl, len(data))
        self.starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
        self.ends = ends.astype(np.int64)
        if np.any(self.ends <= self.starts):
            raise _Irregular  # a blank line
        self.seps = _positions(self.buf, 32)
        if len(self.seps) and (np.any(np.diff(self.seps) == 1) or (self.buf[self.starts] == 32).any() or (self.buf[self.ends - 1] == 32).any()):
            raise _Irregular  # a run of spaces, or one at a line's start or end
        self.line_of_sep = np.searchsorted(self.ends, self.seps)
        self.count = np.bincount(self.line_of_sep, minlength=len(self.starts))

    def first_sep(self) -> np.ndarray:
        """Position of the space after each line's first field (every line has one)."""
        if np.any(self.count < 1):
            raise _Irregular
        first = np.ones(len(self.seps), dtype=bool)
        first[1:] = self.line_of_sep[1:] != self.line_of_sep[:-1]
        return self.seps[first]

    def two_fields(self) -> tuple[np.ndarray, np.ndarray]:
        """(key, value) spans ``(starts, ends)`` of a table of exactly two fields a line."""
        if np.any(self.count != 1):
            raise _Irregular
        return self.seps, self.seps + 1

    def packed(self, starts: np.ndarray, ends: np.ndarray) -> Strings:
        """The spans ``[starts[i], ends[i])`` (in order, not overlapping) as Strings."""
        pieces = [np.zeros(0, dtype=np.uint8)]
        for a in range(0, len(starts), _BLOCK):  # blocks: the mask covers a block's bytes only
            s, e = starts[a : a + _BLOCK], ends[a : a + _BLOCK]
            runs = np.empty(2 * len(s), dtype=np.int64)
            runs[0::2] = s - np.concatenate((s[:1], e[:-1]))  # the gap before each span
            runs[1::2] = e - s
            pieces.append(self.buf[s[0] : e[-1]][np.repeat(_ALTERNATE[: len(runs)], runs)])
        return Strings(np.concatenate(pieces), _offsets(ends - starts))


def _positions(buf: np.ndarray, byte: int) -> np.ndarray:
    """Where ``byte`` occurs in ``buf`` (in blocks: a mask of the whole file would double it)."""
    step = 1 << 23
    return np.concatenate([np.flatnonzero(buf[a : a + step] == byte) + a for a in range(0, len(buf), step)] or [np.zeros(0, np.int64)])


def _fixed(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``buf[starts[i]:ends[i]]`` as a fixed-width byte-string array (NUL-padded), for
    comparisons in byte (code point) order."""
    lengths = ends - starts
    width = int(lengths.max()) if len(lengths) else 1
    if width > _MAX_KEY:
        raise _Irregular
    out = np.empty((len(starts), width), dtype=np.uint8)
    cols = np.arange(width)
    for a in range(0, len(starts), _BLOCK):  # blocks: the byte indices cost 8 bytes each
        block, first = out[a : a + _BLOCK], starts[a : a + _BLOCK]
        idx = first[:, None] + cols
        if first[-1] + width > len(buf):  # the last rows: bytes past the end are masked anyway
            np.minimum(idx, len(buf) - 1, out=idx)
        np.take(buf, idx, out=block)
        block *= cols < lengths[a : a + _BLOCK, None]
    return out.view(f"S{width}").ravel()


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal fixed-width byte strings (of one width: the longest of each side must match)."""
    return a.dtype == b.dtype and np.array_equal(a, b)


def _scp(path: Path, allow_pipes: bool):
    scp = _Table(path)
    sep = scp.first_sep()
    keys = _fixed(scp.buf, scp.starts, sep)
    if not np.all(keys[1:] > keys[:-1]):  # sorted and unique
        raise _Irregular
    if not allow_pipes and (scp.buf[scp.ends - 1] == ord("|")).any():
        raise _Irregular  # the reference reader refuses it, naming the line
    return keys, scp.packed(scp.starts, sep), scp.packed(sep + 1, scp.ends)


def _utt2spk(path: Path):
    table = _Table(path)
    key_end, value_start = table.two_fields()
    return _fixed(table.buf, table.starts, key_end), _fixed(table.buf, value_start, table.ends)


def _spk2utt(path: Path):
    table = _Table(path)
    if np.any(table.count < 1):
        raise _Irregular
    head = _fixed(table.buf, table.starts, table.first_sep())
    # the other fields, in order: each space starts one
    tail_end = np.empty(len(table.seps), dtype=np.int64)
    tail_end[:-1] = table.seps[1:]
    last = np.ones(len(table.seps), dtype=bool)
    last[:-1] = table.line_of_sep[1:] != table.line_of_sep[:-1]
    tail_end[last] = table.ends[table.line_of_sep[last]]
    return table.count, head, _fixed(table.buf, table.seps + 1, tail_end)


def _utt2dur(path: Path):
    table = _Table(path)
    key_end, value_start = table.two_fields()
    values = _fixed(table.buf, value_start, table.ends)
    chars = values.view(np.uint8).reshape(len(values), -1)
    digit = (chars >= 48) & (chars <= 57)
    if not (np.all(digit | (chars == 46) | (chars == 0)) and digit[:, 0].all() and np.all((chars == 46).sum(1) <= 1)):
        raise _Irregular  # only plain decimals here; the reference reader takes the rest
    dur = values.astype(np.float64)
    if not (np.all(dur > 0) and np.all(np.isfinite(dur))):
        raise _Irregular
    return _fixed(table.buf, table.starts, key_end), dur


def _read_plain(path: Path, allow_pipes: bool) -> UttIndex:
    """The vectorised reader; raises _Irregular for anything outside the plain form. The
    tables are parsed two at a time (NumPy releases the GIL), then checked against each other."""
    from concurrent.futures import ThreadPoolExecutor

    if (path / "segments").exists():
        raise _Irregular
    s2u_path, dur_path = path / "spk2utt", path / "utt2dur"
    with ThreadPoolExecutor(2) as pool:
        scp = pool.submit(_scp, path / "wav.scp", allow_pipes)
        u2s = pool.submit(_utt2spk, path / "utt2spk")
        s2u = pool.submit(_spk2utt, s2u_path) if s2u_path.exists() else None
        u2d = pool.submit(_utt2dur, dur_path) if dur_path.exists() else None
        keys, utts, entries = scp.result()
        u2s_keys, spk_values = u2s.result()
        if not _same(u2s_keys, keys):
            raise _Irregular
        del u2s_keys
        speakers_b, spk = np.unique(spk_values, return_inverse=True)
        spk = spk.astype(np.int32)
        del spk_values
        if s2u is not None:
            count, head, listed = s2u.result()
            if not (np.array_equal(count, np.bincount(spk, minlength=len(speakers_b))) and _same(head, speakers_b)
                    and _same(listed, keys[np.argsort(spk, kind="stable")])):
                raise _Irregular
            del count, head, listed
        dur = None
        if u2d is not None:
            dur_keys, dur = u2d.result()
            if not _same(dur_keys, keys):
                raise _Irregular
    return UttIndex(path, utts, [s.decode() for s in speakers_b], spk, entries, dur=dur, allow_pipes=allow_pipes)


def _check_files(index: UttIndex, mode: str, seed: int = 0) -> None:
    if mode == "none":
        return
    if mode == "auto":
        mode = "all" if len(index.entries) <= CHECK_ALL_UP_TO else "sample"
    n = len(index.entries)
    rows = range(n) if mode == "all" else np.sort(np.random.default_rng(seed).choice(n, min(n, SAMPLE_FILES), replace=False))
    scp = index.path / "wav.scp"
    for i in rows:
        value = index.entries[int(i)]
        if not value.endswith("|"):
            _check_audio(scp, int(i) + 1, _entry_key(index, int(i)), value)


def _entry_key(index: UttIndex, i: int) -> str:
    return (index.utts if index.recordings is None else index.recordings)[i]


def read_index(path: str | Path, *, check_files: str = "auto", allow_pipes: bool = False, cache: bool = True) -> UttIndex:
    """Read a data dir into a :class:`UttIndex` (module docstring). ``cache``: reuse the
    index kept by an earlier read of the same, unchanged tables, and keep this one
    (:mod:`jeffreys.data.index_cache`, data dirs of 50,000 utterances and more)."""
    from . import index_cache

    path = Path(path)
    if check_files not in CHECK_FILES:
        raise ValueError(f"check_files must be one of {', '.join(CHECK_FILES)}, got {check_files!r}")
    if not path.is_dir():
        raise InputError(f"{shown(path)}: not a directory")
    index = index_cache.load(path, allow_pipes) if cache else None
    checked = False
    if index is None:
        try:
            index = _read_plain(path, allow_pipes)
        except _Irregular:
            checked = check_files == "all"
            index = UttIndex.from_datadir(read_datadir(path, check_files=checked, allow_pipes=allow_pipes))
        if cache and len(index) >= index_cache.CACHE_FROM:
            index_cache.store(index, path, allow_pipes)
    if not checked:
        _check_files(index, check_files)
    return index


__all__ = ["CHECK_ALL_UP_TO", "CHECK_FILES", "SAMPLE_FILES", "Strings", "UttIndex", "read_index"]
