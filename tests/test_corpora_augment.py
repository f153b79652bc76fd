"""`jeffreys prepare musan|rirs`: the augmentation sources as data dirs."""

import shutil

import replicas

from jeffreys.cli import main
from jeffreys.data.datadir import read_datadir


def test_musan_three_dirs(tmp_path, capsys):
    src, dst = tmp_path / "musan", tmp_path / "out"
    ids = replicas.musan(src)
    assert main(["prepare", "musan", str(src), str(dst)]) == 0
    for part, utts in ids.items():
        d = read_datadir(dst / part)
        assert d.utts == sorted(utts) and all(d.utt2spk[u] == u for u in utts)
        assert d.wav[utts[0]].endswith(f"{part}/{'/'.join(d.wav[utts[0]].split('/')[-2:])}")
    out = capsys.readouterr().out
    assert f"{dst / 'noise'}: 3 speakers, 3 utterances" in out


def test_musan_no_vocals_and_parts(tmp_path, capsys):
    src, dst = tmp_path / "musan", tmp_path / "out"
    replicas.musan(src)
    assert main(["prepare", "musan", str(src), str(dst), "--parts", "music", "--no-vocals", "--no-durations"]) == 0
    assert read_datadir(dst / "music").utts == ["music-fma-0001", "music-jamendo-0000"]
    assert not (dst / "noise").exists()
    assert "1 file(s) without annotation kept" in capsys.readouterr().out
    assert main(["prepare", "musan", str(src), str(tmp_path / "o2"), "--parts", "noise,babble"]) == 2
    assert "unknown part 'babble'" in capsys.readouterr().err


def test_musan_bad_layout(tmp_path, capsys):
    src, dst = tmp_path / "musan", tmp_path / "out"
    replicas.musan(src)
    shutil.rmtree(src / "speech")
    assert main(["prepare", "musan", str(src), str(dst)]) == 2
    assert f"{src / 'speech'}: not found" in capsys.readouterr().err and not dst.exists()
    replicas.write(src / "music/fma/ANNOTATIONS", ["music-fma-0000 rock maybe x"])
    assert main(["prepare", "musan", str(src), str(dst), "--parts", "music", "--no-vocals"]) == 2
    assert "ANNOTATIONS:1: vocals column must be Y or N" in capsys.readouterr().err


def test_rirs(tmp_path, capsys):
    src, dst = tmp_path / "RIRS_NOISES", tmp_path / "out"
    rooms = replicas.rirs(src)
    assert main(["prepare", "rirs", str(src), str(dst)]) == 0
    d = read_datadir(dst)
    assert d.utt2spk == rooms and d.speakers == ["largeroom", "mediumroom", "smallroom"]
    assert d.wav["mediumroom-Room002-00001"] == str((src / "simulated_rirs/mediumroom/Room002/Room002-00001.wav").resolve())
    assert "3 speakers, 12 utterances" in capsys.readouterr().out
    # ids come from rir_list when it names a file differently
    lst = src / "simulated_rirs/largeroom/rir_list"
    lst.write_text(lst.read_text().replace("--rir-id largeroom-Room001-00001", "--rir-id large-1-1"))
    assert main(["prepare", "rirs", str(src), str(tmp_path / "o1"), "--no-durations"]) == 0
    d = read_datadir(tmp_path / "o1")
    assert "large-1-1" in d.utts and "largeroom-Room001-00001" not in d.utts and len(d.utts) == 12
    assert main(["prepare", "rirs", str(src), str(tmp_path / "o2"), "--real"]) == 0
    d = read_datadir(tmp_path / "o2")
    assert d.spk2utt["real"] == ["RVB2014_type1_rir_largeroom1_near_angla", "air_type1_air_binaural_aula_carolina_1_1_3_0"]


def test_rirs_bad_layout(tmp_path, capsys):
    src, dst = tmp_path / "RIRS_NOISES", tmp_path / "out"
    replicas.rirs(src)
    (src / "simulated_rirs/smallroom/Room001/Room001-00002.wav").unlink()
    assert main(["prepare", "rirs", str(src), str(dst)]) == 2
    assert "smallroom/rir_list:2: smallroom-Room001-00002: file not found" in capsys.readouterr().err
    replicas.audio(src / "simulated_rirs/smallroom/Room001/Room001-00002.wav")
    for room in ("smallroom", "mediumroom", "largeroom"):
        shutil.rmtree(src / "simulated_rirs" / room)
    assert main(["prepare", "rirs", str(src), str(dst)]) == 2
    assert f"{src / 'simulated_rirs'}: none of smallroom, mediumroom, largeroom found" in capsys.readouterr().err
    assert not dst.exists()
