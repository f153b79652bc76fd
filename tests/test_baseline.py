"""`jeffreys.baseline`: MFCC statistics against kaldi-native-fbank + an explicit DCT matrix,
the LDA against scikit-learn's, and the back-ends' definitions."""

import numpy as np
import pytest

from jeffreys.baseline import MfccBaseline, cosine, lda, mfcc_stats

knf = pytest.importorskip("kaldi_native_fbank")


def knf_logmel(wave: np.ndarray) -> np.ndarray:
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 40
    f = knf.OnlineFbank(opts)
    f.accept_waveform(16000, (wave * 32768.0).astype(np.float32).tolist())
    f.input_finished()
    return np.stack([f.get_frame(i) for i in range(f.num_frames_ready)]).astype(np.float64)


def test_mfcc_stats_matches_an_independent_definition():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 180 * t) * (t > 0.4) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    logmel = knf_logmel(wave)
    n = np.arange(40)
    dct = np.sqrt(2 / 40) * np.cos(np.pi * (n[None, :] + 0.5) * np.arange(21)[:, None] / 40)
    dct[0] /= np.sqrt(2)  # orthonormal DCT-II, written out
    ceps = logmel @ dct.T
    c0 = np.sort(ceps[:, 0])
    # numpy's default percentile: linear interpolation between order statistics
    pos = 0.3 * (len(c0) - 1)
    thr = c0[int(np.floor(pos))] + (pos - np.floor(pos)) * (c0[int(np.ceil(pos))] - c0[int(np.floor(pos))])
    c = ceps[ceps[:, 0] >= thr, 1:]
    ref = np.concatenate([c.mean(0), np.sqrt(((c - c.mean(0)) ** 2).mean(0))])
    np.testing.assert_allclose(mfcc_stats(wave), ref, atol=1e-4)  # float32 fbank vs float32 knf: ~1e-5


def test_lda_spans_sklearns_discriminant_subspace():
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    rng = np.random.default_rng(1)
    centres = rng.normal(0, 3, (6, 8))
    x = np.concatenate([c + rng.normal(0, 1, (40, 8)) * np.linspace(0.5, 2, 8) for c in centres])
    spk = [str(k) for k in np.repeat(np.arange(6), 40)]
    ours = lda(x, spk, 3)
    ref = LinearDiscriminantAnalysis(solver="eigen", n_components=3).fit(x, spk).scalings_[:, :3]
    # same subspace: projecting ours onto ref's span loses nothing
    q, _ = np.linalg.qr(ref)
    np.testing.assert_allclose(q @ (q.T @ ours), ours, atol=1e-6 * np.abs(ours).max())


def test_backends():
    rng = np.random.default_rng(2)
    x = rng.normal(3, [1, 2, 4], (50, 3))
    plain = MfccBaseline.fit(x)
    z = plain.embed(x)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-6)
    spk = [str(k) for k in np.repeat(np.arange(5), 10)]
    with_lda = MfccBaseline.fit(x, spk, 2)
    np.testing.assert_allclose(with_lda.embed(x).mean(0), 0, atol=1e-10)
    with pytest.raises(ValueError, match="training speakers"):
        MfccBaseline.fit(x, None, 2)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    ref = [float(u @ v / np.linalg.norm(u) / np.linalg.norm(v)) for u, v in zip(a, b)]
    np.testing.assert_allclose(cosine(a, b), ref)


def test_a_recording_too_short_for_a_frame_is_named(tmp_path):
    import soundfile as sf

    from jeffreys.baseline import datadir_stats
    from jeffreys.data.datadir import write_datadir
    from jeffreys.errors import InputError

    wav = {}
    for i, n in enumerate([16000, 120]):
        sf.write(tmp_path / f"u{i}.wav", np.random.default_rng(i).normal(0, 0.1, n), 16000)
        wav[f"s{i}-u{i}"] = str(tmp_path / f"u{i}.wav")
    d = write_datadir(tmp_path / "d", wav, {u: u.split("-")[0] for u in wav})
    with pytest.raises(InputError, match=r"utterance s1-u1: 120 samples, shorter than one 25 ms frame") as e:
        datadir_stats(d)
    assert "\n" not in str(e.value)
