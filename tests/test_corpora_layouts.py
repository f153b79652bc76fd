"""`jeffreys prepare` (run as a subprocess, as a user runs it) on replicas of the layouts the
corpora are published and unpacked in by Kaldi, WeSpeaker, SpeechBrain, voxceleb_trainer,
lhotse and the corpus READMEs (see each builder's docstring in replicas.py)."""

from pathlib import Path

import numpy as np
import pytest
import replicas
import soundfile as sf
from prepare_cli import ok, prepare, refused

from jeffreys.audio import load_utterance
from jeffreys.data.datadir import read_datadir
from jeffreys.data.trials import read_trials


def vox_id(path: str) -> str:
    spk, video, f = path.split("/")
    return f"{spk}-{video}-{Path(f).stem}"


def trial_rows(lines: list[str]) -> list[tuple[str, str, bool]]:
    """Published VoxCeleb-format lines as (enroll id, test id, is_target), in order."""
    return [(vox_id(a), vox_id(b), y == "1") for y, a, b in (x.split() for x in lines)]


def rows(path: Path) -> list[tuple[str, str, bool]]:
    t = read_trials(path)
    return list(zip(t.enroll, t.test, t.label.tolist()))


# ----------------------------------------------------------------------------- VoxCeleb1
def test_vox1_merged_speechbrain_layout(tmp_path):
    src = tmp_path / "VoxCeleb1"
    rels = replicas.voxceleb1_merged(src)  # SRC/wav + SRC/meta/{veri_test2,...}.txt
    out = ok(prepare("voxceleb1", src, tmp_path / "all"))
    d = read_datadir(tmp_path / "all")
    assert d.utts == sorted(vox_id(r) for r in rels)
    assert Path(d.wav["id10270-x6uYqmx31kE-00001"]) == (src / "wav/id10270/x6uYqmx31kE/00001.wav").resolve()
    for name, lines in (("O", replicas.VOX1_O), ("E", replicas.VOX1_E), ("H", replicas.VOX1_H)):
        assert rows(tmp_path / "all" / f"trials_{name}") == trial_rows(lines)
        assert f"trials_{name} from {src / 'meta'}" in out
    assert "split by speaker: test = id10270-id10309" in out
    # the split follows the speaker ranges of the official zips
    ok(prepare("voxceleb1", src, tmp_path / "test", "--split", "test"))
    assert read_datadir(tmp_path / "test").speakers == ["id10270", "id10271"]
    assert (tmp_path / "test/trials").read_text() == (tmp_path / "all/trials_O").read_text()
    out = ok(prepare("voxceleb1", src, tmp_path / "dev", "--split", "dev", "--no-durations"))
    assert read_datadir(tmp_path / "dev").speakers == ["id10001", "id10002"] and "dev has none" in out


def test_vox1_merged_split_by_meta(tmp_path):
    src = tmp_path / "VoxCeleb1"
    replicas.voxceleb1_merged(src, meta=True, lists_in="")
    # the Set column decides, not the id range: move id10002 to the test side
    replicas.vox1_meta(src / "vox1_meta.csv", {"id10001": "dev", "id10002": "test", "id10270": "test", "id10271": "test"})
    out = ok(prepare("voxceleb1", src, tmp_path / "test", "--split", "test", "--no-durations"))
    assert read_datadir(tmp_path / "test").speakers == ["id10002", "id10270", "id10271"]
    assert f"split by the Set column of {src / 'vox1_meta.csv'}" in out
    replicas.vox1_meta(src / "vox1_meta.csv", {"id10001": "dev", "id10270": "test", "id10271": "test"})
    refused(prepare("voxceleb1", src, tmp_path / "o2"), tmp_path / "o2", "vox1_meta.csv: no row for speaker id10002")
    replicas.write(src / "vox1_meta.csv", [replicas.VOX1_META_HEADER, "id10001\tA\tm\tUSA\ttrain"])
    refused(prepare("voxceleb1", src, tmp_path / "o3"), tmp_path / "o3", "vox1_meta.csv:2: expected `idXXXXX ... dev|test`")


def test_vox1_voxceleb_trainer_layout_with_wespeaker_lists(tmp_path):
    src, lists = tmp_path / "data/voxceleb1", tmp_path / "wespeaker/data/vox1/trials"
    rels = replicas.voxceleb_trainer_vox1(src)  # SRC/idX/VIDEO/N.wav, no list
    kaldi = replicas.wespeaker_vox1_trials(lists)
    out = ok(prepare("voxceleb1", src, tmp_path / "a", "--trials-dir", lists, "--no-durations"))
    assert read_datadir(tmp_path / "a").utts == sorted(vox_id(r) for r in rels)
    assert rows(tmp_path / "a/trials_E") == trial_rows(replicas.VOX1_E)
    assert f"trials_H from {lists / 'vox1-H(cleaned).txt'}" in out
    # the Kaldi-format copies given one by one, under any name
    ok(prepare("voxceleb1", src, tmp_path / "b", "--trials-o", kaldi["O"], "--trials-e", kaldi["E"], "--trials-h", kaldi["H"], "--no-durations"))
    for t in "OEH":
        assert (tmp_path / "b" / f"trials_{t}").read_text() == (tmp_path / "a" / f"trials_{t}").read_text()


def test_vox1_without_lists_fails_where_the_cause_is(tmp_path):
    src, dst = tmp_path / "VoxCeleb1", tmp_path / "out"
    replicas.voxceleb1_merged(src, lists_in=None)
    err = refused(prepare("voxceleb1", src, dst), dst, "no Vox1-O, Vox1-E, Vox1-H trial list", "--trials-dir")
    for name in ("veri_test2.txt", "list_test_all2.txt", "list_test_hard2.txt"):
        assert f"https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/{name}" in err
    assert str(src / "meta") in err
    # only the original O list present: say so
    replicas.write(src / "voxceleb1_test_v2.txt", replicas.VOX1_O)
    refused(prepare("voxceleb1", src, dst, "--split", "test"), dst, "voxceleb1_test_v2.txt is the original Vox1-O list (pass --original")
    ok(prepare("voxceleb1", src, dst, "--split", "test", "--original", "--no-durations"))
    assert rows(dst / "trials_O") == trial_rows(replicas.VOX1_O)
    # audio only, on purpose
    out = ok(prepare("voxceleb1", src, tmp_path / "o2", "--trials", "none", "--no-durations"))
    assert "no trial list written" in out and not (tmp_path / "o2/trials").exists()
    # a list given by path that is not there; a list the split cannot map
    refused(prepare("voxceleb1", src, tmp_path / "o3", "--trials-h", tmp_path / "nope.txt"), tmp_path / "o3", "nope.txt: not found (Vox1-H trial list)")
    refused(prepare("voxceleb1", src, tmp_path / "o3", "--split", "test", "--trials", "O,E"), tmp_path / "o3", "Vox1-E pairs dev and test speakers: it needs --split all")


def test_vox1_no_audio_layout(tmp_path):
    src, dst = tmp_path / "VoxCeleb1", tmp_path / "out"
    replicas.write(src / "veri_test2.txt", replicas.VOX1_O)
    refused(prepare("voxceleb1", src, dst), dst, "no VoxCeleb1 audio: expected SRC/dev/wav/ and SRC/test/wav/", "SRC/wav/")
    replicas.voxceleb1_merged(src)
    replicas.audio(src / "wav/extra/clips/00001.wav")  # not a speaker folder
    refused(prepare("voxceleb1", src, dst), dst, "extra/clips/00001.wav: expected idXXXXX/VIDEO/NNNNN.wav under")


# ----------------------------------------------------------------------------- VoxCeleb2
def test_vox2_test_zip_at_src_lhotse_layout(tmp_path):
    src = tmp_path / "VoxCeleb2"
    rels = replicas.voxceleb2_lhotse(src)  # SRC/dev/aac + SRC/aac (test) + vox2_meta.csv
    out = ok(prepare("voxceleb2", src, tmp_path / "test", "--split", "test"))
    d = read_datadir(tmp_path / "test")
    assert d.utts == sorted(vox_id(r) for r in rels["test"]) and all(p.endswith(".m4a") for p in d.wav.values())
    assert str(src / "aac") in out
    ok(prepare("voxceleb2", src, tmp_path / "dev", "--no-durations"))
    assert read_datadir(tmp_path / "dev").utts == sorted(vox_id(r) for r in rels["dev"])
    ok(prepare("voxceleb2", src, tmp_path / "all", "--split", "all", "--no-durations"))
    assert read_datadir(tmp_path / "all").speakers == sorted([*replicas.VOX2_DEV, *replicas.VOX2_TEST])
    # only the test zip, no metadata: --split test reads it, --split dev says what SRC/aac is
    import shutil

    shutil.rmtree(src / "dev")
    (src / "vox2_meta.csv").unlink()
    ok(prepare("voxceleb2", src, tmp_path / "test2", "--split", "test", "--no-durations"))
    assert read_datadir(tmp_path / "test2").speakers == sorted(replicas.VOX2_TEST)
    refused(prepare("voxceleb2", src, tmp_path / "o2"), tmp_path / "o2", "dev/aac: not found", "use --split test")


def test_vox2_voxceleb_trainer_merged_layout(tmp_path):
    src, meta = tmp_path / "data/voxceleb2", tmp_path / "meta/vox2_meta.csv"
    rels = replicas.voxceleb_trainer_vox2(src, meta)  # SRC/idX/VIDEO/N.m4a (+ N.wav), dev and test merged
    out = ok(prepare("voxceleb2", src, tmp_path / "dev", "--meta", meta, "--no-durations"))
    d = read_datadir(tmp_path / "dev")
    assert d.utts == sorted(vox_id(r) for r in rels["dev"]) and all(p.endswith(".m4a") for p in d.wav.values())
    assert f"split by the Set column of {meta}" in out
    refused(prepare("voxceleb2", src, tmp_path / "o2", "--split", "dev"), tmp_path / "o2", "--split dev needs vox2_meta.csv")
    ok(prepare("voxceleb2", src, tmp_path / "all", "--split", "all", "--no-durations"))
    assert len(read_datadir(tmp_path / "all").utts) == len(rels["dev"]) + len(rels["test"])


# ----------------------------------------------------------------------------- SdSV task 2
def test_sdsv_positional_key(tmp_path):
    src = tmp_path / "sdsv"
    rep = replicas.sdsv(src, keyed=False)
    key = replicas.sdsv_positional_key(tmp_path / "ref/keys.txt", rep["trials"])
    out = ok(prepare("sdsv", src, tmp_path / "a", "--key", key, "--no-durations"))
    assert rows(tmp_path / "a/trials") == [(m, e, y == "target") for m, e, y in rep["trials"]]
    assert "trials: 3 trials (1 target, 2 non-target)" in out
    # the same labels as `MODEL EVL LABEL` lines, in another order
    named = replicas.write(tmp_path / "key3.txt", [f"{m} {e} {y}" for m, e, y in reversed(rep["trials"])])
    ok(prepare("sdsv", src, tmp_path / "b", "--key", named, "--no-durations"))
    assert (tmp_path / "b/trials").read_text() == (tmp_path / "a/trials").read_text()
    # a key of the wrong length, a label that is not one
    replicas.write(key, ["1", "0"])
    refused(prepare("sdsv", src, tmp_path / "o2", "--key", key), tmp_path / "o2", "keys.txt: 2 labels for the 3 trials of", "one label per trial")
    replicas.write(key, ["1", "0", "maybe"])
    refused(prepare("sdsv", src, tmp_path / "o2", "--key", key), tmp_path / "o2", "keys.txt:3: label must be")
    # no key: unlabelled trial_pairs for a runner to score or skip
    out = ok(prepare("sdsv", src, tmp_path / "c", "--no-durations"))
    assert (tmp_path / "c/trial_pairs").read_text().splitlines() == [f"{m} {e}" for m, e, _ in rep["trials"]]
    assert not (tmp_path / "c/trials").exists() and "no key" in out


# ----------------------------------------------------------------------------- RIRS_NOISES
def test_rirs_any_subset_of_rooms(tmp_path):
    src = tmp_path / "RIRS_NOISES"
    rooms = replicas.rirs(src, rooms=("smallroom", "mediumroom"))  # what voxceleb_trainer extracts
    out = ok(prepare("rirs", src, tmp_path / "a"))
    d = read_datadir(tmp_path / "a")
    assert d.utt2spk == rooms and d.speakers == ["mediumroom", "smallroom"]
    assert "room types found: smallroom (4), mediumroom (4); absent: largeroom" in out
    # SRC may be simulated_rirs/ itself
    ok(prepare("rirs", src / "simulated_rirs", tmp_path / "b", "--no-durations"))
    assert read_datadir(tmp_path / "b").utt2spk == rooms
    refused(prepare("rirs", src / "real_rirs_isotropic_noises", tmp_path / "o2"), tmp_path / "o2", "none of smallroom, mediumroom, largeroom found")


# ----------------------------------------------------------------------------- SITW assist
def test_sitw_assist_segments(tmp_path):
    src, dst = tmp_path / "sitw", tmp_path / "out"
    rep = replicas.sitw_assist(src)
    out = ok(prepare("sitw", src, dst, "--split", "dev", "--key", "assist-core"))
    d = read_datadir(dst)
    # enrolment = the annotated segment, not the multi-speaker file
    models = dict(line.split() for line in (dst / "models").read_text().splitlines())
    assert models == {"20d01": "mlong-0000250-0000900", "20d02": "mlong-0001100-0001950", "20d03": "mshrt-0000000-0000500"}
    for model, f, a, b in rep["enrol"]:
        assert d.segments[models[model]] == (f, a, b) and d.utt2spk[models[model]] == model
        assert abs(d.utt2dur[models[model]] - (b - a)) < 1e-6
        whole, sr = sf.read(src / "dev/audio" / f"{f}.flac", dtype="float32")
        np.testing.assert_allclose(load_utterance(d, models[model]), whole[round(a * sr) : round(b * sr)], atol=1e-6)
    # test files stay whole and are their own speakers
    assert d.segments["tcore"] == ("tcore", 0.0, -1.0) and d.utt2spk["tcore"] == "tcore"
    assert abs(d.utt2dur["mlong"] - replicas.SITW_LONG_S) < 1e-3
    assert rows(dst / "trials") == [
        ("mlong-0000250-0000900", "tcore", True), ("mlong-0001100-0001950", "tcore", False),
        ("mshrt-0000000-0000500", "tothr", False), ("mlong-0001100-0001950", "tothr", True),
    ]
    assert "3 enrolment segment(s) from enroll-assist.lst" in out
    # an annotation past the end of its file
    lst = src / "dev/lists/enroll-assist.lst"
    lst.write_text(lst.read_text().replace("1.950", "2.500"))
    refused(prepare("sitw", src, tmp_path / "o2", "--split", "dev", "--key", "assist-core"), tmp_path / "o2", "enroll-assist.lst:2: segment ends at 2.5 s, past the end of")
    replicas.write(lst, ["20d01 audio/mlong.flac 0.9 0.25"])
    refused(prepare("sitw", src, tmp_path / "o2", "--split", "dev", "--key", "assist-core"), tmp_path / "o2", "enroll-assist.lst:1: segment 0.9-0.25 s")


# ----------------------------------------------------------------------------- TEDx
def test_tedx_counts_before_sampling(tmp_path):
    src = tmp_path / "tedx"
    replicas.tedx(src)  # 15 files of 3-10 s: 16 target, 39 non-target same-gender pairs
    out = ok(prepare("tedx", src, tmp_path / "a", "--n-target", "4", "--n-nontarget", "8"))
    assert "pairs available among the 15 files kept: 16 target, 39 non-target" in out
    refused(
        prepare("tedx", src, tmp_path / "o2", "--n-target", "400000", "--n-nontarget", "1600000"), tmp_path / "o2",
        "--n-target 400000 --n-nontarget 1600000: the 15 files of 3.0-10.0 s give only 16 target (same-speaker) and 39 non-target",
    )
    refused(prepare("tedx", src, tmp_path / "o2", "--n-target", "1", "--n-nontarget", "40"), tmp_path / "o2", "only 16 target", "39 non-target")


@pytest.mark.parametrize("name", ["voxceleb1", "voxceleb2", "sitw", "sdsv", "dipco", "tedx", "musan", "rirs"])
def test_missing_root_refused(tmp_path, name):
    dst = tmp_path / "out"
    refused(prepare(name, tmp_path / "nowhere", dst), dst, "nowhere: not found (corpus root)")
