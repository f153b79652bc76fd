"""Margin heads against logits computed by hand from the angle definitions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from jeffreys.errors import InputError
from jeffreys.losses import AAMHead, AMHead, SoftmaxHead, build_head


def planar_head(cls, angles, **kwargs):
    """A head over 2-D embeddings whose class weights point at the given angles."""
    head = cls(2, len(angles), **kwargs)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[math.cos(a), math.sin(a)] for a in angles]) * 3.0)
    return head


ANGLES = [0.0, math.pi / 3, math.pi / 2, 2.5, math.pi - 0.1]


def embedding_at(angle, norm=2.0):
    return torch.tensor([[math.cos(angle) * norm, math.sin(angle) * norm]])


def test_am_logits_by_hand():
    head = planar_head(AMHead, ANGLES, scale=10.0, margin=0.3)
    e = embedding_at(0.0)
    cosines = [math.cos(a) for a in ANGLES]
    for target in range(len(ANGLES)):
        want = [10.0 * (c - 0.3 if i == target else c) for i, c in enumerate(cosines)]
        got = head(e, torch.tensor([target]))
        torch.testing.assert_close(got, torch.tensor([want]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(head(e), torch.tensor([[10.0 * c for c in cosines]]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("easy_margin", [False, True])
def test_aam_logits_by_hand(easy_margin):
    m, s = 0.4, 20.0
    head = planar_head(AAMHead, ANGLES, scale=s, margin=m, easy_margin=easy_margin)
    e = embedding_at(0.0)
    for target, theta in enumerate(ANGLES):
        if easy_margin:
            # margin only where cos θ > 0, i.e. θ < π/2
            want_t = math.cos(theta + m) if math.cos(theta) > 0 else math.cos(theta)
        elif theta + m <= math.pi:
            want_t = math.cos(theta + m)
        else:
            # beyond π: cos θ - m sin(π - m) (ArcFace's continuation)
            want_t = math.cos(theta) - m * math.sin(math.pi - m)
        want = [s * (want_t if i == target else math.cos(a)) for i, a in enumerate(ANGLES)]
        got = head(e, torch.tensor([target]))
        torch.testing.assert_close(got, torch.tensor([want]), atol=1e-4, rtol=1e-5)
    # the θ + m > π branch was exercised (θ = π - 0.1, m = 0.4)
    assert ANGLES[-1] + m > math.pi


def test_aam_target_logit_decreases_with_angle():
    """The fallback keeps the target logit monotonic over the whole [0, π]."""
    head = AAMHead(2, 2, scale=1.0, margin=0.5)
    theta = torch.linspace(0.0, math.pi, 2001, dtype=torch.float64)
    logit = head.target_logit(torch.cos(theta))
    assert (logit[1:] <= logit[:-1] + 1e-12).all()


@pytest.mark.parametrize("cls", [AMHead, AAMHead])
def test_inference_is_unmargined_and_attributes_take_effect(cls):
    torch.manual_seed(0)
    head = cls(16, 10)
    assert head.weight.shape == (10, 16)
    assert (head.scale, head.margin) == (30.0, 0.2)
    x = torch.randn(5, 16)
    y = torch.tensor([0, 3, 9, 3, 1])
    cos = F.normalize(x, dim=1) @ F.normalize(head.weight.detach(), dim=1).T
    torch.testing.assert_close(head(x), 30.0 * cos)
    train = head(x, y)
    off_target = torch.ones_like(train, dtype=torch.bool).scatter_(1, y[:, None], False)
    torch.testing.assert_close(train[off_target], (30.0 * cos)[off_target])
    assert (train.gather(1, y[:, None]) < (30.0 * cos).gather(1, y[:, None])).all()
    head.margin = 0.0  # a scheduler ramping the margin from 0
    torch.testing.assert_close(head(x, y), 30.0 * cos)
    head.scale = 15.0
    torch.testing.assert_close(head(x), 15.0 * cos)
    head.margin = 0.35
    train = head(x, y)
    if cls is AMHead:
        torch.testing.assert_close(train.gather(1, y[:, None]), 15.0 * (cos.gather(1, y[:, None]) - 0.35))


def test_softmax_head_is_linear():
    torch.manual_seed(0)
    head = SoftmaxHead(8, 4)
    x = torch.randn(3, 8)
    want = x @ head.weight.detach().T + head.bias.detach()
    torch.testing.assert_close(head(x), want)
    torch.testing.assert_close(head(x, torch.tensor([0, 1, 3])), want)
    head.scale = 2.0
    torch.testing.assert_close(head(x), 2.0 * want)
    no_bias = SoftmaxHead(8, 4, bias=False)
    assert no_bias.bias is None
    torch.testing.assert_close(no_bias(x), x @ no_bias.weight.detach().T)


@pytest.mark.parametrize("cls", [AMHead, AAMHead])
def test_cosines_in_float32_under_autocast(cls):
    torch.manual_seed(0)
    head = cls(32, 50)
    x = torch.randn(6, 32)
    y = torch.randint(0, 50, (6,))
    want = head(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = head(x.bfloat16(), y)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=0.3, rtol=0.02)  # only the input was rounded
    with torch.autocast("cpu", dtype=torch.bfloat16):
        exact = head(x, y)
    torch.testing.assert_close(exact, want)


def test_aam_gradient_finite_when_embedding_equals_weight():
    head = AAMHead(4, 3)
    x = head.weight.detach()[1:2].clone().requires_grad_()  # cos θ = 1 exactly
    head(x, torch.tensor([1])).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


def test_aam_gradcheck_float64():
    head = AAMHead(5, 4, margin=0.3).double()
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 1])
    assert torch.autograd.gradcheck(lambda e: head(e, y), (x,))


@pytest.mark.parametrize("cls", [SoftmaxHead, AMHead, AAMHead])
def test_bad_input(cls):
    head = cls(4, 3)
    with pytest.raises(ValueError, match=r"embeddings must have shape \(batch, 4\)"):
        head(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="label 3 out of range for 3 classes"):
        head(torch.zeros(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        head(torch.zeros(2, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        cls(4, 1)


def test_build_head():
    am = build_head("am", 8, 5)
    assert isinstance(am, AMHead) and (am.scale, am.margin) == (30.0, 0.2)
    aam = build_head("aam", 8, 5, scale=20.0, margin=0.0, easy_margin=True)
    assert isinstance(aam, AAMHead) and (aam.scale, aam.margin, aam.easy_margin) == (20.0, 0.0, True)
    soft = build_head("softmax", 8, 5, margin=None)  # None: not given
    assert isinstance(soft, SoftmaxHead) and soft.scale is None
    assert build_head("softmax", 8, 5, scale=2.0).scale == 2.0
    with pytest.raises(InputError, match=r"unknown head kind 'arcface' \(registered: softmax, am, aam; or module:Class\)"):
        build_head("arcface", 8, 5)
    with pytest.raises(InputError, match=r"key 'margin': unknown key \(known: scale, bias\)"):
        build_head("softmax", 8, 5, margin=0.2)
    with pytest.raises(InputError, match=r"key 'easy_margin': unknown key \(known: scale, margin\)"):
        build_head("am", 8, 5, easy_margin=True)
    with pytest.raises(InputError, match="num_classes must be >= 2"):
        build_head("aam", 8, 1)
