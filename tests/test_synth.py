"""The embedded synthetic corpus (jeffreys.corpora.synth): layout, sizes, trials,
determinism, distinct speakers, bad input. Tiny sizes: each build takes a few seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import welch

from jeffreys.acoustics import coloured_noise
from jeffreys.cli import main as cli_main
from jeffreys.corpora import synth
from jeffreys.data.datadir import read_datadir
from jeffreys.data.trials import read_trials
from jeffreys.errors import InputError

TINY = dict(train_speakers=3, utts_per_speaker=2, eval_speakers=2, dev_speakers=2, eval_utts_per_speaker=3,
            min_dur=1.0, max_dur=1.5, train_languages=("en", "de"), other_languages=("it",))  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return synth.build_synth_corpus(tmp_path_factory.mktemp("synth") / "c", seed=3, jobs=2, **TINY)


def test_layout_sizes_and_validation(corpus):
    info = json.loads((corpus / "info.json").read_text())
    assert info["seed"] == 3 and set(info["splits"]) == {"train", "dev", *synth.EVAL_SPLITS}
    assert "dev" not in synth.EVAL_SPLITS and (corpus / "dev" / "trials").is_file()
    for name, split in info["splits"].items():
        dd = read_datadir(corpus / name)  # Kaldi validation, files exist
        n_spk = {"train": TINY["train_speakers"], "dev": TINY["dev_speakers"]}.get(name, TINY["eval_speakers"])
        n_utt = TINY["utts_per_speaker"] if name == "train" else TINY["eval_utts_per_speaker"]
        assert len(dd.speakers) == split["speakers"] == n_spk
        assert all(len(u) == n_utt for u in dd.spk2utt.values())
        langs = TINY["other_languages"] if name == "other_lang" else TINY["train_languages"]
        utt2lang = dict(line.split() for line in (corpus / name / "utt2lang").read_text().splitlines())
        assert set(utt2lang.values()) <= set(langs) and set(utt2lang) == set(dd.utt2spk)
        genders = dict(line.split() for line in (corpus / name / "spk2gender").read_text().splitlines())
        assert set(genders) == set(dd.speakers) and set(genders.values()) <= {"m", "f"}
        for utt in dd.utts:
            wav = dd.wav[utt]
            assert wav.startswith(str(corpus)) and Path(wav).is_relative_to(corpus / "wav" / name)
            meta = sf.info(wav)
            assert meta.samplerate == (8000 if name == "telephone" else 16000) == split["sample_rate"]
            assert meta.channels == 1 and meta.subtype == "PCM_16"
            assert meta.frames / meta.samplerate == pytest.approx(dd.utt2dur[utt], abs=2e-3)
            assert TINY["min_dur"] - 1e-3 <= dd.utt2dur[utt] <= TINY["max_dur"] + 1e-3
    speakers = [s for split in synth.SPLITS for s in read_datadir(corpus / split.name).speakers]
    assert len(set(speakers)) == len(speakers)  # held-out speakers are disjoint from training


def test_audio_is_speech_like(corpus):
    dd = read_datadir(corpus / "in_domain")
    x, sr = sf.read(dd.wav[dd.utts[0]])
    assert np.abs(x).max() < 1.0 and np.sqrt(np.mean(x**2)) > 1e-3
    # speech energy concentrates below 4 kHz; not white noise
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / sr)
    assert spec[(f > 100) & (f < 4000)].sum() > 0.8 * spec.sum()


def test_trials(corpus):
    for name in synth.EVAL_SPLITS:
        dd = read_datadir(corpus / name)
        tr = read_trials(corpus / name / "trials")
        pairs = list(zip(tr.enroll, tr.test))
        assert len(set(pairs)) == len(pairs)
        for (e, t), y in zip(pairs, tr.label):
            assert e in dd.utt2spk and t in dd.utt2spk and e != t
            assert (dd.utt2spk[e] == dd.utt2spk[t]) == bool(y)
        # every same-speaker pair is a target; non-targets: 4 x targets (default ratio) or
        # all cross-speaker pairs if there are fewer
        n = len(dd.utts)
        n_tar = sum(len(u) * (len(u) - 1) // 2 for u in dd.spk2utt.values())
        assert tr.n_target == n_tar and len(tr) - n_tar == min(round(4.0 * n_tar), n * (n - 1) // 2 - n_tar)
        assert 0 < tr.n_target < len(tr)


def test_make_trials_prefers_same_gender_and_language():
    spk = {f"s{i}": synth.Speaker(f"s{i}", "x", "mf"[i % 2], "en" if i < 4 else "fr") for i in range(8)}
    spk2utt = {s: [f"{s}-{j}" for j in range(3)] for s in spk}
    rows, stats = synth.make_trials(spk2utt, spk, 1.0, np.random.default_rng(0))
    assert stats["targets"] == 8 * 3 and stats["nontargets"] == 24
    # same gender and language: {s0,s2}, {s1,s3}, {s4,s6}, {s5,s7} -> 4 speaker pairs x 9 = 36 >= 24
    assert stats["nontargets_same_gender_language"] == 24
    for e, t, y in rows:
        a, b = spk[e.split("-")[0]], spk[t.split("-")[0]]
        assert y == (a is b)
        if not y:
            assert (a.gender, a.language) == (b.gender, b.language)
    # more non-targets than hard pairs: the rest come from other pairs, no duplicates
    rows, stats = synth.make_trials(spk2utt, spk, 3.0, np.random.default_rng(0))
    assert stats["nontargets"] == 72 and stats["nontargets_same_gender_language"] == 36
    assert len({(e, t) for e, t, _ in rows}) == len(rows)


def test_deterministic_whatever_the_workers(corpus, tmp_path):
    same = synth.build_synth_corpus(tmp_path / "same", seed=3, jobs=1, **TINY)
    assert synth.corpus_digest(same) == synth.corpus_digest(corpus)
    other = synth.build_synth_corpus(tmp_path / "other", seed=4, jobs=2, **TINY)
    assert synth.corpus_digest(other) != synth.corpus_digest(corpus)
    a = sf.read(read_datadir(corpus / "train").wav["trn0001-001"])[0]
    b = sf.read(read_datadir(other / "train").wav["trn0001-001"])[0]
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_speakers_have_distinct_voices():
    voices = [s.voice for s in synth.plan_speakers(synth.SPLITS[0], 300, synth.TRAIN_LANGUAGES, 0)]
    keys = {(tuple(v["pitch"]), tuple(tuple(f) for f in v["formant"])) for v in voices}
    assert len(keys) == 300
    pitch = {g: np.array([v["pitch"][0] for v in voices if v["gender"] == g]) for g in ("male", "female")}
    assert 90 < np.median(pitch["male"]) < 120 < 170 < np.median(pitch["female"]) < 220
    f2 = {g: np.median([v["formant"][2][1] for v in voices if v["gender"] == g]) for g in ("male", "female")}
    assert f2["female"] > 1.08 * f2["male"]  # shorter vocal tract
    body = synth.voice_variant(voices[0])
    assert body.startswith("gender ") and "\nformant 1 " in body and "\npitch " in body


def _f0(x: np.ndarray, sr: int) -> float:
    """Median autocorrelation pitch (60-400 Hz) of the voiced 40 ms frames."""
    n, out = int(0.04 * sr), []
    lo, hi = sr // 400, sr // 60
    for i in range(0, x.size - n, n):
        fr = x[i : i + n] - x[i : i + n].mean()
        if np.sqrt(np.mean(fr**2)) < 0.05 * np.abs(x).max():
            continue
        ac = np.correlate(fr, fr, "full")[n - 1 :]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5 * ac[0]:
            out.append(sr / lag)
    return float(np.median(out))


def test_voice_variant_controls_the_audio():
    text = "A warm cup of tea is the best thing on a cold evening."
    low = dict(gender="male", pitch=[90, 110])
    high = dict(gender="male", pitch=[180, 220])
    x_low, sr = synth.say(text, "en", low)
    x_high, _ = synth.say(text, "en", high)
    x_low2, _ = synth.say(text, "en", low)
    assert sr == 22050 and np.array_equal(x_low, x_low2)  # fresh process: reproducible
    ratio = _f0(x_high.astype(float), sr) / _f0(x_low.astype(float), sr)
    assert 1.6 < ratio < 2.4  # the variant's pitch line is what espeak-ng used
    other = synth.draw_voice("f", np.random.default_rng(1))
    x_other, _ = synth.say(text, "en", other)
    assert x_other.shape != x_low.shape or not np.array_equal(x_other, x_low)


def test_variation_defaults_are_the_released_corpus(corpus, tmp_path):
    same = synth.build_synth_corpus(tmp_path / "same", seed=3, jobs=1, voice_spread=1.0, speaker_eq_db=0.0,
                                    utterance_eq_db=4.0, **TINY)  # fmt: skip
    assert synth.corpus_digest(same) == synth.corpus_digest(corpus)
    assert not {"voice_spread", "speaker_eq_db", "utterance_eq_db"} & set(json.loads((corpus / "info.json").read_text())["sizes"])


def _band_db(x: np.ndarray, sr: int = 16000) -> np.ndarray:
    """Log power in 16 bands of 250-6000 Hz (long-term spectrum)."""
    f, p = welch(x, sr, nperseg=512)
    edges = np.geomspace(250, 6000, 17)
    return np.array([10 * np.log10(p[(f >= a) & (f < b)].mean()) for a, b in zip(edges[:-1], edges[1:])])


def test_speaker_eq_is_one_response_per_speaker(corpus, tmp_path):
    # Same seed, so the same speech and noise draws: the log-spectrum difference of each
    # utterance to its uncoloured twin is the speaker's response, the same for all its
    # utterances and different between speakers.
    sizes = {**TINY, "utts_per_speaker": 3, "utterance_eq_db": 0.0}
    plain = synth.build_synth_corpus(tmp_path / "plain", seed=3, jobs=2, **sizes)
    eq = synth.build_synth_corpus(tmp_path / "eq", seed=3, jobs=2, speaker_eq_db=6.0, **sizes)
    assert json.loads((eq / "info.json").read_text())["sizes"]["speaker_eq_db"] == 6.0
    a, b = read_datadir(plain / "train"), read_datadir(eq / "train")
    resp = {u: _band_db(sf.read(b.wav[u])[0]) - _band_db(sf.read(a.wav[u])[0]) for u in a.utts}
    resp = {u: r - r.mean() for u, r in resp.items()}  # the level is set afterwards
    within = [np.abs(resp[u] - resp[v]).mean() for s, us in a.spk2utt.items() for i, u in enumerate(us) for v in us[i + 1 :]]
    between = [np.abs(resp[u] - resp[v]).mean() for u in a.utts for v in a.utts if a.utt2spk[u] < a.utt2spk[v]]
    assert max(within) < 1.0 < 2.0 < min(between)


def test_voice_spread_scales_every_attribute():
    def draws(k):
        return [synth.draw_voice("m", np.random.default_rng(i), k) for i in range(400)]

    one, half, double = draws(1.0), draws(0.5), draws(2.0)
    assert one == [synth.draw_voice("m", np.random.default_rng(i)) for i in range(400)]
    for get in (lambda v: v["formant"][1][1], lambda v: np.log(v["pitch"][0]), lambda v: v["tone"][1], lambda v: v["speed"]):
        sd = {k: np.std([get(v) for v in d]) for k, d in (("half", half), ("one", one), ("double", double))}
        assert 0.35 < sd["half"] / sd["one"] < 0.65 and 1.6 < sd["double"] / sd["one"] < 2.4


def test_bad_arguments(tmp_path, corpus):
    with pytest.raises(InputError, match="unknown language 'xx'"):
        synth.build_synth_corpus(tmp_path / "a", **{**TINY, "train_languages": ("en", "xx")})
    with pytest.raises(InputError, match="both a training and an other language"):
        synth.build_synth_corpus(tmp_path / "a", **{**TINY, "other_languages": ("en",)})
    with pytest.raises(InputError, match="eval-speakers"):
        synth.build_synth_corpus(tmp_path / "a", **{**TINY, "eval_speakers": 1})
    with pytest.raises(InputError, match="durations"):
        synth.build_synth_corpus(tmp_path / "a", **{**TINY, "min_dur": 3.0, "max_dur": 2.0})
    with pytest.raises(InputError, match="--voice-spread must lie in"):
        synth.build_synth_corpus(tmp_path / "a", **{**TINY, "voice_spread": -1.0})
    with pytest.raises(InputError, match="--speaker-eq-db and --utterance-eq-db"):
        synth.build_synth_corpus(tmp_path / "a", **{**TINY, "speaker_eq_db": 30.0})
    with pytest.raises(InputError, match="unknown size option 'speakers'"):
        synth.build_synth_corpus(tmp_path / "a", speakers=3)
    with pytest.raises(InputError, match="already exists"):
        synth.build_synth_corpus(corpus, **TINY)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create"):
        synth.build_synth_corpus(blocker / "sub", **TINY)
    assert not (tmp_path / "a").exists()


def test_cli_errors_are_one_line(tmp_path, capsys, corpus):
    assert cli_main(["prepare", "synth", str(corpus)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already exists" in err and err.startswith("jeffreys prepare: error:")
    assert cli_main(["prepare", "synth", str(tmp_path / "x"), "--train-languages", "en,zz"]) == 2
    assert "unknown language 'zz'" in capsys.readouterr().err


# ---------------------------------------------------------------- channel building blocks


def test_eq_is_linear_phase_and_telephone_is_band_limited():
    from jeffreys.corpora import synth_channel as ch

    rng = np.random.default_rng(1)
    x = np.zeros(4001)
    x[2000] = 1.0
    y = ch.random_eq(x, 16000, rng, spread_db=4.0)
    assert y.size == x.size and int(np.argmax(np.abs(y))) == 2000  # delay compensated
    noise = coloured_noise(16000, rng, "white")
    tel = ch.telephone(noise, 16000)
    assert tel.size == 8000
    spec = np.abs(np.fft.rfft(tel)) ** 2
    f = np.fft.rfftfreq(tel.size, 1 / 8000)
    assert spec[(f > 200) & (f < 3700)].sum() > 0.98 * spec.sum()  # 6th-order skirts
    # 8-bit mu-law: relative error of a loud sample within half a quantisation step
    v = np.linspace(-0.9, 0.9, 1001)
    assert np.max(np.abs(ch.mu_law(v) - v) / np.maximum(np.abs(v), 0.05)) < 0.05


def test_fit_duration_is_exact():
    from jeffreys.corpora import synth_channel as ch

    rng = np.random.default_rng(2)
    for speech_s, want in ((5.0, 2.5), (1.0, 3.0)):
        y = ch.fit_duration(np.ones(int(speech_s * 16000)), 16000, want, rng)
        assert y.size == round(want * 16000) and y[0] == 0 and y[-1] == 0


def test_the_dev_split_leaves_the_other_splits_as_they_were(tmp_path, corpus):
    """Each split's speakers are seeded by its index and dev comes last: another number of dev
    speakers changes nothing else, byte for byte."""
    other = synth.build_synth_corpus(tmp_path / "c", seed=3, jobs=2, **{**TINY, "dev_speakers": 3})
    for name in ("train", *synth.EVAL_SPLITS):
        for f in sorted((corpus / name).iterdir()):
            if f.is_file() and f.name != "wav.scp":  # wav.scp holds absolute paths
                assert f.read_bytes() == (other / name / f.name).read_bytes(), f
        wavs = sorted((corpus / "wav" / name).rglob("*.wav")) if (corpus / "wav" / name).is_dir() else []
        for w in wavs:
            assert w.read_bytes() == (other / w.relative_to(corpus)).read_bytes(), w
    assert len(read_datadir(other / "dev").speakers) == 3
