"""Training loop: the paper's four configs, schedules, experiment dir, non-finite stop, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from jeffreys.cli import main
from jeffreys.config import load_yaml
from jeffreys.errors import InputError
from jeffreys.models import load_bundle
from jeffreys.schedules import ScheduleConfig, learning_rate, margin
from jeffreys.config import parse_overrides
from jeffreys.train import TrainingError, load_train_config, train

from train_helpers import make_datadir, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "recipes" / "voxceleb" / "conf"
PAPER = ["aam", "aam_ls_wd", "aam_ls", "aam_jeffreys"]


@pytest.fixture(scope="module")
def datadir(tmp_path_factory):
    return make_datadir(tmp_path_factory.mktemp("data"))


def _config(tmp_path: Path, datadir: Path, text: str = "", *extra: str, steps: int | None = None):
    path = tmp_path / "system.yaml"
    path.write_text(text)
    return load_train_config(path, tiny_overrides(datadir, *extra, steps=steps))


# ---- the paper's systems ---------------------------------------------------------------

def _paper_configs(monkeypatch) -> dict:
    """The four systems' training configs as the recipe's experiment assembles them."""
    from jeffreys.experiment import load_experiment, train_config_of

    monkeypatch.setenv("DATA", "data")
    monkeypatch.setenv("TARGET_WEIGHT", "paper")  # run.sh's default reading (tests/test_recipe.py: the other)
    monkeypatch.setenv("SYSTEM_SUFFIX", "")
    exp = load_experiment(CONF / "experiment.yaml")
    return {s.name: train_config_of(s, exp, 0) for s in exp.systems}


def test_paper_configs_state_table_1(monkeypatch):
    cfgs = _paper_configs(monkeypatch)
    assert list(cfgs) == list(PAPER)
    for cfg in cfgs.values():
        assert (cfg.model.preset, cfg.head.kind, cfg.head.scale, cfg.head.margin) == ("paper", "aam", 30.0, 0.2)
        assert (cfg.optim.lr, cfg.optim.momentum, cfg.data.chunk_seconds) == (0.2, 0.9, 4.0)
        assert cfg.data.augment.prob > 0
    assert (cfgs["aam"].loss.kind, cfgs["aam"].optim.weight_decay) == ("ce", 2e-4)
    assert (cfgs["aam_ls_wd"].loss.kind, cfgs["aam_ls_wd"].loss.alpha, cfgs["aam_ls_wd"].optim.weight_decay) == ("ls", 0.1, 2e-4)
    assert (cfgs["aam_ls"].loss.kind, cfgs["aam_ls"].loss.alpha, cfgs["aam_ls"].optim.weight_decay) == ("ls", 0.1, 0.0)
    j = cfgs["aam_jeffreys"]
    assert (j.loss.kind, j.loss.alpha, j.loss.beta, j.optim.weight_decay) == ("jeffreys", 0.1, 0.025, 0.0)
    assert [cfgs[n].loss.target_weight for n in PAPER[1:]] == ["paper"] * 3  # eq. 4 as printed: -log p_k weighted by 1


@pytest.mark.parametrize("name", PAPER)
def test_paper_config_trains_a_few_steps(tmp_path, datadir, name, monkeypatch):
    from jeffreys.config import save_config

    save_config(_paper_configs(monkeypatch)[name], tmp_path / "system.yaml")
    overrides = tiny_overrides(
        datadir, "data.augment.musan=null", "data.augment.rirs=null", "data.augment.simulated_rirs=2",
        f"data.augment.cache_dir={tmp_path / 'cache'}", "data.num_workers=0", "checkpoint_every=1", steps=2,
    )
    overrides = [o for o in overrides if not o.startswith("data.augment.prob")]  # keep the recipe's augmentation
    cfg = load_train_config(tmp_path / "system.yaml", overrides)
    exp = tmp_path / "exp"
    bundle = train(cfg, exp)
    b = load_bundle(bundle)
    assert b.speakers == [f"spk{i}" for i in range(4)]
    assert b.head_config["margin"] == 0.2 and b.meta["steps"] == 2
    assert b.meta["train_data"] == {"data": str(datadir), "speakers": 4, "utterances": 16, "corpus": None, "synthetic": False}
    assert load_yaml(exp / "config.yaml")["loss"]["kind"] == cfg.loss.kind
    assert (exp / "labels.txt").read_text().splitlines()[0] == "spk0 0"
    assert [p.name for p in sorted((exp / "checkpoints").iterdir())] == ["step-00000001.pt", "step-00000002.pt"]
    assert list((exp / "tb").glob("events.out.tfevents.*"))
    result = json.loads((exp / "train_result.json").read_text())
    assert result["steps"] == 2 and math.isfinite(result["last"]["loss"])
    # The loss terms are logged, and each is what the config's regulariser weighs.
    assert {"ce", "ls", "jeffreys", "loss", "accuracy"} <= set(result["last"])


def test_tensorboard_scalars_and_log(tmp_path, datadir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    text = "loss: {kind: jeffreys}\nschedule: {warmup_epochs: 1, margin_ramp_epochs: 2}\n"
    cfg = _config(tmp_path, datadir, text, "epochs=2")
    train(cfg, tmp_path / "exp")
    acc = EventAccumulator(str(tmp_path / "exp" / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/ce", "train/ls", "train/jeffreys", "train/accuracy", "train/lr", "train/margin"} <= tags
    lrs = [e.value for e in acc.Scalars("train/lr")]
    margins = [e.value for e in acc.Scalars("train/margin")]
    assert len(lrs) == 8  # 16 chunks / batch 4 = 4 steps per epoch, log_every 1
    # Logged values are the schedule's (steps 0..7 with 4 steps per epoch).
    s = cfg.schedule
    assert lrs == pytest.approx([learning_rate(i, 8, 4, 0.2, s) for i in range(8)])
    assert margins == pytest.approx([margin(i, 4, 0.2, s) for i in range(8)])
    assert margins[0] == pytest.approx(0.025) and margins[-1] == pytest.approx(0.2)
    log = (tmp_path / "exp" / "train.log").read_text()
    assert "step 8/8 epoch 2 lr 5e-05 margin 0.2000" in log


# ---- schedules -------------------------------------------------------------------------

def test_learning_rate_schedule_by_hand():
    s = ScheduleConfig(warmup_epochs=1, warmup_start=0.1, decay="exponential", final_lr=0.002)
    # 10 steps per epoch, 111 steps: warm-up 0.02 → 0.2 over steps 0..9, then geometric
    # decay over steps 10..110 to 0.002.
    assert learning_rate(0, 111, 10, 0.2, s) == pytest.approx(0.02)
    assert learning_rate(5, 111, 10, 0.2, s) == pytest.approx(0.02 + 0.18 * 0.5)
    assert learning_rate(10, 111, 10, 0.2, s) == pytest.approx(0.2)
    assert learning_rate(60, 111, 10, 0.2, s) == pytest.approx(0.02)  # halfway in log space
    assert learning_rate(110, 111, 10, 0.2, s) == pytest.approx(0.002)
    c = ScheduleConfig(decay="cosine", final_lr=0.0)
    assert learning_rate(50, 101, 10, 0.2, c) == pytest.approx(0.1)
    assert learning_rate(100, 101, 10, 0.2, c) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(77, 101, 10, 0.2, ScheduleConfig(decay="none")) == 0.2


def test_margin_ramp_by_hand():
    s = ScheduleConfig(margin_start_epoch=1, margin_ramp_epochs=2)
    assert [margin(i, 2, 0.2, s) for i in range(7)] == pytest.approx([0, 0, 0.05, 0.1, 0.15, 0.2, 0.2])
    assert margin(0, 2, 0.2, ScheduleConfig()) == 0.2


def test_schedules_per_run_are_the_same_whatever_the_epoch_length():
    """per: run: timings are fractions of the run, so 8 steps of 2 per epoch and 8 steps of
    8 per epoch follow one schedule; per epoch they do not."""
    run = ScheduleConfig(warmup_epochs=0.25, margin_start_epoch=0.25, margin_ramp_epochs=0.5, per="run")
    for spe in (2, 8):
        assert [learning_rate(i, 8, spe, 0.1, run) for i in range(8)] == pytest.approx(
            [learning_rate(i, 8, 4, 0.1, ScheduleConfig(warmup_epochs=0.5, final_lr=5e-5)) for i in range(8)])
        assert [margin(i, spe, 0.2, run, total_steps=8) for i in range(8)] == pytest.approx([0, 0, 0.05, 0.1, 0.15, 0.2, 0.2, 0.2])
    epoch = ScheduleConfig(warmup_epochs=0.25)
    assert learning_rate(1, 8, 2, 0.1, epoch) != learning_rate(1, 8, 8, 0.1, epoch)
    with pytest.raises(ValueError, match="total steps"):
        margin(0, 2, 0.2, run)


# ---- failures --------------------------------------------------------------------------

def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, datadir, monkeypatch):
    monkeypatch.setenv("JEFFREYS_TRAIN_FAULT", "nan@3")
    cfg = _config(tmp_path, datadir, "", "checkpoint_every=2", steps=6)
    exp = tmp_path / "exp"
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at step 3 \(epoch 1\).*step-00000002\.pt"):
        train(cfg, exp)
    assert [p.name for p in (exp / "checkpoints").iterdir()] == ["step-00000002.pt"]
    assert not (exp / "model.pt").exists()
    assert "non-finite loss (nan) at step 3" in (exp / "train.log").read_text()


def _train_cli_error(tmp_path, datadir, capsys, steps: int) -> str:
    """`jeffreys train` on the tiny data: it must fail with exit 2 and one line; that line."""
    conf = tmp_path / "c.yaml"
    conf.write_text("")
    sets = [a for o in tiny_overrides(datadir, steps=steps) for a in ("--set", o)]
    rc = main(["train", str(conf), "--exp-dir", str(tmp_path / "exp"), *sets])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    return err


def test_cli_reports_a_non_finite_loss_in_one_line(tmp_path, datadir, monkeypatch, capsys):
    monkeypatch.setenv("JEFFREYS_TRAIN_FAULT", "nan@1")
    err = _train_cli_error(tmp_path, datadir, capsys, steps=2)
    assert err.startswith("jeffreys train: error: non-finite loss (nan) at step 1") and "no checkpoint was written yet" in err


def test_cli_reports_a_required_but_missing_loss_kernel_in_one_line(tmp_path, datadir, monkeypatch, capsys,
                                                                      fresh_library):
    monkeypatch.setenv("JEFFREYS_LOSS_KERNEL", "on")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("JEFFREYS_CACHE_DIR", str(tmp_path / "cache"))
    err = _train_cli_error(tmp_path, datadir, capsys, steps=1)
    assert err.startswith("jeffreys train: error: no C compiler: ") and "JEFFREYS_LOSS_KERNEL=off" in err


def test_config_errors_name_key_and_file(tmp_path, datadir):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lr: fast}\n")
    with pytest.raises(InputError, match=f"{bad}: key 'optim.lr': must be a number"):
        load_train_config(bad)
    bad.write_text("model: {preset: huge}\n")
    with pytest.raises(InputError, match=f"{bad}: key 'model.preset': unknown preset 'huge'"):
        load_train_config(bad)
    bad.write_text("model: {widths: [8, 8]}\n")
    with pytest.raises(InputError, match=f"{bad}: .*same length"):
        load_train_config(bad)
    bad.write_text("loss: {kind: focal}\n")
    with pytest.raises(InputError, match=f"{bad}: key 'loss.kind': unknown loss kind 'focal' \\(registered: jeffreys, ce, ls, confidence_penalty; or module:Class\\)"):
        load_train_config(bad)
    bad.write_text("")
    with pytest.raises(InputError, match=f"{bad}: key 'optimiser': unknown key"):
        load_train_config(bad, ["optimiser.lr=0.1"])
    with pytest.raises(InputError, match="--set 'lr': expected KEY=VALUE"):
        parse_overrides(["lr"])
    assert parse_overrides(["model.widths=[8,16]", "optim.lr=0.2", "steps=3"]) == {
        "model.widths": [8, 16], "optim.lr": 0.2, "steps": 3}
    with pytest.raises(InputError, match="data.train"):
        train(load_train_config(bad), tmp_path / "exp")


def test_batch_larger_than_the_data_is_an_error(tmp_path, datadir):
    with pytest.raises(InputError, match="16 training chunks per epoch are fewer than batch_size 32"):
        train(_config(tmp_path, datadir, "", "batch_size=32"), tmp_path / "exp")


def test_existing_run_needs_resume_and_same_config(tmp_path, datadir):
    cfg = _config(tmp_path, datadir, "", steps=2)
    exp = tmp_path / "exp"
    train(cfg, exp)
    with pytest.raises(InputError, match="already holds a run; use --resume"):
        train(cfg, exp)
    changed = _config(tmp_path, datadir, "", "optim.lr=0.1", steps=2)
    with pytest.raises(InputError, match=r"cannot resume with a different config \(changed: optim.lr\)"):
        train(changed, exp, resume=True)
    # Extending the run is allowed: it continues from step 2.
    longer = _config(tmp_path, datadir, "", steps=3)
    train(longer, exp, resume=True)
    assert load_bundle(exp / "model.pt").meta["steps"] == 3
    assert "resumed from" in (exp / "train.log").read_text()


def test_training_learns_the_tiny_speakers(tmp_path, datadir):
    """Four synthetic 'voices': the training loss falls and accuracy rises well above chance."""
    cfg = _config(tmp_path, datadir, "", "head.kind=softmax", "head.scale=null", "head.margin=null",
                  "model.widths=[8,8,16,16]", "model.num_mel_bins=32",
                  "model.embed_dim=16", "optim.lr=0.05", "schedule.decay=none", "epochs=12", "log_every=4")
    train(cfg, tmp_path / "exp")
    rows = [ln.split(" loss ")[1].split() for ln in (tmp_path / "exp" / "train.log").read_text().splitlines() if " loss " in ln]
    loss = [float(r[0]) for r in rows]
    accuracy = [float(r[2]) for r in rows]
    assert len(loss) == 12  # 4 steps per epoch, one line per 4 steps
    assert sum(loss[-2:]) < 0.7 * sum(loss[:2])
    assert sum(accuracy[-2:]) / 2 >= 0.5  # chance: 0.25


def test_global_torch_settings_are_restored(tmp_path, datadir):
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    train(_config(tmp_path, datadir, "", steps=1), tmp_path / "exp")
    assert torch.get_num_threads() == threads and torch.are_deterministic_algorithms_enabled() == det


def test_demo_base_config(tmp_path, datadir):
    from importlib import resources

    path = resources.files("jeffreys").joinpath("conf/demo.yaml")
    cfg = load_train_config(path, [f"data.train={datadir}"])
    assert cfg.model.preset == "demo" and cfg.model.embed_bn
    assert (cfg.head.kind, cfg.head.scale, cfg.head.margin) == ("aam", 30.0, 0.2)
    overrides = tiny_overrides(datadir, f"data.augment.cache_dir={tmp_path / 'cache'}", "data.augment.simulated_rirs=2", steps=2)
    train(load_train_config(path, overrides), tmp_path / "exp")
    assert load_bundle(tmp_path / "exp" / "model.pt").config["embed_bn"]
