"""Convert a prepared data dir's audio once to FLAC or WAV (e.g. VoxCeleb2's m4a), with a new data dir.

SRC is a data dir (wav.scp, utt2spk, ...; as `jeffreys prepare voxceleb2` writes it), not a corpus:
every wav.scp entry is decoded once (PyAV for m4a) at --sample-rate and written as 16-bit FLAC or WAV to
AUDIO_DIR/SPEAKER/ID.flac (AUDIO_DIR/_recordings/ID.flac for the recordings of a segments file);
DST is SRC with wav.scp pointing at the new files and utt2dur measured on them (other files copied).

Why: an m4a crop costs a decode of its whole file every time a training chunk is drawn, several
times the cost of a FLAC/WAV crop read by seeking (docs/benchmarks.md, "Cost per training
sample"). WeSpeaker's VoxCeleb recipe (``local/prepare_data.sh``, stage 3) and voxceleb_trainer
(``dataprep.py --convert``) convert VoxCeleb2 to wav once for this reason; Kaldi decodes each
m4a once, when it computes the features it trains on. The conversion runs over ``--jobs`` processes. Each file is written to a temporary name
in its folder and renamed when complete, so an interrupted run leaves only whole files, and a
re-run skips the files already there (resumes). DST itself is written atomically at the end,
after every file is converted; a failed run leaves no DST (the converted files stay for the
re-run). Ids that are not plain file names (``/``, a leading ``.``) are refused.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio import load_audio
from ..data.datadir import atomic_dir, read_datadir, write_datadir
from ..errors import InputError, shown
from ..fileio import _temp_name, remove_stale_temps
from ._common import call_with_args, default_jobs, parallel_map
from ._progress import current, reported

FORMATS = {"flac": ("FLAC", "PCM_16"), "wav": ("WAV", "PCM_16")}
PARALLEL_ABOVE = 64  # files; below, starting processes costs more than it saves
_OWN = {"wav.scp", "utt2spk", "spk2utt", "utt2dur", "segments"}  # rewritten; other files are copied


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, help="the data dir to convert")
    parser.add_argument("dst", type=Path, help="the new data dir (written atomically once every file is converted)")
    parser.add_argument("--audio-dir", type=Path, required=True, help="where the converted files go (a re-run skips those already there)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="flac", help="output format, 16-bit PCM (default: flac)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="output rate in Hz (default 16000)")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="processes (default: all CPUs)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DST (converted files are reused)")
    parser.add_argument("--allow-pipes", action="store_true", help="run `cmd |` wav.scp entries (without a shell)")


def _plain_name(name: str, where: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise InputError(f"{where}: {name!r} cannot name a file (a `/` or a leading `.`); convert needs plain ids")
    return name


def _write_pcm16(path: Path, wave: np.ndarray, sample_rate: int, fmt: str) -> None:
    """``wave`` (float in [-1, 1]) as 16-bit PCM, written to a temporary sibling then renamed."""
    # int16 = round(x * 32768), clipped: the inverse of the reader's int16 / 32768.
    pcm = np.clip(np.round(wave.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    container, subtype = FORMATS[fmt]
    # fileio's temporary name (.NAME.tmp-HOST-PID-RANDOM): a worker killed by a signal leaves
    # one, which the next conversion of the same file removes (its process is gone)
    remove_stale_temps(path)
    tmp = _temp_name(path)
    try:
        sf.write(tmp, pcm, sample_rate, format=container, subtype=subtype)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _existing_seconds(path: Path, sample_rate: int) -> float | None:
    """Duration of an already converted file at ``sample_rate``, or None when there is none to reuse."""
    if not path.is_file():
        return None
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        return None
    return info.frames / info.samplerate if info.frames > 0 and info.samplerate == sample_rate else None


def convert_one(job: tuple[str, str, str, int, bool]) -> tuple[float, bool]:
    """(seconds, converted now) for one (entry, target, format, rate, allow_pipes)."""
    entry, target, fmt, sample_rate, allow_pipes = job
    path = Path(target)
    seconds = _existing_seconds(path, sample_rate)
    if seconds is not None:
        return seconds, False
    wave = load_audio(entry, sample_rate, allow_pipes=allow_pipes)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_pcm16(path, wave, sample_rate, fmt)
    return wave.shape[0] / sample_rate, True


@reported("convert")
def convert_datadir(
    src: str | Path,
    dst: str | Path,
    audio_dir: str | Path,
    *,
    fmt: str = "flac",
    sample_rate: int = 16000,
    jobs: int | None = None,
    overwrite: bool = False,
    allow_pipes: bool = False,
) -> Path:
    """Convert every wav.scp entry of data dir ``src`` into ``audio_dir`` and write data dir
    ``dst`` pointing at the new files; print what was done. Returns ``dst``."""
    src, dst, audio_dir = Path(src), Path(dst), Path(audio_dir).resolve()
    if fmt not in FORMATS:
        raise InputError(f"--format: {fmt!r} is not one of {', '.join(sorted(FORMATS))}")
    if sample_rate < 1:
        raise InputError(f"--sample-rate: must be positive, got {sample_rate}")
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs: must be >= 1, got {jobs}")
    rep = current()
    with rep.waiting(f"reading {shown(src)}"):
        data = read_datadir(src, allow_pipes=allow_pipes)
    if dst.exists() and not overwrite:
        raise InputError(f"{dst}: already exists (remove it or pass --overwrite)")
    keys = sorted(data.wav)
    folder = {}
    for key in keys:
        _plain_name(key, f"{src / 'wav.scp'}")
        owner = data.utt2spk.get(key) if data.segments is None else None
        folder[key] = _plain_name(owner, f"{src / 'utt2spk'}") if owner else "_recordings"
    targets = {k: audio_dir / folder[k] / f"{k}.{fmt}" for k in keys}
    jobs_list = [(data.wav[k], str(targets[k]), fmt, sample_rate, allow_pipes) for k in keys]
    done = parallel_map(convert_one, jobs_list, jobs or default_jobs(), "convert", parallel_above=PARALLEL_ABOVE)
    seconds = {k: s for k, (s, _) in zip(keys, done)}
    fresh = sum(1 for _, new in done if new)

    wav = {k: str(targets[k]) for k in keys}
    if data.segments is None:
        utt2dur = seconds
    else:
        utt2dur = data.utt2dur
    with atomic_dir(dst, overwrite=overwrite) as tmp:
        with rep.waiting(f"writing {shown(dst)}"):
            write_datadir(tmp, wav, data.utt2spk, segments=data.segments, utt2dur=utt2dur)
            for f in sorted(src.iterdir()):
                if f.is_file() and f.name not in _OWN:
                    shutil.copyfile(f, tmp / f.name)
        with rep.waiting(f"checking {shown(dst)} (every audio file there)"):
            read_datadir(tmp, check_files=True)
    size = sum(targets[k].stat().st_size for k in rep.each(keys, "sizing"))
    rep.end_line()
    hours = sum(seconds.values()) / 3600
    print(
        f"convert: {len(keys)} files, {hours:.2f} hours -> {audio_dir} ({fmt}, {sample_rate} Hz, "
        f"{size / 1e9:.2f} GB; {fresh} converted now, {len(keys) - fresh} already there)\n"
        f"  wrote {dst}: {len(set(data.utt2spk.values()))} speakers, {len(data.utt2spk)} utterances"
    )
    return dst


def run(args) -> int:
    return call_with_args(convert_datadir, args, fmt=args.format)
