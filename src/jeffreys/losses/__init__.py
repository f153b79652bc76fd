"""Losses of the paper and the margin heads that produce their logits.

``JeffreysLoss`` (eq. 4 of Bousquet & Rouvier 2023, or the authors' code weighting),
``LabelSmoothingLoss``, ``ConfidencePenaltyLoss`` (Pereyra et al. 2017), and the heads
``SoftmaxHead``, ``AMHead`` (CosFace), ``AAMHead`` (ArcFace). Each is registered under a
kind name (:mod:`jeffreys.registry`); ``build_loss`` and ``build_head`` make them by kind.
"""

from ._native import describe as kernel_info
from .heads import AAMHead, AMHead, SoftmaxHead, build_head
from .regularizers import (
    ConfidencePenaltyLoss,
    CrossEntropy,
    JeffreysLoss,
    LabelSmoothingLoss,
    build_loss,
)

__all__ = [
    "AAMHead",
    "AMHead",
    "ConfidencePenaltyLoss",
    "CrossEntropy",
    "JeffreysLoss",
    "LabelSmoothingLoss",
    "SoftmaxHead",
    "build_head",
    "build_loss",
    "kernel_info",
]
