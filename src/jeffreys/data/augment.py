"""Online data augmentation after Kaldi's VoxCeleb v2 recipe.

Kaldi's ``egs/voxceleb/v2/run.sh`` makes four corrupted copies of the training data —
reverberated with simulated room impulse responses (RIRS_NOISES small and medium rooms),
plus MUSAN noise at 0–15 dB SNR, music at 5–15 dB, babble of 3–7 MUSAN speakers at
13–20 dB each — and trains on a subset of clean + corrupted copies. Here a chunk is
corrupted on the fly instead: with probability ``prob`` one kind is drawn (by the
``*_weight`` fractions, equal by default as the four Kaldi copies) and applied:

* ``reverb``: the RIR, normalised to unit energy, is convolved with the chunk; the output is
  aligned on the direct path (RIR peak) and rescaled to the input's power (Kaldi's
  ``wav-reverberate --normalize-output``).
* ``noise`` / ``music``: one clip, cropped or looped to the chunk, at an SNR drawn uniformly
  from the range;
* ``babble``: 3–7 speech chunks, each at its own SNR from the range (Kaldi's background
  noises are scaled one by one, so the total babble is louder than any one SNR says).

SNR is the ratio of the chunk's mean power to the added signal's mean power over the chunk.

Sources: ``musan`` is a directory with the Kaldi data dirs ``noise/``, ``music/`` and
``speech/`` (as ``jeffreys prepare musan`` writes); ``rirs`` is a Kaldi data dir of RIR
wavs (as ``jeffreys prepare rirs`` writes). Without them, generated material is used:
a seeded bank of ``simulated_rirs`` shoebox rooms from pyroomacoustics (computed once and
cached on disk under ``cache_dir``), white/pink/brown noise, synthetic music (random
harmonic notes) and babble from other training speakers (the dataset the augmenter is
bound to). Speed perturbation (0.9/1.1 as new speakers) is done by the dataset, which
reads ``speed_perturb``, ``speed_factors`` and ``speed_prob`` here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from ..audio import audio_duration, load_audio
from ..errors import InputError
from ..fileio import atomic_write
from .datadir import DataDir, read_datadir

KINDS = ("reverb", "noise", "music", "babble")


@dataclass
class AugmentConfig:
    """Augmentation settings (fractions, dB and seconds). Usable with ``config.from_dict``."""

    prob: float = 0.6  # fraction of chunks corrupted (one kind each)
    reverb_weight: float = 1.0
    noise_weight: float = 1.0
    music_weight: float = 1.0
    babble_weight: float = 1.0
    noise_snr: tuple[float, float] = (0.0, 15.0)
    music_snr: tuple[float, float] = (5.0, 15.0)
    babble_snr: tuple[float, float] = (13.0, 20.0)
    babble_speakers: tuple[int, int] = (3, 7)
    musan: str | None = None  # dir with Kaldi data dirs noise/ music/ speech/
    rirs: str | None = None  # Kaldi data dir of RIR wavs
    # Room types (speakers of the rirs data dir) drawn with equal probability, then one of
    # their RIRs: Kaldi's v2 recipe uses small and medium rooms 50/50. When none of these
    # are in the dir, every speaker of it is a room type.
    rir_rooms: tuple[str, ...] = ("smallroom", "mediumroom")
    simulated_rirs: int = 200  # size of the generated bank when rirs is None
    rir_seed: int = 0
    cache_dir: str | None = None  # default: jeffreys.cache.cache_dir() (JEFFREYS_CACHE_DIR, ...)
    speed_perturb: bool = False
    speed_factors: tuple[float, ...] = (0.9, 1.1)
    speed_prob: float = 2 / 3  # with (0.9, 1.1): 1.0, 0.9 and 1.1 equally likely

    def __post_init__(self) -> None:
        for name in ("prob", "speed_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a fraction in [0, 1], got {getattr(self, name)}")
        for kind in KINDS:
            if getattr(self, f"{kind}_weight") < 0:
                raise ValueError(f"{kind}_weight must not be negative")
        for name in ("noise_snr", "music_snr", "babble_snr", "babble_speakers"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: low end {lo} above high end {hi}")
        if self.babble_speakers[0] < 1:
            raise ValueError("babble_speakers must be at least 1")
        if any(f <= 0 for f in self.speed_factors):
            raise ValueError("speed_factors must be positive")


# ---- primitives (also used by tests and benchmarks) ------------------------------------

def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def scale_to_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``noise`` scaled so that power(speech) / power(result) is ``snr_db``."""
    pn = power(noise)
    if pn <= 0:
        return np.zeros_like(noise)
    return noise * np.float32(np.sqrt(power(speech) / (pn * 10 ** (snr_db / 10))))


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Kaldi-style reverberation: unit-energy RIR, direct-path aligned, power preserved."""
    rir = np.asarray(rir, dtype=np.float32)
    energy = np.sqrt(np.sum(np.square(rir, dtype=np.float64)))
    if energy <= 0:
        return wave
    rir = rir / np.float32(energy)
    peak = int(np.argmax(np.abs(rir)))
    out = fftconvolve(wave, rir)[peak : peak + wave.shape[0]].astype(np.float32)
    p_out = power(out)
    return out * np.float32(np.sqrt(power(wave) / p_out)) if p_out > 0 else out


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power spectrum ∝ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.shape[0], dtype=np.float64)
    f[0] = f[1] if len(f) > 1 else 1.0
    spec *= f ** (-exponent / 2)
    x = np.fft.irfft(spec, n)
    return (x / (np.std(x) + 1e-12)).astype(np.float32)


def synthetic_music(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Random notes (equal-tempered, a few harmonics, attack/decay), 1–3 voices."""
    out = np.zeros(n, np.float32)
    for _ in range(int(rng.integers(1, 4))):
        pos = 0
        while pos < n:
            length = min(n - pos, int(rng.uniform(0.15, 0.8) * sample_rate))
            f0 = 440.0 * 2 ** ((int(rng.integers(-24, 13))) / 12)
            t = np.arange(length) / sample_rate
            note = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) for k in range(1, 6) if k * f0 < sample_rate / 2)
            env = np.minimum(1.0, t / 0.01) * np.exp(-t * rng.uniform(1, 6))
            out[pos : pos + length] += (note * env).astype(np.float32)
            pos += length
    return out


def simulate_rirs(count: int, sample_rate: int, seed: int) -> list[np.ndarray]:
    """Shoebox rooms after RIRS_NOISES: half small (1–10 m), half medium (10–30 m) sides,
    RT60 0.2–0.8 s, random source and microphone (image source method, order ≤ 25)."""
    from ..extras import require

    pra = require("pyroomacoustics", "simulated rooms (augmentation without an RIR data dir)")

    rng = np.random.default_rng(seed)
    rirs = []
    for i in range(count):
        lo, hi = ((1.0, 10.0) if i % 2 == 0 else (10.0, 30.0))
        dim = np.array([rng.uniform(lo, hi), rng.uniform(lo, hi), rng.uniform(2.0, 5.0)])
        rt60 = rng.uniform(0.2, 0.8)
        try:
            absorption, order = pra.inverse_sabine(rt60, dim)
        except ValueError:  # RT60 unreachable in a small room: as absorbent as allowed
            absorption, order = 0.99, 3
        room = pra.ShoeBox(dim, fs=sample_rate, materials=pra.Material(absorption), max_order=int(min(order, 25)))
        margin = np.minimum(0.5, dim / 4)
        room.add_source(rng.uniform(margin, dim - margin))
        room.add_microphone(rng.uniform(margin, dim - margin))
        room.compute_rir()
        rirs.append(np.asarray(room.rir[0][0], dtype=np.float32))
    return rirs


def _cache_dir(config: AugmentConfig) -> Path:
    from ..cache import cache_dir

    return Path(config.cache_dir) if config.cache_dir else cache_dir()


def simulated_rir_bank(config: AugmentConfig, sample_rate: int) -> list[np.ndarray]:
    """The seeded RIR bank, read from the cache or generated and saved (atomically)."""
    key = hashlib.sha1(f"v1 {config.simulated_rirs} {sample_rate} {config.rir_seed}".encode()).hexdigest()[:12]
    path = _cache_dir(config) / f"rirs-{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:  # a cache file is still never unpickled
                return [z[f"r{i}"] for i in range(config.simulated_rirs)]
        except (OSError, KeyError, ValueError, EOFError):
            pass  # a damaged cache is regenerated
    rirs = simulate_rirs(config.simulated_rirs, sample_rate, config.rir_seed)
    try:
        with atomic_write(path, "wb") as f:
            np.savez(f, **{f"r{i}": r for i, r in enumerate(rirs)})
    except (OSError, InputError):
        pass  # an unwritable cache only costs regeneration next time
    return rirs


class _ClipSource:
    """Random crops of the recordings of a data dir (MUSAN noise/music/speech, RIRs)."""

    def __init__(self, data: DataDir, sample_rate: int):
        self.data = data
        self.utts = data.utts
        self.sample_rate = sample_rate
        self._dur: dict[str, float] = dict(data.utt2dur or {})

    def duration(self, utt: str) -> float:
        if utt not in self._dur:
            entry, start, end = self.data.source(utt)
            self._dur[utt] = (end if end is not None else audio_duration(entry)) - start
        return self._dur[utt]

    def crop(self, rng: np.random.Generator, length: int) -> np.ndarray:
        from .dataset import random_crop

        utt = self.utts[rng.integers(len(self.utts))]
        return random_crop(self.data, utt, length, self.sample_rate, rng, self.duration(utt))

    def whole(self, rng: np.random.Generator, groups: list[str] | None = None) -> np.ndarray:
        """One whole recording; with ``groups``, a speaker of them first, then its recording."""
        if groups:
            utts = self.data.spk2utt[groups[rng.integers(len(groups))]]
            utt = utts[rng.integers(len(utts))]
        else:
            utt = self.utts[rng.integers(len(self.utts))]
        entry, start, end = self.data.source(utt)
        return load_audio(entry, self.sample_rate, start, end, allow_pipes=self.data.allow_pipes)


class Augmenter:
    """Callable ``(wave, rng, speaker=None) -> wave`` corrupting a chunk (module docstring).

    ``seed`` fixes the generated material (RIR bank); everything drawn per chunk comes from
    the ``rng`` passed in, so a dataset item is reproducible. ``babble_source`` (a
    :class:`~jeffreys.data.dataset.TrainDataset`, a data dir or its path) provides babble
    when there is no MUSAN; a TrainDataset built with ``augment=`` binds itself.
    """

    def __init__(self, config: AugmentConfig | None = None, sample_rate: int = 16000, seed: int | None = None, babble_source=None):
        self.config = config = config or AugmentConfig()
        self.sample_rate = sample_rate
        if seed is not None and seed != config.rir_seed:
            from dataclasses import replace

            self.config = config = replace(config, rir_seed=seed)
        self.noise = self.music = self.speech = self.rir_source = None
        if config.musan:
            root = Path(config.musan)
            parts = {}
            for name in ("noise", "music", "speech"):
                if not (root / name).is_dir():
                    raise InputError(f"{root}: MUSAN dir has no {name}/ data dir (run `jeffreys prepare musan`)")
                parts[name] = _ClipSource(read_datadir(root / name), sample_rate)
            self.noise, self.music, self.speech = parts["noise"], parts["music"], parts["speech"]
        if config.rirs:
            self.rir_source = _ClipSource(read_datadir(config.rirs), sample_rate)
            present = self.rir_source.data.spk2utt
            self.rir_groups = [r for r in config.rir_rooms if r in present] or list(present)
            self.rirs: list[np.ndarray] | None = None
        else:
            self.rirs = simulated_rir_bank(config, sample_rate) if config.reverb_weight > 0 and config.prob > 0 else []
        self.babble_dataset = None
        if babble_source is not None:
            self.bind(babble_source)

    def bind(self, source) -> None:
        """Use ``source`` (TrainDataset, DataDir or path) for babble when there is no MUSAN."""
        if self.babble_dataset is not None:
            return
        if not hasattr(source, "random_chunks"):
            from .dataset import TrainDataset

            source = TrainDataset(source, sample_rate=self.sample_rate)
        self.babble_dataset = source

    def kinds(self) -> tuple[list[str], np.ndarray]:
        """Available kinds and their probabilities (babble needs a speech source)."""
        c = self.config
        kinds = [k for k in KINDS if getattr(c, f"{k}_weight") > 0]
        if self.speech is None and self.babble_dataset is None:
            kinds = [k for k in kinds if k != "babble"]
        if not kinds:
            return [], np.zeros(0)
        w = np.array([getattr(c, f"{k}_weight") for k in kinds], dtype=np.float64)
        return kinds, w / w.sum()

    def __call__(self, wave: np.ndarray, rng: np.random.Generator, speaker: str | None = None) -> np.ndarray:
        return self.apply(wave, rng, speaker=speaker)[0]

    def apply(self, wave: np.ndarray, rng: np.random.Generator, speaker: str | None = None, kind: str | None = None) -> tuple[np.ndarray, dict]:
        """(corrupted wave, what was done). ``kind`` forces one kind (and skips ``prob``)."""
        wave = np.asarray(wave, dtype=np.float32)
        if kind is None:
            kinds, p = self.kinds()
            if not kinds or rng.random() >= self.config.prob:
                return wave, {"kind": "clean"}
            kind = kinds[int(rng.choice(len(kinds), p=p))]
        if kind == "reverb":
            rir = self._rir(rng)
            return reverberate(wave, rir), {"kind": "reverb", "rir_samples": rir.shape[0]}
        if kind in ("noise", "music"):
            lo, hi = getattr(self.config, f"{kind}_snr")
            snr = float(rng.uniform(lo, hi))
            added = scale_to_snr(wave, self._clip(kind, wave.shape[0], rng), snr)
            return wave + added, {"kind": kind, "snr_db": [snr], "added": [added]}
        if kind == "babble":
            lo, hi = self.config.babble_speakers
            count = int(rng.integers(lo, hi + 1))
            if self.speech is not None:
                voices = [self.speech.crop(rng, wave.shape[0]) for _ in range(count)]
            elif self.babble_dataset is not None:
                voices = self.babble_dataset.random_chunks(rng, count, wave.shape[0], exclude_speaker=speaker)
            else:
                raise InputError("babble augmentation needs MUSAN speech or training speakers (babble_source)")
            snrs = [float(rng.uniform(*self.config.babble_snr)) for _ in voices]
            added = [scale_to_snr(wave, v, s) for v, s in zip(voices, snrs)]
            return wave + np.sum(added, axis=0, dtype=np.float32), {"kind": "babble", "snr_db": snrs, "added": added}
        raise ValueError(f"unknown augmentation kind {kind!r}")

    def _rir(self, rng: np.random.Generator) -> np.ndarray:
        if self.rir_source is not None:
            return self.rir_source.whole(rng, self.rir_groups)
        return self.rirs[int(rng.integers(len(self.rirs)))]

    def _clip(self, kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
        source = self.noise if kind == "noise" else self.music
        if source is not None:
            return source.crop(rng, n)
        if kind == "noise":
            return coloured_noise(n, float(rng.choice([0.0, 1.0, 2.0])), rng)
        return synthetic_music(n, self.sample_rate, rng)


__all__ = [
    "AugmentConfig",
    "Augmenter",
    "KINDS",
    "scale_to_snr",
    "reverberate",
    "coloured_noise",
    "synthetic_music",
    "simulate_rirs",
    "simulated_rir_bank",
]
