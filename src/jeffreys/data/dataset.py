"""Training and extraction datasets over Kaldi-style data dirs.

Training (paper section 5.1): each item is a random crop of ``chunk_seconds`` (4 s) from
one utterance, as float32 samples in [-1, 1], with the speaker's contiguous integer label.
Features are computed on the batch afterwards (:class:`jeffreys.features.Fbank`, on the
GPU when there is one), so the workers only decode, crop and augment. With a feature cache
(:mod:`jeffreys.data.feature_cache`, offline augmentation) an item is instead a crop of
cached filterbanks ``[frames, mels]``.

Determinism: every random choice for item ``i`` in epoch ``e`` (crop offset, utterance for
per-speaker sampling, speed factor, augmentation) comes from a generator seeded with
``(seed, e, i)``. The batches are therefore the same with 0, 1 or 8 DataLoader workers, on
one GPU or under DDP, and after a resume. :class:`ChunkSampler` passes ``(epoch, i)`` with
each index, so it also works with ``persistent_workers=True``; plain integer indices use
the epoch last given to :meth:`TrainDataset.set_epoch` (which only reaches the workers
when they are started after the call, i.e. without persistent workers).

What an epoch is (``sampling``):

* ``"utterance"`` (default): one crop per utterance, every utterance once;
* ``"speaker"``: ``chunks_per_speaker`` crops per speaker, each from an utterance of that
  speaker drawn at random, so that every speaker weighs the same whatever its number of
  utterances.

Short utterances are repeated (wrapped around) up to the chunk length. With speed
perturbation enabled in the augmentation config, a chunk is played at 0.9 or 1.1 speed with
probability ``speed_prob`` and then belongs to a new speaker (label ``k + n`` or
``k + 2n`` for ``n`` speakers), as in WeSpeaker's VoxCeleb recipe.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import soxr
import torch
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

from ..audio import load_audio, load_utterance
from ..errors import InputError, excerpt, shown
from .datadir import DataDir, read_datadir
from .index import UttIndex, read_index


def as_datadir(data: str | Path | DataDir, *, allow_pipes: bool = False) -> DataDir:
    return data if isinstance(data, DataDir) else read_datadir(data, allow_pipes=allow_pipes)


def as_index(data: str | Path | DataDir | UttIndex, *, allow_pipes: bool = False, check_files: str = "auto") -> UttIndex:
    if isinstance(data, UttIndex):
        return data
    if isinstance(data, DataDir):
        return UttIndex.from_datadir(data)
    return read_index(data, allow_pipes=allow_pipes, check_files=check_files)


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of item ``index`` in ``epoch``: independent of workers and order."""
    return np.random.default_rng([seed, epoch, index])


def repeat_pad(wave: np.ndarray, length: int) -> np.ndarray:
    """``wave`` repeated end to start until it has ``length`` samples (cut if longer)."""
    if wave.shape[0] == 0:
        raise ValueError("cannot pad an empty waveform")
    return wave[:length] if wave.shape[0] >= length else np.resize(wave, length)


def save_labels(path: str | Path, speakers: Sequence[str]) -> None:
    """Write ``speaker label`` lines (label = line index), atomically."""
    from ..fileio import write_text_atomic

    write_text_atomic(path, "".join(f"{s} {i}\n" for i, s in enumerate(speakers)))


def load_labels(path: str | Path) -> list[str]:
    """Speakers in label order from a file written by :func:`save_labels`."""
    from .tables import read_table

    path = Path(path)
    speakers: list[str] = []
    seen: dict[str, int] = {}
    for n, (spk, label) in read_table(path):
        if label != str(len(speakers)):
            raise InputError(f"{shown(path)}:{n}: expected label {len(speakers)}, got {excerpt(label)}")
        if spk in seen:
            raise InputError(f"{shown(path)}:{n}: duplicate speaker {excerpt(spk)} (first on line {seen[spk]})")
        seen[spk] = n
        speakers.append(spk)
    return speakers


def random_crop(data: DataDir | UttIndex, utt: str | int, length: int, sample_rate: int, rng: np.random.Generator,
                duration: float | None = None) -> np.ndarray:
    """A random ``length``-sample crop of ``utt`` (an id, or a row of an :class:`UttIndex`),
    repeat-padded if the utterance is shorter.

    With its ``duration`` (seconds) known, only the crop is read (soundfile seeks);
    otherwise the whole utterance is decoded first. Both draw the same offset.
    """
    entry, start, end = data.source(utt)
    if not isinstance(utt, str):
        utt = data.utts[utt]  # for messages
    if duration is None:
        wave = load_utterance(data, utt, sample_rate)
        total = wave.shape[0]
        offset = int(rng.integers(0, total - length + 1)) if total > length else 0
        return repeat_pad(wave[offset : offset + length], length)
    total = int(duration * sample_rate)
    offset = int(rng.integers(0, total - length + 1)) if total > length else 0
    a = start + offset / sample_rate
    b = a + length / sample_rate
    if end is not None:
        b = min(b, end)
    try:
        wave = load_audio(entry, sample_rate, a, b, allow_pipes=data.allow_pipes)
    except InputError as e:
        raise InputError(f"utterance {utt!r} of {data.path}: {e}") from None
    return repeat_pad(wave, length)


class TrainDataset(Dataset):
    """Random fixed-length crops with speaker labels (see the module docstring).

    The data dir is held as an :class:`~jeffreys.data.index.UttIndex` (arrays that forked
    DataLoader workers share without copying); utterances and speakers are rows of it.
    ``labels``: a file from :meth:`save_labels` (or a list of speakers) fixing the label of
    each speaker, e.g. to continue training; every speaker of the data dir must be in it.
    ``augment``: an :class:`jeffreys.data.augment.Augmenter`, applied to each crop.
    ``max_speakers``: train on the first N speakers (sorted ids) of the data dir only.
    ``check_files``: which audio files are checked up front (:mod:`jeffreys.data.index`).
    """

    def __init__(
        self,
        datadir: str | Path | DataDir | UttIndex,
        chunk_seconds: float = 4.0,
        sample_rate: int = 16000,
        augment=None,
        seed: int = 0,
        *,
        sampling: str = "utterance",
        chunks_per_speaker: int = 1,
        labels: str | Path | Sequence[str] | None = None,
        allow_pipes: bool = False,
        max_speakers: int | None = None,
        check_files: str = "auto",
    ):
        self.data = as_index(datadir, allow_pipes=allow_pipes, check_files=check_files)
        if max_speakers is not None:  # the first speakers in sorted order (nested: 200 of them are in 1000)
            if max_speakers < 2:
                raise ValueError(f"max_speakers must be at least 2, got {max_speakers}")
            self.data = self.data.speaker_subset(max_speakers)
        if chunk_seconds <= 0:
            raise ValueError("chunk_seconds must be positive")
        if sampling not in ("utterance", "speaker"):
            raise ValueError(f"sampling must be 'utterance' or 'speaker', got {sampling!r}")
        if chunks_per_speaker < 1:
            raise ValueError("chunks_per_speaker must be at least 1")
        self.sample_rate = sample_rate
        self.chunk_samples = int(round(chunk_seconds * sample_rate))
        self.augment = augment
        self.features = None  # a FeatureCache: see use_features()
        self.frames = 0
        self.seed = seed
        self.epoch = 0
        self.sampling = sampling
        self.chunks_per_speaker = chunks_per_speaker
        self.utts = self.data.utts
        if labels is None:
            self.speakers = list(self.data.speakers)
        else:
            self.speakers = load_labels(labels) if isinstance(labels, (str, Path)) else list(labels)
            where = labels if isinstance(labels, (str, Path)) else "the given labels"
            known = set(self.speakers)
            for spk in self.data.speakers:
                if spk not in known:
                    raise InputError(f"{where}: speaker {spk!r} of {self.data.path} has no label")
        self.spk2label = {s: i for i, s in enumerate(self.speakers)}
        # the label of each utterance, as an array: items read it without touching Python objects
        self.utt_label = np.array([self.spk2label[s] for s in self.data.speakers], dtype=np.int64)[self.data.spk]
        cfg = getattr(augment, "config", None)
        self.speed_factors: tuple[float, ...] = tuple(cfg.speed_factors) if cfg is not None and cfg.speed_perturb else ()
        self.speed_prob = cfg.speed_prob if self.speed_factors else 0.0
        if augment is not None and hasattr(augment, "bind"):
            augment.bind(self)

    # ---- labels ----------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Output classes: speakers, times 1 + the number of speed factors when perturbing."""
        return len(self.speakers) * (1 + len(self.speed_factors))

    def save_labels(self, path: str | Path) -> None:
        save_labels(path, self.speakers)

    def label_of(self, utt: str | int) -> int:
        return int(self.utt_label[self.data.row(utt)])

    # ---- epoch / indexing ------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.sampling == "speaker":
            return len(self.data.speakers) * self.chunks_per_speaker
        return len(self.data)

    def use_features(self, cache, frames: int) -> None:
        """Serve ``frames``-frame feature crops from ``cache`` (a
        :class:`jeffreys.data.feature_cache.FeatureCache`) instead of waveform chunks."""
        if self.speed_factors:
            raise InputError("speed perturbation needs waveform chunks: it cannot use a feature cache")
        self.features, self.frames = cache, frames

    def __getitem__(self, index) -> tuple[torch.Tensor, int]:
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        if not 0 <= index < len(self):
            raise IndexError(index)
        rng = item_rng(self.seed, epoch, index)
        if self.sampling == "speaker":
            rows = self.data.utts_of(index // self.chunks_per_speaker)
            row = int(rows[rng.integers(len(rows))])
        else:
            row = index
        label = int(self.utt_label[row])
        if self.features is not None:  # offline augmentation: a crop of cached filterbanks
            prob = self.augment.config.prob if self.augment is not None else 0.0
            return self.features.crop(self.utts[row], self.frames, rng, prob), label
        speed_idx = 0
        if self.speed_factors and rng.random() < self.speed_prob:
            speed_idx = 1 + int(rng.integers(len(self.speed_factors)))
        factor = self.speed_factors[speed_idx - 1] if speed_idx else 1.0
        need = int(round(self.chunk_samples * factor))  # samples to read before changing speed
        wave = self.crop(row, need, rng)
        if speed_idx:
            # Read at rate sr*factor, write at sr: 1.1 → faster and higher, as `sox speed`.
            wave = repeat_pad(soxr.resample(wave, self.sample_rate * factor, self.sample_rate, quality="HQ"), self.chunk_samples)
            label += speed_idx * len(self.speakers)
        if self.augment is not None:
            wave = self.augment(wave, rng, speaker=self.data.speaker(row))
        return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), label

    # ---- audio -----------------------------------------------------------------------
    def crop(self, utt: str | int, length: int, rng: np.random.Generator) -> np.ndarray:
        """A random ``length``-sample crop of ``utt`` (an id or a row; see :func:`random_crop`)."""
        row = self.data.row(utt)
        return random_crop(self.data, row, length, self.sample_rate, rng, self.data.duration(row))

    def random_chunks(self, rng: np.random.Generator, count: int, length: int, exclude_speaker: str | None = None) -> list[np.ndarray]:
        """``count`` crops of ``length`` samples from distinct other speakers when possible (babble)."""
        every = range(len(self.data.speakers))
        speakers = [k for k in every if self.data.speakers[k] != exclude_speaker] or list(every)
        picks = rng.choice(len(speakers), size=count, replace=count > len(speakers))
        out = []
        for k in picks:
            rows = self.data.utts_of(speakers[k])
            out.append(self.crop(int(rows[rng.integers(len(rows))]), length, rng))
        return out


class ChunkSampler(DistributedSampler):
    """``DistributedSampler`` yielding ``(epoch, index)`` so items know their epoch.

    Without torch.distributed initialised it covers the whole dataset (one replica).
    ``set_epoch(e, start=k)`` skips this rank's first ``k`` items (resume mid-epoch).
    """

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None, shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        if num_replicas is None and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            num_replicas, rank = 1, 0
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(super().__iter__())[self.start :]
        return iter([(self.epoch, i) for i in indices])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


__all__ = [
    "TrainDataset",
    "ChunkSampler",
    "as_index",
    "save_labels",
    "load_labels",
    "repeat_pad",
    "random_crop",
    "item_rng",
]
