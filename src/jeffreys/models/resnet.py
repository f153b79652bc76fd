"""ResNet x-vector extractor (paper section 5.1): filterbank "image" → ResNet → stats → linear.

The network is the ResNet-34 variant used in speaker recognition (WeSpeaker, the paper's
authors): a 3×3 stem convolution over the (mel, frame) plane, four stages of basic blocks
(3-4-6-3 for ResNet-34) with strides 1-2-2-2, statistics pooling (mean and standard
deviation over time of every channel × remaining-frequency row) and one linear layer giving
the embedding (batch-normalised with ``embed_bn``, as the demo preset does). Widths, depths, strides, input and embedding sizes come from
:class:`ResNetConfig`; :data:`PRESETS` names the paper's model, the WeSpeaker ResNet-34 and
a small CPU model for the demo.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..features import FRONTEND_KEYS, FrontEnd
from ..registry import MODELS, ModelSpec


@dataclass
class ResNetConfig:
    """Shape of a :class:`SpeakerModel`; every field has a YAML key of the same name."""

    widths: list[int] = field(default_factory=lambda: [128, 128, 256, 256])
    depths: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    strides: list[int] = field(default_factory=lambda: [1, 2, 2, 2])
    num_mel_bins: int = 60
    embed_dim: int = 256
    sample_rate: int = 16000
    stem_width: int | None = None  # None: widths[0]
    stem_stride: int = 1  # 2 quarters the cost of every later layer (CPU presets)
    # BatchNorm1d (no affine) on the embedding. The cosine heads are blind to the embedding's
    # norm, so its gradient is orthogonal to it and SGD inflates it step after step, which
    # shrinks the effective learning rate; the norm layer pins it. Big, long runs cope
    # without (the paper's model has none); short CPU runs do not learn without it (docs/training.md).
    embed_bn: bool = False
    # Normalisation of the log mel filterbanks: "mean" subtracts each bin's mean over the
    # utterance (this project's default: the paper says only "60-dimensional filter-banks"
    # and points to Kaldi's VoxCeleb recipe); "sliding" each bin's mean over cmn_window frames
    # around each frame (the recipe's apply-cmvn-sliding, 300 frames = 3 s); "level" only the
    # utterance's overall log level, so the long-term spectral shape (a speaker's and
    # microphone's colouring) reaches the network; "none" keeps the raw log energies.
    feature_norm: str = FrontEnd.feature_norm
    cmn_window: int = FrontEnd.cmn_window
    # "energy": only the frames Kaldi's energy VAD (compute-vad) marks voiced are embedded,
    # selected after the normalisation as in the recipe (jeffreys.features); the vad_* keys
    # are compute-vad's options, defaults those of the recipe's conf/vad.conf. "none": all frames.
    vad: str = FrontEnd.vad
    vad_energy_threshold: float = FrontEnd.vad_energy_threshold
    vad_energy_mean_scale: float = FrontEnd.vad_energy_mean_scale
    vad_frames_context: int = FrontEnd.vad_frames_context
    vad_proportion_threshold: float = FrontEnd.vad_proportion_threshold

    def __post_init__(self) -> None:
        n = len(self.widths)
        if n == 0 or len(self.depths) != n or len(self.strides) != n:
            raise ValueError(
                f"widths, depths and strides must be non-empty lists of the same length, "
                f"got {len(self.widths)}, {len(self.depths)}, {len(self.strides)}"
            )
        for name in ("widths", "depths", "strides"):
            if any(v < 1 for v in getattr(self, name)):
                raise ValueError(f"{name} must be positive integers, got {getattr(self, name)}")
        for name in ("num_mel_bins", "embed_dim", "sample_rate", "stem_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        FrontEnd(**{k: getattr(self, k) for k in FRONTEND_KEYS})  # checks the front-end keys
        if self.stem_width is not None and self.stem_width < 1:
            raise ValueError(f"stem_width must be a positive integer, got {self.stem_width}")

    @property
    def pooled_freq(self) -> int:
        """Frequency rows left after the strided convolutions (3×3, padding 1: ceil(n/s))."""
        f = math.ceil(self.num_mel_bins / self.stem_stride)
        for s in self.strides:
            f = math.ceil(f / s)
        return f

    @property
    def stats_dim(self) -> int:
        return 2 * self.widths[-1] * self.pooled_freq


PRESETS: dict[str, ResNetConfig] = {
    # Paper section 5.1: ResNet-34, feature maps 128-128-256-256, 60 fbanks, 256-dim x-vector.
    "paper": ResNetConfig(),
    # WeSpeaker's ResNet-34 (m_channels 32), 80 fbanks.
    "wespeaker": ResNetConfig(widths=[32, 64, 128, 256], num_mel_bins=80),
    # CPU demo model: one block per stage, stride-2 stem, 40 fbanks, normalised embedding
    # (see docs/benchmarks.md, measured).
    "demo": ResNetConfig(
        widths=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_mel_bins=40, embed_dim=128, stem_stride=2,
        embed_bn=True,
    ),
}


def preset(name: str, **overrides) -> ResNetConfig:
    """A copy of preset ``name`` with fields replaced by ``overrides``."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r} (known: {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[name], **overrides)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (1×1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class StatsPool(nn.Module):
    """Mean and standard deviation over the last (time) axis, concatenated."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1)
        var = (x - mean.unsqueeze(-1)).square().mean(dim=-1)
        # eps keeps the gradient of sqrt finite on constant (e.g. silent) inputs.
        return torch.cat([mean, torch.sqrt(var + self.eps)], dim=-1)


class ResNetEmbedder(nn.Module):
    """Features [B, frames, mels] → embedding [B, embed_dim].

    Built from a :class:`ResNetConfig` or from its fields as keyword arguments (the model
    registry's ``resnet`` kind, whose ``preset`` key starts from :data:`PRESETS`)."""

    Config = ResNetConfig

    def __init__(self, cfg: ResNetConfig | None = None, /, **fields):
        super().__init__()
        cfg = cfg if cfg is not None else ResNetConfig(**fields)
        self.config = cfg
        stem = cfg.stem_width or cfg.widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(1, stem, 3, cfg.stem_stride, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU()
        )
        stages, cin = [], stem
        for width, depth, stride in zip(cfg.widths, cfg.depths, cfg.strides):
            blocks = [BasicBlock(cin, width, stride)] + [BasicBlock(width, width, 1) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.pool = StatsPool()
        self.embedding = nn.Linear(cfg.stats_dim, cfg.embed_dim)
        self.embed_norm = nn.BatchNorm1d(cfg.embed_dim, affine=False) if cfg.embed_bn else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.dim() != 3:
            raise ValueError(f"features must be [batch, frames, mels], got shape {tuple(feats.shape)}")
        x = feats.transpose(1, 2).unsqueeze(1)  # [B, 1, mels, frames]: frequency is the image height
        x = self.stages(self.stem(x))
        b, c, f, t = x.shape
        stats = self.pool(x.reshape(b, c * f, t))
        return self.embed_norm(self.embedding(stats))


class SpeakerModel(nn.Module):
    """Waveforms [B, samples] (float32, at ``sample_rate``) → embeddings [B, embed_dim].

    The log mel filterbank front-end (:class:`jeffreys.features.Fbank`) and an embedder
    (features → embedding: the paper's ResNet, or any kind of the model registry) form one
    module, so a saved model needs nothing else; :meth:`embed_features` skips the front-end
    for callers that compute or cache the features themselves. ``SpeakerModel(cfg)`` with a
    :class:`ResNetConfig` builds the ResNet; a :class:`jeffreys.registry.ModelSpec` any kind.

    The front-end keys (:class:`jeffreys.features.FrontEnd`: ``feature_norm``, ``cmn_window``,
    ``vad`` and its options) are read from the model section; a section without them (a
    bundle from before them, a plug-in kind) gets the defaults: per-utterance mean, no VAD.
    With ``vad: energy`` :meth:`forward` embeds the voiced frames only, normalised over all
    frames first (Kaldi's order): in training mode each row's voiced frames repeated to the
    row's length (:func:`~jeffreys.features.wrap_voiced`: the batch keeps its shape); in eval
    mode each row's voiced frames alone (:func:`~jeffreys.features.embed_voiced`). A row with
    fewer than :data:`~jeffreys.features.VAD_MIN_FRAMES` voiced frames keeps all its frames.
    """

    def __init__(self, cfg: ResNetConfig | ModelSpec):
        super().__init__()
        from ..features import Fbank

        if isinstance(cfg, ResNetConfig):
            cfg = ModelSpec("resnet", dataclasses.asdict(cfg))
        self.spec = cfg
        self.embedder = cfg.build()
        self.num_mel_bins = int(cfg.args["num_mel_bins"])
        self.embed_dim = int(cfg.args["embed_dim"])
        self.sample_rate = int(cfg.args.get("sample_rate", 16000))
        self.frontend = FrontEnd.of(cfg.args)
        self.fbank = Fbank.with_norm(self.frontend.feature_norm, cmn_window=self.frontend.cmn_window,
                                     num_mel_bins=self.num_mel_bins, sample_rate=self.sample_rate)
        self.vad = self.frontend.energy_vad()  # None: every frame is embedded

    @property
    def config(self):
        """The embedder's typed configuration (a :class:`ResNetConfig` for the ResNet)."""
        return getattr(self.embedder, "config", None) or self.spec

    def features(self, waves: torch.Tensor) -> torch.Tensor:
        """Log mel filterbanks [B, frames, mels] of every frame, normalised as ``feature_norm``
        says, without gradient (the VAD's selection is not applied: :meth:`voiced_features`)."""
        return self.voiced_features(waves)[0]

    def voiced_features(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(features, keep)``: :meth:`features` and, with ``vad: energy``, the frames to
        embed ``[B, frames]`` (:func:`~jeffreys.features.keep_frames`), else None."""
        from ..features import keep_frames

        if waves.dim() != 2:
            raise ValueError(f"waveforms must be [batch, samples], got shape {tuple(waves.shape)}")
        with torch.no_grad():
            if self.vad is None:
                return self.fbank(waves.float()), None
            feats, log_energy = self.fbank(waves.float(), energy=True)
            return feats, keep_frames(self.vad(log_energy))

    def embed_features(self, feats: torch.Tensor) -> torch.Tensor:
        return self.embedder(feats)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        from ..features import embed_voiced, wrap_voiced

        feats, keep = self.voiced_features(waves)
        if keep is None:
            return self.embedder(feats)
        if self.training:
            return self.embedder(wrap_voiced(feats, keep))
        return embed_voiced(self.embedder, feats, keep)


def param_count(cfg: ResNetConfig | str) -> int:
    """Trainable parameters of the extractor (without the classification head)."""
    if isinstance(cfg, str):
        cfg = PRESETS[cfg]
    return sum(p.numel() for p in ResNetEmbedder(cfg).parameters() if p.requires_grad)


MODELS.register("resnet", presets=PRESETS, default_preset="paper")(ResNetEmbedder)
