"""Training loop of the x-vector extractor: ``jeffreys train CONFIG [--resume]``.

One YAML config (:class:`TrainConfig`) describes a system: data dir and chunking,
augmentation, model, margin head, output regulariser (CE / LS / Jeffreys / confidence
penalty), SGD and the schedules of learning rate and margin. ``model``, ``head`` and ``loss``
are plug-in sections (:mod:`jeffreys.registry`): a registered ``kind`` or ``module:Class``
and that class's arguments. A run writes its experiment dir:

    EXP/config.yaml          the config as run (with overrides applied)
    EXP/train.log            one line per logged step, plus start/stop/resume events
    EXP/tb/                  TensorBoard: train/{loss,ce,ls,jeffreys,accuracy,lr,margin}
                             (with jeffreys[tensorboard]; train.log has the same values)
    EXP/checkpoints/         step-NNNNNNNN.pt, written atomically (temp file + rename)
    EXP/labels.txt           speaker → integer label
    EXP/model.pt             the final bundle (jeffreys.models.save_bundle)
    EXP/train_result.json    steps, time, samples/s, last logged loss terms

Several processes (``torchrun --nproc_per_node N jeffreys train ...``, multi-node as
torchrun allows) train with DistributedDataParallel: NCCL on GPUs, gloo on CPUs;
``batch_size`` is the global batch, split evenly over the processes. On CUDA, ``amp``
runs the network under float16 autocast with a gradient scaler; the head and the loss are
always evaluated in float32.

Reproducibility and resume: every random choice of the data comes from (seed, epoch,
index) (:mod:`jeffreys.data.dataset`), the sampler can start mid-epoch, and a checkpoint
holds the weights, optimizer and scaler state, RNG states and the position in the epoch.
On CPU with ``deterministic: true``, a run killed at any point and resumed with
``--resume`` ends with bit-identical weights to an uninterrupted run.

A non-finite loss stops the run with an error naming the step; nothing is written after
the last good checkpoint.

Test hook: the environment variable ``JEFFREYS_TRAIN_FAULT`` injects faults, ``nan@N``
(the loss of step N becomes NaN) or ``stall@N`` (the process sleeps after step N, so a
test can kill it mid-epoch).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import logging
import math
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .config import load_config, load_yaml, parse_overrides, save_config, to_dict
from .data.augment import AugmentConfig
from .devices import check_device_name, resolve_device
from .errors import InputError, JeffreysError
from .fileio import write_text_atomic
from .models import SpeakerModel, save_bundle
from .models.memory_format import apply as apply_memory_format, requested_format
from .models.bundle import load_plain, max_model_bytes, save_torch
from .registry import HeadSpec, LossSpec, ModelSpec
from .schedules import ScheduleConfig, learning_rate, margin as margin_at

CHECKPOINT_FORMAT = "jeffreys-checkpoint/1"
# Keys that may differ between a run and its resumption (they do not change the result,
# except epochs/steps, which extend or shorten it).
RESUMABLE_CHANGES = {
    "epochs", "steps", "checkpoint_every", "keep_checkpoints", "log_every", "progress",
    "num_threads", "data.num_workers", "data.feature_cache", "device", "data.check_files",
}


def _added_defaults() -> dict[tuple[str, str], Any]:
    """Keys added after models were trained without them, at the value that reproduces
    those models: the front-end options of Kaldi's recipe, which files are checked."""
    from .features import FRONTEND_KEYS, FrontEnd

    neutral = FrontEnd()
    added = {("model", k): getattr(neutral, k) for k in FRONTEND_KEYS if k != "feature_norm"}
    return {**added, ("data", "check_files"): "auto"}


def comparable(config: dict) -> dict:
    """A training config as a dict, without the keys of :func:`_added_defaults` at their
    neutral value: what stamps and resume checks compare, so that an upgrade that adds an
    option neither retrains finished runs nor refuses to resume interrupted ones."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    for (section, key), value in _added_defaults().items():
        if isinstance(out.get(section), dict) and key in out[section] and out[section][key] == value:
            del out[section][key]
    return out


# ---- config --------------------------------------------------------------------------

@dataclass
class DataConfig:
    train: str = ""  # Kaldi-style data dir of the training speakers (required)
    chunk_seconds: float = 4.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    sampling: Literal["utterance", "speaker"] = "utterance"
    chunks_per_speaker: int = 1
    num_workers: int = 0
    allow_pipes: bool = False
    # Offline augmentation (jeffreys.data.feature_cache): > 0 computes the filterbanks of every
    # utterance clean and in this many augmented copies once, shared by every run on the same
    # data and augmentation; a chunk is an augmented copy's crop with probability augment.prob.
    offline_copies: int = 0
    feature_cache: str | None = None  # its directory (default: jeffreys.cache.cache_dir()/features)
    max_speakers: int | None = None  # train on the first N speakers (sorted) of data.train only
    # audio files checked before training: auto (all up to 100,000 utterances, a seeded sample
    # of 10,000 above), all, sample, none (jeffreys.data.index); the rest fail when read
    check_files: Literal["auto", "all", "sample", "none"] = "auto"

    def __post_init__(self) -> None:
        if self.check_files not in ("auto", "all", "sample", "none"):
            raise ValueError(f"data.check_files must be auto, all, sample or none, got {self.check_files!r}")
        if self.offline_copies < 0:
            raise ValueError(f"data.offline_copies must not be negative, got {self.offline_copies}")
        if self.max_speakers is not None and self.max_speakers < 2:
            raise ValueError(f"data.max_speakers must be at least 2, got {self.max_speakers}")
        if not self.chunk_seconds > 0:
            raise ValueError(f"data.chunk_seconds must be positive, got {self.chunk_seconds}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must not be negative, got {self.num_workers}")


@dataclass
class OptimConfig:
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 2e-4
    nesterov: bool = False

    def __post_init__(self) -> None:
        if not (self.lr > 0 and self.weight_decay >= 0 and 0 <= self.momentum < 1 and math.isfinite(self.lr + self.weight_decay)):
            raise ValueError(f"optim: need lr > 0, weight_decay >= 0, 0 <= momentum < 1, got {self}")


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    # Plug-in sections (jeffreys.registry): `kind` plus the kind's arguments. The defaults are
    # the paper's ResNet-34 ("resnet", preset "paper"), AAM (scale 30, margin 0.2) and CE.
    model: ModelSpec = field(default_factory=lambda: ModelSpec.from_config({}))
    head: HeadSpec = field(default_factory=lambda: HeadSpec.from_config({}))
    loss: LossSpec = field(default_factory=lambda: LossSpec.from_config({}))
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    epochs: int = 10
    steps: int | None = None  # stop after this many optimizer steps (the schedules span them)
    batch_size: int = 128  # global: split over the DDP processes
    seed: int = 0
    amp: bool = True  # CUDA only; ignored on CPU
    device: str = "auto"  # auto: cuda (LOCAL_RANK) when available, else cpu
    deterministic: bool = True
    # Conv memory layout: auto | channels_last | contiguous (jeffreys.models.memory_format:
    # auto picks by the device's ISA and the model's width, measured in docs/benchmarks.md).
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"
    channels_last: bool | None = None  # the older spelling: true = channels_last, false = contiguous
    num_threads: int | None = None  # torch CPU threads (None: torch's default)
    checkpoint_every: int = 500  # steps; a checkpoint is also written at each epoch end
    keep_checkpoints: int = 2
    log_every: int = 20
    progress: bool = True
    # Fine-tuning: start from the extractor of this bundle (its model section replaces this
    # config's; a new head is trained for data.train's speakers) ...
    init: str | None = None
    # ... with these modules of the embedder frozen (weights and BatchNorm statistics), e.g.
    # [stem, stages.0] for the ResNet's first layers.
    freeze: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.device != "auto":
            check_device_name(self.device, "key 'device':")
        if self.data.offline_copies and self.model.args.get("vad", "none") != "none":
            raise ValueError("model.vad: energy decides on each frame's energy, which the feature cache of "
                             "data.offline_copies does not keep: set data.offline_copies: 0 (waveform chunks)")


def load_train_config(path: str | Path, overrides: dict[str, Any] | list[str] | None = None) -> TrainConfig:
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    return load_config(TrainConfig, path, overrides)


# ---- errors / faults -----------------------------------------------------------------

class TrainingError(JeffreysError):
    """Training cannot go on (non-finite loss, incompatible resume)."""


def _fault() -> tuple[str, int] | None:
    spec = os.environ.get("JEFFREYS_TRAIN_FAULT", "")
    m = re.fullmatch(r"(nan|stall)@(\d+)", spec.strip())
    return (m.group(1), int(m.group(2))) if m else None


# ---- distributed ---------------------------------------------------------------------

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_kind: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _all_max(value: float, dist_: Dist, device: torch.device) -> float:
    if dist_.world == 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


# ---- the network being trained -------------------------------------------------------

class _Net(nn.Module):
    """Extractor + head in one module so that DDP synchronises both."""

    def __init__(self, model: SpeakerModel, head: nn.Module):
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # waveforms [B, T], or cached filterbanks [B, frames, mels] (offline augmentation)
        emb = self.model.embed_features(inputs) if inputs.dim() == 3 else self.model(inputs)
        return emb, self.head(emb, labels)


def _speaker_classes(speakers: list[str], speed_factors: tuple[float, ...]) -> list[str]:
    """Class names in label order: speakers, then each speed factor's copies (Kaldi's sp prefix)."""
    return list(speakers) + [f"sp{f:g}-{s}" for f in speed_factors for s in speakers]


# ---- checkpoints ---------------------------------------------------------------------

def _checkpoints(exp_dir: Path) -> list[Path]:
    return sorted((exp_dir / "checkpoints").glob("step-*.pt"))


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": list(map(lambda x: list(x) if isinstance(x, tuple) else x, random.getstate())),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# A checkpoint holds the weights, SGD's momentum buffer of the same size, and small state
# (RNG states, config, counters): 3 times the model limit leaves a model's worth to spare.
CHECKPOINT_MODELS = 3


def _load_checkpoint(path: Path) -> dict[str, Any]:
    # bounded like a bundle (file and zip entries, before torch reads them), by the model limit
    ckpt = load_plain(path, "training checkpoint", max_bytes=CHECKPOINT_MODELS * max_model_bytes())
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a jeffreys training checkpoint")
    for part in ("model", "head"):
        weights = ckpt.get(part)
        if isinstance(weights, dict) and any(isinstance(v, torch.Tensor) and not torch.isfinite(v).all() for v in weights.values()):
            raise InputError(f"{path}: the {part} weights are not finite; resume from an earlier checkpoint")
    return ckpt


def _config_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(old) | set(new)):
        full = f"{prefix}{k}"
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _config_changes(a, b, f"{full}.")
        elif a != b:
            keys.append(full)
    return keys


# ---- the trainer ---------------------------------------------------------------------

class _InBackground:
    """``fn(*args, **kwargs)`` on a thread from now on; :meth:`result` waits for it and
    returns its value or raises its error. The thread has ended when result() returns, so
    no thread is left when the DataLoader forks its workers."""

    def __init__(self, fn, *args, **kwargs):
        self._value, self._error = None, None

        def run():
            try:
                self._value = fn(*args, **kwargs)
            except BaseException as e:  # handed to the caller of result()
                self._error = e

        self._thread = threading.Thread(target=run, name="jeffreys-index", daemon=True)
        self._thread.start()

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


class Trainer:
    """One training run; :meth:`run` trains and returns the bundle path."""

    def __init__(self, config: TrainConfig, exp_dir: str | Path, resume: bool = False):
        from .data.augment import Augmenter
        from .data.dataset import TrainDataset
        from .data.index import read_index

        self.config = cfg = config
        self.exp_dir = Path(exp_dir)
        self.resume = resume
        kind = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self.dist = _init_distributed(kind.split(":")[0])
        self.device = resolve_device(f"cuda:{self.dist.local_rank}" if kind == "cuda" else kind)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.amp = cfg.amp and self.device.type == "cuda"
        if cfg.batch_size % self.dist.world:
            raise InputError(f"batch_size {cfg.batch_size} is not divisible by the {self.dist.world} processes")
        self.rank_batch = cfg.batch_size // self.dist.world

        if not cfg.data.train:
            raise InputError("training config: key 'data.train' (the training data dir) is required")
        # The data dir's index is read (NumPy, mostly without the GIL) while this thread loads
        # the augmentation material and the optimiser's imports: at VoxCeleb2 size each is ~1 s.
        index = _InBackground(read_index, cfg.data.train, allow_pipes=cfg.data.allow_pipes,
                              check_files=cfg.data.check_files)
        init_state = self._init_model() if cfg.init else None
        sample_rate = int(cfg.model.args.get("sample_rate", 16000))
        augment = None
        if cfg.data.augment.prob > 0 or cfg.data.augment.speed_perturb:
            augment = Augmenter(cfg.data.augment, sample_rate=sample_rate, seed=cfg.data.augment.rir_seed)
        importlib.import_module("torch._dynamo")  # torch.optim imports it when the optimiser is made

        self.dataset = TrainDataset(
            index.result(), cfg.data.chunk_seconds, sample_rate, augment=augment, seed=cfg.seed,
            sampling=cfg.data.sampling, chunks_per_speaker=cfg.data.chunks_per_speaker, allow_pipes=cfg.data.allow_pipes,
            max_speakers=cfg.data.max_speakers, check_files=cfg.data.check_files,
        )
        per_rank = math.ceil(len(self.dataset) / self.dist.world)
        self.steps_per_epoch = per_rank // self.rank_batch
        if self.steps_per_epoch < 1:
            raise InputError(
                f"{cfg.data.train}: {len(self.dataset)} training chunks per epoch are fewer than "
                f"batch_size {cfg.batch_size}; lower batch_size"
            )
        self.total_steps = cfg.epochs * self.steps_per_epoch
        if cfg.steps is not None:
            self.total_steps = min(self.total_steps, cfg.steps)
        self.classes = _speaker_classes(self.dataset.speakers, self.dataset.speed_factors)

        torch.manual_seed(cfg.seed)  # initial weights
        self.model = SpeakerModel(cfg.model)
        if init_state is not None:
            self.model.load_state_dict(init_state)
        self.frozen = freeze_modules(self.model, cfg.freeze)
        if cfg.data.offline_copies:
            self._use_feature_cache(augment)
        self.head = cfg.head.build(embed_dim=self.model.embed_dim, num_classes=self.dataset.num_classes)
        self.target_margin = float(getattr(self.head, "margin", 0.0))
        self.criterion = cfg.loss.build()
        self.net, self.memory_format = apply_memory_format(
            _Net(self.model, self.head), self.device, requested_format(cfg.memory_format, cfg.channels_last))
        self.optimizer = torch.optim.SGD(
            [p for p in self.net.parameters() if p.requires_grad], lr=cfg.optim.lr, momentum=cfg.optim.momentum,
            weight_decay=cfg.optim.weight_decay, nesterov=cfg.optim.nesterov,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.step = 0  # optimizer steps done
        self.ddp = self.net
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.net, device_ids=ids)

    def _init_model(self) -> dict[str, torch.Tensor]:
        """Fine-tuning: the extractor of bundle ``init`` (read as any model file: plain data,
        plug-in kinds only when allowed); its model section replaces the config's, so the
        run's config.yaml and bundle state the model that was trained."""
        from .models import load_bundle

        cfg = self.config
        bundle = load_bundle(cfg.init)
        cfg.model = ModelSpec.from_config(bundle.config, source=str(cfg.init), prefix="model")
        return bundle.model.state_dict()

    def _use_feature_cache(self, augment) -> None:
        """Build (once, under a lock) or reuse the offline-augmented features, and serve them.
        The cache covers the whole data dir (its babble from all its speakers), whatever
        max_speakers is: what it holds depends on the data and the augmentation only."""
        from .cache import cache_dir
        from .data import feature_cache
        from .data.augment import Augmenter
        from .data.dataset import TrainDataset
        from .features import Fbank

        cfg, fb = self.config.data, self.model.fbank
        if self.model.vad is not None:  # the cache keeps filterbanks only, not the frames' energies
            raise InputError("model.vad: energy decides on each frame's energy, which the feature cache does not keep: "
                             "train it on waveform chunks (data.offline_copies: 0)")
        fbank = Fbank(num_mel_bins=fb.num_mel_bins, sample_rate=fb.sample_rate, mean_norm=False)
        where = Path(cfg.feature_cache) if cfg.feature_cache else cache_dir() / "features"
        if self.dataset.speed_factors:
            raise InputError("speed perturbation needs waveform chunks: it cannot use a feature cache")
        full = self.dataset
        if cfg.max_speakers is not None:
            full = TrainDataset(cfg.train, cfg.chunk_seconds, fb.sample_rate, allow_pipes=cfg.allow_pipes, check_files=cfg.check_files)
            augment = Augmenter(cfg.augment, sample_rate=fb.sample_rate, seed=cfg.augment.rir_seed, babble_source=full)
        directory = feature_cache.build(full, augment, fbank, cfg.offline_copies, where,
                                        log=print if self.dist.main and self.config.progress else None)
        self.dataset.use_features(feature_cache.FeatureCache(directory, self.dataset.utts, fb.norm, fb.cmn_window),
                                  fb.num_frames(self.dataset.chunk_samples))

    # -- experiment dir --
    def _prepare_dir(self) -> None:
        exp, cfg = self.exp_dir, self.config
        ckpts = _checkpoints(exp)
        if self.resume and ckpts:
            old_path = exp / "config.yaml"
            if old_path.is_file():
                changed = [k for k in _config_changes(comparable(load_yaml(old_path) or {}), comparable(to_dict(cfg)))
                           if k not in RESUMABLE_CHANGES]
                if changed:
                    raise InputError(f"{old_path}: cannot resume with a different config (changed: {', '.join(changed)})")
            ckpt = _load_checkpoint(ckpts[-1])
            self._restore(ckpt, ckpts[-1])
        elif not self.resume and (ckpts or (exp / "model.pt").exists()):
            raise InputError(f"{exp}: experiment dir already holds a run; use --resume or another --exp-dir")
        if self.dist.main:
            (exp / "checkpoints").mkdir(parents=True, exist_ok=True)
            save_config(cfg, exp / "config.yaml")
            self.dataset.save_labels(exp / "labels.txt")

    def _restore(self, ckpt: dict[str, Any], path: Path) -> None:
        try:
            self.net.model.load_state_dict(ckpt["model"])
            self.net.head.load_state_dict(ckpt["head"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.amp and ckpt.get("scaler"):
                self.scaler.load_state_dict(ckpt["scaler"])
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
            why = str(e).splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise InputError(f"{path}: checkpoint does not match the config ({why})") from None
        self.step = int(ckpt["step"])
        _set_rng_state(ckpt["rng"])
        self.resumed_from = path

    def _save_checkpoint(self, epoch: int, step_in_epoch: int) -> Path:
        path = self.exp_dir / "checkpoints" / f"step-{self.step:08d}.pt"
        bad = next((n for n, p in self.net.named_parameters() if not torch.isfinite(p).all()), None)
        if bad is not None:  # never write (nor call good) a checkpoint of broken weights
            last = getattr(self, "last_checkpoint", None)
            kept = f"last good checkpoint: {last}" if last else "no checkpoint was written"
            raise TrainingError(
                f"weights became non-finite ({bad}) by step {self.step}; training stopped, {kept} "
                f"(lower optim.lr?)"
            )
        if self.dist.main:
            save_torch({
                "format": CHECKPOINT_FORMAT,
                "step": self.step, "epoch": epoch, "step_in_epoch": step_in_epoch,
                "model": self.net.model.state_dict(), "head": self.net.head.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.amp else {},
                "rng": _rng_state(), "config": to_dict(self.config),
            }, path)
            for old in _checkpoints(self.exp_dir)[: -self.config.keep_checkpoints]:
                old.unlink(missing_ok=True)
        self.last_checkpoint = path
        return path

    # -- logging --
    def _open_logs(self):
        log = logging.getLogger(f"jeffreys.train.{id(self)}")
        log.setLevel(logging.INFO)
        log.propagate = False
        self.writer = None
        if self.dist.main:
            handler = logging.FileHandler(self.exp_dir / "train.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            log.addHandler(handler)
            from .extras import available, install_hint

            if available("tensorboard"):
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.exp_dir / "tb"), purge_step=self.step + 1 if self.step else None)
            else:  # the same values are in train.log, one line per logged step
                log.info(f"TensorBoard is not installed: no tb/ curves, train.log only ({install_hint('tensorboard')})")
        self.log = log

    def _close_logs(self) -> None:
        for h in list(self.log.handlers):
            h.close()
            self.log.removeHandler(h)
        if self.writer is not None:
            self.writer.close()

    # -- the loop --
    def _loader(self, epoch: int, start_step: int):
        from torch.utils.data import BatchSampler, DataLoader

        from .data.dataset import ChunkSampler

        sampler = ChunkSampler(self.dataset, num_replicas=self.dist.world, rank=self.dist.rank,
                               shuffle=True, seed=self.config.seed)
        sampler.set_epoch(epoch, start=start_step * self.rank_batch)
        self.dataset.set_epoch(epoch)
        batches = BatchSampler(sampler, self.rank_batch, drop_last=True)
        if self.config.data.num_workers > 0:
            # The workers are forked from this process. Its Python objects are put out of the
            # garbage collector's reach first: a collection in a worker writes to every object
            # it visits, copying the parent's heap page by page (measured on m4a stand-ins: 45 or
            # 122 MB private per worker after the same 20 batches without it, 62 MB in every run with it).
            gc.collect()
            gc.freeze()
        return DataLoader(self.dataset, batch_sampler=batches, num_workers=self.config.data.num_workers,
                          pin_memory=self.device.type == "cuda")

    def _train_step(self, waves: torch.Tensor, labels: torch.Tensor, fault) -> tuple[dict[str, torch.Tensor], float, float]:
        cfg = self.config
        lr = learning_rate(self.step, self.total_steps, self.steps_per_epoch, cfg.optim.lr, cfg.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        m = margin_at(self.step, self.steps_per_epoch, self.target_margin, cfg.schedule, self.total_steps)
        if hasattr(self.head, "margin"):
            self.head.margin = m
        waves = waves.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            emb, logits = self.ddp(waves, labels)
        logits = logits.float()  # the loss always runs in float32
        loss = self.criterion(logits, labels)
        if fault == ("nan", self.step + 1):
            loss = loss * float("nan")
        bad = _all_max(0.0 if torch.isfinite(loss).item() else 1.0, self.dist, self.device)
        if bad:
            last = getattr(self, "last_checkpoint", None)
            kept = f"last good checkpoint: {last}" if last else "no checkpoint was written yet"
            raise TrainingError(
                f"non-finite loss ({loss.item()}) at step {self.step + 1} "
                f"(epoch {self.step // self.steps_per_epoch + 1}); training stopped, {kept}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        # terms() (per-term batch means, for the logs) is optional in a plug-in loss.
        terms = dict(self.criterion.terms(logits, labels)) if hasattr(self.criterion, "terms") else {}
        terms.pop("total", None)  # equals "loss"
        terms["loss"] = loss.detach()
        with torch.no_grad():  # accuracy of the unmargined scores: what the margin hides
            terms["accuracy"] = (self.head(emb.detach().float()).argmax(1) == labels).float().mean()
        return {k: v.detach() for k, v in terms.items()}, lr, m

    def run(self) -> Path:
        """Train; process-wide torch settings (threads, determinism) are restored afterwards."""
        cfg = self.config
        saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                 torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark)
        try:
            if cfg.num_threads:
                torch.set_num_threads(cfg.num_threads)
            if cfg.deterministic:
                torch.use_deterministic_algorithms(True, warn_only=self.device.type == "cuda")
                torch.backends.cudnn.benchmark = False
            return self._run()
        finally:
            torch.set_num_threads(saved[0])
            torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
            torch.backends.cudnn.benchmark = saved[3]

    def _run(self) -> Path:
        cfg, exp = self.config, self.exp_dir
        if self.dist.main:
            exp.mkdir(parents=True, exist_ok=True)
        self._prepare_dir()
        self._open_logs()
        from tqdm import tqdm

        fault = _fault()
        n_params = sum(p.numel() for p in self.model.parameters())
        if getattr(self, "resumed_from", None):
            self.log.info(f"resumed from {self.resumed_from} at step {self.step}")
        else:
            self.log.info(
                f"start: {len(self.dataset)} chunks/epoch, {len(self.dataset.speakers)} speakers, "
                f"{self.dataset.num_classes} classes, {n_params} extractor parameters, "
                f"{self.steps_per_epoch} steps/epoch, {self.total_steps} steps, world {self.dist.world}, "
                f"device {self.device}, amp {self.amp}, memory format {self.memory_format}"
                + (f", initialised from {cfg.init}" if cfg.init else "")
                + (f", frozen: {', '.join(cfg.freeze)}" if cfg.freeze else "")
            )
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not (cfg.progress and self.dist.main),
                   desc=f"train {exp.name}", unit="step", dynamic_ncols=True)
        window: dict[str, torch.Tensor] = {}
        window_n, last_logged, t0, start_step = 0, {}, time.perf_counter(), self.step
        self.cpu0 = time.process_time()  # this process's CPU (all its threads; not DataLoader workers)
        self.net.train()
        for module in self.frozen:  # frozen layers keep their BatchNorm statistics too
            module.eval()
        try:
            while self.step < self.total_steps:
                epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
                for waves, labels in self._loader(epoch, in_epoch):
                    terms, lr, m = self._train_step(waves, labels, fault)
                    for k, v in terms.items():
                        window[k] = window.get(k, 0.0) + v
                    window_n += 1
                    in_epoch = self.step - epoch * self.steps_per_epoch
                    end_of_epoch = in_epoch == self.steps_per_epoch
                    done = self.step >= self.total_steps
                    if self.step % cfg.log_every == 0 or done or end_of_epoch:
                        last_logged = {k: float(v) / window_n for k, v in window.items()}
                        self._log_step(last_logged, lr, m, epoch)
                        bar.set_postfix(loss=f"{last_logged['loss']:.3f}", acc=f"{last_logged['accuracy']:.3f}")
                        window, window_n = {}, 0
                    if self.step % cfg.checkpoint_every == 0 or done or end_of_epoch:
                        self._save_checkpoint(epoch, in_epoch)
                    bar.update(1)
                    if fault == ("stall", self.step):
                        self.log.info(f"JEFFREYS_TRAIN_FAULT: stalling after step {self.step}")
                        for h in self.log.handlers:
                            h.flush()
                        while True:
                            time.sleep(60)
                    if done:
                        break
            seconds = time.perf_counter() - t0
            return self._finish(last_logged, seconds, start_step, n_params)
        except TrainingError as e:
            self.log.info(f"error: {e}")
            raise
        finally:
            bar.close()
            self._close_logs()

    def _log_step(self, values: dict[str, float], lr: float, margin: float, epoch: int) -> None:
        parts = " ".join(f"{k} {v:.4f}" for k, v in values.items())
        self.log.info(f"step {self.step}/{self.total_steps} epoch {epoch + 1} lr {lr:.6g} margin {margin:.4f} {parts}")
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"train/{k}", v, self.step)
            self.writer.add_scalar("train/lr", lr, self.step)
            self.writer.add_scalar("train/margin", margin, self.step)

    def _finish(self, last: dict[str, float], seconds: float, start_step: int, n_params: int) -> Path:
        exp = self.exp_dir
        bundle = exp / "model.pt"
        if self.dist.world > 1:
            self._check_replicas_agree()
        if self.dist.main:
            cfg = self.config
            from .data.datadir import describe

            meta = {
                "train_config": to_dict(cfg), "steps": self.step, "num_classes": self.dataset.num_classes,
                "chunk_seconds": cfg.data.chunk_seconds, "train_data": describe(self.dataset.data),
            }
            if hasattr(self.head, "margin"):
                self.head.margin = self.target_margin  # the bundle states the configured margin
            save_bundle(bundle, self.model, self.head, self.classes, meta=meta)
            steps = self.step - start_step
            result = {
                "steps": self.step, "epochs": self.step / self.steps_per_epoch,
                "steps_this_session": steps, "seconds_this_session": round(seconds, 3),
                "cpu_seconds_this_session": round(time.process_time() - self.cpu0, 3),
                "samples_per_second": round(steps * cfg.batch_size / seconds, 3) if seconds > 0 else None,
                "last": last, "extractor_parameters": n_params, "num_classes": self.dataset.num_classes,
                "world_size": self.dist.world, "device": str(self.device), "memory_format": self.memory_format,
                "bundle": str(bundle),
            }
            write_text_atomic(exp / "train_result.json", json.dumps(result, indent=2) + "\n")
            self.log.info(f"done: {self.step} steps, model {bundle}")
        return bundle

    def _check_replicas_agree(self) -> None:
        """DDP keeps replicas identical; a cheap checksum comparison guards against drift."""
        import torch.distributed as dist

        total = torch.stack([p.detach().double().sum() for p in self.net.parameters()]).sum().reshape(1)
        lo, hi = total.clone(), total.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        if lo.item() != hi.item():
            raise TrainingError(f"DDP replicas diverged: weight checksums {lo.item()} .. {hi.item()}")


def freeze_modules(model: SpeakerModel, names: list[str]) -> list[nn.Module]:
    """Stop training the embedder's modules ``names`` (``stem``, ``stages.0``, ...; an
    ``embedder.`` prefix is allowed): their parameters get no gradient and the trainer keeps
    them in eval mode (BatchNorm statistics unchanged). Returns the modules."""
    out = []
    for name in names:
        path = name[len("embedder."):] if name.startswith("embedder.") else name
        try:
            module = model.embedder.get_submodule(path) if path else None
        except AttributeError:
            module = None
        if module is None or not list(module.parameters()):
            known = [n for n, m in model.embedder.named_children() if list(m.parameters())]
            raise InputError(f"key 'freeze': {name!r} is not a module of the embedder with weights "
                             f"(its modules: {', '.join(known)}; deeper ones as stages.0, stages.1, ...)")
        for p in module.parameters():
            p.requires_grad_(False)
        out.append(module)
    return out


def train(config: TrainConfig, exp_dir: str | Path, resume: bool = False) -> Path:
    """Train ``config`` in ``exp_dir``; return the path of the final bundle ``EXP/model.pt``."""
    return Trainer(config, exp_dir, resume=resume).run()


def cli_train(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="jeffreys train",
        description="Train a speaker-embedding extractor from a YAML config. "
        "Run under torchrun for several GPUs or nodes.",
    )
    parser.add_argument("config", help="YAML training config (see recipes/voxceleb/conf)")
    parser.add_argument("--exp-dir", help="experiment dir (default: exp/CONFIG_NAME)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint of the experiment dir")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (YAML value), e.g. --set optim.lr=0.1; repeatable")
    parser.add_argument("--init", metavar="MODEL.pt", help="fine-tune: start from this bundle's extractor "
                        "(its model section replaces the config's), with a new head for data.train's speakers")
    parser.add_argument("--freeze", metavar="M1,M2", help="embedder modules to keep fixed, e.g. stem,stages.0 "
                        "(config key: freeze)")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.overrides)
    if args.init is not None:
        overrides["init"] = args.init
    if args.freeze is not None:
        overrides["freeze"] = [m.strip() for m in args.freeze.split(",") if m.strip()]
    cfg = load_train_config(args.config, overrides)
    exp = Path(args.exp_dir) if args.exp_dir else Path("exp") / Path(args.config).stem
    bundle = train(cfg, exp, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(bundle)
    return 0


__all__ = [
    "DataConfig", "OptimConfig", "ScheduleConfig",
    "TrainConfig", "Trainer", "TrainingError", "cli_train", "freeze_modules", "load_train_config", "train",
]
