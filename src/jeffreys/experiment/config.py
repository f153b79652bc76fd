"""The experiment config: systems (rows), evaluation sets (columns), seeds, metrics.

Typed like every config (:mod:`jeffreys.config`): an unknown key or a wrong type is an
error naming the key and the file. Every string may use ``${NAME}``: a variable given by
the caller (the demo's ``CORPUS``) or else an environment variable (the recipe's ``DATA``,
``EXP``); an unset one is an error naming it. The experiment's own paths (``base``, systems'
``config`` and ``model``, evaluation sets, ``train_data``) are relative to the config file;
paths inside the training config are read as ``jeffreys train`` reads them.

A system's training config is assembled in this order: the ``base`` training YAML, the
experiment's ``train`` mapping, the system's ``config`` YAML, its ``set`` overrides, the seed.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import from_dict, load_yaml
from ..errors import InputError
from ..extract import ExtractOptions
from ..probe import TopRule


def _check_name(what: str, name: str) -> None:
    if not name or not all(c.isalnum() or c in "_.-" for c in name):
        raise ValueError(f"{what} name {name!r} must be non-empty letters, digits, '_', '.', '-'")


@dataclass
class SystemSpec:
    """A row of the table: a system to train (once per seed), or trained models to reuse.

    The training config of a system is the experiment's ``train`` mapping, then the YAML file
    ``config`` on top of it, then the dotted ``set`` overrides (as ``jeffreys train --set``),
    then ``seed``. A reused ``model`` path holds ``{seed}`` when the experiment has several
    seeds (``exp/aam/seed{seed}/model.pt``).
    """

    name: str  # short id: directory and column names ([A-Za-z0-9_.-])
    label: str | None = None  # row title of the table (default: name)
    config: str | None = None  # training config YAML (relative to the experiment config)
    set: dict[str, Any] = field(default_factory=dict)  # dotted overrides of the training config
    model: str | None = None  # an existing model.pt: not trained again
    reference: str | None = None  # the system this one is compared with (default: the experiment's baseline)

    def __post_init__(self) -> None:
        _check_name("system", self.name)
        if self.model is not None and (self.config is not None or self.set):
            raise ValueError(f"system {self.name!r}: a reused 'model' takes no training 'config' or 'set'")
        if "seed" in self.set:
            raise ValueError(f"system {self.name!r}: 'set: seed' — give the experiment's 'seeds' instead")

    def model_path(self, seed: int) -> Path:
        return Path(self.model.replace("{seed}", str(seed)))


@dataclass
class EvalSpec:
    """A column group of the table: a data dir and its trial list."""

    name: str
    data: str  # data dir (relative to the experiment config)
    trials: str | None = None  # default DATA/trials
    domain: str = ""  # e.g. "in" / "out": shown in the table and the gains chart
    # Optional sets are skipped with a note when their data dir or labelled trials are
    # absent (recipes list corpora that may be missing; SdSV comes without its key).
    optional: bool = False

    def __post_init__(self) -> None:
        _check_name("evaluation set", self.name)


@dataclass
class MetricsSpec:
    p_target: float = 0.01
    n_boot: int = 1000  # bootstrap replicates (0: no intervals)
    ci: float = 0.95
    by: Literal["speaker", "trial"] = "speaker"  # resample whole enrolment speakers, or trials
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.p_target < 1:
            raise ValueError(f"metrics.p_target must lie strictly between 0 and 1, got {self.p_target}")
        if not 0 < self.ci < 1:
            raise ValueError(f"metrics.ci must lie strictly between 0 and 1, got {self.ci}")
        if self.n_boot < 0:
            raise ValueError(f"metrics.n_boot must be >= 0, got {self.n_boot}")


@dataclass
class ProbeSpec:
    rule: str = "mass:0.5"  # top training speakers: see jeffreys.probe
    train_utts: int = 2000  # training utterances extracted for the mean and the probe (0 = all)
    examples: list[str] = field(default_factory=list)  # systems shown in Fig. 2 (default: first and last)

    def __post_init__(self) -> None:
        TopRule.parse(self.rule)
        if self.train_utts < 0:
            raise ValueError(f"train_utts must be >= 0, got {self.train_utts}")


@dataclass
class ExtractSpec:
    device: str = "cpu"
    options: ExtractOptions = field(default_factory=ExtractOptions)


@dataclass
class ExperimentConfig:
    systems: list[SystemSpec]
    eval_sets: list[EvalSpec]
    base: str | None = None  # training config YAML shared by the systems (relative to this file)
    train: dict[str, Any] = field(default_factory=dict)  # shared training keys, over `base`
    seeds: list[int] = field(default_factory=lambda: [0])  # each system is trained once per seed
    train_data: str | None = None  # data dir for the centring mean (default: each system's training data)
    baseline: str | None = None  # the reference of comparisons and Fig. 3 (default: the first system)
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    probe: ProbeSpec = field(default_factory=ProbeSpec)
    extract: ExtractSpec = field(default_factory=ExtractSpec)
    train_jobs: int = 1  # trainings run at the same time (subprocesses sharing the cores)
    eval_jobs: int = 1  # runs evaluated at the same time (processes of one thread each)
    # Training command prefix, e.g. [torchrun, --standalone, --nproc_per_node=8]: each run is
    # `LAUNCHER -m jeffreys train ...`, one at a time (run without a shell).
    train_launcher: list[str] = field(default_factory=list)
    figures: bool = True  # False: tables and results.json only
    seed: int = 0  # of the training subset and the bootstrap

    def __post_init__(self) -> None:
        if not self.systems:
            raise ValueError("no systems")
        if not self.eval_sets:
            raise ValueError("no eval_sets")
        for kind, names in (("system", [s.name for s in self.systems]), ("evaluation set", [e.name for e in self.eval_sets])):
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"duplicate {kind} name {sorted(dup)[0]!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be distinct non-negative integers, got {self.seeds}")
        for s in self.systems:
            if s.model is None and s.config is None and not self.train and self.base is None:
                raise ValueError(f"system {s.name!r}: give 'model' (reuse), 'config' (train), or an experiment-level 'base' or 'train'")
            if s.model is not None and len(self.seeds) > 1 and "{seed}" not in s.model:
                raise ValueError(f"system {s.name!r}: one reused model for {len(self.seeds)} seeds; put {{seed}} in its path")
        if self.train_jobs < 1 or self.eval_jobs < 1:
            raise ValueError(f"train_jobs and eval_jobs must be >= 1, got {self.train_jobs} and {self.eval_jobs}")
        names = [s.name for s in self.systems]
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not a system")
        for s in self.systems:
            if s.reference is not None and (s.reference not in names or s.reference == s.name):
                raise ValueError(f"system {s.name!r}: reference {s.reference!r} is not another system")

    @property
    def reference(self) -> str:
        """The baseline: Fig. 3's reference, and every system's unless it names its own."""
        return self.baseline or self.systems[0].name

    def references(self) -> dict[str, str]:
        """system -> the system it is compared with (the baseline itself is compared with none)."""
        return {s.name: s.reference or self.reference for s in self.systems if s.name != (s.reference or self.reference)}


_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def expand(value: Any, variables: dict[str, str], source: str, key: str = "") -> Any:
    """``${NAME}`` / ``$NAME`` in every string of ``value``: from ``variables``, else the
    environment; an unset name is an error naming the key."""
    if isinstance(value, dict):
        return {k: expand(v, variables, source, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, variables, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name in variables:
            return str(variables[name])
        if name in os.environ:
            return os.environ[name]
        raise InputError(f"{source}: key '{key}': variable ${{{name}}} is not set")

    return _VAR.sub(sub, value)


def load_experiment(path: str | Path, overrides: dict[str, Any] | None = None, *,
                    variables: dict[str, str] | None = None, patch: dict | None = None) -> ExperimentConfig:
    """Read an experiment config: ``patch`` (a mapping) merged over the file, then the dotted
    ``overrides``; ``${NAME}`` expanded; relative paths resolved against the file's directory."""
    from ..config import apply_overrides

    path = Path(path)
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: an experiment config is a mapping, got {type(data).__name__}")
    data = merge(data, patch or {})
    data = apply_overrides(data, overrides or {}, source=str(path))
    data = expand(data, variables or {}, str(path))
    cfg = from_dict(ExperimentConfig, data, source=str(path))
    return resolve_paths(cfg, path.parent)


def resolve_paths(cfg: ExperimentConfig, base: Path) -> ExperimentConfig:
    """Make the experiment's own paths absolute from ``base`` (``~`` expanded)."""

    def res(p: str | None) -> str | None:
        return None if p is None else str((base / os.path.expanduser(p)).resolve())

    for s in cfg.systems:
        s.config, s.model = res(s.config), res(s.model)
    for e in cfg.eval_sets:
        e.data, e.trials = res(e.data), res(e.trials)
    cfg.train_data, cfg.base = res(cfg.train_data), res(cfg.base)
    return cfg


def merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``, mappings merged key by key; neither is modified."""
    out = copy.deepcopy(base)
    for k, v in top.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def train_config_of(spec: SystemSpec, cfg: ExperimentConfig, seed: int):
    """The TrainConfig a system trains with for ``seed``: ``cfg.train``, its ``config`` file,
    its ``set``, then the seed."""
    from ..train import TrainConfig

    from ..config import apply_overrides

    data: dict = {}
    source = "experiment config 'train'"
    if cfg.base is not None:
        data = load_yaml(cfg.base) or {}
        source = cfg.base
    data = merge(data, cfg.train)  # copies: each system edits its own
    if spec.config is not None:
        data = merge(data, load_yaml(spec.config) or {})
        source = spec.config
    data = apply_overrides(data, spec.set, source=f"system {spec.name!r}: set")
    data["seed"] = seed
    return from_dict(TrainConfig, data, source=f"{source} (system {spec.name})")


__all__ = [
    "EvalSpec", "ExperimentConfig", "ExtractSpec", "MetricsSpec", "ProbeSpec", "SystemSpec",
    "expand", "load_experiment", "merge", "resolve_paths", "train_config_of",
]
