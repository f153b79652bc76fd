"""The model bundle ``model.pt``: extractor + head + speaker list + metadata, plain data only.

The file is ``torch.save`` of a dict of tensors, strings, numbers and lists, so
``torch.load(path, weights_only=True)`` reads it without running any pickled code::

    {"format": "jeffreys-model/1", "model_config": {...}, "state_dict": {...},
     "head_config": {"kind", "embed_dim", "num_classes", "scale", "margin", "easy_margin"} | None,
     "head_state_dict": {...} | None, "speakers": [...], "meta": {...}}

``meta`` holds whatever later stages learn about the model: the training-set embedding
mean (``"mean"``), a decision ``"threshold"``, a ``"calibration"`` ``{"a", "b"}``; it is
updated in place by :func:`update_bundle_meta` (an atomic rewrite).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import from_dict, to_dict
from ..errors import InputError
from ..fileio import atomic_write, input_file
from .resnet import ResNetConfig, SpeakerModel

FORMAT = "jeffreys-model/1"
_HEAD_KEYS = ("kind", "embed_dim", "num_classes", "scale", "margin", "easy_margin")


@dataclass
class Bundle:
    model: SpeakerModel
    head: nn.Module | None
    speakers: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the model config as plain data
    head_config: dict[str, Any] | None = None


def head_config_of(head: nn.Module, kind: str | None = None) -> dict[str, Any]:
    """The ``build_head`` arguments that rebuild ``head`` (its current scale and margin)."""
    weight = head.weight
    kind = kind or getattr(head, "kind", None) or _HEAD_KINDS.get(type(head).__name__)
    if kind is None:
        raise ValueError(f"cannot tell the kind of head {type(head).__name__}; pass kind=")
    return {
        "kind": kind,
        "embed_dim": int(weight.shape[1]),
        "num_classes": int(weight.shape[0]),
        "scale": None if getattr(head, "scale", None) is None else float(head.scale),  # softmax: None
        "margin": float(getattr(head, "margin", 0.0)),
        "easy_margin": bool(getattr(head, "easy_margin", False)),
    }


_HEAD_KINDS = {"SoftmaxHead": "softmax", "AMHead": "am", "AAMHead": "aam"}


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
    *,
    head_kind: str | None = None,
) -> Path:
    """Write the bundle of ``model`` (+ ``head`` and its ``speakers``) atomically to ``path``."""
    path = Path(path)
    model = getattr(model, "module", model)  # DDP / compiled wrappers
    if head is not None and len(speakers) != head.weight.shape[0]:
        raise ValueError(f"{len(speakers)} speakers for a head of {head.weight.shape[0]} classes")
    data = {
        "format": FORMAT,
        "model_config": to_dict(model.config),
        "state_dict": _cpu(model.state_dict()),
        "head_config": head_config_of(head, head_kind) if head is not None else None,
        "head_state_dict": _cpu(head.state_dict()) if head is not None else None,
        "speakers": list(speakers),
        "meta": dict(meta or {}),
    }
    save_torch(data, path)
    return path


def _read(path: Path) -> dict[str, Any]:
    data = load_plain(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputError(f"{path}: not a jeffreys model bundle (format {found!r}, expected {FORMAT!r})")
    for key, kinds, name in (("model_config", dict, "a mapping"), ("state_dict", dict, "a mapping of tensors"),
                             ("speakers", list, "a list of names"), ("meta", dict, "a mapping"),
                             ("head_config", (dict, type(None)), "a mapping or None"),
                             ("head_state_dict", (dict, type(None)), "a mapping of tensors or None")):
        if key not in data and key not in ("head_config", "head_state_dict"):
            raise InputError(f"{path}: model bundle lacks key {key!r}")
        if not isinstance(data.get(key), kinds):
            raise InputError(f"{path}: model bundle key {key!r} must be {name}, got {type(data.get(key)).__name__}")
    for key in ("state_dict", "head_state_dict"):
        bad = [k for k, v in (data.get(key) or {}).items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
        if bad:
            raise InputError(f"{path}: model bundle {key} entry {bad[0]!r} is not a named tensor")
    if not all(isinstance(s, str) for s in data["speakers"]):
        raise InputError(f"{path}: model bundle speakers must be strings")
    if data.get("head_config") is not None and data.get("head_state_dict") is None:
        raise InputError(f"{path}: model bundle has a head_config but no head_state_dict")
    return data


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """Read a bundle written by :func:`save_bundle`; the model (and head) in eval mode."""
    path = Path(path)
    data = _read(path)
    cfg = from_dict(ResNetConfig, data["model_config"], source=str(path), prefix="model_config")
    model = SpeakerModel(cfg)
    try:
        model.load_state_dict(data["state_dict"])
    except RuntimeError as e:
        raise InputError(f"{path}: weights do not match the model config ({str(e).splitlines()[0]})") from None
    head = None
    if data.get("head_config") is not None:
        from ..losses import build_head

        hc = data["head_config"]
        missing = [k for k in _HEAD_KEYS if k not in hc]
        if missing:
            raise InputError(f"{path}: head_config lacks key {missing[0]!r}")
        try:
            head = build_head(hc["kind"], hc["embed_dim"], hc["num_classes"], hc["scale"], hc["margin"], easy_margin=hc["easy_margin"])
        except (ValueError, TypeError, KeyError, RuntimeError) as e:
            raise InputError(f"{path}: bad head_config ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        try:
            head.load_state_dict(data["head_state_dict"])
        except (RuntimeError, TypeError) as e:
            raise InputError(f"{path}: head weights do not match head_config ({str(e).splitlines()[0]})") from None
        if len(data["speakers"]) != hc["num_classes"]:
            raise InputError(f"{path}: {len(data['speakers'])} speakers for a head of {hc['num_classes']} classes")
        head = head.to(device).eval()
    return Bundle(
        model=model.to(device).eval(),
        head=head,
        speakers=list(data["speakers"]),
        meta=dict(data["meta"]),
        config=dataclasses.asdict(cfg),
        head_config=data.get("head_config"),
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
