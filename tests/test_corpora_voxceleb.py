"""`jeffreys prepare voxceleb1|voxceleb2` on miniature replicas of the official layouts."""

from pathlib import Path

import pytest
import replicas

from jeffreys.cli import main
from jeffreys.data.datadir import read_datadir
from jeffreys.data.trials import read_trials


def vox_id(path: str) -> str:
    spk, video, f = path.split("/")
    return f"{spk}-{video}-{Path(f).stem}"


def test_voxceleb1_all_splits_and_trials(tmp_path, capsys):
    src, dst = tmp_path / "vox1", tmp_path / "out"
    lists = replicas.voxceleb1(src)
    assert main(["prepare", "voxceleb1", str(src), str(dst)]) == 0
    d = read_datadir(dst)
    assert len(d.utts) == 12 and d.speakers == ["id10001", "id10002", "id10270", "id10271"]
    assert d.utt2spk["id10002-0_laIeN-Q44-00002"] == "id10002"
    assert Path(d.wav["id10270-x6uYqmx31kE-00001"]) == (src / "test/wav/id10270/x6uYqmx31kE/00001.wav").resolve()
    assert d.utt2dur is not None and all(abs(v - 0.1) < 1e-6 for v in d.utt2dur.values())
    for name, published in lists.items():
        t = read_trials(dst / f"trials_{name}")
        # the published pairing and order, mapped to utterance ids
        assert list(zip(t.enroll, t.test, t.label.tolist())) == [
            (vox_id(e), vox_id(s), y == "1") for y, e, s in (line.split() for line in published)
        ]
    assert (dst / "trials").read_text() == (dst / "trials_O").read_text()
    out = capsys.readouterr().out
    assert "4 speakers, 12 utterances, 0.00 hours" in out
    assert "trials_O: 3 trials (1 target, 2 non-target)" in out


def test_voxceleb1_test_split_original_lists(tmp_path, capsys):
    src, dst = tmp_path / "vox1", tmp_path / "out"
    replicas.voxceleb1(src)
    assert main(["prepare", "voxceleb1", str(src), str(dst), "--split", "test", "--original", "--no-durations"]) == 0
    d = read_datadir(dst)
    assert d.speakers == ["id10270", "id10271"] and d.utt2dur is None
    assert len(read_trials(dst / "trials_O")) == 4  # the uncleaned list has one more trial
    assert not (dst / "trials_E").exists()
    out = capsys.readouterr().out
    assert "hours not measured" in out and "they need --split all" in out


def test_voxceleb1_absent_file_in_trials(tmp_path, capsys):
    src, dst = tmp_path / "vox1", tmp_path / "out"
    replicas.voxceleb1(src)
    (src / "test/wav/id10270/x6uYqmx31kE/00002.wav").unlink()
    assert main(["prepare", "voxceleb1", str(src), str(dst), "--trials", "O"]) == 2
    err = capsys.readouterr().err
    assert "veri_test2.txt:1: id10270/x6uYqmx31kE/00002.wav" in err and "--drop-missing" in err
    assert not dst.exists() and list(tmp_path.iterdir()) == [src]  # nothing half-written
    assert main(["prepare", "voxceleb1", str(src), str(dst), "--trials", "O", "--drop-missing"]) == 0
    assert len(read_trials(dst / "trials_O")) == 2
    assert "1 dropped (absent audio)" in capsys.readouterr().out


def test_voxceleb1_bad_layouts(tmp_path, capsys):
    src, dst = tmp_path / "vox1", tmp_path / "out"
    replicas.voxceleb1(src)
    (src / "dev/wav").rename(src / "dev/audio")
    assert main(["prepare", "voxceleb1", str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{src / 'dev/wav'}: not found" in err
    (src / "list_test_all2.txt").unlink()
    assert main(["prepare", "voxceleb1", str(src), str(dst), "--trials", "O,E,H"]) == 2
    assert "no Vox1-E trial list in" in capsys.readouterr().err
    assert main(["prepare", "voxceleb1", str(src), str(dst), "--split", "test", "--trials", "E"]) == 2
    assert "Vox1-E pairs dev and test speakers: it needs --split all" in capsys.readouterr().err
    replicas.write(src / "veri_test2.txt", ["2 a/b/c.wav a/b/d.wav"])
    assert main(["prepare", "voxceleb1", str(src), str(dst), "--split", "test"]) == 2
    assert "veri_test2.txt:1: not a trial line" in capsys.readouterr().err
    assert not dst.exists()


def test_existing_dst_needs_overwrite(tmp_path, capsys):
    src, dst = tmp_path / "vox1", tmp_path / "out"
    replicas.voxceleb1(src)
    dst.mkdir()
    (dst / "keep").write_text("x")
    assert main(["prepare", "voxceleb1", str(src), str(dst), "--split", "test"]) == 2
    assert "already exists" in capsys.readouterr().err and (dst / "keep").exists()
    assert main(["prepare", "voxceleb1", str(src), str(dst), "--split", "test", "--overwrite"]) == 0
    assert not (dst / "keep").exists() and (dst / "wav.scp").exists()


def test_voxceleb2_m4a(tmp_path, capsys):
    src, dst = tmp_path / "vox2", tmp_path / "out"
    rels = replicas.voxceleb2(src)
    assert main(["prepare", "voxceleb2", str(src), str(dst)]) == 0
    d = read_datadir(dst)
    assert d.utts == sorted(vox_id(r) for r in rels) and d.speakers == ["id00012", "id00015"]
    assert all(p.endswith(".m4a") for p in d.wav.values())
    # AAC adds encoder priming, so the container is a little longer than the 0.1 s written
    assert all(0.09 < v < 0.2 for v in d.utt2dur.values())
    assert "2 speakers, 3 utterances" in capsys.readouterr().out
    assert main(["prepare", "voxceleb2", str(src), str(tmp_path / "o2"), "--split", "test"]) == 2
    assert f"{src / 'test/aac'}: not found" in capsys.readouterr().err


def test_functions_without_the_cli(tmp_path, capsys):
    """The preparers are plain functions under the CLI: same output, errors raised."""
    from jeffreys.corpora import prepare_voxceleb1, prepare_voxceleb2
    from jeffreys.errors import InputError

    src = tmp_path / "vox1"
    lists = replicas.voxceleb1(src)
    out = prepare_voxceleb1(src, tmp_path / "f", split="test", trials=["O"], measure_durations=False, jobs=1)
    assert out == tmp_path / "f" and read_datadir(out).speakers == ["id10270", "id10271"]
    assert main(["prepare", "voxceleb1", str(src), str(tmp_path / "c"), "--split", "test", "--trials", "O", "--no-durations"]) == 0
    for name in ("wav.scp", "utt2spk", "spk2utt", "trials_O", "trials"):
        assert (tmp_path / "f" / name).read_text() == (tmp_path / "c" / name).read_text()
    moved = replicas.write(tmp_path / "elsewhere/o.txt", lists["O"])
    prepare_voxceleb1(src, tmp_path / "g", split="test", trial_paths={"o": moved}, measure_durations=False)
    assert (tmp_path / "g/trials_O").read_text() == (tmp_path / "c/trials_O").read_text()
    with pytest.raises(InputError, match="needs --split all"):
        prepare_voxceleb1(src, tmp_path / "h", split="test", trials="E")
    v2 = tmp_path / "vox2"
    replicas.voxceleb2(v2)
    assert read_datadir(prepare_voxceleb2(v2, tmp_path / "v2", measure_durations=False)).speakers == ["id00012", "id00015"]
    assert "voxceleb2: wrote" in capsys.readouterr().out


def test_durations_in_parallel_match_serial(tmp_path, monkeypatch):
    from jeffreys.corpora import _common

    src = tmp_path / "vox2"
    replicas.voxceleb2(src)
    assert main(["prepare", "voxceleb2", str(src), str(tmp_path / "serial"), "--jobs", "1"]) == 0
    monkeypatch.setattr(_common, "PARALLEL_ABOVE", 0)
    assert main(["prepare", "voxceleb2", str(src), str(tmp_path / "pool"), "--jobs", "2"]) == 0
    assert (tmp_path / "pool/utt2dur").read_text() == (tmp_path / "serial/utt2dur").read_text()
    (src / "dev/aac/id00012/21Uxsk56VDQ/00001.m4a").write_bytes(b"not audio")
    assert main(["prepare", "voxceleb2", str(src), str(tmp_path / "bad"), "--jobs", "2"]) == 2
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("name", ["voxceleb1", "voxceleb2"])
def test_prepare_help_shows_layout(name, capsys):
    with pytest.raises(SystemExit):
        main(["prepare", name, "--help"])
    out = capsys.readouterr().out
    assert "expected layout:" in out and "idXXXXX/VIDEO/NNNNN" in out
