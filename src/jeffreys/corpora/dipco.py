"""DiPCo (Dinner Party Corpus) segments, close-talk and far-field, for the far-field SV benchmark.

SRC/audio/{dev,eval}/SNN_PNN.wav (close-talk, one per participant) and SNN_UNN.CHN.wav (far-field
arrays U01-U05, channels CH1-CH7), SRC/transcriptions/{dev,eval}/SNN.json (a list of utterances
with session_id, speaker_id, gender and start_time/end_time objects keyed by `close-talk` and
`U01`..`U05`, times `hh:mm:ss.ss`); the benchmark's trial lists are given with --trials FILE.
DST is one data dir (--split dev|eval|all, default all) with `segments`: utterance id
`PNN_SNN_MIC-START-END` (MIC = CT for close-talk or UNN.CHN; START/END in centiseconds, 7 digits),
speaker PNN, `spk2gender`; each --trials list (Kaldi or VoxCeleb format naming these utterance
ids, or files named after them) becomes trials (one list) or trials_<name>.

Relied on: the DiPCo release (Van Segbroeck et al., 2020) layout and JSON transcriptions as
described with the corpus. The benchmark of Rouvier & Mohammadamini (LREC 2022) draws
enrolment and test segments from these transcriptions (close-talk and far-field); its trial
lists could not be consulted here, so they are read as given, in their order, and must name
segments by the ids above (a directory part and an audio suffix are ignored). Segments
shorter than --min-dur (default 0) are left out; --mics chooses the microphones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..data.trials import parse_trial_line
from ..errors import InputError
from ..fileio import read_text
from ._common import DirSpec, add_io_arguments, call_with_args, map_trials, preparer, read_rows, require, write_dirs
from ._progress import current

ARRAYS = ("U01", "U02", "U03", "U04", "U05")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_io_arguments(parser, durations=False, jobs=False)
    parser.add_argument("--split", choices=("dev", "eval", "all"), default="all", help="sessions to take (default: all)")
    parser.add_argument("--mics", default="close-talk," + ",".join(ARRAYS), help="comma-separated microphones (default: close-talk,U01,...,U05)")
    parser.add_argument("--channel", type=int, default=1, choices=range(1, 8), metavar="1-7", help="far-field array channel (default 1)")
    parser.add_argument("--min-dur", type=float, default=0.0, help="shortest segment kept, seconds (default 0)")
    parser.add_argument("--trials", type=Path, action="append", default=[], help="a benchmark trial list (repeatable)")


def seconds(value: object, where: str) -> float:
    try:
        h, m, s = str(value).split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except ValueError:
        raise InputError(f"{where}: time must be hh:mm:ss.ss, got {value!r}") from None


def read_session(path: Path) -> list[dict]:
    try:
        data = json.loads(read_text(path, "DiPCo transcription")[1])
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of utterances")
    for i, u in enumerate(data):
        missing = [k for k in ("session_id", "speaker_id", "start_time", "end_time") if not isinstance(u, dict) or k not in u]
        if missing:
            raise InputError(f"{path}: utterance {i}: no {missing[0]!r}")
    return data


def collect(src: Path, splits: list[str], mics: list[str], channel: int, min_dur: float):
    wav: dict[str, str] = {}
    segments: dict[str, tuple[str, float, float]] = {}
    utt2spk: dict[str, str] = {}
    spk2gender: dict[str, str] = {}
    short = 0
    for split in splits:
        jdir = require(src / "transcriptions" / split, f"DiPCo {split} transcriptions", "dipco")
        sessions = sorted(jdir.glob("S*.json"))
        if not sessions:
            raise InputError(f"{jdir}: no SNN.json transcription")
        for jpath in current().each(sessions, f"reading the {split} transcriptions", unit="session", check_every=1):
            for i, u in enumerate(read_session(jpath)):
                sess, spk = str(u["session_id"]), str(u["speaker_id"])
                gender = str(u.get("gender", "")).lower()[:1]
                if gender in ("m", "f"):
                    spk2gender[spk] = gender
                for mic in mics:
                    if mic not in u["start_time"] or mic not in u["end_time"]:
                        continue
                    where = f"{jpath}: utterance {i} ({mic})"
                    t0, t1 = seconds(u["start_time"][mic], where), seconds(u["end_time"][mic], where)
                    if t1 <= t0:
                        raise InputError(f"{where}: end {t1} is not after start {t0}")
                    if t1 - t0 < min_dur:
                        short += 1
                        continue
                    rec = f"{sess}_{spk}" if mic == "close-talk" else f"{sess}_{mic}.CH{channel}"
                    if rec not in wav:
                        audio = require(src / "audio" / split / f"{rec}.wav", f"DiPCo {mic} audio", "dipco")
                        wav[rec] = str(audio.resolve())
                    tag = "CT" if mic == "close-talk" else f"{mic}.CH{channel}"
                    uid = f"{spk}_{sess}_{tag}-{round(t0 * 100):07d}-{round(t1 * 100):07d}"
                    if uid in segments:
                        raise InputError(f"{where}: segment {uid} appears twice")
                    segments[uid], utt2spk[uid] = (rec, t0, t1), spk
    if not segments:
        raise InputError(f"{src / 'transcriptions'}: no segment for microphones {','.join(mics)}")
    return wav, segments, utt2spk, spk2gender, short


@preparer("dipco")
def prepare_dipco(
    src: str | Path,
    dst: str | Path,
    *,
    split: str = "all",
    mics: str | list[str] = ("close-talk", *ARRAYS),
    channel: int = 1,
    min_dur: float = 0.0,
    trials: list[str | Path] = (),
    drop_missing: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write the DiPCo segments data dir (and the given trial lists) at ``dst``; print what was found."""
    mics = [m.strip() for m in (mics.split(",") if isinstance(mics, str) else mics) if m.strip()]
    bad = [m for m in mics if m not in ("close-talk", *ARRAYS)]
    if bad or not mics:
        raise InputError(f"--mics: unknown microphone {bad[0] if bad else ''!r} (close-talk, U01..U05)")
    if split not in ("dev", "eval", "all"):
        raise InputError(f"--split: {split!r} is not dev, eval or all")
    if not 1 <= channel <= 7:
        raise InputError(f"--channel: {channel} is not a channel of the arrays (1-7)")
    trials = [Path(t) for t in trials]
    splits = ["dev", "eval"] if split == "all" else [split]
    wav, segments, utt2spk, spk2gender, short = collect(src, splits, mics, channel, min_dur)
    spec = DirSpec(wav, utt2spk, {u: e - s for u, (_, s, e) in segments.items()}, segments=segments)
    spec.extra["spk2gender"] = [f"{s} {g}" for s, g in sorted(spk2gender.items())]
    if short:
        spec.notes.append(f"{short} segment(s) shorter than {min_dur} s left out")

    def resolve(entry: str) -> str | None:
        name = Path(entry).name
        for ext in (".wav", ".flac"):
            name = name.removesuffix(ext)
        return name if name in segments else None

    stems = [p.stem for p in trials]
    if len(set(stems)) != len(stems):
        raise InputError("--trials: two lists share a file name; rename one (DST gets trials_<name>)")
    for path in trials:
        rows = [(n, *parse_trial_line(parts, f"{path}:{n}")) for n, parts in read_rows(require(path, "trial list", "dipco"), 3, 3)]
        name = "trials" if len(trials) == 1 else f"trials_{path.stem}"
        spec.trials.append(map_trials(name, path, rows, resolve, resolve, drop_missing))
    if not trials:
        spec.notes.append("no trial list given (--trials FILE): segments only")
    write_dirs("dipco", dst, {"": spec}, overwrite)
    return dst


def run(args) -> int:
    return call_with_args(prepare_dipco, args)
