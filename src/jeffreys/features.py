"""Kaldi-compatible log mel filterbanks, batched, in pure torch (CPU or GPU).

The computation is Kaldi's ``compute-fbank-feats`` with its defaults, frame by frame:
framing with ``snip_edges`` (only whole frames, ``1 + (T - L) // S`` of them), optional
dither, DC offset removal, pre-emphasis (0.97, the first sample against itself), the
"povey" window (Hann to the power 0.85), zero padding to a power of two, power spectrum,
triangular mel filters spaced on ``1127 ln(1 + f/700)`` between ``low_freq`` (20 Hz) and
``high_freq`` (0 = Nyquist; negative = offset from Nyquist), the Nyquist bin left out of
the filters, and ``log(max(energy, FLT_EPSILON))``. ``tests/test_features.py`` checks it
against kaldi-native-fbank.

Scaling: Kaldi reads int16 samples as floats in [-32768, 32767]; our audio loader returns
[-1, 1]. :class:`Fbank` multiplies its input by ``input_scale`` (32768 by default) so that
the features equal Kaldi's for the same file. Only the energy floor depends on it, and
after mean normalisation the features do not depend on it at all otherwise.

Mean normalisation (``mean_norm=True``) subtracts the mean over time of each utterance,
as the paper's (and WeSpeaker's) front-end does; with ``lengths``, only real frames count.
Level normalisation (``level_norm=True``, instead) subtracts one number per utterance, its
mean over time and bins: the recording level goes, the long-term spectral shape stays.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

FLT_EPSILON = float(np.finfo(np.float32).eps)
FEATURE_NORMS = ("mean", "level", "none")  # per-bin mean, overall level, raw log energies


def mel_scale(freq):
    return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def mel_banks(num_bins: int, padded_window: int, sample_rate: float, low_freq: float, high_freq: float) -> np.ndarray:
    """Kaldi's triangular mel filters as a ``[padded_window // 2 + 1, num_bins]`` matrix.

    Row ``padded_window // 2`` (the Nyquist bin) is zero, as in Kaldi.
    """
    nyquist = 0.5 * sample_rate
    if high_freq <= 0:
        high_freq = nyquist + high_freq
    if not (0 <= low_freq < high_freq <= nyquist):
        raise ValueError(f"bad mel frequency range low_freq={low_freq} high_freq={high_freq} (Nyquist {nyquist})")
    n_fft_bins = padded_window // 2
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    left = mel_low + delta * np.arange(num_bins)
    center, right = left + delta, left + 2 * delta
    mel = mel_scale(np.arange(n_fft_bins) * sample_rate / padded_window)[:, None]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    w = np.where((mel > left) & (mel < right), np.where(mel <= center, up, down), 0.0)
    out = np.zeros((n_fft_bins + 1, num_bins))
    out[:n_fft_bins] = w
    return out


def povey_window(length: int) -> np.ndarray:
    n = np.arange(length, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2 * math.pi * n / (length - 1))) ** 0.85


class Fbank(nn.Module):
    """Log mel filterbanks: ``[B, T]`` (or ``[T]``) waveforms in [-1, 1] → ``[B, frames, num_mel_bins]``.

    Buffers (window, filters) follow ``.to(device)``; the computation runs in float32 on
    the input's device. ``dither`` > 0 adds Gaussian noise of that standard deviation (in
    int16 units, as Kaldi) from ``generator`` or the global torch RNG.
    """

    def __init__(
        self,
        num_mel_bins: int = 60,
        sample_rate: int = 16000,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        dither: float = 0.0,
        mean_norm: bool = True,
        *,
        level_norm: bool = False,
        low_freq: float = 20.0,
        high_freq: float = 0.0,
        preemphasis: float = 0.97,
        remove_dc_offset: bool = True,
        input_scale: float = 32768.0,
    ):
        super().__init__()
        self.num_mel_bins = num_mel_bins
        self.sample_rate = sample_rate
        self.frame_length = int(sample_rate * frame_length_ms / 1000)  # Kaldi truncates
        self.frame_shift = int(sample_rate * frame_shift_ms / 1000)
        if self.frame_length < 2 or self.frame_shift < 1:
            raise ValueError("frame length/shift too short for the sample rate")
        self.padded = 1 << (self.frame_length - 1).bit_length()
        self.dither = dither
        if mean_norm and level_norm:
            raise ValueError("mean_norm and level_norm exclude each other")
        self.mean_norm = mean_norm
        self.level_norm = level_norm
        self.preemphasis = preemphasis
        self.remove_dc_offset = remove_dc_offset
        self.input_scale = input_scale
        self.register_buffer("window", torch.tensor(povey_window(self.frame_length), dtype=torch.float32), persistent=False)
        banks = mel_banks(num_mel_bins, self.padded, sample_rate, low_freq, high_freq)
        self.register_buffer("banks", torch.tensor(banks, dtype=torch.float32), persistent=False)


    @property
    def norm(self) -> str:
        """The normalisation as a model config names it (``feature_norm``): mean, level or none."""
        return "mean" if self.mean_norm else "level" if self.level_norm else "none"

    @classmethod
    def with_norm(cls, norm: str, **kwargs) -> "Fbank":
        """An Fbank normalising as ``norm`` (one of :data:`FEATURE_NORMS`) says."""
        if norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm must be one of {', '.join(FEATURE_NORMS)}, got {norm!r}")
        return cls(mean_norm=norm == "mean", level_norm=norm == "level", **kwargs)
    def num_frames(self, num_samples):
        """Frames produced for ``num_samples`` samples (int or tensor), Kaldi's snip_edges rule."""
        if isinstance(num_samples, torch.Tensor):
            return torch.where(
                num_samples >= self.frame_length,
                1 + torch.div(num_samples - self.frame_length, self.frame_shift, rounding_mode="floor"),
                torch.zeros_like(num_samples),
            )
        return 0 if num_samples < self.frame_length else 1 + (num_samples - self.frame_length) // self.frame_shift

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        # Log energies need float32 even when the model runs under autocast (bf16/fp16).
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return self._forward(wave, lengths, generator)

    def _forward(self, wave: torch.Tensor, lengths: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
        squeeze = wave.dim() == 1
        if squeeze:
            wave = wave[None]
        if wave.dim() != 2:
            raise ValueError(f"Fbank expects [B, T] or [T] waveforms, got shape {tuple(wave.shape)}")
        if wave.shape[1] < self.frame_length:
            raise ValueError(f"waveform of {wave.shape[1]} samples is shorter than one frame ({self.frame_length})")
        x = wave.to(torch.float32) * self.input_scale
        frames = x.unfold(1, self.frame_length, self.frame_shift)  # [B, F, L], a view
        if self.dither > 0:
            frames = frames + self.dither * torch.randn(frames.shape, generator=generator, device=frames.device)
        if self.remove_dc_offset:
            frames = frames - frames.mean(dim=2, keepdim=True)
        if self.preemphasis:
            prev = torch.cat([frames[..., :1], frames[..., :-1]], dim=2)
            frames = frames - self.preemphasis * prev
        frames = frames * self.window
        spec = torch.fft.rfft(frames, n=self.padded, dim=2)
        power = spec.real.square() + spec.imag.square()
        feats = torch.matmul(power, self.banks).clamp_min(FLT_EPSILON).log()
        if lengths is not None:
            n = self.num_frames(lengths.to(feats.device))
            mask = (torch.arange(feats.shape[1], device=feats.device)[None] < n[:, None]).unsqueeze(2)
            if self.mean_norm:
                mean = (feats * mask).sum(1, keepdim=True) / n.clamp_min(1)[:, None, None]
                feats = feats - mean
            elif self.level_norm:
                level = (feats * mask).sum((1, 2), keepdim=True) / (n.clamp_min(1) * feats.shape[2])[:, None, None]
                feats = feats - level
            feats = feats * mask
        elif self.mean_norm:
            feats = feats - feats.mean(dim=1, keepdim=True)
        elif self.level_norm:
            feats = feats - feats.mean(dim=(1, 2), keepdim=True)
        return feats[0] if squeeze else feats


def fbank(wave: np.ndarray, sample_rate: int = 16000, num_mel_bins: int = 60, mean_norm: bool = True, **kwargs) -> np.ndarray:
    """Features of one waveform (numpy, [-1, 1]) as a float32 ``[frames, num_mel_bins]`` array."""
    module = Fbank(num_mel_bins=num_mel_bins, sample_rate=sample_rate, mean_norm=mean_norm, **kwargs)
    with torch.no_grad():
        return module(torch.from_numpy(np.asarray(wave, dtype=np.float32))).numpy()


__all__ = ["Fbank", "fbank", "mel_banks", "povey_window", "mel_scale"]
