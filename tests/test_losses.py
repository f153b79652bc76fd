"""JeffreysLoss & co. against independent references.

The references are written here in numpy, float64, from the definitions as printed
(eq. 1: two KL divergences of the renormalised non-target distribution against the
uniform one; the authors' dense formula from their released main.py), not from the
log-space rewriting the library uses.
"""

from __future__ import annotations

import math
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from jeffreys.errors import InputError
from jeffreys.losses import (
    ConfidencePenaltyLoss,
    CrossEntropy,
    JeffreysLoss,
    LabelSmoothingLoss,
    build_loss,
)
from jeffreys.losses._native import use_kernel
from jeffreys.losses._reference import authors_dense_loss

SETTINGS = settings(max_examples=40, deadline=None)


@pytest.fixture(scope="module", autouse=True, params=["kernel", "eager"])
def backend(request):
    """Every test here runs on both implementations: the compiled CPU kernel (required to
    build: a missing compiler fails these, it does not skip them, unless the user turned
    the kernel off with JEFFREYS_LOSS_KERNEL=off) and the eager one."""
    if request.param == "kernel" and os.environ.get("JEFFREYS_LOSS_KERNEL", "").strip().lower() == "off":
        pytest.skip("JEFFREYS_LOSS_KERNEL=off")
    with use_kernel("on" if request.param == "kernel" else "off"):
        yield request.param


# ---------------------------------------------------------------- references (numpy)
def softmax_np(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def eq1_np(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(-log p_k, D_KL(u||q) + D_KL(q||u)) per row, q = [p_i/(1-p_k)]_{i!=k}, u = 1/(K-1)."""
    p = softmax_np(z)
    ce, jd = [], []
    for row, k in zip(p, y):
        q = np.delete(row, k) / (1.0 - row[k])
        u = np.full_like(q, 1.0 / q.size)
        jd.append(np.sum(u * np.log(u / q)) + np.sum(q * np.log(q / u)))
        ce.append(-np.log(row[k]))
    return np.array(ce), np.array(jd)


def authors_np(z: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """The released code's formula with explicit target vectors, per row."""
    batch, num_classes = z.shape
    p = softmax_np(z)
    log_p = np.log(p)
    out = np.empty(batch)
    for b in range(batch):
        target = np.full(num_classes, alpha / (num_classes - 1))
        target[y[b]] = 1.0 - alpha - beta
        cold = np.ones(num_classes)
        cold[y[b]] = 0.0
        out[b] = -(target * log_p[b]).sum() + beta * (cold * p[b] * log_p[b]).sum() / (1.0 - p[b, y[b]])
    return out


def terms_np(z: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    p = softmax_np(z)
    k = np.arange(len(y)), y
    mask = np.ones_like(p, dtype=bool)
    mask[k] = False
    log_p = np.log(p)
    return {
        "ce": -log_p[k],
        "ls": -np.where(mask, log_p, 0).sum(1) / (z.shape[1] - 1),
        "jeffreys": np.where(mask, p * log_p, 0).sum(1) / (1 - p[k]),
    }


def well_conditioned(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rows where the literal formulas' own 1 - p_k keeps at least 8 digits in float64
    (elsewhere they lose them, or divide by 0, which is what the library avoids)."""
    return 1.0 - softmax_np(z)[np.arange(len(y)), y] > 1e-8


@st.composite
def batches(draw, max_classes=40, max_abs=6.0):
    """Random (logits, labels) in float64 with 1..6 rows and 2..max_classes classes."""
    batch = draw(st.integers(1, 6))
    num_classes = draw(st.integers(2, max_classes))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.floats(0.1, max_abs))
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((batch, num_classes)) * scale
    y = rng.integers(0, num_classes, batch)
    return z, y


def t(z, y):
    return torch.tensor(z, dtype=torch.float64), torch.tensor(y, dtype=torch.long)


# ---------------------------------------------------------------- the definitions
@SETTINGS
@given(batches(), st.floats(0.0, 0.5))
def test_eq4_equals_eq1_literal(data, gamma):
    """With alpha = beta = gamma, eq. 4 is CE + gamma * (KL(u||q) + KL(q||u)) (eq. 1, 3)."""
    z, y = data
    ok = well_conditioned(z, y)
    if not ok.any():
        return
    ce, jd = eq1_np(z[ok], y[ok])
    got = JeffreysLoss(gamma, gamma, "paper", "none")(*t(z[ok], y[ok])).numpy()
    np.testing.assert_allclose(got, ce + gamma * jd, rtol=1e-7, atol=1e-9)


@SETTINGS
@given(batches(), st.floats(0.0, 0.45), st.floats(0.0, 0.45))
def test_reference_equals_authors_formula(data, alpha, beta):
    z, y = data
    want = authors_np(z, y, alpha, beta)
    got = JeffreysLoss(alpha, beta, "reference", "none")(*t(z, y)).numpy()
    ok = np.isfinite(want) & well_conditioned(z, y)
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-7, atol=1e-9)
    # The benchmark's dense transcription is the same formula.
    dense = authors_dense_loss(*t(z, y), alpha, beta, "none").numpy()
    np.testing.assert_allclose(dense[ok], want[ok], rtol=1e-7, atol=1e-9)


@SETTINGS
@given(batches(), st.floats(0.0, 0.4), st.floats(0.0, 0.4))
def test_terms_match_definitions(data, alpha, beta):
    z, y = data
    ok = well_conditioned(z, y)
    if not ok.any():
        return
    z, y = z[ok], y[ok]
    want = terms_np(z, y)
    for target_weight, w in (("paper", 1.0), ("reference", 1.0 - alpha - beta)):
        loss = JeffreysLoss(alpha, beta, target_weight)
        got = loss.terms(*t(z, y))
        for name in ("ce", "ls", "jeffreys"):
            assert got[name].item() == pytest.approx(want[name].mean(), rel=1e-6, abs=1e-6)
        total = w * want["ce"] + alpha * want["ls"] + beta * want["jeffreys"]
        assert got["total"].item() == pytest.approx(total.mean(), rel=1e-6, abs=1e-6)
        assert got["total"].item() == pytest.approx(loss(*t(z, y)).item(), rel=1e-6, abs=1e-6)
        assert all(not v.requires_grad and v.dtype == torch.float32 for v in got.values())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_label_smoothing_and_plain_ce_equal_torch(reduction):
    gen = torch.Generator().manual_seed(1)
    for num_classes in (2, 7, 300):
        z = torch.randn(9, num_classes, generator=gen, dtype=torch.float64) * 4
        y = torch.randint(0, num_classes, (9,), generator=gen)
        for alpha in (0.05, 0.1, 0.3):
            eps = alpha * num_classes / (num_classes - 1)
            want = F.cross_entropy(z, y, label_smoothing=eps, reduction=reduction)
            got = JeffreysLoss(alpha, 0.0, "reference", reduction)(z, y)
            torch.testing.assert_close(got, want)
            torch.testing.assert_close(LabelSmoothingLoss(alpha, "reference", reduction)(z, y), want)
        for target_weight in ("paper", "reference"):
            got = JeffreysLoss(0.0, 0.0, target_weight, reduction)(z, y)
            torch.testing.assert_close(got, F.cross_entropy(z, y, reduction=reduction))


def test_paper_and_reference_differ_by_the_target_weight():
    z = torch.randn(5, 11, dtype=torch.float64)
    y = torch.arange(5)
    ce = F.cross_entropy(z, y, reduction="none")
    paper = JeffreysLoss(0.1, 0.025, "paper", "none")(z, y)
    reference = JeffreysLoss(0.1, 0.025, "reference", "none")(z, y)
    torch.testing.assert_close(paper - reference, 0.125 * ce)


# ---------------------------------------------------------------- gradients
def _gradcheck_inputs():
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(4, 7, generator=gen, dtype=torch.float64) * 3
    y = torch.tensor([4, 2, 0, 6])
    z[0, 4] = 900.0  # target far above: the masked (rescued) path
    z[1, 2] = -900.0  # target far below
    return z.requires_grad_(), y


@pytest.mark.parametrize("target_weight", ["paper", "reference"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_float64(target_weight, reduction):
    z, y = _gradcheck_inputs()
    for alpha, beta in ((0.1, 0.025), (0.3, 0.2)):
        loss = JeffreysLoss(alpha, beta, target_weight, reduction)
        assert torch.autograd.gradcheck(lambda x: loss(x, y), (z,)), (alpha, beta)


@pytest.mark.parametrize(("alpha", "beta"), [(0.0, 0.0), (0.1, 0.0), (0.0, 0.3)])
def test_gradcheck_float64_special_weights(alpha, beta):
    z, y = _gradcheck_inputs()
    for target_weight, reduction in (("paper", "mean"), ("reference", "none")):
        loss = JeffreysLoss(alpha, beta, target_weight, reduction)
        assert torch.autograd.gradcheck(lambda x: loss(x, y), (z,))


def test_gradient_equals_autograd_of_the_literal_formula():
    gen = torch.Generator().manual_seed(3)
    z = (torch.randn(7, 29, generator=gen, dtype=torch.float64) * 5).requires_grad_()
    y = torch.randint(0, 29, (7,), generator=gen)
    (g_ref,) = torch.autograd.grad(authors_dense_loss(z, y, 0.1, 0.025), z)
    (g_got,) = torch.autograd.grad(JeffreysLoss(0.1, 0.025, "reference")(z, y), z)
    torch.testing.assert_close(g_got, g_ref)


def test_second_backward_through_retained_graph():
    z = torch.randn(4, 9).requires_grad_()
    y = torch.tensor([0, 3, 8, 1])
    out = JeffreysLoss()(z, y)
    (g1,) = torch.autograd.grad(out, z, retain_graph=True)
    (g2,) = torch.autograd.grad(out, z)
    torch.testing.assert_close(g1, g2)


def test_weighted_rows_backward():
    """reduction='none' followed by arbitrary per-row weights."""
    z = torch.randn(5, 6, dtype=torch.float64).requires_grad_()
    y = torch.tensor([0, 1, 2, 3, 4])
    w = torch.tensor([0.5, -1.0, 2.0, 0.0, 3.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: (JeffreysLoss(reduction="none")(x, y) * w).sum(), (z,))


# ---------------------------------------------------------------- numerical range
GAPS = [0.0, 1.0, 10.0, 20.0, 30.0, 45.0, 60.0, 100.0, 1e3, 1e4]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("target_weight", ["paper", "reference"])
def test_finite_for_target_gaps_up_to_1e4(dtype, target_weight):
    num_classes = 500
    loss = JeffreysLoss(0.1, 0.025, target_weight)
    for gap in GAPS + [-g for g in GAPS[1:]]:
        z = torch.randn(4, num_classes, generator=torch.Generator().manual_seed(4)).to(dtype)
        z[:, 7] = z[:, 7] + gap
        z.requires_grad_()
        y = torch.full((4,), 7)
        out = loss(z, y)
        out.backward()
        assert out.dtype == torch.float32 and torch.isfinite(out), (dtype, gap)
        assert z.grad.dtype == dtype and torch.isfinite(z.grad).all(), (dtype, gap)
        # Same logits in float64: the value is right, not merely finite.
        z64 = z.detach().double().requires_grad_()
        ref = loss(z64, y)
        ref.backward()
        assert out.item() == pytest.approx(ref.item(), rel=1e-4, abs=1e-4), (dtype, gap)
        torch.testing.assert_close(z.grad.double(), z64.grad, rtol=2e-2, atol=2e-4)


def test_closed_form_at_huge_gap():
    """Row [g, 0, ..., 0], target 0: ce = log(1 + M e^-g), ls = g + ce, jeffreys = -ls."""
    num_classes, gap = 1000, 1e4
    z = torch.zeros(2, num_classes)
    z[:, 0] = gap
    terms = JeffreysLoss().terms(z, torch.zeros(2, dtype=torch.long))
    ce = math.log1p((num_classes - 1) * math.exp(-gap))
    assert terms["ce"].item() == pytest.approx(ce, abs=1e-6)
    assert terms["ls"].item() == pytest.approx(gap + ce, rel=1e-6)
    assert terms["jeffreys"].item() == pytest.approx(-(gap + ce), rel=1e-6)


@pytest.mark.parametrize(("dtype", "gap"), [(torch.float32, 30.0), (torch.float16, 20.0)])
def test_authors_literal_form_is_not_finite(dtype, gap):
    """Why the library does not use the released formula: 1 - p_k rounds to 0."""
    z = torch.zeros(4, 1000, dtype=dtype)
    z[:, 0] = gap
    y = torch.zeros(4, dtype=torch.long)
    assert not torch.isfinite(authors_dense_loss(z, y, 0.1, 0.025))
    assert torch.isfinite(JeffreysLoss(0.1, 0.025, "reference")(z, y))


def test_two_classes_and_many_classes():
    for num_classes, batch in ((2, 8), (200_000, 2)):
        gen = np.random.default_rng(num_classes)
        z = gen.standard_normal((batch, num_classes)) * 3
        y = gen.integers(0, num_classes, batch)
        want = authors_np(z, y, 0.1, 0.025)
        got = JeffreysLoss(0.1, 0.025, "reference", "none")(torch.tensor(z, dtype=torch.float32), torch.tensor(y))
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4)
        z32 = torch.tensor(z, dtype=torch.float32, requires_grad=True)
        JeffreysLoss()(z32, torch.tensor(y)).backward()
        assert torch.isfinite(z32.grad).all()


def test_under_autocast_returns_float32():
    lin = torch.nn.Linear(8, 30)
    x = torch.randn(4, 8)
    y = torch.tensor([1, 2, 3, 29])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = lin(x)
        out = JeffreysLoss()(logits, y)
    assert logits.dtype == torch.bfloat16 and out.dtype == torch.float32
    out.backward()
    assert torch.isfinite(lin.weight.grad).all()


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("logits", "labels", "match"),
    [
        (torch.zeros(3, 5), torch.tensor([0, 5, 1]), "label 5 out of range for 5 classes"),
        (torch.zeros(3, 5), torch.tensor([0, -1, 1]), "label -1 out of range"),
        (torch.zeros(3, 5), torch.tensor([0, 1]), r"labels must have shape \(3,\)"),
        (torch.zeros(5), torch.tensor([0]), r"logits must have shape \(batch, classes\)"),
        (torch.zeros(3, 1), torch.tensor([0, 0, 0]), "at least 2 classes"),
        (torch.zeros(3, 5), torch.tensor([0.0, 1.0, 2.0]), "integer tensor"),
        (torch.zeros(3, 5, dtype=torch.long), torch.tensor([0, 1, 2]), "float tensor"),
    ],
)
def test_bad_input_is_a_clear_error(logits, labels, match):
    for loss in (JeffreysLoss(), ConfidencePenaltyLoss()):
        with pytest.raises(ValueError, match=match):
            loss(logits, labels)
    with pytest.raises(ValueError, match=match):
        JeffreysLoss().terms(logits, labels)


def test_bad_parameters():
    with pytest.raises(ValueError, match="reduction"):
        JeffreysLoss(reduction="avg")
    with pytest.raises(ValueError, match="target_weight"):
        JeffreysLoss(target_weight="authors")
    with pytest.raises(ValueError, match="alpha"):
        JeffreysLoss(alpha=-0.1)
    with pytest.raises(ValueError, match="alpha \\+ beta"):
        JeffreysLoss(alpha=0.6, beta=0.5, target_weight="reference")
    with pytest.raises(ValueError, match="beta"):
        ConfidencePenaltyLoss(beta=-1.0)


# ---------------------------------------------------------------- confidence penalty
@SETTINGS
@given(batches(), st.floats(0.0, 2.0))
def test_confidence_penalty_is_ce_minus_beta_entropy(data, beta):
    z, y = data
    p = softmax_np(z)
    ce = -np.log(p[np.arange(len(y)), y])
    entropy = -(p * np.log(p)).sum(1)
    got = ConfidencePenaltyLoss(beta, "none")(*t(z, y)).numpy()
    np.testing.assert_allclose(got, ce - beta * entropy, rtol=1e-9, atol=1e-9)
    terms = ConfidencePenaltyLoss(beta).terms(*t(z, y))
    assert terms["entropy"].item() == pytest.approx(entropy.mean(), rel=1e-6)


def test_confidence_penalty_gradcheck_and_range():
    z = torch.randn(4, 6, dtype=torch.float64).requires_grad_()
    y = torch.tensor([0, 1, 2, 5])
    assert torch.autograd.gradcheck(lambda x: ConfidencePenaltyLoss(0.3)(x, y), (z,))
    for dtype in (torch.float32, torch.float16):
        big = torch.zeros(2, 100, dtype=dtype)
        big[:, 0] = 1e4
        big.requires_grad_()
        out = ConfidencePenaltyLoss(0.3)(big, torch.zeros(2, dtype=torch.long))
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(big.grad).all()


# ---------------------------------------------------------------- factory
def test_build_loss_kinds():
    z = torch.randn(3, 10, dtype=torch.float64)
    y = torch.tensor([0, 4, 9])
    torch.testing.assert_close(build_loss("ce")(z, y), F.cross_entropy(z, y))
    ls = build_loss("ls", alpha=0.2, target_weight="reference")
    assert isinstance(ls, LabelSmoothingLoss) and ls.alpha == 0.2 and ls.beta == 0.0
    torch.testing.assert_close(ls(z, y), F.cross_entropy(z, y, label_smoothing=0.2 * 10 / 9))
    jl = build_loss("jeffreys")
    assert (jl.alpha, jl.beta, jl.target_weight) == (0.1, 0.025, "paper")
    jl = build_loss("jeffreys", alpha=0.2, beta=0.05, target_weight="reference")
    assert (jl.alpha, jl.beta, jl.ce_weight) == (0.2, 0.05, pytest.approx(0.75))
    cp = build_loss("confidence_penalty", beta=0.5)
    assert isinstance(cp, ConfidencePenaltyLoss) and cp.beta == 0.5
    ce = build_loss("ce", alpha=None)  # None: not given
    assert isinstance(ce, CrossEntropy) and (ce.alpha, ce.beta) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("kind", "args", "match"),
    [
        ("focal", {}, r"unknown loss kind 'focal' \(registered: jeffreys, ce, ls, confidence_penalty"),
        ("ce", {"alpha": 0.1}, r"key 'alpha': unknown key \(known: reduction\)"),
        ("ls", {"alpha": 0.1, "beta": 0.02}, r"key 'beta': unknown key \(known: alpha, target_weight, reduction\)"),
        ("confidence_penalty", {"alpha": 0.1}, r"key 'alpha': unknown key \(known: beta, reduction\)"),
        ("jeffreys", {"alpha": 1.5}, "alpha must be in"),
        ("jeffreys", {"target_weight": "authors"}, "key 'target_weight': must be one of 'paper', 'reference'"),
    ],
)
def test_build_loss_errors(kind, args, match):
    with pytest.raises(InputError, match=match):
        build_loss(kind, **args)


def test_terms_after_forward_reuse_its_means():
    gen = torch.Generator().manual_seed(5)
    z = (torch.randn(6, 40, generator=gen) * 4).requires_grad_()
    y = torch.randint(0, 40, (6,), generator=gen)
    fresh = JeffreysLoss().terms(z, y)
    loss = JeffreysLoss()
    out = loss(z, y)
    assert loss._cached_means(z, y) is not None
    cached = loss.terms(z, y)
    for name in fresh:
        torch.testing.assert_close(cached[name], fresh[name])
    assert cached["total"].item() == pytest.approx(out.item(), rel=1e-6)
    with torch.no_grad():
        z.add_(1.0)  # logits changed in place: recomputed, not stale
    assert loss._cached_means(z, y) is None
    torch.testing.assert_close(loss.terms(z, y), JeffreysLoss().terms(z, y))
    # different labels, or a loss without the ls/jeffreys pass: recomputed too
    assert loss._cached_means(z, y.clone()) is None
    ce_only = JeffreysLoss(0.0, 0.0)
    ce_only(z, y)
    assert ce_only._cached_means(z, y) is None
    torch.testing.assert_close(ce_only.terms(z, y)["ls"], JeffreysLoss().terms(z, y)["ls"])
    # the cache does not stop a loss from being pickled (torch.save of a whole module)
    again = pickle.loads(pickle.dumps(loss))
    assert again._cached_means(z, y) is None and again.alpha == loss.alpha


@pytest.mark.parametrize("alpha", [5e-324, 1e-300, 1e-30, 1e-12])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tiny_alpha_is_finite_and_continuous(alpha, dtype):
    # Found by hypothesis: a subnormal alpha made the folded shift 1/f infinite (NaN loss).
    z = torch.tensor([[0.12573022, -0.13210486], [3.0, -2.0]], dtype=dtype, requires_grad=True)
    y = torch.tensor([0, 1])
    loss = JeffreysLoss(alpha, 0.25, "reference", "none")(z, y)
    loss.sum().backward()
    want = JeffreysLoss(0.0, 0.25, "reference", "none")(z.detach(), y)
    assert torch.isfinite(loss).all() and torch.isfinite(z.grad).all()
    torch.testing.assert_close(loss.detach(), want, rtol=1e-5, atol=1e-6)
