"""Learning-rate and margin schedules of a training run, as pure functions of the step.

Both are given in epochs in the config (fractions allowed), or with ``per: run`` in
fractions of the whole run (a study training several data sizes for the same number of
steps then gives each the same schedule), and evaluated per optimizer step, so a resumed
run recomputes exactly the values the uninterrupted run used.

* learning rate: linear warm-up from ``warmup_start · lr`` to ``lr`` over ``warmup_epochs``,
  then ``decay`` to ``final_lr`` at the last step: ``exponential`` (geometric, as
  WeSpeaker's ExponentialDecrease), ``cosine``, or ``none`` (constant ``lr``);
* margin: 0 until ``margin_start_epoch``, then a linear ramp to the head's margin over
  ``margin_ramp_epochs`` (WeSpeaker's margin scheduler); both 0 means the full margin
  from the first step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass
class ScheduleConfig:
    warmup_epochs: float = 0.0
    warmup_start: float = 0.0  # fraction of lr at the first step of the warm-up
    decay: Literal["exponential", "cosine", "none"] = "exponential"
    final_lr: float = 5e-5
    margin_start_epoch: float = 0.0
    margin_ramp_epochs: float = 0.0
    per: Literal["epoch", "run"] = "epoch"  # the unit of the three timings above

    def __post_init__(self) -> None:
        for name in ("warmup_epochs", "margin_start_epoch", "margin_ramp_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0 <= self.warmup_start <= 1:
            raise ValueError(f"warmup_start must be a fraction in [0, 1], got {self.warmup_start}")
        if self.final_lr <= 0 and self.decay == "exponential":
            raise ValueError(f"final_lr must be positive for exponential decay, got {self.final_lr}")


def _unit(steps_per_epoch: int, total_steps: int | None, cfg: ScheduleConfig) -> int:
    if cfg.per == "epoch":
        return steps_per_epoch
    if total_steps is None:
        raise ValueError("a schedule per run needs the run's total steps")
    return total_steps


def learning_rate(step: int, total_steps: int, steps_per_epoch: int, lr: float, cfg: ScheduleConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based) of ``total_steps``."""
    warmup = int(round(cfg.warmup_epochs * _unit(steps_per_epoch, total_steps, cfg)))
    if step < warmup:
        return lr * (cfg.warmup_start + (1.0 - cfg.warmup_start) * step / warmup)
    if cfg.decay == "none":
        return lr
    span = max(total_steps - 1 - warmup, 1)
    t = min(max((step - warmup) / span, 0.0), 1.0)
    if cfg.decay == "exponential":
        return lr * (cfg.final_lr / lr) ** t
    return cfg.final_lr + 0.5 * (lr - cfg.final_lr) * (1.0 + math.cos(math.pi * t))


def margin(step: int, steps_per_epoch: int, target: float, cfg: ScheduleConfig, total_steps: int | None = None) -> float:
    """Margin of the head at optimizer step ``step`` (0-based)."""
    unit = _unit(steps_per_epoch, total_steps, cfg)
    start = cfg.margin_start_epoch * unit
    ramp = cfg.margin_ramp_epochs * unit
    if step < start:
        return 0.0
    if ramp <= 0:
        return target
    return target * min((step - start + 1) / ramp, 1.0)
