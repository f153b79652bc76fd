"""Typed YAML configs: values convert, unknown keys and wrong types name key and file."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from jeffreys.config import from_dict, load_config, save_config, to_dict
from jeffreys.errors import InputError


@dataclass
class Optim:
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 2e-4


@dataclass
class Cfg:
    name: str
    kind: Literal["ce", "ls", "jeffreys"] = "ce"
    steps: int = 10
    widths: list[int] = field(default_factory=lambda: [8, 16])
    shape: tuple[int, int] = (1, 2)
    amp: bool = False
    init: str | None = None
    optim: Optim = field(default_factory=Optim)
    extra: dict[str, float] = field(default_factory=dict)


def test_round_trip_through_yaml(tmp_path: Path):
    cfg = Cfg(name="x", kind="jeffreys", widths=[1, 2, 3], extra={"a": 1.5}, optim=Optim(lr=0.1))
    path = tmp_path / "c.yaml"
    save_config(cfg, path)
    assert load_config(Cfg, path) == cfg
    assert to_dict(cfg)["optim"] == {"lr": 0.1, "momentum": 0.9, "weight_decay": 2e-4}


def test_yaml_scientific_notation_string_is_a_float(tmp_path: Path):
    # YAML 1.1 reads "2e-4" (no dot) as a string; a float field must still accept it.
    path = tmp_path / "c.yaml"
    path.write_text("name: a\noptim:\n  weight_decay: 2e-4\n  lr: 1\n")
    cfg = load_config(Cfg, path)
    assert cfg.optim.weight_decay == pytest.approx(2e-4) and isinstance(cfg.optim.lr, float)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("name: a\nstepz: 3\n", "key 'stepz': unknown key"),
        ("name: a\noptim:\n  lr: fast\n", "key 'optim.lr': must be a number"),
        ("name: a\nsteps: 2.5\n", "key 'steps': must be an integer"),
        ("name: a\nsteps: true\n", "key 'steps': must be an integer"),
        ("name: a\nkind: focal\n", "key 'kind': must be one of"),
        ("name: a\nwidths: [1, x]\n", "key 'widths[1]': must be an integer"),
        ("name: a\nshape: [1]\n", "key 'shape': must have 2 items"),
        ("name: a\namp: 1\n", "key 'amp': must be true or false"),
        ("name: a\noptim: 3\n", "key 'optim': must be a mapping"),
        ("steps: 3\n", "key 'name': is required"),
        ("name: [a\n", "invalid YAML"),
    ],
)
def test_bad_configs_name_key_and_file(tmp_path: Path, text: str, needle: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as e:
        load_config(Cfg, path)
    msg = str(e.value)
    assert needle in msg and str(path) in msg and "\n" not in msg


def test_overrides_and_missing_file(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("name: a\n")
    assert load_config(Cfg, path, {"optim.lr": 0.5, "steps": 4}).optim.lr == 0.5
    with pytest.raises(InputError, match="nope.yaml: no such config file"):
        load_config(Cfg, tmp_path / "nope.yaml")


def test_optional_none():
    assert from_dict(Cfg, {"name": "a", "init": None}).init is None
    with pytest.raises(InputError, match="key 'name': must be a string, got None"):
        from_dict(Cfg, {"name": None})


def test_overrides_parse_and_apply_in_one_place(tmp_path: Path):
    from jeffreys.config import apply_overrides, parse_overrides

    assert parse_overrides(["optim.lr=0.1", "widths=[1, 2]", "init=null"]) == {"optim.lr": 0.1, "widths": [1, 2], "init": None}
    for bad in ("lr", "=1", "a..b=1", "1a=2", "a b=1"):
        with pytest.raises(InputError, match=f"--set {bad!r}: expected KEY=VALUE"):
            parse_overrides([bad])
    with pytest.raises(InputError, match="value is not valid YAML"):
        parse_overrides(["a=[1"])
    data = {"steps": 10, "optim": {"lr": 0.2}}
    out = apply_overrides(data, {"optim.lr": 0.5, "new.deep.key": 1})
    assert out == {"steps": 10, "optim": {"lr": 0.5}, "new": {"deep": {"key": 1}}}
    assert data == {"steps": 10, "optim": {"lr": 0.2}}  # not modified
    with pytest.raises(InputError, match=r"c.yaml: cannot set 'steps.x': 'steps' is a int, not a section"):
        apply_overrides(data, {"steps.x": 1}, source="c.yaml")
    with pytest.raises(InputError, match="c.yaml: cannot set 'a.b': the config is a list, not a mapping"):
        apply_overrides(["a"], {"a.b": 1}, source="c.yaml")
    path = tmp_path / "c.yaml"
    path.write_text("name: a\noptim:\n")  # an empty section is a section
    assert load_config(Cfg, path, {"optim.lr": 0.5}).optim.lr == 0.5


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "'nan'", "'1e999'"])
def test_floats_must_be_finite(tmp_path: Path, value: str):
    path = tmp_path / "c.yaml"
    path.write_text(f"name: a\noptim:\n  lr: {value}\n")
    with pytest.raises(InputError, match=r"c.yaml: key 'optim.lr': must be a finite number"):
        load_config(Cfg, path)
