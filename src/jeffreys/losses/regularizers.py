"""Losses on already-scaled logits: cross-entropy, label smoothing, the Jeffreys loss
(Bousquet & Rouvier, ICASSP 2023, eq. 4) and the confidence penalty (Pereyra et al. 2017).

All are called like ``nn.CrossEntropyLoss``: ``loss(logits, labels)`` with logits of shape
(B, K) in any float dtype and integer labels of shape (B,). They accumulate in float32
(float64 stays float64) and return float32, so float16/bfloat16 logits are safe.
"""

from __future__ import annotations

import weakref
from typing import Literal

import torch
from torch import Tensor, nn

from ..registry import LOSSES, LossSpec
from . import _native
from ._fused import JeffreysRows, term_rows

TargetWeight = Literal["paper", "reference"]
Reduction = Literal["mean", "sum", "none"]

_REDUCTIONS = ("mean", "sum", "none")
_TARGET_WEIGHTS = ("paper", "reference")


def check_logits_labels(logits: Tensor, labels: Tensor) -> None:
    """Raise ValueError unless logits is (B, K>=2) float and labels (B,) ints in [0, K)."""
    if not isinstance(logits, Tensor) or not isinstance(labels, Tensor):
        raise ValueError("logits and labels must be torch tensors")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a float tensor, got {logits.dtype}")
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (batch, classes), got {tuple(logits.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    batch, num_classes = logits.shape
    if labels.shape != (batch,):
        raise ValueError(
            f"labels must have shape ({batch},) to match logits {tuple(logits.shape)}, "
            f"got {tuple(labels.shape)}"
        )
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got logits with {num_classes}")
    if batch:
        low, high = (int(v) for v in torch.aminmax(labels))
        if low < 0 or high >= num_classes:
            raise ValueError(f"label {low if low < 0 else high} out of range for {num_classes} classes")


def jeffreys_rows(logits: Tensor, labels: Tensor, w: float, alpha: float, beta: float, reduction: str,
                  terms_out: dict | None = None) -> Tensor:
    """w*ce + alpha*ls + beta*jeffreys reduced, by the compiled kernel on CPU where it is
    available (and every logit finite), else by the eager fused Function of ``_fused``."""
    if _native.applies(logits):
        batch = logits.shape[0]
        scale = 1.0 / batch if reduction == "mean" and batch else 1.0
        want_grad = logits.requires_grad and torch.is_grad_enabled()
        prepared = _native.run(logits, labels, w, alpha, beta, scale, want_grad)
        if prepared is not None:
            return _native.JeffreysRowsKernel.apply(logits, labels, w, alpha, beta, reduction, terms_out, prepared)
    return JeffreysRows.apply(logits, labels, w, alpha, beta, reduction, terms_out)


def _term_rows(logits: Tensor, labels: Tensor) -> Tensor:
    rows = _native.term_rows(logits, labels) if _native.applies(logits) else None
    return term_rows(logits, labels) if rows is None else rows


def _reduce(rows: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return rows.mean()
    if reduction == "sum":
        return rows.sum()
    return rows


def _term_means(rows: Tensor) -> dict[str, Tensor]:
    return dict(zip(("ce", "ls", "jeffreys"), rows.mean(dim=0).unbind()))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


@LOSSES.register("jeffreys")
class JeffreysLoss(nn.Module):
    """Cross-entropy plus the Jeffreys regulariser of the non-target output distribution.

    ``target_weight="paper"`` (eq. 4 of the paper)::

        L = -log p_k - alpha * sum_{i!=k} log p_i / (K-1) + beta * sum_{i!=k} p_i log p_i / (1-p_k)

    ``target_weight="reference"`` weights ``-log p_k`` by ``1 - alpha - beta`` as the
    authors' released code does. ``beta=0`` is label smoothing, ``alpha=beta=0`` plain
    cross-entropy. Computed in log space with the analytic gradient (a compiled kernel on
    CPU, ``_native``; eager ops elsewhere, ``_fused``): finite loss and gradient for any
    finite logits, no dense one-hot.
    """

    def __init__(
        self,
        alpha: float = 0.1,
        beta: float = 0.025,
        target_weight: TargetWeight = "paper",
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        _check_choice("target_weight", target_weight, _TARGET_WEIGHTS)
        _check_choice("reduction", reduction, _REDUCTIONS)
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if target_weight == "reference" and alpha + beta >= 1.0:
            raise ValueError(f"alpha + beta must be < 1 with target_weight='reference', got {alpha + beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.target_weight = target_weight
        self.reduction = reduction

    @property
    def ce_weight(self) -> float:
        """Weight of -log p_k: 1 (paper, eq. 4) or 1 - alpha - beta (authors' code)."""
        return 1.0 if self.target_weight == "paper" else 1.0 - self.alpha - self.beta

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        check_logits_labels(logits, labels)
        cache: dict[str, Tensor] = {}
        out = jeffreys_rows(logits, labels, self.ce_weight, self.alpha, self.beta, self.reduction, cache)
        # terms() on these same, unmodified tensors averages the forward's rows (no second pass).
        # (Set through __dict__: nn.Module.__setattr__ costs more than this whole bookkeeping.)
        self.__dict__["_last_rows"] = (weakref.ref(logits), logits._version, weakref.ref(labels), labels._version, cache)
        return out

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_last_rows"}  # weakrefs do not pickle

    def _cached_means(self, logits: Tensor, labels: Tensor) -> dict[str, Tensor] | None:
        last = getattr(self, "_last_rows", None)
        if last is None:
            return None
        logits_ref, logits_version, labels_ref, labels_version, cache = last
        if (logits_ref() is logits and logits._version == logits_version and labels_ref() is labels
                and labels._version == labels_version and "terms" in cache):
            return _term_means(cache["terms"])  # averaged only when asked, not at every step
        return None

    @torch.no_grad()
    def terms(self, logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Batch means (detached, float32) of ``ce``, ``ls``, ``jeffreys`` and ``total``.

        ``ce = -log p_k``, ``ls = -sum_{i!=k} log p_i/(K-1)``,
        ``jeffreys = sum_{i!=k} p_i log p_i/(1-p_k)`` and
        ``total = ce_weight*ce + alpha*ls + beta*jeffreys`` (the mean loss). Called on the
        logits and labels of the last forward (not modified since), it costs nothing.
        """
        means = self._cached_means(logits, labels)
        if means is None:
            check_logits_labels(logits, labels)
            means = _term_means(_term_rows(logits.detach(), labels))
        out = {k: v.detach().float() for k, v in means.items()}
        out["total"] = self.ce_weight * out["ce"] + self.alpha * out["ls"] + self.beta * out["jeffreys"]
        return out

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, target_weight={self.target_weight!r}, "
            f"reduction={self.reduction!r}"
        )


@LOSSES.register("ce")
class CrossEntropy(JeffreysLoss):
    """Cross-entropy, ``JeffreysLoss(alpha=0, beta=0)``: the same kernel, and ``terms()``."""

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__(alpha=0.0, beta=0.0, target_weight="paper", reduction=reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


@LOSSES.register("ls")
class LabelSmoothingLoss(JeffreysLoss):
    """Label smoothing: ``JeffreysLoss(alpha, beta=0)``.

    With ``target_weight="reference"`` this equals
    ``F.cross_entropy(..., label_smoothing=alpha * K / (K - 1))``.
    """

    def __init__(
        self,
        alpha: float = 0.1,
        target_weight: TargetWeight = "paper",
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(alpha=alpha, beta=0.0, target_weight=target_weight, reduction=reduction)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, target_weight={self.target_weight!r}, reduction={self.reduction!r}"


@LOSSES.register("confidence_penalty")
class ConfidencePenaltyLoss(nn.Module):
    """Cross-entropy minus ``beta`` times the entropy of the whole output distribution.

    Pereyra et al. 2017, "Regularizing neural networks by penalizing confident output
    distributions" (the paper's ref. [16]): ``L = -log p_k - beta * H(p)``.
    """

    def __init__(self, beta: float = 0.1, reduction: Reduction = "mean") -> None:
        super().__init__()
        _check_choice("reduction", reduction, _REDUCTIONS)
        if not float(beta) >= 0.0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta = float(beta)
        self.reduction = reduction

    def _rows(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        check_logits_labels(logits, labels)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            log_p = torch.log_softmax(logits.float() if logits.dtype != torch.float64 else logits, dim=1)
            ce = -log_p.gather(1, labels.unsqueeze(1)).squeeze(1)
            # exp(log_p) * log_p is 0 * finite where p underflows: no NaN for finite logits.
            entropy = -(log_p.exp() * log_p).sum(dim=1)
        return ce, entropy

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        ce, entropy = self._rows(logits, labels)
        return _reduce(ce - self.beta * entropy, self.reduction)

    @torch.no_grad()
    def terms(self, logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Batch means (detached, float32) of ``ce``, ``entropy`` and ``total``."""
        ce, entropy = self._rows(logits.detach(), labels)
        out = {"ce": ce, "entropy": entropy, "total": ce - self.beta * entropy}
        return {k: v.mean().float() for k, v in out.items()}

    def extra_repr(self) -> str:
        return f"beta={self.beta}, reduction={self.reduction!r}"


def build_loss(kind: str, **args) -> nn.Module:
    """The loss ``kind`` (``ce``, ``ls``, ``jeffreys``, ``confidence_penalty`` or
    ``module:Class``) with ``args``.

    An argument given as None takes the class's default (the paper's alpha=0.1, beta=0.025
    for ``jeffreys``; Pereyra et al.'s range starts at beta=0.1, the default of
    ``confidence_penalty``); an argument the kind does not take (``alpha`` for ``ce``,
    ``beta`` for ``ls``...) is an error rather than silently ignored. Raises
    :class:`jeffreys.errors.InputError` (a ValueError) naming it.
    """
    spec = LossSpec.from_config({"kind": kind, **{k: v for k, v in args.items() if v is not None}}, source="build_loss")
    return spec.build()
