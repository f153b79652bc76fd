"""`jeffreys extract` sharded over torchrun ranks (CPU, gloo): one merged output with the same
bytes as a single process, every rank stopped by one rank's bad input; the share arithmetic."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from jeffreys.data.datadir import write_datadir
from jeffreys.errors import InputError
from jeffreys.models import save_bundle
from jeffreys.shard import Shard, balance
from test_extract import make_wave, tiny_model

BIN = Path(sys.executable).parent
SR = 16000
# Lengths (samples): many utterances share a frame count (1 + (n - 400) // 160), so batches
# hold several (--batch-seconds 8) and their rounding depends on the batch mates; 40000 and
# 56000 are cut into chunks (--max-chunk-seconds 1).
LENGTHS = [16000 + 37 * (k % 13) for k in range(24)] + [8000 + 53 * (k % 5) for k in range(12)] + [40000, 56000, 4000]
OPTIONS = ["--batch-seconds", "8", "--max-chunk-seconds", "1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("shard")
    wav, u2s = {}, {}
    for k, n in enumerate(LENGTHS):
        path = root / "wav" / f"u{k:02d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, make_wave(n, k % 7), SR, subtype="FLOAT")
        wav[f"u{k:02d}"], u2s[f"u{k:02d}"] = str(path), f"s{k % 4}"
    write_datadir(root / "data", wav, u2s)
    # the same files as segments of two recordings' worth (segments are followed by both runs)
    segs = {f"seg{k:02d}": (f"u{k:02d}", 0.01 * (k % 3), LENGTHS[k] / SR - 0.02) for k in range(len(LENGTHS))}
    write_datadir(root / "segdata", wav, {u: f"s{i % 3}" for i, u in enumerate(segs)}, segments=segs)
    save_bundle(root / "model.pt", tiny_model(), None, [])
    return root


def _run(cwd: Path, *argv: str, ranks: int = 1) -> subprocess.CompletedProcess:
    """`jeffreys extract ARGV` in ``cwd`` alone, or under torchrun with ``ranks`` processes."""
    cwd.mkdir(parents=True, exist_ok=True)
    launcher = [str(BIN / "torchrun"), "--standalone", f"--nproc-per-node={ranks}", "-m", "jeffreys"] if ranks > 1 else [str(BIN / "jeffreys")]
    env = dict(os.environ, OMP_NUM_THREADS="1")  # torchrun's default per process, for both runs
    return subprocess.run([*launcher, "extract", *argv, "--quiet"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("data,fmt,files", [
    ("data", "kaldi", ["emb/x.ark", "emb/x.scp", "emb/mean.npy"]),
    ("segdata", "npy", ["emb/x.npy", "emb/x.ids", "emb/mean.npy"]),
])
def test_two_ranks_write_the_bytes_of_one_process(setup, tmp_path, data, fmt, files):
    args = [str(setup / "model.pt"), str(setup / data), "emb/x", "--format", fmt, *OPTIONS, "--mean-out", "emb/mean.npy"]
    one = _run(tmp_path / "one", *args)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _run(tmp_path / "two", *args, ranks=2)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("jeffreys extract:") == 1 and "(2 ranks)" in two.stdout  # rank 0 speaks
    for f in files:  # relative output paths: the scp's ark references are equal too
        assert (tmp_path / "two" / f).read_bytes() == (tmp_path / "one" / f).read_bytes(), f
    assert sorted(p.name for p in (tmp_path / "two" / "emb").iterdir()) == sorted(Path(f).name for f in files)


def test_a_bad_utterance_on_one_rank_stops_both_and_writes_nothing(setup, tmp_path):
    bad = tmp_path / "bad"
    write_datadir(bad, {**{f"u{k:02d}": str(setup / "wav" / f"u{k:02d}.wav") for k in range(8)}, "zz": str(tmp_path / "noise.wav")},
                  {**{f"u{k:02d}": "a" for k in range(8)}, "zz": "b"},
                  utt2dur={**{f"u{k:02d}": LENGTHS[k] / SR for k in range(8)}, "zz": 1.0})  # no header read up front
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(0).bytes(3000))
    r = _run(tmp_path / "out", str(setup / "model.pt"), str(bad), "emb/x", ranks=2)
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("jeffreys extract: error:")]
    assert len(errors) == 2, r.stderr[-3000:]
    assert any("utterance 'zz'" in e and "noise.wav" in e and "cannot decode" in e for e in errors), errors
    assert any(e.endswith("failed (its error is on its own output)") for e in errors), errors
    assert not (tmp_path / "out" / "emb").exists()


def test_the_data_tells_batch_mates_apart(setup):
    """Precondition of the test above: splitting the utterances naively (each share batched on
    its own) changes some embeddings' bits here, so equal bytes need the single-process batches."""
    import torch

    from jeffreys.data.datadir import read_datadir
    from jeffreys.extract import extract

    dd = read_datadir(setup / "data")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ids, full = extract(setup / "model.pt", dd, batch_seconds=8, max_chunk_seconds=1, progress=False)
        share = balance([float(n) for n in LENGTHS], 2)[0]  # ids u00, u01, ... in LENGTHS order
        sub = write_datadir(setup / "half", {ids[i]: dd.wav[ids[i]] for i in share}, {ids[i]: dd.utt2spk[ids[i]] for i in share})
        _, half = extract(setup / "model.pt", sub, batch_seconds=8, max_chunk_seconds=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert (half != full[share]).any()


# ---------------------------------------------------------------- the arithmetic
def test_shard_from_env():
    assert Shard.from_env({}) is None and Shard.from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    s = Shard.from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert (s.rank, s.world, s.local_rank, s.main) == (3, 4, 1, False)
    assert s.device("cuda") == "cuda:1" and s.device("cuda:0") == "cuda:0" and s.device("cpu") == "cpu"
    with pytest.raises(InputError, match="RANK=4 is outside 0..3"):
        Shard.from_env({"WORLD_SIZE": "4", "RANK": "4"})
    with pytest.raises(InputError, match="RANK=None"):
        Shard.from_env({"WORLD_SIZE": "2"})
    with pytest.raises(InputError, match="WORLD_SIZE='two'"):
        Shard.from_env({"WORLD_SIZE": "two"})


def _optimum(costs, parts):
    """Brute force: the smallest possible largest part."""
    best = float("inf")
    for assign in itertools.product(range(parts), repeat=len(costs)):
        totals = [0.0] * parts
        for c, p in zip(costs, assign):
            totals[p] += c
        best = min(best, max(totals))
    return best


@pytest.mark.parametrize("seed", range(20))
def test_balance_is_a_partition_within_lpt_bound_of_the_optimum(seed):
    rng = np.random.default_rng(seed)
    parts = int(rng.integers(2, 4))
    costs = list(rng.exponential(8.0, size=int(rng.integers(1, 9))))
    shares = balance(costs, parts)
    assert len(shares) == parts and sorted(i for s in shares for i in s) == list(range(len(costs)))
    assert all(s == sorted(s) for s in shares)
    largest = max(sum(costs[i] for i in s) for s in shares)
    # Graham's bound for longest-processing-time-first: 4/3 - 1/(3m) of the optimum
    assert largest <= (4 / 3 - 1 / (3 * parts)) * _optimum(costs, parts) + 1e-9
    assert shares == balance(costs, parts)  # every rank computes the same split


def test_balance_more_parts_than_items_and_ties():
    assert balance([5.0, 1.0], 3) == [[0], [1], []]
    assert balance([1.0] * 4, 2) == [[0, 2], [1, 3]]
