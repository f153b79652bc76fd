"""DistributedDataParallel: two CPU processes (gloo) train a few steps and agree on every weight."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from train_helpers import make_datadir, tiny_overrides


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, conf: str, overrides: list[str], exp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    import torch.distributed as dist

    from jeffreys.train import Trainer, load_train_config

    trainer = Trainer(load_train_config(conf, overrides), exp)
    trainer.run()
    torch.save({k: v.clone() for k, v in trainer.net.state_dict().items()}, Path(exp) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    datadir = make_datadir(tmp_path / "data")
    conf = tmp_path / "c.yaml"
    conf.write_text("loss: {kind: jeffreys}\n")
    exp = tmp_path / "exp"
    overrides = tiny_overrides(datadir, "data.augment.prob=0.5", "data.augment.simulated_rirs=2",
                               f"data.augment.cache_dir={tmp_path / 'cache'}", steps=3)
    mp.spawn(_worker, args=(2, _free_port(), str(conf), overrides, str(exp)), nprocs=2, join=True)

    r0 = torch.load(exp / "rank0.pt", weights_only=True)
    r1 = torch.load(exp / "rank1.pt", weights_only=True)
    params = [k for k in r0 if "running" not in k and "num_batches" not in k]
    for k in params:
        assert torch.equal(r0[k], r1[k]), f"{k} differs between ranks"
    # Each rank saw its own half of every batch: per-rank BatchNorm statistics differ,
    # which shows the two processes did not simply train on the same data.
    assert any(not torch.equal(r0[k], r1[k]) for k in r0 if "running_mean" in k)
    bundle = torch.load(exp / "model.pt", weights_only=True)
    assert bundle["meta"]["steps"] == 3
    for k, v in bundle["state_dict"].items():
        assert torch.equal(v, r0[f"model.{k}"])
    result = (exp / "train_result.json").read_text()
    assert '"world_size": 2' in result
