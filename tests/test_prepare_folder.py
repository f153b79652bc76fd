"""`jeffreys prepare folder`: a folder of speaker folders or a path,speaker CSV → a valid data
dir, speaker-disjoint dev/test trial lists, and one-line refusals of ambiguous layouts; and
`generate_trials` against a brute-force enumeration of the pairs."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from jeffreys.cli import main
from jeffreys.corpora import prepare_folder
from jeffreys.data.datadir import read_datadir
from jeffreys.data.trials import generate_trials, read_trials
from jeffreys.errors import InputError


def tone(path: Path, seconds: float = 0.3, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    return path


@pytest.fixture
def speakers(tmp_path) -> Path:
    """6 speakers, sessions in sub-folders, wav and flac, a space in a name, junk beside."""
    src = tmp_path / "recordings"
    for k in range(6):
        spk = "ann lee" if k == 0 else f"spk{k}"
        tone(src / spk / "s1" / "a.wav")
        tone(src / spk / "s2" / "a.flac")
        tone(src / spk / "b.wav", 0.5)
    (src / "spk1" / "notes.txt").write_text("not audio")
    (src / "spk1" / "._b.wav").write_bytes(b"AppleDouble junk")
    (src / "empty").mkdir()
    return src


def run(capsys, *argv):
    rc = main(["prepare", "folder", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err.strip()


def test_speaker_folders_make_a_sorted_valid_datadir(speakers, tmp_path, capsys):
    rc, out, _ = run(capsys, speakers, tmp_path / "dst")
    assert rc == 0
    dd = read_datadir(tmp_path / "dst")
    assert set(dd.spk2utt) == {"ann_lee", *(f"spk{k}" for k in range(1, 6))}
    assert dd.spk2utt["spk3"] == ["spk3-b", "spk3-s1-a", "spk3-s2-a"]
    assert dd.wav["ann_lee-s2-a"] == str((speakers / "ann lee" / "s2" / "a.flac").resolve())
    assert dd.utt2dur["spk2-b"] == pytest.approx(0.5, abs=1e-3)
    assert "skipped 2 hidden or non-audio file(s)" in out and "skipped 1 folder(s) without audio: empty" in out
    assert "6 speakers, 18 utterances" in out


def test_trials_split_speakers_between_dev_and_test(speakers, tmp_path):
    prepare_folder(speakers, tmp_path / "dst", trials=20, seed=3)
    dev, test = read_datadir(tmp_path / "dst" / "dev"), read_datadir(tmp_path / "dst" / "test")
    assert not set(dev.spk2utt) & set(test.spk2utt) and len(dev.spk2utt) + len(test.spk2utt) == 6
    for dd in (dev, test):
        tl = read_trials(dd.path / "trials")
        assert len(tl) == 20
        for e, t, y in zip(tl.enroll, tl.test, tl.label):
            assert e in dd.utt2spk and t in dd.utt2spk and y == (dd.utt2spk[e] == dd.utt2spk[t])
    again = prepare_folder(speakers, tmp_path / "again", trials=20, seed=3)
    assert (again / "dev" / "trials").read_bytes() == (tmp_path / "dst" / "dev" / "trials").read_bytes()


def test_csv_layout(speakers, tmp_path, capsys):
    csv = tmp_path / "list.csv"
    rows = ["speaker,path"] + [f"{k % 3},recordings/spk{k}/b.wav" for k in range(1, 6)] + ['"x, y","recordings/ann lee/b.wav"']
    csv.write_text("\n".join(rows) + "\n")
    rc, out, err = run(capsys, csv, tmp_path / "dst")
    assert rc == 0, err
    dd = read_datadir(tmp_path / "dst")
    assert dd.utt2spk["x,_y-recordings-ann_lee-b"] == "x,_y" and dd.utt2spk["1-recordings-spk4-b"] == "1"
    assert "read CSV list.csv" in out


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda s: tone(s / "loose.wav"), "audio directly in"),
        (lambda s: tone(s / "spk1" / "b.mp3"), "gives utterance id 'spk1-b'"),
        (lambda s: tone(s / "spk1" / "x  y.wav"), "cannot be written to wav.scp"),
        (lambda s: (tone(s / "spk_1" / "c.wav"), tone(s / "spk 1" / "c.wav")), "give one speaker id 'spk_1'"),
    ],
)
def test_ambiguous_layouts_are_refused_in_one_line(speakers, tmp_path, capsys, make, match):
    make(speakers)
    rc, _, err = run(capsys, speakers, tmp_path / "dst")
    assert rc == 2 and match in err and "\n" not in err, err
    assert not (tmp_path / "dst").exists()


def test_one_level_too_high_and_other_refusals(tmp_path, capsys):
    tone(tmp_path / "corpus" / "wav" / "a" / "x.wav")
    tone(tmp_path / "corpus" / "wav" / "b" / "x.wav")
    rc, _, err = run(capsys, tmp_path / "corpus", tmp_path / "dst")
    assert rc == 2 and "one speaker folder, 'wav'" in err and "give " in err
    assert run(capsys, tmp_path / "corpus" / "wav", tmp_path / "dst")[0] == 0
    rc, _, err = run(capsys, tmp_path / "corpus" / "wav", tmp_path / "dst2", "--trials", "10")
    assert rc == 2 and "2 speakers cannot make two speaker-disjoint sets" in err
    (tmp_path / "nothing").mkdir()
    assert "no speaker folders" in run(capsys, tmp_path / "nothing", tmp_path / "d3")[2]
    assert "not found" in run(capsys, tmp_path / "missing", tmp_path / "d3")[2]


@pytest.mark.parametrize(
    "text,match",
    [
        ("file,who\na.wav,x\n", "must name the columns 'path' and 'speaker'"),
        ("path,speaker\nmissing.wav,x\n", "list.csv:2: audio file not found"),
        ("path,speaker\na.wav,x\na.wav,y\n", "list.csv:3: a.wav is listed again (first on line 2)"),
        ("path,speaker\na.wav,\n", "list.csv:2: empty path or speaker"),
        ("path,speaker\n", "no rows after the header"),
        ("", "empty CSV"),
    ],
)
def test_bad_csv_files(tmp_path, capsys, text, match):
    tone(tmp_path / "a.wav")
    (tmp_path / "list.csv").write_text(text)
    rc, _, err = run(capsys, tmp_path / "list.csv", tmp_path / "dst")
    assert rc == 2 and match in err and "\n" not in err, err


def test_generate_trials_draws_pairs_without_replacement():
    u2s = {f"s{s}-{u}": f"s{s}" for s in range(6) for u in range(s % 3 + 2)}
    utts = sorted(u2s)
    pairs = list(itertools.combinations(utts, 2))
    targets = {p for p in pairs if u2s[p[0]] == u2s[p[1]]}
    nontargets = set(pairs) - targets
    t = generate_trials(u2s, 40, target_fraction=0.25, seed=1)
    assert t == sorted(t) and len(set(t)) == len(t) == 40
    assert sum(y for *_, y in t) == 10
    for e, v, y in t:
        assert (e, v) in (targets if y else nontargets)
    # more than exist: every pair of its kind, once
    every = generate_trials(u2s, 10_000, seed=2)
    assert {(e, v) for e, v, y in every if y} == targets and {(e, v) for e, v, y in every if not y} == nontargets
    # uniform: over many seeds each target pair is drawn about equally often
    counts = Counter((e, v) for s in range(300) for e, v, y in generate_trials(u2s, 8, target_fraction=0.5, seed=s) if y)
    freq = np.array([counts[p] for p in sorted(targets)]) / 300
    assert set(counts) == targets and np.allclose(freq, 4 / len(targets), atol=0.08)
    for n, match in [(1, "integer >= 2"), (True, "integer >= 2")]:
        with pytest.raises(InputError, match=match):
            generate_trials(u2s, n)
    with pytest.raises(InputError, match="cannot make trials"):
        generate_trials({"a": "x", "b": "y"}, 10)
