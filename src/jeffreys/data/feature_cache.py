"""Offline augmentation with cached features, as in Kaldi's VoxCeleb recipe: the filterbanks
of every training utterance, clean and in ``copies`` augmented versions, computed once and
then cropped for every chunk of every training run that uses the same data.

Online, each chunk is decoded, augmented and turned into filterbanks anew, which costs as
much CPU as the small demo network's training step (docs/benchmarks.md). Offline, the copies
are made once and shared by every seed and system of an experiment (and every later run),
so a run only crops frames. The price is augmentation variety: ``copies`` versions of each
utterance instead of a new corruption per chunk (Kaldi makes 4).

What a copy holds is a function of the data dir, the augmentation config (including its
``rir_seed``) and the front-end, not of the training seed: copy ``c`` of the ``i``-th
utterance draws its corruption from ``default_rng([rir_seed, 1, i, c])``. Copy 0 is clean;
copy ``c >= 1`` gets one augmentation kind, drawn with the kinds' weights.

On disk (``DIR/KEY/``): ``feats.f16`` (raw float16 log mel filterbanks, not
mean-normalised, ``[frames, mels]`` for all utterances and copies end to end),
``index.npy`` (``[utterances, copies + 1, 2]``: first frame and number of frames) and
``meta.json``; written into a temporary directory and renamed when whole, under a lock so
that concurrent trainings build it once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..fileio import atomic_dir, read_npy, read_text, save_npy

VERSION = 1


def cache_key(dataset, augmenter, fbank, copies: int) -> str:
    """What the features depend on: the data dir's tables, the augmentation, the front-end."""
    data = dataset.data
    h = hashlib.sha256()
    for name in ("wav.scp", "utt2spk", "segments"):
        f = Path(data.path) / name
        h.update(name.encode() + (f.read_bytes() if f.is_file() else b""))
    h.update(json.dumps({
        "version": VERSION, "path": str(Path(data.path).resolve()), "copies": copies,
        "augment": asdict(augmenter.config) if augmenter is not None else None,
        "fbank": {"num_mel_bins": fbank.num_mel_bins, "sample_rate": fbank.sample_rate,
                  "frame_length": fbank.frame_length, "frame_shift": fbank.frame_shift},
    }, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


# The build runs in forked workers that inherit these (set by build() just before forking).
_WORK: dict = {}


def _features_of(index: int) -> list[np.ndarray]:
    """Clean and augmented filterbanks of utterance ``index`` (float16, not mean-normalised)."""
    from ..audio import load_utterance

    ds, aug, fbank, copies = _WORK["dataset"], _WORK["augmenter"], _WORK["fbank"], _WORK["copies"]
    utt = ds.utts[index]
    wave = load_utterance(ds.data, utt, ds.sample_rate)
    if wave.shape[0] < fbank.frame_length:
        raise InputError(f"utterance {utt!r} of {ds.data.path}: shorter than one 25 ms frame")
    spk = ds.data.utt2spk[utt]
    kinds, p = aug.kinds()
    out = []
    for c in range(copies + 1):
        w = wave
        if c > 0:
            rng = np.random.default_rng([aug.config.rir_seed, 1, index, c])
            w = aug.apply(wave, rng, speaker=spk, kind=kinds[int(rng.choice(len(kinds), p=p))])[0]
        with torch.no_grad():
            out.append(fbank(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))).numpy().astype(np.float16))
    return out


def _one_thread() -> None:
    # Each worker is one process on one core: torch's own thread pool would oversubscribe.
    torch.set_num_threads(1)


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build(dataset, augmenter, fbank, copies: int, directory: str | Path, jobs: int | None = None, log=None) -> Path:
    """The cache directory of ``dataset`` (a waveform TrainDataset) with ``copies`` augmented
    versions, built unless already there; ``jobs`` worker processes (default: the CPUs)."""
    if copies < 1:
        raise ValueError(f"copies must be at least 1, got {copies}")
    if augmenter is None or augmenter.config.prob <= 0:
        raise InputError("offline augmentation needs augmentation: data.augment.prob must be above 0")
    if dataset.speed_factors:
        raise InputError("speed perturbation needs waveform chunks: it cannot use a feature cache")
    key = cache_key(dataset, augmenter, fbank, copies)
    root = Path(directory)
    final = root / key
    with _locked(root / f".{key}.lock"):
        if (final / "meta.json").is_file():
            return final
        jobs = max(1, jobs or os.cpu_count() or 1)
        if log:
            log(f"feature cache: {len(dataset.utts)} utterances x {copies + 1} versions -> {final} ({jobs} process(es))")
        # atomic_dir: a failed or terminated build leaves nothing, a killed one's temporary is
        # removed by the next build
        with atomic_dir(final, overwrite=True) as tmp:
            index = np.zeros((len(dataset.utts), copies + 1, 2), dtype=np.int64)
            pos = 0
            _WORK.update(dataset=dataset, augmenter=augmenter, fbank=fbank, copies=copies)
            with open(tmp / "feats.f16", "wb") as out:
                pool = ProcessPoolExecutor(jobs, mp_context=get_context("fork"), initializer=_one_thread) if jobs > 1 else None
                try:
                    results = pool.map(_features_of, range(len(dataset.utts)), chunksize=16) if pool else map(_features_of, range(len(dataset.utts)))
                    for i, versions in enumerate(results):
                        for c, f in enumerate(versions):
                            index[i, c] = (pos, f.shape[0])
                            out.write(f.tobytes())
                            pos += f.shape[0]
                finally:
                    if pool:
                        pool.shutdown(cancel_futures=True)
                    _WORK.clear()
            with open(tmp / "index.npy", "wb") as f:
                save_npy(f, index)
            meta = {"version": VERSION, "key": key, "utts": list(dataset.utts), "copies": copies,
                    "num_mel_bins": fbank.num_mel_bins, "frames": int(pos), "data": str(dataset.data.path)}
            with open(tmp / "meta.json", "w", encoding="utf-8") as f:
                f.write(json.dumps(meta))
    return final


class FeatureCache:
    """A built cache, memory-mapped: :meth:`crop` gives the features of a training chunk.
    ``utts``: those the caller will ask for (all in the cache; a subset is fine)."""

    def __init__(self, directory: str | Path, utts: list[str], norm: str = "mean", cmn_window: int = 300):
        directory = Path(directory)
        self.norm = norm  # the model front-end's feature_norm, applied per crop
        self.cmn_window = cmn_window  # its window, for norm "sliding"
        try:
            meta = json.loads(read_text(directory / "meta.json", "feature cache meta")[1])
            if not isinstance(meta, dict):
                raise ValueError("meta.json is not a JSON object")
            self.row = {u: i for i, u in enumerate(meta.get("utts", []))}
            if meta.get("version") != VERSION or any(u not in self.row for u in utts):
                raise InputError(f"{directory}: feature cache of other utterances or another version; delete it")
            self.copies, self.mels, frames = int(meta["copies"]), int(meta["num_mel_bins"]), int(meta["frames"])
            self.index = read_npy(directory / "index.npy", "feature cache index")
            if self.index.shape != (len(self.row), self.copies + 1, 2) or (self.index[..., 0] + self.index[..., 1] > frames).any():
                raise ValueError("index.npy does not match meta.json")
            self.feats = np.memmap(directory / "feats.f16", dtype=np.float16, mode="r", shape=(frames, self.mels))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{directory}: not a feature cache ({str(e).splitlines()[0] if str(e) else type(e).__name__}); delete it") from None

    def crop(self, utt: str, frames: int, rng: np.random.Generator, augment_prob: float) -> torch.Tensor:
        """``frames`` consecutive frames of ``utt`` (wrapped around when shorter) from its clean
        version, or with probability ``augment_prob`` from one of its augmented copies;
        normalised over the crop (``norm``: per-bin mean, overall level, Kaldi's sliding per-bin
        mean of ``cmn_window`` frames or none), as the online front-end normalises a chunk."""
        copy = 1 + int(rng.integers(self.copies)) if rng.random() < augment_prob else 0
        start, n = self.index[self.row[utt], copy]
        offset = int(rng.integers(0, n - frames + 1)) if n > frames else 0
        x = np.asarray(self.feats[start + offset : start + min(n, offset + frames)], dtype=np.float32)
        if x.shape[0] < frames:
            x = np.resize(x, (frames, self.mels))  # wrap around, as short waveforms are looped
        if self.norm == "mean":
            x = x - x.mean(axis=0, keepdims=True)
        elif self.norm == "level":
            x = x - x.mean()
        elif self.norm == "sliding":
            from ..features import sliding_cmn

            return sliding_cmn(torch.from_numpy(x)[None], self.cmn_window)[0]
        return torch.from_numpy(x)


__all__ = ["FeatureCache", "build", "cache_key"]
