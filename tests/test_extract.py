"""Extraction: batched whole-utterance embeddings equal the model run on each utterance alone.

References are computed here independently of the batching code: the model called on one
waveform at a time (``[1, T]``), chunks cut with ``np.split``, crops from the framing rule.
Tolerance: batching may change float32 rounding inside the convolutions (different batch
sizes take different kernels), so embeddings agree to 1e-5 relative to their norm.
"""

from __future__ import annotations

import math
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

from jeffreys.cli import main
from jeffreys.data.datadir import read_datadir, write_datadir
from jeffreys.errors import InputError
from jeffreys.extract import PieceBatcher, chunk_bounds, extract, grid_frames
from jeffreys.models import ResNetConfig, SpeakerModel, load_bundle, save_bundle

SR = 16000
RTOL = 1e-5  # max |batched - alone| / |alone|


def tiny_model(seed: int = 0) -> SpeakerModel:
    """A randomly initialised 2-stage ResNet on 16 mels; BN statistics randomised too so
    that eval-mode normalisation is not the identity."""
    torch.manual_seed(seed)
    model = SpeakerModel(ResNetConfig(widths=[4, 8], depths=[1, 1], strides=[1, 2], num_mel_bins=16, embed_dim=8))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def make_wave(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f0 = 100 + 50 * seed
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


# Lengths in samples. 15920..16079 all give 98 frames (1 + (n - 400) // 160), so a1, a2 and d1
# share a batch; 56000 is long enough to be cut into chunks by max_chunk_seconds=1.
LENGTHS = {"a1": 16000, "a2": 16079, "b1": 8000, "b2": 24321, "c1": 56000, "c2": 4000, "d1": 15920}


def make_datadir(root: Path, lengths: dict[str, int] = LENGTHS) -> Path:
    wav, u2s = {}, {}
    for i, (utt, n) in enumerate(sorted(lengths.items())):
        path = root / "wav" / f"{utt}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, make_wave(n, i), SR, subtype="FLOAT")
        wav[utt], u2s[utt] = str(path), f"spk{utt[0]}"
    return write_datadir(root / "data", wav, u2s)


def alone(model, wave: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(wave))[None]).double().numpy()[0]


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    err = np.linalg.norm(got - want) / np.linalg.norm(want)
    assert err < RTOL, err


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def datadir(tmp_path_factory):
    return make_datadir(tmp_path_factory.mktemp("extract"))


@pytest.fixture
def bundle(tmp_path, model):
    return save_bundle(tmp_path / "model.pt", model, None, [])


def read_wave(datadir: Path, utt: str) -> np.ndarray:
    return sf.read(read_datadir(datadir).wav[utt], dtype="float32")[0]


def test_batched_extraction_equals_each_utterance_alone(model, datadir):
    # extract() stores the convolutions channels-last (in place): a fresh copy of the same
    # weights, so that the reference keeps the default layout.
    ids, matrix = extract(tiny_model(), datadir, progress=False, max_chunk_seconds=100, num_workers=2)
    assert ids == sorted(LENGTHS) and matrix.shape == (len(LENGTHS), 8) and matrix.dtype == np.float32
    for utt, row in zip(ids, matrix):
        assert_close(row, alone(model, read_wave(datadir, utt)))


def test_pieces_of_one_frame_count_share_a_batch(model):
    sizes = []

    def forward(x):
        sizes.append(tuple(x.shape))
        return model(x)

    waves = [make_wave(n, i) for i, n in enumerate([16000, 16079, 15920, 8000])]
    b = PieceBatcher(model, ["a", "b", "c", "d"], forward=forward, batch_seconds=10)
    for i in (3, 0, 1, 2):
        b.add(i, waves[i])
    got = b.finish()
    # 15920..16079 samples all make 98 frames, which use 15920 samples: one batch of 3, no
    # padding; 8000 samples make 48 frames, which use 7920.
    assert sorted(sizes) == [(1, 7920), (3, 15920)]
    for w, row in zip(waves, got):
        assert_close(row, alone(model, w))


def test_batch_budget_limits_batch_size(model):
    sizes = []
    b = PieceBatcher(model, list("abcde"), forward=lambda x: sizes.append(x.shape[0]) or model(x), batch_seconds=2.5)
    for i in range(5):
        b.add(i, make_wave(16000, i))
    b.finish()
    assert sizes == [2, 2, 1]  # at most 2.5 s of audio per batch


def test_long_utterance_is_the_duration_weighted_mean_of_its_chunks(model):
    wave = make_wave(56000, 3)  # 3.5 s, max chunk 1 s: 4 chunks of 14000 samples
    got = PieceBatcher(model, ["u"], max_chunk_seconds=1.0)
    got.add(0, wave)
    want = np.mean([alone(model, c) for c in np.split(wave, 4)], axis=0)
    assert_close(got.finish()[0], want)
    # Unequal chunks (n not divisible by k) are weighted by their durations.
    wave = make_wave(16001 * 2 + 1, 4)
    b = PieceBatcher(model, ["u"], max_chunk_seconds=1.0)
    b.add(0, wave)
    parts = [wave[: len(wave) // 3], wave[len(wave) // 3 : 2 * len(wave) // 3], wave[2 * len(wave) // 3 :]]
    want = sum(len(p) * alone(model, p) for p in parts) / len(wave)
    assert_close(b.finish()[0], want)


def test_extract_applies_the_long_utterance_policy(model, datadir):
    ids, matrix = extract(model, datadir, progress=False, max_chunk_seconds=1.0, num_workers=0)
    wave = read_wave(datadir, "c1")
    assert_close(matrix[ids.index("c1")], np.mean([alone(model, c) for c in np.split(wave, 4)], axis=0))
    # b2 (24321 samples, 1.52 s) is cut into 2 chunks of 12160 and 12161 samples.
    wave = read_wave(datadir, "b2")
    want = (12160 * alone(model, wave[:12160]) + 12161 * alone(model, wave[12160:])) / 24321
    assert_close(matrix[ids.index("b2")], want)


@pytest.mark.parametrize("n,k", [(1, 100), (99, 100), (100, 100), (101, 100), (1000, 7), (123457, 1000)])
def test_chunk_bounds(n, k):
    bounds = chunk_bounds(n, k)
    assert len(bounds) == math.ceil(n / k)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(b0[1] == b1[0] for b0, b1 in zip(bounds, bounds[1:]))
    lengths = [b - a for a, b in bounds]
    assert max(lengths) <= k and max(lengths) - min(lengths) <= 1


@pytest.mark.parametrize("c", [0.01, 0.05, 0.2, 0.5])
def test_grid_frames_drops_at_most_the_fraction(c):
    frames = np.arange(1, 20001)
    kept = np.array([grid_frames(int(f), c) for f in frames])
    assert (kept <= frames).all() and (kept >= (1 - c) * frames - 1e-6).all()
    assert (np.diff(kept) >= 0).all()
    # A geometric grid: about log(20000) / -log(1 - c) distinct lengths, not one per frame count.
    assert len(set(kept)) <= math.log(20000) / -math.log1p(-c) + 1 + 1 / c
    assert grid_frames(777, 0.0) == 777


def test_crop_fraction_keeps_the_middle_frames(model):
    wave = make_wave(30000, 5)
    frames = 1 + (30000 - 400) // 160  # 186
    kept = grid_frames(frames, 0.1)
    assert kept < frames
    start = (frames - kept) // 2 * 160
    b = PieceBatcher(model, ["u"], crop_fraction=0.1)
    b.add(0, wave)
    assert_close(b.finish()[0], alone(model, wave[start : start + 400 + (kept - 1) * 160]))


def test_segments_are_followed(model, tmp_path):
    rec = tmp_path / "rec.wav"
    wave = make_wave(40000, 7)
    sf.write(rec, wave, SR, subtype="FLOAT")
    segs = {"r-a": ("r", 0.0, 1.0), "r-b": ("r", 0.5, 2.5)}
    dd = write_datadir(tmp_path / "data", {"r": str(rec)}, {"r-a": "s", "r-b": "s"}, segments=segs)
    ids, matrix = extract(model, dd, progress=False)
    assert_close(matrix[0], alone(model, wave[:16000]))
    assert_close(matrix[1], alone(model, wave[8000:40000]))


def test_kaldi_ark_scp_is_readable_by_kaldiio_and_mean_is_the_mean(bundle, datadir, tmp_path, model):
    out = tmp_path / "emb" / "xvector"
    ids, matrix = extract(bundle, datadir, out, fmt="kaldi", mean_out=tmp_path / "mean.npy", progress=False)
    scp = next(out.parent.glob("*.scp"))
    table = kaldiio.load_scp(str(scp))
    assert sorted(table) == ids
    for utt, row in zip(ids, matrix):
        np.testing.assert_array_equal(np.asarray(table[utt]), row)
    mean = np.load(tmp_path / "mean.npy")
    brute = [sum(float(matrix[i, j]) for i in range(len(ids))) / len(ids) for j in range(matrix.shape[1])]
    np.testing.assert_allclose(mean, brute, rtol=1e-6, atol=1e-7)


def test_npy_format(bundle, datadir, tmp_path):
    from jeffreys.embeddings import read_embeddings

    ids, matrix = extract(bundle, datadir, tmp_path / "emb", fmt="npy", progress=False, channels_last=False)
    got_ids, got = read_embeddings(next(p for p in tmp_path.iterdir() if p.suffix == ".npy"))
    assert list(got_ids) == ids
    np.testing.assert_array_equal(got, matrix)


def test_store_mean_writes_the_bundle_meta(bundle, datadir):
    ids, matrix = extract(bundle, datadir, store_mean=True, progress=False)
    meta = load_bundle(bundle).meta
    np.testing.assert_allclose(meta["mean"], matrix.astype(np.float64).mean(0), rtol=1e-6, atol=1e-7)


def test_cli_extract(bundle, datadir, tmp_path, capsys):
    out = tmp_path / "out" / "emb"
    rc = main(["extract", str(bundle), str(datadir), str(out), "--mean-out", str(tmp_path / "m.npy"), "--quiet", "--store-mean"])
    assert rc == 0, capsys.readouterr().err
    assert f"{len(LENGTHS)} embeddings of dimension 8" in capsys.readouterr().out
    assert np.load(tmp_path / "m.npy").shape == (8,)
    assert len(load_bundle(bundle).meta["mean"]) == 8


# ----------------------------------------------------------------------------- errors


def cli_error(capsys, *argv: str) -> str:
    assert main(["extract", *argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jeffreys extract: error: ") and "\n" not in err, err
    return err


def test_unreadable_audio_names_the_utterance(bundle, tmp_path, capsys):
    dd = make_datadir(tmp_path / "d", {"good": 8000, "zbad": 8000})
    Path(read_datadir(dd).wav["zbad"]).write_bytes(b"RIFF\x00\x00 this is not audio at all" * 10)
    (dd / "utt2dur").write_text("good 0.5\nzbad 0.5\n")  # ordering from utt2dur: fails at load time
    err = cli_error(capsys, str(bundle), str(dd), str(tmp_path / "out"))
    assert "'zbad'" in err
    assert not list(tmp_path.glob("out*"))  # nothing written


def test_bad_datadir_and_model_are_one_line_errors(bundle, datadir, tmp_path, capsys):
    assert "not a directory" in cli_error(capsys, str(bundle), str(tmp_path / "nope"), str(tmp_path / "o"))
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    assert "junk.pt" in cli_error(capsys, str(tmp_path / "junk.pt"), str(datadir), str(tmp_path / "o"))
    assert "crop_fraction" in cli_error(capsys, str(bundle), str(datadir), str(tmp_path / "o"), "--crop-fraction", "1")
    assert "max_chunk_seconds" in cli_error(capsys, str(bundle), str(datadir), str(tmp_path / "o"), "--max-chunk-seconds", "0.01")


def test_too_short_utterance_names_it(model, tmp_path):
    dd = make_datadir(tmp_path, {"long": 8000, "tiny": 300})
    with pytest.raises(InputError, match=r"'tiny'.*shorter than one 25 ms frame"):
        extract(model, dd, progress=False)


def test_missing_cuda_is_an_input_error(model, datadir):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(InputError, match="CUDA is not available"):
        extract(model, datadir, device="cuda", progress=False)


def test_forward_may_be_a_compiled_module(model):
    """torch.compile's wrapper raises on len()/bool(); the batcher must only call it."""

    class NoTruth:
        def __call__(self, x):
            return model(x)

        def __len__(self):
            raise TypeError("no len()")

    b = PieceBatcher(model, ["u"], forward=NoTruth())
    wave = make_wave(8000, 9)
    b.add(0, wave)
    assert_close(b.finish()[0], alone(model, wave))
