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

Every read is bounded (:class:`AudioLimits`: duration, sample rate, channels, a pipeline's
output): the header is checked before anything is allocated, and the decoding itself counts
what it decodes, block by block, and stops at the limit, since a header can lie (a FLAC
header may promise 2^36 samples; a raw AAC stream's duration is a guess from its first
frames). Blocks are mixed to mono and resampled as they come (soxr's streaming resampler,
which gives the samples of its one-shot call), so a read holds at most its output
(``max_seconds`` at the rate asked for: 461 MB for 2 h at 16 kHz) plus one block, whatever
the file's rate and channel count.

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

import io
import math
import os
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

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


@dataclass(frozen=True)
class AudioLimits:
    """What one read of one file may decode; a file outside is an InputError naming it.

    * ``max_seconds``: decoded audio (a segment's own length when a ``segments`` line and the
      format allow seeking; from the file's start otherwise). Checked from the header before
      anything is allocated, and again while decoding, block by block (a header can lie:
      a FLAC or Ogg of silence holds hours in a few hundred kilobytes). The default, 2 h, passes
      the longest recordings of the corpora read here (SITW, DiPCo sessions: up to about an
      hour) with a margin; the result then takes at most 2 h x 16 kHz x 4 bytes = 461 MB.
    * ``min_rate``..``max_rate``: the file's sample rate and the rate asked for, in Hz. Below
      1 kHz no speech is left; above 384 kHz (the highest rate of studio converters) a rate
      is an error or an attack on the resampler, whose work grows with the ratio.
    * ``max_channels``: channels of the file (64: microphone arrays; a 7.1 film has 8).
    * ``pipe_bytes``: what a ``cmd |`` entry may write: ``max_seconds`` of 48 kHz stereo
      16-bit PCM (1.4 GB at 2 h).

    Defaults here; each is overridden by an environment variable (:data:`ENV`), which every
    worker process and every command a command starts inherits, and the CLI's options
    (``jeffreys --max-audio-seconds S COMMAND ...``) set those variables.
    """

    max_seconds: float = 7200.0
    min_rate: int = 1000
    max_rate: int = 384000
    max_channels: int = 64

    ENV: ClassVar[dict[str, str]] = {
        "max_seconds": "JEFFREYS_MAX_AUDIO_SECONDS",
        "min_rate": "JEFFREYS_MIN_AUDIO_RATE",
        "max_rate": "JEFFREYS_MAX_AUDIO_RATE",
        "max_channels": "JEFFREYS_MAX_AUDIO_CHANNELS",
    }
    HOW: ClassVar[dict[str, str]] = {
        "max_seconds": "raise it with --max-audio-seconds or JEFFREYS_MAX_AUDIO_SECONDS",
        "min_rate": "lower it with --min-audio-rate or JEFFREYS_MIN_AUDIO_RATE",
        "max_rate": "raise it with --max-audio-rate or JEFFREYS_MAX_AUDIO_RATE",
        "max_channels": "raise it with --max-audio-channels or JEFFREYS_MAX_AUDIO_CHANNELS",
    }

    def __post_init__(self) -> None:
        if not (isinstance(self.max_seconds, (int, float)) and 0 < self.max_seconds < math.inf):
            raise InputError(f"audio limit max_seconds must be a finite number > 0, got {self.max_seconds!r}")
        for key in ("min_rate", "max_rate", "max_channels"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"audio limit {key} must be an integer >= 1, got {v!r}")
        if self.min_rate > self.max_rate:
            raise InputError(f"audio limits: min_rate {self.min_rate} is above max_rate {self.max_rate}")

    @classmethod
    def current(cls) -> AudioLimits:
        """The defaults, as overridden by the environment (an InputError names a bad variable)."""
        raw = tuple(os.environ.get(v) for v in cls.ENV.values())
        cached = _LIMITS_CACHE.get(raw)
        if cached is None:
            values: dict[str, Any] = {}
            for (key, var), text in zip(cls.ENV.items(), raw):
                if text is None or not text.strip():
                    continue
                try:
                    values[key] = float(text) if key == "max_seconds" else int(text)
                except ValueError:
                    raise InputError(f"{var}={text!r}: not a {'number' if key == 'max_seconds' else 'whole number'}") from None
            try:
                cached = cls(**values)
            except InputError as e:
                raise InputError(f"{e} (from the environment: {', '.join(v for v in cls.ENV.values() if os.environ.get(v))})") from None
            _LIMITS_CACHE.clear()
            _LIMITS_CACHE[raw] = cached
        return cached

    @property
    def pipe_bytes(self) -> int:
        return int(self.max_seconds * 48000 * 2 * 2) + (1 << 20)

    def check_rate(self, rate, name: str) -> None:
        if not self.min_rate <= rate <= self.max_rate:
            key = "min_rate" if rate < self.min_rate else "max_rate"
            raise InputError(
                f"{name} {rate} Hz is outside {self.min_rate}..{self.max_rate} Hz ({self.HOW[key]})"
            )

    def check_channels(self, channels: int, name: str) -> None:
        if channels > self.max_channels:
            raise InputError(f"{name}: {channels} channels, more than the limit of {self.max_channels} ({self.HOW['max_channels']})")


_LIMITS_CACHE: dict[tuple, AudioLimits] = {}


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
    limits: AudioLimits | None = None,
) -> np.ndarray:
    """Samples of ``entry`` (a path or, with ``allow_pipes``, a ``cmd |`` pipeline).

    ``start``/``end`` select a segment in seconds (``end`` None or negative: to the end of the
    file), as in a Kaldi ``segments`` line. Returns a float32 mono array in [-1, 1] at
    ``sample_rate``. Raises InputError naming the file on any failure, and on a file outside
    ``limits`` (default: :meth:`AudioLimits.current`, see the module docstring).
    """
    entry = str(entry)
    limits = AudioLimits.current() if limits is None else limits
    if start < 0 or (end is not None and 0 <= end <= start):
        raise InputError(f"{entry}: bad segment {start}..{end} seconds")
    if end is not None and end < 0:
        end = None
    limits.check_rate(sample_rate, f"{entry}: the rate asked for")
    seg = _Segment(entry, start, end, sample_rate, limits)
    if is_pipe(entry):
        if not allow_pipes:
            raise InputError(f"{entry!r}: is a command pipeline; refusing to run it ({PIPES_OPT_IN})")
        # spooled to a temporary file, not memory; at most limits.pipe_bytes
        with tempfile.TemporaryFile(prefix="jeffreys-pipe-") as f:
            if not pipeline_into(entry, f, max_bytes=limits.pipe_bytes, what="audio"):
                raise InputError(f"{entry}: the pipeline wrote no audio")
            f.seek(0)
            mp3 = _looks_mp3(f.read(3))
            f.seek(0)
            if mp3:
                return _decode_av(f, entry, seg)[0]
            try:
                return _read_soundfile(f, seg)
            except (sf.LibsndfileError, RuntimeError, TypeError):
                f.seek(0)
                return _decode_av(f, entry, seg)[0]
    path = _audio_file(entry)
    if _needs_ffmpeg(path):
        return _decode_av(entry, entry, seg)[0]
    try:
        return _read_soundfile(entry, seg)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return _decode_av(entry, entry, seg)[0]  # formats libsndfile does not know


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


class _Segment:
    """Where decoded samples go: mono blocks at the file's rate come in (:meth:`add`), the
    ``start``..``end`` cut is kept, resampled to ``target`` block by block (soxr's stream
    gives the samples of its one-shot call), and :meth:`wave` returns the result.

    The limits hold by construction: at most ``max_seconds`` of audio is decoded (an
    InputError as soon as a block would pass it, whatever the header said), so the output
    holds at most ``max_seconds * target`` samples, written into one buffer sized from the
    header (grown by half when a header said too little), and the input is never held whole."""

    def __init__(self, name: str, start: float, end: float | None, target: int | None, limits: AudioLimits):
        self.name, self.start, self.end, self.target, self.limits = name, start, end, target, limits
        self.sr: int | None = None

    def begin(self, sr: int, channels: int, offset: int = 0) -> None:
        """The stream's rate and channel count (checked) and the sample the decoding starts at;
        everything decoded before is dropped (a fallback decoder starts again)."""
        self.limits.check_rate(sr, f"{self.name}: sample rate")
        self.limits.check_channels(channels, self.name)
        self.sr, self.decoded, self.first = int(sr), 0, offset
        self.a = int(round(self.start * sr))
        self.b = None if self.end is None else int(round(self.end * sr))
        self.max_samples = int(self.limits.max_seconds * sr)
        self.buf: np.ndarray | None = None
        self.size = self.kept = 0
        self._stream = None
        if self.target is not None and sr != self.target:
            self._stream = soxr.ResampleStream(sr, self.target, 1, dtype="float32", quality="HQ")

    def check_length(self, samples: int, how: str = "", keep: int | None = None) -> None:
        """Refuse before decoding when ``samples`` to decode (at the file's rate, e.g. from the
        header) pass the limit; else size the output buffer for the ``keep`` of them kept
        (default: all)."""
        if samples > self.max_samples:
            raise InputError(
                f"{self.name}: {samples / self.sr:.0f} s of audio{how}, more than the limit of "
                f"{self.limits.max_seconds:g} s ({AudioLimits.HOW['max_seconds']})"
            )
        keep = samples if keep is None else keep
        if self.buf is None and keep > 0:
            ratio = (self.target or self.sr) / self.sr
            self.buf = np.empty(int(math.ceil(keep * ratio)) + 64, np.float32)

    @property
    def done(self) -> bool:
        return self.b is not None and self.first + self.decoded >= self.b

    def add(self, mono: np.ndarray) -> None:
        n = mono.shape[0]
        pos = self.first + self.decoded
        self.decoded += n
        if self.decoded > self.max_samples:
            self.check_length(self.decoded, " decoded (the header did not say so)")
        lo, hi = max(self.a - pos, 0), n if self.b is None else min(self.b - pos, n)
        if hi <= lo:
            return
        piece = mono[lo:hi]
        if not np.isfinite(piece).all():
            raise InputError(f"{self.name}: audio contains NaN or infinite samples")
        self.kept += piece.shape[0]
        if self._stream is not None:
            piece = self._stream.resample_chunk(piece, last=False)
        self._put(piece)

    def _put(self, piece: np.ndarray) -> None:
        need = self.size + piece.shape[0]
        if self.buf is None or need > self.buf.shape[0]:
            grown = np.empty(max(need, 0 if self.buf is None else self.buf.shape[0] * 3 // 2, 1 << 14), np.float32)
            if self.buf is not None:
                grown[: self.size] = self.buf[: self.size]
            self.buf = grown
        self.buf[self.size:need] = piece
        self.size = need

    def wave(self) -> np.ndarray:
        total = self.first + self.decoded
        if self.start > 0 and self.a >= total and self.sr:
            raise InputError(f"{self.name}: segment start {self.start} s is past the end ({total / self.sr:.3f} s)")
        if self.kept == 0:
            seg = f" in {self.start}..{self.end} s" if self.start or self.end else ""
            raise InputError(f"{self.name}: no audio samples{seg}")
        if self._stream is not None:
            self._put(self._stream.resample_chunk(np.zeros(0, np.float32), last=True))
        buf, self.buf = self.buf, None
        # a view when the buffer fits (a header's size, a few samples over); a copy when a
        # header promised much more than the file held
        return buf[: self.size] if self.size >= buf.shape[0] // 2 else buf[: self.size].copy()


_BLOCK_SAMPLES = 1 << 22  # samples (frames x channels) per soundfile read: 16 MiB of float32
_UNKNOWN_FRAMES = 1 << 62  # libsndfile's frame count of a stream whose length it does not know


def _read_soundfile(source, seg: _Segment) -> np.ndarray:
    """``seg`` of a file libsndfile reads (a path or a binary file object), in blocks."""
    with sf.SoundFile(source) as f:
        sr, frames = f.samplerate, f.frames
        if frames == 0:
            raise InputError(f"{seg.name}: no audio samples")
        a = int(round(seg.start * sr))
        if a >= frames:
            raise InputError(f"{seg.name}: segment start {seg.start} s is past the end ({frames / sr:.3f} s)")
        b = frames if seg.end is None else min(int(round(seg.end * sr)), frames)
        seg.begin(sr, f.channels, offset=a)
        if frames < _UNKNOWN_FRAMES:  # else a stream of unknown length: bounded while decoding
            seg.check_length(b - a, " (from the header)" if seg.end is None else f" in {seg.start}..{seg.end} s")
        if a:
            f.seek(a)
        left, step = b - a, max(_BLOCK_SAMPLES // f.channels, 1)
        while left > 0:
            block = f.read(min(step, left), dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break  # the header promised more than the file holds
            left -= block.shape[0]
            seg.add(block[:, 0] if block.shape[1] == 1 else _mono(block))
    return seg.wave()


def _decode_av(source, name: str, seg: _Segment | None = None) -> tuple[np.ndarray, int]:
    """(samples, rate) of ``seg`` of a file FFmpeg decodes (a path or a binary file object);
    without ``seg``, the whole file at its own rate. The stream's rate, channels and
    duration are checked before decoding; decoding stops at the segment's end and fails as
    soon as it passes the duration limit (a header can lie)."""
    import av

    seg = seg or _Segment(name, 0.0, None, None, AudioLimits.current())
    container = open_container(source, name)
    try:
        with container:
            if not container.streams.audio:
                raise InputError(f"{name}: no audio stream")
            stream = container.streams.audio[0]
            sr = stream.codec_context.sample_rate or stream.rate
            if not sr or sr <= 0:
                raise InputError(f"{name}: the audio stream has no sample rate")
            seg.begin(sr, stream.codec_context.channels or 1)
            seconds = _av_header_seconds(container, stream)
            if seconds is not None:  # decoded from the start, up to the segment's end
                upto = int(seconds * seg.sr) if seg.end is None else min(seg.b, int(seconds * seg.sr))
                seg.check_length(upto, " (from the header)" if seg.end is None else f" up to {seg.end} s",
                                 keep=max(upto - seg.a, 0))
            # Planar float keeps every channel separate; we downmix ourselves (plain mean,
            # as for soundfile input) instead of FFmpeg's surround-aware mixing.
            resampler = av.AudioResampler(format="fltp")
            started = False
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    if not started:  # the decoder's rate is the truth (HE-AAC may differ from the header)
                        started = True
                        if out.sample_rate != seg.sr:
                            seg.begin(out.sample_rate, out.layout.nb_channels)
                    _check_av_frame(out, seg)
                    seg.add(out.to_ndarray().mean(axis=0, dtype=np.float32))
                if seg.done:
                    break
            else:
                for out in resampler.resample(None):
                    _check_av_frame(out, seg)
                    seg.add(out.to_ndarray().mean(axis=0, dtype=np.float32))
    except InputError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as e:
        raise InputError(f"{name}: cannot decode audio ({_av_reason(e)})") from None
    if not started:
        raise InputError(f"{name}: no audio samples")
    return seg.wave(), seg.target or seg.sr


def _check_av_frame(frame, seg: _Segment) -> None:
    if frame.sample_rate != seg.sr:
        raise InputError(f"{seg.name}: the sample rate changes within the stream ({seg.sr} -> {frame.sample_rate} Hz)")
    seg.limits.check_channels(frame.layout.nb_channels, seg.name)


def _av_header_seconds(container, stream) -> float | None:
    """The stream's duration as its header states it (None when it does not)."""
    import av

    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


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


def run_pipeline(entry: str, *, max_bytes: int | None = None, what: str = "output") -> bytes:
    """Standard output of the ``a x | b y |`` pipeline ``entry``, run without a shell
    (:func:`split_pipeline`); a failing command is an InputError with its last stderr line,
    and so is output beyond ``max_bytes`` (the pipeline is then stopped)."""
    out = io.BytesIO()
    pipeline_into(entry, out, max_bytes=max_bytes, what=what)
    return out.getvalue()


def pipeline_into(entry: str, sink: IO[bytes], *, max_bytes: int | None = None, what: str = "output") -> int:
    """:func:`run_pipeline`, writing the output to the binary file ``sink``; returns its size."""
    import selectors

    commands = split_pipeline(entry)
    procs: list[subprocess.Popen] = []
    # stderr goes to files, not pipes: a chatty command cannot block on a full pipe.
    errs = [tempfile.TemporaryFile() for _ in commands]
    stdin = subprocess.DEVNULL
    size = 0
    deadline = time.monotonic() + PIPE_TIMEOUT_S
    try:
        for i, argv in enumerate(commands):
            p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=errs[i])
            if procs:
                procs[-1].stdout.close()  # so the previous command gets SIGPIPE if this one exits
            procs.append(p)
            stdin = p.stdout
        fd = procs[-1].stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(commands[-1], PIPE_TIMEOUT_S)
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise InputError(f"{entry!r}: the pipeline wrote more than {max_bytes} bytes of {what}; stopped")
                sink.write(chunk)
        for argv, p, err in zip(commands, procs, errs):
            rc = p.wait(timeout=max(deadline - time.monotonic(), 0.01))
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
            if p.stdout is not None:
                p.stdout.close()
        for err in errs:
            err.close()
    return size


def audio_duration(path: str | Path, *, limits: AudioLimits | None = None) -> float:
    """Duration in seconds from the file header (no full decode) for utt2dur.

    A file without samples, or one neither soundfile nor FFmpeg can open, is an InputError;
    so is a rate or channel count outside ``limits`` (a long file is not: a ``segments``
    file may cut it into utterances).
    """
    path = str(path)
    limits = AudioLimits.current() if limits is None else limits
    seconds = None
    if not _needs_ffmpeg(_audio_file(path)):
        try:
            info = sf.info(path)
        except (sf.LibsndfileError, RuntimeError, TypeError):
            info = None
        if info is not None:
            limits.check_rate(info.samplerate, f"{path}: sample rate")
            limits.check_channels(info.channels, path)
            seconds = info.frames / info.samplerate
    if seconds is None:
        seconds = _av_duration(path, limits)
    if not seconds > 0:
        raise InputError(f"{path}: no audio samples")
    return seconds


def _av_duration(path: str, limits: AudioLimits) -> float:
    import av

    try:
        with open_container(path, path) as c:
            if not c.streams.audio:
                raise InputError(f"{path}: no audio stream")
            s = c.streams.audio[0]
            sr = s.codec_context.sample_rate or s.rate
            if sr:
                limits.check_rate(sr, f"{path}: sample rate")
            limits.check_channels(s.codec_context.channels or 1, path)
            seconds = _av_header_seconds(c, s)
            if seconds is not None:
                return seconds
    except InputError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as e:
        raise InputError(f"{path}: cannot read audio header ({_av_reason(e)})") from None
    # No duration in the header (raw streams): decode (at most limits.max_seconds).
    wave, sr = _decode_av(path, path, _Segment(path, 0.0, None, None, limits))
    return wave.shape[0] / sr


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


__all__ = ["AudioLimits", "FFMPEG_FORMATS", "SILENCE_DBFS", "loudest_frame_dbfs", "audio_duration", "is_pipe", "load_audio",
           "load_utterance", "open_container", "pipeline_into", "run_pipeline", "split_pipeline"]


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
