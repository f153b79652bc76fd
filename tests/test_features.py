"""jeffreys.features: Kaldi fbank checked against kaldi-native-fbank and a float64 reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jeffreys.features import FLT_EPSILON, Fbank, fbank

knf = pytest.importorskip("kaldi_native_fbank")


def knf_fbank(wave: np.ndarray, num_bins: int, sr: int = 16000, **mel) -> np.ndarray:
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = sr
    opts.mel_opts.num_bins = num_bins
    for k, v in mel.items():
        setattr(opts.mel_opts, k, v)
    f = knf.OnlineFbank(opts)
    f.accept_waveform(sr, (wave * 32768.0).astype(np.float32).tolist())
    f.input_finished()
    return np.stack([f.get_frame(i) for i in range(f.num_frames_ready)])


def speechlike(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Harmonics with a wandering pitch plus noise and silence: a wide dynamic range."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 20)) * 0.1
    x *= (np.sin(2 * np.pi * 2 * t) > -0.3)
    return (x + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


# Max abs differences seen here: 60 bins 6.8e-5, 80 bins 1.6e-4 (float32 vs knf's float32).
@pytest.mark.parametrize("num_bins,tol", [(60, 5e-4), (80, 2e-3), (23, 5e-4)])
def test_matches_kaldi_native_fbank(num_bins, tol):
    w = speechlike(3.0)
    ref = knf_fbank(w, num_bins)
    ours = fbank(w, num_mel_bins=num_bins, mean_norm=False)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < tol


def test_matches_kaldi_native_fbank_8k_and_high_freq_offset():
    w = speechlike(2.0, sr=8000, seed=1)
    ref = knf_fbank(w, 40, sr=8000, low_freq=60.0, high_freq=-200.0)
    ours = fbank(w, sample_rate=8000, num_mel_bins=40, mean_norm=False, low_freq=60.0, high_freq=-200.0)
    assert np.abs(ours - ref).max() < 5e-4


def test_silence_hits_energy_floor_like_kaldi():
    w = np.zeros(16000, np.float32)
    ours = fbank(w, mean_norm=False)
    np.testing.assert_allclose(ours, math.log(FLT_EPSILON), rtol=1e-6)
    np.testing.assert_allclose(ours, knf_fbank(w, 60), atol=1e-5)


def reference_float64(wave: np.ndarray, num_bins: int = 60, sr: int = 16000) -> np.ndarray:
    """Kaldi's frame loop written the slow way, in float64, from its documented steps."""
    L, S, N = 400, 160, 512
    x = wave.astype(np.float64) * 32768
    n_frames = 1 + (len(x) - L) // S
    win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(L) / (L - 1))) ** 0.85
    mel = lambda f: 1127 * math.log(1 + f / 700)  # noqa: E731
    lo, hi = mel(20), mel(sr / 2)
    d = (hi - lo) / (num_bins + 1)
    out = np.zeros((n_frames, num_bins))
    for i in range(n_frames):
        fr = x[i * S : i * S + L].copy()
        fr -= fr.mean()
        for j in range(L - 1, 0, -1):
            fr[j] -= 0.97 * fr[j - 1]
        fr[0] -= 0.97 * fr[0]
        p = np.abs(np.fft.fft(fr * win, N)[: N // 2]) ** 2
        for m in range(num_bins):
            e = 0.0
            for k in range(N // 2):
                v = mel(k * sr / N)
                l, c, r = lo + m * d, lo + (m + 1) * d, lo + (m + 2) * d
                if l < v < r:
                    e += p[k] * ((v - l) / (c - l) if v <= c else (r - v) / (r - c))
            out[i, m] = math.log(max(e, FLT_EPSILON))
    return out


def test_matches_float64_loop_reference():
    w = speechlike(0.1, seed=3)
    ref = reference_float64(w, 24)
    ours = fbank(w, num_mel_bins=24, mean_norm=False)
    assert np.abs(ours - ref).max() < 1e-3


def test_batched_equals_single_and_lengths_mask():
    m = Fbank(num_mel_bins=60)
    a, b = speechlike(1.0, seed=1), speechlike(0.6, seed=2)
    batch = torch.zeros(2, 16000)
    batch[0] = torch.from_numpy(a)
    batch[1, : len(b)] = torch.from_numpy(b)
    with torch.no_grad():
        out = m(batch, lengths=torch.tensor([16000, len(b)]))
        single_a, single_b = m(torch.from_numpy(a)), m(torch.from_numpy(b))
    assert out.shape == (2, 98, 60)
    nb = m.num_frames(len(b))
    assert nb == 58 and single_b.shape == (58, 60)
    torch.testing.assert_close(out[0], single_a, atol=1e-4, rtol=0)
    torch.testing.assert_close(out[1, :nb], single_b, atol=1e-4, rtol=0)
    assert torch.all(out[1, nb:] == 0)


def test_mean_norm_and_scale_invariance():
    w = speechlike(1.0)
    f = fbank(w)
    np.testing.assert_allclose(f.mean(0), 0, atol=1e-4)
    # Raw log energies shift by log(4) when the input doubles; normalised ones do not move.
    raw1, raw2 = fbank(w, mean_norm=False), fbank(2 * w, mean_norm=False)
    np.testing.assert_allclose(raw2 - raw1, math.log(4), atol=1e-3)
    np.testing.assert_allclose(fbank(2 * w), f, atol=1e-3)


def test_frame_count_snip_edges():
    m = Fbank()
    for n, want in [(399, 0), (400, 1), (559, 1), (560, 2), (16000, 98)]:
        assert m.num_frames(n) == want
    torch.testing.assert_close(m.num_frames(torch.tensor([399, 560, 16000])), torch.tensor([0, 2, 98]))
    with pytest.raises(ValueError, match="shorter than one frame"):
        m(torch.zeros(1, 100))


def test_dither_is_seeded():
    m = Fbank(dither=1.0, mean_norm=False)
    x = torch.zeros(1, 4000)
    a = m(x, generator=torch.Generator().manual_seed(1))
    b = m(x, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert a.mean() > math.log(FLT_EPSILON) + 5  # the noise lifts silence off the floor


def test_module_moves_with_to_and_gradients_flow():
    m = Fbank().to(torch.float64)  # buffers stay float32 compute; still works
    x = torch.from_numpy(speechlike(0.5)).requires_grad_(True)
    m(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_float32_under_autocast():
    m = Fbank()
    x = torch.from_numpy(speechlike(0.5))
    with torch.no_grad():
        ref = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_level_norm_keeps_the_spectral_shape():
    w = speechlike(1.0)
    raw = fbank(w, mean_norm=False)
    lev = fbank(w, mean_norm=False, level_norm=True)
    np.testing.assert_allclose(lev, raw - raw.mean(), atol=1e-4)  # one number per utterance
    np.testing.assert_allclose(fbank(2 * w, mean_norm=False, level_norm=True), lev, atol=1e-3)  # level gone
    # a fixed colouring (a first-order high-pass) moves each bin's mean differently: it stays
    coloured = np.concatenate([[w[0]], w[1:] - 0.9 * w[:-1]]).astype(np.float32)
    shape = fbank(coloured, mean_norm=False, level_norm=True).mean(0) - lev.mean(0)
    # |1 - 0.9 z^-1|^2 rises from 0.01 near 0 Hz to 3.6 at 8 kHz: about 5.9 in natural log
    assert 4.5 < shape[-1] - shape[0] < 6.5
    np.testing.assert_allclose(fbank(coloured).mean(0), 0, atol=1e-4)  # the per-bin mean removes it
    # with lengths: the padding does not count, and stays zero
    m = Fbank(mean_norm=False, level_norm=True)
    x = torch.zeros(2, 16000)
    x[0] = torch.from_numpy(w)
    x[1, :8000] = torch.from_numpy(w[:8000])
    out = m(x, lengths=torch.tensor([16000, 8000]))
    nb = m.num_frames(8000)
    short = m(torch.from_numpy(w[:8000]))
    torch.testing.assert_close(out[1, :nb], short, atol=1e-4, rtol=0)
    assert torch.all(out[1, nb:] == 0)
    with pytest.raises(ValueError, match="exclude each other"):
        Fbank(mean_norm=True, level_norm=True)
