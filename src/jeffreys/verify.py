"""Score two recordings with a trained model: ``jeffreys verify MODEL a.wav b.wav``.

Each file is read whole (any format :func:`jeffreys.audio.load_audio` reads, resampled to
the model's rate) and embedded with the policy of ``jeffreys extract`` (long files in
chunks). The score is the cosine of the two embeddings after centring with the training
mean stored in the bundle (``meta["mean"]``, written by ``jeffreys extract --store-mean``);
without a stored mean, the plain cosine.

MODEL may also be an ONNX export (``jeffreys export``; needs ``jeffreys[onnx]``): its
metadata holds the same mean, calibration and threshold. The decision follows
:mod:`jeffreys.decision`, the one rule of the API and of ``jeffreys calibrate``: same
speaker when the decision value reaches the threshold, ``value >= threshold``; the
threshold is, in order of precedence:

1. ``--threshold T``: on the LLR when the model holds a calibration (``meta["calibration"] =
   {"a", "b"}``, ``llr = a * score + b``), on the cosine otherwise;
2. ``--p-target p``: the Bayes threshold ``log((1 - p) / p)`` on the calibrated LLR;
3. ``meta["threshold"]``: a cosine threshold stored with the model (``jeffreys calibrate``
   writes the one of the operating point it was asked for);
4. a calibration alone: the Bayes threshold for p = 0.5 (``llr >= 0``).

With none of them the score is printed and the command fails (exit 2) saying how to get
a threshold.

A recording without speech cannot be compared: when the loudest 25 ms frame of a file is
below :data:`jeffreys.audio.SILENCE_DBFS` (digital silence, or near it), ``verify`` says so instead of
deciding. Exit status: 0 same speaker, 1 different speakers, 2 error, 3 no speech in a file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


from .audio import SILENCE_DBFS
from .errors import InputError
from .extract import DEFAULT_MAX_CHUNK_SECONDS, add_policy_arguments


EXIT_NO_SPEECH = 3


def verify(
    model: str | Path,
    a: str | Path,
    b: str | Path,
    *,
    threshold: float | None = None,
    p_target: float | None = None,
    device: str = "cpu",
    max_chunk_seconds: float = DEFAULT_MAX_CHUNK_SECONDS,
    allow_pipes: bool = False,
) -> dict:
    """Score and decision for recordings ``a`` and ``b`` with ``model`` (a bundle, or an ONNX
    export), through :meth:`jeffreys.api.Recognizer.compare`: the API's code.

    Returns ``{"score", "centred", "llr" (None without calibration), "threshold" (None when
    no threshold exists), "rule", "same_speaker" (None without threshold), "speech"}``.
    ``same_speaker`` follows :mod:`jeffreys.decision` (``score >= threshold``). When a file
    has no speech (module docstring) nothing is compared: ``speech`` is False, ``no_speech``
    names the file and its level, and ``score``/``llr``/``same_speaker`` are None.
    """
    from .api import NoSpeech, load

    m = load(model, device=device, max_chunk_seconds=max_chunk_seconds, allow_pipes=allow_pipes)
    rule = m.decision_rule(threshold, p_target)
    try:
        d = m.compare(a, b, threshold=threshold, p_target=p_target)
    except NoSpeech as e:
        return {"score": None, "centred": None, "llr": None, "threshold": rule.threshold, "rule": rule.rule,
                "same_speaker": None, "speech": False, "no_speech": {"file": e.file, "loudest_frame_dbfs": e.level}}
    return {
        "score": d.score,
        "centred": m.mean is not None,
        "llr": d.llr,
        "threshold": d.threshold,
        "rule": d.rule,
        "same_speaker": d.same,
        "speech": True,
    }


def cli_verify(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="jeffreys verify",
        description="Score two recordings (cosine after centring with the model's training mean) and "
        "decide same/different speaker. Exit status: 0 same speaker, 1 different, 2 error, 3 no speech in a file.",
    )
    p.add_argument("model", help="model bundle (model.pt) or ONNX export (model.onnx)")
    p.add_argument("a", help="first recording")
    p.add_argument("b", help="second recording")
    p.add_argument("--threshold", type=float, help="decision threshold on the LLR (calibrated model) or the cosine: "
                   "same speaker when score >= threshold")
    p.add_argument("--p-target", type=float, default=None,
                   help="target prior: decide by the Bayes threshold log((1-p)/p) on the calibrated LLR "
                   "(default: the threshold stored with the model, else p = 0.5 for a calibration alone)")
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
            "give --threshold T, or run `jeffreys calibrate MODEL DATADIR` on labelled recordings of your speakers"
        )
    return 0 if r["same_speaker"] else 1


__all__ = ["EXIT_NO_SPEECH", "cli_verify", "verify"]
