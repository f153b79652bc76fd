"""Classification heads turning speaker embeddings into (margin-penalised, scaled) logits.

``SoftmaxHead`` is a linear layer; ``AMHead`` (CosFace) and ``AAMHead`` (ArcFace) score
by cosine between the L2-normalised embedding and class weights, penalise the target
class by a margin during training and multiply by ``scale``. ``scale`` and ``margin`` are
plain float attributes read at every forward, so a scheduler may ramp them.

``forward(embeddings, labels)`` gives training logits; ``forward(embeddings)`` (no labels)
gives the unmargined scaled cosines used at inference. Normalisation and cosines are
computed in float32 even under autocast (float64 stays float64); the margin is applied
to the B target entries only, never through a one-hot matrix.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import HEADS, HeadSpec


def _check_inputs(embeddings: Tensor, labels: Tensor | None, embed_dim: int, num_classes: int) -> None:
    if embeddings.dim() != 2 or embeddings.shape[1] != embed_dim:
        raise ValueError(
            f"embeddings must have shape (batch, {embed_dim}), got {tuple(embeddings.shape)}"
        )
    if labels is None:
        return
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    if labels.shape != (embeddings.shape[0],):
        raise ValueError(
            f"labels must have shape ({embeddings.shape[0]},), got {tuple(labels.shape)}"
        )
    if labels.numel() and (bool((labels < 0).any()) or bool((labels >= num_classes).any())):
        bad = labels[(labels < 0) | (labels >= num_classes)][0].item()
        raise ValueError(f"label {bad} out of range for {num_classes} classes")


def _check_sizes(embed_dim: int, num_classes: int) -> None:
    if embed_dim < 1:
        raise ValueError(f"embed_dim must be >= 1, got {embed_dim}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")


@HEADS.register("softmax")
class SoftmaxHead(nn.Module):
    """Linear classifier ``W e + b``, optionally multiplied by ``scale`` (None: 1).

    It has no margin; ``labels`` are accepted (and checked) for a uniform interface.
    """

    def __init__(self, embed_dim: int, num_classes: int, scale: float | None = None, bias: bool = True) -> None:
        super().__init__()
        _check_sizes(embed_dim, num_classes)
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(num_classes, embed_dim))
        self.bias = nn.Parameter(torch.empty(num_classes)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's initialisation.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.embed_dim)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        _check_inputs(embeddings, labels, self.embed_dim, self.num_classes)
        logits = F.linear(embeddings, self.weight, self.bias)
        return logits if self.scale is None else logits * self.scale

    def config_args(self) -> dict:
        # `bias` is the parameter itself here, so the registry cannot read the argument back.
        return {"scale": self.scale, "bias": self.bias is not None}

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_classes={self.num_classes}, scale={self.scale}, "
                f"bias={self.bias is not None}")


class _CosineHead(nn.Module):
    """Shared part of the cosine heads: weights, float32 cosines, inference logits."""

    def __init__(self, embed_dim: int, num_classes: int, scale: float, margin: float) -> None:
        super().__init__()
        _check_sizes(embed_dim, num_classes)
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        self.scale = float(scale)
        self.margin = float(margin)
        self.weight = nn.Parameter(torch.empty(num_classes, embed_dim))
        nn.init.xavier_uniform_(self.weight)

    def cosines(self, embeddings: Tensor) -> Tensor:
        """(B, K) cosines between embeddings and class weights, in float32 or float64."""
        dtype = torch.float64 if embeddings.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            e = F.normalize(embeddings.to(dtype), dim=1)
            w = F.normalize(self.weight.to(dtype), dim=1)
            return F.linear(e, w).clamp(-1.0, 1.0)

    def target_logit(self, cos_t: Tensor) -> Tensor:
        """Margin-penalised cosine of the target class (before scaling)."""
        raise NotImplementedError

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        _check_inputs(embeddings, labels, self.embed_dim, self.num_classes)
        cos = self.cosines(embeddings)
        if labels is None:
            return cos * self.scale
        idx = labels.unsqueeze(1)
        penalised = self.target_logit(cos.gather(1, idx))
        return cos.scatter(1, idx, penalised) * self.scale

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_classes={self.num_classes}, "
                f"scale={self.scale}, margin={self.margin}")


@HEADS.register("am")
class AMHead(_CosineHead):
    """Additive margin softmax (CosFace): target logit ``scale * (cos θ - margin)``."""

    def __init__(self, embed_dim: int, num_classes: int, scale: float = 30.0, margin: float = 0.2) -> None:
        super().__init__(embed_dim, num_classes, scale, margin)

    def target_logit(self, cos_t: Tensor) -> Tensor:
        return cos_t - self.margin


@HEADS.register("aam")
class AAMHead(_CosineHead):
    """Additive angular margin softmax (ArcFace): target logit ``scale * cos(θ + margin)``.

    cos(θ + m) stops being monotonic in θ once θ + m > π; as in the ArcFace reference
    implementation the target logit is then ``cos θ - m sin m`` (below the threshold
    ``cos θ < cos(π - m)``), which continues it monotonically. With ``easy_margin`` the
    margin applies only where ``cos θ > 0`` and the plain cosine is kept elsewhere.
    """

    def __init__(
        self, embed_dim: int, num_classes: int, scale: float = 30.0, margin: float = 0.2,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(embed_dim, num_classes, scale, margin)
        self.easy_margin = bool(easy_margin)

    def target_logit(self, cos_t: Tensor) -> Tensor:
        m = self.margin
        # The floor keeps d sin/d cos finite when cos is exactly +-1.
        sin_t = (1.0 - cos_t * cos_t).clamp(min=1e-12).sqrt()
        phi = cos_t * math.cos(m) - sin_t * math.sin(m)
        if self.easy_margin:
            return torch.where(cos_t > 0, phi, cos_t)
        threshold = math.cos(math.pi - m)
        return torch.where(cos_t > threshold, phi, cos_t - math.sin(math.pi - m) * m)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", easy_margin={self.easy_margin}"


def build_head(kind: str, embed_dim: int, num_classes: int, **args) -> nn.Module:
    """The head ``kind`` (``softmax``, ``am``, ``aam`` or ``module:Class``) with ``args``.

    An argument given as None takes the class's default; an argument the kind does not take
    is an error. Raises :class:`jeffreys.errors.InputError` (a ValueError) naming it.
    """
    spec = HeadSpec.from_config({"kind": kind, **{k: v for k, v in args.items() if v is not None}}, source="build_head")
    return spec.build(embed_dim=embed_dim, num_classes=num_classes)
