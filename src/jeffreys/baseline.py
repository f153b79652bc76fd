"""MFCC-statistics baseline: the floor a trained speaker-embedding extractor has to beat.

Per utterance: 20 MFCCs (c1..c20 of a DCT-II of 40 Kaldi log mel filterbanks, 25 ms / 10 ms,
from :mod:`jeffreys.features`), frames kept by an energy VAD (c0 at or above its 30th
percentile in the utterance), summarised by their mean and standard deviation (40 dims).
Two back-ends, fitted on a training set:

* ``cosine``: standardise each dimension with the training mean and std, cosine score;
* ``lda``: the same, then an LDA to ``lda_dim`` dimensions (within- and between-speaker
  scatter of the training speakers), centred on the training mean, cosine score.

Nothing is learnt about speakers by the ``cosine`` back-end (only a mean and a scale per
dimension), so it measures how far plain spectral statistics go on a trial list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.linalg
import torch

from .audio import load_utterance
from .data.datadir import read_datadir
from .errors import InputError
from .features import Fbank

SAMPLE_RATE = 16000
N_CEPS = 20
VAD_PERCENTILE = 30
_FBANK: Fbank | None = None


def mfcc_stats(wave: np.ndarray, n_ceps: int = N_CEPS) -> np.ndarray:
    """Mean and std of c1..c``n_ceps`` over the VAD frames of a 16 kHz wave: ``(2 n_ceps,)`` float64."""
    global _FBANK
    if _FBANK is None:
        _FBANK = Fbank(num_mel_bins=40, sample_rate=SAMPLE_RATE, mean_norm=False)
    with torch.no_grad():
        logmel = _FBANK(torch.from_numpy(np.asarray(wave, dtype=np.float32))).numpy().astype(np.float64)
    ceps = scipy.fft.dct(logmel, type=2, norm="ortho", axis=1)[:, : n_ceps + 1]
    keep = ceps[:, 0] >= np.percentile(ceps[:, 0], VAD_PERCENTILE)
    c = ceps[keep, 1:]
    return np.concatenate([c.mean(0), c.std(0)])


def datadir_stats(path: str | Path) -> tuple[list[str], np.ndarray, list[str]]:
    """(sorted utterance ids, ``[n, 40]`` statistics, speaker of each) of a data dir."""
    dd = read_datadir(path)
    utts = dd.utts
    rows = []
    for u in utts:
        wave = load_utterance(dd, u, SAMPLE_RATE)
        if wave.shape[0] < SAMPLE_RATE // 40:  # not one 25 ms frame
            raise InputError(f"{path}: utterance {u}: {wave.shape[0]} samples, shorter than one 25 ms frame")
        rows.append(mfcc_stats(wave))
    return utts, np.stack(rows), [dd.utt2spk[u] for u in utts]


def lda(x: np.ndarray, spk: list[str], dim: int) -> np.ndarray:
    """Projection ``[D, dim]`` maximising between- over within-speaker scatter."""
    labels = np.unique(spk, return_inverse=True)[1]
    mu = x.mean(0)
    sw = np.zeros((x.shape[1],) * 2)
    sb = np.zeros_like(sw)
    for k in range(labels.max() + 1):
        xk = x[labels == k]
        mk = xk.mean(0)
        sw += (xk - mk).T @ (xk - mk)
        sb += len(xk) * np.outer(mk - mu, mk - mu)
    sw += 1e-6 * np.trace(sw) / len(sw) * np.eye(len(sw))
    _, vecs = scipy.linalg.eigh(sb, sw)
    return vecs[:, ::-1][:, :dim]


@dataclass
class MfccBaseline:
    """A fitted back-end: ``embed`` maps statistics to vectors scored by cosine."""

    mean: np.ndarray
    std: np.ndarray
    proj: np.ndarray | None = None  # LDA projection (the ``lda`` back-end)
    centre: np.ndarray | None = None

    @classmethod
    def fit(cls, x_train: np.ndarray, spk: list[str] | None = None, lda_dim: int | None = None) -> MfccBaseline:
        """``cosine`` back-end from training statistics; ``lda`` too when ``lda_dim`` is given
        (needs the training speakers ``spk``)."""
        mean, std = x_train.mean(0), x_train.std(0) + 1e-8
        if lda_dim is None:
            return cls(mean, std)
        if spk is None:
            raise ValueError("the lda back-end needs the training speakers")
        z = (x_train - mean) / std
        proj = lda(z, spk, lda_dim)
        return cls(mean, std, proj, (z @ proj).mean(0))

    def embed(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.std
        return z if self.proj is None else z @ self.proj - self.centre


def cosine(enroll: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two ``[n, D]`` arrays."""
    e = enroll / np.linalg.norm(enroll, axis=1, keepdims=True)
    t = test / np.linalg.norm(test, axis=1, keepdims=True)
    return (e * t).sum(1)
