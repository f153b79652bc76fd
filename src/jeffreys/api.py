"""The library face: ``jeffreys.load(path)`` and what a loaded model does.

::

    import jeffreys
    m = jeffreys.load("model.pt")            # a bundle, or "model.onnx" (onnxruntime, metadata inside)
    e = m.embed("a.wav")                     # (D,) float32: centred by the model's mean if it has one, unit length
    E = m.embed(["a.wav", "b.wav"])          # (N, D); also 1-D arrays with sample_rate=SR
    s = m.score("a.wav", "b.wav")            # cosine of the centred embeddings (the paper's back-end)
    v = m.verify("a.wav", "b.wav")           # v.score, v.llr (None unless calibrated), v.same, v.threshold
    m.enroll("alice", ["a1.wav", "a2.wav"])  # averaged as `score --models` does
    m.identify("x.wav", top_k=3)             # [(name, score), ...] best first; [] when none reaches the threshold

One implementation behind every entry point: audio is read by
:func:`jeffreys.audio.load_audio` (any format it reads, resampled to the model's rate),
embedded by :class:`jeffreys.extract.PieceBatcher` exactly as ``jeffreys extract`` batches
(pad-free, long recordings in chunks), scored by :func:`jeffreys.scoring.cosine_scores`
(centred by ``meta["mean"]``; an enrolled speaker as a ``models`` entry) and decided by
:class:`jeffreys.decision.DecisionRule` (``score >= threshold``). ``jeffreys verify`` is a
thin layer over :meth:`Recognizer.compare`, so the CLI, the API and an ONNX export of the same
bundle decide alike (up to the export's float rounding, ~1e-6 relative on an embedding).

A model file is data from anyone: a bundle is read with ``torch.load(weights_only=True)``
(a plug-in model kind is imported only when allowed, :mod:`jeffreys.registry`); an ONNX
file is parsed as a protobuf, refused if it points at external data files, and its
metadata (JSON without NaN) is checked like a bundle's meta.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from .decision import Decision, DecisionRule, mean_of
from .errors import InputError, JeffreysWarning, finite, shown
from .extract import DEFAULT_BATCH_SECONDS, DEFAULT_MAX_CHUNK_SECONDS
from .audio import SILENCE_DBFS, loudest_frame_dbfs

Audio = Union[str, Path, np.ndarray]
ONNX_SUFFIXES = (".onnx", ".ort")


class NoSpeech(InputError):
    """A recording to compare has no speech: its loudest 25 ms frame is below
    :data:`jeffreys.audio.SILENCE_DBFS` (``file``; ``level``: that frame's dBFS, None for digital silence)."""

    def __init__(self, file: str, level: float):
        self.file = file
        self.level = level if math.isfinite(level) else None
        what = "digital silence" if self.level is None else f"loudest 25 ms frame at {self.level:.1f} dBFS"
        super().__init__(f"no speech in {file} ({what}, below {SILENCE_DBFS:g} dBFS); nothing to compare")


# --------------------------------------------------------------------------- backends
class _Frontend:
    """The front-end geometry PieceBatcher reads (``model.fbank``), for an ONNX graph."""

    def __init__(self, sample_rate: int, frame_length: int, frame_shift: int):
        from types import SimpleNamespace

        self.fbank = SimpleNamespace(sample_rate=sample_rate, frame_length=frame_length, frame_shift=frame_shift)


class _TorchBackend:
    kind = "bundle"

    def __init__(self, path: Path, device: str):
        from .devices import resolve_device
        from .models import load_bundle

        self.bundle = load_bundle(path)
        self.device = resolve_device(device)
        self.model = self.bundle.model
        self.meta = self.bundle.meta
        fb = self.model.fbank
        self.sample_rate, self.embed_dim = int(fb.sample_rate), int(self.model.embed_dim)

    def embed(self, waves: list[np.ndarray], names: list[str], batch_seconds: float, max_chunk_seconds: float) -> np.ndarray:
        from .extract import embed_waves

        return embed_waves(self.model, waves, names, device=str(self.device), batch_seconds=batch_seconds,
                           max_chunk_seconds=max_chunk_seconds)


def _onnx_tensors(proto):
    """Every tensor an ONNX model holds: initializers (sparse ones too) and tensor attributes of
    the main graph, of every subgraph (If/Loop/Scan bodies) and of local functions."""

    def of_graph(g):
        yield from g.initializer
        for s in g.sparse_initializer:
            yield s.values
            yield s.indices
        yield from of_nodes(g.node)

    def of_nodes(nodes):
        for node in nodes:
            for a in node.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                if a.HasField("sparse_tensor"):
                    yield a.sparse_tensor.values
                    yield a.sparse_tensor.indices
                for s in a.sparse_tensors:
                    yield s.values
                    yield s.indices
                if a.HasField("g"):
                    yield from of_graph(a.g)
                for g in a.graphs:
                    yield from of_graph(g)

    yield from of_graph(proto.graph)
    for f in proto.functions:
        yield from of_nodes(f.node)


def _onnx_int(props: dict[str, str], key: str, path: Path) -> int:
    value = props.get(f"jeffreys.{key}")
    if value is None or not (value.isascii() and value.isdigit() and len(value) <= 12) or int(value) < 1:
        raise InputError(f"{path}: ONNX metadata 'jeffreys.{key}' must be a positive integer, got {value if value is None else value[:40]!r}")
    return int(value)


def _onnx_frontend(props: dict[str, str], path: Path):
    """The front-end keys of the metadata as a :class:`jeffreys.features.FrontEnd`; a key
    absent (an export from before it) has its default, the front-end such files had."""
    from .features import FRONTEND_KEYS, FrontEnd

    values: dict[str, Any] = {}
    for key in FRONTEND_KEYS:
        text = props.get(f"jeffreys.{key}")
        if text is None:
            continue
        kind = type(getattr(FrontEnd, key))
        value: Any = text
        if kind is int:
            value = int(text) if text.isascii() and text.isdigit() and len(text) <= 12 else text
        elif kind is float:
            try:
                value = float(text) if len(text) <= 40 else text
            except ValueError:
                pass
        try:
            FrontEnd(**{key: value})  # each key checked alone, so that the error names it
        except ValueError as e:
            why = str(e).removeprefix(f"{key} ")
            raise InputError(f"{path}: ONNX metadata 'jeffreys.{key}' {why}") from None
        values[key] = value
    return FrontEnd(**values)


def _strict_json(text: str, what: str, path: Path) -> Any:
    def no_constant(name: str):
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        return json.loads(text, parse_constant=no_constant)
    except (ValueError, RecursionError) as e:
        raise InputError(f"{path}: ONNX metadata {what!r} is not valid JSON ({str(e).splitlines()[0]})") from None


class _OnnxBackend:
    kind = "onnx"

    def __init__(self, path: Path, device: str):
        from .export import INPUTS
        from .extras import require
        from .fileio import input_file
        from .models.bundle import max_model_bytes, too_large

        onnx = require("onnx", "loading an ONNX model")
        ort = require("onnxruntime", "loading an ONNX model")
        # The file is read whole, then parsed and copied by onnxruntime: its size is checked
        # first (the model limit, as a bundle's), and no more than the limit is ever read.
        limit = max_model_bytes()
        try:
            with open(input_file(path, "ONNX model"), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                data = f.read(limit + 1) if size <= limit else b""
        except OSError as e:
            raise InputError(f"{shown(path)}: cannot read: {e.strerror}") from None
        if max(size, len(data)) > limit:
            raise too_large(path, "ONNX model", max(size, len(data)), limit)
        try:
            proto = onnx.load_model_from_string(data)
        except Exception as e:  # protobuf raises several types on bad bytes
            raise InputError(f"{path}: not an ONNX model, or damaged ({type(e).__name__})") from None
        from onnx.external_data_helper import uses_external_data

        if any(uses_external_data(t) for t in _onnx_tensors(proto)):
            raise InputError(f"{path}: the model keeps tensors in external data files; refused (files are read as one self-contained model)")
        props = {p.key: p.value for p in proto.metadata_props}
        if "jeffreys.input" not in props:
            raise InputError(f"{path}: not an export of `jeffreys export` (no 'jeffreys.*' metadata)")
        self.input = props["jeffreys.input"]
        if self.input not in INPUTS:
            raise InputError(f"{path}: ONNX metadata 'jeffreys.input' must be one of {', '.join(INPUTS)}, got {self.input!r}")
        self.sample_rate = _onnx_int(props, "sample_rate", path)
        self.embed_dim = _onnx_int(props, "embed_dim", path)
        num_mel_bins = _onnx_int(props, "num_mel_bins", path)
        frame_length, frame_shift = _onnx_int(props, "frame_length", path), _onnx_int(props, "frame_shift", path)
        meta = _strict_json(props.get("jeffreys.meta", "{}"), "jeffreys.meta", path)
        if not isinstance(meta, dict):
            raise InputError(f"{path}: ONNX metadata 'jeffreys.meta' must be a JSON object, got {type(meta).__name__}")
        self.meta = meta
        self.frontend = _Frontend(self.sample_rate, frame_length, frame_shift)
        # Checked for either input (a waveform graph has its front-end inside): bad values
        # mean a damaged or forged file.
        options = _onnx_frontend(props, path)
        self.fbank, self.vad = None, None
        if self.input == "features":
            from .features import Fbank

            self.fbank = Fbank.with_norm(options.feature_norm, cmn_window=options.cmn_window, num_mel_bins=num_mel_bins,
                                         sample_rate=self.sample_rate)
            self.vad = options.energy_vad()
            if (self.fbank.frame_length, self.fbank.frame_shift) != (frame_length, frame_shift):
                raise InputError(f"{path}: frames of {frame_length}/{frame_shift} samples are not the front-end's "
                                 f"({self.fbank.frame_length}/{self.fbank.frame_shift}) at {self.sample_rate} Hz")
        providers = self._providers(ort, device)
        try:
            self.session = ort.InferenceSession(data, providers=providers)
        except Exception as e:  # onnxruntime's own error types
            raise InputError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})") from None
        # The graph must take what the metadata says it takes and give embed_dim numbers a row:
        # a mismatch would surface as onnxruntime's traceback at the first file.
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        rank = 2 if self.input == "waveform" else 3
        dim = outs[0].shape[-1] if outs and outs[0].shape else None
        if len(ins) != 1 or len(ins[0].shape) != rank or not outs or len(outs[0].shape) != 2 \
                or (isinstance(dim, int) and dim != self.embed_dim):
            raise InputError(f"{path}: the graph takes {[list(i.shape) for i in ins]} and gives {[list(o.shape) for o in outs]}; "
                             f"metadata says one {self.input} input of rank {rank} and [batch, {self.embed_dim}] embeddings")
        if self.input == "features" and isinstance(ins[0].shape[2], int) and ins[0].shape[2] != num_mel_bins:
            raise InputError(f"{path}: the graph takes {ins[0].shape[2]} mel bins, its metadata says {num_mel_bins}")
        self.input_name = ins[0].name
        # A waveform graph with the VAD inside takes one utterance per run (jeffreys.export)
        self.one_row = self.input == "waveform" and ins[0].shape[0] == 1

    @staticmethod
    def _providers(ort, device: str) -> list:
        from .devices import check_device_name

        name = check_device_name(str(device))
        if name == "cpu":
            return ["CPUExecutionProvider"]
        if name.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            index = int(name.split(":")[1]) if ":" in name else 0
            return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        raise InputError(f"device {name!r}: this onnxruntime has no provider for it (available: {', '.join(ort.get_available_providers())})")

    def _run(self, x):
        import torch

        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x.numpy())})[0]
        return torch.from_numpy(np.ascontiguousarray(out))

    def _forward(self, waves):
        import torch

        from .features import embed_voiced, keep_frames

        if self.fbank is None:
            return torch.cat([self._run(w) for w in waves.split(1)]) if self.one_row else self._run(waves)
        if self.vad is None:
            return self._run(self.fbank(waves))
        # a features export leaves the VAD to its caller: the kept frames of each row alone
        feats, log_energy = self.fbank(waves, energy=True)
        return embed_voiced(self._run, feats, keep_frames(self.vad(log_energy)))

    def embed(self, waves: list[np.ndarray], names: list[str], batch_seconds: float, max_chunk_seconds: float) -> np.ndarray:
        from .extract import PieceBatcher

        batcher = PieceBatcher(self.frontend, names, batch_seconds=batch_seconds, max_chunk_seconds=max_chunk_seconds,
                               forward=self._forward)
        return batcher.embed(waves)


# --------------------------------------------------------------------------- the model
class SyntheticModelWarning(JeffreysWarning):
    """A model trained only on the embedded (synthetic) corpus is used on recordings."""


SYNTHETIC_NOTE = ("trained only on synthetic speech (the embedded corpus): its scores and decisions on recordings "
                  "of real people are not reliable (docs/real-voices.md)")


class FewVoicesWarning(JeffreysWarning):
    """A model whose training heard real voices (recorded, or MBROLA diphones recorded from
    one person each) but only a few of them is used on recordings."""


FEW_VOICES = 1000  # speakers not synthetic below which a model has heard "a few real voices"


def few_voices_note(train_data) -> str | None:
    """The :class:`FewVoicesWarning` note for a model's ``train_data`` meta, or None: said when
    it heard recorded or diphone voices, fewer than :data:`FEW_VOICES` speakers that are not
    synthetic in all. Nothing is said without a ``kind`` (VoxCeleb, a meta of older versions)."""
    from .data.datadir import heard

    if not isinstance(train_data, dict):
        return None
    parts = train_data.get("parts") if train_data.get("corpus") == "combined" else [train_data]
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        return None
    if not any(p.get("kind") in ("recorded", "diphone") for p in parts):
        return None
    speakers = [p.get("speakers") for p in parts if p.get("kind") != "synthetic"]
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in speakers) or sum(speakers) >= FEW_VOICES:
        return None  # a count that cannot be read says nothing
    said = train_data.get("heard")
    if not isinstance(said, str):
        try:
            said = heard(parts)
        except (KeyError, TypeError):
            return None
    return (f"trained on {said}: a few real voices, not a corpus of thousands of recorded speakers such as VoxCeleb; "
            "expect real-voice error rates like those in docs/real-voices.md")


class Recognizer:
    """A loaded model (bundle or ONNX export): embed, score, verify, enroll, identify.

    Made by :func:`load`. Attributes: ``path``, ``backend`` (``"bundle"`` or ``"onnx"``),
    ``sample_rate``, ``embed_dim``, ``meta`` (the bundle's meta: ``mean``, ``threshold``,
    ``calibration``, ...), ``mean`` (float32 ``(D,)`` or None), ``enrolled`` (names).
    """

    def __init__(self, path: Path, backend, *, batch_seconds: float, max_chunk_seconds: float, allow_pipes: bool):
        self.path = path
        self._backend = backend
        self.backend = backend.kind
        self.sample_rate: int = backend.sample_rate
        self.embed_dim: int = backend.embed_dim
        self.meta: dict = backend.meta
        self.batch_seconds = batch_seconds
        self.max_chunk_seconds = max_chunk_seconds
        self.allow_pipes = allow_pipes
        self.mean = self._mean(self.meta)
        self.decision_rule()  # a bad threshold or calibration in the meta fails at load time
        self._enrolled: dict[str, np.ndarray] = {}
        train_data = self.meta.get("train_data")
        if isinstance(train_data, dict) and train_data.get("synthetic") is True:
            import warnings

            warnings.warn(f"{path}: {SYNTHETIC_NOTE}", SyntheticModelWarning, stacklevel=3)
        elif (note := few_voices_note(train_data)) is not None:
            import warnings

            warnings.warn(f"{path}: {note}", FewVoicesWarning, stacklevel=3)

    def __repr__(self) -> str:
        return f"<jeffreys model {self.path} ({self.backend}, {self.sample_rate} Hz, {self.embed_dim}-dim)>"

    def _mean(self, meta: dict) -> np.ndarray | None:
        return mean_of(meta, self.embed_dim, self.path)

    # -- inputs
    def _wave(self, item, sample_rate: int | None, index: int) -> tuple[str, np.ndarray]:
        from .audio import load_audio

        if isinstance(item, (str, Path)):
            return str(item), load_audio(item, self.sample_rate, allow_pipes=self.allow_pipes)
        if hasattr(item, "detach") and hasattr(item, "cpu"):  # a torch tensor
            item = item.detach().cpu().numpy()
        if not isinstance(item, np.ndarray):
            raise InputError(f"input {index}: expected an audio file path or a 1-D array, got {type(item).__name__}")
        name = f"array {index}"
        if item.ndim != 1:
            raise InputError(f"{name}: expected a 1-D (mono) waveform, got shape {item.shape}")
        if item.dtype.kind != "f":
            raise InputError(f"{name}: expected float samples in [-1, 1], got dtype {item.dtype}")
        if sample_rate is None:
            raise InputError(f"{name}: an array needs sample_rate= (the model runs at {self.sample_rate} Hz)")
        sr = finite(sample_rate, "sample_rate")
        if sr != int(sr) or sr < 1:
            raise InputError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        wave = np.asarray(item, dtype=np.float32)
        if not np.isfinite(wave).all():
            raise InputError(f"{name}: contains NaN or infinite samples")
        if int(sr) != self.sample_rate:
            import soxr

            wave = soxr.resample(wave, int(sr), self.sample_rate, quality="HQ").astype(np.float32)
        return name, wave

    def _waves(self, items: Sequence, sample_rate: int | None, check_speech: bool = False) -> tuple[list[str], list[np.ndarray]]:
        names, waves = [], []
        for i, item in enumerate(items):
            name, wave = self._wave(item, sample_rate, i)
            if check_speech:
                level = loudest_frame_dbfs(wave, self.sample_rate)
                if level < SILENCE_DBFS:
                    raise NoSpeech(name, level)
            names.append(name)
            waves.append(wave)
        return names, waves

    def _raw(self, items: Sequence, sample_rate: int | None, check_speech: bool = False) -> tuple[list[str], np.ndarray]:
        """Embeddings as the model gives them (not centred, not normalised), one row per item."""
        names, waves = self._waves(items, sample_rate, check_speech)
        if not waves:
            return names, np.zeros((0, self.embed_dim), dtype=np.float32)
        return names, self._backend.embed(waves, names, self.batch_seconds, self.max_chunk_seconds)

    # -- the face
    def embed(self, x: Audio | Sequence[Audio], sample_rate: int | None = None) -> np.ndarray:
        """Embedding of one recording, ``(D,)``, or of a list, ``(N, D)`` (float32): centred
        by the model's mean when it has one, then of unit length. ``x``: audio file paths
        (any rate: resampled) and/or 1-D float arrays at ``sample_rate``. A list is embedded
        in the batches ``jeffreys extract`` would form."""
        single = not isinstance(x, (list, tuple))
        names, raw = self._raw([x] if single else list(x), sample_rate)
        e = raw.astype(np.float64)
        if self.mean is not None:
            e -= self.mean
        norm = np.linalg.norm(e, axis=1)
        zero = np.flatnonzero(norm == 0)
        if len(zero):
            raise InputError(f"{names[zero[0]]}: its embedding is zero after centring; no direction to compare")
        e = (e / norm[:, None]).astype(np.float32)
        return e[0] if single else e

    def _pair_score(self, a, b, sample_rate, check_speech: bool) -> float:
        from .scoring import cosine_scores

        _, raw = self._raw([a, b], sample_rate, check_speech)
        return float(cosine_scores((["a", "b"], raw), None, [("a", "b")], mean=self.mean)[0])

    def score(self, a: Audio, b: Audio, sample_rate: int | None = None) -> float:
        """Cosine of the two centred embeddings (the paper's back-end; ``jeffreys score``)."""
        return self._pair_score(a, b, sample_rate, check_speech=False)

    def decision_rule(self, threshold: float | None = None, p_target: float | None = None) -> DecisionRule:
        """The rule deciding for this model (:mod:`jeffreys.decision`): ``threshold`` (on the
        LLR when calibrated) or ``p_target`` (Bayes, calibrated models) given here win over
        the threshold stored in the meta."""
        return DecisionRule.of(self.meta, self.path, threshold=threshold, p_target=p_target)

    @property
    def threshold(self) -> float | None:
        """The stored decision threshold (on the score, or on the LLR of a calibration alone)."""
        return self.decision_rule().threshold

    def compare(self, a: Audio, b: Audio, *, threshold: float | None = None, p_target: float | None = None,
                sample_rate: int | None = None) -> Decision:
        """Score and decision, ``same`` None when no threshold exists. A recording without
        speech (loudest 25 ms frame below -60 dBFS) raises :class:`NoSpeech`."""
        rule = self.decision_rule(threshold, p_target)
        return rule.decide(self._pair_score(a, b, sample_rate, check_speech=True))

    def verify(self, a: Audio, b: Audio, *, threshold: float | None = None, p_target: float | None = None,
               sample_rate: int | None = None) -> Decision:
        """Same speaker? ``v.same`` is ``score >= threshold`` (``llr >= threshold`` for a
        threshold on the calibrated LLR); also ``v.score``, ``v.llr`` (None unless
        calibrated), ``v.threshold``, ``v.rule``. Without any threshold: an InputError
        saying how to get one (``jeffreys calibrate``)."""
        self._need_threshold(threshold, p_target)
        return self.compare(a, b, threshold=threshold, p_target=p_target, sample_rate=sample_rate)

    def _need_threshold(self, threshold, p_target) -> DecisionRule:
        rule = self.decision_rule(threshold, p_target)
        if rule.threshold is None:
            raise InputError(f"{self.path}: no decision threshold: its meta has neither 'calibration' nor 'threshold'; "
                             "run `jeffreys calibrate` on labelled recordings of your speakers, or give threshold=")
        return rule

    # -- enrolment
    @property
    def enrolled(self) -> list[str]:
        return list(self._enrolled)

    def enroll(self, name: str, items: Audio | Sequence[Audio], sample_rate: int | None = None) -> None:
        """Enrol speaker ``name`` from one or more recordings (replacing an earlier
        enrolment of that name). Scored as ``jeffreys score --models`` scores a model: each
        embedding centred and of unit length, their mean compared by cosine."""
        if not isinstance(name, str) or not name:
            raise InputError(f"enroll: the name must be a non-empty string, got {name!r}")
        items = [items] if not isinstance(items, (list, tuple)) else list(items)
        if not items:
            raise InputError(f"enroll {name!r}: no recordings")
        self._enrolled[name] = self._raw(items, sample_rate)[1]

    def identify(self, x: Audio, top_k: int = 1, *, threshold: float | None = None, p_target: float | None = None,
                 sample_rate: int | None = None) -> list[tuple[str, float]]:
        """Open-set identification: the enrolled speakers whose score reaches the threshold
        (the decision rule of :meth:`verify`), best first, at most ``top_k``; ``[]`` when
        none does."""
        from .scoring import cosine_scores

        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InputError(f"top_k must be a positive integer, got {top_k!r}")
        if not self._enrolled:
            raise InputError("identify: nobody is enrolled (call enroll(name, recordings) first)")
        rule = self._need_threshold(threshold, p_target)
        _, test = self._raw([x], sample_rate)
        names = list(self._enrolled)
        ids, rows, models = ["test"], [test], {}
        for k, name in enumerate(names):  # ids of our own making: a name may hold any character
            utts = [f"s{k}u{i}" for i in range(len(self._enrolled[name]))]
            ids += utts
            rows.append(self._enrolled[name])
            models[f"s{k}"] = utts
        scores = cosine_scores((ids, np.concatenate(rows)), None, [(f"s{k}", "test") for k in range(len(names))],
                               mean=self.mean, models=models)
        found = [(names[k], float(s)) for k, s in enumerate(scores) if rule.decide(s).same]
        return sorted(found, key=lambda t: -t[1])[:top_k]


def load(path: str | Path, *, device: str = "cpu", batch_seconds: float = DEFAULT_BATCH_SECONDS,
         max_chunk_seconds: float = DEFAULT_MAX_CHUNK_SECONDS, allow_pipes: bool = False) -> Recognizer:
    """Load ``model.pt`` (a bundle of ``jeffreys train``) or ``model.onnx`` (``jeffreys export``,
    run by onnxruntime: ``pip install 'jeffreys[onnx]'``).

    ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (ONNX: ``cpu`` or ``cuda[:N]`` with
    onnxruntime-gpu). ``batch_seconds``, ``max_chunk_seconds``: the batching and
    long-recording policy of ``jeffreys extract``. ``allow_pipes``: accept ``cmd |`` inputs
    (run without a shell; see docs/security.md).
    """
    p = Path(path)
    backend = _OnnxBackend(p, device) if p.suffix.lower() in ONNX_SUFFIXES else _TorchBackend(p, device)
    return Recognizer(p, backend, batch_seconds=batch_seconds, max_chunk_seconds=max_chunk_seconds, allow_pipes=allow_pipes)


__all__ = ["Audio", "Decision", "FewVoicesWarning", "NoSpeech", "Recognizer", "SyntheticModelWarning", "load"]
