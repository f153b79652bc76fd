"""Plug-in points: one registry per kind of component (model, head, loss).

A config section names its component by ``kind`` — a registered name (``aam``,
``jeffreys``, ``resnet``) or ``module:Class`` for code outside the package — and its other
keys are the class's keyword arguments, typed by the class's nested ``Config`` dataclass
when it has one, else by its ``__init__`` annotations, and validated like every config key
(the error names the file and the key)::

    head: {kind: aam, scale: 30.0, margin: 0.2}
    loss: {kind: mylab.losses:FocalLoss, gamma: 2.0}

What each kind must be:

* ``model``: an *embedder*, ``nn.Module`` mapping filterbanks ``[B, frames, mels]`` to
  embeddings ``[B, D]``; its arguments include ``num_mel_bins`` and ``embed_dim`` (the
  front-end and the head need them) and may include ``sample_rate``. A kind may name
  presets (``resnet``: paper, wespeaker, demo): ``preset: NAME`` starts from one.
* ``head``: ``nn.Module`` built as ``cls(embed_dim=, num_classes=, **args)``, called as
  ``head(embeddings, labels)`` (training logits) and ``head(embeddings)`` (inference).
* ``loss``: ``nn.Module`` built as ``cls(**args)``, called as ``loss(logits, labels)`` →
  scalar; ``terms(logits, labels)`` (a dict of detached values, for logging) is optional.

Importing ``module:Class`` runs that module's code. A config names it on purpose; a model
file (``model.pt``) is data and may come from anyone, so a bundle's plug-in kind is imported
only when its module is already imported, or allowed by :func:`allow` or the environment
variable ``JEFFREYS_PLUGINS`` (comma-separated module names).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar, get_type_hints

from torch import nn

from .config import from_dict, to_dict
from .errors import InputError

_KIND = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*")
_allowed: set[str] = set()


def allow(*modules: str) -> None:
    """Let bundles name classes of these modules (imported when a bundle is loaded)."""
    _allowed.update(modules)


def _plugin_allowed(module: str) -> bool:
    env = {m.strip() for m in os.environ.get("JEFFREYS_PLUGINS", "").split(",") if m.strip()}
    return module in sys.modules or module in _allowed or module in env


@dataclass(frozen=True)
class Entry:
    """A registered kind: its class, the dataclass typing its arguments, its presets."""

    name: str
    cls: type
    config: type
    presets: dict[str, Any] = field(default_factory=dict)
    default_preset: str | None = None


class Registry:
    """Names → classes of one kind of component, with typed arguments."""

    def __init__(self, what: str, builtins: str, context: tuple[str, ...] = (), required: tuple[str, ...] = ()):
        self.what = what
        self.builtins = builtins  # the module registering the package's own kinds
        self.context = context  # arguments the builder supplies (e.g. a head's embed_dim)
        self.required = required  # arguments every class of this kind must take
        self._entries: dict[str, Entry] = {}
        self._plugins: dict[str, Entry] = {}  # module:Class kinds imported so far

    def register(self, name: str, *, presets: dict[str, Any] | None = None, default_preset: str | None = None):
        """Class decorator: ``@HEADS.register("aam")``."""

        def deco(cls: type) -> type:
            if name in self._entries:
                raise ValueError(f"{self.what} kind {name!r} is already registered")
            self._entries[name] = self._entry(name, cls, presets or {}, default_preset)
            return cls

        return deco

    def _load_builtins(self) -> None:
        # The package's kinds register when their module is imported; a config may be read
        # before anything imported it.
        if self.builtins not in sys.modules:
            importlib.import_module(self.builtins)

    def names(self) -> list[str]:
        self._load_builtins()
        return list(self._entries)

    def _entry(self, name: str, cls: type, presets: dict[str, Any], default_preset: str | None) -> Entry:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise InputError(f"{self.what} kind {name!r}: {getattr(cls, '__name__', cls)!r} is not a torch.nn.Module class")
        config = getattr(cls, "Config", None)
        if not dataclasses.is_dataclass(config):
            config = _config_from_init(cls, self.context)
        fields = {f.name for f in dataclasses.fields(config)}
        missing = [r for r in self.required if r not in fields]
        if missing:
            raise InputError(f"{self.what} kind {name!r}: {cls.__name__} must take argument(s) {', '.join(missing)}")
        return Entry(name, cls, config, presets, default_preset)

    def entry(self, kind: str, *, where: str = "", trusted: bool = True) -> Entry:
        """The entry of a registered name or of ``module:Class``.

        ``trusted=False`` (a kind read from a model file) imports a module only when
        :func:`_plugin_allowed` says so."""
        where = f"{where}: " if where else ""
        self._load_builtins()
        if kind in self._entries:
            return self._entries[kind]
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise InputError(
                f"{where}unknown {self.what} kind {kind!r} (registered: {', '.join(self._entries)}; "
                f"or module:Class)"
            )
        if kind in self._plugins:
            return self._plugins[kind]
        module, cls_name = kind.split(":")
        if not trusted and not _plugin_allowed(module):
            raise InputError(
                f"{where}{self.what} kind {kind!r} is a plug-in; a model file may not import code by itself: "
                f"import {module} first, or allow it (JEFFREYS_PLUGINS={module}, jeffreys.registry.allow)"
            )
        try:
            mod = importlib.import_module(module)
        except Exception as e:  # the module's own import errors, reported in one line
            raise InputError(f"{where}{self.what} kind {kind!r}: cannot import {module} ({type(e).__name__}: {e})") from None
        cls = getattr(mod, cls_name, None)
        if cls is None:
            raise InputError(f"{where}{self.what} kind {kind!r}: {module} has no {cls_name}")
        entry = self._entry(kind, cls, dict(getattr(cls, "presets", {}) or {}), getattr(cls, "default_preset", None))
        self._plugins[kind] = entry
        return entry

    def build(self, component: Component, *, source: str = "", **context: Any) -> nn.Module:
        """Instantiate ``component`` with the builder's ``context`` (e.g. embed_dim, num_classes)."""
        entry = self.entry(component.kind, trusted=component.trusted)
        try:
            obj = entry.cls(**context, **component.args)
        except (TypeError, ValueError) as e:
            where = f"{source}: " if source else ""
            raise InputError(f"{where}{self.what} {component.kind!r}: {e}") from None
        obj.component = component  # what rebuilds it (the bundle records it)
        return obj

    def kind_of(self, cls: type) -> str:
        """The registered name of ``cls``, else its ``module:Class``."""
        self._load_builtins()
        for name, e in self._entries.items():
            if e.cls is cls:
                return name
        return f"{cls.__module__}:{cls.__qualname__}"


class Component:
    """A configured component of one kind: ``kind``, its typed arguments, its preset.

    Subclasses bind a registry and the kind used when a section gives none. In a config
    dataclass, a field of such a type reads the section as described in the module doc."""

    registry: ClassVar[Registry]
    default_kind: ClassVar[str]

    def __init__(self, kind: str, args: dict[str, Any] | None = None, preset: str | None = None, *, trusted: bool = True):
        self.kind, self.args, self.preset, self.trusted = kind, dict(args or {}), preset, trusted

    @classmethod
    def from_config(cls, data: Any, *, source: str = "", prefix: str = "", trusted: bool = True) -> Component:
        """A config section (a mapping, ``kind`` optional) → validated component."""
        if data is None:
            data = {}
        if isinstance(data, Component):
            data = data.as_dict()
        if not isinstance(data, dict):
            raise InputError(f"{source}: key '{prefix}': must be a mapping with a 'kind', got {type(data).__name__}")
        reg = cls.registry
        args = dict(data)
        kind = args.pop("kind", cls.default_kind)
        where = f"{source}: key '{prefix}.kind'" if prefix else source
        entry = reg.entry(kind, where=where, trusted=trusted)
        preset = args.pop("preset", entry.default_preset) if entry.presets else None
        base: dict[str, Any] = {}
        if preset is not None:
            if preset not in entry.presets:
                raise InputError(f"{source}: key '{prefix}.preset': unknown preset {preset!r} (known: {', '.join(entry.presets)})")
            base = to_dict(entry.presets[preset])
        # null for a key the kind does not take unsets it (switching kind with --set clears
        # the previous kind's arguments); any other unknown key is an error.
        known = {f.name for f in dataclasses.fields(entry.config)}
        args = {k: v for k, v in args.items() if v is not None or k in known}
        ctx = [k for k in args if k in reg.context]
        if ctx:
            raise InputError(f"{source}: key '{prefix}.{ctx[0]}': set by the trainer, not in the config")
        typed = from_dict(entry.config, {**base, **args}, source=source, prefix=prefix)
        return cls(kind, to_dict(typed), preset, trusted=trusted)

    @classmethod
    def of(cls, obj: nn.Module) -> Component:
        """The component ``obj`` was built from; for an object built directly, read back from
        its attributes named like its arguments (or its ``config_args()``)."""
        comp = getattr(obj, "component", None)
        if isinstance(comp, Component):
            return comp
        kind = cls.registry.kind_of(type(obj))
        entry = cls.registry.entry(kind)
        if hasattr(obj, "config_args"):
            args = obj.config_args()
        else:
            args = {f.name: getattr(obj, f.name) for f in dataclasses.fields(entry.config) if hasattr(obj, f.name)}
        return cls.from_config({"kind": kind, **args}, source=type(obj).__name__)

    def as_dict(self) -> dict[str, Any]:
        """The config section (for YAML and the bundle): kind, preset, arguments."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.preset is not None:
            out["preset"] = self.preset
        return {**out, **self.args}

    def build(self, *, source: str = "", **context: Any) -> nn.Module:
        return self.registry.build(self, source=source, **context)

    def __getattr__(self, name: str) -> Any:
        # cfg.head.scale: the arguments read like fields (only called for missing attributes)
        args = self.__dict__.get("args", {})
        if name in args:
            return args[name]
        raise AttributeError(f"{type(self).__name__} of kind {self.__dict__.get('kind')!r} has no argument {name!r}")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.as_dict() == self.as_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.as_dict()!r})"


def _config_from_init(cls: type, context: tuple[str, ...]) -> type:
    """A dataclass typing ``cls.__init__``'s keyword arguments (context ones left out)."""
    init = cls.__init__
    try:
        hints = get_type_hints(init)
    except Exception as e:
        raise InputError(f"{cls.__name__}.__init__: cannot read its annotations ({e})") from None
    fields = []
    for p in list(inspect.signature(init).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in context:
            continue
        if p.name not in hints:
            raise InputError(f"{cls.__name__}.__init__: argument {p.name!r} needs a type annotation (or give the class a Config dataclass)")
        default = dataclasses.field() if p.default is p.empty else dataclasses.field(default=p.default)
        fields.append((p.name, hints[p.name], default))
    # Required arguments first, as dataclasses require.
    fields.sort(key=lambda f: f[2].default is not dataclasses.MISSING)
    return dataclasses.make_dataclass(f"{cls.__name__}Config", fields)


# The three kinds. Heads get embed_dim and num_classes from the trainer; a model must take
# the front-end's num_mel_bins and the embedding size.
MODELS = Registry("model", "jeffreys.models.resnet", required=("num_mel_bins", "embed_dim"))
HEADS = Registry("head", "jeffreys.losses.heads", context=("embed_dim", "num_classes"))
LOSSES = Registry("loss", "jeffreys.losses.regularizers")


class ModelSpec(Component):
    registry = MODELS
    default_kind = "resnet"


class HeadSpec(Component):
    registry = HEADS
    default_kind = "aam"


class LossSpec(Component):
    registry = LOSSES
    default_kind = "ce"


__all__ = ["Component", "Entry", "HEADS", "HeadSpec", "LOSSES", "LossSpec", "MODELS", "ModelSpec", "Registry", "allow"]
