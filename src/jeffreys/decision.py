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

A calibration ``(a, b)`` must also keep its LLRs in range (:func:`check_calibration`, for
the model's meta and for JSON calibrations alike): ``|a| * MAX_SCORE + |b| <= MAX_LLR``.
Every score the package computes lies within ``MAX_SCORE`` = 1000 (a cosine within 1, an
S-norm / AS-norm z-score within a few tens), and an LLR of ``MAX_LLR`` = 1e7 nats is odds
no evidence supports while sums of LLRs over billions of trials stay finite in float32
(max 3.4e38). Finite but absurd values (``a = 1e308`` takes a cosine of 1 to infinity in
float32, and an S-norm score of 2 to infinity in float64) are refused where they are read;
a fit on perfectly separated scores (slopes of a few thousand at most) passes.

The embedding mean (``meta["mean"]``, :func:`mean_of`; a ``.npy`` mean too) must be finite
numbers, as many as the embedding has dimensions, each within ``MAX_MEAN`` = 1e6
(:func:`check_mean`). A mean is an average of embeddings, whose components lie within
hundreds (a linear layer on pooled statistics); within 1e6 a centred embedding's squared
norm stays finite in float32 for any dimension, while a mean of 1e20 takes it to infinity
(every embedding normalised to zero, every cosine 0 or NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np

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


MAX_SCORE = 1e3
MAX_LLR = 1e7


def check_calibration(a: float, b: float, where, key: str = "calibration") -> None:
    """Refuse a calibration ``llr = a * score + b`` that takes a score within ``MAX_SCORE``
    beyond ``MAX_LLR`` (module docstring); ``where`` and ``key`` name it."""
    if not abs(a) * MAX_SCORE + abs(b) <= MAX_LLR:
        raise InputError(
            f"{where}: {key} a={a:g} b={b:g} takes scores of +-{MAX_SCORE:g} to LLRs beyond +-{MAX_LLR:g} "
            f"(|a| * {MAX_SCORE:g} + |b| must not exceed {MAX_LLR:g})"
        )


MAX_MEAN = 1e6


def check_mean(mean: np.ndarray, where, key: str = "meta['mean']") -> None:
    """Refuse a (finite) mean with a component beyond ``MAX_MEAN`` (module docstring)."""
    big = np.flatnonzero(np.abs(mean) > MAX_MEAN)
    if len(big):
        raise InputError(f"{where}: {key}[{big[0]}] = {float(mean[big[0]]):g}, beyond +-{MAX_MEAN:g} "
                         f"({len(big)} such components; no embedding lies there)")


def mean_of(meta: dict, dim: int, where) -> np.ndarray | None:
    """``meta["mean"]`` as a float32 vector of ``dim`` numbers, or None when there is none;
    numbers of another count, not finite or beyond ``MAX_MEAN`` are an InputError."""
    mean = meta.get("mean")
    if mean is None:
        return None
    try:
        m = np.asarray(mean)
    except (TypeError, ValueError):  # ragged lists
        m = np.zeros(0)
    if m.dtype.kind not in "fiu" or m.shape != (dim,) or not np.isfinite(m).all():
        raise InputError(f"{where}: meta['mean'] must be {dim} finite numbers, got shape {m.shape}")
    check_mean(m, where)
    return m.astype(np.float32)


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
    check_calibration(a, b, where, "meta['calibration']")
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


__all__ = ["Decision", "DecisionRule", "MAX_LLR", "MAX_MEAN", "MAX_SCORE", "bayes_threshold", "calibration_of",
           "check_calibration", "check_mean", "mean_of", "meta_number"]
