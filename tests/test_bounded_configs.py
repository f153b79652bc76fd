"""Configs are bounded: YAML aliases that expand past ``JEFFREYS_MAX_CONFIG_NODES`` nodes
("billion laughs", of any depth and width, in sequences, mappings and merge keys) and
aliases that refer to a node containing them (recursive structures, direct or through
other anchors) are refused in one line naming the file and the line; configs whose aliases
stay within the limit read as ``yaml.safe_load`` reads them. ``yaml.safe_load`` alone
accepts every one of the refused documents."""

from __future__ import annotations

import random
import re

import pytest
import yaml

from jeffreys.config import load_config, load_yaml, parse_overrides
from jeffreys.errors import InputError
from jeffreys.train import TrainConfig


def laughs(depth: int, width: int, style: str) -> tuple[str, int]:
    """A document whose level i repeats level i-1 ``width`` times; (text, nodes as a tree)."""
    lines, size = [], 1
    if style == "seq":
        lines.append("a0: &a0 lol")
        for i in range(1, depth + 1):
            lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
            size = 1 + width * size
    elif style == "map":
        lines.append("a0: &a0 lol")
        for i in range(1, depth + 1):
            lines.append(f"a{i}: &a{i} {{" + ", ".join(f"k{j}: *a{i - 1}" for j in range(width)) + "}")
            size = 1 + width * (1 + size)
    else:  # block style, one alias a line
        lines.append("a0: &a0 lol")
        for i in range(1, depth + 1):
            lines.append(f"a{i}: &a{i}")
            lines += [f"  - *a{i - 1}"] * width
            size = 1 + width * size
    return "\n".join(lines) + "\n", size  # the top mapping's other entries add little


def test_billion_laughs_of_any_depth_and_width_are_refused_past_the_limit(tmp_path, monkeypatch):
    rng = random.Random(0)
    refused = accepted = 0
    for trial in range(40):
        depth, width, style = rng.randint(2, 14), rng.randint(2, 10), rng.choice(["seq", "map", "block"])
        cap = rng.choice([1000, 100_000])
        if trial % 2:
            monkeypatch.setenv("JEFFREYS_MAX_CONFIG_NODES", str(cap))
        else:
            monkeypatch.delenv("JEFFREYS_MAX_CONFIG_NODES", raising=False)
            cap = 100_000
        text, size = laughs(depth, width, style)
        p = tmp_path / f"c{trial}.yaml"
        p.write_text(text)
        assert yaml.safe_load(text) is not None  # what safe_load alone lets through
        if size <= cap // 2:
            assert load_yaml(p) == yaml.safe_load(text)
            accepted += 1
        elif size > cap:
            with pytest.raises(InputError) as e:
                load_yaml(p)
            message = str(e.value)
            assert re.fullmatch(rf"{re.escape(str(p))}: line \d+: refused: aliases expand to more than {cap} YAML nodes "
                                r"\(JEFFREYS_MAX_CONFIG_NODES raises the limit\)", message), message
            line = int(re.search(r"line (\d+)", message).group(1))
            assert 1 <= line <= len(text.split("\n"))
            refused += 1
    assert refused >= 10 and accepted >= 5


def test_the_classic_billion_laughs_is_refused_fast_and_through_the_typed_loader(tmp_path):
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
        f"{b}: &{b} [" + ",".join([f"*{a}"] * 9) + "]\n" for a, b in zip("abcdefgh", "bcdefghi"))
    p = tmp_path / "laughs.yaml"
    p.write_text(text)
    for load in (load_yaml, lambda q: load_config(TrainConfig, q)):
        with pytest.raises(InputError, match=rf"laughs.yaml: line \d: refused: aliases expand to more than 100000"):
            load(p)


@pytest.mark.parametrize("seed", range(6))
def test_aliases_to_a_node_that_contains_them_are_refused(tmp_path, seed):
    rng = random.Random(seed)
    shapes = [
        "a: &a [1, *a]",
        "a: &a {b: *a}",
        "a: &a {b: {c: [x, *a]}}",
        "- &a\n  - &b [*a]\n  - *b",
        "x: &x\n  y: &y\n    z: *x",
        "&top {k: [&in [*top]]}",
    ]
    for trial in range(5):
        shape = rng.choice(shapes)
        depth = rng.randint(0, 6)
        text = shape
        for _ in range(depth):  # wrapped in more levels, with harmless siblings
            text = "w:\n" + "\n".join("  " + x for x in text.split("\n")) + f"\nsib{rng.randint(0, 99)}: 1"
        p = tmp_path / f"r{seed}-{trial}.yaml"
        p.write_text(text + "\n")
        yaml.safe_load(text)  # safe_load builds the endless structure without complaint
        with pytest.raises(InputError) as e:
            load_yaml(p)
        assert re.fullmatch(rf"{re.escape(str(p))}: line \d+: refused: an alias refers to a node that contains it "
                            r"\(a recursive structure\)", str(e.value)), str(e.value)


def test_aliases_within_the_limit_and_merge_keys_read_as_safe_load_reads_them(tmp_path):
    text = ("base: &base {lr: 0.1, momentum: 0.9}\n"
            "optim: {<<: *base, lr: 0.2}\n"
            "other: *base\n"
            "list: &l [1, 2, 3]\n"
            "again: [*l, *l]\n")
    p = tmp_path / "ok.yaml"
    p.write_text(text)
    assert load_yaml(p) == yaml.safe_load(text)


def test_the_node_limit_is_overridable_and_counts_nodes_without_aliases_too(tmp_path, monkeypatch):
    p = tmp_path / "big.yaml"
    p.write_text("".join(f"k{i}: {i}\n" for i in range(60)))  # 121 nodes, no alias
    monkeypatch.setenv("JEFFREYS_MAX_CONFIG_NODES", "100")
    with pytest.raises(InputError, match=r"big.yaml: line \d+: refused: more than 100 YAML nodes"):
        load_yaml(p)
    monkeypatch.setenv("JEFFREYS_MAX_CONFIG_NODES", "121")
    assert len(load_yaml(p)) == 60


def test_overrides_on_the_command_line_are_bounded_too():
    deep = "[&a [1,1], " + ", ".join(f"&{b} [*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a}]" for a, b in zip("abcdef", "bcdefg")) + "]"
    with pytest.raises(InputError, match=r"--set 'x=.*value is not valid YAML \(line 1: refused: aliases expand"):
        parse_overrides([f"x={deep}"])
    with pytest.raises(InputError, match=r"--set 'x=&a \[\*a\]': value is not valid YAML \(line 1: refused: an alias refers"):
        parse_overrides(["x=&a [*a]"])
    assert parse_overrides(["x=[&a 1, *a]"]) == {"x": [1, 1]}
