"""CPU cost of one 4 s training sample at VoxCeleb2 scale, and the CPU cores one GPU needs; prints JSON.

What is timed (process CPU time, one thread, rounds interleaved across formats):

* ``crop``: ``TrainDataset[i]`` without augmentation — decode + random 4 s crop, as the
  trainer's DataLoader workers do it (``utt2dur`` present, so wav/flac crops are read by
  seeking; an m4a is decoded whole by PyAV, then cut);
* ``crop+augment``: the same with the recipe's augmentation (``recipes/voxceleb/conf``:
  ``prob`` 0.8, reverb/noise/music/babble equally likely) drawing from MUSAN-like noise,
  music and speech wav files and RIR wav files (generated here);
* ``augment``: the augmentation alone on already decoded crops;
* ``dataloader``: ``crop+augment`` through a ``DataLoader`` (1 worker, batch 32), CPU time of
  the main process and the worker together per sample (collation and transfer included);
* ``m4a_by_length``: ``crop`` for m4a by utterance length (an m4a crop decodes its whole file);
* ``m4a_seek_crop``: a prototype, in this script only, of reading an m4a crop by seeking
  (PyAV ``container.seek`` 0.1 s before the crop, decoding only up to its end), with its
  largest difference from the whole-file decode;
* ``convert``: ``jeffreys prepare convert`` (m4a -> FLAC, the one-time fix) per hour of audio.

Audio: generated speech-like signals (harmonic voice with a wandering pitch through three
formant resonators, syllabic envelope, pauses, -26 dBFS) of VoxCeleb2-like lengths: 4 s +
exponential (mean 3.8 s), cut at 20 s (mean about 7.7 s; VoxCeleb2 holds 2 442 h over
1 128 246 utterances, 7.8 s on average); wav and FLAC 16-bit, m4a AAC-LC mono at
``--aac-kbps`` (default 64 kb/s) encoded by FFmpeg through PyAV.

Cores per GPU = (GPU training rate, samples/s) x (CPU seconds per sample). No GPU was used:
the rate is an assumption, stated in the output: ``--gpu-tflops`` (default 64) sustained
mixed-precision TFLOP/s divided by the paper model's training FLOPs per 4 s sample (counted
with ``torch.utils.flop_counter`` on the meta device, forward + backward). 64 TFLOP/s is what
ResNet-50 training reaches on one A100 with AMP and channels_last (about 2 600 images/s,
timm issue #1491, x 3 x 8.2 GFLOP per 224x224 image). ``--gpu-rate N`` sets samples/s
directly (e.g. from a measurement on the GPU).

Usage: ``python benchmarks/sample_cost.py [--files 48] [--samples 300] [--rounds 3] [--gpu-rate N]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import tempfile
import time
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from scipy.signal import lfilter  # noqa: E402

from jeffreys.audio import load_audio  # noqa: E402
from jeffreys.corpora import convert  # noqa: E402
from jeffreys.data.augment import AugmentConfig, Augmenter, simulate_rirs  # noqa: E402
from jeffreys.data.datadir import read_datadir, write_datadir  # noqa: E402
from jeffreys.data.dataset import TrainDataset, item_rng  # noqa: E402

SR = 16000
CHUNK_S = 4.0
FORMATS = ("wav", "flac", "m4a")
LENGTH_BINS = ((4, 6), (6, 10), (10, 20.01))
# VoxCeleb2 dev: 1 092 009 utterances at the corpus mean of 2 442 h / 1 128 246 utterances
VOX2_DEV_HOURS = 1_092_009 * (2442 * 3600 / 1_128_246) / 3600


# ----------------------------------------------------------------------------- audio
def speech_like(seconds: float, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = rng.uniform(90, 220) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    kmax = int(7000 / f0.max())
    x = sum(np.sin(k * phase) / k for k in range(1, kmax + 1))
    for fc, bw in ((rng.uniform(400, 800), 80), (rng.uniform(1000, 1800), 120), (rng.uniform(2200, 3000), 160)):
        r, w = np.exp(-np.pi * bw / SR), 2 * np.pi * fc / SR
        x = x + 0.5 * lfilter([1 - r], [1, -2 * r * np.cos(w), r * r], x)
    env = (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 5) * t)) ** 2
    pauses = np.ones(n)
    at = rng.uniform(0.5, 2.0)
    while at < seconds:
        pauses[int(at * SR) : int((at + rng.uniform(0.15, 0.5)) * SR)] = 0.05
        at += rng.uniform(1.0, 3.0)
    x = x * env * pauses + 0.01 * rng.standard_normal(n)
    return (x / np.sqrt(np.mean(x**2)) * 10 ** (-26 / 20)).astype(np.float32)


def write_m4a(path: Path, x: np.ndarray, kbps: int) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=SR, layout="mono")
        stream.bit_rate = kbps * 1000
        for i in range(0, len(x), 1024):
            frame = av.AudioFrame.from_ndarray(x[None, i : i + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = SR, i
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode(None):
            out.mux(pkt)


def vox2_lengths(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.minimum(4.0 + rng.exponential(3.8, size=n), 20.0)


def build_corpus(root: Path, files: int, kbps: int, seed: int) -> tuple[dict[str, Path], dict[str, float]]:
    """One data dir per format over the same utterances (8 speakers); utt -> seconds."""
    rng = np.random.default_rng(seed)
    lengths = vox2_lengths(files, rng)
    dirs = {}
    waves = {f"id{k % 8:05d}-v{k:03d}-00001": speech_like(s, rng) for k, s in enumerate(lengths)}
    for fmt in FORMATS:
        wav, u2s = {}, {}
        for utt, x in waves.items():
            path = root / fmt / f"{utt}.{fmt}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if fmt == "m4a":
                write_m4a(path, x, kbps)
            else:
                sf.write(path, x, SR, subtype="PCM_16")
            wav[utt], u2s[utt] = str(path), utt.split("-")[0]
        from jeffreys.audio import audio_duration  # as `jeffreys prepare` measures utt2dur

        dirs[fmt] = write_datadir(root / f"data_{fmt}", wav, u2s, utt2dur={u: audio_duration(p) for u, p in wav.items()})
    return dirs, {u: len(x) / SR for u, x in waves.items()}


def build_noise_sources(root: Path, seed: int) -> tuple[Path, Path]:
    """MUSAN-like noise/music/speech data dirs of wav files, and a RIR data dir (small and
    medium simulated rooms, as `jeffreys prepare musan|rirs` write them)."""
    rng = np.random.default_rng(seed)
    musan = root / "musan"
    for part, count, secs in (("noise", 6, (5, 20)), ("music", 4, (30, 60)), ("speech", 6, (30, 60))):
        wav = {}
        for k in range(count):
            n = int(rng.uniform(*secs) * SR)
            if part == "noise":
                x = np.cumsum(rng.standard_normal(n)) * 0.001 + rng.standard_normal(n) * 0.05
            elif part == "music":
                t = np.arange(n) / SR
                x = sum(np.sin(2 * np.pi * rng.uniform(100, 1000) * t) * rng.uniform(0.02, 0.1) for _ in range(5))
            else:
                x = speech_like(n / SR, rng)
            path = musan / "audio" / f"{part}-{k:04d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, np.asarray(x, np.float32), SR, subtype="PCM_16")
            wav[path.stem] = str(path)
        write_datadir(musan / part, wav, {u: u for u in wav}, utt2dur={u: sf.info(p).duration for u, p in wav.items()})
    rir_wav, rir_room = {}, {}
    for k, rir in enumerate(simulate_rirs(20, SR, seed)):
        room = "smallroom" if k % 2 == 0 else "mediumroom"
        path = root / "rirs" / f"{room}-{k:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, rir / np.max(np.abs(rir)) * 0.9, SR, subtype="PCM_16")
        rir_wav[path.stem], rir_room[path.stem] = str(path), room
    rirs = write_datadir(root / "rirs_data", rir_wav, rir_room, utt2dur={u: sf.info(p).duration for u, p in rir_wav.items()})
    return musan, rirs


# ----------------------------------------------------------------------------- timing
def cpu_ms_per_item(fn, items) -> float:
    t0 = time.process_time()
    for i in items:
        fn(i)
    return (time.process_time() - t0) / len(items) * 1e3


def summary(values: list[float]) -> dict:
    return {"median": round(float(np.median(values)), 3), "min": round(min(values), 3), "max": round(max(values), 3), "rounds": [round(v, 3) for v in values]}


def seek_crop(path: str, start: float, length: int) -> np.ndarray:
    """Prototype (not the project's reader): decode only [start - 0.1 s, start + crop] of an m4a."""
    import av

    with av.open(path) as c:
        st = c.streams.audio[0]
        if start > 0.1:  # from the very start, the decoder's priming handling must see the first packet
            c.seek(int((start - 0.1) / st.time_base), stream=st, backward=True)
        chunks, first, have = [], None, 0
        for frame in c.decode(st):
            a = frame.to_ndarray()
            a = a.mean(axis=0) if a.ndim == 2 else a
            if first is None:
                first = int(round(frame.pts * st.time_base * SR)) if start > 0.1 else 0
            chunks.append(a)
            have += a.shape[0]
            if first + have >= int(start * SR) + length:
                break
    wave = np.concatenate(chunks)
    offset = int(start * SR) - first
    return wave[offset : offset + length]


def loader_ms_per_sample(ds: TrainDataset, samples: int, epoch: int) -> float:
    """CPU ms per sample of main process + one worker through a DataLoader (batch 32)."""
    from torch.utils.data import DataLoader

    from jeffreys.data.dataset import ChunkSampler

    sampler = ChunkSampler(ds, seed=0)
    sampler.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=32, sampler=sampler, num_workers=1, drop_last=True)
    ru0, c0, got = resource.getrusage(resource.RUSAGE_CHILDREN), time.process_time(), 0
    for waves, _ in loader:
        got += waves.shape[0]
        if got >= samples:
            break
    del loader  # joins the worker, so its CPU time reaches RUSAGE_CHILDREN
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - c0 + (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return cpu / got * 1e3


def flops_per_sample(name: str = "paper") -> float:
    """Training FLOPs (forward + backward) of a preset on one 4 s sample (398 frames)."""
    from torch.utils.flop_counter import FlopCounterMode

    from jeffreys.models import PRESETS, ResNetEmbedder

    cfg = PRESETS[name]
    with torch.device("meta"):
        model = ResNetEmbedder(cfg)
        feats = torch.randn(2, 398, cfg.num_mel_bins)
    counter = FlopCounterMode(display=False)
    with counter:
        model(feats).sum().backward()
    return counter.get_total_flops() / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=48, help="utterances per format (default 48)")
    ap.add_argument("--samples", type=int, default=300, help="training samples per format per round (default 300)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--aac-kbps", type=int, default=64)
    ap.add_argument("--gpu-tflops", type=float, default=64.0, help="assumed sustained mixed-precision TFLOP/s of one GPU (default 64: A100)")
    ap.add_argument("--gpu-rate", type=float, default=None, help="GPU training samples/s (overrides --gpu-tflops)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="sample_cost.") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        dirs, lengths = build_corpus(root, args.files, args.aac_kbps, args.seed)
        musan, rirs = build_noise_sources(root, args.seed)
        build_s = time.perf_counter() - t0
        cfg = AugmentConfig(prob=0.8, musan=str(musan), rirs=str(rirs))
        plain = {f: TrainDataset(dirs[f], chunk_seconds=CHUNK_S, seed=args.seed) for f in FORMATS}
        augmented = {f: TrainDataset(dirs[f], chunk_seconds=CHUNK_S, seed=args.seed, augment=Augmenter(cfg)) for f in FORMATS}
        n_utts = len(plain["wav"])
        for ds in (*plain.values(), *augmented.values()):  # warm-up: imports, first opens
            for i in range(4):
                ds[(99, i)]

        crop = {f: [] for f in FORMATS}
        full = {f: [] for f in FORMATS}
        aug_alone = []
        rng_draw = np.random.default_rng(args.seed)
        for r in range(args.rounds):
            items = [(r, int(i)) for i in rng_draw.integers(0, n_utts, size=args.samples)]
            for f in FORMATS:
                crop[f].append(cpu_ms_per_item(plain[f].__getitem__, items))
                full[f].append(cpu_ms_per_item(augmented[f].__getitem__, items))
            crops = [plain["wav"][it][0].numpy() for it in items]
            aug = augmented["wav"].augment
            aug_alone.append(cpu_ms_per_item(lambda k: aug(crops[k], item_rng(args.seed, 1000 + r, k), speaker=None), range(len(crops))))

        # an epoch of `samples` items: crops per speaker over the 8 speakers
        per_spk = max(4, -(-args.samples // 8))
        loader = {}
        for f in ("wav", "m4a"):
            ds = TrainDataset(dirs[f], chunk_seconds=CHUNK_S, seed=args.seed, augment=Augmenter(cfg), sampling="speaker", chunks_per_speaker=per_spk)
            loader[f] = [loader_ms_per_sample(ds, len(ds) // 32 * 32, 200 + r) for r in range(args.rounds)]

        # m4a crop cost by utterance length, and the seek prototype
        m4a = read_datadir(dirs["m4a"])
        by_len, seek_ms, whole_ms, max_diff = {}, [], [], 0.0
        n = int(CHUNK_S * SR)
        rng = np.random.default_rng(args.seed + 1)
        for lo, hi in LENGTH_BINS:
            utts = [u for u, s in lengths.items() if lo <= s < hi]
            if utts:
                idx = [plain["m4a"].utts.index(u) for u in utts]
                by_len[f"{lo}-{int(hi)} s"] = {"files": len(utts), "crop_ms": round(np.median([cpu_ms_per_item(plain["m4a"].__getitem__, [(50 + r, i) for i in idx]) for r in range(args.rounds)]), 3)}
        for r in range(args.rounds):
            starts = [(u, float(rng.uniform(0, max(0.0, m4a.utt2dur[u] - CHUNK_S)))) for u in rng.choice(m4a.utts, size=args.samples)]
            seek_ms.append(cpu_ms_per_item(lambda us: seek_crop(m4a.wav[us[0]], us[1], n), starts))
            whole_ms.append(cpu_ms_per_item(lambda us: load_audio(m4a.wav[us[0]])[int(us[1] * SR) : int(us[1] * SR) + n], starts))
        for u, start in starts[:40]:
            ref = load_audio(m4a.wav[u])[int(start * SR) : int(start * SR) + n]
            got = seek_crop(m4a.wav[u], start, n)
            max_diff = max(max_diff, float(np.max(np.abs(got - ref))) if got.shape == ref.shape else float("inf"))

        # the one-time conversion, one process (CPU time) and all cores (wall time)
        hours = sum(lengths.values()) / 3600
        conv = {}
        convert.PARALLEL_ABOVE = 0  # the process pool whenever jobs > 1, as on a full corpus
        for jobs in (1, os.cpu_count() or 1):
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            c0, w0 = time.process_time(), time.perf_counter()
            with redirect_stdout(StringIO()):
                convert.convert_datadir(dirs["m4a"], root / f"conv{jobs}", root / f"flac{jobs}", jobs=jobs)
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = time.process_time() - c0 + (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
            conv[f"jobs_{jobs}"] = {"wall_s": round(time.perf_counter() - w0, 2), "cpu_s": round(cpu, 2)}
        # the converted dir trains like the flac one
        converted = TrainDataset(root / "conv1", chunk_seconds=CHUNK_S, seed=args.seed)
        conv_crop = [cpu_ms_per_item(converted.__getitem__, [(r, int(i)) for i in np.random.default_rng(r).integers(0, n_utts, size=args.samples)]) for r in range(args.rounds)]
        sizes = {f: sum(Path(p).stat().st_size for p in read_datadir(dirs[f]).wav.values()) / hours for f in FORMATS}

    flop = flops_per_sample()
    flop_wespeaker = flops_per_sample("wespeaker")
    rate = args.gpu_rate if args.gpu_rate else args.gpu_tflops * 1e12 / flop
    per_sample = {f: float(np.median(full[f])) for f in FORMATS}
    seek_total = float(np.median(seek_ms)) + float(np.median(aug_alone))
    cores = {f: round(rate * per_sample[f] / 1e3, 2) for f in FORMATS}
    cores["m4a_seek_crop_prototype"] = round(rate * seek_total / 1e3, 2)
    rates = [rate * k for k in (0.5, 1, 2, 4)]
    print(json.dumps({
        "benchmark": "sample_cost",
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
        "torch": torch.__version__, "threads": 1,
        "corpus": {
            "files_per_format": args.files, "hours": round(hours, 3), "mean_s": round(float(np.mean(list(lengths.values()))), 2),
            "min_s": round(min(lengths.values()), 2), "max_s": round(max(lengths.values()), 2), "aac_kbps": args.aac_kbps,
            "built_in_s": round(build_s, 1),
        },
        "augment": {"prob": cfg.prob, "kinds": "reverb, noise, music, babble (equal weights)", "sources": "MUSAN-like wav files, 20 simulated RIRs (small/medium rooms)"},
        "cpu_ms_per_sample": {f: {"crop": summary(crop[f]), "crop+augment": summary(full[f])} for f in FORMATS},
        "augment_alone_ms": summary(aug_alone),
        "dataloader_ms_per_sample": {f: summary(v) for f, v in loader.items()},
        "m4a_over_wav": {  # per round (the same items in both formats), then the median
            "crop": round(float(np.median(np.divide(crop["m4a"], crop["wav"]))), 2),
            "crop+augment": round(float(np.median(np.divide(full["m4a"], full["wav"]))), 2),
            "dataloader": round(float(np.median(np.divide(loader["m4a"], loader["wav"]))), 2),
        },
        "m4a_crop_by_length": by_len,
        "m4a_seek_crop_prototype": {
            "crop_ms": summary(seek_ms), "whole_decode_crop_ms": summary(whole_ms),
            "max_abs_diff_vs_whole_decode": max_diff, "crop+augment_ms_estimate": round(seek_total, 3),
        },
        "convert_m4a_to_flac": {
            **conv, "audio_hours": round(hours, 3),
            "cpu_s_per_audio_hour": round(conv["jobs_1"]["cpu_s"] / hours, 1),
            "voxceleb2_dev_cpu_hours_estimate": round(conv["jobs_1"]["cpu_s"] / hours * VOX2_DEV_HOURS / 3600, 1),
            "converted_crop_ms": summary(conv_crop),
            "bytes_per_audio_hour": {f: int(sizes[f]) for f in FORMATS},
        },
        "gpu_assumption": {
            "model": "paper preset (ResNet-34, 128-128-256-256, 60 fbank), 4 s sample = 398 frames",
            "train_gflop_per_sample": round(flop / 1e9, 1),
            "assumed_sustained_tflops": None if args.gpu_rate else args.gpu_tflops,
            "samples_per_s": round(rate, 1),
            "basis": "given --gpu-rate" if args.gpu_rate else "ResNet-50 AMP training on one A100 (~2 600 img/s x 3 x 8.2 GFLOP ~ 64 TFLOP/s); no GPU was used",
        },
        "cores_per_gpu": cores,
        "cores_per_gpu_dataloader": {f: round(rate * float(np.median(v)) / 1e3, 2) for f, v in loader.items()},
        "wespeaker_resnet34": {
            "train_gflop_per_sample": round(flop_wespeaker / 1e9, 1),
            "samples_per_s": round(rate * flop / flop_wespeaker, 1),
            "cores_per_gpu": {f: round(rate * flop / flop_wespeaker * per_sample[f] / 1e3, 2) for f in FORMATS},
        },
        "cores_per_gpu_at_other_rates": {f"{r:.0f} samples/s": {f: round(r * per_sample[f] / 1e3, 2) for f in FORMATS} for r in rates},
    }, indent=1))


if __name__ == "__main__":
    main()
