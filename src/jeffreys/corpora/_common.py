"""Helpers shared by the corpus preparers: layout checks, list reading, durations, trial
mapping, atomic writing of one or more data dirs, and the printed summary."""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..data.datadir import read_datadir, write_datadir
from ..data.tables import read_table
from ..data.trials import write_trials
from ..errors import InputError, shown
from ..fileio import atomic_dir, atomic_write
from ._progress import Counter, current, reported

MAX_LISTED = 5  # absent files named in an error message
PARALLEL_ABOVE = 2000  # files; below, a process pool costs more than it saves
_SPACE = re.compile(r"\s")  # str.isspace's characters
# errors of a directory entry that mean "not there" (pathlib's rules for is_dir/is_file)
_GONE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP})


def default_jobs() -> int:
    """The CPUs this process may run on (its affinity mask, which a container or taskset
    narrows; os.cpu_count() counts the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def add_io_arguments(parser: argparse.ArgumentParser, *, trials: bool = True, durations: bool = True, jobs: bool = True) -> None:
    parser.add_argument("src", type=Path, help="corpus root (the layout above)")
    parser.add_argument("dst", type=Path, help="output data dir (built in a temporary dir, then renamed)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    if trials:
        parser.add_argument(
            "--drop-missing",
            action="store_true",
            help="drop trials naming an absent audio file (counted) instead of refusing them",
        )
    if durations:
        parser.add_argument(
            "--no-durations",
            action="store_true",
            help="do not open every file for its duration (no utt2dur, hours not reported)",
        )
    if jobs:
        parser.add_argument("--jobs", type=_positive, default=default_jobs(), help="processes reading file headers (default: all CPUs)")


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def require(path: Path, what: str, corpus: str) -> Path:
    """``path`` must exist; otherwise a one-line error naming it."""
    if not path.exists():
        raise InputError(f"{path}: not found ({what}); see `jeffreys prepare {corpus} --help` for the layout")
    return path


def preparer(corpus: str):
    """Decorator of a ``prepare_NAME(src, dst, ...)`` function: ``src`` and ``dst`` arrive as
    Paths, a missing ``src`` is refused in one line before any work, and progress goes to
    stderr (:mod:`._progress`) from a first line ``SRC -> DST`` on."""
    import functools

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(src, dst, *args, **kwargs):
            return fn(require(Path(src), "corpus root", corpus), Path(dst), *args, **kwargs)

        return reported(corpus)(wrapper)

    return deco


class Found(NamedTuple):
    """A file found by :func:`scan_tree`."""

    rel: tuple[str, ...]  # path components below the scanned root
    path: str  # absolute, symbolic links resolved (what wav.scp holds)


def stem(name: str, suffix: str) -> str:
    """``Path(name).stem`` of a name ending with ``suffix`` (one dot, at its start)."""
    return name[: -len(suffix)] if len(name) > len(suffix) else name


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)  # a link to a directory is not followed
    except OSError as e:
        if e.errno in _GONE:
            return False
        raise


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()  # a link to a regular file counts
    except OSError as e:
        if e.errno in _GONE:
            return False
        raise


def _entries(path: str) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            entries = list(it)
    except PermissionError:  # skipped, as pathlib's glob skips it
        return []
    entries.sort(key=lambda e: e.name)
    return entries


def walk_files(root: Path, suffix: str, count: Counter) -> Iterator[Found]:
    """Every ``*suffix`` file below ``root``, sorted by path components (as ``sorted()`` sorts
    the Paths), as it is found; ``count`` counts them and reads the clock once a folder.

    The files ``sorted(root.rglob(f"*{suffix}"))`` keeps with ``is_file()`` (Python 3.11's
    rules): names ending with ``suffix`` (case-sensitive, hidden ones too), regular files or
    links to one, below directories that are not links; an unreadable directory is skipped.
    Faster at VoxCeleb2's 1.1M files: the types os.scandir gives need no stat per file, each
    folder's entries are visited in order (no global sort, no recursion limit), and ``root``
    is resolved once (a file that is a link is resolved alone)."""
    base = os.path.realpath(root).rstrip("/")
    stack = [((), base, iter(_entries(os.fspath(root)) if root.is_dir() else ()))]
    while stack:
        rel, real, entries = stack[-1]
        for e in entries:
            name = e.name
            if _is_dir(e):
                stack.append(((*rel, name), f"{real}/{name}", iter(_entries(e.path))))
                count.poll()
                break  # its files come before the next entry here
            if name.endswith(suffix) and _is_file(e):
                count.add()
                yield Found((*rel, name), os.path.realpath(e.path) if e.is_symlink() else f"{real}/{name}")
        else:
            stack.pop()


def scan_tree(root: Path, suffix: str, corpus: str, what: str) -> Iterator[Found]:
    """:func:`walk_files` with its progress (a line at once, then the count about every
    second); an error at the end if there is no file."""
    require(root, what, corpus)
    rep = current()
    rep.step(f"scanning {shown(root)} for {suffix} files")
    count = rep.counter("scanned", unit=f"{suffix} file", check_every=4096)
    yield from walk_files(root, suffix, count)
    if count.n == 0:
        raise InputError(f"{root}: no {suffix} files found ({what})")
    count.close(f"found {count.n:,} {suffix} files in {shown(root)}")


def files_under(root: Path, suffix: str, corpus: str, what: str) -> list[Path]:
    """Every ``*suffix`` file below ``root`` (sorted); an error if there are none. See
    :func:`scan_tree`, which also gives each resolved path."""
    return [root.joinpath(*f.rel) for f in scan_tree(root, suffix, corpus, what)]


def read_rows(path: Path, min_fields: int, max_fields: int | None = None, header: str | None = None) -> list[tuple[int, list[str]]]:
    """(line number, fields) of a published list (Kaldi table rules); a first line starting
    with ``header`` is skipped (the SdSV lists carry one), and an empty list is an error."""
    with current().waiting(f"reading {shown(path)}"):
        rows = [(n, p) for n, p in read_table(path, min_fields, max_fields) if not (n == 1 and header is not None and p[0] == header)]
    if not rows:
        raise InputError(f"{path}: empty list")
    return rows


def _duration(path: str) -> float:
    # the audio stage's reader: headers through soundfile, FFmpeg (local files only) for m4a
    from ..audio import audio_duration

    return audio_duration(path)


def durations(wav: Mapping[str, str], skip: bool, jobs: int | None = None) -> dict[str, float] | None:
    """utt -> seconds read from each file's header, or None when skipped.

    Opening an m4a header costs ~0.85 ms (VoxCeleb2 dev: 1.1M files), so a corpus of more
    than :data:`PARALLEL_ABOVE` files is read by ``jobs`` processes (default: every CPU),
    with its progress on stderr."""
    if skip:
        return None
    return dict(zip(wav, parallel_map(_duration, list(wav.values()), jobs or default_jobs(), "durations", chunksize=256)))


@dataclass
class TrialList:
    """A published trial list mapped onto utterance (or model) ids of a data dir."""

    name: str  # file name inside the data dir
    rows: list[tuple[str, str, bool]]
    dropped: int = 0

    @property
    def n_target(self) -> int:
        return sum(1 for _, _, y in self.rows if y)


def parallel_map(fn: Callable, items: list, jobs: int, desc: str, *, chunksize: int = 16,
                 parallel_above: int | None = None) -> list:
    """``[fn(x) for x in items]``, over ``jobs`` processes when there are at least
    ``parallel_above`` (default :data:`PARALLEL_ABOVE`, read at each call) to pay for
    starting them, with the progress on stderr."""
    rep = current()
    pool = jobs > 1 and len(items) >= (PARALLEL_ABOVE if parallel_above is None else parallel_above)
    rep.step(f"{desc}: {len(items):,} file{'s' if len(items) != 1 else ''}, " + (f"{jobs} processes" if pool else "one process"))
    count = rep.counter(desc, total=len(items))
    if pool:
        with ProcessPoolExecutor(jobs) as executor:
            out = []
            for y in executor.map(fn, items, chunksize=chunksize):
                out.append(y)
                count.add()
    else:
        out = []
        for x in items:
            out.append(fn(x))
            count.add()
    count.close()
    return out


def call_with_args(fn: Callable, args: argparse.Namespace, **renamed) -> int:
    """The CLI's ``run(args)`` of a preparer: ``fn(args.src, args.dst, **options)``, each
    further argument of ``fn`` taken from the argparse attribute of the same name (or the one
    ``renamed`` gives); ``measure_durations`` is the inverse of ``--no-durations``."""
    import inspect

    kwargs = {}
    for name, p in list(inspect.signature(fn).parameters.items())[2:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name == "measure_durations":
            kwargs[name] = not args.no_durations
        elif name in renamed:
            kwargs[name] = renamed[name]
        elif hasattr(args, name):
            kwargs[name] = getattr(args, name)
    fn(args.src, args.dst, **kwargs)
    return 0


def map_trials(
    name: str,
    source: Path,
    rows: Iterable[tuple[int, str, str, bool]],
    resolve_enroll: Callable[[str], str | None],
    resolve_test: Callable[[str], str | None],
    drop_missing: bool,
) -> TrialList:
    """Map (line, enroll key, test key, label) rows in their published order.

    A key that does not resolve names an absent file: by default an error listing the first
    few (file:line and key); with ``drop_missing`` the trial is dropped and counted.
    """
    out, missing = [], []
    for n, e, t, y in current().each(rows, f"mapping {name}", unit="trial", check_every=4096):
        eu, tu = resolve_enroll(e), resolve_test(t)
        if eu is None or tu is None:
            missing.append(f"{source}:{n}: {e if eu is None else t}")
            continue
        out.append((eu, tu, y))
    if missing and not drop_missing:
        more = f" (and {len(missing) - MAX_LISTED} more)" if len(missing) > MAX_LISTED else ""
        raise InputError(
            f"{len(missing)} trial(s) name audio absent from the corpus: "
            + "; ".join(missing[:MAX_LISTED])
            + more
            + " (pass --drop-missing to drop them)"
        )
    if not out:
        raise InputError(f"{source}: no trial left after mapping to the corpus files")
    return TrialList(name, out, dropped=len(missing))


@dataclass
class DirSpec:
    """One data dir to write: tables, trial lists and extra files (name -> lines).

    With ``segments`` (utt -> (recording, start, end)), ``wav`` is keyed by recording."""

    wav: dict[str, str]
    utt2spk: dict[str, str]
    utt2dur: dict[str, float] | None = None
    trials: list[TrialList] = field(default_factory=list)
    extra: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    segments: dict[str, tuple[str, float, float]] | None = None


def write_dirs(corpus: str, dst: Path, dirs: Mapping[str, DirSpec], overwrite: bool, info: dict | None = None) -> None:
    """Write ``dirs`` (sub-dir name -> spec; ``""`` for DST itself) atomically, validate each
    with :func:`read_datadir` before the rename, then print what was written. ``info``: the
    corpus record written as DST/info.json in the same rename (what
    :func:`jeffreys.data.datadir.describe` reads into a trained model's meta)."""
    rep = current()
    with atomic_dir(dst, overwrite=overwrite) as tmp:
        if info is not None:
            with atomic_write(tmp / "info.json") as f:
                f.write(json.dumps(info, indent=2, sort_keys=True) + "\n")
        for sub, spec in dirs.items():
            path = tmp / sub if sub else tmp
            where = shown(dst / sub if sub else dst)
            with rep.waiting(f"writing {where} ({len(spec.utt2spk):,} utterances)"):
                write_datadir(path, spec.wav, spec.utt2spk, segments=spec.segments, utt2dur=spec.utt2dur)
                for tl in spec.trials:
                    write_trials(path / tl.name, tl.rows)
                for name, lines in spec.extra.items():
                    with atomic_write(path / name) as f:
                        f.writelines(f"{x}\n" for x in lines)
            with rep.waiting(f"checking {where} (every audio file there)"):
                read_datadir(path, check_files=True)
    _keep_indexes(dst, dirs, rep)
    rep.end_line()
    print(summary(corpus, dst, dirs))


def _keep_indexes(dst: Path, dirs: Mapping[str, DirSpec], rep) -> None:
    """Keep the training index of each large data dir just written (jeffreys.data.index_cache),
    so that the first training run on it starts as fast as the later ones. Read at the final
    path (the key holds it); a cache that cannot be written costs nothing but that."""
    from ..data import index_cache
    from ..data.index import read_index

    for sub, spec in dirs.items():
        if len(spec.utt2spk) >= index_cache.CACHE_FROM:
            path = dst / sub if sub else dst
            with rep.waiting(f"keeping the training index of {shown(path)}"):
                read_index(path, check_files="none")


def summary(corpus: str, dst: Path, dirs: Mapping[str, DirSpec]) -> str:
    lines = [f"{corpus}: wrote {dst}"]
    for sub, spec in dirs.items():
        n_spk = len(set(spec.utt2spk.values()))
        hours = "hours not measured (no utt2dur)" if spec.utt2dur is None else f"{sum(spec.utt2dur.values()) / 3600:.2f} hours"
        lines.append(f"  {dst / sub if sub else dst}: {n_spk} speakers, {len(spec.utt2spk)} utterances, {hours}")
        for tl in spec.trials:
            n, t = len(tl.rows), tl.n_target
            drop = f"; {tl.dropped} dropped (absent audio)" if tl.dropped else ""
            lines.append(f"    {tl.name}: {n} trials ({t} target, {n - t} non-target){drop}")
        lines += [f"    {note}" for note in spec.notes]
    return "\n".join(lines)


def utt_id(*parts: str) -> str:
    """An utterance id from path components; whitespace is refused (Kaldi ids)."""
    uid = "-".join(parts)
    if _SPACE.search(uid):
        raise InputError(f"{'/'.join(parts)}: whitespace in a file name cannot form a Kaldi id")
    return uid
