"""`jeffreys prepare tedx`: the derived same-gender protocol against a brute-force pair list."""

from itertools import combinations

import numpy as np
import pytest
import replicas

from jeffreys.cli import main
from jeffreys.corpora import tedx
from jeffreys.data.datadir import read_datadir
from jeffreys.data.trials import read_trials


def brute_force(utts):
    """Every unordered same-gender pair, split by same/different speaker."""
    spk = {u: u.rsplit("_SPA_", 1)[0] for u in utts}
    target, nontarget = set(), set()
    for a, b in combinations(sorted(utts), 2):
        if spk[a].split("_")[1] != spk[b].split("_")[1]:
            continue
        (target if spk[a] == spk[b] else nontarget).add(frozenset((a, b)))
    return target, nontarget


def trial_sets(path):
    t = read_trials(path)
    pairs = [frozenset(p) for p in zip(t.enroll, t.test)]
    assert len(set(pairs)) == len(pairs)  # no pair drawn twice
    return {p for p, y in zip(pairs, t.label) if y}, {p for p, y in zip(pairs, t.label) if not y}


def test_all_pairs_equal_brute_force(tmp_path, capsys):
    src, dst = tmp_path / "tedx", tmp_path / "out"
    durs = replicas.tedx(src)
    target, nontarget = brute_force(durs)
    assert (len(target), len(nontarget)) == (16, 39)
    spk = [u.rsplit("_SPA_", 1)[0] for u in sorted(durs)]
    assert tedx.pair_counts(np.asarray(spk), np.asarray([s.split("_")[1] for s in spk])) == (16, 39)
    argv = ["prepare", "tedx", str(src), str(dst), "--n-target", "16", "--n-nontarget", "39"]
    assert main(argv) == 0
    d = read_datadir(dst)
    assert d.utts == sorted(durs)  # the 2 s and 11 s files are left out
    assert all(abs(d.utt2dur[u] - s) < 1e-3 for u, s in durs.items())
    assert d.utt2spk["TEDX_F_002_SPA_0001"] == "TEDX_F_002"
    assert (dst / "spk2gender").read_text().splitlines()[0] == "TEDX_F_001 f"
    assert trial_sets(dst / "trials") == (target, nontarget)
    out = capsys.readouterr().out
    assert "trials: 55 trials (16 target, 39 non-target)" in out and "2 file(s) outside" in out
    with pytest.raises(SystemExit):
        main(["prepare", "tedx", "--help"])
    assert "TEDX_G_NNN_SPA_NNNN" in capsys.readouterr().out


@pytest.mark.parametrize("enumerate_below", [tedx.ENUMERATE_BELOW, 0])
def test_subset_seeded(tmp_path, monkeypatch, enumerate_below):
    monkeypatch.setattr(tedx, "ENUMERATE_BELOW", enumerate_below)  # 0: rejection sampling
    src = tmp_path / "tedx"
    target, nontarget = brute_force(replicas.tedx(src))
    runs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert main(["prepare", "tedx", str(src), str(tmp_path / name), "--n-target", "5", "--n-nontarget", "8", "--seed", seed]) == 0
        runs[name] = (tmp_path / name / "trials").read_text()
        t, n = trial_sets(tmp_path / name / "trials")
        assert len(t) == 5 and len(n) == 8 and t <= target and n <= nontarget
    assert runs["a"] == runs["b"] and runs["a"] != runs["c"]


def test_rejection_sampling_is_uniform():
    # 3 speakers of one gender with 1, 1 and 2 utterances: 5 non-target pairs, each drawn
    # with probability 2/5 when 2 are requested; frequencies over many seeds must agree.
    import numpy as np

    spk, gender = np.array([0, 1, 2, 2]), np.array(["m"] * 4)
    counts: dict[tuple[int, int], int] = {}
    old, tedx.ENUMERATE_BELOW = tedx.ENUMERATE_BELOW, 0
    try:
        for seed in range(2000):
            for a, b in tedx.nontarget_pairs(spk, gender, 2, np.random.default_rng(seed)).tolist():
                counts[(a, b)] = counts.get((a, b), 0) + 1
    finally:
        tedx.ENUMERATE_BELOW = old
    assert set(counts) == {(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)}
    assert all(abs(c / 2000 - 0.4) < 0.05 for c in counts.values())


def test_errors(tmp_path, capsys):
    src, dst = tmp_path / "tedx", tmp_path / "out"
    replicas.tedx(src)
    assert main(["prepare", "tedx", str(src), str(dst), "--n-target", "17", "--n-nontarget", "1"]) == 2
    assert "give only 16 target (same-speaker) and 39 non-target (same-gender) distinct pairs" in capsys.readouterr().err
    assert main(["prepare", "tedx", str(src), str(dst), "--n-target", "1", "--n-nontarget", "40"]) == 2
    assert "give only 16 target (same-speaker) and 39 non-target" in capsys.readouterr().err
    replicas.audio(src / "speech/TEDX_M_001/notes.wav", 4.0, sr=replicas.TEDX_SR)
    assert main(["prepare", "tedx", str(src), str(dst), "--n-target", "1", "--n-nontarget", "1"]) == 2
    assert "notes.wav: file name does not follow" in capsys.readouterr().err
    assert main(["prepare", "tedx", str(tmp_path / "files"), str(dst)]) == 2
    assert "files: not found" in capsys.readouterr().err
    assert not dst.exists()
