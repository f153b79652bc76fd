"""Fused, log-space forward and analytic backward of the Jeffreys loss (private).

For one row of logits z with target k, K classes and M = K - 1 non-targets, let
p = softmax(z), s = 1 - p_k = sum_{i!=k} p_i, q_i = p_i / s the distribution of the
non-targets (q_k = 0) and E = sum_i q_i z_i. Then, with L = logsumexp(z) = z_k - log p_k,

    ce = -log p_k
    ls = -sum_{i!=k} log p_i / M               = L - (sum_i z_i - z_k) / M
    j  = sum_{i!=k} p_i log p_i / (1 - p_k)    = sum_i q_i (z_i - L) = E - L

so nothing divides by 1 - p_k and nothing takes the log of a softmax entry. The loss of a
row is w*ce + alpha*ls + beta*j; from dL/dz_i = p_i and dE/dz_i = q_i (1 + z_i - E)
(i != k) its gradient is

    g_k = (w + alpha - beta) p_k - w
    g_i = q_i ((w + alpha - beta) s + beta (1 + z_i - E)) - alpha / M        (i != k)

Cost: one softmax, a few row reductions, and three in-place passes in the backward into
the buffer that held p*z, which becomes the returned gradient: two (B, K) allocations in
all, fewer than ``F.cross_entropy`` makes. No one-hot matrix.

Precision: s is summed over the non-targets (not 1 - p_k), so log s and log p_k =
log1p(-s) keep full relative precision as p_k -> 1. Only when s or p_k falls below
sqrt(smallest normal) (a target gap beyond ~44 in float32, ~350 in float64) would the
non-target probabilities underflow; those rare rows are recomputed exactly by a masked
log-sum-exp (the target set to -inf, so q is exact at gaps of 1e4 where every p_i is 0).
Rows are then kept as P = q and Z = 1 instead of P = p and Z = s: the formulas only use
P / Z = q.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class RowStats(NamedTuple):
    """Per-row results of the forward pass (all in the accumulation dtype)."""

    ce: Tensor  # -log p_k
    ls: Tensor | None  # -sum_{i!=k} log p_i / (K-1), None when not asked for
    jeffreys: Tensor | None  # sum_{i!=k} p_i log p_i / (1-p_k), None when not asked for
    p: Tensor  # (B, K) Z * q: the non-target probabilities, or q on rescued rows
    p_z: Tensor | None  # (B, K) p * z (with jeffreys only): scratch for the backward
    z_sum: Tensor  # (B,) Z = sum of p over the row
    expect: Tensor | None  # (B,) E = sum_i q_i z_i (with jeffreys only)
    log_p_k: Tensor  # (B,) log p_k
    log_1m_p_k: Tensor  # (B,) log(1 - p_k)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64 (for gradcheck); everything else accumulates in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _exact_rows(x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """q, log p_k and log(1 - p_k) of a few rows by a masked log-sum-exp."""
    idx = labels.unsqueeze(1)
    z_k = x.gather(1, idx).squeeze(1)
    masked = x.scatter(1, idx, float("-inf"))
    m_nt = masked.amax(dim=1, keepdim=True)
    q = masked.sub_(m_nt).exp_()
    z_nt = q.sum(dim=1)
    q.div_(z_nt.unsqueeze(1))
    log_nt = m_nt.squeeze(1) + z_nt.log()
    log_z = torch.logaddexp(z_k, log_nt)
    return q, z_k - log_z, log_nt - log_z


def row_stats(logits: Tensor, labels: Tensor, need_ls: bool = True, need_j: bool = True) -> RowStats:
    """The loss terms of every row (no autograd). ``ls``/``jeffreys`` are None when not
    needed (their weight is 0), which saves passes over the logits."""
    acc = accumulation_dtype(logits.dtype)
    x = logits.to(acc)
    idx = labels.unsqueeze(1)
    p = torch.softmax(x, dim=1)
    p_k = p.gather(1, idx).squeeze(1)
    p.scatter_(1, idx, 0.0)
    s = p.sum(dim=1)
    big = p_k > 0.5
    log_p_k = torch.where(big, torch.log1p(-s), p_k.log())
    log_1m = torch.where(big, s.log(), torch.log1p(-p_k))
    tiny = torch.finfo(acc).tiny ** 0.5
    rescue = torch.minimum(s, p_k) < tiny
    if rescue.any():  # a synchronisation on GPUs, cheaper than doing every row twice
        rescue = rescue.nonzero().squeeze(1)
        q, log_p_k[rescue], log_1m[rescue] = _exact_rows(x[rescue], labels[rescue])
        p[rescue] = q
        s[rescue] = 1.0
    z_k = x.gather(1, idx).squeeze(1)
    log_z = z_k - log_p_k
    ls = p_z = expect = jeffreys = None
    if need_ls:
        ls = log_z - (x.sum(dim=1) - z_k) / (x.shape[1] - 1)
    if need_j:
        p_z = torch.mul(p, x)
        expect = p_z.sum(dim=1) / s
        jeffreys = expect - log_z
    return RowStats(-log_p_k, ls, jeffreys, p, p_z, s, expect, log_p_k, log_1m)


class JeffreysRows(torch.autograd.Function):
    """w*ce + alpha*ls + beta*j of every row, reduced ("mean", "sum" or "none"), with
    the analytic gradient above."""

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor, w: float, alpha: float, beta: float, reduction: str,
                means: dict | None = None):
        with torch.autocast(device_type=logits.device.type, enabled=False):
            s = row_stats(logits, labels, need_ls=alpha != 0.0, need_j=beta != 0.0)
            if means is not None:  # batch means of the terms, for logging without a recompute
                means.update((k, getattr(s, k).mean()) for k in ("ce", "ls", "jeffreys")
                             if getattr(s, k) is not None)
            rows = w * s.ce
            if alpha != 0.0:
                rows = rows + alpha * s.ls
            if beta != 0.0:
                rows = rows + beta * s.jeffreys
        expect = s.expect if s.expect is not None else s.ce.new_zeros(())
        ctx.save_for_backward(logits, labels, s.p, s.z_sum, expect, s.log_p_k, s.log_1m_p_k)
        # Not a saved tensor: the backward overwrites it with the gradient and hands it
        # over (a second backward through a retained graph recomputes it).
        ctx.p_z = s.p_z
        ctx.coeffs = (w, alpha, beta)
        ctx.reduction = reduction
        if reduction == "mean":
            return rows.mean()
        return rows.sum() if reduction == "sum" else rows

    @staticmethod
    @once_differentiable  # the gradient is computed in place: no second derivative
    def backward(ctx, grad_out: Tensor):
        logits, labels, p, z_sum, expect, log_p_k, log_1m_p_k = ctx.saved_tensors
        w, alpha, beta = ctx.coeffs
        with torch.autocast(device_type=logits.device.type, enabled=False):
            x = logits.to(p.dtype)
            go = grad_out.to(p.dtype)
            if ctx.reduction != "none":
                go = go.expand(x.shape[0]) / (x.shape[0] if ctx.reduction == "mean" else 1)
            c1 = w + alpha - beta
            # g_i = P_i (a + b z_i) - c for i != k, with P / Z = q.
            a = (go * (c1 * log_1m_p_k.exp() + beta * (1.0 - expect)) / z_sum).unsqueeze(1)
            if beta != 0.0:
                grad, ctx.p_z = ctx.p_z, None
                if grad is None:
                    grad = torch.mul(p, x)
                grad.mul_((go * beta / z_sum).unsqueeze(1))
                grad.addcmul_(p, a)
            else:
                grad = torch.mul(p, a)
            if alpha != 0.0:
                grad.sub_((go * (alpha / (x.shape[1] - 1))).unsqueeze(1))
            g_k = go * (c1 * log_p_k.exp() - w)
            grad.scatter_(1, labels.unsqueeze(1), g_k.unsqueeze(1))
        return grad.to(logits.dtype), None, None, None, None, None, None
