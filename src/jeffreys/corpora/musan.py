"""MUSAN noise, music and babble-speech sources as three data dirs for augmentation.

SRC/music/{fma,fma-western-art,hd-classical,jamendo,rfm}/*.wav (+ ANNOTATIONS: `FILE GENRES Y|N ARTIST`),
SRC/noise/{free-sound,sound-bible}/*.wav, SRC/speech/{librivox,us-gov}/*.wav (sub-folder names
are not checked: every *.wav below music/, noise/, speech/ is taken).
DST/noise, DST/music, DST/speech (--parts), utterance id = file name without .wav; utt2spk maps
each utterance to itself.

Relied on: the layout of the OpenSLR 17 archive as read by Kaldi's make_musan.py. Music
ANNOTATIONS' third column says whether the piece has vocals; --no-vocals leaves those out
(Kaldi's use_vocals=N). MUSAN annotates speech with gender and language but not with speaker
identities, so speech utterances are their own speakers too (as in Kaldi).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ._common import DirSpec, add_io_arguments, call_with_args, durations, preparer, read_rows, scan_tree, stem, write_dirs

PARTS = ("noise", "music", "speech")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_io_arguments(parser, trials=False)
    parser.add_argument("--parts", default="noise,music,speech", help="comma-separated parts (default: noise,music,speech)")
    parser.add_argument("--no-vocals", action="store_true", help="leave out music with vocals (per music/*/ANNOTATIONS)")


def vocals(music: Path) -> dict[str, bool]:
    """file id -> has vocals, from every music/*/ANNOTATIONS."""
    out: dict[str, bool] = {}
    for ann in sorted(music.rglob("ANNOTATIONS")):
        for n, parts in read_rows(ann, 3):
            if parts[2] not in ("Y", "N"):
                raise InputError(f"{ann}:{n}: vocals column must be Y or N, got {parts[2]!r}")
            out[parts[0]] = parts[2] == "Y"
    return out


def prepare_part(src: Path, part: str, *, no_vocals: bool = False, measure_durations: bool = True, jobs: int | None = None) -> DirSpec:
    wav: dict[str, str] = {}
    for rel, path in scan_tree(src / part, ".wav", "musan", f"MUSAN {part}/<source>/*.wav"):
        uid = stem(rel[-1], ".wav")
        if uid in wav:
            raise InputError(f"{(src / part).joinpath(*rel)}: duplicate file id (also {wav[uid]})")
        wav[uid] = path
    notes = []
    if part == "music" and no_vocals:
        has = vocals(src / part)
        unannotated = sum(1 for u in wav if u not in has)
        wav = {u: p for u, p in wav.items() if not has.get(u, False)}
        notes.append(f"music with vocals left out; {unannotated} file(s) without annotation kept")
        if not wav:
            raise InputError(f"{src / part}: every music file has vocals (--no-vocals left none)")
    spec = DirSpec(wav, {u: u for u in wav}, durations(wav, not measure_durations, jobs))
    spec.notes += notes
    return spec


@preparer("musan")
def prepare_musan(
    src: str | Path,
    dst: str | Path,
    *,
    parts: str | list[str] = PARTS,
    no_vocals: bool = False,
    measure_durations: bool = True,
    jobs: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``dst/noise``, ``dst/music``, ``dst/speech`` (those of ``parts``); print what was found."""
    parts = [p.strip() for p in (parts.split(",") if isinstance(parts, str) else parts) if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        raise InputError(f"--parts: unknown part {bad[0] if bad else ''!r} (choose among {','.join(PARTS)})")
    dirs = {p: prepare_part(src, p, no_vocals=no_vocals, measure_durations=measure_durations, jobs=jobs) for p in parts}
    write_dirs("musan", dst, dirs, overwrite)
    return dst


def run(args) -> int:
    return call_with_args(prepare_musan, args)
