"""ONNX export of a trained extractor: ``jeffreys export MODEL --onnx OUT.onnx``.

Input, by default the waveform: ``waves``, float32 ``[batch, samples]`` in [-1, 1] at the
model's sample rate (mono), giving ``embeddings`` ``[batch, embed_dim]``; batch and samples
are dynamic axes (at least one 25 ms frame). The Kaldi filterbank front-end is inside the
graph, so a deployment needs nothing but onnxruntime and an audio reader. Every row is
embedded over all its samples: rows of one batch must have the same length (nothing is
padded or masked; batch utterances of equal length as ``jeffreys extract`` does, or run
them one at a time).

``--input features`` exports the ResNet alone: ``feats``, float32 ``[batch, frames,
num_mel_bins]``, the log mel filterbanks of :class:`jeffreys.features.Fbank` normalised as
the model's ``feature_norm`` says (``SpeakerModel.features``), for pipelines that compute or cache features themselves.

Energy VAD (a model with ``vad: energy``). The waveform graph contains it: features of all
frames, normalised, then only the voiced frames (or all, when fewer than
``jeffreys.features.VAD_MIN_FRAMES`` are) go on to the ResNet. That selection gives each
utterance its own length, so the graph takes one utterance per run: its input is ``[1,
samples]``, and :func:`jeffreys.load` runs the rows of a batch one by one. A features
export leaves the VAD to the caller, as the normalisation: feed it each utterance's
normalised features of the kept frames only (``jeffreys.features``: ``Fbank(...,
energy=True)``, ``EnergyVad`` on the log energies, ``keep_frames``), as
:func:`jeffreys.load` does with the ``jeffreys.vad*`` metadata.

The export uses torch's dynamo exporter (``torch.export`` + onnxscript): the TorchScript
exporter cannot express the front-end's framing (``unfold``) nor its complex ``rfft``.

The file carries metadata (``metadata_props``): ``jeffreys.input``, ``sample_rate``,
``num_mel_bins``, ``embed_dim``, ``frame_length``/``frame_shift`` (samples), the front-end keys of
:class:`jeffreys.features.FrontEnd` (``feature_norm``, ``cmn_window``, ``vad``, ``vad_energy_threshold``,
``vad_energy_mean_scale``, ``vad_frames_context``, ``vad_proportion_threshold``; a file without
one was exported before it existed and has its default), the bundle's
``meta`` as JSON (``mean``, ``threshold``, ``calibration``) and ``jeffreys.decision``: the
decision rule that meta implies (:mod:`jeffreys.decision`: the score, the calibration, the
threshold and whether it applies to the score or the LLR), so that a deployment centres and
decides as ``jeffreys verify`` does. :func:`jeffreys.load` reads such a file back. After writing, the file is checked: onnxruntime's
embeddings of a random batch (of another shape than the traced one) must equal PyTorch's to
``TOLERANCE`` (relative to each embedding's norm), or the export is an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from .errors import InputError, JeffreysError
from .fileio import AtomicFiles

INPUTS = ("waveform", "features")
TOLERANCE = 1e-4  # max ||onnx - torch|| / ||torch|| per embedding, float32 both sides


class _FeaturesInput(torch.nn.Module):
    """The extractor without its front-end: features [B, frames, mels] → embeddings."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.model.embed_features(feats)


def example_input(model, input: str, batch: int, seconds: float, seed: int = 0) -> torch.Tensor:
    """A random input of the given shape: noise waveforms, or their features. For a model
    with a VAD, each row has a near-silent stretch of its own length, so that the check
    sees frames dropped (steady noise is voiced throughout)."""
    g = torch.Generator().manual_seed(seed)
    waves = 0.1 * torch.randn(batch, int(seconds * model.fbank.sample_rate), generator=g)
    if getattr(model, "vad", None) is not None:
        n = waves.shape[1]
        for i in range(batch):
            waves[i, n // 4 : n // 4 + n * (i + 1) // (2 * batch + 2)] *= 1e-4
    return waves if input == "waveform" else model.features(waves)


def one_row(model, input: str) -> bool:
    """Whether the graph takes one utterance per run: a waveform graph with the VAD inside."""
    return input == "waveform" and getattr(model, "vad", None) is not None


def onnx_metadata(model, input: str, meta: dict | None, where="model") -> dict[str, str]:
    """The ``metadata_props`` of an export: front-end geometry, the bundle's meta as JSON and
    the decision rule it implies (:mod:`jeffreys.decision`), so that a deployment centres,
    scores and decides as ``jeffreys verify`` and :func:`jeffreys.load` do."""
    from .decision import DecisionRule

    from .features import FrontEnd

    fb = model.fbank
    frontend = getattr(model, "frontend", None) or FrontEnd(feature_norm=fb.norm, cmn_window=fb.cmn_window)
    rule = DecisionRule.of(meta or {}, where)
    try:
        meta_json = json.dumps(meta or {}, allow_nan=False)
    except ValueError:
        raise InputError(f"{where}: the model's meta holds a NaN or infinite number; JSON metadata cannot carry it") from None
    return {
        "jeffreys.input": input,
        "jeffreys.sample_rate": str(fb.sample_rate),
        "jeffreys.num_mel_bins": str(fb.num_mel_bins),
        "jeffreys.embed_dim": str(model.embed_dim),
        "jeffreys.frame_length": str(fb.frame_length),
        "jeffreys.frame_shift": str(fb.frame_shift),
        **{f"jeffreys.{k}": repr(v) if isinstance(v, float) else str(v) for k, v in dataclasses.asdict(frontend).items()},
        "jeffreys.meta": meta_json,
        "jeffreys.decision": json.dumps(rule.as_dict(), allow_nan=False),
    }


def export_onnx(model, out: str | Path, *, input: str = "waveform", opset: int | None = None, check: bool = True) -> dict:
    """Write the ONNX graph of ``model`` (bundle path, Bundle or SpeakerModel) to ``out`` atomically.

    Returns a summary: path, input, input/output names and, with ``check``, the largest
    relative difference between onnxruntime and PyTorch on a random batch.
    """
    from .extract import resolve_model
    from .extras import require

    onnx = require("onnx", "jeffreys export")
    require("onnxscript", "jeffreys export")  # the dynamo exporter's back end
    require("onnxruntime", "jeffreys export")  # the parity check

    if input not in INPUTS:
        raise InputError(f"unknown ONNX input {input!r} (known: {', '.join(INPUTS)})")
    meta = None
    if isinstance(model, (str, Path)):
        from .models import load_bundle

        bundle = load_bundle(model)
        model, meta = bundle.model, bundle.meta
    else:
        meta = getattr(model, "meta", None)
        model, _ = resolve_model(model)
    model = model.cpu().eval()
    out = Path(out)
    module = model if input == "waveform" else _FeaturesInput(model)
    name = "waves" if input == "waveform" else "feats"
    # Traced on batch 2 and 2 s. Dim.AUTO lets torch.export infer each axis' range (it
    # assumes batch >= 2 and enough samples that the last stage keeps 2 frames, but nothing
    # in the graph depends on that: tests/test_export.py runs batch 1 and one 25 ms frame);
    # explicit Dims with those minima fail export and fall back to a slow retrace.
    single = one_row(model, input)
    example = example_input(model, input, 1 if single else 2, 2.0)
    # A VAD graph's batch is 1 (each row keeps frames of its own number): static
    dynamic = {name: ({} if single else {0: torch.export.Dim.AUTO}) | {1: torch.export.Dim.AUTO}}
    props = onnx_metadata(model, input, meta, out)  # a bad meta fails before the export's work
    with AtomicFiles() as files:  # appears only when exported, checked and complete
        tmp = str(files.temp(out))
        with warnings.catch_warnings(), _quiet("torch.onnx", "torch.export", "onnxscript"):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                tmp,
                input_names=[name],
                output_names=["embeddings"],
                dynamic_shapes=dynamic,
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        proto = onnx.load(tmp)
        for key, value in props.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        shape = f"[{1 if single else 'batch'}, samples]" if input == "waveform" else "[batch, frames, mels]"
        summary = {"path": str(out), "input": input, "input_name": name, "input_shape": shape, "output_name": "embeddings",
                   "opset": proto.opset_import[0].version}
        if check:
            err = parity(module, tmp, input, model)
            summary["max_rel_diff"] = err
            if not err <= TOLERANCE:
                raise JeffreysError(f"{out}: onnxruntime differs from PyTorch by {err:.3g} (relative), more than {TOLERANCE:g}; not written")
    return summary


def parity(module, path: str | Path, input: str, model) -> float:
    """Largest ||onnx - torch|| / ||torch|| over a random batch of 3 × 1.37 s (not the traced shape)."""
    import onnxruntime as ort

    x = example_input(model, input, 3, 1.37, seed=1)
    with torch.no_grad():
        want = module(x).double().numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rows = [x[i : i + 1] for i in range(len(x))] if one_row(model, input) else [x]
    got = np.concatenate([session.run(None, {name: r.numpy()})[0] for r in rows]).astype(np.float64)
    return float(np.max(np.linalg.norm(got - want, axis=1) / np.linalg.norm(want, axis=1)))


class _quiet:
    """Silence the exporter's progress logging (it prints to stdout through logging)."""

    def __init__(self, *names: str):
        self.loggers = [logging.getLogger(n) for n in names]

    def __enter__(self):
        self.levels = [lg.level for lg in self.loggers]
        for lg in self.loggers:
            lg.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        for lg, level in zip(self.loggers, self.levels):
            lg.setLevel(level)


def cli_export(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="jeffreys export",
        description="Export a trained extractor to ONNX (dynamic batch and time axes) and check "
        "onnxruntime's embeddings against PyTorch's.",
    )
    p.add_argument("model", help="model bundle (model.pt)")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="output file")
    p.add_argument(
        "--input", choices=INPUTS, default="waveform",
        help="graph input: waveform [batch, samples] in [-1, 1] (front-end included, default) or "
        "features [batch, frames, mels] (log mel filterbanks of jeffreys.features, normalised as the "
        "model's feature_norm; with vad: energy, of the voiced frames only)",
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime vs PyTorch check")
    a = p.parse_args(argv)
    s = export_onnx(a.model, a.onnx, input=a.input, opset=a.opset, check=not a.no_check)
    line = f"jeffreys export: wrote {s['path']} (opset {s['opset']}, input {s['input_name']} {s['input_shape']} -> embeddings)"
    if "max_rel_diff" in s:
        line += f"; onnxruntime vs PyTorch: max relative difference {s['max_rel_diff']:.2e}"
    print(line)
    return 0


__all__ = ["export_onnx", "parity", "onnx_metadata", "one_row", "cli_export", "TOLERANCE", "INPUTS"]
