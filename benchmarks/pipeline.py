"""Input pipeline throughput next to one training step of the demo model; prints JSON.

Measures, on a generated data dir (speech-like harmonic audio, 3–8 s utterances):

* ``pipeline``: samples/s of decode + random 4 s crop + augmentation (default
  AugmentConfig: 60 % of chunks corrupted, generated RIRs/noise/music, babble from the
  training speakers) through a DataLoader with 0, 1 and 2 workers, plus the batched
  log-mel filterbank (``Fbank``, 60 bins) in the main process, as the trainer does;
* ``model_step``: samples/s of forward + backward + SGD step of the demo ResNet
  (``jeffreys.models`` preset ``demo``; a small inline ResNet if that package is absent)
  with a softmax head, on the same batch size;
* ``fbank``: real-time factor of ``Fbank`` on 60 s of 16 kHz audio (and of
  kaldi-native-fbank when installed), with the max abs difference between the two.

Usage: ``python benchmarks/pipeline.py [--format wav|flac|m4a] [--batches 8] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn
from torch.utils.data import DataLoader

from jeffreys.data.augment import AugmentConfig, Augmenter
from jeffreys.data.datadir import write_datadir
from jeffreys.data.dataset import ChunkSampler, TrainDataset
from jeffreys.features import Fbank
from sample_cost import write_m4a  # benchmarks/sample_cost.py

SR = 16000


def make_corpus(root: Path, speakers: int, utts: int, fmt: str) -> Path:
    rng = np.random.default_rng(0)
    wav, u2s, dur = {}, {}, {}
    for s in range(speakers):
        f0 = rng.uniform(90, 250)
        for u in range(utts):
            n = int(rng.uniform(3, 8) * SR)
            t = np.arange(n) / SR
            phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))) / SR
            x = sum(np.sin(k * phase) / k for k in range(1, 12)) * 0.05 + 0.002 * rng.standard_normal(n)
            path = root / f"s{s:03d}-{u:02d}.{fmt}"
            if fmt == "m4a":
                write_m4a(path, x.astype(np.float32), kbps=64)
            else:
                sf.write(path, x.astype(np.float32), SR)
            utt = path.stem
            wav[utt], u2s[utt], dur[utt] = str(path), f"s{s:03d}", n / SR
    return write_datadir(root / "data", wav, u2s, utt2dur=dur)


def pipeline_rate(ds: TrainDataset, workers: int, batch: int, batches: int, fbank: Fbank, device: str) -> float:
    sampler = ChunkSampler(ds, seed=0)
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, drop_last=True, persistent_workers=workers > 0)
    it = iter(loader)
    waves, _ = next(it)  # worker start-up is not throughput
    done, epoch = 0, 0
    t0 = time.perf_counter()
    while done < batches:
        try:
            waves, _ = next(it)
        except StopIteration:
            epoch += 1
            sampler.set_epoch(epoch)
            it = iter(loader)
            continue
        with torch.no_grad():
            feats = fbank(waves.to(device))
        if device == "cuda":
            torch.cuda.synchronize()
        done += 1
    assert feats.shape[0] == batch
    return batches * batch / (time.perf_counter() - t0)


def demo_model(num_classes: int) -> tuple[nn.Module, str]:
    try:
        from jeffreys.models import SpeakerModel, preset

        cfg = preset("demo", num_mel_bins=60)
        return nn.Sequential(SpeakerModel(cfg), nn.Linear(cfg.embed_dim, num_classes)), "jeffreys.models preset demo (60 mels)"
    except ImportError:
        return nn.Sequential(Fbank(), InlineResNet(), nn.Linear(128, num_classes)), "inline 4-block ResNet"


class InlineResNet(nn.Module):
    """Fallback while jeffreys.models is absent: 4 residual stages 16-32-64-128, stats pooling."""

    def __init__(self):
        super().__init__()
        chans, layers, c_in = [16, 32, 64, 128], [], 1
        for i, c in enumerate(chans):
            s = 1 if i == 0 else 2
            layers += [nn.Conv2d(c_in, c, 3, s, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(2 * 128 * 8, 128)

    def forward(self, feats):
        x = self.body(feats.transpose(1, 2).unsqueeze(1))
        x = x.flatten(1, 2)
        return self.out(torch.cat([x.mean(-1), x.std(-1)], 1))


def model_rate(model: nn.Module, batch: int, steps: int, device: str, num_classes: int) -> float:
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 4 * SR, device=device) * 0.1
    y = torch.randint(0, num_classes, (batch,), device=device)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    step()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def fbank_speed(device: str) -> dict:
    """× real time on 60 s of audio: wall clock with the default threads, and CPU time of
    one thread (robust to other jobs on a shared machine; kaldi-native-fbank is one thread)."""
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(60 * SR)).astype(np.float32)
    samples = (x * 32768).tolist()
    out = {}
    for bins in (60, 80):
        m = Fbank(num_mel_bins=bins, mean_norm=False).to(device)
        xt = torch.from_numpy(x).to(device)
        with torch.no_grad():
            ours = m(xt)
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(5):
                m(xt)
            if device == "cuda":
                torch.cuda.synchronize()
            out[f"torch_{bins}_x_realtime"] = round(60 * 5 / (time.perf_counter() - t0), 1)
            if device == "cpu":
                threads = torch.get_num_threads()
                torch.set_num_threads(1)
                c0 = time.process_time()
                for _ in range(5):
                    m(xt)
                out[f"torch_{bins}_x_realtime_cpu_1thread"] = round(60 * 5 / (time.process_time() - c0), 1)
                torch.set_num_threads(threads)
        try:
            import kaldi_native_fbank as knf
        except ImportError:
            continue
        opts = knf.FbankOptions()
        opts.frame_opts.dither = 0.0
        opts.mel_opts.num_bins = bins
        t0, c0 = time.perf_counter(), time.process_time()
        f = knf.OnlineFbank(opts)
        f.accept_waveform(SR, samples)
        f.input_finished()
        ref = np.stack([f.get_frame(i) for i in range(f.num_frames_ready)])
        out[f"knf_{bins}_x_realtime"] = round(60 / (time.perf_counter() - t0), 1)
        out[f"knf_{bins}_x_realtime_cpu_1thread"] = round(60 / (time.process_time() - c0), 1)
        out[f"max_abs_diff_{bins}"] = float(np.abs(ours.cpu().numpy() - ref).max())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--format", default="flac", choices=["wav", "flac", "m4a"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=8, help="batches timed per worker count")
    p.add_argument("--steps", type=int, default=3, help="model steps timed")
    p.add_argument("--speakers", type=int, default=16)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    torch.manual_seed(0)
    result: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "command": "python benchmarks/pipeline.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_corpus(root, args.speakers, 4, args.format)
        aug = Augmenter(AugmentConfig(cache_dir=str(root / "cache"), simulated_rirs=50), SR, seed=0)
        ds = TrainDataset(data, chunk_seconds=4.0, sample_rate=SR, augment=aug, sampling="speaker", chunks_per_speaker=8)
        fb = Fbank(num_mel_bins=60).to(args.device)
        result["pipeline_samples_per_s"] = {
            f"workers_{w}": round(pipeline_rate(ds, w, args.batch, args.batches, fb, args.device), 1) for w in (0, 1, 2)
        }
        model, name = demo_model(ds.num_classes)
        result["model"] = name
        result["model_step_samples_per_s"] = round(model_rate(model, args.batch, args.steps, args.device, ds.num_classes), 1)
    result["fbank_60s_audio"] = fbank_speed(args.device)
    best = max(result["pipeline_samples_per_s"].values())
    result["pipeline_over_model"] = round(best / result["model_step_samples_per_s"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
