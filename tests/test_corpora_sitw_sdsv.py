"""`jeffreys prepare sitw|sdsv`: enrolment models mapped onto utterances, published trials kept."""

import pytest
import replicas

from jeffreys.cli import main
from jeffreys.data.datadir import read_datadir
from jeffreys.data.trials import read_trials


def test_sitw_both_splits(tmp_path, capsys):
    src, dst = tmp_path / "sitw", tmp_path / "out"
    keys = replicas.sitw(src)
    assert main(["prepare", "sitw", str(src), str(dst)]) == 0
    for split, lines in keys.items():
        d = read_datadir(dst / split)
        assert len(d.utts) == 4
        enroll = dict(line.split() for line in (src / split / "lists/enroll-core.lst").read_text().splitlines())
        assert d.utt2spk[enroll[f"10{split[0]}01"].split("/")[1][:-5]] == f"10{split[0]}01"
        t = read_trials(dst / split / "trials")
        expected = [(enroll[m][6:-5], f[6:-5], y == "tgt") for m, f, y in (x.split() for x in lines)]
        assert list(zip(t.enroll, t.test, t.label.tolist())) == expected
        assert (dst / split / "models").read_text().splitlines()[0] == f"10{split[0]}01 {enroll[f'10{split[0]}01'][6:-5]}"
    out = capsys.readouterr().out
    assert out.count("trials: 3 trials (1 target, 2 non-target)") == 2


def test_sitw_one_split_is_dst_and_errors(tmp_path, capsys):
    src, dst = tmp_path / "sitw", tmp_path / "out"
    replicas.sitw(src)
    assert main(["prepare", "sitw", str(src), str(dst), "--split", "eval", "--no-durations"]) == 0
    assert len(read_trials(dst / "trials")) == 3 and not (dst / "eval").exists()
    # a key naming a file that is not in audio/
    (src / "dev/audio/abcde.flac").unlink()
    assert main(["prepare", "sitw", str(src), str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "core-core.lst:3: audio/abcde.flac" in err and not (tmp_path / "o2").exists()
    assert main(["prepare", "sitw", str(src), str(tmp_path / "o2"), "--drop-missing"]) == 0
    assert len(read_trials(tmp_path / "o2/dev/trials")) == 2
    # bad layouts: no keys, bad label, model without enrolment
    (src / "eval/keys/core-core.lst").rename(src / "eval/keys/x.lst")
    assert main(["prepare", "sitw", str(src), str(tmp_path / "o3"), "--split", "eval"]) == 2
    assert f"{src / 'eval/keys/core-core.lst'}: not found" in capsys.readouterr().err
    replicas.write(src / "eval/keys/core-core.lst", ["10e01 audio/bcdef.flac maybe"])
    assert main(["prepare", "sitw", str(src), str(tmp_path / "o3"), "--split", "eval"]) == 2
    assert "core-core.lst:1: label must be tgt or imp" in capsys.readouterr().err
    replicas.write(src / "eval/keys/core-core.lst", ["10e09 audio/bcdef.flac tgt"])
    assert main(["prepare", "sitw", str(src), str(tmp_path / "o3"), "--split", "eval"]) == 2
    assert "model '10e09' is not in" in capsys.readouterr().err
    assert not (tmp_path / "o3").exists()


def test_sdsv_keyed(tmp_path, capsys):
    src, dst = tmp_path / "sdsv", tmp_path / "out"
    rep = replicas.sdsv(src, keyed=True)
    assert main(["prepare", "sdsv", str(src), str(dst)]) == 0
    d = read_datadir(dst)
    assert len(d.utts) == 6
    assert d.utt2spk["enr_000002"] == "model_00001" and d.utt2spk["evl_000001"] == "evl_000001"
    assert (dst / "models").read_text().splitlines() == [f"{m} {' '.join(u)}" for m, u in rep["models"].items()]
    t = read_trials(dst / "trials")
    assert list(zip(t.enroll, t.test, t.label.tolist())) == [(m, e, y == "target") for m, e, y in rep["trials"]]
    assert "trials: 3 trials (1 target, 2 non-target)" in capsys.readouterr().out


def test_sdsv_unkeyed_and_key_file(tmp_path, capsys):
    src, dst = tmp_path / "sdsv", tmp_path / "out"
    rep = replicas.sdsv(src, keyed=False)
    assert main(["prepare", "sdsv", str(src), str(dst)]) == 0
    assert (dst / "trial_pairs").read_text().splitlines() == [f"{m} {e}" for m, e, _ in rep["trials"]]
    assert not (dst / "trials").exists()
    assert "no key" in capsys.readouterr().out
    key = replicas.write(tmp_path / "key.txt", [f"{m} {e} {y}" for m, e, y in reversed(rep["trials"])])
    assert main(["prepare", "sdsv", str(src), str(tmp_path / "o2"), "--key", str(key)]) == 0
    assert read_trials(tmp_path / "o2/trials").label.tolist() == [False, True, False]
    replicas.write(key, [f"{m} {e} {y}" for m, e, y in rep["trials"][:2]])
    assert main(["prepare", "sdsv", str(src), str(tmp_path / "o3"), "--key", str(key)]) == 2
    assert "trials.txt:4: trial model_00001 evl_000002 has no label" in capsys.readouterr().err


def test_sdsv_absent_files(tmp_path, capsys):
    src, dst = tmp_path / "sdsv", tmp_path / "out"
    replicas.sdsv(src, keyed=True)
    (src / "wav/enrollment/enr_000004.wav").unlink()
    assert main(["prepare", "sdsv", str(src), str(dst)]) == 2
    assert "model_enrollment.txt:3: enr_000004" in capsys.readouterr().err and not dst.exists()
    assert main(["prepare", "sdsv", str(src), str(dst), "--drop-missing"]) == 0
    out = capsys.readouterr().out
    assert "1 model(s) dropped" in out and "trials: 2 trials (1 target, 1 non-target); 1 dropped" in out
    assert (dst / "models").read_text().splitlines() == ["model_00001 enr_000001 enr_000002 enr_000003"]


@pytest.mark.parametrize("missing", ["docs/model_enrollment.txt", "docs/trials.txt", "wav/evaluation"])
def test_sdsv_bad_layout(tmp_path, capsys, missing):
    import shutil

    src, dst = tmp_path / "sdsv", tmp_path / "out"
    replicas.sdsv(src, keyed=True)
    p = src / missing
    shutil.rmtree(p) if p.is_dir() else p.unlink()
    assert main(["prepare", "sdsv", str(src), str(dst)]) == 2
    assert f"{p}: not found" in capsys.readouterr().err and not dst.exists()


def test_sitw_and_sdsv_functions(tmp_path):
    """prepare_sitw / prepare_sdsv called directly: the CLI's output, InputError on bad input."""
    from jeffreys.corpora import prepare_sdsv, prepare_sitw
    from jeffreys.errors import InputError

    src = tmp_path / "sitw"
    keys = replicas.sitw(src)
    dst = prepare_sitw(src, tmp_path / "s", split="eval", measure_durations=False, jobs=1)
    t = read_trials(dst / "trials")
    assert len(t) == len(keys["eval"]) and t.label.tolist() == [False, True, False]
    with pytest.raises(InputError, match="unknown key 'core-everything'"):
        prepare_sitw(src, tmp_path / "s2", key="core-everything")
    src = tmp_path / "sdsv"
    rep = replicas.sdsv(src)
    key = replicas.sdsv_positional_key(tmp_path / "keys.txt", rep["trials"])
    dst = prepare_sdsv(src, tmp_path / "d", key=key, measure_durations=False)
    assert read_trials(dst / "trials").label.tolist() == [y == "target" for _, _, y in rep["trials"]]
    with pytest.raises(InputError, match="labels for the 3 trials"):
        prepare_sdsv(src, tmp_path / "d2", key=replicas.write(tmp_path / "k2.txt", ["1"]))
    assert not (tmp_path / "s2").exists() and not (tmp_path / "d2").exists()
