"""Speakers in the Wild (SITW): dev and eval data dirs with the core-core trials.

SRC/{dev,eval}/audio/*.flac, SRC/{dev,eval}/lists/enroll-core.lst (`MODEL audio/FILE.flac`),
SRC/{dev,eval}/keys/core-core.lst (`MODEL audio/FILE.flac tgt|imp`).
DST/dev and DST/eval (with --split dev|eval, DST itself) each hold every audio/*.flac of the
split (utterance id = file name without .flac), `trials` (core-core, published order, the model replaced by its enrolment
utterance) and `models` (`MODEL UTT`, the enrolment map).

The layout is the one Kaldi's egs/sitw/v1/local/make_sitw.sh reads: enrolment lists give the
model id and the enrolment file in their first two columns (further columns are ignored), keys
give model, test file and ``tgt``/``imp``. In the core condition each model has exactly one
enrolment file, so a trial's enrol side is that utterance; a model listed twice is refused.
Enrolment utterances get their model as speaker; test utterances are their own speaker (SITW
does not label them), as in the Kaldi recipe. ``--key core-multi`` (or assist-*) picks
another key file, with ``lists/enroll-{core,assist}.lst`` to match.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ._common import DirSpec, add_io_arguments, durations, files_under, map_trials, read_rows, require, write_dirs

_LABELS = {"tgt": True, "imp": False, "target": True, "nontarget": False}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_io_arguments(parser)
    parser.add_argument("--split", choices=("dev", "eval", "both"), default="both", help="which part (default: both, as DST/dev and DST/eval)")
    parser.add_argument("--key", default="core-core", choices=("core-core", "core-multi", "assist-core", "assist-multi"), help="trial key (default: core-core)")


def _file_id(entry: str) -> str:
    return Path(entry).stem


def prepare_split(root: Path, key_name: str, args) -> DirSpec:
    flacs = files_under(root / "audio", ".flac", "sitw", "SITW audio/*.flac")
    wav = {f.stem: str(f.resolve()) for f in flacs}
    enroll_path = require(root / "lists" / f"enroll-{key_name.split('-')[0]}.lst", "SITW enrolment list", "sitw")
    key_path = require(root / "keys" / f"{key_name}.lst", "SITW trial key", "sitw")

    model2utt: dict[str, str] = {}
    first: dict[str, int] = {}
    for n, parts in read_rows(enroll_path, 2):
        model, utt = parts[0], _file_id(parts[1])
        if model in model2utt:
            raise InputError(f"{enroll_path}:{n}: model {model!r} listed twice (first on line {first[model]})")
        model2utt[model], first[model] = utt, n
    rows = []
    for n, parts in read_rows(key_path, 3, 3):
        if parts[2] not in _LABELS:
            raise InputError(f"{key_path}:{n}: label must be tgt or imp, got {parts[2]!r}")
        rows.append((n, parts[0], parts[1], _LABELS[parts[2]]))
    unknown = next(((n, m) for n, m, _, _ in rows if m not in model2utt), None)
    if unknown:
        raise InputError(f"{key_path}:{unknown[0]}: model {unknown[1]!r} is not in {enroll_path}")

    def enroll(model: str) -> str | None:
        utt = model2utt[model]
        return utt if utt in wav else None

    def test(entry: str) -> str | None:
        utt = _file_id(entry)
        return utt if utt in wav else None

    trials = map_trials("trials", key_path, rows, enroll, test, args.drop_missing)
    owners: dict[str, set[str]] = {}
    for model, utt in model2utt.items():
        owners.setdefault(utt, set()).add(model)
    utt2spk = {u: next(iter(owners[u])) if len(owners.get(u, ())) == 1 else u for u in wav}
    models = [f"{m} {u}" for m, u in sorted(model2utt.items()) if u in wav]
    return DirSpec(wav, utt2spk, durations(wav, args.no_durations, args.jobs), [trials], {"models": models})


def run(args) -> int:
    require(args.src, "corpus root", "sitw")
    splits = ("dev", "eval") if args.split == "both" else (args.split,)
    dirs = {s: prepare_split(args.src / s, args.key, args) for s in splits}
    if args.split != "both":
        dirs = {"": dirs[args.split]}
    write_dirs("sitw", args.dst, dirs, args.overwrite)
    return 0
