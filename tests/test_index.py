"""jeffreys.data.index: the array index of a data dir means what read_datadir reads, refuses
what it refuses with the same message, and checks audio files by its policy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jeffreys.data import index as index_mod
from jeffreys.data.datadir import read_datadir, write_datadir
from jeffreys.data.index import Strings, UttIndex, read_index
from jeffreys.errors import InputError


def _as_reference(data) -> dict:
    """What a DataDir says, in the index's terms, written independently of UttIndex."""
    utts = sorted(data.utt2spk)
    speakers = sorted(set(data.utt2spk.values()))
    return {
        "utts": utts,
        "speakers": speakers,
        "speaker_of": [data.utt2spk[u] for u in utts],
        "sources": [data.source(u) for u in utts],
        "durations": [data.utt2dur[u] for u in utts] if data.utt2dur else None,
        "by_speaker": {s: [u for u in utts if data.utt2spk[u] == s] for s in speakers},
    }


def _of_index(ix: UttIndex) -> dict:
    utts = list(ix.utts)
    return {
        "utts": utts,
        "speakers": list(ix.speakers),
        "speaker_of": [ix.speaker(i) for i in range(len(ix))],
        "sources": [ix.source(i) for i in range(len(ix))],
        "durations": [ix.duration(i) for i in range(len(ix))] if ix.dur is not None else None,
        "by_speaker": {s: [utts[i] for i in ix.utts_of(k)] for k, s in enumerate(ix.speakers)},
    }


def _outcome(fn):
    try:
        return ("ok", fn())
    except InputError as e:
        return ("error", str(e))


_ID = st.text(alphabet=st.sampled_from(list("abcXYZ019-_.é€")), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    utts=st.dictionaries(_ID, st.sampled_from(["s1", "s2", "spk-é", "z"]), min_size=1, max_size=25),
    spaces=st.booleans(), with_dur=st.booleans(), with_spk2utt=st.booleans(), data=st.data(),
)
def test_plain_data_dirs_read_as_read_datadir_reads_them(tmp_path_factory, utts, spaces, with_dur, with_spk2utt, data):
    d = tmp_path_factory.mktemp("d")
    wav = {u: f"/corpus/{u}/a{' b' if spaces else ''}.wav" for u in utts}
    dur = {u: data.draw(st.sampled_from([0.5, 1.0, 3.25, 12.0, 100.125])) for u in utts} if with_dur else None
    write_datadir(d, wav, utts, utt2dur=dur)
    if not with_spk2utt:
        (d / "spk2utt").unlink()
    ix = read_index(d, check_files="none")
    assert _of_index(ix) == _as_reference(read_datadir(d, check_files=False))
    for u in utts:
        assert ix.utts.find(u) == sorted(utts).index(u)
    assert ix.utts.find("not-there") == -1


def _irregular_variants(d):
    """(name, edit) pairs: each makes the plain writer's files into something else."""

    def sub(name, old, new, count=1):
        def edit():
            p = d / name
            p.write_bytes(p.read_bytes().replace(old, new, count))
        return edit

    return [
        ("tab", sub("wav.scp", b" ", b"\t")),
        ("two spaces", sub("utt2spk", b" ", b"  ")),
        ("crlf", sub("utt2spk", b"\n", b"\r\n", -1)),
        ("trailing space", sub("wav.scp", b"\n", b" \n")),
        ("blank line", sub("utt2spk", b"\n", b"\n\n")),
        ("no final newline", lambda: (d / "utt2dur").write_bytes((d / "utt2dur").read_bytes()[:-1])),
        ("unsorted", lambda: (d / "wav.scp").write_text("".join(reversed((d / "wav.scp").read_text().splitlines(True))))),
        ("duplicate", lambda: (d / "utt2spk").write_text((d / "utt2spk").read_text() + (d / "utt2spk").read_text().splitlines(True)[-1])),
        ("utt2spk names another utterance", sub("utt2spk", b"u1 ", b"u9 ")),
        ("spk2utt wrong", sub("spk2utt", b" u1", b" u3")),
        ("spk2utt speaker unknown", sub("spk2utt", b"sa ", b"sq ")),
        ("duration exponent", sub("utt2dur", b"1.500", b"15e-1")),
        ("duration zero", sub("utt2dur", b"1.500", b"0.000")),
        ("duration nan", sub("utt2dur", b"1.500", b"nan")),
        ("duration negative", sub("utt2dur", b"1.500", b"-1.5")),
        ("duration word", sub("utt2dur", b"1.500", b"long")),
        ("pipe", sub("wav.scp", b".wav\n", b".wav |\n")),
        ("one field", sub("utt2spk", b" sa", b"")),
        ("three fields", sub("utt2spk", b" sa", b" sa x")),
        ("NUL", sub("utt2spk", b"sa", b"s\0a")),
        ("empty", lambda: (d / "utt2spk").write_bytes(b"")),
        ("vertical tab", sub("wav.scp", b" ", b"\x0b")),
        ("segments", lambda: (d / "segments").write_text("u1 u1 0 1\nu2 u2 0 -1\nu3 u3 0.5 2\n")),
    ]


@pytest.mark.parametrize("variant", range(23))
@pytest.mark.parametrize("allow_pipes", [False, True])
def test_other_forms_mean_what_read_datadir_says_or_fail_with_its_message(tmp_path, variant, allow_pipes):
    d = tmp_path / "d"
    write_datadir(d, {f"u{i}": f"/x/u{i}.wav" for i in (1, 2, 3)}, {"u1": "sa", "u2": "sa", "u3": "sb"},
                  utt2dur={"u1": 1.5, "u2": 2.0, "u3": 3.0})
    variants = _irregular_variants(d)
    assert len(variants) == 23
    variants[variant][1]()
    ref = _outcome(lambda: _as_reference(read_datadir(d, check_files=False, allow_pipes=allow_pipes)))
    got = _outcome(lambda: _of_index(read_index(d, check_files="none", allow_pipes=allow_pipes)))
    assert got == ref, variants[variant][0]


def _audio_dir(tmp_path, n, missing=()):
    d = tmp_path / "d"
    (tmp_path / "a").mkdir()
    wav = {}
    for i in range(n):
        p = tmp_path / "a" / f"{i:05d}.wav"
        if i not in missing:
            p.write_bytes(b"")
        wav[f"u{i:05d}"] = str(p)
    write_datadir(d, wav, {u: f"s{i % 3}" for i, u in enumerate(wav)})
    return d


def test_check_files_all_refuses_as_read_datadir_does(tmp_path):
    d = _audio_dir(tmp_path, 30, missing={17})
    with pytest.raises(InputError) as ref:
        read_datadir(d)
    for mode in ("all", "auto"):
        with pytest.raises(InputError) as got:
            read_index(d, check_files=mode)
        assert str(got.value) == str(ref.value) and "00017" in str(got.value)
    assert len(read_index(d, check_files="none")) == 30


def test_above_the_threshold_a_seeded_sample_is_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(index_mod, "CHECK_ALL_UP_TO", 10)
    monkeypatch.setattr(index_mod, "SAMPLE_FILES", 5)
    d = _audio_dir(tmp_path, 40, missing=set(range(40)) - {0})  # all but one missing
    with pytest.raises(InputError, match="not found"):
        read_index(d)  # any sample of 5 meets a missing file
    sample = set(np.random.default_rng(0).choice(40, 5, replace=False).tolist())
    lone = next(i for i in range(40) if i not in sample)
    d2 = tmp_path / "two"
    d2.mkdir()
    one = _audio_dir(d2, 40, missing={lone})
    assert len(read_index(one)) == 40  # auto: only the sample, which misses the one missing file
    with pytest.raises(InputError, match=f"{lone:05d}"):
        read_index(one, check_files="all")
    with pytest.raises(ValueError, match="check_files"):
        read_index(one, check_files="some")


def test_strings_pack_and_look_up():
    words = ["", "a", "ab", "b", "é", "€x"]
    s = Strings.of(words)
    assert list(s) == words and len(s) == 6 and s[-1] == "€x" and s[1:3] == ["a", "ab"]
    assert [s.find(w) for w in words] == list(range(6)) and s.find("aa") == -1 and s.find("zz") == -1
    assert list(s.take(np.array([5, 0, 2]))) == ["€x", "", "ab"]
    with pytest.raises(IndexError):
        s[6]
    assert s == Strings.of(words) and s != Strings.of(words[:-1])


def test_speaker_subset_keeps_the_first_speakers(tmp_path):
    d = tmp_path / "d"
    utts = {f"u{i:02d}": f"s{i % 4}" for i in range(20)}
    write_datadir(d, {u: f"/x/{u}.wav" for u in utts}, utts, utt2dur={u: 1.0 + i for i, u in enumerate(utts)})
    sub = read_index(d, check_files="none").speaker_subset(2)
    ref = read_datadir(d, check_files=False)
    assert _of_index(sub) == _as_reference(ref.subset(["s0", "s1"]))


# ---- the kept index (jeffreys.data.index_cache) ---------------------------------------
from jeffreys.data import index_cache  # noqa: E402


@pytest.fixture
def kept(tmp_path, monkeypatch):
    monkeypatch.setenv("JEFFREYS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(index_cache, "CACHE_FROM", 1)
    d = tmp_path / "d"
    utts = {f"u{i:02d}": f"s{i % 3}" for i in range(12)}
    write_datadir(d, {u: f"/x/{u} a.wav" for u in utts}, utts, utt2dur={u: 1.0 + i / 8 for i, u in enumerate(utts)})
    return d, tmp_path / "cache" / "index"


def test_a_second_read_maps_the_kept_arrays_and_means_the_same(kept):
    d, root = kept
    first = read_index(d, check_files="none")
    assert not isinstance(first.spk, np.memmap) and len(list(root.iterdir())) == 1
    second = read_index(d, check_files="none")
    assert isinstance(second.spk, np.memmap)
    assert _of_index(second) == _of_index(first) == _as_reference(read_datadir(d, check_files=False))
    assert isinstance(read_index(d, check_files="none", cache=False).spk, np.ndarray)


def test_an_edited_table_is_read_afresh(kept):
    d, root = kept
    read_index(d, check_files="none")
    text = (d / "utt2spk").read_text().replace("u00 s0", "u00 s9")
    (d / "utt2spk").write_text(text)
    (d / "spk2utt").unlink()
    got = read_index(d, check_files="none")
    assert got.speaker("u00") == "s9" and len(list(root.iterdir())) == 2


@pytest.mark.parametrize("damage", ["offsets", "speaker", "truncated", "dtype", "missing"])
def test_a_damaged_entry_is_not_trusted(kept, damage):
    d, root = kept
    want = _of_index(read_index(d, check_files="none"))
    (entry,) = root.iterdir()
    if damage == "offsets":
        np.save(entry / "utts.offsets.npy", np.array([0, 5, 3] + [3] * 10, dtype=np.int64))
    elif damage == "speaker":
        np.save(entry / "spk.npy", np.full(12, 7, dtype=np.int32))
    elif damage == "truncated":
        data = (entry / "entries.blob.npy").read_bytes()
        (entry / "entries.blob.npy").write_bytes(data[: len(data) // 2])
    elif damage == "dtype":
        np.save(entry / "dur.npy", np.ones(12, dtype=np.float32))
    else:
        (entry / "spk.npy").unlink()
    got = read_index(d, check_files="none")
    assert not isinstance(got.spk, np.memmap) and _of_index(got) == want


def test_the_newest_entries_are_kept(kept, monkeypatch, tmp_path):
    d, root = kept
    monkeypatch.setattr(index_cache, "KEEP", 2)
    dirs = []
    for n in range(4):
        e = tmp_path / f"e{n}"
        write_datadir(e, {"a": "/x/a.wav", "b": "/x/b.wav"}, {"a": "s", "b": "t"})
        read_index(e, check_files="none")
        dirs.append(e)
    assert len(list(root.iterdir())) == 2
    assert isinstance(read_index(dirs[-1], check_files="none").spk, np.memmap)
    assert not isinstance(read_index(dirs[0], check_files="none").spk, np.memmap)


def test_an_unwritable_cache_is_skipped(kept, tmp_path, monkeypatch):
    d, _ = kept
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("JEFFREYS_CACHE_DIR", str(tmp_path / "file" / "below"))
    assert len(read_index(d, check_files="none")) == 12


def test_audio_files_are_checked_after_a_kept_index_is_loaded(kept):
    d, _ = kept
    read_index(d, check_files="none")
    with pytest.raises(InputError, match="not found"):
        read_index(d, check_files="all")


def test_a_prepared_data_dir_has_its_index_kept(kept, tmp_path, capsys):
    from jeffreys.corpora._common import DirSpec, write_dirs

    _, root = kept
    (tmp_path / "audio").mkdir()
    wav = {}
    for i in range(6):
        (tmp_path / "audio" / f"{i}.wav").write_bytes(b"")
        wav[f"s{i % 2}-u{i}"] = str(tmp_path / "audio" / f"{i}.wav")
    dst = tmp_path / "prepared"
    write_dirs("test", dst, {"train": DirSpec(wav, {u: u.split("-")[0] for u in wav}, None)}, False)
    assert len(list(root.iterdir())) == 1
    assert isinstance(read_index(dst / "train", check_files="none").spk, np.memmap)
