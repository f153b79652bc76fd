"""`jeffreys verify`: score = centred cosine of the two embeddings, decisions, exit codes, errors.

The reference score is computed here from the model called on each file alone and the
cosine written out in float64.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from jeffreys.cli import main
from jeffreys.models import save_bundle, update_bundle_meta
from jeffreys.verify import verify
from test_extract import SR, make_wave, tiny_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    paths = []
    for i, n in enumerate([24000, 17000]):
        p = root / f"f{i}.wav"
        sf.write(p, make_wave(n, i), SR, subtype="FLOAT")
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def model():
    return tiny_model(1)


@pytest.fixture
def bundle(tmp_path, model):
    return save_bundle(tmp_path / "model.pt", model, None, [])


def embeddings(model, files):
    emb = []
    for p in files:
        w = torch.from_numpy(sf.read(p, dtype="float32")[0])[None]
        with torch.no_grad():
            emb.append(model(w).double().numpy()[0])
    return emb


def reference(model, files, mean=None):
    a, b = embeddings(model, files)
    if mean is not None:
        a, b = a - mean, b - mean
    return float(sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b)))


def run(capsys, *argv):
    rc = main(["verify", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err.strip()


def test_without_threshold_prints_the_score_then_fails(bundle, files, model, capsys):
    rc, out, err = run(capsys, bundle, *files)
    assert rc == 2
    score = float(out.split()[1])
    assert score == pytest.approx(reference(model, files), abs=1e-5)
    assert "not centred" in out
    assert err.startswith("jeffreys verify: error: ") and "--threshold" in err and "\n" not in err


def test_given_threshold_decides_and_sets_the_exit_code(bundle, files, model, capsys):
    s = reference(model, files)
    rc, out, _ = run(capsys, bundle, *files, "--threshold", s - 0.01)
    assert rc == 0 and "decision: same speaker" in out
    rc, out, _ = run(capsys, bundle, *files, "--threshold", s + 0.01)
    assert rc == 1 and "decision: different speakers" in out


def test_stored_mean_and_threshold(bundle, files, model, capsys):
    # A random model's embeddings share a large common part; a mean near it matters.
    mean = 0.9 * np.mean(embeddings(model, files), axis=0) + np.random.default_rng(0).normal(size=8) * 0.01
    s = reference(model, files, mean)
    assert abs(s - reference(model, files)) > 0.05
    update_bundle_meta(bundle, mean=mean.tolist(), threshold=s - 0.02)
    rc, out, _ = run(capsys, bundle, *files)
    assert rc == 0 and "centred by the training mean" in out and "threshold stored" in out
    assert float(out.split()[1]) == pytest.approx(s, abs=1e-5)
    update_bundle_meta(bundle, threshold=s + 0.02)
    assert run(capsys, bundle, *files)[0] == 1


def test_calibration_gives_an_llr_and_the_bayes_threshold(bundle, files, model, capsys):
    s = reference(model, files)
    a, b = 10.0, -10.0 * s + 2.0  # llr = 2 at this score
    update_bundle_meta(bundle, calibration={"a": a, "b": b})  # a calibration alone: llr >= 0 (p_target 0.5)
    rc, out, _ = run(capsys, bundle, *files, "--json")
    r = json.loads(out)
    assert rc == 0 and r["llr"] == pytest.approx(2.0, abs=1e-4) and r["threshold"] == 0.0 and r["same_speaker"]
    # A stored threshold (on the score: what `jeffreys calibrate` writes) is the operating point.
    update_bundle_meta(bundle, threshold=s + 1e-3)
    r = verify(bundle, *files)
    assert r["threshold"] == s + 1e-3 and r["same_speaker"] is False and r["llr"] == pytest.approx(2.0, abs=1e-4)
    update_bundle_meta(bundle, threshold=s - 1e-3)
    assert verify(bundle, *files)["same_speaker"] is True
    # p_target 0.1: Bayes threshold log(9) = 2.197 > 2: different speakers.
    r = verify(bundle, *files, p_target=0.1)
    assert r["threshold"] == pytest.approx(math.log(9)) and r["same_speaker"] is False
    assert run(capsys, bundle, *files, "--p-target", "0.1")[0] == 1
    # A given threshold applies to the LLR.
    assert run(capsys, bundle, *files, "--threshold", "1.9")[0] == 0


@pytest.mark.parametrize(
    "meta,match",
    [
        ({"threshold": "high"}, "meta['threshold'] must be a finite number"),
        ({"calibration": {"a": 1.0}}, "meta['calibration'] must be"),
        ({"mean": [0.0, 1.0], "threshold": 0.0}, "meta['mean'] must be 8 finite numbers"),
    ],
)
def test_bad_meta_is_a_one_line_error(bundle, files, capsys, meta, match):
    update_bundle_meta(bundle, **meta)
    rc, out, err = run(capsys, bundle, *files)
    assert rc == 2 and match in err and str(bundle) in err and "\n" not in err


def test_bad_inputs(bundle, files, tmp_path, capsys):
    rc, _, err = run(capsys, bundle, files[0], tmp_path / "missing.wav", "--threshold", "0")
    assert rc == 2 and "missing.wav" in err and "\n" not in err
    rc, _, err = run(capsys, tmp_path / "none.pt", *files)
    assert rc == 2 and "none.pt" in err
    rc, _, err = run(capsys, bundle, *files, "--p-target", "1")
    assert rc == 2 and "p_target" in err


def test_a_score_equal_to_the_threshold_is_same_speaker(bundle, files):
    s = verify(bundle, *files, threshold=0.0)["score"]
    assert verify(bundle, *files, threshold=s)["same_speaker"] is True  # score >= threshold, as in metrics
    assert verify(bundle, *files, threshold=math.nextafter(s, math.inf))["same_speaker"] is False


def test_silence_is_no_speech_with_its_own_exit_status(bundle, files, tmp_path, capsys):
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.full(16000, 1e-4, np.float32), SR, subtype="FLOAT")  # -80 dBFS: below the -60 dBFS floor
    r = verify(bundle, files[0], quiet, threshold=0.0)
    assert r["speech"] is False and r["same_speaker"] is None and r["no_speech"]["file"] == str(quiet)
    assert r["no_speech"]["loudest_frame_dbfs"] == pytest.approx(-80.0, abs=0.01)
    rc, out, err = run(capsys, bundle, files[0], quiet, "--threshold", 0)
    assert rc == 3 and out == "" and err.startswith("jeffreys verify: no speech in ") and "\n" not in err
    from jeffreys.audio import loudest_frame_dbfs

    x = np.zeros(16000)
    x[8000:8400] = 0.5  # one loud 25 ms frame: RMS 0.5, -6.02 dBFS
    assert loudest_frame_dbfs(x, SR) == pytest.approx(20 * math.log10(0.5), abs=1e-9)
    assert loudest_frame_dbfs(np.zeros(10), SR) == -math.inf
