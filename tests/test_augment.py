"""jeffreys.data.augment: achieved SNRs, reverberation, generated material, MUSAN/RIR dirs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from jeffreys.config import from_dict
from jeffreys.data.augment import (
    AugmentConfig,
    Augmenter,
    reverberate,
    scale_to_snr,
    simulate_rirs,
    simulated_rir_bank,
    synthetic_music,
)
from jeffreys.data.datadir import write_datadir
from jeffreys.errors import InputError

SR = 16000


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """Measured independently of the code under test, in float64."""
    s = clean.astype(np.float64)
    n = noisy.astype(np.float64) - s
    return 10 * np.log10(np.sum(s**2) / np.sum(n**2))


def speech(seed: int = 0, seconds: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    return (0.2 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def speakers(tmp_path_factory) -> Path:
    """A small training data dir: 5 speakers (babble source)."""
    d = tmp_path_factory.mktemp("spk")
    wav, u2s = {}, {}
    for i in range(5):
        p = d / f"s{i}.wav"
        voice = np.random.default_rng(10 + i).standard_normal(3 * SR) * 0.05 * (i + 1)  # independent voices
        sf.write(p, voice.astype(np.float32), SR)
        wav[f"s{i}-u"], u2s[f"s{i}-u"] = str(p), f"s{i}"
    return write_datadir(d / "data", wav, u2s)


@pytest.mark.parametrize("target", [-5.0, 0.0, 7.5, 20.0])
def test_scale_to_snr_exact(target):
    rng = np.random.default_rng(0)
    s, n = speech(), rng.standard_normal(2 * SR).astype(np.float32) * 3
    assert snr_db(s, s + scale_to_snr(s, n, target)) == pytest.approx(target, abs=1e-3)
    assert not scale_to_snr(s, np.zeros_like(n), 5.0).any()


@pytest.mark.parametrize("kind", ["noise", "music"])
def test_noise_and_music_snr_achieved_in_range(kind, cache):
    cfg = AugmentConfig(simulated_rirs=2, cache_dir=cache)
    aug = Augmenter(cfg, SR)
    lo, hi = getattr(cfg, f"{kind}_snr")
    s = speech()
    measured = []
    for seed in range(20):
        out, info = aug.apply(s, np.random.default_rng(seed), kind=kind)
        m = snr_db(s, out)
        assert m == pytest.approx(info["snr_db"][0], abs=0.01)
        measured.append(m)
    assert lo <= min(measured) and max(measured) <= hi
    assert max(measured) - min(measured) > (hi - lo) / 3  # drawn across the range


def test_babble_each_speaker_at_its_snr(speakers, cache):
    aug = Augmenter(AugmentConfig(simulated_rirs=2, cache_dir=cache), SR, babble_source=speakers)
    s = speech()
    for seed in range(8):
        out, info = aug.apply(s, np.random.default_rng(seed), kind="babble", speaker="s0")
        assert 3 <= len(info["snr_db"]) <= 7
        for v, target in zip(info["added"], info["snr_db"]):
            assert 13 <= target <= 20
            assert snr_db(s, s + v) == pytest.approx(target, abs=0.01)
        # Total: powers of independent voices add (Kaldi's scaling, one voice at a time).
        expected = -10 * np.log10(sum(10 ** (-x / 10) for x in info["snr_db"]))
        assert snr_db(s, out) == pytest.approx(expected, abs=1.5)


def test_babble_excludes_own_speaker_when_possible(tmp_path):
    sf.write(tmp_path / "a.wav", np.full(SR, 0.1, np.float32), SR)
    sf.write(tmp_path / "b.wav", np.full(SR, -0.3, np.float32), SR)
    d = write_datadir(tmp_path / "d", {"a": str(tmp_path / "a.wav"), "b": str(tmp_path / "b.wav")}, {"a": "A", "b": "B"})
    aug = Augmenter(AugmentConfig(babble_speakers=(3, 3), prob=1.0, reverb_weight=0, simulated_rirs=0), SR, babble_source=d)
    _, info = aug.apply(np.ones(SR, np.float32), np.random.default_rng(0), kind="babble", speaker="A")
    assert all(np.all(v < 0) for v in info["added"])  # all from speaker B


def test_reverberate_against_direct_convolution():
    rng = np.random.default_rng(1)
    x = speech()[:4000]
    rir = np.concatenate([[0.0, 0.1], [1.0], 0.5 * rng.standard_normal(300) * np.exp(-np.arange(300) / 50)]).astype(np.float32)
    ref = np.convolve(x.astype(np.float64), rir / np.linalg.norm(rir))[2 : 2 + len(x)]
    ref *= np.sqrt(np.mean(x.astype(np.float64) ** 2) / np.mean(ref**2))
    out = reverberate(x, rir)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, ref, atol=1e-5)
    np.testing.assert_allclose(reverberate(x, np.array([0, 0, 2.0], np.float32)), x, atol=1e-6)


def test_synthetic_music_is_tonal():
    x = synthetic_music(SR, SR, np.random.default_rng(0))
    p = np.abs(np.fft.rfft(x)) ** 2
    assert np.sort(p)[-20:].sum() > 0.5 * p.sum()  # energy in a few spectral lines


def test_simulated_rirs_decay_and_cache(cache):
    import pyroomacoustics as pra

    rirs = simulate_rirs(4, SR, seed=3)  # small and medium rooms, RT60 0.2-0.8 s
    for r in rirs:
        rt60 = pra.experimental.measure_rt60(r, fs=SR, decay_db=20)
        assert 0.1 < rt60 < 1.0
    cfg = AugmentConfig(simulated_rirs=4, rir_seed=3, cache_dir=cache)
    first = simulated_rir_bank(cfg, SR)
    assert list(Path(cache).glob("rirs-*.npz"))
    again = simulated_rir_bank(cfg, SR)  # from the cache file
    for a, b, c in zip(first, again, rirs):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_seeded_reproducibility_and_prob(speakers, cache):
    cfg = AugmentConfig(simulated_rirs=3, cache_dir=cache, prob=1.0)
    a = Augmenter(cfg, SR, babble_source=speakers)
    b = Augmenter(cfg, SR, babble_source=speakers)
    s = speech()
    kinds = set()
    for seed in range(16):
        x = a.apply(s, np.random.default_rng(seed))
        y = b.apply(s, np.random.default_rng(seed))
        np.testing.assert_array_equal(x[0], y[0])
        kinds.add(x[1]["kind"])
    assert kinds == {"reverb", "noise", "music", "babble"}
    never = Augmenter(AugmentConfig(prob=0.0, simulated_rirs=0), SR)
    np.testing.assert_array_equal(never(s, np.random.default_rng(0)), s)
    half = Augmenter(AugmentConfig(prob=0.5, simulated_rirs=2, cache_dir=cache), SR)
    clean = sum(half.apply(s[:800], np.random.default_rng(i))[1]["kind"] == "clean" for i in range(200))
    assert 70 < clean < 130
    assert "babble" not in half.kinds()[0]  # no speech source: babble is not drawn


def kaldi_dir(root: Path, name: str, items: dict[str, np.ndarray]) -> Path:
    wav, u2s = {}, {}
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    for utt, x in items.items():
        p = root / "wavs" / f"{name}-{utt}.wav"
        sf.write(p, x, SR)
        wav[utt], u2s[utt] = str(p), utt
    return write_datadir(root / name, wav, u2s)


def test_musan_and_rirs_dirs_are_used(tmp_path):
    t = np.arange(3 * SR) / SR
    musan = tmp_path / "musan"
    kaldi_dir(musan, "noise", {"n1": (0.3 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)})
    kaldi_dir(musan, "music", {"m1": (0.3 * np.sin(2 * np.pi * 2000 * t)).astype(np.float32)})
    kaldi_dir(musan, "speech", {"p1": (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)})
    rirs = kaldi_dir(tmp_path, "rirs", {"r1": np.array([0, 0, 0.5, 0.25], np.float32)})
    aug = Augmenter(AugmentConfig(musan=str(musan), rirs=str(rirs)), SR)
    s = speech()
    for kind, hz in (("noise", 3000), ("music", 2000), ("babble", 1000)):
        out, info = aug.apply(s, np.random.default_rng(0), kind=kind)
        added = np.sum(info["added"], axis=0)
        np.testing.assert_allclose(out - s, added, atol=1e-6)
        assert abs(np.argmax(np.abs(np.fft.rfft(added))) * SR / len(added) - hz) < 2
    out, _ = aug.apply(s, np.random.default_rng(0), kind="reverb")
    ref = reverberate(s, np.array([0, 0, 0.5, 0.25], np.float32))
    np.testing.assert_allclose(out, ref, atol=1e-6)
    # Room types: small and medium rooms only, 50/50, as Kaldi's recipe; large rooms unused.
    wav, u2s = {}, {}
    for room, n, gain in (("largeroom", 1, 9.0), ("mediumroom", 1, 2.0), ("smallroom", 3, 1.0)):
        for i in range(n):
            p = tmp_path / f"{room}{i}.wav"
            sf.write(p, np.array([gain / 10, 0, 0], np.float32), SR)
            wav[f"{room}-{i}"], u2s[f"{room}-{i}"] = str(p), room
    aug = Augmenter(AugmentConfig(rirs=str(write_datadir(tmp_path / "rooms", wav, u2s))), SR)
    picks = [round(float(aug._rir(np.random.default_rng(i))[0]) * 10) for i in range(200)]
    assert set(picks) == {1, 2} and 70 < picks.count(2) < 130
    with pytest.raises(InputError, match="no speech/ data dir"):
        (musan / "speech" / "wav.scp").unlink()
        import shutil

        shutil.rmtree(musan / "speech")
        Augmenter(AugmentConfig(musan=str(musan)), SR)


def test_config_from_dict_and_checks():
    cfg = from_dict(AugmentConfig, {"noise_snr": [0, 5], "musan": None, "prob": 1, "speed_perturb": True}, source="a.yaml")
    assert cfg.noise_snr == (0.0, 5.0) and cfg.prob == 1.0 and cfg.speed_perturb
    with pytest.raises(InputError, match=r"a.yaml: key 'noize_snr': unknown key"):
        from_dict(AugmentConfig, {"noize_snr": [0, 5]}, source="a.yaml")
    with pytest.raises(InputError, match=r"prob must be a fraction"):
        from_dict(AugmentConfig, {"prob": 1.5}, source="a.yaml")
    with pytest.raises(InputError, match=r"noise_snr: low end 9"):
        from_dict(AugmentConfig, {"noise_snr": [9, 3]}, source="a.yaml")
