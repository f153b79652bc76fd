"""The Table 1 runner on a miniature corpus with two tiny untrained models (no training here:
``tests/test_demo.py`` covers the train stage end to end)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from jeffreys.data.datadir import write_datadir
from jeffreys.errors import InputError
from jeffreys.experiment import load_experiment, run_experiment, subset_utts
from jeffreys.losses import build_head
from jeffreys.models import ResNetConfig, SpeakerModel, save_bundle

SR = 16000
TINY = ResNetConfig(widths=[4, 4, 4, 4], depths=[1, 1, 1, 1], num_mel_bins=20, embed_dim=8, stem_stride=2)


def _wav(path, spk: int, k: int):
    """Noise coloured per speaker (a speaker-specific resonance) so embeddings differ by speaker."""
    rng = np.random.default_rng(1000 * spk + k)
    n = int(SR * rng.uniform(0.6, 0.9))
    x = rng.standard_normal(n)
    f0 = 300 + 250 * spk
    t = np.arange(n) / SR
    x = 0.05 * x + 0.3 * np.sin(2 * np.pi * f0 * t) * (1 + 0.2 * np.sin(2 * np.pi * 3 * t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.5 * x / np.abs(x).max()).astype(np.float32), SR)
    return str(path)


def _datadir(root, name, speakers, per_spk, trials=False):
    wav, u2s = {}, {}
    for s in speakers:
        for k in range(per_spk):
            u = f"s{s:02d}-{name}-{k}"
            wav[u] = _wav(root / "wav" / name / f"{u}.wav", s, k)
            u2s[u] = f"s{s:02d}"
    rows = None
    if trials:
        utts = sorted(u2s)
        rows = [(a, b, u2s[a] == u2s[b]) for i, a in enumerate(utts) for b in utts[i + 1 :]]
    return write_datadir(root / name, wav, u2s, trials=rows)


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    _datadir(root, "train", range(6), 3)
    _datadir(root, "ind", range(10, 14), 3, trials=True)
    _datadir(root, "ood", range(20, 24), 3, trials=True)
    speakers = [f"s{s:02d}" for s in range(6)]
    for i, name in enumerate(("a", "b")):
        torch.manual_seed(i)
        save_bundle(root / f"{name}.pt", SpeakerModel(TINY), build_head("aam", 8, 6, scale=30.0, margin=0.2), speakers)
    return root


def _config(root, extra=None):
    cfg = {
        "systems": [{"name": "a", "label": "System A", "model": "a.pt"}, {"name": "b", "model": "b.pt"}],
        "train_data": "train",
        "eval_sets": [
            {"name": "ind", "data": "ind", "domain": "in"},
            {"name": "ood", "data": "ood", "domain": "out"},
            {"name": "absent", "data": "nowhere", "optional": True},
        ],
        "metrics": {"n_boot": 50},
        "probe": {"train_utts": 12},
    }
    cfg.update(extra or {})
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_runner_end_to_end_and_rerun_skips(mini, tmp_path):
    out = tmp_path / "out"
    res = run_experiment(load_experiment(_config(mini)), out, quiet=True)
    for f in ["table.md", "table.csv", "results.json", "gains.png", "det_ind.png", "det_ood.png",
              "probe_eer_vs_top.png", "probe_outputs.png", "nontarget_ind.png", "log.txt"]:
        assert (out / f).is_file(), f
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["systems"]) == {"a", "b"} and set(saved["eval_sets"]) == {"ind", "ood"}
    table = (out / "table.md").read_text()
    assert "System A" in table and "ind (in) EER %" in table and "absent" not in table

    # Scores are centred cosines with the mean of the training subset's embeddings,
    # recomputed here from the embedding files in float64.
    from jeffreys.embeddings import read_embeddings

    sdir = out / "systems" / "a" / "seed-0"
    _, temb = read_embeddings(next((sdir / "emb").glob("train*.scp")))
    assert len(temb) == 12
    mean = np.asarray(temb, dtype=np.float64).mean(axis=0)
    ids, emb = read_embeddings(next((sdir / "emb").glob("ind-*.scp")))
    e = {u: np.asarray(v, dtype=np.float64) - mean for u, v in zip(ids, emb)}
    lines = (sdir / "scores" / "ind.txt").read_text().split("\n")[:-1]
    for line in lines:
        a, b, s = line.split()
        want = e[a] @ e[b] / np.linalg.norm(e[a]) / np.linalg.norm(e[b])
        assert float(s) == pytest.approx(want, abs=2e-6)
    m = res["systems"]["a"]["eval"]["ind"]
    run = res["systems"]["a"]["runs"]["0"]["eval"]["ind"]
    assert m["n_target"] + m["n_nontarget"] == len(lines) == 66
    assert m["eer"] == run["eer"] == m["per_seed"]["eer"][0]  # one seed: the mean is that run
    assert m["ci"]["eer"][0] <= m["eer"] <= m["ci"]["eer"][1]
    assert 1 <= run["probe"]["mean_top_speakers"] <= 6
    c = res["comparisons"]["b"]["ind"]["eer"]
    assert c["reference"] == "a" and c["seeds"] == 1 and 0 < c["p"] <= 1 and c["ci"][0] <= c["diff_rel"] <= c["ci"][1]

    # What the numbers depend on, and a digest of each run's scores (jeffreys compare-runs).
    env = saved["environment"]
    assert env["seeds"] == [0] and env["torch"] == torch.__version__ and "cpu_flags" in env and "loss_kernel" in env
    digests = {(s, e): saved["systems"][s]["runs"]["0"]["eval"][e]["scores_sha256"] for s in ("a", "b") for e in ("ind", "ood")}
    assert all(len(d) == 64 for d in digests.values()) and len(set(digests.values())) == 4

    # Re-running skips every stage: no embedding file is rewritten.
    stamp = {p: p.stat().st_mtime_ns for p in (out / "systems").rglob("*.ark")}
    res2 = run_experiment(load_experiment(_config(mini)), out, quiet=True)
    assert {p: p.stat().st_mtime_ns for p in (out / "systems").rglob("*.ark")} == stamp
    assert res2["systems"]["a"]["eval"]["ind"]["eer"] == m["eer"]
    assert res2["systems"]["a"]["runs"]["0"]["eval"]["ind"]["scores_sha256"] == digests[("a", "ind")]
    assert "extracting" not in (out / "log.txt").read_text().split("results:")[-1]


def test_config_errors_name_file_and_key(mini):
    with pytest.raises(InputError, match=r"exp.yaml.*key 'systems\[0\].bogus'"):
        load_experiment(_config(mini, {"systems": [{"name": "a", "model": "a.pt", "bogus": 1}]}))
    with pytest.raises(InputError, match="duplicate system name 'a'"):
        load_experiment(_config(mini, {"systems": [{"name": "a", "model": "a.pt"}, {"name": "a", "model": "b.pt"}]}))
    with pytest.raises(InputError, match="reused 'model' takes no training"):
        load_experiment(_config(mini, {"systems": [{"name": "a", "model": "a.pt", "set": {"steps": 1}}]}))
    with pytest.raises(InputError, match="NO_SUCH_VAR"):
        load_experiment(_config(mini, {"train_data": "${NO_SUCH_VAR}/train"}))


def test_missing_inputs_are_named(mini, tmp_path):
    cfg = load_experiment(_config(mini, {"eval_sets": [{"name": "gone", "data": "nowhere"}]}))
    with pytest.raises(InputError, match="evaluation set 'gone'.*nowhere"):
        run_experiment(cfg, tmp_path / "o1", quiet=True)
    cfg = load_experiment(_config(mini, {"systems": [{"name": "x", "model": "missing.pt"}]}))
    with pytest.raises(InputError, match="missing.pt"):
        run_experiment(cfg, tmp_path / "o2", quiet=True)


def test_env_vars_in_paths(mini, monkeypatch):
    monkeypatch.setenv("JX_ROOT", str(mini))
    cfg = load_experiment(_config(mini, {"train_data": "${JX_ROOT}/train"}))
    assert cfg.train_data == os.path.realpath(mini / "train")


def test_subset_is_speaker_balanced_and_seeded(mini):
    from jeffreys.data.datadir import read_datadir

    dd = read_datadir(mini / "train")
    sub = subset_utts(dd, 7, seed=3)
    assert len(sub) == 7 and sub == subset_utts(dd, 7, seed=3)
    counts = np.bincount([int(dd.utt2spk[u][1:]) for u in sub])
    assert counts.max() - counts.min() <= 1
    assert subset_utts(dd, 0, 0) == dd.utts


def test_seeds_give_seed_means_and_the_comparisons_block(mini, tmp_path):
    for name in ("a", "b", "c"):  # one model per system and seed
        for seed in (0, 1):
            torch.manual_seed(100 * ord(name) + seed)
            save_bundle(mini / f"{name}{seed}.pt", SpeakerModel(TINY), build_head("aam", 8, 6, scale=30.0, margin=0.2),
                        [f"s{s:02d}" for s in range(6)])
    cfg = _config(mini, {"systems": [{"name": "a", "model": "a{seed}.pt"}, {"name": "b", "model": "b{seed}.pt"},
                                     {"name": "c", "model": "c{seed}.pt", "reference": "b"}],
                         "seeds": [0, 1], "eval_sets": [{"name": "ind", "data": "ind", "domain": "in"}]})
    out = tmp_path / "out"
    res = run_experiment(load_experiment(cfg), out, quiet=True)
    for s in ("a", "b", "c"):
        sysres = res["systems"][s]
        assert sysres["seeds"] == [0, 1] and set(sysres["runs"]) == {"0", "1"}
        per = [sysres["runs"][k]["eval"]["ind"]["eer"] for k in ("0", "1")]
        cell = sysres["eval"]["ind"]
        assert cell["per_seed"]["eer"] == per and cell["eer"] == pytest.approx(np.mean(per))
        assert cell["ci"]["by"] == "seed+speaker" and cell["ci"]["eer"][0] <= cell["eer"] <= cell["ci"]["eer"][1]
    saved = json.loads((out / "results.json").read_text())
    cmp = saved["comparisons"]
    assert set(cmp) == {"b", "c"}  # the baseline is compared with nothing
    for s, ref in (("b", "a"), ("c", "b")):
        for metric in ("eer", "min_dcf", "cllr"):
            c = cmp[s]["ind"][metric]
            assert set(c) == {"reference", "diff_rel", "ci", "p", "p_adjusted", "seeds", "seeds_better"}  # DESIGN.md's block
            assert c["reference"] == ref and c["seeds"] == 2 and 0 < c["p"] <= c["p_adjusted"] <= 1
        means = (res["systems"][s]["eval"]["ind"]["eer"], res["systems"][ref]["eval"]["ind"]["eer"])
        assert cmp[s]["ind"]["eer"]["diff_rel"] == pytest.approx((means[0] - means[1]) / means[1])
    # one family: 2 systems x 1 set x 3 metrics, adjusted by Holm (tests/test_multiplicity.py)
    assert saved["multiplicity"] == {"method": "holm", "family": 6}
    recs = [cmp[s]["ind"][m] for s in ("b", "c") for m in ("eer", "min_dcf", "cllr")]
    ps = sorted(c["p"] for c in recs)  # Holm by hand: running max of (6 - k) p_(k)
    holm = {p: max(min(1.0, (6 - k) * ps[k]) for k in range(i + 1)) for i, p in enumerate(ps)}
    assert [c["p_adjusted"] for c in recs] == pytest.approx([holm[c["p"]] for c in recs])
    assert list(recs[0])[:5] == ["reference", "diff_rel", "ci", "p", "p_adjusted"]
    table = (out / "table.md").read_text()
    assert "Holm over 6 comparisons" in table
    assert "Mean over 2 training seed(s) (0, 1)" in table and "| System | vs |" in table and "| c | b |" in table
    assert (out / "gains.png").is_file()
    with pytest.raises(InputError, match="one reused model for 2 seeds; put \\{seed\\} in its path"):
        load_experiment(_config(mini, {"systems": [{"name": "a", "model": "a.pt"}], "seeds": [0, 1]}))
    with pytest.raises(InputError, match="reference 'zz' is not another system"):
        load_experiment(_config(mini, {"systems": [{"name": "a", "model": "a.pt", "reference": "zz"}]}))


def test_parallel_evaluation_gives_the_same_results(mini, tmp_path):
    base = {"seeds": [0, 1], "systems": [{"name": "a", "model": "a{seed}.pt"}, {"name": "b", "model": "b{seed}.pt"}],
            "eval_sets": [{"name": "ind", "data": "ind", "domain": "in"}], "figures": True}
    for name in ("a", "b"):
        for seed in (0, 1):
            if not (mini / f"{name}{seed}.pt").is_file():
                torch.manual_seed(100 * ord(name) + seed)
                save_bundle(mini / f"{name}{seed}.pt", SpeakerModel(TINY), build_head("aam", 8, 6, scale=30.0, margin=0.2),
                            [f"s{s:02d}" for s in range(6)])
    one = run_experiment(load_experiment(_config(mini, base)), tmp_path / "one", quiet=True)
    two = run_experiment(load_experiment(_config(mini, {**base, "eval_jobs": 2})), tmp_path / "two", quiet=True)
    for s in ("a", "b"):
        assert one["systems"][s]["eval"] == two["systems"][s]["eval"]
        assert one["systems"][s]["runs"]["1"]["eval"] == two["systems"][s]["runs"]["1"]["eval"]
    assert one["comparisons"] == two["comparisons"] and (tmp_path / "two" / "probe_outputs.png").is_file()

    # The two runs checked against each other: the same numbers, one config key apart.
    from jeffreys.experiment.compare import compare_runs

    rep = compare_runs(tmp_path / "one", tmp_path / "two" / "results.json")
    assert rep["exit_status"] == 0 and rep["multiplicity"]["family"] == 2 * 3 and rep["bit_identical"] is True
    assert rep["config"]["differences"] == {"eval_jobs": [1, 2]} and rep["seeds_differ"] == {}
