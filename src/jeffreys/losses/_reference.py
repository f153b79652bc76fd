"""The authors' released formula, transcribed literally with dense one-hot matrices.

Kept only as a baseline: ``benchmarks/loss.py`` times it against the fused loss, and the
tests use it to document where it stops being finite. It is ``target_weight="reference"``
of :class:`JeffreysLoss` (github.com/mrouvier/jeffreys_loss, ``main.py``), evaluated in
the logits' own dtype exactly as written there: softmax, log_softmax, dense target
matrices and a division by ``1 - p_k``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def authors_dense_loss(logits: Tensor, labels: Tensor, alpha: float, beta: float, reduction: str = "mean") -> Tensor:
    batch, num_classes = logits.shape
    index = labels.unsqueeze(1)
    opts = {"dtype": logits.dtype, "device": logits.device}
    # Smoothed target: alpha/(K-1) off target, 1-alpha-beta on target.
    smooth = torch.full((batch, num_classes), alpha / (num_classes - 1), **opts).scatter_(1, index, 1.0 - alpha - beta)
    one_cold = torch.ones((batch, num_classes), **opts).scatter_(1, index, 0.0)
    one_hot = torch.zeros((batch, num_classes), **opts).scatter_(1, index, 1.0)
    p = torch.softmax(logits, dim=-1)
    log_p = torch.log_softmax(logits, dim=-1)
    rows = -(smooth * log_p).sum(-1)
    non_target = (one_cold * (log_p * p)).sum(-1)
    p_k = (one_hot * p).sum(-1)
    rows = rows + beta * (non_target / (torch.ones_like(p_k) - p_k))
    if reduction == "sum":
        return rows.sum()
    if reduction == "mean":
        return rows.mean()
    return rows
