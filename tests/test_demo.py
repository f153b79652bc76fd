"""`jeffreys demo --quick`: every stage of the demo on a tiny corpus, then the saved model in use."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from jeffreys.cli import main


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "| AAM-Jeffreys |" in printed and printed.count("replicates resampling") == 1
    assert "What these 2 seed(s) and evaluation speakers can separate" in printed
    res = json.loads((out / "results.json").read_text())
    # one family over the whole run: 3 systems x 4 sets x 3 metrics, less any NaN p
    recs = [c for per in res["comparisons"].values() for pm in per.values() for c in pm.values()]
    with_p = [c for c in recs if isinstance(c["p"], float)]
    assert len(recs) == 36 and res["multiplicity"] == {"method": "holm", "family": len(with_p)}
    assert all(c["p"] <= c["p_adjusted"] <= 1 for c in with_p)
    assert f"Holm over {len(with_p)} comparisons" in printed
    assert list(res["systems"]) == ["aam", "aam_ls_wd", "aam_ls", "aam_jeffreys"]
    domains = {k: v["domain"] for k, v in res["eval_sets"].items()}
    assert domains == {"in_domain": "in", "other_lang": "out", "telephone": "out", "reverberant": "out"}
    for f in ["table.md", "table.csv", "gains.png", "det_in_domain.png", "det_telephone.png",
              "probe_eer_vs_top.png", "probe_outputs.png", "nontarget_reverberant.png", "model.pt"]:
        assert (out / f).is_file(), f
    # Each system trained with its own loss and weight decay (the config as run is kept).
    import yaml

    ran = {s: yaml.safe_load((out / "systems" / s / "seed-1" / "train" / "config.yaml").read_text()) for s in res["systems"]}
    assert [ran[s]["loss"]["kind"] for s in res["systems"]] == ["ce", "ls", "ls", "jeffreys"]
    assert [ran[s]["optim"]["weight_decay"] > 0 for s in res["systems"]] == [True, True, False, False]
    assert ran["aam_jeffreys"]["loss"]["alpha"] == 0.1 and ran["aam_jeffreys"]["loss"]["beta"] == 0.025

    # The saved model carries the centring mean and a calibration fitted on the corpus's dev
    # speakers (held out from every reported split), and works with `jeffreys verify`
    # (exit 0 same speaker, 1 different).
    from jeffreys.data.datadir import read_datadir
    from jeffreys.models import load_bundle

    b = load_bundle(out / "model.pt")
    seed = b.meta["seed"]
    assert b.meta["system"] == "aam_jeffreys" and seed in res["systems"]["aam_jeffreys"]["seeds"]
    mean = np.load(out / "systems" / "aam_jeffreys" / f"seed-{seed}" / "mean.npy")
    assert np.allclose(b.meta["mean"], mean)
    assert set(b.meta["calibration"]) >= {"a", "b"} and "dev" in b.meta["threshold_source"]
    assert "dev" in (out / "calibration.txt").read_text().splitlines()[0]
    dev = set(read_datadir(out / "corpus" / "dev").speakers)
    for split in ("in_domain", "other_lang", "telephone", "reverberant", "train"):
        assert not dev & set(read_datadir(out / "corpus" / split).speakers)  # held out
    dd = read_datadir(out / "corpus" / "in_domain")
    utt = dd.utts[0]
    rc = main(["verify", str(out / "model.pt"), dd.wav[utt], dd.wav[utt]])
    assert rc == 0  # an utterance against itself: cosine 1 is above any threshold

    # A re-run reuses the corpus and every trained model and stamped stage.
    assert main(["demo", "--quick", "--out", str(out), "--seed", "1"]) == 0
    log = capsys.readouterr().out
    assert "corpus: reusing" in log and "trained model found" in log and "extracting" not in log

    # The optional real-voice stage, here on a copy of the in-domain split posing as recorded
    # voices: the systems' figures there must be their in-domain ones, the baseline's those of
    # MFCC statistics scored by hand, and each comparison the relative change of the two.
    import shutil

    from jeffreys.baseline import datadir_stats
    from jeffreys.data.trials import read_trials
    from jeffreys.metrics import evaluate

    rv = tmp_path / "rv" / "eval"
    shutil.copytree(out / "corpus" / "in_domain", rv)
    tri = read_trials(rv / "trials")
    (rv / "trials_same_gender").write_text("".join(f"{e} {t} {'target' if y else 'nontarget'}\n"
                                                   for e, t, y in zip(tri.enroll[::2], tri.test[::2], tri.label[::2])))
    assert main(["demo", "--quick", "--out", str(out), "--seed", "1", "--real-voices", str(rv.parent)]) == 0
    printed = capsys.readouterr().out
    assert "Real voices against the MFCC-statistics baseline" in printed and "| MFCC statistics (baseline) |" in printed
    rep = json.loads((out / "real_voices.json").read_text())
    assert list(rep["sets"]) == ["real", "real_same_gender"]  # no cross-language list: left out
    res = json.loads((out / "results.json").read_text())
    real = rep["sets"]["real"]
    for s in res["systems"]:
        want = res["systems"][s]["eval"]["in_domain"]["per_seed"]["eer"]
        assert real["systems"][s]["per_seed_eer"] == pytest.approx(want, abs=1e-12)
    (sub,) = (out / "train_subsets").iterdir()
    _, x_train, _ = datadir_stats(sub)
    utts, x, _ = datadir_stats(rv)
    z = {u: (v - x_train.mean(0)) / (x_train.std(0) + 1e-8) for u, v in zip(utts, x.astype(np.float64))}
    brute = [float(np.dot(z[e], z[t]) / np.linalg.norm(z[e]) / np.linalg.norm(z[t])) for e, t in zip(tri.enroll, tri.test)]
    base = evaluate(np.array(brute), tri.label)["eer"]
    assert real["systems"]["mfcc_stats"]["eer"] == pytest.approx(base, abs=1e-9)
    stage = [c for r in rep["sets"].values() for pm in r["vs_baseline"].values() for c in pm.values()]
    assert len(stage) == 4 * 2 * 3  # its own family, apart from results.json's
    assert rep["multiplicity"] == {"method": "holm", "family": sum(c["p_adjusted"] is not None for c in stage)}
    assert f"{rep['multiplicity']['family']} comparisons (every system, list and metric of this stage" in printed
    jef = real["vs_baseline"]["aam_jeffreys"]["eer"]
    assert jef["reference"] == "mfcc_stats"
    assert jef["diff_rel"] == pytest.approx((real["systems"]["aam_jeffreys"]["eer"] - base) / base, rel=1e-9)
    assert main(["demo", "--quick", "--out", str(out), "--seed", "1", "--real-voices", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no real-voice evaluation set" in err and str(tmp_path) in err and "\n" not in err


def test_demo_help():
    r = subprocess.run([sys.executable, "-m", "jeffreys", "demo", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--quick" in r.stdout and "Table 1" in r.stdout


@pytest.mark.slow
def test_study_speakers_quick(tmp_path, capsys):
    """`--study speakers` on a tiny corpus: six systems, each AAM-Jeffreys compared with the AAM
    of its own size, and the figure of that effect against the number of speakers."""
    out = tmp_path / "study"
    assert main(["demo", "--study", "speakers", "--quick", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert list(res["systems"]) == ["aam_200", "jeffreys_200", "aam_1000", "jeffreys_1000", "aam_3000", "jeffreys_3000"]
    refs = {s: next(iter(per.values()))["eer"]["reference"] for s, per in res["comparisons"].items()}
    assert refs == {"jeffreys_200": "aam_200", "aam_1000": "aam_200", "jeffreys_1000": "aam_1000",
                    "aam_3000": "aam_200", "jeffreys_3000": "aam_3000"}
    assert res["multiplicity"]["method"] == "holm" and 0 < res["multiplicity"]["family"] <= 5 * 3 * 3
    assert (out / "effect_vs_speakers.png").stat().st_size > 10_000
    assert not (out / "model.pt").exists()  # the study saves no demo model
