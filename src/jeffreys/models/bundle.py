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

Size. A bundle is refused, before torch reads its tensors or any layer is built, when

* the file, or the sum of what its zip entries expand to (torch reads deflated entries
  too: 200 MB of zeros fit in 200 kB), is larger than the limit, or
* the model its config describes would take more: :func:`estimate_bytes` (parameters and
  buffers as float32, the filterbank's tables, the Python objects of every block), computed
  from the config's numbers for the ResNet, counted on PyTorch's ``meta`` device (shapes
  without storage) for a plug-in kind and for the head.

The limit is :data:`DEFAULT_MAX_BYTES` (4 GiB: the paper's ResNet-34 with a VoxCeleb2
head takes 60 MB, a 300M-parameter model 1.2 GB), overridden by ``JEFFREYS_MAX_MODEL_BYTES``
or ``jeffreys --max-model-bytes N COMMAND``. Every tensor must then have the shape the
config gives it (``load_state_dict`` is strict), and the speaker list the head's size.
"""

from __future__ import annotations

import math
import os
import warnings
import zipfile
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
DEFAULT_MAX_BYTES = 4 << 30
MAX_BYTES_ENV = "JEFFREYS_MAX_MODEL_BYTES"
_HOW = f"raise it with --max-model-bytes or {MAX_BYTES_ENV}"
# Host memory of one ResNet block's Python objects (6 modules, their parameter objects and
# dicts): 21 KB measured with torch 2.13; counted at 32 KiB so that a config of millions of
# tiny blocks is refused like one of a few huge ones.
BLOCK_OVERHEAD = 32 << 10
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def max_model_bytes() -> int:
    """The limit on a model's memory: ``JEFFREYS_MAX_MODEL_BYTES`` (bytes, or with a K/M/G/T
    suffix: powers of 1024) when set, else :data:`DEFAULT_MAX_BYTES`."""
    text = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    return parse_bytes(text, MAX_BYTES_ENV)


def parse_bytes(text: str, what: str) -> int:
    """``"4G"``, ``"512M"``, ``"1000000"`` → bytes (K/M/G/T: powers of 1024); an InputError naming ``what``."""
    t = str(text).strip().lower().removesuffix("ib").removesuffix("b")
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] else ""
    try:
        value = float(t[: len(t) - len(unit)]) * _UNITS[unit]
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise InputError(f"{what}={text!r}: not a size in bytes (e.g. 4G, 512M, 1000000)")
    return int(value)


def _gib(n: float) -> str:
    """``n`` bytes in binary units, 3 significant digits: 50 MiB, 0.293 GiB, 1.35 TiB."""
    for i, unit in enumerate(("MiB", "GiB", "TiB", "PiB")):
        v = n / (1 << (20 + 10 * i))
        if v < 1000 or unit == "PiB":
            return f"{v:.3g} {unit}" if v < 1000 else f"{v:.0f} {unit}"
    raise AssertionError


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


def check_file_size(path: Path, limit: int, what: str = "model bundle") -> None:
    """Refuse a torch file whose size, or the sum of what its zip entries expand to (read
    from the zip's directory: what torch would allocate), passes ``limit``."""
    size = path.stat().st_size
    expanded = size
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                expanded = sum(i.file_size for i in z.infolist())
        except (zipfile.BadZipFile, OSError, ValueError):
            expanded = size  # torch reports what is wrong with it
    for n, how in ((size, "is"), (expanded, "expands to")):
        if n > limit:
            raise too_large(path, what, n, limit, how)


def too_large(path, what: str, n: int, limit: int, how: str = "is") -> InputError:
    """The error for a model file of ``n`` bytes, more than ``limit``."""
    return InputError(f"{path}: the {what} {how} {_gib(n)}, more than the limit of {_gib(limit)} ({_HOW})")


def load_plain(path: str | Path, what: str = "model bundle", *, max_bytes: int | None = None) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain data only, no pickled code.

    Any failure is one InputError naming the file; torch's own warnings and its advice to
    load with ``weights_only=False`` never reach the user. ``max_bytes``: refuse first a
    file larger than that, or whose entries expand to more (:func:`check_file_size`)."""
    path = input_file(path, what)
    if max_bytes is not None:
        check_file_size(path, max_bytes, what)
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


def _read(path: Path, max_bytes: int | None = None) -> dict[str, Any]:
    data = load_plain(path, max_bytes=max_model_bytes() if max_bytes is None else max_bytes)
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


def load_bundle(path: str | Path, device: str | torch.device = "cpu", *, max_bytes: int | None = None) -> Bundle:
    """Read a bundle written by :func:`save_bundle`; the model (and head) in eval mode.

    ``max_bytes`` (default :func:`max_model_bytes`): the file, and the model its config
    describes (:func:`estimate_bytes`), must fit; checked before anything is built."""
    path = Path(path)
    limit = max_model_bytes() if max_bytes is None else int(max_bytes)
    data = _read(path, limit)
    spec = ModelSpec.from_config(data["model"], source=str(path), prefix="model", trusted=False)
    hc = data.get("head")
    head_spec, sizes = None, {}
    if hc is not None:
        if not isinstance(hc, dict):
            raise InputError(f"{path}: key 'head': must be a mapping, got {type(hc).__name__}")
        hc = dict(hc)
        for key in ("embed_dim", "num_classes"):
            v = hc.pop(key, None)
            if not isinstance(v, int) or isinstance(v, bool):
                raise InputError(f"{path}: key 'head.{key}': must be an integer, got {v!r}")
            sizes[key] = v
        if len(data["speakers"]) != sizes["num_classes"]:
            raise InputError(f"{path}: {len(data['speakers'])} speakers for a head of {sizes['num_classes']} classes")
        head_spec = HeadSpec.from_config(hc, source=str(path), prefix="head", trusted=False)
    need = estimate_bytes(spec, head_spec, source=str(path), **sizes)
    if need > limit:
        raise InputError(
            f"{path}: the model its config describes needs about {_gib(need)}, more than the limit of "
            f"{_gib(limit)} ({_HOW}); nothing was built"
        )
    try:
        model = SpeakerModel(spec)
    except (TypeError, ValueError) as e:
        raise InputError(f"{path}: cannot build the model ({e})") from None
    try:
        model.load_state_dict(data["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as e:
        raise InputError(f"{path}: weights do not match the model config ({str(e).splitlines()[0]})") from None
    head = None
    if head_spec is not None:
        head = head_spec.build(source=str(path), **sizes)
        try:
            head.load_state_dict(data["head_state_dict"])
        except (RuntimeError, TypeError, AttributeError) as e:
            raise InputError(f"{path}: head weights do not match its config ({str(e).splitlines()[0]})") from None
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


def estimate_bytes(spec: ModelSpec, head: HeadSpec | None = None, *, source: str = "", **sizes: int) -> int:
    """Host memory (bytes) that building ``spec`` (and the head ``head`` of ``sizes``:
    embed_dim, num_classes) takes, without building it: parameters and buffers at 4
    bytes, the filterbank front-end's tables, and :data:`BLOCK_OVERHEAD` per ResNet block.

    The ResNet is counted from its config's numbers (exactly: tests compare with a built
    model); another kind (a plug-in, trusted code) and the head are built on PyTorch's
    ``meta`` device, which records shapes and allocates nothing, and counted."""
    from ..audio import AudioLimits
    from .resnet import ResNetConfig, ResNetEmbedder

    where = f"{source}: " if source else ""
    args = spec.args
    try:
        mels, rate = int(args["num_mel_bins"]), int(args.get("sample_rate", 16000))
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{where}model config: num_mel_bins and sample_rate must be integers") from None
    AudioLimits.current().check_rate(rate, f"{where}key 'model.sample_rate':")
    if mels < 1:
        raise InputError(f"{where}key 'model.num_mel_bins': must be a positive integer, got {mels}")
    total = fbank_bytes(mels, rate)
    entry = spec.registry.entry(spec.kind, trusted=spec.trusted)
    if entry.cls is ResNetEmbedder:
        try:
            cfg = ResNetConfig(**args)
        except (TypeError, ValueError) as e:
            raise InputError(f"{where}cannot build the model ({e})") from None
        total += 4 * resnet_elements(cfg) + BLOCK_OVERHEAD * sum(cfg.depths)
    else:
        total += 4 * _meta_elements(lambda: spec.build(source=source), where)
    if head is not None:
        if any(v < 1 for v in sizes.values()):
            raise InputError(f"{where}key 'head': embed_dim and num_classes must be positive, got {sizes}")
        total += 4 * _meta_elements(lambda: head.build(source=source, **sizes), where)
    return total


def fbank_bytes(num_mel_bins: int, sample_rate: int) -> int:
    """The filterbank front-end's construction: the mel matrix (FFT bins x mels) with
    numpy's float64 temporaries (5 of them) and its float32 copy."""
    frame = int(sample_rate * 25.0 / 1000)
    padded = 1 << max(frame - 1, 1).bit_length()
    return (padded // 2 + 1) * num_mel_bins * (5 * 8 + 4) + 12 * frame


def resnet_elements(cfg) -> int:
    """Parameters and buffers of a :class:`~jeffreys.models.resnet.ResNetEmbedder` of
    ``cfg``, from its numbers."""

    def bn(c: int) -> int:
        return 4 * c + 1  # weight, bias, running mean and variance, the batch counter

    stem = cfg.stem_width or cfg.widths[0]
    n = 9 * stem + bn(stem)
    cin = stem
    for width, depth, stride in zip(cfg.widths, cfg.depths, cfg.strides):
        for i in range(depth):
            s, c = (stride, cin) if i == 0 else (1, width)
            n += 9 * c * width + bn(width) + 9 * width * width + bn(width)
            if s != 1 or c != width:
                n += c * width + bn(width)
        cin = width
    n += cfg.stats_dim * cfg.embed_dim + cfg.embed_dim
    if cfg.embed_bn:
        n += 2 * cfg.embed_dim + 1
    return n


def _meta_elements(build, where: str) -> int:
    try:
        with torch.device("meta"):
            module = build()
    except InputError:
        raise
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as e:
        raise InputError(f"{where}cannot build the model ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return sum(t.numel() for t in module.parameters()) + sum(t.numel() for t in module.buffers())


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
