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

Normalisation (a model config's ``feature_norm``; with ``lengths``, only real frames count):

* ``mean`` (``mean_norm=True``, this project's default) subtracts each bin's mean over the
  utterance, as WeSpeaker's front-end does. The paper says only "60-dimensional filter-banks"
  and points to Kaldi's VoxCeleb recipe for the rest; the per-utterance mean is our assumption.
* ``sliding`` (``sliding_norm=True``) is Kaldi's ``apply-cmvn-sliding --norm-vars=false
  --center=true --cmn-window=N`` (:func:`sliding_cmn`), the VoxCeleb recipe's with N = 300
  frames (3 s): each frame minus the mean of a window of N frames around it.
* ``level`` (``level_norm=True``) subtracts one number per utterance, its mean over time and
  bins: the recording level goes, the long-term spectral shape stays.
* ``none``: the raw log energies.

Energy VAD (:class:`EnergyVad`, a model config's ``vad: energy``) is Kaldi's ``compute-vad``
with the VoxCeleb recipe's ``conf/vad.conf``, on each frame's raw log energy (Kaldi's MFCC C0:
``forward(..., energy=True)``). As in the recipe (``apply-cmvn-sliding ... |
select-voiced-frames``), features are normalised over all frames first and the voiced ones
are selected after: :func:`keep_frames`, :func:`wrap_voiced` (training chunks),
:func:`embed_voiced` (whole utterances).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

FLT_EPSILON = float(np.finfo(np.float32).eps)
# per-bin mean, Kaldi's sliding per-bin mean, overall level, raw log energies
FEATURE_NORMS = ("mean", "level", "sliding", "none")
VADS = ("none", "energy")
KALDI_CMN_WINDOW = 300  # frames: the VoxCeleb recipe's --cmn-window (3 s at 10 ms)
# Fewer voiced frames than this and every frame is kept: an embedding of a handful of frames
# (a silent or clipped recording) says less than one of the whole thing. 25 is Kaldi's
# --min-chunk-size in the VoxCeleb recipe's extract_xvectors.sh.
VAD_MIN_FRAMES = 25
_MAX_FRAMES = (1 << 31) - 1  # bound on window and context: beyond it int64 index arithmetic could overflow


@dataclass(frozen=True)
class FrontEnd:
    """The front-end options a model config carries (every field is a model-section key),
    validated; a bundle or ONNX file from before a key existed reads as the default, which
    is the front-end it had. Values may come from untrusted files: errors quote a short excerpt."""

    feature_norm: str = "mean"
    cmn_window: int = KALDI_CMN_WINDOW  # frames, used by feature_norm: sliding
    vad: str = "none"
    # Kaldi's compute-vad options, the VoxCeleb recipe's conf/vad.conf (used by vad: energy)
    vad_energy_threshold: float = 5.5
    vad_energy_mean_scale: float = 0.5
    vad_frames_context: int = 2
    vad_proportion_threshold: float = 0.12

    def __post_init__(self) -> None:
        from .errors import excerpt

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        if self.feature_norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm must be one of {', '.join(FEATURE_NORMS)}, got {excerpt(self.feature_norm)}")
        if not (is_int(self.cmn_window) and 1 <= self.cmn_window <= _MAX_FRAMES):
            raise ValueError(f"cmn_window must be a positive number of frames, got {excerpt(self.cmn_window)}")
        if self.vad not in VADS:
            raise ValueError(f"vad must be one of {', '.join(VADS)}, got {excerpt(self.vad)}")
        if not is_num(self.vad_energy_threshold):
            raise ValueError(f"vad_energy_threshold must be a finite number, got {excerpt(self.vad_energy_threshold)}")
        if not (is_num(self.vad_energy_mean_scale) and self.vad_energy_mean_scale >= 0):
            raise ValueError(f"vad_energy_mean_scale must be a number >= 0, got {excerpt(self.vad_energy_mean_scale)}")
        if not (is_int(self.vad_frames_context) and 0 <= self.vad_frames_context <= _MAX_FRAMES):
            raise ValueError(f"vad_frames_context must be an integer >= 0, got {excerpt(self.vad_frames_context)}")
        if not (is_num(self.vad_proportion_threshold) and 0 < self.vad_proportion_threshold < 1):
            raise ValueError(f"vad_proportion_threshold must be in (0, 1), got {excerpt(self.vad_proportion_threshold)}")

    @classmethod
    def of(cls, args: dict) -> "FrontEnd":
        """The front-end keys of a model section (others ignored; absent ones default)."""
        return cls(**{k: args[k] for k in FRONTEND_KEYS if k in args})

    def energy_vad(self) -> "EnergyVad | None":
        if self.vad == "none":
            return None
        return EnergyVad(self.vad_energy_threshold, self.vad_energy_mean_scale, self.vad_frames_context,
                         self.vad_proportion_threshold)


FRONTEND_KEYS = tuple(f.name for f in dataclasses.fields(FrontEnd))


def sliding_cmn(feats: torch.Tensor, window: int = KALDI_CMN_WINDOW, num_frames: torch.Tensor | None = None) -> torch.Tensor:
    """Kaldi's ``apply-cmvn-sliding --norm-vars=false --center=true --cmn-window=window`` on
    ``[B, T, D]`` features: frame t minus the mean of frames ``[s, e)``, where ``s = t -
    window // 2`` and ``e = s + window``, the window shifted (not shrunk) to lie inside the
    utterance and clipped to it only when the utterance is shorter than the window (then
    every frame gets the utterance's mean). Sums in float64 as Kaldi's; vectorised with
    cumulative sums, so it runs on any device and exports to ONNX (CumSum, GatherElements).
    ``num_frames`` (``[B]``): each row's real frames; no window reaches the rest, whose output
    is meaningless (:class:`Fbank` zeroes it)."""
    b, t, d = feats.shape
    x = feats.to(torch.float64)
    csum = torch.cat([x.new_zeros(b, 1, d), x.cumsum(1)], dim=1)  # csum[:, i] = sum of frames < i
    frame = torch.arange(t, device=feats.device)[None]
    n = frame[:, -1:] + 1 if num_frames is None else num_frames.to(feats.device, torch.int64).reshape(b, 1)
    start = torch.minimum(frame - window // 2, n - window).clamp_min(0)  # [B or 1, T]
    end = torch.minimum(start + window, n)
    count = (end - start).clamp_min(1)  # 0 only on padding rows of no frame

    def at(i: torch.Tensor) -> torch.Tensor:
        return csum.gather(1, i.expand(b, t)[..., None].expand(b, t, d))

    return (x - (at(end) - at(start)) / count[..., None]).to(feats.dtype)


@dataclass(frozen=True)
class EnergyVad:
    """Kaldi's energy VAD (``compute-vad``, ``ComputeVadEnergy`` in
    ivector/voice-activity-detection.cc) on ``[B, T]`` frame log energies → voiced ``[B, T]``.

    ``threshold = energy_threshold + energy_mean_scale * mean(log_energy)`` per utterance;
    frame t is voiced when, of the frames ``t - context .. t + context`` inside the
    utterance (``den`` of them), ``num`` have a log energy above the threshold and ``num >=
    den * proportion_threshold`` (Kaldi's comparison, in float32 as Kaldi's). The mean is
    accumulated in float64 and the threshold rounded to float32, as Kaldi's is a float.
    Defaults: the VoxCeleb recipe's conf/vad.conf."""

    energy_threshold: float = 5.5
    energy_mean_scale: float = 0.5
    frames_context: int = 2
    proportion_threshold: float = 0.12

    def __call__(self, log_energy: torch.Tensor) -> torch.Tensor:
        e = log_energy.to(torch.float32)
        t = e.shape[1]
        threshold = torch.full_like(e[:, :1], self.energy_threshold, dtype=torch.float64)
        if self.energy_mean_scale != 0:
            threshold = threshold + self.energy_mean_scale * e.to(torch.float64).mean(1, keepdim=True)
        loud = (e > threshold.to(torch.float32)).to(torch.int64)
        csum = torch.cat([torch.zeros_like(loud[:, :1]), loud.cumsum(1)], dim=1)
        frame = torch.arange(t, device=e.device)[None]
        lo = (frame - self.frames_context).clamp_min(0)
        hi = torch.minimum(frame + self.frames_context + 1, frame[:, -1:] + 1)
        num = csum.gather(1, hi.expand_as(loud)) - csum.gather(1, lo.expand_as(loud))
        den = (hi - lo).to(torch.float32) * torch.tensor(self.proportion_threshold, dtype=torch.float32)
        return num.to(torch.float32) >= den


def keep_frames(voiced: torch.Tensor, min_frames: int = VAD_MIN_FRAMES) -> torch.Tensor:
    """The frames to embed ``[B, T]``: the voiced ones, or every frame of a row with fewer
    than ``min_frames`` (:data:`VAD_MIN_FRAMES`) voiced, none included."""
    return voiced | (voiced.sum(1, keepdim=True) < min_frames)


def wrap_voiced(feats: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Training chunks ``[B, T, D]`` → each row's kept frames in order, repeated from its
    first until the row has T frames again, so the batch keeps its shape (what Kaldi's egs
    amount to: chunks of voiced frames only). Static shapes: no data-dependent size."""
    b, t, d = feats.shape
    n = keep.sum(1, keepdim=True).clamp_min(1)
    # kept frames first, in time order (a stable sort of the dropped flags)
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices
    index = order.gather(1, torch.arange(t, device=feats.device)[None] % n)
    return feats.gather(1, index[..., None].expand(b, t, d))


def embed_voiced(embed, feats: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``embed`` (features ``[b, frames, D]`` → ``[b, dim]``) of each row's kept frames only:
    one row is a plain selection (and exports to ONNX); rows with different numbers of kept
    frames are embedded in groups of equal numbers, each row as if alone (eval mode)."""
    if feats.shape[0] == 1:
        return embed(feats[keep].unsqueeze(0))
    counts = keep.sum(1)
    out = None
    for n in counts.unique().tolist():
        rows = (counts == n).nonzero()[:, 0]
        part = embed(feats[rows][keep[rows]].reshape(rows.numel(), n, feats.shape[2]))
        if out is None:
            out = part.new_empty(feats.shape[0], part.shape[1])
        out[rows] = part
    return out


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
        sliding_norm: bool = False,
        cmn_window: int = KALDI_CMN_WINDOW,
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
        if mean_norm + level_norm + sliding_norm > 1:
            raise ValueError("mean_norm, level_norm and sliding_norm exclude each other")
        if not 1 <= cmn_window <= _MAX_FRAMES:
            raise ValueError(f"cmn_window must be a positive number of frames, got {cmn_window}")
        self.mean_norm = mean_norm
        self.level_norm = level_norm
        self.sliding_norm = sliding_norm
        self.cmn_window = int(cmn_window)
        self.preemphasis = preemphasis
        self.remove_dc_offset = remove_dc_offset
        self.input_scale = input_scale
        self.register_buffer("window", torch.tensor(povey_window(self.frame_length), dtype=torch.float32), persistent=False)
        banks = mel_banks(num_mel_bins, self.padded, sample_rate, low_freq, high_freq)
        self.register_buffer("banks", torch.tensor(banks, dtype=torch.float32), persistent=False)


    @property
    def norm(self) -> str:
        """The normalisation as a model config names it (``feature_norm``): mean, level, sliding or none."""
        return "mean" if self.mean_norm else "level" if self.level_norm else "sliding" if self.sliding_norm else "none"

    @classmethod
    def with_norm(cls, norm: str, **kwargs) -> "Fbank":
        """An Fbank normalising as ``norm`` (one of :data:`FEATURE_NORMS`) says; ``cmn_window``
        among ``kwargs`` for ``sliding``."""
        if norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm must be one of {', '.join(FEATURE_NORMS)}, got {norm!r}")
        return cls(mean_norm=norm == "mean", level_norm=norm == "level", sliding_norm=norm == "sliding", **kwargs)

    def num_frames(self, num_samples):
        """Frames produced for ``num_samples`` samples (int or tensor), Kaldi's snip_edges rule."""
        if isinstance(num_samples, torch.Tensor):
            return torch.where(
                num_samples >= self.frame_length,
                1 + torch.div(num_samples - self.frame_length, self.frame_shift, rounding_mode="floor"),
                torch.zeros_like(num_samples),
            )
        return 0 if num_samples < self.frame_length else 1 + (num_samples - self.frame_length) // self.frame_shift

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None, generator: torch.Generator | None = None,
                *, energy: bool = False):
        """Features; with ``energy``, ``(features, log_energy)``: each frame's raw log energy
        ``[B, frames]`` (Kaldi's MFCC C0 with ``raw_energy``: the frame after dither and DC
        removal, before pre-emphasis and window, floored at FLT_EPSILON; unnormalised, and
        not masked by ``lengths``), what :class:`EnergyVad` decides on."""
        # Log energies need float32 even when the model runs under autocast (bf16/fp16).
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return self._forward(wave, lengths, generator, energy)

    def _forward(self, wave: torch.Tensor, lengths: torch.Tensor | None, generator: torch.Generator | None,
                 energy: bool = False):
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
        log_energy = frames.square().sum(2).clamp_min(FLT_EPSILON).log() if energy else None
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
            elif self.sliding_norm:
                feats = sliding_cmn(feats, self.cmn_window, n)
            feats = feats * mask
        elif self.mean_norm:
            feats = feats - feats.mean(dim=1, keepdim=True)
        elif self.level_norm:
            feats = feats - feats.mean(dim=(1, 2), keepdim=True)
        elif self.sliding_norm:
            feats = sliding_cmn(feats, self.cmn_window)
        if squeeze:
            feats, log_energy = feats[0], (log_energy[0] if energy else None)
        return (feats, log_energy) if energy else feats


def fbank(wave: np.ndarray, sample_rate: int = 16000, num_mel_bins: int = 60, mean_norm: bool = True, **kwargs) -> np.ndarray:
    """Features of one waveform (numpy, [-1, 1]) as a float32 ``[frames, num_mel_bins]`` array."""
    module = Fbank(num_mel_bins=num_mel_bins, sample_rate=sample_rate, mean_norm=mean_norm, **kwargs)
    with torch.no_grad():
        return module(torch.from_numpy(np.asarray(wave, dtype=np.float32))).numpy()


__all__ = [
    "Fbank", "fbank", "mel_banks", "povey_window", "mel_scale", "FrontEnd", "FRONTEND_KEYS", "FEATURE_NORMS", "VADS",
    "EnergyVad", "sliding_cmn", "keep_frames", "wrap_voiced", "embed_voiced", "VAD_MIN_FRAMES", "KALDI_CMN_WINDOW",
]
