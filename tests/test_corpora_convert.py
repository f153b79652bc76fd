"""`jeffreys prepare convert`: a data dir's m4a decoded once to FLAC/WAV, resumable, atomic."""

import os

import numpy as np
import pytest
import replicas
from prepare_cli import ok, prepare, refused

from jeffreys.audio import load_audio
from jeffreys.corpora import convert
from jeffreys.data.datadir import read_datadir, write_datadir


@pytest.fixture
def vox2(tmp_path):
    src = tmp_path / "vox2"
    replicas.voxceleb2(src)
    data = tmp_path / "data/vox2"
    ok(prepare("voxceleb2", src, data))
    replicas.write(data / "spk2gender", ["id00012 m", "id00015 f"])  # an extra file: copied as is
    return data


@pytest.mark.parametrize("fmt", ["flac", "wav"])
def test_convert_matches_the_decoded_m4a(tmp_path, vox2, fmt):
    dst, audio = tmp_path / f"vox2_{fmt}", tmp_path / "audio"
    out = ok(prepare("convert", vox2, dst, "--audio-dir", audio, "--format", fmt, "--jobs", "1"))
    src, d = read_datadir(vox2), read_datadir(dst)
    assert d.utt2spk == src.utt2spk and (dst / "spk2gender").read_text() == (vox2 / "spk2gender").read_text()
    for utt in d.utts:
        assert d.wav[utt] == str(audio / src.utt2spk[utt] / f"{utt}.{fmt}")
        ref = load_audio(src.wav[utt])  # the m4a through PyAV, float
        got = load_audio(d.wav[utt])
        # 16-bit PCM of the same samples: at most half a quantisation step apart
        assert got.shape == ref.shape and np.max(np.abs(got - np.clip(ref, -1, 32767 / 32768))) <= 0.5 / 32768 + 1e-7
        assert abs(d.utt2dur[utt] - ref.shape[0] / 16000) < 1e-6
    assert "3 files" in out and "3 converted now, 0 already there" in out


def test_convert_resumes_and_pool_matches_serial(tmp_path, vox2, monkeypatch, capsys):
    audio = tmp_path / "audio"
    convert.convert_datadir(vox2, tmp_path / "a", audio, jobs=1)
    first = sorted(audio.rglob("*.flac"))
    stamps = {p: p.stat().st_mtime_ns for p in first}
    first[0].unlink()
    (first[1].parent / f".{first[1].name}.x.partial").write_bytes(b"half a file")  # a killed run's leftover
    convert.convert_datadir(vox2, tmp_path / "a", audio, jobs=1, overwrite=True)
    assert "1 converted now, 2 already there" in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns == stamps[p] for p in first[1:])
    # another rate: nothing is reused
    convert.convert_datadir(vox2, tmp_path / "a8", audio, jobs=1, sample_rate=8000)
    assert "3 converted now, 0 already there" in capsys.readouterr().out
    assert read_datadir(tmp_path / "a8").utt2dur == read_datadir(tmp_path / "a").utt2dur
    convert.convert_datadir(vox2, tmp_path / "a", audio, jobs=1, overwrite=True)
    capsys.readouterr()
    monkeypatch.setattr(convert, "PARALLEL_ABOVE", 0)
    convert.convert_datadir(vox2, tmp_path / "b", tmp_path / "audio2", jobs=2)
    for name in ("utt2spk", "utt2dur"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    for p in first:
        rel = p.relative_to(audio)
        assert (tmp_path / "audio2" / rel).read_bytes() == p.read_bytes()


def test_convert_refusals(tmp_path, vox2):
    dst = tmp_path / "out"
    bad = read_datadir(vox2).wav["id00015-Abc-_de1-00001"]
    os.chmod(bad, 0o644)
    with open(bad, "wb") as f:
        f.write(b"not audio at all")
    err = refused(prepare("convert", vox2, dst, "--audio-dir", tmp_path / "audio", "--jobs", "1"), dst, "Abc-_de1/00001.m4a")
    assert "cannot decode" in err or "no audio" in err
    # the files done before the bad one stay for the re-run; no temporary file is left
    assert not list((tmp_path / "audio").rglob("*.partial"))
    odd = write_datadir(tmp_path / "odd", {"../x": read_datadir(vox2).wav["id00012-21Uxsk56VDQ-00001"]}, {"../x": "s"})
    refused(prepare("convert", odd, dst, "--audio-dir", tmp_path / "audio"), dst, "'../x' cannot name a file")
    refused(prepare("convert", vox2, dst, "--audio-dir", tmp_path / "audio", "--jobs", "0"), dst, "--jobs: must be >= 1")


def test_convert_keeps_segments(tmp_path):
    from jeffreys.audio import load_utterance
    from jeffreys.corpora import prepare_sitw

    replicas.sitw_assist(tmp_path / "sitw")
    src = prepare_sitw(tmp_path / "sitw", tmp_path / "s", split="dev", key="assist-core", jobs=1)
    dst = convert.convert_datadir(src, tmp_path / "f", tmp_path / "audio", fmt="wav", jobs=1)
    a, b = read_datadir(src), read_datadir(dst)
    assert b.segments == a.segments and b.utt2dur == a.utt2dur
    assert (dst / "trials").read_text() == (src / "trials").read_text()
    assert b.wav["mlong"] == str(tmp_path / "audio/_recordings/mlong.wav")
    for utt in ("mlong-0000250-0000900", "tcore"):
        np.testing.assert_allclose(load_utterance(b, utt), load_utterance(a, utt), atol=0.5 / 32768 + 1e-7)
