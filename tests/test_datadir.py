"""jeffreys.data.datadir: reading, writing and validate_data_dir.sh-style checks.

Every failure must be one InputError naming the file and, where there is one, the line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jeffreys.data.datadir import atomic_dir, read_datadir, spk2utt_of, write_datadir
from jeffreys.errors import InputError


@pytest.fixture
def audio(tmp_path) -> dict[str, str]:
    files = {}
    for u in ("a1", "a2", "b1"):
        p = tmp_path / f"{u}.wav"
        p.write_bytes(b"RIFF")  # existence is all read_datadir checks
        files[u] = str(p)
    return files


def make(tmp_path: Path, **tables: str) -> Path:
    d = tmp_path / "d"
    d.mkdir(exist_ok=True)
    for name, text in tables.items():
        (d / name).write_text(text)
    return d


def good(audio) -> dict[str, str]:
    return {
        "wav.scp": "".join(f"{u} {audio[u]}\n" for u in ("a1", "a2", "b1")),
        "utt2spk": "a1 A\na2 A\nb1 B\n",
        "spk2utt": "A a1 a2\nB b1\n",
        "utt2dur": "a1 1.5\na2 2\nb1 0.25\n",
    }


def test_roundtrip_write_read(tmp_path, audio):
    d = write_datadir(tmp_path / "w", audio, {"a1": "A", "a2": "A", "b1": "B"}, utt2dur={"a1": 1.0, "a2": 2.0, "b1": 3.0})
    dd = read_datadir(d)
    assert dd.utts == ["a1", "a2", "b1"] and dd.speakers == ["A", "B"]
    assert dd.spk2utt == {"A": ["a1", "a2"], "B": ["b1"]}
    assert (d / "spk2utt").read_text() == "A a1 a2\nB b1\n"
    assert dd.utt2dur == {"a1": 1.0, "a2": 2.0, "b1": 3.0}
    assert dd.source("a2") == (audio["a2"], 0.0, None)
    assert not dd.allow_pipes


def test_good_dir_and_missing_spk2utt_is_derived(tmp_path, audio):
    t = good(audio)
    del t["spk2utt"]
    dd = read_datadir(make(tmp_path, **t))
    assert dd.spk2utt == spk2utt_of(dd.utt2spk) == {"A": ["a1", "a2"], "B": ["b1"]}


def bad_cases(audio):
    wav = good(audio)["wav.scp"].splitlines()
    return [
        ("dup-wav", {"wav.scp": "\n".join([wav[0], wav[0], wav[2]]) + "\n"}, r"wav.scp:2: duplicate id 'a1' \(first on line 1\)"),
        ("unsorted-wav", {"wav.scp": "\n".join([wav[1], wav[0], wav[2]]) + "\n"}, r"wav.scp:2: not sorted: 'a1' after 'a2'"),
        ("dup-utt2spk", {"utt2spk": "a1 A\na1 A\nb1 B\n"}, r"utt2spk:2: duplicate utterance 'a1'"),
        ("unsorted-utt2spk", {"utt2spk": "a2 A\na1 A\nb1 B\n"}, r"utt2spk:2: not sorted"),
        ("utt-without-speaker", {"utt2spk": "a1 A\nb1 B\n", "spk2utt": "A a1\nB b1\n", "utt2dur": "a1 1\nb1 1\n"}, r"wav.scp:2: utterance 'a2' has no speaker"),
        ("speaker-without-audio", {"utt2spk": "a1 A\na2 A\nb1 B\nc1 C\n"}, r"utt2spk:4: utterance 'c1' is not in wav.scp"),
        ("utt2spk-3-fields", {"utt2spk": "a1 A\na2 A x\nb1 B\n"}, r"utt2spk:2: expected 2 fields, got 3"),
        ("blank-line", {"utt2spk": "a1 A\n\nb1 B\n"}, r"utt2spk:2: expected 2 fields, got 0"),
        ("missing-file", {"wav.scp": f"a1 {audio['a1']}\na2 /no/such.wav\nb1 {audio['b1']}\n"}, r"wav.scp:2: audio file of 'a2' not found: /no/such.wav"),
        ("spk2utt-wrong-utt", {"spk2utt": "A a1 b1\nB b1\n"}, r"spk2utt:1: speaker 'A' does not match utt2spk: utterance 'b1'"),
        ("spk2utt-missing-utt", {"spk2utt": "A a1\nB b1\n"}, r"spk2utt:1: .*utterance 'a2' of utt2spk is missing"),
        ("spk2utt-unsorted-utts", {"spk2utt": "A a2 a1\nB b1\n"}, r"spk2utt:1: .*not sorted"),
        ("spk2utt-missing-speaker", {"spk2utt": "A a1 a2\n"}, r"spk2utt: speaker 'B' of utt2spk is missing"),
        ("spk2utt-unknown-speaker", {"spk2utt": "A a1 a2\nB b1\nC b1\n"}, r"spk2utt:3: speaker 'C' is not in utt2spk"),
        ("spk2utt-unsorted", {"spk2utt": "B b1\nA a1 a2\n"}, r"spk2utt:2: not sorted"),
        ("utt2dur-nan", {"utt2dur": "a1 1\na2 x\nb1 1\n"}, r"utt2dur:2: duration must be a number"),
        ("utt2dur-zero", {"utt2dur": "a1 1\na2 0\nb1 1\n"}, r"utt2dur:2: duration of 'a2' must be positive"),
        ("utt2dur-unknown", {"utt2dur": "a1 1\na2 1\nb1 1\nz 1\n"}, r"utt2dur:4: unknown utterance 'z'"),
        ("utt2dur-missing", {"utt2dur": "a1 1\nb1 1\n"}, r"utt2dur: utterance 'a2' \(utt2spk line 2\) has no duration"),
        ("empty-wav", {"wav.scp": ""}, r"wav.scp: empty"),
        ("not-utf8", {"utt2spk": None}, r"utt2spk:1: not UTF-8"),
        ("pipe-refused", {"wav.scp": f"a1 {audio['a1']}\na2 sox x.sph -t wav - |\nb1 {audio['b1']}\n"}, r"wav.scp:2: 'a2' is a command pipeline .*allow_pipes"),
    ]


@pytest.mark.parametrize("case", range(22))
def test_validation_errors_name_file_and_line(tmp_path, audio, case):
    name, changes, pattern = bad_cases(audio)[case]
    t = good(audio)
    t.update({k: v for k, v in changes.items() if v is not None})
    d = make(tmp_path, **t)
    if name == "not-utf8":
        (d / "utt2spk").write_bytes(b"a1 A\xff\n")
    with pytest.raises(InputError, match=pattern) as e:
        read_datadir(d)
    assert str(d) in str(e.value), name
    assert "\n" not in str(e.value)


def test_case_count_matches():
    assert len(bad_cases({"a1": "x", "a2": "y", "b1": "z"})) == 22


def test_pipes_opt_in_and_check_files_off(tmp_path, audio):
    t = good(audio)
    t["wav.scp"] = f"a1 {audio['a1']}\na2 sox x.sph -t wav - |\nb1 /not/here.wav\n"
    d = make(tmp_path, **t)
    dd = read_datadir(d, allow_pipes=True, check_files=False)
    assert dd.wav["a2"] == "sox x.sph -t wav - |" and dd.allow_pipes


def seg_dir(tmp_path, audio, segments: str, wav: str | None = None) -> Path:
    return make(
        tmp_path,
        **{
            "wav.scp": wav if wav is not None else f"r1 {audio['a1']}\nr2 {audio['b1']}\n",
            "segments": segments,
            "utt2spk": "a1 A\na2 A\nb1 B\n",
        },
    )


def test_segments(tmp_path, audio):
    d = seg_dir(tmp_path, audio, "a1 r1 0.0 1.5\na2 r1 1.5 -1\nb1 r2 0.25 2\n")
    dd = read_datadir(d)
    assert dd.source("a1") == (audio["a1"], 0.0, 1.5)
    assert dd.source("a2") == (audio["a1"], 1.5, None)  # -1: to the end
    assert dd.source("b1") == (audio["b1"], 0.25, 2.0)


@pytest.mark.parametrize(
    "segments,wav,pattern",
    [
        ("a1 r1 0 1\na2 r3 0 1\nb1 r2 0 1\n", None, r"segments:2: recording 'r3' of 'a2' is not in wav.scp"),
        ("a1 r1 1 0.5\na2 r1 0 1\nb1 r2 0 1\n", None, r"segments:1: bad segment times 1 0.5"),
        ("a1 r1 0 x\na2 r1 0 1\nb1 r2 0 1\n", None, r"segments:1: start/end must be numbers"),
        ("a1 r1 0 1\na2 r1 0\nb1 r2 0 1\n", None, r"segments:2: expected 4 fields, got 3"),
        ("a2 r1 0 1\na1 r1 0 1\nb1 r2 0 1\n", None, r"segments:2: not sorted"),
        ("a1 r1 0 1\na1 r1 0 1\nb1 r2 0 1\n", None, r"segments:2: duplicate utterance 'a1'"),
        ("a1 r1 0 1\nb1 r2 0 1\n", None, r"segments:2: utterance 'b1'|utt2spk:2: utterance 'a2' is not in segments"),
        ("a1 r1 0 1\na2 r1 1 2\nb1 r1 2 3\n", None, r"wav.scp:2: recording 'r2' has no line in segments"),
    ],
)
def test_segments_errors(tmp_path, audio, segments, wav, pattern):
    with pytest.raises(InputError, match=pattern):
        read_datadir(seg_dir(tmp_path, audio, segments, wav))


def test_missing_tables(tmp_path, audio):
    with pytest.raises(InputError, match="not a directory"):
        read_datadir(tmp_path / "nothing")
    d = make(tmp_path, **{"wav.scp": good(audio)["wav.scp"]})
    with pytest.raises(InputError, match=r"utt2spk: no such file"):
        read_datadir(d)


def test_write_rejects_whitespace_ids(tmp_path):
    with pytest.raises(InputError, match="invalid id"):
        write_datadir(tmp_path / "x", {"a b": "/x.wav"}, {"a b": "s"})


def test_atomic_dir(tmp_path):
    dst = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(dst) as tmp:
            (tmp / "f").write_text("x")
            raise RuntimeError("boom")
    assert not dst.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(dst) as tmp:
        (tmp / "f").write_text("y")
    assert (dst / "f").read_text() == "y"
    with pytest.raises(InputError, match="already exists"):
        with atomic_dir(dst):
            pass
    with atomic_dir(dst, overwrite=True) as tmp:
        (tmp / "g").write_text("z")
    assert sorted(p.name for p in dst.iterdir()) == ["g"]
