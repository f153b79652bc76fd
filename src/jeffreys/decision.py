"""The decision rule of verification, in one place for ``verify``, the Python API
(:mod:`jeffreys.api`, bundle and ONNX alike), ``calibrate`` and the ONNX metadata.

Same speaker when the decision value reaches the threshold, ``value >= threshold``: the rule
of :mod:`jeffreys.metrics`, so a tie is accepted. The value is the score (cosine of the
mean-centred embeddings) or, when the threshold is on the LLR, ``llr = a * score + b`` of
the model's linear calibration. Which threshold applies, in order of precedence:

1. one given by the caller (``--threshold T``, ``threshold=T``): on the LLR when the model
   is calibrated, on the score otherwise;
2. a target prior given by the caller (``--p-target p``): the Bayes threshold
   ``log((1 - p) / p)`` on the LLR (the model must be calibrated);
3. ``meta["threshold"]``: a threshold on the score, stored with the model (what
   ``jeffreys calibrate`` writes for the operating point it was asked for; the demo's EER
   threshold);
4. ``meta["calibration"]`` alone: the Bayes threshold for p = 0.5, i.e. ``llr >= 0``.

A model's meta (bundle ``meta``, or the ONNX export's ``jeffreys.meta``) is data from a
file: every value is checked, and a bad one is an InputError naming the file and key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

from .errors import InputError, finite


@dataclass(frozen=True)
class Decision:
    """The outcome of one comparison: ``same`` is ``value >= threshold`` (None without a threshold)."""

    score: float
    llr: float | None
    threshold: float | None
    same: bool | None
    rule: str


def meta_number(meta: dict, key: str, where) -> float:
    """``meta[key]`` (``key`` may be dotted: ``calibration.a``) as a finite float, else an
    InputError naming ``where`` and the key."""
    value = meta
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise InputError(f"{where}: meta[{key!r}] must be a finite number, got {value!r}")
    return float(value)


def calibration_of(meta: dict, where) -> tuple[float, float] | None:
    """``(a, b)`` of ``meta["calibration"]`` or None; a calibration whose slope is not
    positive would reverse the order of scores and is refused."""
    cal = meta.get("calibration")
    if cal is None:
        return None
    if not isinstance(cal, dict) or "a" not in cal or "b" not in cal:
        raise InputError(f"{where}: meta['calibration'] must be {{'a': ..., 'b': ...}}, got {cal!r}")
    a, b = meta_number(meta, "calibration.a", where), meta_number(meta, "calibration.b", where)
    if not a > 0:
        raise InputError(f"{where}: meta['calibration.a'] must be positive (a higher score is more likely the same speaker), got {a}")
    return a, b


def bayes_threshold(p_target: float) -> float:
    """``log((1 - p) / p)``: the LLR threshold minimising the expected cost at prior p (equal costs)."""
    p = finite(p_target, "p_target")
    if not 0 < p < 1:
        raise InputError(f"p_target must lie strictly between 0 and 1, got {p_target}")
    return math.log((1 - p) / p)


@dataclass(frozen=True)
class DecisionRule:
    """How to decide for one model: ``threshold`` on the LLR (``on_llr``) or on the score."""

    calibration: tuple[float, float] | None
    threshold: float | None
    on_llr: bool
    rule: str

    @classmethod
    def of(cls, meta: dict, where, *, threshold: float | None = None, p_target: float | None = None) -> DecisionRule:
        """The rule for a model with ``meta`` (module docstring for the precedence)."""
        cal = calibration_of(meta, where)
        if threshold is not None:
            t = finite(threshold, "threshold")
            return cls(cal, t, cal is not None, "given threshold on the " + ("calibrated LLR" if cal else "score"))
        if p_target is not None:
            t = bayes_threshold(p_target)
            if cal is None:
                raise InputError(f"{where}: a target prior needs a calibrated model (run `jeffreys calibrate`), or give a threshold")
            return cls(cal, t, True, f"Bayes threshold on the calibrated LLR for p_target {p_target:g}")
        if meta.get("threshold") is not None:
            t = meta_number(meta, "threshold", where)
            source = meta.get("threshold_source")
            return cls(cal, t, False, "score threshold stored with the model" + (f" ({source})" if isinstance(source, str) and source else ""))
        if cal is not None:
            return cls(cal, 0.0, True, "Bayes threshold on the calibrated LLR for p_target 0.5")
        return cls(None, None, False, "none")

    def llr(self, score: float) -> float | None:
        if self.calibration is None:
            return None
        a, b = self.calibration
        return a * float(score) + b

    def decide(self, score: float) -> Decision:
        llr = self.llr(score)
        value = llr if self.on_llr else float(score)
        same = None if self.threshold is None else bool(value >= self.threshold)
        return Decision(float(score), llr, self.threshold, same, self.rule)

    def as_dict(self) -> dict:
        """Plain data for the ONNX metadata (``jeffreys.decision``): what a deployment applies."""
        cal = None if self.calibration is None else {"a": self.calibration[0], "b": self.calibration[1]}
        return {
            "score": "cosine of the embeddings after subtracting meta.mean (when present), each of unit length",
            "calibration": cal,
            "threshold": self.threshold,
            "threshold_on": "llr" if self.on_llr else "score",
            "same_speaker": "llr = a * score + b >= threshold" if self.on_llr else "score >= threshold",
            "rule": self.rule,
        }


__all__ = ["Decision", "DecisionRule", "bayes_threshold", "calibration_of", "meta_number"]
