"""Trial lists and models files: the fast whole-file path against a per-line reference, both
formats, and every error naming file:line."""

import numpy as np
import pytest

from jeffreys.data.trials import Models, read_models, read_scores, read_trials, write_trials
from jeffreys.errors import InputError


def reference(text):
    """What a trial list means, written independently: per line, Kaldi if the 3rd word is a
    Kaldi label, else VoxCeleb if the 1st is 1|0."""
    out = []
    for line in text.splitlines():
        w = line.split()
        if not w:
            continue
        assert len(w) == 3
        if w[2] in ("target", "nontarget"):
            out.append((w[0], w[1], w[2] == "target"))
        else:
            assert w[0] in ("1", "0")
            out.append((w[1], w[2], w[0] == "1"))
    return out


def as_rows(t):
    return list(zip(t.enroll, t.test, t.label.tolist()))


def random_lines(rng, n, fmt):
    ids = [f"id{k % 7:05d}/v{k:03d}/{k:05d}.wav" for k in range(40)]
    out = []
    for k in rng.choice(40 * 40, n, replace=False):  # each pair once (a repeated trial is refused)
        e, t = ids[k // 40], ids[k % 40]
        y = bool(rng.integers(2))
        kaldi = fmt == "kaldi" or (fmt == "mixed" and rng.integers(2))
        out.append(f"{e} {t} {'target' if y else 'nontarget'}" if kaldi else f"{int(y)} {e} {t}")
    return out


@pytest.mark.parametrize("fmt", ["kaldi", "vox", "mixed"])
@pytest.mark.parametrize("layout", ["plain", "blank lines", "crlf and tabs", "no final newline"])
def test_read_trials_against_reference(tmp_path, fmt, layout):
    rng = np.random.default_rng(len(fmt) * 10 + len(layout))
    lines = random_lines(rng, 200, fmt)
    text = "\n".join(lines) + "\n"
    if layout == "blank lines":
        text = "\n" + text.replace(lines[5] + "\n", lines[5] + "\n\n  \n") + "\n"
    elif layout == "crlf and tabs":
        text = text.replace("\n", "\r\n").replace(" ", " \t ")
    elif layout == "no final newline":
        text = text.rstrip("\n")
    (tmp_path / "t").write_text(text, encoding="utf-8", newline="")
    t = read_trials(tmp_path / "t")
    assert as_rows(t) == reference(text)
    assert t.label.dtype == bool and t.n_target == sum(y for *_, y in reference(text))


def test_kaldi_label_wins_on_a_line_that_fits_both(tmp_path):
    # '1 x target' is a Kaldi line whose enrolment id is '1' (per-line rule), in a whole
    # file of such lines as in a mixed one
    (tmp_path / "a").write_text("1 x target\n0 y nontarget\n")
    assert as_rows(read_trials(tmp_path / "a")) == [("1", "x", True), ("0", "y", False)]
    (tmp_path / "b").write_text("1 x target\n1 y z\n")
    assert as_rows(read_trials(tmp_path / "b")) == [("1", "x", True), ("y", "z", True)]


def test_write_read_round_trip(tmp_path):
    rows = [("a", "b", True), ("c", "d", False)]
    write_trials(tmp_path / "t", rows)
    assert as_rows(read_trials(tmp_path / "t")) == rows


@pytest.mark.parametrize(
    "text, message",
    [
        ("a b target\nc d maybe\n", r"t:2: not a trial line .*'c d maybe'"),
        ("a b target\n\nc d\n", r"t:3: not a trial line .*'c d'"),
        ("1 a b\n2 c d\n", r"t:2: not a trial line"),
        ("a b target x\n", r"t:1: not a trial line"),
        ("\n  \n", r"t: no trials"),
        ("", r"t: no trials"),
    ],
)
def test_read_trials_errors_name_the_line(tmp_path, text, message):
    (tmp_path / "t").write_text(text)
    with pytest.raises(InputError, match=message):
        read_trials(tmp_path / "t")


def test_read_trials_file_errors(tmp_path):
    with pytest.raises(InputError, match="nope: no such trials file"):
        read_trials(tmp_path / "nope")
    with pytest.raises(InputError, match="is a directory, expected a trials file"):
        read_trials(tmp_path)
    (tmp_path / "bin").write_bytes(b"a b target\n\xff\xfe c nontarget\n")
    with pytest.raises(InputError, match=r"bin:\d+: not UTF-8 text"):
        read_trials(tmp_path / "bin")


def test_read_trial_pairs(tmp_path):
    from jeffreys.data.trials import read_trial_pairs

    (tmp_path / "p").write_text("model_2 evl_2\nmodel_1 evl_1\n")
    assert read_trial_pairs(tmp_path / "p") == [("model_2", "evl_2"), ("model_1", "evl_1")]  # file order
    for text, message in (("a b\nc d target\n", r"p:2: expected 2 fields, got 3"), ("a b\n\nc d\n", r"p:2: expected 2 fields, got 0"),
                          ("", r"p: no trial pairs")):
        (tmp_path / "p").write_text(text)
        with pytest.raises(InputError, match=message):
            read_trial_pairs(tmp_path / "p")
    with pytest.raises(InputError, match="no such file"):
        read_trial_pairs(tmp_path / "nope")


# ----------------------------------------------------------------------------- models files
def test_read_models(tmp_path):
    (tmp_path / "models").write_text("m2 u1 u2 u3\nm1 u4\nm3 u1 u1\n")
    m = read_models(tmp_path / "models")
    assert dict(m) == {"m2": ["u1", "u2", "u3"], "m1": ["u4"], "m3": ["u1", "u1"]}
    assert list(m) == ["m2", "m1", "m3"]  # file order
    assert m.locate("m1") == f"{tmp_path / 'models'}:2"
    assert Models.of(m) is m and dict(Models.of(str(tmp_path / "models"))) == dict(m)
    d = Models.of({"a": ["x", "y"], "b": "z"})
    assert dict(d) == {"a": ["x", "y"], "b": ["z"]} and d.locate("a") == "models"


@pytest.mark.parametrize(
    "text, message",
    [
        ("m1 u1\nm2 u2\nm1 u3\n", r"models:3: duplicate model 'm1' \(first on line 1\)"),
        ("m1 u1\nm2\n", r"models:2: model 'm2' has no enrolment utterances"),
        ("m1 u1\n\nm2 u2\n", r"models:2: expected 1\+ fields, got 0"),
        ("", r"models: no models"),
    ],
)
def test_read_models_errors(tmp_path, text, message):
    (tmp_path / "models").write_text(text)
    with pytest.raises(InputError, match=message):
        read_models(tmp_path / "models")


def test_models_of_bad_input(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_models(tmp_path / "nope")
    with pytest.raises(InputError, match="model 'a' has no enrolment utterances"):
        Models.of({"a": []})
    with pytest.raises(InputError, match="models: no models"):
        Models.of({})
    with pytest.raises(InputError, match="models must be a path or a mapping"):
        Models.of(3)


@pytest.mark.parametrize("text,line,first", [
    ("a b 0.1\nc d 0.2\na b 0.3\n", 3, 1),  # scored twice
    ("a b 0.1 target\nc d 0.2 0\n\nc d 0.5 1\n", 4, 2),  # both labels, after a blank line
])
def test_a_pair_scored_twice_is_refused(tmp_path, text, line, first):
    (tmp_path / "s").write_text(text)
    with pytest.raises(InputError, match=rf"s:{line}: pair .* is scored again \(first on line {first}\)"):
        read_scores(tmp_path / "s")
