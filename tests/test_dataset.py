"""jeffreys.data.dataset: crops, padding, labels, sampling, determinism across workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from jeffreys.data.augment import AugmentConfig, Augmenter
from jeffreys.data.datadir import write_datadir
from jeffreys.data.dataset import ChunkSampler, TrainDataset, load_labels
from jeffreys.errors import InputError

SR = 1000  # a low rate keeps files tiny; nothing here depends on 16 kHz


def ramp(n: int, base: int) -> np.ndarray:
    """int16 samples base, base+1, ...: any crop tells where it came from."""
    return ((base + np.arange(n)) % 30000).astype(np.int16)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    wav, u2s, dur = {}, {}, {}
    lengths = {"A": [5000, 2500], "B": [1500, 7000, 4000], "C": [9000]}
    for spk, ns in lengths.items():
        for k, n in enumerate(ns):
            utt = f"{spk}-{k}"
            base = 1000 * (ord(spk) - 64) * 10 + k * 1000
            sf.write(d / f"{utt}.wav", ramp(n, base), SR, subtype="PCM_16")
            wav[utt], u2s[utt], dur[utt] = str(d / f"{utt}.wav"), spk, n / SR
    write_datadir(d / "with_dur", wav, u2s, utt2dur=dur)
    write_datadir(d / "no_dur", wav, u2s)
    return d


def as_int(x: torch.Tensor) -> np.ndarray:
    return np.round(x.numpy() * 32768).astype(np.int64)


def original(corpus: Path, utt: str) -> np.ndarray:
    return sf.read(corpus / f"{utt}.wav", dtype="int16")[0].astype(np.int64)


@pytest.mark.parametrize("sub", ["with_dur", "no_dur"])
def test_crops_are_slices_or_repeat_padded(corpus, sub):
    ds = TrainDataset(corpus / sub, chunk_seconds=3.0, sample_rate=SR, seed=5)
    assert len(ds) == 6 and ds.speakers == ["A", "B", "C"]
    for i, utt in enumerate(ds.utts):
        x, label = ds[i]
        assert x.dtype == torch.float32 and x.shape == (3000,)
        assert label == "ABC".index(utt[0])
        full, got = original(corpus, utt), as_int(x)
        if len(full) >= 3000:
            start = int(np.flatnonzero(full == got[0])[0])
            np.testing.assert_array_equal(got, full[start : start + 3000])
        else:
            np.testing.assert_array_equal(got, np.resize(full, 3000))


def test_both_read_paths_agree(corpus):
    a = TrainDataset(corpus / "with_dur", chunk_seconds=2.0, sample_rate=SR, seed=1)
    b = TrainDataset(corpus / "no_dur", chunk_seconds=2.0, sample_rate=SR, seed=1)
    for i in range(len(a)):
        torch.testing.assert_close(a[i][0], b[i][0], rtol=0, atol=0)


def test_epochs_and_seeds(corpus):
    ds = TrainDataset(corpus / "with_dur", chunk_seconds=1.0, sample_rate=SR, seed=0)
    e0 = [ds[i][0] for i in range(len(ds))]
    ds.set_epoch(1)
    e1 = [ds[i][0] for i in range(len(ds))]
    assert all(torch.equal(ds[(0, i)][0], e0[i]) for i in range(len(ds)))  # explicit epoch
    assert sum(not torch.equal(a, b) for a, b in zip(e0, e1)) >= 3  # long utterances move
    other = TrainDataset(corpus / "with_dur", chunk_seconds=1.0, sample_rate=SR, seed=9)
    assert any(not torch.equal(other[i][0], e0[i]) for i in range(len(ds)))


def batches(ds, workers: int, epoch: int, replicas: int = 1, rank: int = 0):
    sampler = ChunkSampler(ds, num_replicas=replicas, rank=rank, seed=3)
    sampler.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=workers, persistent_workers=workers > 0)
    return [(x.clone(), y.clone()) for x, y in loader]


def test_same_batches_with_0_1_2_workers_and_augmentation(corpus, tmp_path):
    cfg = AugmentConfig(prob=1.0, simulated_rirs=4, cache_dir=str(tmp_path), speed_perturb=True)
    ds = TrainDataset(corpus / "with_dur", chunk_seconds=1.5, sample_rate=SR, seed=7, augment=Augmenter(cfg, SR))
    ref = batches(ds, 0, epoch=2)
    for workers in (1, 2):
        got = batches(ds, workers, epoch=2)
        assert len(got) == len(ref)
        for (x0, y0), (x1, y1) in zip(ref, got):
            torch.testing.assert_close(x0, x1, rtol=0, atol=0)
            assert torch.equal(y0, y1)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(ref, batches(ds, 0, epoch=3)))


def test_sampler_shards_and_resume(corpus):
    ds = TrainDataset(corpus / "with_dur", chunk_seconds=1.0, sample_rate=SR, sampling="speaker", chunks_per_speaker=4)
    assert len(ds) == 12
    shards = []
    for rank in range(3):
        s = ChunkSampler(ds, num_replicas=3, rank=rank, seed=1)
        s.set_epoch(5)
        shards.append(list(s))
    flat = [i for sh in shards for _, i in sh]
    assert sorted(flat) == list(range(12)) and all(e == 5 for sh in shards for e, _ in sh)
    s = ChunkSampler(ds, seed=1)
    s.set_epoch(5)
    full = list(s)
    s.set_epoch(5, start=7)
    assert list(s) == full[7:] and len(s) == 5
    s.set_epoch(6)
    assert list(s) != full


def test_speaker_sampling_labels(corpus):
    ds = TrainDataset(corpus / "with_dur", chunk_seconds=1.0, sample_rate=SR, sampling="speaker", chunks_per_speaker=5, seed=2)
    labels = [ds[i][1] for i in range(len(ds))]
    assert labels == [i // 5 for i in range(15)]
    # Speaker B has 3 utterances: its 5 chunks come from more than one of them.
    firsts = {int(as_int(ds[i][0])[0]) // 1000 for i in range(5, 10)}
    assert len(firsts) >= 2


def test_labels_saved_and_reused(corpus, tmp_path):
    ds = TrainDataset(corpus / "with_dur", sample_rate=SR)
    ds.save_labels(tmp_path / "spk2label")
    assert (tmp_path / "spk2label").read_text() == "A 0\nB 1\nC 2\n"
    assert load_labels(tmp_path / "spk2label") == ["A", "B", "C"]
    (tmp_path / "more").write_text("Z 0\nC 1\nB 2\nA 3\n")
    re = TrainDataset(corpus / "with_dur", sample_rate=SR, labels=tmp_path / "more")
    assert re.spk2label["A"] == 3 and re.num_classes == 4
    (tmp_path / "few").write_text("A 0\nB 1\n")
    with pytest.raises(InputError, match=r"few: speaker 'C' .* has no label"):
        TrainDataset(corpus / "with_dur", sample_rate=SR, labels=tmp_path / "few")
    (tmp_path / "bad").write_text("A 0\nB 2\n")
    with pytest.raises(InputError, match=r"bad:2: expected label 1"):
        load_labels(tmp_path / "bad")
    (tmp_path / "dup").write_text("A 0\nA 1\n")
    with pytest.raises(InputError, match=r"dup:2: duplicate speaker 'A'"):
        load_labels(tmp_path / "dup")


def test_speed_perturbation_new_speakers_and_pitch(tmp_path):
    sr = 8000
    t = np.arange(3 * sr) / sr
    sf.write(tmp_path / "s.wav", 0.5 * np.sin(2 * np.pi * 500 * t), sr)
    d = write_datadir(tmp_path / "d", {"u1": str(tmp_path / "s.wav"), "u2": str(tmp_path / "s.wav")}, {"u1": "A", "u2": "B"})
    cfg = AugmentConfig(prob=0.0, speed_perturb=True, speed_factors=(1.1,), speed_prob=1.0)
    ds = TrainDataset(d, chunk_seconds=1.0, sample_rate=sr, augment=Augmenter(cfg, sr))
    assert ds.num_classes == 4
    x, label = ds[1]
    assert label == 1 + 2  # speaker B, first perturbed copy
    spec = np.abs(np.fft.rfft(x.numpy() * np.hanning(sr)))
    assert abs(np.argmax(spec) - 550) <= 1  # 1 s at 8 kHz: 1 Hz bins
    cfg = AugmentConfig(prob=0.0, speed_perturb=True)  # default: 1.0, 0.9, 1.1 equally likely
    ds = TrainDataset(d, chunk_seconds=0.5, sample_rate=sr, augment=Augmenter(cfg, sr), sampling="speaker", chunks_per_speaker=300)
    labels = np.array([ds[i][1] for i in range(0, 600, 2)])
    counts = np.bincount(labels, minlength=6)
    assert counts.sum() == 300 and all(30 < c < 70 for c in counts)


def test_bad_arguments_and_bad_audio(corpus, tmp_path):
    with pytest.raises(ValueError):
        TrainDataset(corpus / "with_dur", sampling="random")
    with pytest.raises(IndexError):
        TrainDataset(corpus / "with_dur", sample_rate=SR)[99]
    (tmp_path / "bad.wav").write_bytes(b"not audio at all" * 10)
    d = write_datadir(tmp_path / "d", {"u": str(tmp_path / "bad.wav")}, {"u": "A"})
    with pytest.raises(InputError, match=r"utterance 'u' .*bad.wav"):
        TrainDataset(d, sample_rate=SR)[0]
