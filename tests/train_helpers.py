"""Tiny training data and configs shared by the model/training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from jeffreys.data.datadir import write_datadir

SR = 16000

# A tiny extractor: training tests check behaviour, not accuracy.
TINY_MODEL = [
    "model.preset=demo", "model.widths=[4,4,8,8]", "model.depths=[1,1,1,1]",
    "model.num_mel_bins=16", "model.embed_dim=8",
]


def make_datadir(root: Path, speakers: int = 4, utts: int = 4, seconds: float = 1.0, seed: int = 0) -> Path:
    """Speakers = distinct harmonic voices in 'syllables' separated by pauses (the features
    are mean-normalised per utterance, so a voice must vary over time to be seen)."""
    rng = np.random.default_rng(seed)
    wav_dir = root / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    wav, utt2spk, utt2dur = {}, {}, {}
    for s in range(speakers):
        f0 = 100.0 * 1.5 ** s
        for u in range(utts):
            n = int(SR * seconds * rng.uniform(0.6, 1.4))
            t = np.arange(n) / SR
            pitch = f0 * rng.uniform(0.95, 1.05)
            x = sum(np.sin(2 * np.pi * pitch * h * t) / h ** (0.5 + s % 3) for h in range(1, 8))
            gate = np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)) > 0  # syllables
            x = 0.3 * gate * x / np.abs(x).max() + 0.003 * rng.standard_normal(n)
            utt = f"spk{s}-utt{u}"
            path = wav_dir / f"{utt}.wav"
            sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")
            wav[utt], utt2spk[utt], utt2dur[utt] = str(path), f"spk{s}", n / SR
    return write_datadir(root / "train", wav, utt2spk, utt2dur=utt2dur)


def tiny_overrides(datadir: Path, *extra: str, steps: int | None = None) -> list[str]:
    out = [
        f"data.train={datadir}", "data.chunk_seconds=0.5", "data.augment.prob=0.0", *TINY_MODEL,
        "batch_size=4", "num_threads=1", "progress=false", "log_every=1",
    ]
    if steps is not None:
        out.append(f"steps={steps}")
    return out + list(extra)
