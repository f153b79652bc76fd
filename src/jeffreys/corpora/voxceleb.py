"""VoxCeleb1 (dev/test, trial lists Vox1-O/E/H) and VoxCeleb2 (dev/test, m4a) as one data dir.

voxceleb1: SRC/dev/wav/idXXXXX/VIDEO/NNNNN.wav and SRC/test/wav/... (each zip in its own folder: Kaldi, WeSpeaker),
  or SRC/wav/idXXXXX/VIDEO/NNNNN.wav (both zips unpacked together: SpeechBrain, lhotse, s3prl),
  or SRC/idXXXXX/VIDEO/NNNNN.wav (voxceleb_trainer, which renames wav/ to voxceleb1/); a merged folder is
  split by speaker: the Set column of vox1_meta.csv (SRC/, SRC/meta/ or --meta), else test = id10270-id10309.
  Trial lists (cleaned; --original: the first releases) looked for in --trials-dir, SRC and SRC/meta under their
  published names or the copies Kaldi/WeSpeaker make: O veri_test2.txt, E list_test_all2.txt, H list_test_hard2.txt
  (or one by one: --trials-o/-e/-h PATH), lines `1 idX/VIDEO/N.wav idY/VIDEO/N.wav` or `... target|nontarget`.
  DST gets trials_O, trials_E, trials_H (Kaldi `enroll test target|nontarget`, published order), `trials` = trials_O.
voxceleb2: SRC/dev/aac/idXXXXX/VIDEO/NNNNN.m4a (vox2_dev_aac zip); --split test: SRC/test/aac/... or SRC/aac/...
  (vox2_test_aac.zip unpacked at SRC, as lhotse does); a merged dev+test folder (SRC/idXXXXX/..., voxceleb_trainer)
  is split with vox2_meta.csv. wav.scp points at the m4a files (decoded by PyAV when loaded).
Utterance ids are idXXXXX-VIDEO-NNNNN, speakers idXXXXX.

Layouts relied on: the official zips (``vox1_dev_wav.zip`` and ``vox1_test_wav.zip`` both hold
``wav/``; ``vox2_dev_aac`` holds ``dev/aac/``, ``vox2_test_aac.zip`` holds ``aac/``), unpacked as
Kaldi's egs/voxceleb/v2 and WeSpeaker's ``local/prepare_data.sh`` do (``voxceleb1/{dev,test}``),
as SpeechBrain's VoxCeleb recipe README and lhotse's ``download_voxceleb1`` do (both zips into
one folder: ``wav/``; lhotse's split reads ``vox1_meta.csv``, tab-separated, Set last; its
VoxCeleb2 download leaves ``dev/aac`` and ``aac`` side by side, ``vox2_meta.csv`` comma-separated),
and as voxceleb_trainer's ``dataprep.py --extract`` does (``wav/`` renamed ``voxceleb1/``,
VoxCeleb2 dev and test merged and renamed ``voxceleb2/``). Trial lists: the VGG meta page's
files; Kaldi/s3prl's ``voxceleb1_test_v2.txt`` (the original O list, 37 720 trials);
WeSpeaker's renamed copies ``vox1-O(cleaned).txt`` and their Kaldi-format ``vox1_O_cleaned.kaldi``;
SpeechBrain keeps them in ``meta/``. Vox1-E and -H pair speakers of dev and test, so they
need ``--split all`` (the default).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..data.trials import parse_trial_line
from ..errors import InputError, excerpt, shown
from ..fileio import read_text, split_lines
from ._common import DirSpec, TrialList, add_io_arguments, call_with_args, durations, map_trials, preparer, read_rows, require, scan_tree, stem, utt_id, write_dirs

META_URL = "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/"
# list -> (cleaned names, original names); the first name is the published one.
VOX1_LISTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "O": (("veri_test2.txt", "vox1-O(cleaned).txt", "vox1_O_cleaned.kaldi"), ("veri_test.txt", "voxceleb1_test_v2.txt", "vox1-O.txt", "vox1_O.kaldi")),
    "E": (("list_test_all2.txt", "vox1-E(cleaned).txt", "vox1_E_cleaned.kaldi"), ("list_test_all.txt", "vox1-E.txt", "vox1_E.kaldi")),
    "H": (("list_test_hard2.txt", "vox1-H(cleaned).txt", "vox1_H_cleaned.kaldi"), ("list_test_hard.txt", "vox1-H.txt", "vox1_H.kaldi")),
}
COVERED = {"dev": (), "test": ("O",), "all": ("O", "E", "H")}  # lists a split can map
VOX1_TEST_SPEAKERS = range(10270, 10310)  # id10270 .. id10309: the VoxCeleb1 test split
VOX2_TEST_SPEAKERS = 118  # speakers of vox2_test_aac.zip
_AUDIO = {"voxceleb1": ("wav", ".wav"), "voxceleb2": ("aac", ".m4a")}
_SPEAKER_DIR = re.compile(r"^id\d{5}$")


def add_arguments_for(name: str, parser: argparse.ArgumentParser) -> None:
    add_io_arguments(parser, trials=name == "voxceleb1")
    default = "all" if name == "voxceleb1" else "dev"
    parser.add_argument("--split", choices=("dev", "test", "all"), default=default, help=f"which part (default: {default})")
    meta = "vox1_meta.csv" if name == "voxceleb1" else "vox2_meta.csv"
    parser.add_argument("--meta", type=Path, default=None, help=f"{meta} (speaker -> Set) when it is not in SRC or SRC/meta")
    if name == "voxceleb1":
        parser.add_argument(
            "--trials",
            default=None,
            help="comma-separated lists to write among O,E,H, or `none` (default: every list the split covers; a missing one is an error)",
        )
        parser.add_argument("--trials-dir", type=Path, action="append", default=[], help="a folder holding the trial lists (repeatable; searched before SRC and SRC/meta)")
        for t in VOX1_LISTS:
            parser.add_argument(f"--trials-{t.lower()}", type=Path, default=None, metavar="PATH", help=f"the Vox1-{t} list itself (any file name)")
        parser.add_argument("--original", action="store_true", help="the original (uncleaned) trial lists")
    parser.set_defaults(_corpus=name)


# ------------------------------------------------------------------ audio layouts
def read_meta(path: Path, corpus: str = "voxceleb1") -> dict[str, str]:
    """speaker -> "dev"|"test" from vox1_meta.csv (tab-separated) or vox2_meta.csv (commas);
    the first field is the id, the last the Set, a first line that is not an id a header."""
    out: dict[str, str] = {}
    text = read_text(require(path, "VoxCeleb speaker metadata", corpus), "VoxCeleb speaker metadata")[1]
    for n, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        sep = "," if "," in line else "\t" if "\t" in line else None
        fields = [f.strip() for f in line.split(sep)]
        if n == 1 and not _SPEAKER_DIR.match(fields[0]):
            continue  # header
        if len(fields) < 2 or fields[-1] not in ("dev", "test"):
            raise InputError(f"{shown(path)}:{n}: expected `idXXXXX ... dev|test` (Set last), got {excerpt(line.strip())}")
        out[fields[0]] = fields[-1]
    if not out:
        raise InputError(f"{path}: no speaker rows")
    return out


def _find_meta(corpus: str, src: Path, meta: Path | None) -> Path | None:
    if meta is not None:
        return require(meta, "VoxCeleb speaker metadata", corpus)
    name = "vox1_meta.csv" if corpus == "voxceleb1" else "vox2_meta.csv"
    return next((p for p in (src / name, src / "meta" / name) if p.is_file()), None)


def _scan(root: Path, corpus: str, what: str) -> dict[str, str]:
    """utt id -> absolute path for every file of ``root/idX/VIDEO/N.ext``."""
    sub, ext = _AUDIO[corpus]
    wav: dict[str, str] = {}
    speakers: set[str] = set()  # folder names already checked (1.1M files, 6k speakers)
    for rel, path in scan_tree(root, ext, corpus, what):
        if len(rel) != 3 or (rel[0] not in speakers and not _SPEAKER_DIR.match(rel[0])):
            raise InputError(f"{root.joinpath(*rel)}: expected idXXXXX/VIDEO/NNNNN{ext} under {root}")
        speakers.add(rel[0])
        uid = utt_id(rel[0], rel[1], stem(rel[2], ext))
        if uid in wav:
            raise InputError(f"{root.joinpath(*rel)}: utterance {uid} also at {wav[uid]}")
        wav[uid] = path
    return wav


def _merged_roots(corpus: str, src: Path) -> list[Path]:
    """Folders holding dev and test speakers together (or VoxCeleb2's test zip at SRC)."""
    sub = _AUDIO[corpus][0]
    roots = [src / sub] if (src / sub).is_dir() else []
    if src.is_dir() and any(p.is_dir() and _SPEAKER_DIR.match(p.name) for p in src.iterdir()):
        roots.append(src)
    return roots


def audio_roots(corpus: str, src: Path) -> tuple[dict[str, Path], list[Path]]:
    """({"dev"|"test": folder} of the zips unpacked apart, [merged folders]); none is an error."""
    sub = _AUDIO[corpus][0]
    known = {p: src / p / sub for p in ("dev", "test") if (src / p / sub).is_dir()}
    merged = _merged_roots(corpus, src)
    if not known and not merged:
        n = corpus[-1]
        alt = "SRC/wav/ (zips unpacked together) or SRC/idXXXXX/" if n == "1" else "SRC/aac/ (test zip) or SRC/idXXXXX/ with vox2_meta.csv"
        raise InputError(f"{src}: no VoxCeleb{n} audio: expected SRC/dev/{sub}/ and SRC/test/{sub}/ (each zip in its own folder), {alt}; see `jeffreys prepare {corpus} --help`")
    return known, merged


def scan(corpus: str, src: Path, split: str, meta: Path | None = None) -> tuple[dict[str, str], str]:
    """(utt id -> absolute audio path for the split(s), a note saying which layout was read)."""
    sub, ext = _AUDIO[corpus]
    parts = ("dev", "test") if split == "all" else (split,)
    known, merged = audio_roots(corpus, src)
    wav: dict[str, str] = {}
    notes = []
    for p in parts:
        if p in known:
            wav.update(_scan(known[p], corpus, f"VoxCeleb {p} audio, {sub}/idXXXXX/VIDEO/NNNNN{ext}"))
            notes.append(f"{p}: {known[p]}")
        elif not merged:
            require(src / p / sub, f"VoxCeleb {p} audio, {sub}/idXXXXX/VIDEO/NNNNN{ext}", corpus)
    wanted = [p for p in parts if p not in known]
    if wanted and merged:
        meta_path = _find_meta(corpus, src, meta)
        sets = read_meta(meta_path, corpus) if meta_path else None
        for root in merged:
            found = _scan(root, corpus, f"VoxCeleb audio, idXXXXX/VIDEO/NNNNN{ext}")
            part_of, rule = _speaker_split(corpus, root, src, found, sets, meta_path, split)
            keep = {u: p for u, p in found.items() if part_of is None or part_of(u.split("-", 1)[0]) in wanted}
            clash = next((u for u in keep if u in wav), None)
            if clash:
                raise InputError(f"{keep[clash]}: utterance {clash} also at {wav[clash]}")
            wav.update(keep)
            notes.append(f"{'+'.join(wanted)}: {root} ({rule})")
    if not wav:
        raise InputError(f"{src}: no VoxCeleb {'/'.join(parts)} speaker found in {', '.join(str(r) for r in merged)}")
    return wav, "audio read from " + "; ".join(notes)


def _speaker_split(corpus: str, root: Path, src: Path, found: Mapping[str, str], sets: dict[str, str] | None, meta_path: Path | None, split: str):
    """(speaker -> "dev"|"test", or None to keep every speaker; the rule in words)."""
    speakers = sorted({u.split("-", 1)[0] for u in found})
    if sets is not None:
        absent = next((s for s in speakers if s not in sets), None)
        if absent:
            raise InputError(f"{meta_path}: no row for speaker {absent} (found in {root})")
        return sets.__getitem__, f"split by the Set column of {meta_path}"
    if corpus == "voxceleb1":
        return (lambda spk: "test" if int(spk[2:]) in VOX1_TEST_SPEAKERS else "dev"), "split by speaker: test = id10270-id10309"
    if root == src / "aac":  # what vox2_test_aac.zip unpacks to
        if len(speakers) > VOX2_TEST_SPEAKERS:
            raise InputError(
                f"{root}: {len(speakers)} speakers, the test zip has {VOX2_TEST_SPEAKERS}: dev and test merged here need "
                f"vox2_meta.csv ({META_URL}vox2_meta.csv, in SRC or --meta) to be split"
            )
        return (lambda spk: "test"), "the test zip"
    if split != "all":
        raise InputError(f"{root}: VoxCeleb2 dev and test speakers in one folder: --split {split} needs vox2_meta.csv ({META_URL}vox2_meta.csv, in SRC or --meta)")
    return None, "dev and test together"


# ------------------------------------------------------------------ trial lists
def find_trial_lists(
    src: Path,
    names: Sequence[str],
    *,
    original: bool = False,
    paths: Mapping[str, Path] | None = None,
    dirs: Iterable[Path] = (),
) -> dict[str, Path]:
    """list name -> file: given by path, else the first known name in ``dirs``, SRC, SRC/meta.

    A list that cannot be found is one error naming every missing list, where it was
    looked for and what to download from where."""
    paths = dict(paths or {})
    where = [*dirs, src, src / "meta"]
    found: dict[str, Path] = {}
    missing: list[str] = []
    for t in names:
        if paths.get(t) is not None:
            found[t] = require(paths[t], f"Vox1-{t} trial list", "voxceleb1")
            continue
        hit = next((d / n for d in where for n in VOX1_LISTS[t][int(original)] if (d / n).is_file()), None)
        if hit is None:
            missing.append(t)
        else:
            found[t] = hit
    if missing:
        other = [(t, d / n) for t in missing for d in where for n in VOX1_LISTS[t][1 - int(original)] if (d / n).is_file()]
        hint = ""
        if other:
            kind = "cleaned" if original else "original"
            hint = f"; {other[0][1]} is the {kind} Vox1-{other[0][0]} list ({'drop' if original else 'pass'} --original to use it)"
        lists = ", ".join(f"Vox1-{t}" for t in missing)
        urls = " ".join(META_URL + VOX1_LISTS[t][int(original)][0] for t in missing)
        opts = "/".join(f"--trials-{t.lower()}" for t in missing)
        raise InputError(
            f"no {lists} trial list in {', '.join(str(d) for d in dict.fromkeys(where))}{hint}: download {urls} "
            f"into SRC (or give --trials-dir DIR, {opts} PATH); --trials none prepares the audio only"
        )
    return found


def read_vox1_trials(path: Path) -> list[tuple[int, str, str, bool]]:
    """(line, enroll, test, is_target) of a VoxCeleb (`1 a b`) or Kaldi (`a b target`) list."""
    return [(n, *parse_trial_line(parts, f"{path}:{n}")) for n, parts in read_rows(path, 3, 3)]


def _resolver(wav: Mapping[str, str]):
    def resolve(entry: str) -> str | None:
        parts = entry.split("/")
        if len(parts) == 1:
            return entry if entry in wav else None  # already an utterance id
        if len(parts) != 3:
            return None
        uid = "-".join((parts[0], parts[1], Path(parts[2]).stem))
        return uid if uid in wav else None

    return resolve


def _selected_lists(split: str, trials: Sequence[str] | str | None, paths: Mapping[str, Path]) -> list[str]:
    if isinstance(trials, str):
        trials = [] if trials.strip().lower() == "none" else [t for t in trials.split(",") if t.strip()]
    if trials is None:
        names = list(dict.fromkeys([*COVERED[split], *(t for t in VOX1_LISTS if paths.get(t) is not None)]))
    else:
        names = list(dict.fromkeys(t.strip().upper() for t in trials))
    bad = next((t for t in names if t not in VOX1_LISTS), None)
    if bad:
        raise InputError(f"--trials: unknown list {bad!r} (choose among O,E,H or none)")
    beyond = next((t for t in names if t not in COVERED[split]), None)
    if beyond:
        why = "pairs dev and test speakers" if beyond != "O" else "pairs test speakers"
        need = "all" if beyond != "O" else "test or all"
        raise InputError(f"Vox1-{beyond} {why}: it needs --split {need}, not --split {split}")
    return names


# ------------------------------------------------------------------ preparers
@preparer("voxceleb1")
def prepare_voxceleb1(
    src: str | Path,
    dst: str | Path,
    *,
    split: str = "all",
    trials: Sequence[str] | str | None = None,
    trial_paths: Mapping[str, str | Path] | None = None,
    trials_dirs: Iterable[str | Path] = (),
    original: bool = False,
    meta: str | Path | None = None,
    drop_missing: bool = False,
    measure_durations: bool = True,
    jobs: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the VoxCeleb1 data dir (and its trial lists) at ``dst``; print what was found.

    ``trials``: lists among "O", "E", "H" ("none" or [] for none; default: those the split
    covers, each of which must be found); ``trial_paths`` gives lists by path
    ({"O": path}); ``trials_dirs`` are searched before SRC and SRC/meta."""
    paths = {k.upper(): Path(v) for k, v in (trial_paths or {}).items() if v is not None}
    names = _selected_lists(split, trials, paths)
    audio_roots("voxceleb1", src)  # no audio at all is the first thing to say
    found = find_trial_lists(src, names, original=original, paths=paths, dirs=[Path(d) for d in trials_dirs])
    wav, layout = scan("voxceleb1", src, split, Path(meta) if meta else None)
    spec = DirSpec(wav, {u: u.split("-", 1)[0] for u in wav}, durations(wav, not measure_durations, jobs))
    spec.notes.append(layout)
    resolve = _resolver(wav)
    for t in names:
        spec.trials.append(map_trials(f"trials_{t}", found[t], read_vox1_trials(found[t]), resolve, resolve, drop_missing))
        spec.notes.append(f"trials_{t} from {found[t]}")
    if "O" in names:
        o = spec.trials[names.index("O")]
        spec.trials.append(TrialList("trials", o.rows, o.dropped))
    if not names:
        spec.notes.append("no trial list written" + (" (--trials none)" if split != "dev" else " (dev has none)"))
    if split == "test" and trials is None:
        spec.notes.append("Vox1-E and -H pair dev and test speakers: they need --split all")
    write_dirs("voxceleb1", dst, {"": spec}, overwrite)
    return dst


@preparer("voxceleb2")
def prepare_voxceleb2(
    src: str | Path,
    dst: str | Path,
    *,
    split: str = "dev",
    meta: str | Path | None = None,
    measure_durations: bool = True,
    jobs: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the VoxCeleb2 data dir (m4a paths) at ``dst``; print what was found."""
    if split in ("dev", "all") and not (src / "dev/aac").is_dir() and (src / "aac").is_dir() and _find_meta("voxceleb2", src, Path(meta) if meta else None) is None:
        raise InputError(
            f"{src / 'dev/aac'}: not found (VoxCeleb2 dev, what vox2_dev_aac unpacks to); {src / 'aac'} is what "
            "vox2_test_aac.zip unpacks to: use --split test for it, or give vox2_meta.csv (--meta) if it holds dev too"
        )
    wav, layout = scan("voxceleb2", src, split, Path(meta) if meta else None)
    spec = DirSpec(wav, {u: u.split("-", 1)[0] for u in wav}, durations(wav, not measure_durations, jobs))
    spec.notes.append(layout)
    write_dirs("voxceleb2", dst, {"": spec}, overwrite)
    return dst


def run(args) -> int:
    if args._corpus == "voxceleb1":
        return call_with_args(prepare_voxceleb1, args, trial_paths={t: getattr(args, f"trials_{t.lower()}") for t in VOX1_LISTS},
                              trials_dirs=args.trials_dir)
    return call_with_args(prepare_voxceleb2, args)
