"""`jeffreys prepare combine DST SRC...`: one data dir with every utterance of its sources
(tiny generated wav files), its info.json, and what describe() then says a model heard."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from jeffreys.corpora import combine_datadirs, quiet
from jeffreys.data.datadir import describe, read_datadir, write_datadir
from jeffreys.errors import InputError
from prepare_cli import ok, prepare, refused

SR = 16000


def make_dir(root: Path, speakers: list[str], utts: int = 2, *, info: dict | None = None, relative_to: Path | None = None,
             durations: bool = True, extras: bool = True, segments: bool = False) -> Path:
    """root/data: a data dir of `utts` 0.2 s files per speaker (ids SPK-uN), root/info.json
    when given (above the data dir, as `prepare synth` and `prepare debvoices` write it);
    wav.scp paths relative to `relative_to` when given. With `segments`, one recording per
    speaker holding its utterances one after another."""
    rng = np.random.default_rng(len(str(root)))
    wav, utt2spk, utt2dur, segs = {}, {}, {}, {}
    for spk in speakers:
        for u in range(utts):
            utt = f"{spk}-u{u}"
            path = root / "wav" / f"{spk if segments else utt}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            if not segments or u == 0:
                sf.write(path, (0.1 * rng.standard_normal(int(0.2 * SR * utts))).astype(np.float32), SR)
            rec = spk if segments else utt
            wav[rec] = os.path.relpath(path, relative_to) if relative_to else str(path)
            utt2spk[utt], utt2dur[utt] = spk, 0.2
            segs[utt] = (rec, 0.2 * u, 0.2 * (u + 1))
    data = write_datadir(root / "data", wav, utt2spk, utt2dur=utt2dur if durations else None, segments=segs if segments else None)
    if extras:
        (data / "spk2gender").write_text("".join(f"{s} {'mf'[i % 2]}\n" for i, s in enumerate(speakers)))
        (data / "utt2lang").write_text("".join(f"{u} en\n" for u in sorted(utt2spk)))
    if info is not None:
        (root / "info.json").write_text(json.dumps(info))
    return data


SYNTH = {"corpus": "jeffreys synth", "seed": 0}
DEB = {"corpus": "debvoices", "kind": "recorded"}
MBROLA = {"corpus": "mbrola", "kind": "diphone"}


def test_combine_carries_every_utterance_and_says_what_is_in_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    synth = make_dir(tmp_path / "synth", ["v1", "v2", "v3"], info=SYNTH)
    deb = make_dir(tmp_path / "deb", ["kajongg_petra"], utts=3, info=DEB, relative_to=tmp_path)
    mb = make_dir(tmp_path / "mb", ["de2", "fr1"], info={"corpus": "mbrola"})  # no kind field: known by its name
    with quiet():
        spec = combine_datadirs(tmp_path / "all", ["synth/data", deb, mb])
    out = capsys.readouterr().out
    d = read_datadir(tmp_path / "all", check_files=True)
    assert len(d.utt2spk) == len(spec.utt2spk) == 6 + 3 + 4 and len(d.speakers) == 6
    # relative paths meant the current directory's: now absolute, the same files
    assert all(os.path.isabs(p) for p in d.wav.values())
    assert d.wav["kajongg_petra-u0"] == str(tmp_path / "deb" / "wav" / "kajongg_petra-u0.wav")
    assert d.utt2dur is not None and sum(d.utt2dur.values()) == pytest.approx(13 * 0.2, abs=1e-3)
    assert (tmp_path / "all" / "spk2gender").read_text().splitlines()[0] == "de2 m"
    assert len((tmp_path / "all" / "utt2lang").read_text().splitlines()) == 13
    info = json.loads((tmp_path / "all" / "info.json").read_text())
    assert info["corpus"] == "combined"
    assert [(p["corpus"], p["kind"], p["speakers"], p["utterances"], p["hours"]) for p in info["parts"]] == [
        ("jeffreys synth", "synthetic", 3, 6, round(6 * 0.2 / 3600, 3)),
        ("debvoices", "recorded", 1, 3, round(3 * 0.2 / 3600, 3)),
        ("mbrola", "diphone", 2, 4, round(4 * 0.2 / 3600, 3)),
    ]
    assert info["parts"][0]["data"] == str(synth.absolute())
    assert "combine: wrote" in out and "6 speakers, 13 utterances" in out and "from " + str(mb) in out

    told = describe(d)
    assert told["corpus"] == "combined" and told["kind"] == "mixed" and told["synthetic"] is False
    assert (told["speakers"], told["utterances"]) == (6, 13) and len(told["parts"]) == 3
    assert told["heard"] == ("6 synthetic utterances of 3 voices (jeffreys synth); 3 recorded utterances of 1 speaker "
                             "(debvoices); 4 diphone utterances of 2 recorded voices (mbrola)")  # fmt: skip
    # a combined source gives its parts, not itself
    other = make_dir(tmp_path / "more", ["v9"], info=SYNTH)
    with quiet():
        combine_datadirs(tmp_path / "again", [tmp_path / "all", other])
    again = describe(read_datadir(tmp_path / "again"))
    assert [p["corpus"] for p in again["parts"]] == ["jeffreys synth", "debvoices", "mbrola", "jeffreys synth"]


def test_describe_of_single_corpora_and_synthetic_only_combinations(tmp_path):
    a = make_dir(tmp_path / "a", ["v1", "v2"], info=SYNTH)
    b = make_dir(tmp_path / "b", ["v3"], info=SYNTH)
    deb = make_dir(tmp_path / "deb", ["p1", "p2"], info=DEB)
    vox = make_dir(tmp_path / "vox", ["id1"])  # no info.json: a record as older versions wrote it
    one = describe(read_datadir(deb))
    assert (one["corpus"], one["kind"], one["synthetic"]) == ("debvoices", "recorded", False)
    assert one["heard"] == "4 recorded utterances of 2 speakers (debvoices)"
    assert describe(read_datadir(a))["heard"] == "4 synthetic utterances of 2 voices (jeffreys synth)"
    assert describe(read_datadir(vox)) == {"data": str(vox), "speakers": 1, "utterances": 2, "corpus": None, "synthetic": False}
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "info.json").write_text(json.dumps({"corpus": "my lab"}))  # any other corpus named: recorded
    assert describe(read_datadir(make_dir(tmp_path / "x", ["s"])))["kind"] == "recorded"
    with quiet():
        combine_datadirs(tmp_path / "synth", [a, b])
        combine_datadirs(tmp_path / "withvox", [a, vox])
    told = describe(read_datadir(tmp_path / "synth"))
    assert told["synthetic"] is True and told["kind"] == "synthetic"
    assert told["heard"] == "4 synthetic utterances of 2 voices (jeffreys synth); 2 synthetic utterances of 1 voice (jeffreys synth)"
    told = describe(read_datadir(tmp_path / "withvox"))
    assert told["synthetic"] is False and told["parts"][1]["kind"] is None
    assert told["heard"].endswith(f"; 2 utterances of 1 speaker of unknown kind ({vox.absolute()})")
    # an info.json whose parts cannot be read says nothing about them
    (tmp_path / "synth" / "info.json").write_text(json.dumps({"corpus": "combined", "parts": [{"speakers": "many"}]}))
    told = describe(read_datadir(tmp_path / "synth"))
    assert told["kind"] is None and told["synthetic"] is False and "parts" not in told


def test_segments_utt2dur_and_carried_files_follow_the_sources(tmp_path, capsys):
    seg = make_dir(tmp_path / "seg", ["s1", "s2"], utts=3, segments=True)
    plain = make_dir(tmp_path / "plain", ["p1"], durations=False, extras=False)
    with quiet():
        combine_datadirs(tmp_path / "all", [seg, plain])
    out = capsys.readouterr().out
    d = read_datadir(tmp_path / "all")
    assert d.segments is not None and len(d.segments) == 6 + 2 and len(d.wav) == 2 + 2
    assert d.source("s2-u1") == (str(tmp_path / "seg" / "wav" / "s2.wav"), pytest.approx(0.2), pytest.approx(0.4))
    assert d.source("p1-u0") == (str(tmp_path / "plain" / "wav" / "p1-u0.wav"), 0.0, None)  # the whole file, as before
    assert d.utt2dur is None and not (tmp_path / "all" / "spk2gender").exists()
    assert f"utt2dur not written: {plain} has none" in out and f"spk2gender not written: {plain} has none" in out
    # two sources naming one recording id: merged when it is the same file, refused when not
    twin = make_dir(tmp_path / "twin", ["s1"], utts=3, segments=True)
    os.replace(twin / "segments", twin / "segments.tmp")
    (twin / "segments").write_text((twin / "segments.tmp").read_text().replace("s1-u", "t1-u"))
    (twin / "utt2spk").write_text("t1-u0 t1\nt1-u1 t1\nt1-u2 t1\n")
    (twin / "spk2utt").write_text("t1 t1-u0 t1-u1 t1-u2\n")
    (twin / "utt2dur").write_text("t1-u0 0.2\nt1-u1 0.2\nt1-u2 0.2\n")
    for name in ("spk2gender", "utt2lang", "segments.tmp"):
        (twin / name).unlink()
    with pytest.raises(InputError, match=r"recording id 's1' names .*/twin/wav/s1\.wav in .*/twin"):
        combine_datadirs(tmp_path / "no", [seg, twin])
    (twin / "wav.scp").write_text(f"s1 {tmp_path / 'seg' / 'wav' / 's1.wav'}\n")
    with quiet():
        combine_datadirs(tmp_path / "twins", [seg, twin])
    assert len(read_datadir(tmp_path / "twins").wav) == 2


def test_shared_speakers_only_when_allowed(tmp_path):
    a = make_dir(tmp_path / "a", ["alice", "bob"])
    b = make_dir(tmp_path / "b", ["bob"], utts=1)
    (b / "utt2spk").write_text("bob-x bob\n")
    (b / "spk2utt").write_text("bob bob-x\n")
    (b / "wav.scp").write_text(f"bob-x {tmp_path / 'b' / 'wav' / 'bob-u0.wav'}\n")
    (b / "utt2dur").write_text("bob-x 0.2\n")
    (b / "utt2lang").write_text("bob-x en\n")
    (b / "spk2gender").write_text("bob f\n")  # as in a
    with pytest.raises(InputError, match=r"speaker id 'bob' is in .*/a/data and in .*/b/data: .*--allow-shared-speakers"):
        combine_datadirs(tmp_path / "dst", [a, b])
    with quiet():
        combine_datadirs(tmp_path / "dst", [a, b], allow_shared_speakers=True)
    assert read_datadir(tmp_path / "dst").spk2utt["bob"] == ["bob-u0", "bob-u1", "bob-x"]
    (b / "spk2gender").write_text("bob m\n")  # a's bob is f: one person cannot be both
    with pytest.raises(InputError, match=r"b/data/spk2gender:1: 'bob' is 'm' here and 'f' in an earlier source"):
        combine_datadirs(tmp_path / "dst2", [a, b], allow_shared_speakers=True)
    assert not (tmp_path / "dst2").exists()


def test_debvoices_says_its_speech_is_recorded(tmp_path, capsys):
    from jeffreys.corpora import prepare_debvoices
    from test_corpora_debvoices import replica

    replica(tmp_path / "root")
    with quiet():
        prepare_debvoices(tmp_path / "root", tmp_path / "deb", packages=["kajongg", "festvox-ru"], jobs=1)
    assert json.loads((tmp_path / "deb" / "info.json").read_text()) == DEB
    told = describe(read_datadir(tmp_path / "deb" / "train"))
    assert (told["corpus"], told["kind"], told["heard"]) == ("debvoices", "recorded", "2 recorded utterances of 1 speaker (debvoices)")
    # its root is not a data dir: the refusal names the ones inside
    with pytest.raises(InputError, match=r"deb: not a data dir: no wav.scp \(data dirs inside it: eval, train\)"):
        combine_datadirs(tmp_path / "dst", [tmp_path / "deb"])


def in_process(capsys, dst: Path, *argv) -> tuple[int, str]:
    """``jeffreys prepare combine DST ARGV...`` in this process: (exit status, its one stderr
    line other than progress), nothing left at DST or beside it on a refusal."""
    from jeffreys.cli import main

    rc = main(["prepare", "combine", str(dst), *map(str, argv)])
    err = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("prepare ")]
    if rc != 0:
        assert len(err) == 1 and err[0].startswith("jeffreys prepare: error: "), err
        assert not [p for p in dst.parent.iterdir() if p.name.startswith(f".{dst.name}.")]
    return rc, "\n".join(err)


def test_refusals_through_the_cli(tmp_path):
    """As a user meets them (a subprocess): exit status 2, one line naming what is wrong, no DST."""
    a = make_dir(tmp_path / "a", ["alice"])
    b = make_dir(tmp_path / "b", ["bob"])
    dst = tmp_path / "dst"
    # the same utterance id in two sources: named with both sources
    (b / "utt2spk").write_text("alice-u0 bob\nbob-u1 bob\n")
    (b / "spk2utt").write_text("bob alice-u0 bob-u1\n")
    (b / "wav.scp").write_text(f"alice-u0 {tmp_path / 'b' / 'wav' / 'bob-u0.wav'}\nbob-u1 {tmp_path / 'b' / 'wav' / 'bob-u1.wav'}\n")
    (b / "utt2dur").write_text("alice-u0 0.2\nbob-u1 0.2\n")
    (b / "utt2lang").write_text("alice-u0 en\nbob-u1 en\n")
    refused(prepare("combine", dst, a, b), dst, "utterance id 'alice-u0' is in", f"{a} and in {b}")
    refused(prepare("combine", dst, a, tmp_path / "nowhere"), dst, f"{tmp_path / 'nowhere'}: not found (a source data dir)")
    c = make_dir(tmp_path / "c", ["alice"], utts=1)
    refused(prepare("combine", dst, a, c), dst, "speaker id 'alice' is in", f"{a} and in {c}", "--allow-shared-speakers")


def test_other_refusals_and_overwrite(tmp_path, capsys):
    a = make_dir(tmp_path / "a", ["alice"])
    dst = tmp_path / "dst"
    rc, err = in_process(capsys, dst, a, tmp_path / "a")
    assert rc == 2 and f"{tmp_path / 'a'}: not a data dir: no wav.scp (data dirs inside it: data)" in err
    assert in_process(capsys, dst, a, a)[1].endswith("given twice as a source")
    c = make_dir(tmp_path / "c", ["carol"], utts=1, extras=False)
    (c / "wav.scp").write_text("carol-u0 sox x.wav -t wav - |\n")
    rc, err = in_process(capsys, dst, a, c)
    assert rc == 2 and "'carol-u0' is a command pipeline" in err and "prepare convert" in err
    (c / "wav.scp").write_text(f"carol-u0 {tmp_path / 'c' / 'wav' / 'gone.wav'}\n")
    rc, err = in_process(capsys, dst, a, c)
    assert rc == 2 and f"{c / 'wav.scp'}:1: audio file of 'carol-u0' not found" in err
    assert not dst.exists()
    # an existing DST: kept unless --overwrite, which may not remove a source or its audio
    assert in_process(capsys, dst, a)[0] == 0
    before = (dst / "wav.scp").read_text()
    d = make_dir(tmp_path / "d", ["dan"])
    rc, err = in_process(capsys, dst, a, d)
    assert rc == 2 and "already exists" in err and (dst / "wav.scp").read_text() == before
    inner = make_dir(dst / "inner", ["erin"])
    rc, err = in_process(capsys, dst, a, inner, "--overwrite")
    assert rc == 2 and "a source inside DST" in err and inner.is_dir()
    os.replace(inner, tmp_path / "e")  # the data dir out of DST, its audio still there
    rc, err = in_process(capsys, dst, a, tmp_path / "e", "--overwrite")
    assert rc == 2 and "audio of 'erin-u0' lies inside DST" in err
    assert in_process(capsys, dst, a, d, "--overwrite")[0] == 0
    assert len(read_datadir(dst).spk2utt) == 2 and (dst / "info.json").is_file()
