"""Helpers shared by the corpus preparers: layout checks, list reading, durations, trial
mapping, atomic writing of one or more data dirs, and the printed summary."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from ..data.datadir import read_datadir, write_datadir
from ..data.tables import read_table
from ..data.trials import write_trials
from ..errors import InputError
from ..fileio import atomic_dir, atomic_write

MAX_LISTED = 5  # absent files named in an error message
PARALLEL_ABOVE = 2000  # files; below, a process pool costs more than it saves
PROGRESS_ABOVE = 5000


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
        parser.add_argument("--jobs", type=_positive, default=os.cpu_count() or 1, help="processes reading file headers (default: all CPUs)")


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
    Paths and a missing ``src`` is refused in one line before any work."""
    import functools

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(src, dst, *args, **kwargs):
            return fn(require(Path(src), "corpus root", corpus), Path(dst), *args, **kwargs)

        return wrapper

    return deco


def files_under(root: Path, suffix: str, corpus: str, what: str) -> list[Path]:
    """Every ``*suffix`` file below ``root`` (sorted); an error if there are none."""
    require(root, what, corpus)
    found = sorted(p for p in root.rglob(f"*{suffix}") if p.is_file())
    if not found:
        raise InputError(f"{root}: no {suffix} files found ({what})")
    return found


def read_rows(path: Path, min_fields: int, max_fields: int | None = None, header: str | None = None) -> list[tuple[int, list[str]]]:
    """(line number, fields) of a published list (Kaldi table rules); a first line starting
    with ``header`` is skipped (the SdSV lists carry one), and an empty list is an error."""
    rows = [(n, p) for n, p in read_table(path, min_fields, max_fields) if not (n == 1 and header is not None and p[0] == header)]
    if not rows:
        raise InputError(f"{path}: empty list")
    return rows


def _duration(path: str) -> float:
    # the audio stage's reader: headers through soundfile, FFmpeg (local files only) for m4a
    from ..audio import audio_duration

    return audio_duration(path)


def durations(wav: Mapping[str, str], skip: bool, jobs: int = 1) -> dict[str, float] | None:
    """utt -> seconds read from each file's header, or None when skipped.

    Opening an m4a header through FFmpeg costs ~7 ms (VoxCeleb2 dev: 1.1M files), so large
    corpora are read by ``jobs`` processes, with a progress bar on stderr."""
    if skip:
        return None
    return dict(zip(wav, parallel_map(_duration, list(wav.values()), jobs, "durations", chunksize=256)))


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
                 parallel_above: int = PARALLEL_ABOVE, progress_above: int = PROGRESS_ABOVE) -> list:
    """``[fn(x) for x in items]``, over ``jobs`` processes when there are enough items to pay
    for starting them, with a progress bar on stderr for long lists."""
    bar = dict(total=len(items), unit="file", desc=desc, disable=len(items) < progress_above, file=sys.stderr)
    if jobs > 1 and len(items) >= parallel_above:
        with ProcessPoolExecutor(jobs) as pool:
            return list(tqdm(pool.map(fn, items, chunksize=chunksize), **bar))
    return [fn(x) for x in tqdm(items, **bar)]


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
    for n, e, t, y in rows:
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


def write_dirs(corpus: str, dst: Path, dirs: Mapping[str, DirSpec], overwrite: bool) -> None:
    """Write ``dirs`` (sub-dir name -> spec; ``""`` for DST itself) atomically, validate each
    with :func:`read_datadir` before the rename, then print what was written."""
    with atomic_dir(dst, overwrite=overwrite) as tmp:
        for sub, spec in dirs.items():
            path = tmp / sub if sub else tmp
            write_datadir(path, spec.wav, spec.utt2spk, segments=spec.segments, utt2dur=spec.utt2dur)
            for tl in spec.trials:
                write_trials(path / tl.name, tl.rows)
            for name, lines in spec.extra.items():
                with atomic_write(path / name) as f:
                    f.writelines(f"{x}\n" for x in lines)
            read_datadir(path, check_files=True)
    print(summary(corpus, dst, dirs))


def summary(corpus: str, dst: Path, dirs: Mapping[str, DirSpec]) -> str:
    lines = [f"{corpus}: wrote {dst}"]
    for sub, spec in dirs.items():
        n_spk = len(set(spec.utt2spk.values()))
        hours = "hours not measured (--no-durations)" if spec.utt2dur is None else f"{sum(spec.utt2dur.values()) / 3600:.2f} hours"
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
    if any(c.isspace() for c in uid):
        raise InputError(f"{'/'.join(parts)}: whitespace in a file name cannot form a Kaldi id")
    return uid
