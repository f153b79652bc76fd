"""Speaker embeddings of whole utterances: ``jeffreys extract MODEL DATADIR OUT``.

One embedding per utterance of a data dir (``segments`` followed), written with
:func:`jeffreys.embeddings.write_embeddings` as Kaldi ark/scp or as .npy + ids, in the data
dir's (sorted) utterance order. ``--mean-out``/``--store-mean`` also give the mean of the
embeddings: run on the training set, that is the mean the paper subtracts before cosine
scoring (section 5.1).

Batching is pad-free and exact. Utterances are read in order of duration and cut into
*pieces* (one per utterance unless it is long, below); pieces with the same number of
filterbank frames are stacked into one batch of at most ``batch_seconds`` of audio (a
longer piece goes alone). Nothing is padded, so an embedding does not depend on the other
utterances in its batch (up to float rounding; ``tests/test_extract.py`` checks it against
the model called on each utterance alone). Stacking drops only the trailing samples that
no frame uses (Kaldi's snip_edges framing: ``1 + (n - 400) // 160`` frames at 16 kHz), which
changes nothing. On real data few utterances share a frame count, so batches are small;
``crop_fraction`` (``--crop-fraction``) trades exactness for full batches: a piece of F
frames keeps the F' frames in its middle, F' the largest point <= F of a geometric grid of
ratio 1 / (1 - crop_fraction); at most that fraction of the piece is dropped and the crop
depends on the piece's own length only, never on its batch mates.

Long utterances: a piece is at most ``max_chunk_seconds`` long. A longer utterance is cut
into ``ceil(duration / max_chunk_seconds)`` consecutive chunks of equal length, each chunk
is embedded, and the utterance's embedding is the mean of the chunk embeddings weighted by
their durations. This bounds memory (each feature map of the paper's ResNet takes ~3 MB
per second of audio) while statistics pooling over a minute of speech is already stable.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .devices import resolve_device
from .errors import InputError, finite
from .prefetch import prefetch

DEFAULT_BATCH_SECONDS = 100.0
DEFAULT_MAX_CHUNK_SECONDS = 60.0
FORMATS = ("kaldi", "npy")


@dataclass
class ExtractOptions:
    """The batching and reading options of :func:`extract`, typed for configs (an
    experiment's ``extract.options``): every field is the keyword argument of that name."""

    batch_seconds: float = DEFAULT_BATCH_SECONDS
    max_chunk_seconds: float = DEFAULT_MAX_CHUNK_SECONDS
    crop_fraction: float = 0.0
    num_workers: int = 2
    allow_pipes: bool = False
    compile: bool = False
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"
    channels_last: bool | None = None  # the older spelling of memory_format


# --------------------------------------------------------------------------- model


def resolve_model(model_or_path):
    """(SpeakerModel in eval mode, bundle path or None) from a path, a Bundle or a model."""
    if isinstance(model_or_path, (str, Path)):
        from .models import load_bundle

        return load_bundle(model_or_path).model.eval(), Path(model_or_path)
    model = getattr(model_or_path, "model", model_or_path)  # a Bundle, or the model itself
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "fbank"):
        raise TypeError(f"expected a model bundle path, a Bundle or a SpeakerModel, got {type(model_or_path).__name__}")
    return model.eval(), None


def prepare_model(model, device: torch.device, memory_format: str = "auto", channels_last: bool | None = None):
    """Move ``model`` to ``device`` (in place) in the memory layout ``memory_format`` asks
    for (``auto``: chosen per device and model; ``channels_last`` is the older boolean
    spelling), with the narrow-convolution guard: :mod:`jeffreys.models.memory_format`."""
    from .models.memory_format import apply, requested_format

    return apply(model, device, requested_format(memory_format, channels_last))[0]


# --------------------------------------------------------------------------- pieces


def chunk_bounds(num_samples: int, max_samples: int) -> list[tuple[int, int]]:
    """``ceil(n / max)`` consecutive chunks of (almost, ±1 sample) equal length covering n samples."""
    k = max(1, -(-num_samples // max_samples))
    edges = [i * num_samples // k for i in range(k + 1)]
    return list(zip(edges[:-1], edges[1:]))


def grid_frames(frames: int, crop_fraction: float) -> int:
    """Largest point <= ``frames`` of the grid ``ceil(r**k)``, r = 1 / (1 - crop_fraction).

    It is above ``(1 - crop_fraction) * frames`` (equal at worst, by float rounding);
    ``crop_fraction`` 0 keeps every frame.
    """
    if crop_fraction <= 0 or frames <= 1:
        return frames
    log_r = -math.log1p(-crop_fraction)
    k = math.floor(math.log(frames) / log_r + 1e-9)
    return max(1, min(frames, math.ceil(math.exp(k * log_r) - 1e-9)))


class PieceBatcher:
    """Embeds pieces of waveforms in pad-free batches and averages them per utterance.

    ``model`` gives the front-end's geometry (``model.fbank.sample_rate``, ``frame_length``,
    ``frame_shift``) and, unless ``forward`` replaces it (a compiled model, an ONNX session),
    the embeddings: ``forward`` maps a float32 ``[batch, samples]`` tensor to ``[batch, dim]``.

    ``add(index, wave)`` queues the pieces of utterance ``index``; a batch runs as soon as
    one more piece would take it over ``batch_seconds`` of audio, or, when more than that
    is queued in all, the batch of the shortest pieces runs (input arrives sorted by
    duration, so that group is the least likely to grow). ``finish()`` runs the rest and
    returns the ``[n, embed_dim]`` float32 matrix.
    """

    def __init__(
        self,
        model,
        names: Sequence[str],
        *,
        device: torch.device | str = "cpu",
        batch_seconds: float = DEFAULT_BATCH_SECONDS,
        max_chunk_seconds: float = DEFAULT_MAX_CHUNK_SECONDS,
        crop_fraction: float = 0.0,
        forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        fb = model.fbank
        self.sr = int(fb.sample_rate)
        self.frame_length, self.frame_shift = int(fb.frame_length), int(fb.frame_shift)
        if not finite(batch_seconds, "batch_seconds") > 0:
            raise InputError(f"batch_seconds must be positive, got {batch_seconds}")
        if not finite(max_chunk_seconds, "max_chunk_seconds") * self.sr >= 2 * self.frame_length:
            raise InputError(f"max_chunk_seconds must be at least {2 * self.frame_length / self.sr} s, got {max_chunk_seconds}")
        if not 0 <= crop_fraction < 1:
            raise InputError(f"crop_fraction must be in [0, 1), got {crop_fraction}")
        self.names = list(names)
        self.device = torch.device(device)
        self.forward = forward if forward is not None else model
        self.budget = int(batch_seconds * self.sr)
        self.max_chunk = int(max_chunk_seconds * self.sr)
        self.crop_fraction = crop_fraction
        self.sums: np.ndarray | None = None  # [n, dim] float64, allocated on the first batch
        self.weights = np.zeros(len(self.names))
        self.pending: dict[int, list[tuple[int, np.ndarray, float]]] = {}
        self.pending_samples = 0

    def num_frames(self, num_samples: int) -> int:
        return 0 if num_samples < self.frame_length else 1 + (num_samples - self.frame_length) // self.frame_shift

    def pieces(self, num_samples: int) -> list[tuple[int, int, float]]:
        """(start, length, weight seconds) of the pieces embedded for an utterance of n samples."""
        out = []
        for a, b in chunk_bounds(num_samples, self.max_chunk):
            frames = self.num_frames(b - a)
            kept = grid_frames(frames, self.crop_fraction)
            start = a + (frames - kept) // 2 * self.frame_shift
            out.append((start, self.frame_length + (kept - 1) * self.frame_shift, (b - a) / self.sr))
        return out

    def add(self, index: int, wave: np.ndarray) -> None:
        if wave.ndim != 1:
            raise InputError(f"utterance {self.names[index]!r}: expected a mono waveform, got shape {wave.shape}")
        if self.num_frames(wave.shape[0]) < 1:
            raise InputError(
                f"utterance {self.names[index]!r}: {wave.shape[0] / self.sr * 1000:.1f} ms is shorter than "
                f"one {self.frame_length / self.sr * 1000:.0f} ms frame"
            )
        for start, length, weight in self.pieces(wave.shape[0]):
            group = self.pending.setdefault(length, [])
            group.append((index, wave[start : start + length], weight))
            self.pending_samples += length
            if (len(group) + 1) * length > self.budget:  # one more piece would not fit
                self._run(length)
        while self.pending_samples > self.budget:
            self._run(min(self.pending))

    def embed(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """``add`` every in-memory waveform (``names[i]`` is ``waves[i]``), shortest first as
        :func:`extract` reads a data dir, then :meth:`finish`."""
        for i in sorted(range(len(waves)), key=lambda i: len(waves[i])):
            self.add(i, np.asarray(waves[i], dtype=np.float32))
        return self.finish()

    def finish(self) -> np.ndarray:
        for length in sorted(self.pending):
            self._run(length)
        if not self.names:
            return np.zeros((0, 0), dtype=np.float32)
        missing = np.flatnonzero(self.weights == 0)
        if missing.size:
            raise RuntimeError(f"utterance {self.names[missing[0]]!r} was never embedded")  # a bug, not bad input
        assert self.sums is not None
        return (self.sums / self.weights[:, None]).astype(np.float32)

    def _run(self, length: int) -> None:
        group = self.pending.pop(length)
        self.pending_samples -= length * len(group)
        x = torch.from_numpy(np.stack([w for _, w, _ in group])).to(self.device)
        with torch.inference_mode():
            emb = self.forward(x).float().cpu().numpy().astype(np.float64)
        if self.sums is None:
            self.sums = np.zeros((len(self.names), emb.shape[1]))
        for (index, _, weight), row in zip(group, emb):
            if not np.isfinite(row).all():
                raise InputError(f"utterance {self.names[index]!r}: the model gave a non-finite embedding")
            self.sums[index] += weight * row
            self.weights[index] += weight


def embed_waves(
    model,
    waves: Sequence[np.ndarray],
    names: Sequence[str] | None = None,
    *,
    device: str = "cpu",
    batch_seconds: float = DEFAULT_BATCH_SECONDS,
    max_chunk_seconds: float = DEFAULT_MAX_CHUNK_SECONDS,
    crop_fraction: float = 0.0,
    memory_format: str = "auto",
    channels_last: bool | None = None,
) -> np.ndarray:
    """Embeddings ``[len(waves), dim]`` of in-memory waveforms (model rate, [-1, 1]), same policy as :func:`extract`."""
    model, _ = resolve_model(model)
    dev = resolve_device(device)
    model = prepare_model(model, dev, memory_format, channels_last)
    names = list(names) if names is not None else [f"#{i}" for i in range(len(waves))]
    batcher = PieceBatcher(
        model, names, device=dev, batch_seconds=batch_seconds, max_chunk_seconds=max_chunk_seconds, crop_fraction=crop_fraction
    )
    return batcher.embed(waves)


# --------------------------------------------------------------------------- data dirs


def approximate_durations(datadir) -> dict[str, float]:
    """Seconds of each utterance, for ordering only: utt2dur, segment times or file headers.

    Pipelines (whose length is unknown until run) count as 0.
    """
    from .audio import audio_duration, is_pipe

    if datadir.utt2dur is not None and set(datadir.utt2dur) >= set(datadir.utt2spk):
        return dict(datadir.utt2dur)
    cache: dict[str, float] = {}
    out = {}
    for utt in datadir.utts:
        entry, start, end = datadir.source(utt)
        if end is not None and end > 0:
            out[utt] = end - start
            continue
        if is_pipe(entry):
            out[utt] = 0.0
            continue
        if entry not in cache:
            try:
                cache[entry] = audio_duration(entry)
            except InputError as e:
                raise InputError(f"utterance {utt!r} of {datadir.path}: {e}") from None
        out[utt] = max(0.0, cache[entry] - start)
    return out


def extract(
    model,
    datadir,
    out: str | Path | None = None,
    *,
    fmt: str = "kaldi",
    batch_seconds: float = DEFAULT_BATCH_SECONDS,
    device: str = "cpu",
    max_chunk_seconds: float = DEFAULT_MAX_CHUNK_SECONDS,
    crop_fraction: float = 0.0,
    mean_out: str | Path | None = None,
    store_mean: bool = False,
    num_workers: int = 2,
    allow_pipes: bool = False,
    compile: bool = False,
    memory_format: str = "auto",
    channels_last: bool | None = None,
    progress: bool = True,
    shard=None,
) -> tuple[list[str], np.ndarray]:
    """Embeddings of every utterance of ``datadir``; returns (sorted utterance ids, ``[n, dim]`` float32).

    ``model``: a bundle path (``model.pt``), a loaded Bundle or a SpeakerModel. ``out``:
    written with ``write_embeddings(out, ids, matrix, fmt)`` unless None. ``mean_out``: the
    float32 mean embedding as .npy; ``store_mean``: the mean into the bundle's meta
    (``meta["mean"]``; needs ``model`` to be a path). ``compile``: ``torch.compile`` the model
    (dynamic shapes; pays off on large sets, see benchmarks/extract.py). ``memory_format``
    (and the older ``channels_last``): see :func:`prepare_model`. ``shard``: a
    :class:`jeffreys.shard.Shard` (the CLI passes ``Shard.from_env()`` under torchrun): the
    ranks share the work, every rank returns the whole result and only rank 0 writes.
    """
    from .audio import load_utterance
    from .data.datadir import DataDir, read_datadir

    from .embeddings import output_paths
    from .fileio import check_output

    if fmt not in FORMATS:
        raise InputError(f"unknown embedding format {fmt!r} (known: {', '.join(FORMATS)})")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise InputError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    model, bundle_path = resolve_model(model)
    if store_mean and bundle_path is None:
        raise InputError("store_mean needs the model as a bundle path, to rewrite its meta")
    # outputs that cannot be written fail now, not after the whole data dir is embedded
    for p in [*(output_paths(out, fmt) if out is not None else []), *([mean_out] if mean_out is not None else [])]:
        check_output(p)
    dd = datadir if isinstance(datadir, DataDir) else read_datadir(datadir, allow_pipes=allow_pipes)
    dev = resolve_device(shard.device(device) if shard is not None else device)
    model = prepare_model(model, dev, memory_format, channels_last)
    forward = torch.compile(model, dynamic=True) if compile else model
    ids = dd.utts
    index = {u: i for i, u in enumerate(ids)}
    durations = approximate_durations(dd)
    order = sorted(ids, key=lambda u: (durations[u], u))
    batcher = PieceBatcher(
        model,
        ids,
        device=dev,
        batch_seconds=batch_seconds,
        max_chunk_seconds=max_chunk_seconds,
        crop_fraction=crop_fraction,
        forward=forward,
    )
    sr = batcher.sr

    def load(utt: str) -> tuple[str, np.ndarray]:
        return utt, load_utterance(dd, utt, sr)

    from tqdm import tqdm

    if shard is not None:  # the same batches, spread over the ranks (jeffreys.shard)
        from .shard import embed_sharded

        def new_batcher(fn):
            return PieceBatcher(model, ids, batch_seconds=batch_seconds, max_chunk_seconds=max_chunk_seconds,
                                crop_fraction=crop_fraction, forward=fn)

        matrix = embed_sharded(shard, ids, order, load, new_batcher, forward, model.embed_dim, durations,
                               device=dev, num_workers=num_workers, progress=progress)
        if not shard.main:
            return ids, matrix
    else:
        bar = tqdm(total=len(ids), unit="utt", desc="extract", disable=not progress, dynamic_ncols=True)
        with bar:
            for utt, wave in prefetch(load, order, num_workers):
                batcher.add(index[utt], wave)
                bar.update(1)
            matrix = batcher.finish()
    write_outputs(ids, matrix, out, fmt=fmt, mean_out=mean_out, bundle=bundle_path if store_mean else None)
    return ids, matrix


def write_outputs(ids: Sequence[str], matrix: np.ndarray, out: str | Path | None, *, fmt: str = "kaldi",
                  mean_out: str | Path | None = None, bundle: str | Path | None = None) -> None:
    """Everything an extraction writes, in one :class:`jeffreys.fileio.AtomicFiles`: the
    embeddings (``out``), their mean (``mean_out``, .npy) and the bundle whose meta gets
    the mean (``bundle``). All appear, or none does and nothing is changed."""
    from .embeddings import write_embeddings
    from .fileio import AtomicFiles
    from .scoring import compute_mean, save_mean

    mean = compute_mean(matrix) if mean_out is not None or bundle is not None else None
    with AtomicFiles() as files:
        if out is not None:
            write_embeddings(out, ids, matrix, fmt, files=files)
        if mean_out is not None:
            save_mean(mean_out, mean, files=files)
        if bundle is not None:
            from .models.bundle import bundle_with_meta

            data = bundle_with_meta(bundle, mean=[float(v) for v in mean])
            torch.save(data, files.open(bundle, "wb"))


# --------------------------------------------------------------------------- CLI


def add_policy_arguments(p: argparse.ArgumentParser, *, batching: bool = True) -> None:
    """Options shared by `extract` and `verify`: device and the long-utterance (and batching) policy."""
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ... (default cpu)")
    p.add_argument(
        "--max-chunk-seconds", type=float, default=DEFAULT_MAX_CHUNK_SECONDS, metavar="S",
        help="longer utterances are cut into equal chunks of at most S seconds whose embeddings are "
        f"averaged, weighted by duration (default {DEFAULT_MAX_CHUNK_SECONDS:g})",
    )
    if not batching:
        return
    p.add_argument(
        "--batch-seconds", type=float, default=DEFAULT_BATCH_SECONDS, metavar="S",
        help=f"audio per batch, summed over its utterances (default {DEFAULT_BATCH_SECONDS:g})",
    )
    p.add_argument(
        "--crop-fraction", type=float, default=0.0, metavar="F",
        help="drop at most this fraction of each utterance (its edges) so that utterances of similar "
        "length share a batch; 0 (default): whole utterances, exact",
    )


def cli_extract(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="jeffreys extract",
        description="Embeddings of every utterance of a data dir, batched by length (see the "
        "module docstring / docs/extraction.md for the batching and long-utterance policy).",
    )
    p.add_argument("model", help="model bundle (model.pt from `jeffreys train`)")
    p.add_argument("datadir", help="Kaldi-style data dir (wav.scp, utt2spk, optional segments)")
    p.add_argument("out", help="output: OUT.ark + OUT.scp (kaldi) or OUT.npy + OUT.ids (npy)")
    p.add_argument("--format", choices=FORMATS, default="kaldi", help="embedding file format (default kaldi)")
    p.add_argument("--mean-out", metavar="MEAN.npy", help="also write the mean embedding (for centring) here")
    p.add_argument("--store-mean", action="store_true", help="store the mean embedding in MODEL's meta (for `verify` and scoring)")
    add_policy_arguments(p)
    p.add_argument("--num-workers", type=int, default=2, help="audio-reading threads (default 2; 0: read in the main thread)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (worth it for large sets)")
    p.add_argument("--memory-format", choices=("auto", "channels_last", "contiguous"), default="auto",
                   help="convolution memory layout (default auto: chosen by the CPU's vector ISA and the model's width)")
    p.add_argument("--no-channels-last", dest="memory_format", action="store_const", const="contiguous",
                   help="the same as --memory-format contiguous")
    p.add_argument("--allow-pipes", action="store_true", help="run `cmd |` wav.scp entries (without a shell)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    from .shard import Shard

    shard = Shard.from_env()  # under torchrun: the ranks share the data dir, rank 0 writes
    ids, matrix = extract(
        a.model,
        a.datadir,
        a.out,
        fmt=a.format,
        batch_seconds=a.batch_seconds,
        device=a.device,
        max_chunk_seconds=a.max_chunk_seconds,
        crop_fraction=a.crop_fraction,
        mean_out=a.mean_out,
        store_mean=a.store_mean,
        num_workers=a.num_workers,
        allow_pipes=a.allow_pipes,
        compile=a.compile,
        memory_format=a.memory_format,
        progress=not a.quiet,
        shard=shard,
    )
    if shard is None or shard.main:
        print(f"jeffreys extract: {len(ids)} embeddings of dimension {matrix.shape[1]} -> {a.out}"
              + (f" ({shard.world} ranks)" if shard else ""))
    return 0


__all__ = [
    "extract",
    "embed_waves",
    "write_outputs",
    "PieceBatcher",
    "chunk_bounds",
    "grid_frames",
    "resolve_model",
    "prepare_model",
    "cli_extract",
]
