"""recipes/voxceleb/run.sh end to end, as a user runs it, on miniature replicas of the
corpora's *published* layouts (tests/replicas.py names the description each follows): CPU,
a 4-channel model, two optimiser steps per system, through `jeffreys experiment` to the table.

* every corpus present (each in a layout users unpack), then a re-run that redoes nothing;
* every optional corpus absent but SdSV, present without its key; training on two "nodes"
  (two torchrun agents on localhost, run.sh's NNODES/RDZV_ENDPOINT), the rest on one;
* run.sh's TARGET_WEIGHT switch (the paper's eq. 4 or the authors' code), down to the loss
  each system builds.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import replicas

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "recipes" / "voxceleb" / "run.sh"
BIN = Path(sys.executable).parent
SYSTEMS = ["aam", "aam_ls_wd", "aam_ls", "aam_jeffreys"]
REF_SYSTEMS = ["aam", "aam_ls_wd_ref", "aam_ls_ref", "aam_jeffreys_ref"]  # TARGET_WEIGHT=reference

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


def _env(tmp_path: Path, **paths) -> dict:
    """run.sh's environment: corpus roots (absent ones point nowhere), DATA, EXP, the tiny settings."""
    absent = str(tmp_path / "absent")
    corpora = {k: absent for k in ("VOX2", "VOX1", "MUSAN", "RIRS", "SITW", "SDSV", "TEDX", "DIPCO")}
    return dict(
        os.environ, **{**corpora, **{k: str(v) for k, v in paths.items()}},
        DATA=str(tmp_path / "data"), EXP=str(tmp_path / "exp"), NGPU="0", JEFFREYS=str(BIN / "jeffreys"),
        PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),  # torchrun, the experiment's launcher
        TRAIN_SET=TRAIN_SET, EXPERIMENT_SET="metrics.n_boot=20 probe.train_utts=6 figures=false",
        TEDX_OPTS="--n-target 6 --n-nontarget 12", OMP_NUM_THREADS="1",
    )


def _run(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["bash", str(RUN), *args], env=env, capture_output=True, text=True, timeout=900)
    if check:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _dipco_trials(path: Path) -> Path:
    ct = ["P05_S02_CT-0000010-0000025", "P06_S02_CT-0000030-0000050", "P05_S02_CT-0000050-0000065", "P06_S02_CT-0000070-0000090"]
    return replicas.write(path, [f"{a} {b} {'target' if a[:3] == b[:3] else 'nontarget'}" for i, a in enumerate(ct) for b in ct[i + 1:]])


def read_speakers(path: Path) -> list[str]:
    from jeffreys.data.datadir import read_datadir

    return read_datadir(path).speakers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_recipe_on_published_layouts(tmp_path):
    """All corpora, as unpacked: VoxCeleb2 dev m4a (converted once to FLAC, VOX2_CONVERT),
    VoxCeleb1's two zips in one folder with lhotse's vox1_meta.csv and SpeechBrain's meta/
    lists, MUSAN, RIRS_NOISES with the two room types voxceleb_trainer extracts, SITW with
    its assist lists beside the core ones, SdSV with the organisers' positional key, TEDx
    Spanish, DiPCo with the benchmark's trial list. All stages, then a re-run of 0-4."""
    src = tmp_path / "corpora"
    replicas.voxceleb2(src / "vox2")
    replicas.voxceleb1_merged(src / "vox1", meta=True, lists_in="meta")
    replicas.musan(src / "musan")
    replicas.rirs(src / "RIRS_NOISES", rooms=("smallroom", "mediumroom"))
    replicas.sitw(src / "sitw", assist=True)
    sdsv = replicas.sdsv(src / "sdsv", keyed=False)
    key = replicas.sdsv_positional_key(src / "sdsv_ref" / "keys.txt", sdsv["trials"])
    replicas.tedx(src / "tedx")
    replicas.dipco(src / "dipco")
    env = _env(tmp_path, VOX2=src / "vox2", VOX1=src / "vox1", MUSAN=src / "musan", RIRS=src / "RIRS_NOISES",
               SITW=src / "sitw", SDSV=src / "sdsv", SDSV_KEY=key, TEDX=src / "tedx", DIPCO=src / "dipco",
               DIPCO_TRIALS=_dipco_trials(tmp_path / "dipco_trials.txt"), VOX2_CONVERT="flac")
    r = _run(env)
    data, exp = tmp_path / "data", tmp_path / "exp"
    for d in ["voxceleb2_dev", "voxceleb2_dev_flac", "voxceleb1", "musan/noise", "rirs", "sitw/eval", "sdsv", "tedx", "dipco"]:
        assert (data / d / "utt2spk").is_file(), d
    assert "room types found: smallroom (4), mediumroom (4); absent: largeroom" in r.stdout
    assert {p.name for p in (data / "voxceleb1").glob("trials*")} == {"trials", "trials_O", "trials_E", "trials_H"}
    assert (data / "sdsv/trials").read_text().split() == [w for m, t, y in sdsv["trials"] for w in (m, t, y)]

    from jeffreys.data.datadir import read_datadir

    flac = read_datadir(data / "voxceleb2_dev_flac")
    assert flac.utts == read_datadir(data / "voxceleb2_dev").utts
    assert all(p.endswith(".flac") and p.startswith(str(data / "voxceleb2_dev_flac.audio")) for p in flac.wav.values())
    for s in SYSTEMS:  # trained from the converted files
        run = exp / "systems" / s / "seed-0" / "train"
        assert (run / "model.pt").is_file() and f"train: {data / 'voxceleb2_dev_flac'}\n" in (run / "config.yaml").read_text()
    res = json.loads((exp / "results.json").read_text())
    assert set(res["eval_sets"]) == {"Vox1-O", "Vox1-E", "Vox1-H", "SITW", "SdSV", "TEDx-es", "DiPCo"}
    assert all(res["eval_sets"][e]["trials"] for e in res["eval_sets"])  # all labelled, all scored
    assert res["systems"]["aam_jeffreys"]["label"] == "AAM-Jeffreys"
    assert set(res["comparisons"]["aam_jeffreys"]) == set(res["eval_sets"])
    table = (exp / "table.md").read_text()
    assert "| AAM-Softmax + LS w/o weight decay |" in table and "TEDx-es (out) EER %" in table and "SdSV (out) EER %" in table

    # Stages are re-runnable: preparation and training are skipped (the experiment's own
    # stamps are tested in tests/test_experiment.py).
    r2 = _run(env, "--stage", "0", "--stop-stage", "4")
    assert r2.stdout.count("exists, skipped") == 9, r2.stdout  # 8 prepared dirs and the conversion
    assert r2.stdout.count("trained model found") == 4 and "training" not in r2.stdout


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """Optional corpora absent but SdSV (no key); VoxCeleb1 unpacked together without
    vox1_meta.csv (split by speaker range) and its lists renamed elsewhere (WeSpeaker's
    copies, VOX1_TRIALS); all RIR room types. Stages 0-3, then stage 4 on two "nodes" at once."""
    tmp_path = tmp_path_factory.mktemp("two_nodes")
    src = tmp_path / "corpora"
    replicas.voxceleb2(src / "vox2")
    replicas.voxceleb1_merged(src / "vox1", lists_in=None)
    replicas.wespeaker_vox1_trials(tmp_path / "vox1_lists")
    replicas.musan(src / "musan")
    replicas.rirs(src / "RIRS_NOISES")
    sdsv = replicas.sdsv(src / "sdsv", keyed=False)
    env = _env(tmp_path, VOX2=src / "vox2", VOX1=src / "vox1", VOX1_TRIALS=tmp_path / "vox1_lists", MUSAN=src / "musan",
               RIRS=src / "RIRS_NOISES", SDSV=src / "sdsv")
    env["TRAIN_SET"] += " batch_size=4"  # 2 per process on two nodes (the demo model's embedding BatchNorm needs 2)
    prep = _run(env, "--stage", "0", "--stop-stage", "3")
    nodes_env = dict(env, NNODES="2", RDZV_ENDPOINT=f"127.0.0.1:{_free_port()}")
    nodes = [subprocess.Popen(["bash", str(RUN), "--stage", "4", "--stop-stage", "4"], env=nodes_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    # each of the 4 trainings may wait out torch elastic's 300 s exit barrier (test_train_ddp.py)
    outs = [p.communicate(timeout=1800) for p in nodes]
    return {"tmp": tmp_path, "env": env, "prep": prep, "nodes": [(p.returncode, *o) for p, o in zip(nodes, outs)], "sdsv": sdsv}


@pytest.mark.slow
def test_recipe_without_optional_corpora_trains_on_two_nodes(two_nodes):
    prep, data, exp = two_nodes["prep"], two_nodes["tmp"] / "data", two_nodes["tmp"] / "exp"
    for name in ("sitw", "tedx"):
        assert f"{name}: {two_nodes['env'][name.upper()]} not found, skipped (optional)" in prep.stdout
    assert "dipco: " in prep.stdout and "skipped (optional)" in prep.stdout
    assert (data / "sdsv/trial_pairs").is_file() and not (data / "sdsv/trials").exists()
    assert read_speakers(data / "rirs") == ["largeroom", "mediumroom", "smallroom"]
    assert {p.name for p in (data / "voxceleb1").glob("trials*")} == {"trials", "trials_O", "trials_E", "trials_H"}
    for rc, out, err in two_nodes["nodes"]:
        assert rc == 0, out[-3000:] + err[-3000:]
        assert "on each of 2 node(s)" in out and "--nnodes=2" in out and "trained: 4 runs" in out
    for s in SYSTEMS:
        result = json.loads((exp / "systems" / s / "seed-0" / "train" / "train_result.json").read_text())
        assert result["world_size"] == 2 and result["steps"] == 2


@pytest.mark.slow
def test_recipe_scores_keyless_sdsv_into_submission_files(two_nodes):
    tmp = two_nodes["tmp"]
    r = _run(two_nodes["env"], "--stage", "5", check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    exp = tmp / "exp"
    assert "evaluation set SdSV: no labelled trials" in r.stdout and "scored into submission files" in r.stdout
    data = tmp / "data"
    for name, d in (("SITW", "sitw/eval"), ("TEDx-es", "tedx"), ("DiPCo", "dipco")):
        assert f"evaluation set {name}: {data / d} absent, skipped (optional)" in r.stdout
    res = json.loads((exp / "results.json").read_text())
    assert set(res["eval_sets"]) == {"Vox1-O", "Vox1-E", "Vox1-H", "SdSV"}
    assert res["eval_sets"]["SdSV"]["trials"] is None and res["eval_sets"]["SdSV"]["submission_pairs"].endswith("trial_pairs")
    pairs = [(m, t) for m, t, _ in two_nodes["sdsv"]["trials"]]
    for s in SYSTEMS:
        lines = (exp / "systems" / s / "seed-0" / "submissions" / "SdSV.txt").read_text().splitlines()
        assert [tuple(x.split()[:2]) for x in lines] == pairs
        assert all(abs(float(x.split()[2])) <= 1 + 1e-6 for x in lines)  # cosines
        assert "SdSV" not in res["systems"][s]["eval"]
    table = (exp / "table.md").read_text()
    assert "Vox1-H (in) EER %" in table and "SdSV" not in table and "SITW" not in table


# ---- the reading of eq. 4 (run.sh's TARGET_WEIGHT) ---------------------------------------

def _losses(monkeypatch, target_weight: str, suffix: str) -> dict:
    """{system: (label, built loss, training config)} of conf/experiment.yaml under a reading."""
    from jeffreys.experiment import load_experiment, train_config_of

    for name, value in (("DATA", "data"), ("TARGET_WEIGHT", target_weight), ("SYSTEM_SUFFIX", suffix)):
        monkeypatch.setenv(name, value)
    exp = load_experiment(RUN.parent / "conf" / "experiment.yaml")
    out = {}
    for s in exp.systems:
        cfg = train_config_of(s, exp, 0)
        out[s.name] = (s.label, cfg.loss.build(), cfg)
    return out


def test_experiment_reads_eq4_as_printed_or_as_the_authors_code(monkeypatch):
    """Default (paper): -log p_k weighted by 1 in every system. reference: by 1-alpha-beta in
    LS (0.9) and Jeffreys (0.875), systems of their own (*_ref); the AAM baseline, which has
    no smoothing, is the very same training in both (same config, so one stamp)."""
    from jeffreys.config import to_dict

    paper = _losses(monkeypatch, "paper", "")
    ref = _losses(monkeypatch, "reference", "_ref")
    assert list(paper) == SYSTEMS and list(ref) == REF_SYSTEMS
    assert [paper[s][1].target_weight for s in SYSTEMS] == ["paper"] * 4
    assert [paper[s][1].ce_weight for s in SYSTEMS] == [1.0] * 4
    assert [ref[s][1].target_weight for s in REF_SYSTEMS] == ["paper", "reference", "reference", "reference"]
    assert [ref[s][1].ce_weight for s in REF_SYSTEMS] == pytest.approx([1.0, 0.9, 0.9, 0.875])
    assert ref["aam_jeffreys_ref"][0] == "AAM-Jeffreys_ref" and paper["aam_jeffreys"][0] == "AAM-Jeffreys"
    assert to_dict(ref["aam"][2]) == to_dict(paper["aam"][2])
    for s in SYSTEMS[1:]:  # nothing else differs between the readings
        a, b = to_dict(paper[s][2]), to_dict(ref[f"{s}_ref"][2])
        assert a.pop("loss").pop("target_weight") == "paper" and b.pop("loss").pop("target_weight") == "reference"
        assert a == b


def _stub_cli(tmp_path: Path) -> Path:
    """A stand-in for the CLI that loads the experiment run.sh hands it, with run.sh's
    --set overrides and environment, and prints what each system's loss is."""
    stub = tmp_path / "jeffreys-stub"
    stub.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "from jeffreys.config import parse_overrides\n"
        "from jeffreys.experiment import load_experiment, train_config_of\n"
        "args = sys.argv[1:]\n"
        "assert args[0] == 'experiment', args\n"
        "sets = [args[i + 1] for i, a in enumerate(args) if a == '--set']\n"
        "exp = load_experiment(args[1], parse_overrides(sets))\n"
        "losses = {s.name: train_config_of(s, exp, 0).loss.build() for s in exp.systems}\n"
        "print('LOSSES', json.dumps({n: [l.target_weight, l.ce_weight] for n, l in losses.items()}))\n"
    )
    stub.chmod(0o755)
    return stub


@pytest.mark.parametrize("reading", [None, "paper", "reference"])
def test_run_sh_target_weight_switch_reaches_the_losses(tmp_path, reading):
    env = {k: v for k, v in os.environ.items() if k not in ("TARGET_WEIGHT", "SYSTEM_SUFFIX")}
    env.update(DATA=str(tmp_path / "data"), EXP=str(tmp_path / "exp"), NGPU="0", JEFFREYS=str(_stub_cli(tmp_path)))
    if reading is not None:
        env["TARGET_WEIGHT"] = reading
    r = _run(env, "--stage", "4", "--stop-stage", "4")
    losses = json.loads(r.stdout.split("LOSSES ", 1)[1].splitlines()[0])
    if reading == "reference":
        assert f"({reading} weighting)" in r.stdout
        assert losses == {"aam": ["paper", 1.0], "aam_ls_wd_ref": ["reference", 0.9], "aam_ls_ref": ["reference", 0.9],
                          "aam_jeffreys_ref": ["reference", pytest.approx(0.875)]}
    else:  # unset: the paper's reading
        assert "(paper weighting)" in r.stdout
        assert losses == {s: ["paper", 1.0] for s in SYSTEMS}


def test_recipe_rejects_unknown_option_and_incomplete_settings(tmp_path):
    r = subprocess.run(["bash", str(RUN), "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option --bogus" in r.stderr
    env = dict(os.environ, DATA=str(tmp_path / "data"), EXP=str(tmp_path / "exp"))
    bad = subprocess.run(["bash", str(RUN)], env={**env, "VOX2_CONVERT": "mp3"}, capture_output=True, text=True)
    assert bad.returncode == 2 and "VOX2_CONVERT must be flac, wav or empty" in bad.stderr
    nodes = subprocess.run(["bash", str(RUN)], env={**env, "NNODES": "2"}, capture_output=True, text=True)
    assert nodes.returncode == 2 and "NNODES=2 needs RDZV_ENDPOINT=HOST:PORT" in nodes.stderr
    reading = subprocess.run(["bash", str(RUN)], env={**env, "TARGET_WEIGHT": "authors"}, capture_output=True, text=True)
    assert reading.returncode == 2 and "TARGET_WEIGHT must be paper or reference, got 'authors'" in reading.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "exp").exists()  # nothing made on a refusal
