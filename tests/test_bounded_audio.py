"""Audio reading is bounded by construction (jeffreys.audio.AudioLimits): duration, sample rate
and channels are checked from the header before anything is allocated, and the duration again
while decoding (a header can lie). Each class of input is generated several ways; within the
limits, the samples are those of an independent reference (whole read, channel mean, soxr's
one-shot resampler)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from jeffreys.audio import AudioLimits, audio_duration, load_audio
from jeffreys.errors import InputError

from test_audio import write_av

SR = 16000
SMALL = AudioLimits(max_seconds=5.0)  # the mechanism is the same at 7200 s; the files stay small


def _flac_with_total(path: Path, seconds: float, total: int, sr: int = SR) -> Path:
    """A FLAC of ``seconds`` of silence whose STREAMINFO claims ``total`` samples."""
    sf.write(path, np.zeros(int(seconds * sr), np.float32), sr, format="FLAC")
    b = bytearray(path.read_bytes())
    assert b[:4] == b"fLaC"
    v = int.from_bytes(b[18:26], "big")  # 20 bits rate, 3 channels, 5 bits/sample, 36 total
    b[18:26] = ((v & ~((1 << 36) - 1)) | total).to_bytes(8, "big")
    path.write_bytes(bytes(b))
    return path


def _wav_header(path: Path, sr: int, channels: int, frames: int, *, data_size: int | None = None) -> Path:
    """A 16-bit PCM WAV written byte by byte (soundfile refuses to write absurd rates)."""
    data = bytes(2 * channels * frames)
    size = len(data) if data_size is None else data_size
    fmt = struct.pack("<HHIIHH", 1, channels, sr, sr * channels * 2 & 0xFFFFFFFF, channels * 2, 16)
    path.write_bytes(b"RIFF" + struct.pack("<I", (36 + size) & 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
                     + fmt + b"data" + struct.pack("<I", size & 0xFFFFFFFF) + data)
    return path


# ----------------------------------------------------------------------------- duration
@pytest.mark.parametrize("claim", [(1 << 36) - 1, 10**9, int(5.5 * SR)], ids=["2^36", "1e9", "just-over"])
def test_flac_header_promising_more_than_the_limit_is_refused_before_decoding(tmp_path, claim):
    p = _flac_with_total(tmp_path / "x.flac", 1.0, claim)
    with pytest.raises(InputError, match=r"x\.flac: \d+ s of audio \(from the header\), more than the limit of 5 s"):
        load_audio(p, limits=SMALL)


@pytest.mark.parametrize("ext,fmt", [("flac", "FLAC"), ("ogg", "OGG"), ("wav", "WAV")])
def test_long_silence_that_compresses_to_nothing_is_refused(tmp_path, ext, fmt):
    p = tmp_path / f"silence.{ext}"
    sf.write(p, np.zeros(SR * 12, np.float32), SR, format=fmt)
    with pytest.raises(InputError, match=f"silence.{ext}: 12 s of audio"):
        load_audio(p, limits=SMALL)
    assert load_audio(p, limits=AudioLimits(max_seconds=13)).shape == (SR * 12,)
    # a segment within the limit of a long file is read (soundfile seeks: only it is decoded)
    assert load_audio(p, SR, 6.0, 9.0, limits=SMALL).shape == (3 * SR,)


def test_stream_of_unknown_length_is_bounded_while_decoding(tmp_path):
    """FLAC with total samples 0 ("unknown"): nothing in the header to check; decoding stops
    at the limit."""
    short = _flac_with_total(tmp_path / "short.flac", 3.0, 0)
    assert load_audio(short, limits=SMALL).shape == (3 * SR,)
    long = _flac_with_total(tmp_path / "long.flac", 9.0, 0)
    with pytest.raises(InputError, match=r"long\.flac: \d+ s of audio decoded \(the header did not say so\)"):
        load_audio(long, limits=SMALL)


def test_wav_whose_sizes_say_more_than_the_file_holds_is_read_to_its_end(tmp_path):
    p = _wav_header(tmp_path / "ff.wav", SR, 1, SR * 2, data_size=0xFFFFFFFF)  # a WAV from a pipe (sox -t wav -)
    assert load_audio(p, limits=SMALL).shape == (2 * SR,)


@pytest.mark.parametrize("codec,ext", [("aac", "aac"), ("aac", "m4a"), ("mp3", "mp3"), ("libopus", "opus")])
def test_ffmpeg_decoding_stops_at_the_limit(tmp_path, codec, ext):
    """Through FFmpeg: a raw AAC stream's duration is guessed from its first frames (loud
    noise, then silence: the guess is 5 s for 62 s); a container's header is checked first."""
    import av

    try:
        av.codec.Codec(codec, "w")
    except Exception:
        pytest.skip(f"this FFmpeg has no {codec} encoder")
    rng = np.random.default_rng(0)
    rate = 48000 if codec == "libopus" else SR
    x = np.concatenate([0.5 * rng.standard_normal(rate * 2), np.zeros(rate * 60)]).astype(np.float32)
    p = tmp_path / f"x.{ext}"
    write_av(p, x, rate, codec)
    with pytest.raises(InputError, match=rf"x\.{ext}: \d+ s of audio"):
        load_audio(p, limits=AudioLimits(max_seconds=30))
    assert abs(load_audio(p, limits=AudioLimits(max_seconds=70)).shape[0] - 62 * SR) < SR // 10
    # a segment near the start decodes only up to its end
    assert load_audio(p, SR, 1.0, 2.0, limits=AudioLimits(max_seconds=30)).shape == (SR,)


def test_pipeline_output_is_bounded(tmp_path):
    """An entry writing forever (here: zeros) is stopped at ``pipe_bytes``."""
    script = tmp_path / "forever.py"
    script.write_text("import sys\nwhile True:\n    sys.stdout.buffer.write(bytes(65536))\n")
    forever = f"{sys.executable} {script} |"
    limits = AudioLimits(max_seconds=1.0)
    with pytest.raises(InputError, match=f"more than {limits.pipe_bytes} bytes of audio"):
        load_audio(forever, allow_pipes=True, limits=limits)


# ----------------------------------------------------------------------------- sample rate
@pytest.mark.parametrize("rate", [1, 8, 999, 384001, 10**7, 2**32 - 1])
def test_sample_rate_outside_the_range_is_refused_from_the_header(tmp_path, rate):
    for name in ("r.wav", "r.mkv"):  # libsndfile, and FFmpeg (the wav demuxer behind an FFmpeg extension)
        p = _wav_header(tmp_path / name, rate, 1, 1000)
        with pytest.raises(InputError, match=rf"{name}(: sample rate|: cannot decode)"):
            load_audio(p)
        if name == "r.wav" and rate < 2**31:  # libsndfile opens it (a rate of 2^32 - 1 it refuses itself)
            with pytest.raises(InputError, match=rf"sample rate {rate} Hz is outside 1000\.\.384000 Hz"):
                load_audio(p)
            with pytest.raises(InputError, match="outside"):
                audio_duration(p)


@pytest.mark.parametrize("target", [0, 500, 10**6, 10**9])
def test_rate_asked_for_outside_the_range_is_refused(tmp_path, target):
    sf.write(tmp_path / "a.wav", np.zeros(SR, np.float32), SR)
    with pytest.raises(InputError, match=f"the rate asked for {target} Hz is outside"):
        load_audio(tmp_path / "a.wav", target)


def test_rates_at_the_edges_resample_as_the_reference(tmp_path):
    rng = np.random.default_rng(3)
    for rate in (1000, 8000, 44100, 192000, 384000):
        x = (0.1 * rng.standard_normal(rate // 2)).astype(np.float32)
        sf.write(tmp_path / "e.wav", x, rate, subtype="FLOAT")
        np.testing.assert_array_equal(load_audio(tmp_path / "e.wav", SR), soxr.resample(x, rate, SR, quality="HQ"))


def test_the_rate_range_can_be_widened(tmp_path):
    p = _wav_header(tmp_path / "slow.wav", 500, 1, 1000)
    with pytest.raises(InputError):
        load_audio(p)
    assert load_audio(p, SR, limits=AudioLimits(min_rate=100)).shape == (32000,)


# ----------------------------------------------------------------------------- channels
@pytest.mark.parametrize("channels", [65, 100, 1024])
def test_too_many_channels_are_refused_from_the_header(tmp_path, channels):
    for name in ("c.wav", "c.mkv"):
        p = _wav_header(tmp_path / name, SR, channels, 100)
        with pytest.raises(InputError, match=rf"{name}: ({channels} channels, more than the limit of 64|cannot decode)"):
            load_audio(p)


def test_sixty_four_channels_are_the_mean(tmp_path):
    rng = np.random.default_rng(4)
    x = (0.1 * rng.standard_normal((SR // 4, 64))).astype(np.float32)
    sf.write(tmp_path / "m.wav", x, SR, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(tmp_path / "m.wav"), x.mean(axis=1, dtype=np.float32))


# ----------------------------------------------------------------------------- within the limits: the reference samples
def test_block_decoding_gives_the_reference_samples(tmp_path):
    """Reading in blocks, cutting and resampling as the blocks come gives exactly what a whole
    read, a channel mean and soxr's one-shot call give: files longer than a block, several
    rates, channel counts and segments."""
    rng = np.random.default_rng(5)
    for rate, channels in ((8000, 1), (22050, 2), (44100, 3), (48000, 2), (16000, 1)):
        x = (0.1 * rng.standard_normal((rate * 6 + 17, channels))).astype(np.float32)
        sf.write(tmp_path / "r.wav", x, rate, subtype="FLOAT")
        mono = x.mean(axis=1, dtype=np.float32)
        for start, end in ((0.0, None), (1.3, 4.7), (2.0, -1)):
            a = int(round(start * rate))
            b = len(mono) if end in (None, -1) else int(round(end * rate))
            want = soxr.resample(mono[a:b], rate, SR, quality="HQ") if rate != SR else mono[a:b]
            np.testing.assert_array_equal(load_audio(tmp_path / "r.wav", SR, start, end), want)


# ----------------------------------------------------------------------------- where the limits come from
def test_limits_come_from_the_environment(tmp_path, monkeypatch):
    sf.write(tmp_path / "a.wav", np.zeros(3 * SR, np.float32), SR)
    monkeypatch.setenv("JEFFREYS_MAX_AUDIO_SECONDS", "2")
    with pytest.raises(InputError, match="3 s of audio.*limit of 2 s.*--max-audio-seconds"):
        load_audio(tmp_path / "a.wav")
    monkeypatch.setenv("JEFFREYS_MAX_AUDIO_SECONDS", "two")
    with pytest.raises(InputError, match="JEFFREYS_MAX_AUDIO_SECONDS='two'"):
        load_audio(tmp_path / "a.wav")
    monkeypatch.setenv("JEFFREYS_MAX_AUDIO_SECONDS", "inf")
    with pytest.raises(InputError, match="finite"):
        load_audio(tmp_path / "a.wav")
    monkeypatch.delenv("JEFFREYS_MAX_AUDIO_SECONDS")
    monkeypatch.setenv("JEFFREYS_MAX_AUDIO_CHANNELS", "0")
    with pytest.raises(InputError, match="max_channels"):
        load_audio(tmp_path / "a.wav")


def test_cli_options_set_the_limits_for_the_command_and_its_workers(tmp_path):
    """``jeffreys --max-audio-seconds S COMMAND``: the option reaches the readers of a command
    (here `prepare folder`, reading durations in worker processes, and `verify`)."""
    for spk in ("alice", "bob"):
        (tmp_path / "src" / spk).mkdir(parents=True)
        sf.write(tmp_path / "src" / spk / "a.wav", np.zeros(SR, np.float32), SR)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for var in AudioLimits.ENV.values():
        env.pop(var, None)
    prepare = [sys.executable, "-m", "jeffreys", "prepare", "folder", str(tmp_path / "src")]
    r = subprocess.run([*prepare[:3], "--max-audio-rate", "8000", *prepare[3:], str(tmp_path / "d1")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr.splitlines() == [
        f"jeffreys prepare: error: {tmp_path / 'src' / 'alice' / 'a.wav'}: sample rate 16000 Hz is outside 1000..8000 Hz "
        "(raise it with --max-audio-rate or JEFFREYS_MAX_AUDIO_RATE)"], r.stderr
    assert not (tmp_path / "d1").exists()
    r = subprocess.run([*prepare, str(tmp_path / "d2")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "jeffreys", "--max-audio-seconds=2", "--help"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "--max-audio-seconds" in r.stdout and "--max-model-bytes" in r.stdout
    r = subprocess.run([sys.executable, "-m", "jeffreys", "--max-audio-seconds"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr.strip() == "jeffreys: error: --max-audio-seconds needs a value"
    code = ("import os, jeffreys.cli as c, jeffreys.audio as a;"
            "a.load_audio = None;"  # not reached: only the option parsing is under test
            "rest = c._limit_options(['--max-audio-seconds', '2', '--max-audio-channels=8', 'extract', 'x']);"
            "l = a.AudioLimits.current(); print(rest, l.max_seconds, l.max_channels, os.environ['JEFFREYS_MAX_AUDIO_SECONDS'])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.stdout.strip() == "['extract', 'x'] 2.0 8 2", r.stderr
