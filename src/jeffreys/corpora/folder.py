"""Your own recordings: one folder per speaker, or a CSV file of path,speaker.

SRC/SPEAKER/**/*.{wav,flac,ogg,opus,mp3,m4a,aac,...} (folders below a speaker, e.g. sessions,
become part of the utterance id), or SRC = a CSV file whose header names the columns `path`
and `speaker` (relative paths from the CSV's folder). DST: a data dir of every recording;
with --trials N also DST/dev and DST/test, speaker-disjoint, each with N generated trials.
Refused in one line: audio directly in SRC, a SRC holding one folder (one level too high?),
two files giving one utterance id, names that cannot form Kaldi ids or wav.scp paths.

Utterance ids are ``SPEAKER-SUB-FOLDERS-FILE_STEM`` (whitespace in a name becomes ``_``), so
that sorting by utterance keeps each speaker's recordings together, as Kaldi expects.
Hidden files (``.name``, e.g. macOS ``._x.wav``) and files that are not audio by extension
are skipped, and counted in the summary. Every file's header is read for its duration
(``--no-durations`` skips it), so an unreadable file stops the preparation with its name.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
from pathlib import Path

import numpy as np

from ..errors import InputError, nonnegative_int, shown
from ..fileio import read_text
from ._common import DirSpec, TrialList, add_io_arguments, call_with_args, durations, walk_files, write_dirs
from ._progress import current, reported

AUDIO_SUFFIXES = frozenset({
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".mp4", ".webm", ".mkv", ".wma",
    ".amr", ".aif", ".aiff", ".au", ".caf", ".w64", ".sph", ".wv",
})
_SPACE = re.compile(r"\s+")


def _id_part(name: str, where: str) -> str:
    part = _SPACE.sub("_", name.strip())
    if not part:
        raise InputError(f"{where}: an empty name cannot form a Kaldi id")
    return part


def _check_path(p: str) -> str:
    """The absolute path ``p`` (resolved) as wav.scp will hold it: it must read back unchanged
    (Kaldi tables split on whitespace, and a value ending in '|' is a command)."""
    if " ".join(p.split()) != p or p.endswith("|"):
        raise InputError(f"{p!r}: a path with tabs, newlines, repeated or edge spaces, or ending in '|' cannot be "
                         "written to wav.scp; rename it")
    return p


def _suffix(name: str) -> str:
    """``Path(name).suffix``."""
    i = name.rfind(".")
    return name[i:] if 0 < i < len(name) - 1 else ""


def _is_audio(path: Path) -> bool:
    return _suffix(path.name).lower() in AUDIO_SUFFIXES


def scan_folders(src: Path) -> tuple[list[tuple[Path, str, str, str]], list[str]]:
    """(file, speaker id, utterance id, resolved path) of every recording below ``src``'s
    speaker folders, and notes."""
    entries = sorted(src.iterdir(), key=lambda p: p.name)
    loose = [p for p in entries if p.is_file() and not p.name.startswith(".") and _is_audio(p)]
    if loose:
        raise InputError(f"{loose[0]}: audio directly in {src}, outside any speaker folder: put each speaker's "
                         "recordings in SRC/SPEAKER/, or list path,speaker in a CSV and give that as SRC")
    folders = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    if not folders:
        raise InputError(f"{src}: no speaker folders (expected SRC/SPEAKER/**/*.wav|flac|mp3|m4a|...)")
    found: list[tuple[Path, str, str, str]] = []
    skipped, empty = 0, []
    speaker_of: dict[str, Path] = {}
    rep = current()
    rep.step(f"scanning {shown(src)}: {len(folders):,} speaker folders")
    count = rep.counter("scanned", unit="file", check_every=4096)
    for folder in folders:
        spk = _id_part(folder.name, str(folder))
        if spk in speaker_of:
            raise InputError(f"{folder}: speaker folders {speaker_of[spk].name!r} and {folder.name!r} give one speaker id {spk!r}")
        speaker_of[spk] = folder
        n = 0
        for rel, path in walk_files(folder, "", count):
            name = rel[-1]
            suffix = _suffix(name)
            if any(part.startswith(".") for part in rel) or suffix.lower() not in AUDIO_SUFFIXES:
                skipped += 1
                continue
            f = folder.joinpath(*rel)
            parts = [_id_part(x, str(f)) for x in (*rel[:-1], name[: -len(suffix)])]
            found.append((f, spk, "-".join([spk, *parts]), path))
            n += 1
        if n == 0:
            empty.append(folder.name)
    count.close(f"found {len(found):,} recordings ({skipped:,} other files)")
    with_audio = len(folders) - len(empty)
    if with_audio == 1:
        only = next(f for f in folders if f.name not in empty)
        raise InputError(f"{src}: one speaker folder, {only.name!r}: if its sub-folders are the speakers, give {only} as SRC "
                         "(verification needs at least two speakers)")
    if with_audio == 0:
        raise InputError(f"{src}: no audio files in its folders (suffixes: {', '.join(sorted(AUDIO_SUFFIXES))})")
    notes = []
    if skipped:
        notes.append(f"skipped {skipped} hidden or non-audio file(s)")
    if empty:
        notes.append(f"skipped {len(empty)} folder(s) without audio: {', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}")
    return found, notes


def scan_csv(src: Path) -> tuple[list[tuple[Path, str, str, str]], list[str]]:
    """(file, speaker id, utterance id, resolved path) of every row of a ``path,speaker`` CSV file."""
    text = read_text(src, "CSV")[1]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = list(reader)
    except csv.Error as e:
        raise InputError(f"{src}:{reader.line_num}: not CSV ({e})") from None
    if not rows:
        raise InputError(f"{src}: empty CSV (expected a header naming the columns path and speaker)")
    header = [h.strip().lower() for h in rows[0]]
    if "path" not in header or "speaker" not in header:
        raise InputError(f"{src}:1: the header must name the columns 'path' and 'speaker', got {','.join(rows[0])!r}")
    ip, isp = header.index("path"), header.index("speaker")
    found, seen = [], {}
    for n, row in enumerate(current().each(rows[1:], f"checking the rows of {shown(src)}", unit="row"), 2):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(ip, isp):
            raise InputError(f"{src}:{n}: {len(row)} field(s), expected at least {max(ip, isp) + 1}")
        rel, spk_name = row[ip].strip(), row[isp].strip()
        if not rel or not spk_name:
            raise InputError(f"{src}:{n}: empty path or speaker")
        f = Path(rel) if Path(rel).is_absolute() else src.parent / rel
        if not f.is_file():
            raise InputError(f"{src}:{n}: audio file not found: {f}")
        key = str(f.resolve())
        if key in seen:
            raise InputError(f"{src}:{n}: {rel} is listed again (first on line {seen[key]})")
        seen[key] = n
        spk = _id_part(spk_name, f"{src}:{n}")
        stem = Path(rel).with_suffix("") if not Path(rel).is_absolute() else Path(Path(rel).stem)
        parts = [_id_part(x, f"{src}:{n}") for x in stem.parts if x not in ("..", ".")]
        found.append((f, spk, "-".join([spk, *parts]), key))
    if not found:
        raise InputError(f"{src}: no rows after the header")
    return found, []


def split_speakers(speakers: list[str], dev_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Speaker-disjoint (dev, test) halves (``dev_fraction`` of the speakers to dev), seeded."""
    if not 0 < dev_fraction < 1:
        raise InputError(f"--dev-fraction must lie strictly between 0 and 1, got {dev_fraction}")
    if len(speakers) < 4:
        raise InputError(f"{len(speakers)} speakers cannot make two speaker-disjoint sets of at least 2 speakers; --trials needs 4")
    order = [speakers[i] for i in np.random.default_rng(seed).permutation(len(speakers))]
    k = min(len(order) - 2, max(2, round(dev_fraction * len(order))))
    return sorted(order[:k]), sorted(order[k:])


@reported("folder")
def prepare_folder(
    src: str | Path,
    dst: str | Path,
    *,
    trials: int = 0,
    dev_fraction: float = 0.5,
    target_fraction: float = 0.5,
    seed: int = 0,
    measure_durations: bool = True,
    jobs: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the data dir of ``src`` (speaker folders, or a ``path,speaker`` CSV file) to ``dst``;
    with ``trials`` > 0 also ``dst/dev`` and ``dst/test`` (speaker-disjoint, ``dev_fraction`` of
    the speakers in dev), each with ``trials`` generated trials
    (:func:`jeffreys.data.trials.generate_trials`). Prints what was found."""
    from ..data.trials import generate_trials

    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise InputError(f"{src}: not found (a folder of speaker folders, or a path,speaker CSV file)")
    nonnegative_int(trials, "--trials")
    nonnegative_int(seed, "--seed")
    found, notes = scan_csv(src) if src.is_file() else scan_folders(src)
    wav: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for f, spk, utt, path in found:
        if utt in origin:
            raise InputError(f"{f}: gives utterance id {utt!r}, as {origin[utt]} does; rename one of them")
        origin[utt] = f
        wav[utt], utt2spk[utt] = _check_path(path), spk
    dur = durations(wav, not measure_durations, jobs)
    layout = f"read {'CSV ' + src.name if src.is_file() else 'speaker folders'}"
    dirs = {"": DirSpec(wav, utt2spk, dur, notes=[layout, *notes])}
    if trials:
        dev, test = split_speakers(sorted(set(utt2spk.values())), dev_fraction, seed)
        for name, spks in (("dev", dev), ("test", test)):
            keep = set(spks)
            sub = {u: s for u, s in utt2spk.items() if s in keep}
            with current().waiting(f"drawing {trials:,} {name} trials"):
                rows = generate_trials(sub, trials, target_fraction=target_fraction, seed=seed)
            dirs[name] = DirSpec({u: wav[u] for u in sub}, sub, None if dur is None else {u: dur[u] for u in sub},
                                 trials=[TrialList("trials", rows)])
    write_dirs("folder", dst, dirs, overwrite)
    return dst


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_io_arguments(parser, trials=False)
    parser.add_argument("--trials", type=int, default=0, metavar="N",
                        help="also write DST/dev and DST/test (speaker-disjoint) with N generated trials each")
    parser.add_argument("--dev-fraction", type=float, default=0.5, help="fraction of the speakers in dev (default 0.5)")
    parser.add_argument("--target-fraction", type=float, default=0.5, help="fraction of same-speaker trials (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the trials (default 0)")


def run(args) -> int:
    return call_with_args(prepare_folder, args)
