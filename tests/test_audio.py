"""jeffreys.audio: decoding, downmix, resampling, segments, pipelines and error paths."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from jeffreys.audio import audio_duration, load_audio, load_utterance, split_pipeline
from jeffreys.data.datadir import read_datadir, write_datadir
from jeffreys.errors import InputError


def tone(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wave: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spec) * sr / len(wave))


def write_av(path: Path, wave: np.ndarray, sr: int, codec: str, channels: int = 1) -> None:
    """Encode with PyAV (FFmpeg), independently of the decoder under test."""
    import av

    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=sr, layout=layout)
        data = np.tile(wave[None], (channels, 1)).astype(np.float32)
        fmt = stream.codec_context.codec.audio_formats[0].name
        hop = 1024
        for i in range(0, data.shape[1], hop):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, i : i + hop]), format="fltp", layout=layout)
            frame.sample_rate = sr
            frame.pts = i
            for fr in av.AudioResampler(format=fmt, layout=layout, rate=sr).resample(frame) if fmt != "fltp" else [frame]:
                for pkt in stream.encode(fr):
                    out.mux(pkt)
        for pkt in stream.encode(None):
            out.mux(pkt)


def test_wav_int16_scaling_and_exact_samples(tmp_path):
    ints = np.array([0, 16384, -32768, 32767, -1], dtype=np.int16)
    sf.write(tmp_path / "a.wav", np.tile(ints, 100), 16000, subtype="PCM_16")
    out = load_audio(tmp_path / "a.wav")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:5], ints / 32768.0)


def test_stereo_downmix_is_channel_mean(tmp_path):
    left, right = tone(300, 16000, 0.5), tone(700, 16000, 0.5, amp=0.25)
    sf.write(tmp_path / "s.flac", np.stack([left, right], 1), 16000, subtype="PCM_24")
    out = load_audio(tmp_path / "s.flac")
    np.testing.assert_allclose(out, (left + right) / 2, atol=2e-6)


@pytest.mark.parametrize("freq", [440.0, 1234.0, 3500.0])
def test_resample_8k_to_16k_keeps_frequency(tmp_path, freq):
    sf.write(tmp_path / "n.wav", tone(freq, 8000, 2.0), 8000)
    out = load_audio(tmp_path / "n.wav", 16000)
    assert out.shape[0] == 32000
    assert abs(peak_hz(out, 16000) - freq) <= 1.0
    # Nothing appears above the old Nyquist: a real band-limited resampler, not zero-stuffing.
    spec = np.abs(np.fft.rfft(out))
    assert spec[int(4100 * 2):].max() < 1e-3 * spec.max()
    # Amplitude survives (float64 reference sine at 16 kHz).
    ref = tone(freq, 16000, 2.0)
    mid = slice(1000, -1000)
    assert np.max(np.abs(out[mid] - ref[mid])) < 2e-3


def test_resample_down_16k_to_8k(tmp_path):
    sf.write(tmp_path / "w.wav", tone(1000, 16000, 1.0) + tone(6000, 16000, 1.0, 0.3), 16000)
    out = load_audio(tmp_path / "w.wav", 8000)
    assert out.shape[0] == 8000
    assert abs(peak_hz(out, 8000) - 1000) <= 1.0
    spec = np.abs(np.fft.rfft(out))
    # 6 kHz is above the new Nyquist: removed, not aliased to 2 kHz.
    assert spec[1990:2010].max() < 1e-3 * spec.max()


@pytest.mark.parametrize("ext,codec", [("m4a", "aac"), ("ogg", "libopus"), ("mp3", "mp3"), ("flac", "flac")])
def test_compressed_formats_decode(tmp_path, ext, codec):
    import av

    try:
        av.codec.Codec(codec, "w")
    except Exception:
        pytest.skip(f"this FFmpeg has no {codec} encoder")
    path = tmp_path / f"x.{ext}"
    write_av(path, tone(500, 16000, 1.5), 16000, codec, channels=2)
    out = load_audio(path, 16000)
    assert abs(out.shape[0] - 24000) <= 2048  # encoder priming / padding
    assert abs(peak_hz(out, 16000) - 500) <= 1.5
    assert 0.3 < np.sqrt(np.mean(out[2048:-2048] ** 2)) < 0.4  # 0.5/sqrt(2) = 0.354
    assert abs(audio_duration(path) - 1.5) < 0.15


def test_ogg_flac_via_soundfile_and_segment(tmp_path):
    w = tone(250, 16000, 2.0)
    for ext in ("ogg", "flac"):
        p = tmp_path / f"y.{ext}"
        sf.write(p, w, 16000)
        seg = load_audio(p, 16000, start=0.5, end=1.25)
        assert seg.shape[0] == 12000
        if ext == "flac":
            np.testing.assert_allclose(seg, w[8000:20000], atol=1e-4)
        assert audio_duration(p) == pytest.approx(2.0, abs=1e-3)


def test_segment_end_minus_one_means_to_the_end(tmp_path):
    sf.write(tmp_path / "z.wav", tone(100, 16000, 1.0), 16000)
    assert load_audio(tmp_path / "z.wav", start=0.25, end=-1).shape[0] == 12000


@pytest.mark.parametrize("content", [b"", b"RIFF\x00\x00garbage" * 10, bytes(range(256)) * 8])
@pytest.mark.parametrize("ext", ["wav", "flac", "m4a"])
def test_corrupt_or_empty_file_is_input_error_naming_it(tmp_path, content, ext):
    p = tmp_path / f"bad.{ext}"
    p.write_bytes(content)
    with pytest.raises(InputError, match="bad." + ext):
        load_audio(p)


def test_missing_file_and_zero_samples(tmp_path):
    with pytest.raises(InputError, match="nope.wav"):
        load_audio(tmp_path / "nope.wav")
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(InputError, match="zero.wav: no audio samples"):
        load_audio(tmp_path / "zero.wav")
    for name in ("zero.wav", "nope.wav"):
        with pytest.raises(InputError, match=name):
            audio_duration(tmp_path / name)
    (tmp_path / "junk.m4a").write_bytes(b"\x00junk" * 50)
    with pytest.raises(InputError, match="junk.m4a"):
        audio_duration(tmp_path / "junk.m4a")
    sf.write(tmp_path / "short.wav", np.zeros(100, np.float32), 16000)
    with pytest.raises(InputError, match="past the end"):
        load_audio(tmp_path / "short.wav", start=1.0)


def _py_cat(path: Path) -> str:
    """A pipeline that prints a file, built from this interpreter (no shell tools needed)."""
    return f"{sys.executable} -c 'import sys;sys.stdout.buffer.write(open(sys.argv[1],\"rb\").read())' {path} |"


def test_pipe_needs_opt_in_and_runs_without_shell(tmp_path):
    w = tone(440, 16000, 0.5)
    sf.write(tmp_path / "p.wav", w, 16000, subtype="FLOAT")
    entry = _py_cat(tmp_path / "p.wav")
    with pytest.raises(InputError, match="allow_pipes"):
        load_audio(entry)
    np.testing.assert_array_equal(load_audio(entry, allow_pipes=True), w)
    # Two-stage pipeline: the first stage's output is the second's input.
    two = f"{sys.executable} -c 'import sys;sys.stdout.buffer.write(open(sys.argv[1],\"rb\").read())' {tmp_path / 'p.wav'} | " \
          f"{sys.executable} -c 'import sys;sys.stdout.buffer.write(sys.stdin.buffer.read())' |"
    np.testing.assert_array_equal(load_audio(two, allow_pipes=True), w)


@pytest.mark.parametrize(
    "entry",
    [
        "cat a.wav; touch /tmp/pwned |",
        "cat a.wav && rm x |",
        "cat $HOME/a.wav |",
        "cat `whoami`.wav |",
        "cat a.wav > /tmp/x |",
        "cat *.wav |",
        "cat a.wav | |",
        "cat a.wav & |",
        'cat "$(id)" |',
        "cat a'b'c |",
    ],
)
def test_pipe_shell_syntax_refused(tmp_path, entry):
    with pytest.raises(InputError):
        split_pipeline(entry)
    with pytest.raises(InputError):
        load_audio(entry, allow_pipes=True)


def test_pipe_failures_name_entry(tmp_path):
    with pytest.raises(InputError, match="command not found"):
        load_audio("no-such-program-xyz a.wav |", allow_pipes=True)
    with pytest.raises(InputError, match="failed with status 3"):
        load_audio(f"{sys.executable} -c 'import sys; sys.exit(3)' |", allow_pipes=True)
    with pytest.raises(InputError, match="no audio"):
        load_audio(f"{sys.executable} -c 'pass' |", allow_pipes=True)


def test_split_pipeline_quoting():
    assert split_pipeline("sox 'my file.sph' -t wav - | tr a b |") == [["sox", "my file.sph", "-t", "wav", "-"], ["tr", "a", "b"]]


def test_load_utterance_follows_segments_and_pipe_opt_in(tmp_path):
    w = tone(300, 8000, 3.0)
    sf.write(tmp_path / "rec.wav", w, 8000)
    d = write_datadir(
        tmp_path / "d",
        {"rec": str(tmp_path / "rec.wav")},
        {"u1": "s1", "u2": "s1"},
        segments={"u1": ("rec", 0.5, 1.0), "u2": ("rec", 2.0, 3.0)},
    )
    dd = read_datadir(d)
    u1 = load_utterance(dd, "u1", 8000)
    np.testing.assert_allclose(u1, w[4000:8000], atol=1e-4)
    assert load_utterance(dd, "u2", 16000).shape[0] == 16000
    with pytest.raises(InputError, match="'u9'"):
        load_utterance(dd, "u9")
    p = write_datadir(tmp_path / "p", {"u": _py_cat(tmp_path / "rec.wav")}, {"u": "s"})
    assert load_utterance(read_datadir(p, allow_pipes=True), "u", 8000).shape[0] == 24000


def test_ffmpeg_opens_local_files_only_and_no_multi_file_demuxer(tmp_path, monkeypatch):
    w = tone(440, 16000, 0.5)
    sf.write(tmp_path / "a.wav", w, 16000, subtype="FLOAT")
    sf.write(tmp_path / "b.wav", w, 16000, subtype="FLOAT")
    # "concat:a.wav|b.wav" as a path is a file name (here: a copy of a.wav), never FFmpeg's
    # concat protocol, which would read a.wav then b.wav
    monkeypatch.chdir(tmp_path)
    named = tmp_path / "concat:a.wav|b.wav"
    named.write_bytes((tmp_path / "a.wav").read_bytes())
    from jeffreys.audio import _decode_av

    wave, sr = _decode_av(str(named.name), "x")
    assert sr == 16000 and abs(len(wave) - len(w)) < 100  # one file's samples, not two
    # an ffconcat list names two local files: the concat demuxer is not allowed
    (tmp_path / "list.txt").write_text(f"ffconcat version 1.0\nfile '{tmp_path / 'a.wav'}'\nfile '{tmp_path / 'b.wav'}'\n")
    with pytest.raises(InputError, match="list.txt: not an audio file FFmpeg may open here"):
        load_audio(tmp_path / "list.txt")


def test_mp3_goes_to_ffmpeg_not_libsndfile(tmp_path):
    from jeffreys.audio import _needs_ffmpeg

    (tmp_path / "x.wav").write_bytes(b"\xff\xfb\x90\x64" + bytes(100))
    (tmp_path / "y.wav").write_bytes(b"ID3" + bytes(100))
    (tmp_path / "z.wav").write_bytes(b"RIFF" + bytes(100))
    assert _needs_ffmpeg(tmp_path / "x.wav") and _needs_ffmpeg(tmp_path / "y.wav") and not _needs_ffmpeg(tmp_path / "z.wav")


def test_directory_and_device_are_named_as_such(tmp_path):
    with pytest.raises(InputError, match="is a directory, expected an audio file"):
        load_audio(tmp_path)
    with pytest.raises(InputError, match="not a regular file"):
        load_audio("/dev/zero")
