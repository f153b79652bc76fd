"""Recording conditions of the embedded corpus: microphone colouring, noise, level and the
telephone band (noise and rooms themselves come from :mod:`jeffreys.acoustics`). Used by
:mod:`jeffreys.corpora.synth`.

All functions take float64 signals in [-1, 1] and a seeded ``numpy.random.Generator`` so the
corpus is reproducible; none of them keeps state.
"""

from __future__ import annotations

import numpy as np
import scipy.signal as ss
import soxr

from ..acoustics import COLOURS, coloured_noise

TELEPHONE_RATE = 8000


def trim_silence(x: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    """Drop leading/trailing samples quieter than ``threshold`` (espeak pads its output)."""
    loud = np.flatnonzero(np.abs(x) > threshold)
    return x[loud[0] : loud[-1] + 1] if loud.size else x[:0]


def fit_duration(x: np.ndarray, fs: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Crop speech to leave room for random leading/trailing silence, total = ``seconds``."""
    total = int(round(seconds * fs))
    lead = int(rng.uniform(0.05, 0.25) * fs)
    tail = int(rng.uniform(0.05, 0.2) * fs)
    speech = x[: max(total - lead - tail, 1)].copy()
    fade = min(int(0.03 * fs), speech.size)
    if fade and speech.size < x.size:  # cut mid-word: fade out instead of a click
        speech[-fade:] *= np.linspace(1.0, 0.0, fade)
    out = np.zeros(total)
    out[lead : lead + speech.size] = speech[: total - lead]
    return out


def random_eq(x: np.ndarray, fs: int, rng: np.random.Generator, spread_db: float) -> np.ndarray:
    """A random smooth microphone/channel response: gains ~ N(0, spread_db) at octave
    points, a random high-pass corner, as a linear-phase FIR (so timing is unchanged)."""
    nyq = fs / 2
    hp = rng.uniform(40.0, 200.0)
    points = np.array([250.0, 500.0, 1000.0, 2000.0, 3000.0, 4500.0, 6000.0])
    points = points[points < nyq * 0.95]
    freqs = np.concatenate([[0.0, hp * 0.5, hp], points, [nyq]])
    gains_db = np.concatenate([[-60.0, -12.0], rng.normal(0.0, spread_db, points.size + 2)])
    gains = 10.0 ** (gains_db / 20)
    taps = ss.firwin2(255, freqs, gains, fs=fs)
    return ss.oaconvolve(x, taps)[127 : 127 + x.size]


def active_rms(x: np.ndarray, fs: int) -> float:
    """RMS over the louder 20 ms frames (speech), so pauses do not count."""
    hop = max(int(0.02 * fs), 1)
    frames = x[: x.size // hop * hop].reshape(-1, hop) if x.size >= hop else x.reshape(1, -1)
    energy = np.mean(frames**2, axis=1)
    active = energy[energy > 0.1 * energy.max()] if energy.max() > 0 else energy
    return float(np.sqrt(np.mean(active))) + 1e-12


def add_noise(x: np.ndarray, fs: int, rng: np.random.Generator, snr_db: float) -> np.ndarray:
    noise = coloured_noise(x.size, rng, str(rng.choice(COLOURS)))
    return x + noise * active_rms(x, fs) * 10 ** (-snr_db / 20)


def set_level(x: np.ndarray, fs: int, level_dbfs: float) -> np.ndarray:
    """Scale speech to ``level_dbfs`` (active RMS), backing off to avoid clipping."""
    y = x * (10 ** (level_dbfs / 20) / active_rms(x, fs))
    peak = np.max(np.abs(y)) if y.size else 0.0
    return y * (0.97 / peak) if peak > 0.97 else y


def telephone(x: np.ndarray, fs: int) -> np.ndarray:
    """Narrow-band telephone channel: 300-3400 Hz band-pass, 8 kHz sampling."""
    sos = ss.butter(6, [300.0, 3400.0], btype="bandpass", fs=fs, output="sos")
    return soxr.resample(ss.sosfilt(sos, x), fs, TELEPHONE_RATE, quality="HQ")


def mu_law(x: np.ndarray, mu: float = 255.0) -> np.ndarray:
    """G.711-style 8-bit mu-law companding round trip (the codec's quantisation noise)."""
    y = np.sign(x) * np.log1p(mu * np.minimum(np.abs(x), 1.0)) / np.log1p(mu)
    y = np.round(y * 127) / 127
    return np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu
