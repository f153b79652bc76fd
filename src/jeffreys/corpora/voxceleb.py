"""VoxCeleb1 (dev/test, trial lists Vox1-O/E/H) and VoxCeleb2 (dev, m4a) as one data dir.

voxceleb1: SRC/dev/wav/idXXXXX/VIDEO/NNNNN.wav (vox1_dev_wav.zip), SRC/test/wav/... (vox1_test_wav.zip),
  trial lists at SRC/: veri_test2.txt (O), list_test_all2.txt (E), list_test_hard2.txt (H),
  cleaned; --original reads veri_test.txt, list_test_all.txt, list_test_hard.txt.
  Lines are VoxCeleb format `1 id10270/5r0dWxy17C8/00001.wav id10273/8cfyJEV7hP8/00004.wav`.
  DST gets trials_O, trials_E, trials_H (Kaldi `enroll test target|nontarget`, published order),
  and `trials` = trials_O.
voxceleb2: SRC/dev/aac/idXXXXX/VIDEO/NNNNN.m4a (--split test: SRC/test/aac/...);
  wav.scp points at the m4a files (decoded by PyAV when loaded).
Utterance ids are idXXXXX-VIDEO-NNNNN, speakers idXXXXX.

The layout is the one the official zips unpack to (``wav/`` resp. ``aac/`` under each
split), as Kaldi's egs/voxceleb/v2 ``make_voxceleb1_v2.pl``/``make_voxceleb2.pl`` expect it.
Vox1-E and -H pair speakers of dev and test, so they need ``--split all`` (the default).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ._common import DirSpec, TrialList, add_io_arguments, durations, files_under, map_trials, read_rows, require, utt_id, write_dirs

# name -> (cleaned file, original file)
VOX1_LISTS = {
    "O": ("veri_test2.txt", "veri_test.txt"),
    "E": ("list_test_all2.txt", "list_test_all.txt"),
    "H": ("list_test_hard2.txt", "list_test_hard.txt"),
}
_AUDIO = {"voxceleb1": ("wav", ".wav"), "voxceleb2": ("aac", ".m4a")}


def add_arguments_for(name: str, parser: argparse.ArgumentParser) -> None:
    add_io_arguments(parser, trials=name == "voxceleb1")
    if name == "voxceleb1":
        parser.add_argument("--split", choices=("dev", "test", "all"), default="all", help="which part (default: all)")
        parser.add_argument(
            "--trials",
            default=None,
            help="comma-separated lists to write among O,E,H (default: those present in SRC that the split covers)",
        )
        parser.add_argument("--original", action="store_true", help="the original (uncleaned) trial lists")
    else:
        parser.add_argument("--split", choices=("dev", "test", "all"), default="dev", help="which part (default: dev)")
    parser.set_defaults(_corpus=name)


def scan(corpus: str, src: Path, split: str) -> dict[str, str]:
    """utt id -> absolute audio path for the split(s)."""
    sub, ext = _AUDIO[corpus]
    wav: dict[str, str] = {}
    for part in ("dev", "test") if split == "all" else (split,):
        root = src / part / sub
        for f in files_under(root, ext, corpus, f"VoxCeleb {part} audio, {sub}/idXXXXX/VIDEO/NNNNN{ext}"):
            rel = f.relative_to(root).parts
            if len(rel) != 3:
                raise InputError(f"{f}: expected {sub}/idXXXXX/VIDEO/NNNNN{ext} under {src / part}")
            wav[utt_id(rel[0], rel[1], Path(rel[2]).stem)] = str(f.resolve())
    return wav


def _trial_names(args, src: Path) -> list[str]:
    if args.trials is not None:
        names = [t.strip().upper() for t in args.trials.split(",") if t.strip()]
        bad = [t for t in names if t not in VOX1_LISTS]
        if bad:
            raise InputError(f"--trials: unknown list {bad[0]!r} (choose among O,E,H)")
        for t in names:
            require(src / VOX1_LISTS[t][int(args.original)], f"Vox1-{t} trial list", "voxceleb1")
        return names
    covered = {"dev": [], "test": ["O"], "all": ["O", "E", "H"]}[args.split]
    return [t for t in covered if (src / VOX1_LISTS[t][int(args.original)]).is_file()]


def read_vox1_trials(path: Path) -> list[tuple[int, str, str, bool]]:
    rows = []
    for n, parts in read_rows(path, 3, 3):
        if parts[0] not in ("0", "1"):
            raise InputError(f"{path}:{n}: expected `1|0 idX/VIDEO/N.wav idY/VIDEO/N.wav`, got {' '.join(parts)!r}")
        rows.append((n, parts[1], parts[2], parts[0] == "1"))
    return rows


def _resolver(wav: dict[str, str]):
    def resolve(entry: str) -> str | None:
        parts = entry.split("/")
        if len(parts) != 3:
            return None
        uid = "-".join((parts[0], parts[1], Path(parts[2]).stem))
        return uid if uid in wav else None

    return resolve


def run(args) -> int:
    corpus, src = args._corpus, args.src
    require(src, "corpus root", corpus)
    wav = scan(corpus, src, args.split)
    utt2spk = {u: u.split("-", 1)[0] for u in wav}
    spec = DirSpec(wav, utt2spk, durations(wav, args.no_durations, args.jobs))
    if corpus == "voxceleb1":
        names = _trial_names(args, src)
        resolve = _resolver(wav)
        for t in names:
            path = src / VOX1_LISTS[t][int(args.original)]
            spec.trials.append(map_trials(f"trials_{t}", path, read_vox1_trials(path), resolve, resolve, args.drop_missing))
        if "O" in names:
            o = spec.trials[names.index("O")]
            spec.trials.append(TrialList("trials", o.rows, o.dropped))
        if not names:
            spec.notes.append("no trial list written (none present for this split)")
        if args.split != "all" and args.trials is None:
            spec.notes.append("Vox1-E and -H pair dev and test speakers: they need --split all")
    write_dirs(corpus, args.dst, {"": spec}, args.overwrite)
    return 0
