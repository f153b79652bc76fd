"""Reading audio: any file a data dir points at, as float32 mono at the model's rate.

* wav/flac/ogg (and the other formats libsndfile knows) are read with soundfile, seeking to
  the requested segment without decoding the rest;
* m4a/aac (VoxCeleb2), mp4, opus, ... and anything soundfile refuses are decoded with PyAV
  (FFmpeg), so VoxCeleb2 needs no conversion step;
* several channels are averaged to mono; a rate different from the requested one is
  converted with soxr (high quality, linear phase).

Samples are float32 in [-1, 1] (int16 PCM divided by 32768). A missing, empty, corrupt or
undecodable file is an :class:`~jeffreys.errors.InputError` naming the file.

Kaldi ``wav.scp`` entries may be pipelines (``sox x.sph -t wav - |``). They are only run when
the caller passes ``allow_pipes=True``, and even then *without a shell*: the entry is split
with :mod:`shlex` into plain commands joined by ``|``; shell syntax (``;``, ``&``, ``&&``,
redirections, backticks, ``$(...)``, ``$VAR``, globs) is refused rather than interpreted, so
an entry can never do more than run the listed programs with the listed arguments. The last
command must write a WAV (or any soundfile/FFmpeg format) to stdout.
"""

from __future__ import annotations

import io
import shlex
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import InputError

# Extensions that go straight to PyAV: libsndfile cannot read them.
_FFMPEG_EXTS = {".m4a", ".aac", ".mp4", ".opus", ".webm", ".mkv", ".wma", ".amr"}
_SHELL_TOKENS = {";", "&", "&&", "||", "<", ">", ">>", "(", ")", "<<", ">&", "&>", ";;"}
PIPE_TIMEOUT_S = 600


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
            raise InputError(f"{entry!r}: is a command pipeline; refusing to run it without allow_pipes=True")
        wave, sr = _decode_bytes(_run_pipeline(entry), entry)
        wave = _cut(wave, sr, start, end, entry)
    else:
        path = Path(entry)
        if not path.is_file():
            raise InputError(f"{entry}: no such audio file")
        if path.stat().st_size == 0:
            raise InputError(f"{entry}: empty audio file")
        if path.suffix.lower() in _FFMPEG_EXTS:
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
    try:
        wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        return _mono(wave), sr
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return _decode_av(io.BytesIO(data), name)


def _decode_av(source, name: str) -> tuple[np.ndarray, int]:
    import av

    chunks: list[np.ndarray] = []
    try:
        with av.open(source) as container:
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
        raise InputError(f"{name}: cannot decode audio ({e})") from None
    if not chunks:
        raise InputError(f"{name}: no audio samples")
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


def _run_pipeline(entry: str) -> bytes:
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
    if not Path(path).is_file():
        raise InputError(f"{path}: no such audio file")
    if Path(path).stat().st_size == 0:
        raise InputError(f"{path}: empty audio file")
    seconds = None
    if Path(path).suffix.lower() not in _FFMPEG_EXTS:
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
        with av.open(path) as c:
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
        raise InputError(f"{path}: cannot read audio header ({e})") from None
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


__all__ = ["load_audio", "load_utterance", "audio_duration", "is_pipe", "split_pipeline"]
