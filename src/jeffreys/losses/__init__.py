"""Losses of the paper and the margin heads that produce their logits.

``JeffreysLoss`` (eq. 4 of Bousquet & Rouvier 2023, or the authors' code weighting),
``LabelSmoothingLoss``, ``ConfidencePenaltyLoss`` (Pereyra et al. 2017), and the heads
``SoftmaxHead``, ``AMHead`` (CosFace), ``AAMHead`` (ArcFace). ``build_loss`` and
``build_head`` make them from a training config.
"""

from .heads import HEAD_KINDS, AAMHead, AMHead, SoftmaxHead, build_head
from .regularizers import (
    LOSS_KINDS,
    ConfidencePenaltyLoss,
    JeffreysLoss,
    LabelSmoothingLoss,
    build_loss,
)

__all__ = [
    "AAMHead",
    "AMHead",
    "ConfidencePenaltyLoss",
    "HEAD_KINDS",
    "JeffreysLoss",
    "LOSS_KINDS",
    "LabelSmoothingLoss",
    "SoftmaxHead",
    "build_head",
    "build_loss",
]
