"""A read data dir's :class:`~jeffreys.data.index.UttIndex`, kept for the next start-up.

A large data dir (:data:`CACHE_FROM` utterances and more) is read once; its arrays are kept
as ``.npy`` files under ``cache_dir()/index/KEY`` and memory-mapped by later runs: the recipe's
systems and seeds, a resumed run and every DDP rank of a node then start without parsing
the tables again and share one copy of the index in the page cache. ``KEY`` digests the
data dir's path and each table's size, modification and change times and inode, so an
edited table (or one replaced by a rename) is read afresh. The newest :data:`KEEP` entries
are kept. Loading checks every array's shape, dtype and bounds (an edited cache is read
again from the tables, never trusted into an out-of-range index); the audio files are
checked by the caller's policy as after any read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..cache import cache_dir
from ..errors import InputError
from ..fileio import atomic_dir, save_npy
from .index import Strings, UttIndex

VERSION = 1
CACHE_FROM = 50_000  # smaller data dirs are read in well under a second
KEEP = 8
_TABLES = ("wav.scp", "utt2spk", "spk2utt", "utt2dur", "segments")
_STRINGS = ("utts", "entries", "speakers", "recordings")
_ARRAYS = {"spk": np.int32, "entry_of": np.int32, "start": np.float64, "end": np.float64, "dur": np.float64}


def key(path: Path, allow_pipes: bool) -> str | None:
    parts: list = [VERSION, str(path.resolve()), allow_pipes]
    for name in _TABLES:
        try:
            st = os.stat(path / name)
        except FileNotFoundError:
            parts.append([name])
            continue
        except OSError:
            return None
        parts.append([name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def _root() -> Path:
    return cache_dir() / "index"


def store(index: UttIndex, path: Path, allow_pipes: bool) -> None:
    """Keep ``index`` for the next read of ``path``; a cache that cannot be written is skipped."""
    k = key(path, allow_pipes)
    if k is None or (_root() / k).is_dir():
        return
    try:
        with atomic_dir(_root() / k, overwrite=True) as tmp:
            for name in _STRINGS:
                s = Strings.of(index.speakers) if name == "speakers" else getattr(index, name)
                if s is not None:
                    for part in ("blob", "offsets"):
                        with open(tmp / f"{name}.{part}.npy", "wb") as f:
                            save_npy(f, getattr(s, part))
            for name in _ARRAYS:
                a = getattr(index, name)
                if a is not None:
                    with open(tmp / f"{name}.npy", "wb") as f:
                        save_npy(f, a)
            (tmp / "meta.json").write_text(json.dumps({"version": VERSION, "path": str(path), "utterances": len(index)}))
    except (OSError, InputError):
        return
    _evict()


def _evict() -> None:
    try:
        entries = sorted((p for p in _root().iterdir() if p.is_dir() and not p.name.startswith(".")),
                         key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    for old in entries[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)


def load(path: Path, allow_pipes: bool) -> UttIndex | None:
    """The kept index of ``path`` when its tables are unchanged and the entry is whole; else None."""
    k = key(path, allow_pipes)
    where = _root() / k if k else None
    if where is None or not (where / "meta.json").is_file():
        return None
    try:
        arrays = {p.name[: -len(".npy")]: np.load(p, mmap_mode="r", allow_pickle=False) for p in where.glob("*.npy")}
        index = _assemble(path, arrays, allow_pipes)
        os.utime(where)  # recently used: kept by _evict
        return index
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _strings(arrays: dict, name: str, count: int | None = None) -> Strings | None:
    if f"{name}.blob" not in arrays:
        return None
    blob, offsets = arrays[f"{name}.blob"], arrays[f"{name}.offsets"]
    if blob.dtype != np.uint8 or offsets.dtype != np.int64 or blob.ndim != 1 or offsets.ndim != 1 or len(offsets) < 1:
        raise ValueError("bad strings")
    if offsets[0] != 0 or offsets[-1] != len(blob) or np.any(np.diff(offsets) < 0):
        raise ValueError("bad offsets")
    if count is not None and len(offsets) != count + 1:
        raise ValueError("bad count")
    return Strings(blob, offsets)


def _assemble(path: Path, arrays: dict, allow_pipes: bool) -> UttIndex:
    utts = _strings(arrays, "utts")
    n = len(utts)
    speakers = list(_strings(arrays, "speakers"))
    recordings = _strings(arrays, "recordings")
    entries = _strings(arrays, "entries", None if recordings is not None else n)
    got = {}
    for name, dtype in _ARRAYS.items():
        a = arrays.get(name)
        if a is not None and (a.dtype != dtype or a.shape != (n,)):
            raise ValueError(f"bad {name}")
        got[name] = a
    spk, entry_of = got["spk"], got["entry_of"]
    if spk is None or (n and (spk.min() < 0 or spk.max() >= len(speakers))):
        raise ValueError("speaker out of range")
    if (entry_of is None) != (recordings is None) or (entry_of is not None and n and (entry_of.min() < 0 or entry_of.max() >= len(entries))):
        raise ValueError("entry out of range")
    if got["dur"] is not None and not (np.all(got["dur"] > 0) and np.all(np.isfinite(got["dur"]))):
        raise ValueError("bad durations")
    return UttIndex(path, utts, speakers, spk, entries, entry_of=entry_of, start=got["start"], end=got["end"],
                    dur=got["dur"], allow_pipes=allow_pipes, recordings=recordings)


__all__ = ["CACHE_FROM", "KEEP", "load", "store"]
