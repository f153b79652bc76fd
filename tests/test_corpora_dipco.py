"""`jeffreys prepare dipco`: segments from the JSON transcriptions, benchmark trials as given."""

import json

import replicas

from jeffreys.cli import main
from jeffreys.data.datadir import read_datadir
from jeffreys.data.trials import read_trials


def test_segments_from_transcriptions(tmp_path, capsys):
    src, dst = tmp_path / "dipco", tmp_path / "out"
    utts = replicas.dipco(src)
    assert main(["prepare", "dipco", str(src), str(dst)]) == 0
    d = read_datadir(dst)
    # 4 dev + 2 eval utterances, each on close-talk, U01 and U02 (the replica has no U03-U05)
    assert len(d.utts) == 18 and d.speakers == ["P01", "P05", "P06"]
    u = utts[1]  # S02, P06, close-talk 0.30-0.50 s
    uid = "P06_S02_CT-0000030-0000050"
    rec, start, end = d.segments[uid]
    assert rec == "S02_P06" and d.wav[rec].endswith("audio/dev/S02_P06.wav")
    assert (start, end) == (0.3, 0.5) and u["start_time"]["close-talk"] == "00:00:00.30"
    rec, start, end = d.segments["P06_S02_U02.CH1-0000032-0000052"]
    assert rec == "S02_U02.CH1" and abs(d.utt2dur["P06_S02_U02.CH1-0000032-0000052"] - 0.2) < 1e-6
    assert (dst / "spk2gender").read_text().splitlines() == ["P01 f", "P05 m", "P06 f"]
    assert "no trial list given" in capsys.readouterr().out


def test_trials_split_channel_and_min_dur(tmp_path, capsys):
    src, dst = tmp_path / "dipco", tmp_path / "out"
    replicas.dipco(src)
    lines = [
        "P05_S02_CT-0000010-0000025 P05_S02_U01.CH3-0000051-0000066.wav target",
        "P06_S02_CT-0000030-0000050 audio/P05_S02_U01.CH3-0000051-0000066 nontarget",
    ]
    trials = replicas.write(tmp_path / "dipco_trials.txt", lines)
    argv = ["prepare", "dipco", str(src), str(dst), "--split", "dev", "--channel", "3", "--mics", "close-talk,U01", "--trials", str(trials)]
    assert main(argv) == 0
    t = read_trials(dst / "trials")
    assert t.enroll == ["P05_S02_CT-0000010-0000025", "P06_S02_CT-0000030-0000050"]
    assert t.test == ["P05_S02_U01.CH3-0000051-0000066"] * 2 and t.label.tolist() == [True, False]
    assert read_datadir(dst).speakers == ["P05", "P06"]
    assert "trials: 2 trials (1 target, 1 non-target)" in capsys.readouterr().out
    assert main(["prepare", "dipco", str(src), str(tmp_path / "o2"), "--split", "dev", "--min-dur", "0.18"]) == 0
    assert len(read_datadir(tmp_path / "o2").utts) == 6  # the 0.15 s utterances left out
    assert "6 segment(s) shorter than 0.18 s left out" in capsys.readouterr().out


def test_errors(tmp_path, capsys):
    src, dst = tmp_path / "dipco", tmp_path / "out"
    replicas.dipco(src)
    trials = replicas.write(tmp_path / "t.txt", ["1 P05_S02_CT-0000010-0000025 P05_S02_CT-0000099-0000100"])
    assert main(["prepare", "dipco", str(src), str(dst), "--trials", str(trials)]) == 2
    assert "t.txt:1: P05_S02_CT-0000099-0000100" in capsys.readouterr().err
    (src / "audio/eval/S01_U02.CH1.wav").unlink()
    assert main(["prepare", "dipco", str(src), str(dst)]) == 2
    assert "audio/eval/S01_U02.CH1.wav: not found (DiPCo U02 audio)" in capsys.readouterr().err
    j = src / "transcriptions/dev/S02.json"
    data = json.loads(j.read_text())
    data[0]["start_time"]["U01"] = "57.06"
    j.write_text(json.dumps(data))
    assert main(["prepare", "dipco", str(src), str(dst), "--split", "dev"]) == 2
    assert "S02.json: utterance 0 (U01): time must be hh:mm:ss.ss, got '57.06'" in capsys.readouterr().err
    assert main(["prepare", "dipco", str(src / "audio"), str(dst)]) == 2
    assert "transcriptions/dev: not found" in capsys.readouterr().err
    assert not dst.exists()
