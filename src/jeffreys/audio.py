"""Reading audio: any file a data dir points at, as float32 mono at the model's rate.

* wav/flac/ogg (and the other formats libsndfile knows) are read with soundfile, seeking to
  the requested segment without decoding the rest;
* m4a/aac (VoxCeleb2), mp4, opus, ... and anything soundfile refuses are decoded with PyAV
  (FFmpeg), so VoxCeleb2 needs no conversion step;
* several channels are averaged to mono; a rate different from the requested one is
  converted with soxr (high quality, linear phase).

Samples are float32 in [-1, 1] (int16 PCM divided by 32768). A missing, empty, corrupt or
undecodable file, a directory, a FIFO or device is an :class:`~jeffreys.errors.InputError`
naming the file.

FFmpeg opens local files only, through the ``file`` protocol (a path is made absolute, so a
name like ``concat:a|b`` or ``http://...`` is a file name, never a protocol), and only with
the demuxers of :data:`FFMPEG_FORMATS`: single-file audio and video containers. Playlists
(HLS ``.m3u8``), concat lists, DASH manifests, image sequences, devices and network
inputs, which open further files or URLs, are refused before they open anything. MP3
(``ID3`` or an MPEG frame sync at the start) goes to FFmpeg, not libsndfile, whose mpg123
decoder prints its warnings on stderr.

Kaldi ``wav.scp`` entries may be pipelines (``sox x.sph -t wav - |``). They are only run when
the caller passes ``allow_pipes=True``, and even then *without a shell*: the entry is split
with :mod:`shlex` into plain commands joined by ``|``; shell syntax (``;``, ``&``, ``&&``,
redirections, backticks, ``$(...)``, ``$VAR``, globs) is refused rather than interpreted, so
an entry can never do more than run the listed programs with the listed arguments. The last
command must write a WAV (or any soundfile/FFmpeg format) to stdout.
"""

from __future__ import annotations

import math

import io
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .data.datadir import PIPES_OPT_IN
from .errors import InputError
from .fileio import input_file

# Extensions that go straight to PyAV: libsndfile cannot read them.
_FFMPEG_EXTS = {".m4a", ".aac", ".mp4", ".opus", ".webm", ".mkv", ".wma", ".amr"}
_SHELL_TOKENS = {";", "&", "&&", "||", "<", ">", ">>", "(", ")", "<<", ">&", "&>", ";;"}
PIPE_TIMEOUT_S = 600
# FFmpeg demuxers that read one self-contained file (none opens another file or a URL).
FFMPEG_FORMATS = (
    "wav", "w64", "flac", "ogg", "mp3", "aac", "loas", "mov", "matroska", "asf", "amr", "amrnb", "amrwb",
    "aiff", "caf", "au", "nistsphere", "wv", "avi", "flv", "mpegts", "ac3", "eac3", "dts", "tta", "voc",
)
_AV_OPTIONS = {"protocol_whitelist": "file", "format_whitelist": ",".join(FFMPEG_FORMATS)}


def is_pipe(entry: str) -> bool:
    """Whether a wav.scp value is a Kaldi command pipeline (``... |``)."""
    return entry.rstrip().endswith("|")


def load_audio(
    entry: str | Path,
    sample_rate: int = 16000,
    start: float = 0.0,
    end: float | None = None,
    *,
    allow_pipes: bool = False,
) -> np.ndarray:
    """Samples of ``entry`` (a path or, with ``allow_pipes``, a ``cmd |`` pipeline).

    ``start``/``end`` select a segment in seconds (``end`` None or negative: to the end of the
    file), as in a Kaldi ``segments`` line. Returns a float32 mono array in [-1, 1] at
    ``sample_rate``. Raises InputError naming the file on any failure.
    """
    entry = str(entry)
    if start < 0 or (end is not None and 0 <= end <= start):
        raise InputError(f"{entry}: bad segment {start}..{end} seconds")
    if end is not None and end < 0:
        end = None
    if is_pipe(entry):
        if not allow_pipes:
            raise InputError(f"{entry!r}: is a command pipeline; refusing to run it ({PIPES_OPT_IN})")
        wave, sr = _decode_bytes(run_pipeline(entry), entry)
        wave = _cut(wave, sr, start, end, entry)
    else:
        path = _audio_file(entry)
        if _needs_ffmpeg(path):
            wave, sr = _decode_av(entry, entry)
            wave = _cut(wave, sr, start, end, entry)
        else:
            try:
                wave, sr = _read_soundfile(entry, start, end)
            except (sf.LibsndfileError, RuntimeError, TypeError):
                wave, sr = _decode_av(entry, entry)  # formats libsndfile does not know
                wave = _cut(wave, sr, start, end, entry)
    if wave.shape[0] == 0:
        raise InputError(f"{entry}: no audio samples" + (f" in {start}..{end} s" if start or end else ""))
    if not np.isfinite(wave).all():
        raise InputError(f"{entry}: audio contains NaN or infinite samples")
    if sr != sample_rate:
        wave = soxr.resample(wave, sr, sample_rate, quality="HQ")
    return np.ascontiguousarray(wave, dtype=np.float32)


def _audio_file(entry: str) -> Path:
    """The path of an audio file entry: an existing, non-empty regular file."""
    path = input_file(entry, "audio")
    if path.stat().st_size == 0:
        raise InputError(f"{entry}: empty audio file")
    return path


def _needs_ffmpeg(path: Path) -> bool:
    """Formats libsndfile cannot read (by extension), and MP3 by its first bytes: libsndfile's
    mpg123 decoder writes warnings on stderr for damaged or random data."""
    if path.suffix.lower() in _FFMPEG_EXTS:
        return True
    try:
        with open(path, "rb") as f:
            return _looks_mp3(f.read(3))
    except OSError as e:
        raise InputError(f"{path}: cannot read audio: {e.strerror}") from None


def _looks_mp3(head: bytes) -> bool:
    return head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def open_container(source, name: str):
    """``av.open`` of a local file (a path or a binary file object) under the rules of the
    module docstring; an InputError naming ``name`` when FFmpeg refuses or cannot read it."""
    import av

    if isinstance(source, (str, Path)):
        source = os.path.abspath(source)  # "concat:x" or "http://x" become file names
    try:
        return av.open(source, "r", container_options=dict(_AV_OPTIONS))
    except av.error.ArgumentError:
        raise InputError(
            f"{name}: not an audio file FFmpeg may open here (only single local files are read; "
            "playlists, concat lists, URLs and devices are refused)"
        ) from None
    except (av.error.FFmpegError, ValueError, OSError) as e:
        raise InputError(f"{name}: cannot decode audio ({_av_reason(e)})") from None


def _av_reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or (str(e).splitlines()[0] if str(e) else type(e).__name__)


def _mono(data: np.ndarray) -> np.ndarray:
    data = np.asarray(data, dtype=np.float32)
    return data.mean(axis=1, dtype=np.float32) if data.ndim == 2 else data


def _read_soundfile(path: str, start: float, end: float | None) -> tuple[np.ndarray, int]:
    with sf.SoundFile(path) as f:
        sr = f.samplerate
        a = int(round(start * sr))
        b = f.frames if end is None else min(int(round(end * sr)), f.frames)
        if f.frames == 0:
            raise InputError(f"{path}: no audio samples")
        if a >= f.frames:
            raise InputError(f"{path}: segment start {start} s is past the end ({f.frames / sr:.3f} s)")
        f.seek(a)
        data = f.read(b - a, dtype="float32", always_2d=True)
    return _mono(data), sr


def _decode_bytes(data: bytes, name: str) -> tuple[np.ndarray, int]:
    if not data:
        raise InputError(f"{name}: the pipeline wrote no audio")
    if _looks_mp3(data[:3]):
        return _decode_av(io.BytesIO(data), name)
    try:
        wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        return _mono(wave), sr
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return _decode_av(io.BytesIO(data), name)


def _decode_av(source, name: str) -> tuple[np.ndarray, int]:
    import av

    chunks: list[np.ndarray] = []
    container = open_container(source, name)
    try:
        with container:
            if not container.streams.audio:
                raise InputError(f"{name}: no audio stream")
            stream = container.streams.audio[0]
            sr = stream.codec_context.sample_rate or stream.rate
            # Planar float keeps every channel separate; we downmix ourselves (plain mean,
            # as for soundfile input) instead of FFmpeg's surround-aware mixing.
            resampler = av.AudioResampler(format="fltp")
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
    except InputError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as e:
        raise InputError(f"{name}: cannot decode audio ({_av_reason(e)})") from None
    if not chunks:
        raise InputError(f"{name}: no audio samples")
    if not sr or sr <= 0:
        raise InputError(f"{name}: the audio stream has no sample rate")
    data = np.concatenate(chunks, axis=1)  # [channels, samples]
    return data.mean(axis=0, dtype=np.float32), int(sr)


def _cut(wave: np.ndarray, sr: int, start: float, end: float | None, name: str) -> np.ndarray:
    a = int(round(start * sr))
    if a >= wave.shape[0] and (start > 0):
        raise InputError(f"{name}: segment start {start} s is past the end ({wave.shape[0] / sr:.3f} s)")
    b = wave.shape[0] if end is None else min(int(round(end * sr)), wave.shape[0])
    return wave[a:b]


def split_pipeline(entry: str) -> list[list[str]]:
    """Commands of a ``a x | b y |`` wav.scp entry, refusing anything but plain words and ``|``.

    Quoting works as in a shell (``'...'`` literal, ``"..."`` without ``$``/backticks);
    unquoted shell syntax is an error instead of being silently passed as an argument.
    """
    body = entry.rstrip()[:-1]

    def tokens(posix: bool) -> list[str]:
        lexer = shlex.shlex(body, posix=posix, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            return list(lexer)
        except ValueError as e:
            raise InputError(f"{entry!r}: cannot parse pipeline ({e})") from None

    for raw in tokens(posix=False):  # quotes kept: tell quoted text from shell syntax
        if raw == "|":
            continue
        if raw in _SHELL_TOKENS or set(raw) <= set(";&<>()|"):
            raise InputError(f"{entry!r}: shell syntax {raw!r} is not supported in a pipeline (no shell is used)")
        if len(raw) >= 2 and raw[0] == raw[-1] == "'":
            continue
        unquoted = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
        bad = "`$" if unquoted is not raw else "`$*?[~{"
        if any(c in unquoted for c in bad) or (unquoted is raw and any(q in raw for q in "'\"")):
            raise InputError(f"{entry!r}: {raw!r} needs a shell (variables, globs, backticks, partial quoting); not supported")
    commands: list[list[str]] = [[]]
    for tok in tokens(posix=True):
        if tok == "|":
            commands.append([])
        else:
            commands[-1].append(tok)
    if any(not c for c in commands):
        raise InputError(f"{entry!r}: empty command in pipeline")
    return commands


def run_pipeline(entry: str) -> bytes:
    """Standard output of the ``a x | b y |`` pipeline ``entry``, run without a shell
    (:func:`split_pipeline`); a failing command is an InputError with its last stderr line."""
    commands = split_pipeline(entry)
    procs: list[subprocess.Popen] = []
    # stderr goes to files, not pipes: a chatty command cannot block on a full pipe.
    errs = [tempfile.TemporaryFile() for _ in commands]
    stdin = subprocess.DEVNULL
    out = b""
    try:
        for i, argv in enumerate(commands):
            p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=errs[i])
            if procs:
                procs[-1].stdout.close()  # so the previous command gets SIGPIPE if this one exits
            procs.append(p)
            stdin = p.stdout
        out, _ = procs[-1].communicate(timeout=PIPE_TIMEOUT_S)
        for argv, p, err in zip(commands, procs, errs):
            rc = p.wait(timeout=PIPE_TIMEOUT_S)
            if rc != 0:
                err.seek(0)
                lines = err.read().decode(errors="replace").strip().splitlines()
                tail = f": {lines[-1]}" if lines else ""
                raise InputError(f"{entry!r}: command {argv[0]!r} failed with status {rc}{tail}")
    except FileNotFoundError as e:
        raise InputError(f"{entry!r}: command not found: {e.filename}") from None
    except subprocess.TimeoutExpired:
        raise InputError(f"{entry!r}: pipeline did not finish in {PIPE_TIMEOUT_S} s") from None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for err in errs:
            err.close()
    return out


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header (no full decode) for utt2dur.

    A file without samples, or one neither soundfile nor FFmpeg can open, is an InputError.
    """
    path = str(path)
    seconds = None
    if not _needs_ffmpeg(_audio_file(path)):
        try:
            info = sf.info(path)
            seconds = info.frames / info.samplerate
        except (sf.LibsndfileError, RuntimeError, TypeError):
            pass
    if seconds is None:
        seconds = _av_duration(path)
    if not seconds > 0:
        raise InputError(f"{path}: no audio samples")
    return seconds


def _av_duration(path: str) -> float:
    import av

    try:
        with open_container(path, path) as c:
            if not c.streams.audio:
                raise InputError(f"{path}: no audio stream")
            s = c.streams.audio[0]
            if s.duration is not None and s.time_base is not None:
                return float(s.duration * s.time_base)
            if c.duration is not None:
                return c.duration / av.time_base
    except InputError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as e:
        raise InputError(f"{path}: cannot read audio header ({_av_reason(e)})") from None
    # No duration in the header (raw streams): decode.
    return load_audio(path, sample_rate=16000).shape[0] / 16000


def load_utterance(datadir, utt: str, sample_rate: int = 16000) -> np.ndarray:
    """Samples of utterance ``utt`` of a :class:`~jeffreys.data.datadir.DataDir`.

    Follows ``segments`` when the data dir has them; runs pipelines only when the data dir
    was read with ``allow_pipes=True``.
    """
    try:
        entry, start, end = datadir.source(utt)
    except KeyError:
        raise InputError(f"{datadir.path}: unknown utterance {utt!r}") from None
    try:
        return load_audio(entry, sample_rate, start, end, allow_pipes=getattr(datadir, "allow_pipes", False))
    except InputError as e:
        raise InputError(f"utterance {utt!r} of {datadir.path}: {e}") from None


__all__ = ["FFMPEG_FORMATS", "SILENCE_DBFS", "loudest_frame_dbfs", "audio_duration", "is_pipe", "load_audio", "load_utterance", "open_container",
           "run_pipeline", "split_pipeline"]


SILENCE_DBFS = -60.0  # loudest 25 ms frame below this: no speech to compare


def loudest_frame_dbfs(wave: np.ndarray, sample_rate: int, frame_seconds: float = 0.025) -> float:
    """RMS level (dB re full scale 1.0) of the loudest non-overlapping frame of ``wave``;
    ``-inf`` for digital silence."""
    n = max(1, int(frame_seconds * sample_rate))
    x = np.asarray(wave, dtype=np.float64)
    if len(x) < n:
        x = np.pad(x, (0, n - len(x)))
    frames = x[: len(x) // n * n].reshape(-1, n)
    peak = float(np.max(np.mean(frames * frames, axis=1)))
    return 10 * math.log10(peak) if peak > 0 else -math.inf
