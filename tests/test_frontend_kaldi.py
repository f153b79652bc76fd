"""The Kaldi VoxCeleb recipe's front-end options: sliding CMN (``feature_norm: sliding``) and
energy VAD (``vad: energy``), against float64 brute forces written from Kaldi's code
(``SlidingWindowCmnInternal`` in feat/feature-functions.cc, ``ComputeVadEnergy`` in
ivector/voice-activity-detection.cc) loop by loop, then through the model, bundles, the
feature cache, the training config and the demo's ``--set``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from jeffreys.errors import InputError
from jeffreys.features import (
    FLT_EPSILON, VAD_MIN_FRAMES, EnergyVad, Fbank, embed_voiced, keep_frames, sliding_cmn, wrap_voiced,
)
from jeffreys.models import load_bundle, save_bundle
from jeffreys.models.resnet import ResNetConfig, SpeakerModel

SR = 16000


# --------------------------------------------------------------------------- references
def kaldi_sliding_cmn(x: np.ndarray, cmn_window: int) -> np.ndarray:
    """apply-cmvn-sliding --norm-vars=false --center=true, as SlidingWindowCmnInternal: the
    window of each frame found by Kaldi's own steps, its mean taken explicitly in float64."""
    num_frames = x.shape[0]
    x = x.astype(np.float64)
    out = np.empty_like(x)
    for t in range(num_frames):
        window_start = t - cmn_window // 2
        window_end = window_start + cmn_window
        if window_start < 0:  # shift window right if starts < 0
            window_end -= window_start
            window_start = 0
        if window_end > num_frames:
            window_start -= window_end - num_frames
            window_end = num_frames
            if window_start < 0:
                window_start = 0
        out[t] = x[t] - x[window_start:window_end].sum(0) / (window_end - window_start)
    return out


def kaldi_vad(log_energy: np.ndarray, threshold=5.5, mean_scale=0.5, context=2, proportion=0.12) -> np.ndarray:
    """ComputeVadEnergy, loop for loop; the threshold and the proportion test in float32 as
    Kaldi's BaseFloat (the mean accumulated in float64)."""
    T = log_energy.shape[0]
    e = log_energy.astype(np.float32)
    energy_threshold = np.float64(threshold)
    if mean_scale != 0.0:
        energy_threshold += mean_scale * e.astype(np.float64).sum() / T
    energy_threshold = np.float32(energy_threshold)
    out = np.zeros(T, dtype=bool)
    for t in range(T):
        num_count = den_count = 0
        for t2 in range(t - context, t + context + 1):
            if 0 <= t2 < T:
                den_count += 1
                if e[t2] > energy_threshold:
                    num_count += 1
        out[t] = np.float32(num_count) >= np.float32(den_count) * np.float32(proportion)
    return out


def speechlike(seconds: float, seed: int = 0, silences=((0.3, 0.45), (0.7, 0.75))) -> np.ndarray:
    """Harmonics with a wandering pitch, noise, and near-silent stretches (fractions of the length)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.7 * t)) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * 0.1 + 0.003 * rng.standard_normal(t.size)
    for a, b in silences:
        x[int(a * t.size) : int(b * t.size)] *= 1e-3
    return x.astype(np.float32)


# --------------------------------------------------------------------------- sliding CMN
@pytest.mark.parametrize("window", [300, 7, 2, 1])
@pytest.mark.parametrize("frames", [1, 5, 6, 7, 8, 299, 300, 301, 650])
def test_sliding_cmn_matches_kaldi(frames, window):
    x = np.random.default_rng(frames * 1000 + window).normal(3.0, 2.0, (frames, 4)).astype(np.float32)
    want = kaldi_sliding_cmn(x, window)
    got = sliding_cmn(torch.from_numpy(x)[None], window)[0].numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


def test_sliding_cmn_rows_of_their_own_length_and_the_whole_utterance_case():
    x = torch.randn(3, 40, 5) + 2
    n = torch.tensor([40, 13, 0])
    got = sliding_cmn(x, 9, n)
    for i in range(2):
        want = kaldi_sliding_cmn(x[i, : n[i]].numpy(), 9)
        np.testing.assert_allclose(got[i, : n[i]].numpy(), want, rtol=0, atol=2e-6)
    assert torch.isfinite(got).all()  # a row of no frame divides by nothing
    # a window at least the utterance's length is the utterance's mean: feature_norm mean
    w = torch.from_numpy(speechlike(1.0))[None]
    frames = Fbank().num_frames(w.shape[1])
    for window in (frames, frames + 1, 10 * frames):
        torch.testing.assert_close(Fbank.with_norm("sliding", cmn_window=window)(w), Fbank.with_norm("mean")(w),
                                   rtol=0, atol=2e-5)
    assert not torch.allclose(Fbank.with_norm("sliding", cmn_window=frames - 20)(w), Fbank.with_norm("mean")(w), atol=1e-3)


def test_fbank_sliding_with_lengths_equals_each_row_alone():
    m = Fbank.with_norm("sliding", cmn_window=30, num_mel_bins=20)
    a, b = speechlike(1.0, 1), speechlike(0.6, 2)
    x = torch.zeros(2, a.size)
    x[0], x[1, : b.size] = torch.from_numpy(a), torch.from_numpy(b)
    out = m(x, lengths=torch.tensor([a.size, b.size]))
    nb = m.num_frames(b.size)
    torch.testing.assert_close(out[1, :nb], m(torch.from_numpy(b)), rtol=0, atol=1e-4)
    torch.testing.assert_close(out[0], m(torch.from_numpy(a)), rtol=0, atol=1e-4)
    assert torch.all(out[1, nb:] == 0) and m.norm == "sliding"


# --------------------------------------------------------------------------- energy and VAD
def test_log_energy_is_kaldis_raw_energy():
    """C0 of kaldi-native-fbank's MFCC with use_energy and raw_energy (Kaldi's defaults), and
    a float64 computation here: DC removed, before pre-emphasis and window, floored."""
    knf = pytest.importorskip("kaldi_native_fbank")
    w = speechlike(1.2)
    w[:2000] = 0  # digital silence: the floor
    _, energy = Fbank(mean_norm=False)(torch.from_numpy(w), energy=True)
    frames = np.lib.stride_tricks.sliding_window_view(w.astype(np.float64) * 32768, 400)[::160]
    frames = frames - frames.mean(1, keepdims=True)
    ref = np.log(np.maximum((frames**2).sum(1), FLT_EPSILON))
    np.testing.assert_allclose(energy.numpy(), ref, rtol=1e-5, atol=1e-4)
    opts = knf.MfccOptions()
    opts.frame_opts.dither = 0.0
    f = knf.OnlineMfcc(opts)
    f.accept_waveform(SR, (w * 32768.0).tolist())
    f.input_finished()
    c0 = np.array([f.get_frame(i)[0] for i in range(f.num_frames_ready)])
    np.testing.assert_allclose(energy.numpy(), c0, rtol=1e-5, atol=1e-3)
    assert energy[0].item() == pytest.approx(math.log(FLT_EPSILON))


@pytest.mark.parametrize("seed", range(6))
def test_vad_matches_kaldi_on_random_energies(seed):
    rng = np.random.default_rng(seed)
    T = int(rng.integers(1, 60))
    e = np.where(rng.random(T) < 0.5, rng.normal(20, 2, T), rng.normal(5, 3, T)).astype(np.float32)
    opts = dict(threshold=float(rng.uniform(0, 8)), mean_scale=float(rng.choice([0.0, 0.5, 1.0])),
                context=int(rng.integers(0, 6)), proportion=float(rng.uniform(0.05, 0.95)))
    vad = EnergyVad(opts["threshold"], opts["mean_scale"], opts["context"], opts["proportion"])
    np.testing.assert_array_equal(vad(torch.from_numpy(e)[None])[0].numpy(), kaldi_vad(e, **opts))


def test_vad_edge_cases():
    vad = EnergyVad()
    floor = math.log(FLT_EPSILON)
    # all silent (the floor: below 5.5 + 0.5 * floor) and all loud (30 > 5.5 + 15)
    for value, want in ((floor, False), (30.0, True)):
        e = np.full(50, value, np.float32)
        assert (vad(torch.from_numpy(e)[None])[0].numpy() == want).all() and (kaldi_vad(e) == want).all()
    # context at the edges: one loud frame at t = 0 votes for t = 0..2 only (1 of 3, 4, 5 frames)
    e = np.full(20, 0.0, np.float32)
    e[0] = 100.0
    got = vad(torch.from_numpy(e)[None])[0].numpy()
    np.testing.assert_array_equal(got, kaldi_vad(e))
    assert got.tolist() == [True] * 3 + [False] * 17
    # a proportion exactly at the threshold counts as voiced (Kaldi's >=): at t = 0 the loud
    # frame is 1 of den = 2 (context 1), 1 >= 2 * 0.5; inside it is 1 of 3
    e = np.zeros(10, np.float32)
    e[0] = 100.0
    tie = EnergyVad(energy_threshold=50.0, energy_mean_scale=0.0, frames_context=1, proportion_threshold=0.5)
    got = tie(torch.from_numpy(e)[None])[0].numpy()
    np.testing.assert_array_equal(got, kaldi_vad(e, 50.0, 0.0, 1, 0.5))
    assert got.tolist() == [True] + [False] * 9
    # 0.25 with context 2: at t = 1 the window is frames 0..3, den 4, a tie (1 >= 4 * 0.25);
    # at t = 2..5 den 5 and 1 < 1.25; the recipe's 0.12 keeps all of t = 1..5 (1 >= 0.6)
    e = np.zeros(10, np.float32)
    e[3] = 100.0
    got = EnergyVad(50.0, 0.0, 2, 0.25)(torch.from_numpy(e)[None])[0].numpy()
    np.testing.assert_array_equal(got, kaldi_vad(e, 50.0, 0.0, 2, 0.25))
    assert got.tolist() == [False, True] + [False] * 8
    got = EnergyVad(50.0, 0.0, 2, 0.12)(torch.from_numpy(e)[None])[0].numpy()
    assert got.tolist() == [False] + [True] * 5 + [False] * 4


def test_vad_decisions_from_kaldi_energies():
    """The model's VAD on a recording equals the brute force run on kaldi-native-fbank's C0."""
    knf = pytest.importorskip("kaldi_native_fbank")
    w = speechlike(3.0, seed=3)
    opts = knf.MfccOptions()
    opts.frame_opts.dither = 0.0
    f = knf.OnlineMfcc(opts)
    f.accept_waveform(SR, (w * 32768.0).tolist())
    f.input_finished()
    c0 = np.array([f.get_frame(i)[0] for i in range(f.num_frames_ready)], np.float32)
    model = SpeakerModel(ResNetConfig(widths=[4, 8], depths=[1, 1], strides=[1, 2], num_mel_bins=16, embed_dim=8,
                                      vad="energy"))
    _, keep = model.voiced_features(torch.from_numpy(w)[None])
    want = kaldi_vad(c0)
    np.testing.assert_array_equal(keep[0].numpy(), want)
    assert 0.6 < want.mean() < 0.9  # the silences are dropped, the rest kept


# --------------------------------------------------------------------------- selection
def test_keep_frames_falls_back_to_every_frame():
    voiced = torch.zeros(3, 100, dtype=torch.bool)
    voiced[1, : VAD_MIN_FRAMES] = True
    voiced[2, : VAD_MIN_FRAMES - 1] = True
    keep = keep_frames(voiced)
    assert keep[0].all() and keep[2].all()  # none, and one short of the minimum: all frames
    assert keep[1].sum() == VAD_MIN_FRAMES


def test_wrap_voiced_repeats_each_rows_voiced_frames():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(4, 17, 3, generator=g)
    keep = torch.rand(4, 17, generator=g) < 0.4
    keep[3] = True
    got = wrap_voiced(feats, keep)
    for i in range(4):
        voiced = [t for t in range(17) if keep[i, t]]
        want = torch.stack([feats[i, voiced[k % len(voiced)]] for k in range(17)])
        torch.testing.assert_close(got[i], want, rtol=0, atol=0)


def _tiny(**frontend) -> SpeakerModel:
    torch.manual_seed(0)
    return SpeakerModel(ResNetConfig(widths=[4, 8], depths=[1, 1], strides=[1, 2], num_mel_bins=16, embed_dim=8,
                                     **frontend))


def test_model_embeds_the_voiced_frames_of_each_row_alone():
    model = _tiny(vad="energy", feature_norm="sliding", cmn_window=50).eval()
    waves = torch.from_numpy(np.stack([speechlike(1.0, i, silences=((0.1 * i, 0.1 * i + 0.05 * (i + 1)),))
                                       for i in range(4)]))
    waves[3] *= 1e-6  # a near-silent row: threshold from its own mean, so its frames are judged alike
    feats, keep = model.voiced_features(waves)
    assert len(set(keep.sum(1).tolist())) >= 3  # rows of different numbers of kept frames
    with torch.no_grad():
        got = model(waves)
        for i in range(4):
            # normalised over all frames (silence included), then the kept frames selected
            want = model.embed_features(feats[i][keep[i]][None])
            torch.testing.assert_close(got[i : i + 1], want, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(got[i : i + 1], model(waves[i : i + 1]), rtol=1e-5, atol=1e-6)
        # training mode: the batch keeps its shape, each row its voiced frames repeated
        model.train()
        torch.manual_seed(1)
        emb = model(waves)
        torch.manual_seed(1)
        want = model.embedder(wrap_voiced(feats, keep))
    model.eval()
    assert emb.shape == (4, 8)
    torch.testing.assert_close(emb, want, rtol=0, atol=0)


def test_embed_voiced_groups_rows():
    calls = []

    def embed(x):
        calls.append(tuple(x.shape))
        return x.sum(1)

    feats = torch.arange(2 * 3 * 6, dtype=torch.float32).reshape(3, 6, 2)
    keep = torch.tensor([[1, 1, 0, 0, 1, 1], [0, 1, 1, 1, 1, 0], [1, 0, 0, 0, 0, 1]], dtype=torch.bool)
    got = embed_voiced(embed, feats, keep)
    torch.testing.assert_close(got, torch.stack([feats[i][keep[i]].sum(0) for i in range(3)]))
    assert sorted(calls) == [(1, 2, 2), (2, 4, 2)]


# --------------------------------------------------------------------------- bundles
def test_bundle_carries_the_front_end_and_old_bundles_read_as_before(tmp_path):
    model = _tiny(feature_norm="sliding", cmn_window=120, vad="energy", vad_frames_context=3,
                  vad_proportion_threshold=0.3).eval()
    b = load_bundle(save_bundle(tmp_path / "m.pt", model, None, []))
    assert {k: b.config[k] for k in ("feature_norm", "cmn_window", "vad", "vad_frames_context")} == \
        {"feature_norm": "sliding", "cmn_window": 120, "vad": "energy", "vad_frames_context": 3}
    assert b.model.fbank.cmn_window == 120 and b.model.vad == model.vad
    waves = torch.from_numpy(np.stack([speechlike(1.0, 0), speechlike(1.0, 1, ((0.2, 0.6),))]))
    with torch.no_grad():
        torch.testing.assert_close(b.model(waves), model(waves), rtol=0, atol=0)
    # a bundle written before these keys: no key, the per-utterance mean and no VAD
    plain = _tiny().eval()
    data = torch.load(save_bundle(tmp_path / "old.pt", plain, None, []), weights_only=True)
    for k in ("feature_norm", "cmn_window", "vad", "vad_energy_threshold", "vad_energy_mean_scale",
              "vad_frames_context", "vad_proportion_threshold"):
        del data["model"][k]
    torch.save(data, tmp_path / "old.pt")
    old = load_bundle(tmp_path / "old.pt")
    assert old.model.fbank.norm == "mean" and old.model.vad is None
    with torch.no_grad():
        torch.testing.assert_close(old.model(waves), plain(waves), rtol=0, atol=0)


@pytest.mark.parametrize("key,value,says", [
    ("vad", "energy\n" + "x" * 500, "vad must be one of none, energy"),
    ("feature_norm", "cmvn", "feature_norm must be one of mean, level, sliding, none"),
    ("cmn_window", 0, "cmn_window must be a positive number of frames"),
    ("cmn_window", 1 << 40, "cmn_window must be a positive number of frames"),
    ("vad_proportion_threshold", 1.0, "vad_proportion_threshold must be in (0, 1)"),
    ("vad_frames_context", -1, "vad_frames_context must be an integer >= 0"),
    ("vad_energy_mean_scale", -0.5, "vad_energy_mean_scale must be a number >= 0"),
])
def test_bad_front_end_values_in_a_bundle(tmp_path, key, value, says):
    data = torch.load(save_bundle(tmp_path / "m.pt", _tiny(), None, []), weights_only=True)
    data["model"][key] = value
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(InputError) as e:
        load_bundle(tmp_path / "bad.pt")
    msg = str(e.value)
    assert "bad.pt" in msg and says in msg and "\n" not in msg and len(msg) < 400


# --------------------------------------------------------------------------- feature cache, training, demo
def test_feature_cache_crops_follow_the_sliding_norm(tmp_path):
    from jeffreys.data.feature_cache import VERSION, FeatureCache

    feats = np.random.default_rng(0).normal(2, 1, (500, 6)).astype(np.float16)
    feats.tofile(tmp_path / "feats.f16")
    np.save(tmp_path / "index.npy", np.array([[[0, 500], [0, 500]]], dtype=np.int64))
    (tmp_path / "meta.json").write_text(json.dumps({"version": VERSION, "utts": ["u"], "copies": 1,
                                                    "num_mel_bins": 6, "frames": 500}))
    cache = FeatureCache(tmp_path, ["u"], "sliding", 40)
    crop = cache.crop("u", 200, np.random.default_rng(1), 0.0)
    raw = FeatureCache(tmp_path, ["u"], "none").crop("u", 200, np.random.default_rng(1), 0.0)
    np.testing.assert_allclose(crop.numpy(), kaldi_sliding_cmn(raw.numpy(), 40), rtol=0, atol=2e-6)


def test_vad_needs_waveform_chunks():
    from jeffreys.config import from_dict
    from jeffreys.train import TrainConfig

    with pytest.raises(InputError, match="offline_copies: 0"):
        from_dict(TrainConfig, {"data": {"offline_copies": 2}, "model": {"vad": "energy"}}, source="t.yaml")
    cfg = from_dict(TrainConfig, {"data": {"offline_copies": 2}, "model": {"feature_norm": "sliding"}}, source="t.yaml")
    assert cfg.model.args["cmn_window"] == 300


def test_demo_set_reaches_every_system(tmp_path, capsys):
    from pathlib import Path

    from jeffreys.cli import main
    from jeffreys.demo import DEMOS, demo_config
    from jeffreys.experiment.config import train_config_of

    cfg = demo_config(DEMOS["table1"], Path("corpus"), Path("out"), False, 0, None,
                      {"model.feature_norm": "sliding", "model.vad": "energy", "data.offline_copies": 0})
    for s in cfg.systems:
        t = train_config_of(s, cfg, 0)
        assert (t.model.feature_norm, t.model.cmn_window, t.model.vad, t.data.offline_copies) == ("sliding", 300, "energy", 0)
    assert train_config_of(cfg.systems[-1], cfg, 0).loss.kind == "jeffreys"  # the systems' own keys stay
    # a bad value, or the VAD with the demo's feature cache, fails before the corpus is built
    for bad in (["--set", "model.vad=bogus"], ["--set", "model.vad=energy"]):
        assert main(["demo", "--out", str(tmp_path / "d"), *bad]) == 2
        assert "model" in capsys.readouterr().err
    assert not (tmp_path / "d" / "corpus").exists()
