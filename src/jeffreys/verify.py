"""Score two recordings with a trained model: ``jeffreys verify MODEL a.wav b.wav``.

Each file is read whole (any format :func:`jeffreys.audio.load_audio` reads, resampled to
the model's rate) and embedded with the policy of ``jeffreys extract`` (long files in
chunks). The score is the cosine of the two embeddings after centring with the training
mean stored in the bundle (``meta["mean"]``, written by ``jeffreys extract --store-mean``);
without a stored mean, the plain cosine.

The decision, in order of precedence:

1. ``--threshold T``: same speaker when the decision score reaches T, ``score >= T`` (the
   LLR when the bundle holds a calibration, the cosine otherwise), the rule of
   :mod:`jeffreys.metrics`;
2. a calibration in the bundle (``meta["calibration"] = {"a", "b"}``): the score is mapped to
   a natural-log likelihood ratio ``llr = a * score + b`` and compared with the Bayes
   threshold ``log((1 - p) / p)`` for a target prior p (``--p-target``, default 0.5: 0);
3. ``meta["threshold"]`` (a cosine threshold, e.g. the EER point of a development set).

With none of them the score is printed and the command fails (exit 2) saying how to give
a threshold.

A recording without speech cannot be compared: when the loudest 25 ms frame of a file is
below :data:`SILENCE_DBFS` (digital silence, or near it), ``verify`` says so instead of
deciding. Exit status: 0 same speaker, 1 different speakers, 2 error, 3 no speech in a file.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from numbers import Real
from pathlib import Path

import numpy as np

from .errors import InputError, finite
from .extract import DEFAULT_MAX_CHUNK_SECONDS, add_policy_arguments, embed_waves


SILENCE_DBFS = -60.0  # loudest 25 ms frame below this: no speech to compare
EXIT_NO_SPEECH = 3


def loudest_frame_dbfs(wave: np.ndarray, sample_rate: int, frame_seconds: float = 0.025) -> float:
    """RMS level (dB re full scale 1.0) of the loudest non-overlapping frame of ``wave``;
    ``-inf`` for digital silence."""
    n = max(1, int(frame_seconds * sample_rate))
    x = np.asarray(wave, dtype=np.float64)
    if len(x) < n:
        x = np.pad(x, (0, n - len(x)))
    frames = x[: len(x) // n * n].reshape(-1, n)
    peak = float(np.max(np.mean(frames * frames, axis=1)))
    return 10 * math.log10(peak) if peak > 0 else -math.inf


def _number(value, key: str, path) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise InputError(f"{path}: meta[{key!r}] must be a finite number, got {value!r}")
    return float(value)


def _decision_rule(meta: dict, path, threshold: float | None, p_target: float) -> dict:
    """How to decide: {'calibration': (a, b) | None, 'threshold': float | None, 'rule': str}."""
    if not 0 < p_target < 1:
        raise InputError(f"p_target must lie strictly between 0 and 1, got {p_target}")
    if threshold is not None:
        threshold = finite(threshold, "threshold")
    cal = meta.get("calibration")
    if cal is not None:
        if not isinstance(cal, dict) or "a" not in cal or "b" not in cal:
            raise InputError(f"{path}: meta['calibration'] must be {{'a': ..., 'b': ...}}, got {cal!r}")
        cal = (_number(cal["a"], "calibration.a", path), _number(cal["b"], "calibration.b", path))
    if threshold is not None:
        rule = "given threshold on the " + ("calibrated LLR" if cal else "cosine")
    elif cal is not None:
        threshold = math.log((1 - p_target) / p_target)
        rule = f"Bayes threshold on the calibrated LLR for p_target {p_target:g}"
    elif meta.get("threshold") is not None:
        threshold = _number(meta["threshold"], "threshold", path)
        rule = "cosine threshold stored with the model"
    else:
        rule = "none"
    return {"calibration": cal, "threshold": threshold, "rule": rule}


def verify(
    model: str | Path,
    a: str | Path,
    b: str | Path,
    *,
    threshold: float | None = None,
    p_target: float = 0.5,
    device: str = "cpu",
    max_chunk_seconds: float = DEFAULT_MAX_CHUNK_SECONDS,
    allow_pipes: bool = False,
) -> dict:
    """Score and decision for recordings ``a`` and ``b`` with the bundle ``model``.

    Returns ``{"score", "centred", "llr" (None without calibration), "threshold" (None when
    no threshold exists), "rule", "same_speaker" (None without threshold), "speech"}``.
    ``same_speaker`` is ``score >= threshold``. When a file has no speech (module docstring)
    nothing is compared: ``speech`` is False, ``no_speech`` names the file and its level,
    and ``score``/``llr``/``same_speaker`` are None.
    """
    from .audio import load_audio
    from .models import load_bundle
    from .scoring import cosine_scores

    bundle = load_bundle(model)
    rule = _decision_rule(bundle.meta, model, threshold, p_target)
    sr = bundle.model.fbank.sample_rate
    waves = [load_audio(p, sr, allow_pipes=allow_pipes) for p in (a, b)]
    for p, w in zip((a, b), waves):
        level = loudest_frame_dbfs(w, sr)
        if level < SILENCE_DBFS:
            return {"score": None, "centred": None, "llr": None, "threshold": rule["threshold"], "rule": rule["rule"],
                    "same_speaker": None, "speech": False,
                    "no_speech": {"file": str(p), "loudest_frame_dbfs": level if math.isfinite(level) else None}}
    emb = embed_waves(bundle.model, waves, [str(a), str(b)], device=device, max_chunk_seconds=max_chunk_seconds)
    mean = bundle.meta.get("mean")
    if mean is not None:
        mean = np.asarray(mean, dtype=np.float64)
        if mean.shape != (emb.shape[1],) or not np.isfinite(mean).all():
            raise InputError(f"{model}: meta['mean'] must be {emb.shape[1]} finite numbers, got shape {mean.shape}")
    score = float(cosine_scores((["a", "b"], emb), None, [("a", "b")], mean=mean)[0])
    llr = None
    if rule["calibration"] is not None:
        from .scoring import LinearCalibration

        llr = float(LinearCalibration(*rule["calibration"]).apply(score))
    decided = llr if llr is not None else score
    t = rule["threshold"]
    return {
        "score": score,
        "centred": mean is not None,
        "llr": llr,
        "threshold": t,
        "rule": rule["rule"],
        "same_speaker": None if t is None else bool(decided >= t),
        "speech": True,
    }


def cli_verify(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="jeffreys verify",
        description="Score two recordings (cosine after centring with the model's training mean) and "
        "decide same/different speaker. Exit status: 0 same speaker, 1 different, 2 error, 3 no speech in a file.",
    )
    p.add_argument("model", help="model bundle (model.pt)")
    p.add_argument("a", help="first recording")
    p.add_argument("b", help="second recording")
    p.add_argument("--threshold", type=float, help="decision threshold on the LLR (calibrated model) or the cosine: "
                   "same speaker when score >= threshold")
    p.add_argument("--p-target", type=float, default=0.5, help="target prior for the Bayes threshold of a calibrated model (default 0.5)")
    add_policy_arguments(p, batching=False)
    p.add_argument("--allow-pipes", action="store_true", help="accept `cmd |` arguments (run without a shell)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = p.parse_args(argv)
    r = verify(
        args.model,
        args.a,
        args.b,
        threshold=args.threshold,
        p_target=args.p_target,
        device=args.device,
        max_chunk_seconds=args.max_chunk_seconds,
        allow_pipes=args.allow_pipes,
    )
    if not r["speech"]:
        ns = r["no_speech"]
        if args.json:
            print(json.dumps(r))
        level = "digital silence" if ns["loudest_frame_dbfs"] is None else f"loudest 25 ms frame at {ns['loudest_frame_dbfs']:.1f} dBFS"
        print(f"jeffreys verify: no speech in {ns['file']} ({level}, below {SILENCE_DBFS:g} dBFS); nothing to compare",
              file=sys.stderr)
        return EXIT_NO_SPEECH
    if args.json:
        print(json.dumps(r))
    else:
        print(f"score {r['score']:.6f} (cosine{', centred by the training mean' if r['centred'] else ', not centred: no mean stored'})")
        if r["llr"] is not None:
            print(f"llr {r['llr']:.4f} (calibrated, natural log)")
        if r["threshold"] is not None:
            print(f"threshold {r['threshold']:.4f} ({r['rule']})")
            print(f"decision: {'same speaker' if r['same_speaker'] else 'different speakers'}")
    if r["threshold"] is None:
        raise InputError(
            f"{args.model}: no decision threshold: its meta has neither 'calibration' nor 'threshold'; "
            "give --threshold T (or store one with update_bundle_meta)"
        )
    return 0 if r["same_speaker"] else 1


__all__ = ["EXIT_NO_SPEECH", "SILENCE_DBFS", "cli_verify", "loudest_frame_dbfs", "verify"]
