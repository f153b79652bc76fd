"""Typed YAML configs: dataclasses in, one-line errors naming the key and the file out.

A config section is a (frozen or not) dataclass whose fields carry type annotations made
of ``int``, ``float``, ``bool``, ``str``, ``Literal[...]``, ``X | None``, ``list[X]``,
``tuple[X, ...]``, ``dict[str, X]``, nested dataclasses and plug-in sections (a type with a
``from_config`` class method, e.g. :class:`jeffreys.registry.HeadSpec`). :func:`from_dict` builds one
from plain data (as read from YAML), rejecting unknown keys and wrong types with the dotted
key path and the file name; :func:`to_dict` gives back plain data for saving the config an
experiment ran with. Floats must be finite: no config key takes ``.nan`` or ``.inf``.

Command-line overrides (``--set optim.lr=0.1``) are read by :func:`parse_overrides` and
applied to the YAML data by :func:`apply_overrides`, the one implementation every command
uses.

YAML is read by :func:`yaml_data` (configs through :func:`load_yaml`, ``--set`` values too):
``yaml.safe_load``'s tags (no Python objects), and a bound on what aliases may build, which
``safe_load`` lacks. An alias (``*a``) stands for the whole node it names, so nine lines of
"billion laughs" aliases make a document of 10^9 nodes, and an alias inside the node it
names makes an endless one; anything that walks the data (the typed schema, saving the
config) would then run out of memory or recurse forever. The rule: the document read as a
tree, every alias expanded, may hold at most ``JEFFREYS_MAX_CONFIG_NODES`` nodes (100,000 by
default, :data:`jeffreys.fileio.LIMITS`; a config has hundreds), counted on the composed
nodes without building anything, and no alias may refer to a node that contains it. Both
are one-line errors naming the file and the line (as ``sed -n Np`` counts lines).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import InputError, excerpt, one_line, shown
from .fileio import limit, read_text, write_text_atomic

T = TypeVar("T")


def _fail(source: str, key: str, message: str) -> InputError:
    where = f"{source}: " if source else ""
    return InputError(f"{where}key '{key}': {message}" if key else f"{where}{message}")


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _fail(source, key, "must not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, source)
            except InputError as e:
                errors.append(e)
        raise errors[0]
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise _fail(source, key, f"must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source=source, prefix=key)
    if isinstance(tp, type) and hasattr(tp, "from_config"):  # a plug-in section (jeffreys.registry)
        return tp.from_config(value, source=source, prefix=key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _fail(source, key, f"must be a list, got {type(value).__name__} {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _fail(source, key, f"must have {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_convert(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise _fail(source, key, f"must be a mapping, got {type(value).__name__}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_convert(k, kt, key, source): _convert(v, vt, f"{key}.{k}", source) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(source, key, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(source, key, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        # YAML reads "2e-4" as a string (YAML 1.1); accept numeric strings for floats.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(source, key, f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise _fail(source, key, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _fail(source, key, f"must be a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, str):
            raise _fail(source, key, f"must be a path string, got {value!r}")
        return Path(value)
    raise TypeError(f"config type {tp!r} of key '{key}' is not supported")


def from_dict(cls: type[T], data: Any, *, source: str = "", prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad types raise InputError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _fail(source, prefix, f"must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        name = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise _fail(source, name, f"unknown key (known: {', '.join(fields)})")
    kwargs = {}
    for name, value in data.items():
        full = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _convert(value, hints[name], full, source)
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        name = f"{prefix}.{missing[0]}" if prefix else missing[0]
        raise _fail(source, name, "is required")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # __post_init__ checks
        raise _fail(source, prefix, str(e)) from None


def to_dict(obj: Any) -> Any:
    """Plain data (dicts, lists, scalars) of a config dataclass, for YAML/JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "as_dict"):  # a plug-in section (jeffreys.registry)
        return to_dict(obj.as_dict())
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that stops composing after ``max_nodes`` nodes (aliases counted)."""

    def __init__(self, stream: str, max_nodes: int):
        super().__init__(stream)
        self.max_nodes, self.nodes = max_nodes, 0

    def compose_node(self, parent, index):
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise _Refused(f"more than {self.max_nodes} YAML nodes", self.peek_event().start_mark.index)
        return super().compose_node(parent, index)


class _Refused(Exception):
    def __init__(self, what: str, index: int):
        super().__init__(what)
        self.what, self.index = what, index


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return []


def _check_expansion(root: yaml.Node, max_nodes: int) -> None:
    """Refuse (:class:`_Refused`) a node graph that, every alias expanded, has more than
    ``max_nodes`` nodes, or that contains itself. Each node's expanded size is computed once
    (depth-first, without recursion), so the check costs the composed size, not the
    expanded one."""
    size: dict[int, int] = {}
    open_ = {id(root)}
    stack = [(root, iter(_children(root)))]
    while stack:
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            open_.discard(id(node))
            n = 1 + sum(size[id(c)] for c in _children(node))
            if n > max_nodes:
                raise _Refused(f"aliases expand to more than {max_nodes} YAML nodes", node.start_mark.index)
            size[id(node)] = n
        elif id(child) in open_:
            raise _Refused("an alias refers to a node that contains it (a recursive structure)", child.start_mark.index)
        elif id(child) not in size:
            open_.add(id(child))
            stack.append((child, iter(_children(child))))


def _line(text: str, index: int | None) -> str:
    """`` line N:`` for a character offset, lines counted on ``\\n`` only (YAML also breaks
    lines at ``\\r``, ``\\x85``, ``\\u2028``, ``\\u2029``, which would shift the number)."""
    return "" if index is None else f" line {text.count(chr(10), 0, index) + 1}:"


def yaml_data(text: str, source: str) -> Any:
    """Plain data of YAML ``text`` (``yaml.safe_load``'s tags, aliases bounded as the module
    docstring says); every failure is one InputError starting with ``source``."""
    max_nodes, loader = limit("JEFFREYS_MAX_CONFIG_NODES"), None
    try:
        loader = _BoundedLoader(text, max_nodes)  # the reader checks the characters here
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, max_nodes)
        return loader.construct_document(node)
    except _Refused as e:
        why = " (JEFFREYS_MAX_CONFIG_NODES raises the limit)" if "more than" in e.what else ""
        raise InputError(f"{source}:{_line(text, e.index)} refused: {e.what}{why}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        index = mark.index if mark is not None else getattr(e, "position", None)
        problem = getattr(e, "problem", None) or getattr(e, "reason", None) or type(e).__name__
        raise InputError(f"{source}:{_line(text, index)} invalid YAML: {one_line(problem, 120)}") from None
    except (ValueError, TypeError, OverflowError) as e:  # e.g. a date 2023-02-30
        raise InputError(f"{source}: invalid YAML value: {one_line(str(e).split(chr(10))[0] if str(e) else type(e).__name__, 120)}") from None
    except RecursionError:
        raise InputError(f"{source}: invalid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml(path: str | Path) -> Any:
    """Plain data of a YAML file (:func:`yaml_data`: no tags that build Python objects, aliases
    bounded). Every failure is one InputError naming the file (and line when there is one)."""
    path = Path(path)
    return yaml_data(read_text(path, "config")[1], shown(path))


_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=0.1", "model.widths=[8,16,32,64]"]`` → ``{dotted key: YAML value}``.

    Each item is ``KEY=VALUE`` with a dotted key and a YAML value; anything else is an
    InputError naming the item."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _DOTTED.fullmatch(key):
            raise InputError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. optim.lr=0.1")
        try:
            out[key] = yaml_data(value, "")
        except InputError as e:
            raise InputError(f"--set {excerpt(item)}: value is not valid YAML ({str(e).lstrip(': ')})") from None
    return out


def apply_overrides(data: Any, overrides: dict[str, Any], *, source: str = "") -> Any:
    """A copy of config ``data`` with each dotted key of ``overrides`` set (``optim.lr``:
    ``data["optim"]["lr"]``), missing sections created. Setting a key under a value that is
    not a mapping (``steps.x`` when ``steps`` is a number), or any key when the config is not
    a mapping, is an error naming the key."""
    if not overrides:
        return data
    where = f"{source}: " if source else ""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{where}cannot set {next(iter(overrides))!r}: the config is a {type(data).__name__}, not a mapping")
    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node = data
        *parents, last = dotted.split(".")
        for i, p in enumerate(parents):
            if node.get(p) is None:  # a missing or null section
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise InputError(f"{where}cannot set {dotted!r}: {'.'.join(parents[: i + 1])!r} is a {type(node).__name__}, not a section")
        node[last] = value
    return data


def load_config(cls: type[T], path: str | Path, overrides: dict[str, Any] | None = None) -> T:
    """Read YAML file ``path`` into dataclass ``cls``; ``overrides`` are dotted keys."""
    data = apply_overrides(load_yaml(path) or {}, overrides or {}, source=str(path))
    return from_dict(cls, data, source=str(path))


def save_config(obj: Any, path: str | Path) -> None:
    """The config as YAML (atomically)."""
    write_text_atomic(path, yaml.safe_dump(to_dict(obj), sort_keys=False))


__all__ = [
    "apply_overrides", "from_dict", "to_dict", "load_yaml", "load_config", "parse_overrides", "save_config", "yaml_data",
]
