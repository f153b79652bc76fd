"""Recording conditions of the embedded corpus: microphone/room colouring, noise, level,
telephone band and simulated rooms. Private to :mod:`jeffreys.corpora.synth`.

All functions take float64 signals in [-1, 1] and a seeded ``numpy.random.Generator`` so the
corpus is reproducible; none of them keeps state.
"""

from __future__ import annotations

import numpy as np
import scipy.signal as ss
import soxr

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


# Pink-noise IIR (P. Kellet's "economy" filter, within 0.05 dB of 1/f above 10 Hz at
# 44.1 kHz, usable here) and a leaky integrator for brown noise: cheaper than FFT shaping.
_PINK = ([0.049922035, -0.095993537, 0.050612699, -0.004408786], [1.0, -2.494956002, 2.017265875, -0.522189400])
_BROWN = ([1.0], [1.0, -0.995])


def coloured_noise(n: int, rng: np.random.Generator, colour: str) -> np.ndarray:
    """White, pink (~1/f) or brown (~1/f^2) noise of unit RMS."""
    white = rng.standard_normal(n + 2000)  # 2000 samples to settle the filter
    noise = {"white": white, "pink": lambda: ss.lfilter(*_PINK, white), "brown": lambda: ss.lfilter(*_BROWN, white)}[colour]
    noise = (noise() if callable(noise) else noise)[2000:]
    noise = noise - noise.mean()
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def active_rms(x: np.ndarray, fs: int) -> float:
    """RMS over the louder 20 ms frames (speech), so pauses do not count."""
    hop = max(int(0.02 * fs), 1)
    frames = x[: x.size // hop * hop].reshape(-1, hop) if x.size >= hop else x.reshape(1, -1)
    energy = np.mean(frames**2, axis=1)
    active = energy[energy > 0.1 * energy.max()] if energy.max() > 0 else energy
    return float(np.sqrt(np.mean(active))) + 1e-12


def add_noise(x: np.ndarray, fs: int, rng: np.random.Generator, snr_db: float) -> np.ndarray:
    noise = coloured_noise(x.size, rng, str(rng.choice(["white", "pink", "brown"])))
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


def room_rir(fs: int, rng: np.random.Generator) -> np.ndarray:
    """Impulse response of a random shoebox room (RT60 0.3-1.0 s).

    Early reflections come from pyroomacoustics' image-source model (order 8: exact and
    deterministic; its ray tracer is not seeded), the late reverberation from a seeded
    exponentially decaying Gaussian tail at the room's Sabine RT60, joined at 50 ms.
    """
    import pyroomacoustics as pra

    dims = rng.uniform([3.0, 3.0, 2.5], [10.0, 8.0, 4.0])
    volume = float(np.prod(dims))
    surface = 2.0 * (dims[0] * dims[1] + dims[0] * dims[2] + dims[1] * dims[2])
    absorption = float(np.clip(0.161 * volume / (surface * rng.uniform(0.3, 1.0)), 0.03, 0.9))
    rt60 = 0.161 * volume / (surface * absorption)
    while True:
        src, mic = (rng.uniform(0.5, dims - 0.5) for _ in range(2))
        if np.linalg.norm(src - mic) >= 1.0:
            break
    room = pra.ShoeBox(dims, fs=fs, materials=pra.Material(absorption), max_order=8)
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    early = np.asarray(room.rir[0][0], dtype=np.float64)

    direct = int(np.argmax(np.abs(early)))
    join = direct + int(0.05 * fs)
    n = join + int(1.2 * rt60 * fs)
    t = (np.arange(n) - direct) / fs
    tail = rng.standard_normal(n) * np.exp(-6.9 * np.maximum(t, 0.0) / rt60)
    win = slice(max(join - int(0.02 * fs), direct + 1), join)
    ref = early[win] if early.size >= join else early[direct + 1 :]
    scale = np.sqrt(np.mean(ref**2) / np.mean(tail[win] ** 2)) if ref.size else 0.0
    ramp = np.clip((np.arange(n) - join) / (0.01 * fs) + 0.5, 0.0, 1.0)
    h = tail * scale * ramp
    m = min(early.size, n)
    h[:m] += early[:m] * (1.0 - ramp[:m])
    return h / np.max(np.abs(h))
