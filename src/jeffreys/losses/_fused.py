"""Fused, log-space forward and analytic backward of the Jeffreys loss in eager torch ops
(private). On CPU the compiled kernel of ``_native`` does the same work faster; this is the
path for other devices (CUDA), for logits holding inf or NaN, and where no C compiler is
available (``JEFFREYS_LOSS_KERNEL=off`` forces it).

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
    g_i = a p_i + b p_i z_i - c                                                (i != k)
    with a = ((w + alpha - beta) s + beta (1 - E)) / s,  b = beta / s,  c = alpha / M.

Cost. On a CPU the time goes to passes over the (B, K) matrix and, at K of a few
thousand, to the fixed cost of every small tensor op. Forward: one softmax, one addcmul
forming Y = s - p*z / f with f = c / (b s) = alpha / (M beta) (the shift costs nothing
there and saves the backward a pass: b p z - c = -f b Y), and the row sums of p, Y and z,
done a block of rows at a time so that all but the softmax read from cache. Backward: two
in-place passes (-f b Y + a p) into Y's buffer, which becomes the returned gradient. Two
(B, K) allocations in all, one fewer than ``F.cross_entropy``; no one-hot matrix. Every
per-row output (the three terms, the row loss, b, a, c, g_k) is a linear combination of
eight per-row features, so one addmm forms them all instead of some thirty small ops.

Precision: s is summed over the non-targets (not 1 - p_k), and log p_k = -log1p(s / p_k),
1 - p_k = s / (s + p_k) keep full relative precision at both ends. Only when s or p_k
falls below sqrt(smallest normal) (a target gap beyond ~44 in float32, ~350 in float64)
would the probabilities underflow; those rare rows are recomputed exactly by a masked
log-sum-exp (the target set to -inf, so q is exact at gaps of 1e4 where every p_i is 0).
Rows are then kept as P = q and Z = 1 instead of P = p and Z = s: the formulas only use
P / Z = q. The shift is folded in only while alpha <= MAX_FOLD_RATIO * beta (otherwise Y
= p*z and c is subtracted in the backward): E is recovered as f (K - sum(Y) / s), which
loses about log2(K f / |E|) bits to cancellation, f = alpha / (M beta).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# Largest alpha / beta for which c is folded into p*z (the paper's is 4: 2 bits of E).
MAX_FOLD_RATIO = 8.0
# Smallest f folded: Y = Z - P*z / f must stay finite in float32 for |z| up to ~1e4 (a
# subnormal alpha gave 1/f = inf and a NaN loss); below it the unfolded path is exact.
MIN_FOLD = 1e-12

# Rows per block of the forward pass: x, P and Y of a block (3 x 4 bytes x this many
# elements, 1.5 MB) stay in a 2 MB L2 cache between the passes over it.
BLOCK_ELEMENTS = 1 << 17

# Columns of RowStats.out: ce, ls, jeffreys | the row loss w*ce + alpha*ls + beta*jeffreys |
# the gradient coefficients b, a, c, g_k; the last five times the reduction's scale.
TERMS, LOSS = slice(0, 3), 3
SPLIT = (3, 1, 4)


class RowStats(NamedTuple):
    """Results of the forward pass (all in the accumulation dtype)."""

    out: Tensor  # (B, 8) per-row outputs, columns as above (see _output_weights)
    p: Tensor  # (B, K) P: the non-target probabilities (target column 0), q on rescued rows
    p_z: Tensor | None  # (B, K) Y = Z - P*z/fold, or P*z (with jeffreys only): the backward's buffer
    z_sum: Tensor  # (B, 1) Z = sum of P over the row


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


@functools.lru_cache(maxsize=64)
def _output_weights(w: float, alpha: float, beta: float, num_classes: int, fold: float, scale: float,
                    dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """W (8, 8) and bias (8,) such that RowStats.out = features @ W + bias.

    Features: f0 = -log p_k, f1 = z_k, f2 = sum_i z_i, f3 = sum_i Y_i / Z, f4 = 1/Z,
    f5 = (1 - p_k)/Z, f6 = f3/Z, f7 = p_k; E = e0 + e1 f3 and b P z - c = e1 b Y.
    """
    m, c1 = num_classes - 1, w + alpha - beta
    e0, e1 = (num_classes * fold, -fold) if fold else (0.0, 1.0)
    weights = torch.zeros(9, 8, dtype=torch.float64)  # the last row is the bias
    ce, ls, j, loss, b, a, c, g_k = weights.unbind(1)
    ce[0] = 1.0
    ls[0], ls[1], ls[2] = 1.0, 1.0 + 1.0 / m, -1.0 / m  # L + z_k / M - sum_i z_i / M
    j[3], j[8], j[1], j[0] = e1, e0, -1.0, -1.0  # E - L
    loss.copy_(w * ce + alpha * ls + beta * j)
    b[4] = beta * e1  # the coefficient of Y
    a[5], a[4], a[6] = c1, beta * (1.0 - e0), -beta * e1  # (c1 (1 - p_k) + beta (1 - E)) / Z
    c[8] = 0.0 if fold else alpha / m
    g_k[7], g_k[8] = c1, -w
    weights[:, LOSS:] *= scale
    weights = weights.to(dtype=dtype, device=device)
    return weights[:8], weights[8]


def _y(s: Tensor, p: Tensor, x: Tensor, fold: float, out: Tensor | None = None) -> Tensor:
    """Y = Z - P*z / f (the shift rides on the product's pass as addcmul's input), or P*z."""
    if fold:
        return torch.addcmul(s, p, x, value=-1.0 / fold, out=out)
    return torch.mul(p, x, out=out)


def _row_sums(x: Tensor, idx: Tensor, need_ls: bool, need_j: bool, fold: float):
    """P (the softmax with the target column zeroed), Y, and the (B, 1) columns p_k, Z,
    sum_i z_i and sum_i Y_i. Computed a block of rows at a time: the passes after the
    softmax then read the block from cache instead of memory (about a tenth less time
    for this part at K = 6000, measured)."""
    batch, num_classes = x.shape
    p = torch.empty_like(x)
    p_z = torch.empty_like(x) if need_j else None
    p_k, s, z_total, y_total = x.new_empty(4, batch, 1).unbind(0)
    step = BLOCK_ELEMENTS // num_classes or batch  # rows longer than a block: no blocking
    blocks = zip(*(t.split(step) for t in (x, idx, p, p_k, s, z_total, y_total)),
                 p_z.split(step) if need_j else itertools.repeat(None))
    for xb, ib, pb, p_kb, sb, z_totalb, y_totalb, yb in blocks:
        torch.softmax(xb, dim=1, out=pb)
        torch.gather(pb, 1, ib, out=p_kb)
        pb.scatter_(1, ib, 0.0)
        torch.sum(pb, dim=1, keepdim=True, out=sb)
        if need_ls:
            torch.sum(xb, dim=1, keepdim=True, out=z_totalb)
        if need_j:
            torch.sum(_y(sb, pb, xb, fold, out=yb), dim=1, keepdim=True, out=y_totalb)
    return p, p_z, p_k, s, z_total, y_total


def row_stats(logits: Tensor, labels: Tensor, w: float = 1.0, alpha: float = 0.1, beta: float = 0.025,
              need_ls: bool = True, need_j: bool = True, fold: float = 0.0, scale: float = 1.0) -> RowStats:
    """The per-row terms, loss and gradient coefficients (no autograd). Without ``need_ls``
    / ``need_j`` (their weight is 0) the ls / jeffreys columns are not meaningful and their
    passes over the logits are saved. ``fold``: f of the module docstring, 0 for Y = P*z.
    ``scale`` multiplies the loss and coefficient columns (1/B for a mean)."""
    acc = accumulation_dtype(logits.dtype)
    x = logits if logits.dtype == acc else logits.to(acc)
    idx = labels.unsqueeze(1)
    # Per-row values are kept as (B, 1) columns: they broadcast without reshaping.
    p, p_z, p_k, s, z_total, y_total = _row_sums(x, idx, need_ls, need_j, fold)
    # -log p_k = log1p(s / p_k) and 1 - p_k = s / (s + p_k): exact at both ends.
    ratio = s / p_k
    minus_log_p_k = torch.log1p(ratio)
    total = s + p_k  # 1 up to rounding
    one_m_over_z = total.reciprocal()
    p_k = p_k.div_(total)
    tiny = torch.finfo(acc).tiny ** 0.5
    low, high = torch.aminmax(ratio) if ratio.numel() else (1.0, 1.0)
    if float(low) < tiny or float(high) > 1.0 / tiny:  # s or p_k below sqrt(tiny): rare
        rescue = ((ratio < tiny) | (ratio > 1.0 / tiny)).squeeze(1).nonzero().squeeze(1)
        q, log_p_k, log_1m = _exact_rows(x[rescue], labels[rescue])
        p[rescue] = q
        s[rescue] = 1.0
        minus_log_p_k[rescue] = -log_p_k.unsqueeze(1)
        one_m_over_z[rescue] = log_1m.exp().unsqueeze(1)
        p_k[rescue] = log_p_k.exp().unsqueeze(1)
        if need_j:
            p_z[rescue] = y = _y(s[rescue], q, x[rescue], fold)
            y_total[rescue] = y.sum(dim=1, keepdim=True)
    z_k = x.gather(1, idx)
    inv_z = s.reciprocal()
    if not need_ls:
        z_total = z_k  # a finite stand-in: its weights are unused
    t = t_over_z = inv_z  # stand-ins without jeffreys
    if need_j:
        t = y_total.mul_(inv_z)
        t_over_z = t * inv_z
    features = torch.cat((minus_log_p_k, z_k, z_total, t, inv_z, one_m_over_z, t_over_z, p_k), dim=1)
    weights, bias = _output_weights(w, alpha, beta, x.shape[1], fold, scale, acc, x.device)
    return RowStats(torch.addmm(bias, features, weights), p, p_z, s)


def _no_autocast(device_type: str):
    """Autocast off inside (the accumulation dtype is chosen here); a no-op when it is off."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def term_rows(logits: Tensor, labels: Tensor) -> Tensor:
    """(B, 3) ce, ls and jeffreys of every row (no autograd)."""
    with _no_autocast(logits.device.type):
        return row_stats(logits, labels).out[:, TERMS]


class JeffreysRows(torch.autograd.Function):
    """w*ce + alpha*ls + beta*j of every row, reduced ("mean", "sum" or "none"), with
    the analytic gradient above. ``terms_out`` receives the (B, 3) ce/ls/jeffreys rows
    when both regularisers are on (all three are then computed anyway)."""

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor, w: float, alpha: float, beta: float, reduction: str,
                terms_out: dict | None = None):
        batch, num_classes = logits.shape
        fold = alpha / (beta * (num_classes - 1)) if beta and alpha <= MAX_FOLD_RATIO * beta else 0.0
        fold = fold if fold >= MIN_FOLD else 0.0
        scale = 1.0 / batch if reduction == "mean" and batch else 1.0
        with _no_autocast(logits.device.type):
            s = row_stats(logits, labels, w, alpha, beta, alpha != 0.0, beta != 0.0, fold, scale)
        terms, rows, coef = s.out.split(SPLIT, dim=1)
        if terms_out is not None and alpha and beta:
            terms_out["terms"] = terms
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(logits, labels, s.p, s.z_sum, coef.unsqueeze(2))
            # Not a saved tensor: the backward overwrites it with the gradient and hands it
            # over (a second backward through a retained graph recomputes it).
            ctx.p_z = s.p_z
            ctx.fold = fold
            ctx.flags = (beta != 0.0, alpha != 0.0 and not fold, reduction == "none")
        if reduction == "none":
            return rows.squeeze(1).contiguous()
        # The mean's 1/B is in the loss column already (an empty mean is NaN, as in torch).
        return rows.sum() if batch or reduction == "sum" else rows.mean()

    @staticmethod
    @once_differentiable  # the gradient is computed in place: no second derivative
    def backward(ctx, grad_out: Tensor):
        logits, labels, p, z_sum, coef = ctx.saved_tensors
        with_p_z, subtract_c, per_row = ctx.flags
        b, a, c, g_k = (coef * (grad_out.view(-1, 1, 1) if per_row else grad_out)).unbind(1)  # (B, 1) each
        if with_p_z:
            grad, ctx.p_z = ctx.p_z, None
            if grad is None:  # second backward: the first consumed p_z
                x = logits.to(p.dtype)
                grad = _y(z_sum, p, x, ctx.fold)
            grad.mul_(b).addcmul_(p, a)
        else:
            grad = torch.mul(p, a)
        if subtract_c:
            grad.sub_(c)
        grad.scatter_(1, labels.unsqueeze(1), g_k)
        return grad.to(logits.dtype), None, None, None, None, None, None
