"""Every reader of a text (or Kaldi) file given by the user: for any bytes it parses, or it
raises our one-line InputError; never another exception.

The bytes are either arbitrary or assembled from the tokens the formats are made of (ids,
numbers, labels, non-finite numbers, pipes, ranges, YAML and JSON syntax, a byte-order mark,
bytes that are not UTF-8), which reach much deeper into the parsers than noise does.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jeffreys.config import load_config
from jeffreys.data.datadir import read_datadir
from jeffreys.data.dataset import load_labels
from jeffreys.data.trials import read_models, read_scores, read_trials
from jeffreys.embeddings import read_embeddings, write_embeddings
from jeffreys.errors import InputError
from jeffreys.scoring import LinearCalibration, load_mean
from jeffreys.train import TrainConfig

TOKENS = [
    "u1", "u2", "spk1", "a/b.wav", "r1", "target", "nontarget", "1", "0", "-1", "0.5", "2.5", "1e3", "nan", "inf",
    "-inf", "NaN", "Infinity", " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x1c", "\u00a0", "\u2028", "|", "| ", " |",
    "[0:1]", "[", "]", ":", ":12", ",", "PKL", "\x00B", "\x00", "FV ", "\x04", "/dev/zero", "x.ark", "x.ark:3", "#", "-", "- ", "{", "}", "\"", "'", "a:",
    " b: 1", "!!python/object", "&a", "*a", "2023-02-30", "~", "null", "true", "{\"a\": 1}", "\ufeff", "é",
]
TEXT = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)
DATA = st.one_of(st.binary(max_size=300), TEXT.map(lambda t: t.encode("utf-8")),
                 st.tuples(TEXT, st.binary(max_size=8)).map(lambda x: x[0].encode() + x[1]))
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _accepts(read, data: bytes, name: str, *, files: dict[str, bytes] | None = None):
    """``read(path)`` of a file holding ``data`` returns or raises InputError, nothing else."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for n, content in (files or {}).items():
            (root / n).write_bytes(content)
        path = root / name
        path.write_bytes(data)
        try:
            read(path)
        except InputError as e:
            assert str(e).strip() and "\n" not in str(e).strip(), repr(str(e))


@pytest.mark.parametrize("table", ["wav.scp", "utt2spk", "spk2utt", "segments", "utt2dur"])
@FUZZ
@given(data=DATA)
@example(b"r1 r1 0 inf\nu2 r1 0 1\n")
@example(b"r1 a\x00b.wav\nu2 b\n")
@example(b"\xef\xbb\xbfr1 spk1\nu2 spk1\n")
@example(b"r1 nan\nu2 1\n")
def test_datadir_tables(table, data):
    good = {"wav.scp": b"r1 /nonexistent/a.wav\nu2 /nonexistent/b.wav\n", "utt2spk": b"r1 spk1\nu2 spk1\n"}
    files = {k: v for k, v in good.items() if k != table}
    _accepts(lambda p: read_datadir(p.parent, check_files=False), data, table, files=files)
    _accepts(lambda p: read_datadir(p.parent, check_files=True), data, table, files=files)


@FUZZ
@given(data=DATA)
@example(b"\xef\xbb\xbfu1 u2 target\n")
@example(b"u1 u2 target\n\x1c u1 u2 nontarget\n")
def test_trials(data):
    _accepts(read_trials, data, "trials")


@FUZZ
@given(data=DATA)
@example(b"u1 u2 nan\n")
@example(b"u1 u2 1\nu1 u2 2\n")
@example(b"u1 u2 1 target\nu1 u2 2 0\n")
@example("u1 u2 \u0661\n".encode())  # an Arabic-Indic digit: float() reads it
def test_scores(data):
    _accepts(read_scores, data, "scores")


@FUZZ
@given(data=DATA)
def test_models(data):
    _accepts(read_models, data, "models")


@FUZZ
@given(data=DATA)
def test_labels(data):
    _accepts(load_labels, data, "labels.txt")


@FUZZ
@given(data=DATA)
@example(b"seed: 2023-02-30\n")  # PyYAML raises ValueError for an impossible date
@example(b"[" * 5000)  # RecursionError
@example(b"optim: {lr: .nan}\n")
@example(b"steps: !!python/object/apply:os.getpid []\n")
@example(b"- a\n- b\n")
def test_training_configs(data):
    _accepts(lambda p: load_config(TrainConfig, p), data, "train.yaml")


@FUZZ
@given(data=DATA)
@example(b'{"type": "linear", "a": NaN, "b": 0, "prior": 0.5}')
@example(b'{"type": "linear", "a": 1e999, "b": 0, "prior": 0.5}')
@example(b"[" * 100000)
def test_calibrations(data):
    _accepts(LinearCalibration.load, data, "cal.json")


@FUZZ
@given(data=DATA)
@example(b"u1 a\x00b.ark:3\n")  # a NUL byte in a path
@example(b"u1 /dev/zero:3\n")  # never read a device
@example(b"u1 x.ark:99999999999999999999\n")
@example(b"u1 x.ark:3[0:0,9:9]\n")
@example(b"u1 x.ark:3[a:b]\n")
@example(b"u1 cat x.ark |[0:1]\n")
def test_embedding_scp(data):
    _accepts(read_embeddings, data, "x.scp", files={"x.ark": b"u1 \x00BFV \x04\x02\x00\x00\x00\x00\x00\x80?\x00\x00\x00@"})


@FUZZ
@given(data=DATA)
@example(b"PKL\x80\x04N.")
@example(b"\x00BCM \x00\x00\x80?\x00\x00\x80?\xff\xff\xff\x7f\xff\xff\xff\x7f")
@example(b"\x00B\x04\x03\x00\x00\x00\x04")  # an int32 vector, cut short
@example(b" [ 1 2\n 3 ]\n")  # a text matrix with ragged rows
@example(b" [ 1 2 \xff ]\n")
def test_embedding_ark(data):
    _accepts(read_embeddings, data, "x.ark")
    _accepts(read_embeddings, b"u1 " + data, "y.ark")  # a key, then any record bytes


@FUZZ
@given(data=DATA)
def test_embedding_id_list(data):
    with tempfile.TemporaryDirectory() as d:
        np.save(Path(d) / "x.npy", np.ones((2, 3), np.float32))
        _accepts(read_embeddings, data, "x.ids", files={"x.npy": (Path(d) / "x.npy").read_bytes()})


@FUZZ
@given(data=st.binary(max_size=400))
def test_npy_means(data):
    _accepts(load_mean, b"\x93NUMPY" + data, "mean.npy")
    _accepts(load_mean, data, "mean.npy")


def test_corrupt_kaldi_records_reach_the_parser(tmp_path):
    """The fuzzing above reaches kaldiio's parser, not only our checks: a valid file round
    trips, and a record header claiming 2^31 x 2^31 floats is a short read, not a huge
    allocation."""
    write_embeddings(tmp_path / "ok", ["a", "b"], np.eye(2, 3))
    assert read_embeddings(tmp_path / "ok.ark")[0] == ["a", "b"]
    (tmp_path / "huge.ark").write_bytes(b"u1 \x00BFM \x04\xff\xff\xff\x7f\x04\xff\xff\xff\x7f" + b"\x00" * 64)
    with pytest.raises(InputError, match="huge.ark: record 1 .*corrupt Kaldi record"):
        read_embeddings(tmp_path / "huge.ark")
