"""A data dir's extraction split over torchrun ranks, merged into the single-process result.

``torchrun --nproc-per-node N -m jeffreys extract MODEL DATA OUT`` (or ``--nnodes`` several
machines): every rank embeds a share of the utterances, and rank 0 writes one output with
the same bytes as ``jeffreys extract MODEL DATA OUT`` run alone, on the same device and
with the same threads per process. The ranks exchange lengths and embeddings through a
gloo process group (``MASTER_ADDR``/``MASTER_PORT`` from torchrun), so only rank 0 needs
to see ``OUT`` and nothing is left in a temporary place; every rank reads the data dir at
the same paths.

Why not simply split the utterances: an embedding depends on its batch mates through
float rounding (other batch sizes take other convolution kernels), and the batches follow
from the exact sample count of every utterance, known only once decoded. So:

1. *lengths*: each rank decodes a share of the utterances, balanced by duration (longest
   first, each to the least-loaded rank); a sum over ranks gives every rank all lengths;
2. *plan*: every rank runs the extraction's own batcher (:class:`~jeffreys.extract.PieceBatcher`)
   over all utterances in the single-process order, on placeholder waves of those lengths
   (each filled with its utterance's index, which is how a batch's members are read back),
   and deals the batches to the ranks, balanced by samples;
3. *compute*: each rank decodes the utterances of its batches and runs the batcher again,
   embedding only its own batches; a sum over ranks gives every batch's rows to every rank;
4. *merge*: the batcher is replayed with those rows as its model, so the duration-weighted
   chunk means accumulate in the single-process order (float64, the same code).

Each utterance is decoded about twice in all (passes 1 and 3), once per process. A failure
on one rank (unreadable audio, a non-finite embedding) stops every rank at the next
exchange with that rank's one-line error on its own output and "rank K failed" elsewhere.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .errors import InputError, JeffreysError
from .prefetch import prefetch

# Utterance indices travel as float32 placeholder samples: exact below 2**24.
MAX_UTTERANCES = 2**24


@dataclass(frozen=True)
class Shard:
    """This process's place among the torchrun ranks."""

    rank: int
    world: int
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Shard | None:
        """From torchrun's ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; None for a single process."""
        env = os.environ if env is None else env

        def number(name: str, default: str | None = None) -> int:
            value = env.get(name, default)
            try:
                return int(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise InputError(f"environment variable {name}={value!r}: expected an integer (set by torchrun)") from None

        world = number("WORLD_SIZE", "1")
        if world <= 1:
            return None
        rank, local = number("RANK"), number("LOCAL_RANK", "0")
        if not 0 <= rank < world:
            raise InputError(f"environment variable RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world})")
        return cls(rank, world, local)

    def device(self, device: str) -> str:
        """``cuda`` without an index means this rank's GPU, ``cuda:LOCAL_RANK``."""
        return f"cuda:{self.local_rank}" if device == "cuda" else device


def balance(costs: Sequence[float], parts: int) -> list[list[int]]:
    """Indices of ``costs`` dealt into ``parts`` lists of nearly equal total cost: largest
    first, each to the part with the smallest total so far (ties: the lower part number,
    then the lower index), so every rank computes the same split. Each list is sorted."""
    heap = [(0.0, p) for p in range(parts)]
    out: list[list[int]] = [[] for _ in range(parts)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        total, p = heapq.heappop(heap)
        out[p].append(i)
        heapq.heappush(heap, (total + costs[i], p))
    return [sorted(x) for x in out]


class _Group:
    """The gloo group the ranks exchange through (created here unless one exists)."""

    def __init__(self, shard: Shard):
        import torch.distributed as dist

        self.dist, self.shard = dist, shard
        self.created = not dist.is_initialized()
        if self.created:
            dist.init_process_group("gloo")
        if dist.get_world_size() != shard.world or dist.get_rank() != shard.rank:
            raise InputError(f"process group of rank {dist.get_rank()}/{dist.get_world_size()} does not match "
                             f"RANK={shard.rank} WORLD_SIZE={shard.world}")
        # Exchanges are CPU tensors: a separate gloo group when the default one is NCCL.
        self.group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        self.dist.all_reduce(t, group=self.group)
        return t

    def agree(self, error: BaseException | None, what: str) -> None:
        """Every rank calls this after a step; all raise if any failed (no rank waits forever)."""
        failed = torch.zeros(self.shard.world, dtype=torch.int32)
        failed[self.shard.rank] = int(error is not None)
        self.sum(failed)
        if error is not None:
            raise error
        if failed.any():
            ranks = ", ".join(str(r) for r in torch.nonzero(failed).flatten().tolist())
            raise JeffreysError(f"{what}: rank {ranks} failed (its error is on its own output)")

    def close(self) -> None:
        if self.created:
            self.dist.destroy_process_group()


def embed_sharded(
    shard: Shard,
    ids: Sequence[str],
    order: Sequence[str],
    load: Callable[[str], tuple[str, np.ndarray]],
    new_batcher: Callable[[Callable[[torch.Tensor], torch.Tensor]], object],
    forward: Callable[[torch.Tensor], torch.Tensor],
    embed_dim: int,
    durations: dict[str, float],
    *,
    device: torch.device | str = "cpu",
    num_workers: int = 2,
    progress: bool = True,
) -> np.ndarray:
    """The ``[len(ids), embed_dim]`` matrix of ``extract``, computed by all ranks together.

    ``order``: the single-process feeding order; ``load(utt) -> (utt, wave)``;
    ``new_batcher(forward)``: a fresh PieceBatcher over ``ids`` (on the CPU) with the
    extraction's options, calling ``forward`` on each stacked batch; ``forward``: the model.
    Every rank returns the whole matrix.
    """
    if len(ids) >= MAX_UTTERANCES:
        raise InputError(f"sharded extraction handles fewer than {MAX_UTTERANCES} utterances, got {len(ids)}")
    index = {u: i for i, u in enumerate(ids)}
    group = _Group(shard)
    try:
        # 1. lengths, each rank decoding a duration-balanced share
        share = balance([durations[u] for u in ids], shard.world)[shard.rank]
        lengths = torch.zeros(len(ids), dtype=torch.int64)
        error = None
        try:
            for utt, wave in prefetch(load, [ids[i] for i in share], num_workers):
                lengths[index[utt]] = wave.shape[0]
        except Exception as e:  # noqa: BLE001  (reported to the other ranks, then raised)
            error = e
        group.agree(error, "extract (reading lengths)")
        lengths = group.sum(lengths).tolist()

        # 2. the single-process batches, dealt to ranks by samples
        batches: list[list[int]] = []  # utterance index of each row, per batch in running order
        samples: list[int] = []

        def record(x: torch.Tensor) -> torch.Tensor:
            batches.append([int(v) for v in x[:, 0].tolist()])
            samples.append(x.numel())
            return torch.zeros(x.shape[0], embed_dim)

        planner = new_batcher(record)
        for utt in order:
            i = index[utt]
            planner.add(i, np.full(lengths[i], i, dtype=np.float32))
        planner.finish()
        mine = set(balance(samples, shard.world)[shard.rank])
        wanted = {i for k in mine for i in batches[k]}

        # 3. this rank's batches, computed; every other batch skipped
        offsets = np.concatenate([[0], np.cumsum([len(b) for b in batches])]).astype(np.int64)
        rows = torch.zeros(int(offsets[-1]), embed_dim, dtype=torch.float32)
        counter = iter(range(len(batches)))

        def compute(x: torch.Tensor) -> torch.Tensor:
            k = next(counter)
            if k not in mine:
                return torch.zeros(x.shape[0], embed_dim)
            out = forward(x.to(device))
            rows[offsets[k] : offsets[k + 1]] = out.float().cpu()
            return out

        def waves() -> Iterator[tuple[int, np.ndarray]]:
            real = prefetch(load, [u for u in order if index[u] in wanted], num_workers)
            for utt in order:
                i = index[utt]
                yield i, next(real)[1] if i in wanted else np.zeros(lengths[i], dtype=np.float32)

        error = None
        try:
            from tqdm import tqdm

            worker = new_batcher(compute)
            with tqdm(total=len(ids), unit="utt", desc=f"extract (rank 0 of {shard.world})",
                      disable=not (progress and shard.main), dynamic_ncols=True) as bar:
                for i, wave in waves():
                    worker.add(i, wave)
                    bar.update(1)
                worker.finish()
        except Exception as e:  # noqa: BLE001
            error = e
        group.agree(error, "extract")
        rows = group.sum(rows).numpy()

        # 4. the single-process accumulation, replayed on the gathered rows
        done = iter(range(len(batches)))

        def gathered(x: torch.Tensor) -> torch.Tensor:
            k = next(done)
            return torch.from_numpy(rows[offsets[k] : offsets[k + 1]])

        merger = new_batcher(gathered)
        for utt in order:
            i = index[utt]
            merger.add(i, np.zeros(lengths[i], dtype=np.float32))
        return merger.finish()
    finally:
        group.close()


__all__ = ["MAX_UTTERANCES", "Shard", "balance", "embed_sharded"]
