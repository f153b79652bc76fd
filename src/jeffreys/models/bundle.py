"""The model bundle ``model.pt``: extractor + head + speaker list + metadata, plain data only.

The file is ``torch.save`` of a dict of tensors, strings, numbers and lists, so
``torch.load(path, weights_only=True)`` reads it without running any pickled code::

    {"format": "jeffreys-model/2",
     "model": {"kind": "resnet", "preset": ..., ARGS...}, "state_dict": {...},
     "head": {"kind": "aam", ARGS..., "embed_dim": D, "num_classes": K} | None,
     "head_state_dict": {...} | None, "speakers": [...], "meta": {...}}

``model`` and ``head`` are the config sections of :mod:`jeffreys.registry` (a registered kind
or a plug-in ``module:Class``, which is imported only when allowed: see there). Files of
format ``jeffreys-model/1`` (a ResNet and a built-in head) are read as well.

``meta`` holds whatever later stages learn about the model: the training-set embedding
mean (``"mean"``), a decision ``"threshold"``, a ``"calibration"`` ``{"a", "b"}``; it is
updated in place by :func:`update_bundle_meta` (an atomic rewrite).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..fileio import atomic_write, input_file
from ..registry import HeadSpec, ModelSpec
from .resnet import SpeakerModel

FORMAT = "jeffreys-model/2"
_FORMATS = ("jeffreys-model/1", FORMAT)


@dataclass
class Bundle:
    model: SpeakerModel
    head: nn.Module | None
    speakers: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the model section: kind, preset, arguments
    head_config: dict[str, Any] | None = None  # the head section, with embed_dim and num_classes


def head_config_of(head: nn.Module) -> dict[str, Any]:
    """The head's config section (its current scale and margin) with ``embed_dim`` and
    ``num_classes``: what rebuilds it."""
    weight = head.weight
    section = HeadSpec.of(head).as_dict()
    for key in ("scale", "margin"):  # a scheduler may have changed them since the build
        if key in section and getattr(head, key, None) is not None:
            section[key] = float(getattr(head, key))
    return {**section, "embed_dim": int(weight.shape[1]), "num_classes": int(weight.shape[0])}


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (:func:`jeffreys.fileio.atomic_write`)."""
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def load_plain(path: str | Path, what: str = "model bundle") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain data only, no pickled code.

    Any failure is one InputError naming the file; torch's own warnings and its advice to
    load with ``weights_only=False`` never reach the user."""
    path = input_file(path, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad files
        import pickle

        if isinstance(e, pickle.UnpicklingError) and "weights_only" in str(e):
            why = "it holds Python objects other than tensors and plain data (refused: files never run code)"
        elif path.stat().st_size == 0:
            why = "the file is empty"
        else:
            why = "not a file written by torch.save, or damaged"
        raise InputError(f"{path}: not a jeffreys {what}: {why}") from None


def save_bundle(
    path: str | Path,
    model: SpeakerModel,
    head: nn.Module | None,
    speakers: list[str],
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write the bundle of ``model`` (+ ``head`` and its ``speakers``) atomically to ``path``."""
    path = Path(path)
    model = getattr(model, "module", model)  # DDP / compiled wrappers
    if head is not None and len(speakers) != head.weight.shape[0]:
        raise ValueError(f"{len(speakers)} speakers for a head of {head.weight.shape[0]} classes")
    data = {
        "format": FORMAT,
        "model": model.spec.as_dict(),
        "state_dict": _cpu(model.state_dict()),
        "head": head_config_of(head) if head is not None else None,
        "head_state_dict": _cpu(head.state_dict()) if head is not None else None,
        "speakers": list(speakers),
        "meta": dict(meta or {}),
    }
    save_torch(data, path)
    return path


def _read(path: Path) -> dict[str, Any]:
    data = load_plain(path)
    if not isinstance(data, dict) or data.get("format") not in _FORMATS:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputError(f"{path}: not a jeffreys model bundle (format {found!r}, expected {FORMAT!r})")
    if data["format"] != FORMAT:
        data = _from_format_1(data, path)
    for key, kinds, name in (("model", dict, "a mapping"), ("state_dict", dict, "a mapping of tensors"),
                             ("speakers", list, "a list of names"), ("meta", dict, "a mapping"),
                             ("head", (dict, type(None)), "a mapping or None"),
                             ("head_state_dict", (dict, type(None)), "a mapping of tensors or None")):
        if key not in data and key not in ("head", "head_state_dict"):
            raise InputError(f"{path}: model bundle lacks key {key!r}")
        if not isinstance(data.get(key), kinds):
            raise InputError(f"{path}: model bundle key {key!r} must be {name}, got {type(data.get(key)).__name__}")
    for key in ("state_dict", "head_state_dict"):
        bad = [k for k, v in (data.get(key) or {}).items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
        if bad:
            raise InputError(f"{path}: model bundle {key} entry {bad[0]!r} is not a named tensor")
    if not all(isinstance(s, str) for s in data["speakers"]):
        raise InputError(f"{path}: model bundle speakers must be strings")
    if data.get("head") is not None and data.get("head_state_dict") is None:
        raise InputError(f"{path}: model bundle has a head but no head_state_dict")
    return data


def _from_format_1(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """A ``jeffreys-model/1`` file as format 2: the ResNet was the only model, the head
    section held every built-in head's arguments, the embedder's weights were ``resnet.*``."""
    for key in ("model_config", "state_dict"):
        if key not in data:
            raise InputError(f"{path}: model bundle lacks key {key!r}")
    if not isinstance(data["model_config"], dict):
        raise InputError(f"{path}: model bundle key 'model_config' must be a mapping, got {type(data['model_config']).__name__}")
    out = dict(data, format=FORMAT, model={"kind": "resnet", **data.pop("model_config")})
    if isinstance(out["state_dict"], dict):
        out["state_dict"] = {("embedder." + k[len("resnet."):] if k.startswith("resnet.") else k): v
                             for k, v in out["state_dict"].items()}
    hc = out.pop("head_config", None)
    if isinstance(hc, dict):
        hc = dict(hc)
        if hc.get("kind") == "softmax":
            hc.pop("margin", None), hc.pop("easy_margin", None)
        elif hc.get("kind") == "am":
            hc.pop("easy_margin", None)
    out["head"] = hc
    return out


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """Read a bundle written by :func:`save_bundle`; the model (and head) in eval mode."""
    path = Path(path)
    data = _read(path)
    spec = ModelSpec.from_config(data["model"], source=str(path), prefix="model", trusted=False)
    try:
        model = SpeakerModel(spec)
    except (TypeError, ValueError) as e:
        raise InputError(f"{path}: cannot build the model ({e})") from None
    try:
        model.load_state_dict(data["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as e:
        raise InputError(f"{path}: weights do not match the model config ({str(e).splitlines()[0]})") from None
    head = None
    hc = data.get("head")
    if hc is not None:
        if not isinstance(hc, dict):
            raise InputError(f"{path}: key 'head': must be a mapping, got {type(hc).__name__}")
        hc = dict(hc)
        sizes = {}
        for key in ("embed_dim", "num_classes"):
            v = hc.pop(key, None)
            if not isinstance(v, int) or isinstance(v, bool):
                raise InputError(f"{path}: key 'head.{key}': must be an integer, got {v!r}")
            sizes[key] = v
        head = HeadSpec.from_config(hc, source=str(path), prefix="head", trusted=False).build(source=str(path), **sizes)
        try:
            head.load_state_dict(data["head_state_dict"])
        except (RuntimeError, TypeError, AttributeError) as e:
            raise InputError(f"{path}: head weights do not match its config ({str(e).splitlines()[0]})") from None
        if len(data["speakers"]) != sizes["num_classes"]:
            raise InputError(f"{path}: {len(data['speakers'])} speakers for a head of {sizes['num_classes']} classes")
        head = head.to(device).eval()
        hc = data["head"]
    return Bundle(
        model=model.to(device).eval(),
        head=head,
        speakers=list(data["speakers"]),
        meta=dict(data["meta"]),
        config=spec.as_dict(),
        head_config=hc,
    )


def _check_plain(value: Any, key: str, path: Path) -> None:
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for v in value:
            _check_plain(v, key, path)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InputError(f"{path}: meta key {key!r}: mapping keys must be strings, got {k!r}")
            _check_plain(v, key, path)
        return
    raise InputError(
        f"{path}: meta key {key!r}: values must be plain data (numbers, strings, lists, dicts), "
        f"got {type(value).__name__}"
    )


def bundle_with_meta(path: str | Path, **items: Any) -> dict[str, Any]:
    """The bundle data of ``path`` with ``meta[key] = value`` set for each item (plain data
    only), for a caller that writes it with other files (:class:`jeffreys.fileio.AtomicFiles`)."""
    path = Path(path)
    for key, value in items.items():
        _check_plain(value, key, path)
    data = _read(path)
    data["meta"].update(items)
    return data


def update_bundle_meta(path: str | Path, **items: Any) -> dict[str, Any]:
    """Set ``meta[key] = value`` for each item (plain data only) and rewrite ``path`` atomically
    (its file mode kept)."""
    data = bundle_with_meta(path, **items)
    save_torch(data, path)
    return data["meta"]
