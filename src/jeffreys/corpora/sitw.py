"""Speakers in the Wild (SITW): dev and eval data dirs with the core-core (or another) trial key.

SRC/{dev,eval}/audio/*.flac, SRC/{dev,eval}/lists/enroll-core.lst (`MODEL audio/FILE.flac`),
SRC/{dev,eval}/keys/core-core.lst (`MODEL audio/FILE.flac tgt|imp`); --key assist-core|assist-multi reads
lists/enroll-assist.lst (`MODEL audio/FILE.flac START END`, seconds) and enrols each model on that segment only.
DST/dev and DST/eval (with --split dev|eval, DST itself) each hold every audio/*.flac of the
split (utterance id = file name without .flac), `trials` (published order, the model replaced by its enrolment
utterance) and `models` (`MODEL UTT`, the enrolment map); with an assist key also `segments`
(enrolment segments `FILE-STARTMS-ENDMS`, files whole).

The layout and list formats are the ones of the SITW README (dev and eval release, SRI 2016):
an enrolment list per condition, ``enroll-core.lst`` with two columns, ``enroll-assist.lst``
with four (model, file, start and end of the annotated segment where the person of interest
speaks in a multi-speaker file), keys ``{enrol}-{test}.lst`` with ``tgt``/``imp``; Kaldi's
egs/sitw/v1/local/make_sitw.sh reads the core condition the same way. Each model has exactly
one enrolment line; a model listed twice is refused. In the assist conditions the enrolment
is the annotated segment (the rest of the file holds other speakers), cut through a Kaldi
``segments`` file; a segment ending past its file is refused. Enrolment utterances get their
model as speaker; test utterances (and whole files) are their own speaker (SITW does not
label them), as in the Kaldi recipe.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ._common import DirSpec, add_io_arguments, call_with_args, durations, map_trials, preparer, read_rows, require, scan_tree, stem, write_dirs

_LABELS = {"tgt": True, "imp": False, "target": True, "nontarget": False}
KEYS = ("core-core", "core-multi", "assist-core", "assist-multi")
END_SLACK_S = 0.05  # an annotated segment may end this much past the file's header duration


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_io_arguments(parser)
    parser.add_argument("--split", choices=("dev", "eval", "both"), default="both", help="which part (default: both, as DST/dev and DST/eval)")
    parser.add_argument("--key", default="core-core", choices=KEYS, help="trial key (default: core-core)")


def _file_id(entry: str) -> str:
    return Path(entry).stem


def read_enrolment(path: Path, assist: bool) -> tuple[dict[str, tuple[str, float, float] | str], dict[str, int]]:
    """(model -> file id (core) or (file id, start, end) (assist), model -> line), one line a model."""
    out: dict[str, tuple[str, float, float] | str] = {}
    first: dict[str, int] = {}
    for n, parts in read_rows(path, 4 if assist else 2):
        model, utt = parts[0], _file_id(parts[1])
        if model in out:
            raise InputError(f"{path}:{n}: model {model!r} listed twice (first on line {first[model]})")
        if assist:
            try:
                start, end = float(parts[2]), float(parts[3])
            except ValueError:
                raise InputError(f"{path}:{n}: START and END must be seconds, got {parts[2]!r} {parts[3]!r}") from None
            if not 0 <= start < end:
                raise InputError(f"{path}:{n}: segment {start}-{end} s: need 0 <= START < END")
            out[model] = (utt, start, end)
        else:
            out[model] = utt
        first[model] = n
    return out, first


def segment_id(file_id: str, start: float, end: float) -> str:
    return f"{file_id}-{round(start * 1000):07d}-{round(end * 1000):07d}"


def prepare_split(root: Path, key_name: str, *, drop_missing: bool = False, measure_durations: bool = True, jobs: int | None = None) -> DirSpec:
    """One SITW split (``root`` = SRC/dev or SRC/eval) as a data-dir spec."""
    wav = {stem(f.rel[-1], ".flac"): f.path for f in scan_tree(root / "audio", ".flac", "sitw", "SITW audio/*.flac")}
    assist = key_name.startswith("assist")
    enroll_path = require(root / "lists" / f"enroll-{key_name.split('-')[0]}.lst", "SITW enrolment list", "sitw")
    key_path = require(root / "keys" / f"{key_name}.lst", "SITW trial key", "sitw")
    enrol, lines = read_enrolment(enroll_path, assist)
    rows = []
    for n, parts in read_rows(key_path, 3, 3):
        if parts[2] not in _LABELS:
            raise InputError(f"{key_path}:{n}: label must be tgt or imp, got {parts[2]!r}")
        rows.append((n, parts[0], parts[1], _LABELS[parts[2]]))
    unknown = next(((n, m) for n, m, _, _ in rows if m not in enrol), None)
    if unknown:
        raise InputError(f"{key_path}:{unknown[0]}: model {unknown[1]!r} is not in {enroll_path}")

    rec_dur = durations(wav, not measure_durations, jobs)
    segments = None
    model2utt: dict[str, str] = {}
    if assist:
        segments = {u: (u, 0.0, -1.0) for u in wav}  # every file whole, plus the enrolment segments
        for model, (file_id, start, end) in enrol.items():
            if file_id not in wav:
                continue  # absent file: its trials are refused (or dropped) by map_trials below
            if rec_dur is not None and end > rec_dur[file_id] + END_SLACK_S:
                raise InputError(f"{enroll_path}:{lines[model]}: segment ends at {end} s, past the end of {wav[file_id]} ({rec_dur[file_id]:.2f} s)")
            model2utt[model] = segment_id(file_id, start, end)
            segments[model2utt[model]] = (file_id, start, end)
    else:
        model2utt = {m: u for m, u in enrol.items() if u in wav}

    def enroll(model: str) -> str | None:
        return model2utt.get(model)

    def test(entry: str) -> str | None:
        utt = _file_id(entry)
        return utt if utt in wav else None

    trials = map_trials("trials", key_path, rows, enroll, test, drop_missing)
    utts = list(segments) if segments is not None else list(wav)
    owners: dict[str, set[str]] = {}
    for model, utt in model2utt.items():
        owners.setdefault(utt, set()).add(model)
    utt2spk = {u: next(iter(owners[u])) if len(owners.get(u, ())) == 1 else u for u in utts}
    utt2dur = None
    if rec_dur is not None:
        utt2dur = {u: rec_dur[r] if e < 0 else e - s for u, (r, s, e) in segments.items()} if segments is not None else rec_dur
    spec = DirSpec(wav, utt2spk, utt2dur, [trials], {"models": [f"{m} {u}" for m, u in sorted(model2utt.items())]}, segments=segments)
    if assist:
        spec.notes.append(f"{len(model2utt)} enrolment segment(s) from {enroll_path.name} (START/END), files whole otherwise")
    return spec


@preparer("sitw")
def prepare_sitw(
    src: str | Path,
    dst: str | Path,
    *,
    split: str = "both",
    key: str = "core-core",
    drop_missing: bool = False,
    measure_durations: bool = True,
    jobs: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write SITW data dirs at ``dst`` (``dst/dev``, ``dst/eval``; one split: ``dst``); print what was found."""
    if key not in KEYS:
        raise InputError(f"--key: unknown key {key!r} (choose among {', '.join(KEYS)})")
    splits = ("dev", "eval") if split == "both" else (split,)
    dirs = {s: prepare_split(src / s, key, drop_missing=drop_missing, measure_durations=measure_durations, jobs=jobs) for s in splits}
    if split != "both":
        dirs = {"": dirs[split]}
    write_dirs("sitw", dst, dirs, overwrite)
    return dst


def run(args) -> int:
    return call_with_args(prepare_sitw, args)
