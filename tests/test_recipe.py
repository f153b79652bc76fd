"""recipes/voxceleb/run.sh end to end on miniature replicas of every corpus (CPU preset, a
few training steps): all stages, then a re-run that redoes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import replicas

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "recipes" / "voxceleb" / "run.sh"

# Tiny model and two optimiser steps per system: the recipe's plumbing, not its accuracy.
TRAIN_SET = " ".join([
    "model.preset=demo",
    "model.widths=[4,4,4,4]",
    "model.embed_dim=8",
    "model.num_mel_bins=20",
    "data.chunk_seconds=0.5",
    "data.num_workers=0",
    "data.augment.prob=0.5",
    "batch_size=2",
    "steps=2",
    "checkpoint_every=1",
    "device=cpu",
])


def _vox1_lists(src: Path) -> None:
    """Trial lists with targets and non-targets in each (the replica's H list has one trial)."""
    dev = ["id10001/1zcIwhmdeo4/00001.wav", "id10001/7gWzIy6yIIk/00002.wav", "id10002/0_laIeN-Q44/00001.wav", "id10002/0_laIeN-Q44/00002.wav"]
    test = ["id10270/5r0dWxy17C8/00001.wav", "id10270/x6uYqmx31kE/00002.wav", "id10271/1gtz-CUIygI/00001.wav", "id10271/1gtz-CUIygI/00002.wav"]
    pairs = lambda us: [f"{int(a.split('/')[0] == b.split('/')[0])} {a} {b}" for i, a in enumerate(us) for b in us[i + 1:]]  # noqa: E731
    replicas.write(src / "veri_test2.txt", pairs(test))
    replicas.write(src / "list_test_all2.txt", pairs(dev[:2] + test[:2]))
    replicas.write(src / "list_test_hard2.txt", pairs(dev))


def _dipco_trials(path: Path) -> Path:
    ct = ["P05_S02_CT-0000010-0000025", "P06_S02_CT-0000030-0000050", "P05_S02_CT-0000050-0000065", "P06_S02_CT-0000070-0000090"]
    return replicas.write(path, [f"{a} {b} {'target' if a[:3] == b[:3] else 'nontarget'}" for i, a in enumerate(ct) for b in ct[i + 1:]])


@pytest.mark.slow
def test_recipe_on_replicas(tmp_path):
    src = tmp_path / "corpora"
    replicas.voxceleb2(src / "vox2")
    replicas.voxceleb1(src / "vox1")
    _vox1_lists(src / "vox1")
    replicas.musan(src / "musan")
    replicas.rirs(src / "RIRS_NOISES")
    replicas.sitw(src / "sitw")
    replicas.sdsv(src / "sdsv", keyed=True)
    replicas.tedx(src / "tedx")
    replicas.dipco(src / "dipco")
    env = dict(
        os.environ,
        VOX2=str(src / "vox2"), VOX1=str(src / "vox1"), MUSAN=str(src / "musan"), RIRS=str(src / "RIRS_NOISES"),
        SITW=str(src / "sitw"), SDSV=str(src / "sdsv"), TEDX=str(src / "tedx"), DIPCO=str(src / "dipco"),
        DIPCO_TRIALS=str(_dipco_trials(tmp_path / "dipco_trials.txt")),
        TEDX_OPTS="--n-target 6 --n-nontarget 12",
        DATA=str(tmp_path / "data"), EXP=str(tmp_path / "exp"), NGPU="0",
        JEFFREYS=str(Path(sys.executable).parent / "jeffreys"),
        TRAIN_SET=TRAIN_SET,
        EXPERIMENT_SET="metrics.n_boot=20 probe.train_utts=6 figures=false",
        OMP_NUM_THREADS="1",
    )
    r = subprocess.run(["bash", str(RUN)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for d in ["voxceleb2_dev", "voxceleb1", "musan/noise", "rirs", "sitw/eval", "sdsv", "tedx", "dipco"]:
        assert (tmp_path / "data" / d / "utt2spk").is_file(), d
    for sys_ in ["aam", "aam_ls_wd", "aam_ls", "aam_jeffreys"]:
        assert (tmp_path / "exp" / "systems" / sys_ / "seed-0" / "train" / "model.pt").is_file()
    res = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert set(res["eval_sets"]) == {"Vox1-O", "Vox1-E", "Vox1-H", "SITW", "SdSV", "TEDx-es", "DiPCo"}
    assert res["systems"]["aam_jeffreys"]["label"] == "AAM-Jeffreys"
    table = (tmp_path / "exp" / "table.md").read_text()
    assert "| AAM-Softmax + LS w/o weight decay |" in table and "TEDx-es (out) EER %" in table

    # Stages are re-runnable: preparation and training are skipped (the experiment's own
    # stamps are tested in tests/test_experiment.py).
    r2 = subprocess.run(["bash", str(RUN), "--stage", "0", "--stop-stage", "4"], env=env, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stdout[-3000:] + r2.stderr[-3000:]
    assert "voxceleb1: " in r2.stdout and "tedx: " in r2.stdout and "exists, skipped" in r2.stdout
    assert r2.stdout.count("trained model found") == 4 and "training" not in r2.stdout


def test_recipe_rejects_unknown_option():
    r = subprocess.run(["bash", str(RUN), "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option --bogus" in r.stderr


def test_recipe_prepares_published_layouts(tmp_path):
    """Stages 0-3 on the layouts users unpack (tests/replicas.py): VoxCeleb1's zips unpacked
    together with its lists elsewhere (VOX1_TRIALS), RIRS_NOISES with two room types,
    SdSV without its key, VoxCeleb2 converted once to FLAC (VOX2_CONVERT); then a re-run
    that redoes nothing."""
    src = tmp_path / "corpora"
    replicas.voxceleb2(src / "vox2")
    replicas.voxceleb1_merged(src / "vox1", lists_in=None)
    replicas.wespeaker_vox1_trials(tmp_path / "vox1_lists")
    replicas.musan(src / "musan")
    replicas.rirs(src / "RIRS_NOISES", rooms=("smallroom", "mediumroom"))
    replicas.sitw(src / "sitw")
    replicas.sdsv(src / "sdsv", keyed=False)
    replicas.tedx(src / "tedx")
    env = dict(
        os.environ,
        VOX2=str(src / "vox2"), VOX1=str(src / "vox1"), VOX1_TRIALS=str(tmp_path / "vox1_lists"),
        MUSAN=str(src / "musan"), RIRS=str(src / "RIRS_NOISES"), SITW=str(src / "sitw"), SDSV=str(src / "sdsv"),
        TEDX=str(src / "tedx"), DIPCO=str(src / "absent"), TEDX_OPTS="--n-target 6 --n-nontarget 12",
        VOX2_CONVERT="flac", DATA=str(tmp_path / "data"), EXP=str(tmp_path / "exp"), NGPU="0",
        JEFFREYS=str(Path(sys.executable).parent / "jeffreys"), OMP_NUM_THREADS="1",
    )
    r = subprocess.run(["bash", str(RUN), "--stage", "0", "--stop-stage", "3"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    data = tmp_path / "data"
    from jeffreys.data.datadir import read_datadir

    flac = read_datadir(data / "voxceleb2_dev_flac")
    assert flac.utts == read_datadir(data / "voxceleb2_dev").utts
    assert all(p.endswith(".flac") and p.startswith(str(data / "voxceleb2_dev_flac.audio")) for p in flac.wav.values())
    assert {p.name for p in (data / "voxceleb1").glob("trials*")} == {"trials", "trials_O", "trials_E", "trials_H"}
    assert read_datadir(data / "rirs").speakers == ["mediumroom", "smallroom"]
    assert (data / "sdsv/trial_pairs").is_file() and not (data / "sdsv/trials").exists()
    assert "room types found: smallroom (4), mediumroom (4); absent: largeroom" in r.stdout
    assert "dipco: " in r.stdout and "skipped (optional)" in r.stdout
    r2 = subprocess.run(["bash", str(RUN), "--stage", "0", "--stop-stage", "3"], env=env, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0 and r2.stdout.count("exists, skipped") == 8, r2.stdout
    bad = subprocess.run(["bash", str(RUN), "--stage", "0", "--stop-stage", "0"], env={**env, "VOX2_CONVERT": "mp3"}, capture_output=True, text=True)
    assert bad.returncode == 2 and "VOX2_CONVERT must be flac, wav or empty" in bad.stderr
