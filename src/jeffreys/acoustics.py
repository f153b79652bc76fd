"""Generated acoustic material: coloured noise and shoebox-room impulse responses.

One implementation of each, used by the augmentation's fallbacks (no MUSAN or RIRS_NOISES
needed: :mod:`jeffreys.data.augment`) and by the embedded corpus's recording conditions
(:mod:`jeffreys.corpora.synth_channel`). Both are functions of a seeded
``numpy.random.Generator`` only: reproducible, no state.
"""

from __future__ import annotations

import numpy as np
import scipy.signal as ss

COLOURS = ("white", "pink", "brown")

# Pink-noise IIR (P. Kellet's "economy" filter, within 0.05 dB of 1/f above 10 Hz at
# 44.1 kHz, usable at 8-16 kHz) and a leaky integrator for brown noise: cheaper than FFT
# shaping, whose cost depends on the length's factors (9 ms for some 3 s lengths).
_PINK = ([0.049922035, -0.095993537, 0.050612699, -0.004408786], [1.0, -2.494956002, 2.017265875, -0.522189400])
_BROWN = ([1.0], [1.0, -0.995])


def coloured_noise(n: int, rng: np.random.Generator, colour: str) -> np.ndarray:
    """White, pink (~1/f) or brown (~1/f^2, flattening below ~12 Hz) noise of unit RMS, float64."""
    if colour not in COLOURS:
        raise ValueError(f"colour must be one of {', '.join(COLOURS)}, got {colour!r}")
    white = rng.standard_normal(n + 2000)  # 2000 samples to settle the filter
    if colour == "pink":
        white = ss.lfilter(*_PINK, white)
    elif colour == "brown":
        white = ss.lfilter(*_BROWN, white)
    noise = white[2000:]
    noise = noise - noise.mean()
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def shoebox_rir(fs: int, rng: np.random.Generator, dims: tuple = ((3.0, 3.0, 2.5), (10.0, 8.0, 4.0)),
                rt60: tuple[float, float] = (0.3, 1.0)) -> np.ndarray:
    """Impulse response of a random shoebox room: sides uniform between ``dims[0]`` and
    ``dims[1]`` (metres), a reverberation time drawn uniformly in ``rt60`` (seconds; the walls'
    absorption from Sabine's formula, clipped to what the room allows), source and microphone
    at random, at least 1 m apart where the room allows it.

    Early reflections come from pyroomacoustics' image-source model (order 8: exact and
    deterministic; its ray tracer is not seeded, and higher orders cost minutes), the late
    reverberation from a seeded exponentially decaying Gaussian tail at the room's Sabine
    RT60, joined at 50 ms. Peak-normalised, float64.
    """
    from .extras import require

    pra = require("pyroomacoustics", "simulated rooms (augmentation without an RIR data dir, the embedded corpus)")
    size = rng.uniform(dims[0], dims[1])
    volume = float(np.prod(size))
    surface = 2.0 * (size[0] * size[1] + size[0] * size[2] + size[1] * size[2])
    absorption = float(np.clip(0.161 * volume / (surface * rng.uniform(*rt60)), 0.03, 0.9))
    t60 = 0.161 * volume / (surface * absorption)
    margin = np.minimum(0.5, size / 4)
    min_dist = min(1.0, 0.5 * float(min(size[0], size[1])))
    for _ in range(100):
        src, mic = (rng.uniform(margin, size - margin) for _ in range(2))
        if np.linalg.norm(src - mic) >= min_dist:
            break
    room = pra.ShoeBox(size, fs=fs, materials=pra.Material(absorption), max_order=8)
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    early = np.asarray(room.rir[0][0], dtype=np.float64)

    direct = int(np.argmax(np.abs(early)))
    join = direct + int(0.05 * fs)
    n = join + int(1.2 * t60 * fs)
    t = (np.arange(n) - direct) / fs
    tail = rng.standard_normal(n) * np.exp(-6.9 * np.maximum(t, 0.0) / t60)
    win = slice(max(join - int(0.02 * fs), direct + 1), join)
    ref = early[win] if early.size >= join else early[direct + 1 :]
    scale = np.sqrt(np.mean(ref**2) / np.mean(tail[win] ** 2)) if ref.size else 0.0
    ramp = np.clip((np.arange(n) - join) / (0.01 * fs) + 0.5, 0.0, 1.0)
    h = tail * scale * ramp
    m = min(early.size, n)
    h[:m] += early[:m] * (1.0 - ramp[:m])
    return h / np.max(np.abs(h))


__all__ = ["COLOURS", "coloured_noise", "shoebox_rir"]
