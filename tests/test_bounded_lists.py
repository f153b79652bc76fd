"""Lists are bounded: every reader of a text list (trials, scores, models, data-dir tables,
label files, embedding scp and id lists, configs) refuses a file past the list limits of
:mod:`jeffreys.fileio` (bytes from ``fstat`` before reading; lines and line length while
reading), names the file (and the line), and says which variable raises the limit.

Inputs are generated: long lines of random lengths at random places, counts just over and
far over the limit, and chunk sizes that cut lines anywhere, checked against a brute-force
reference."""

from __future__ import annotations

import io
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest

from jeffreys import fileio
from jeffreys.config import load_yaml
from jeffreys.data.datadir import read_datadir
from jeffreys.data.dataset import load_labels
from jeffreys.data.tables import read_table
from jeffreys.data.trials import read_models, read_scores, read_trial_pairs, read_trials
from jeffreys.embeddings import read_embeddings
from jeffreys.errors import InputError
from jeffreys.fileio import LIMITS, read_text


def _datadir_file(name):
    """A reader of one data-dir table: the rest of the dir is valid for lines u0, u1, ..."""

    def read(p: Path):
        d = p.parent
        # as many lines as the table under test has (when small), within the line limit
        n = p.read_bytes().count(b"\n") + 1 if p.stat().st_size < 1 << 20 else 1
        n = min(n, int(os.environ.get("JEFFREYS_MAX_LIST_LINES") or n))
        for other, line in (("wav.scp", "u{i:07d} /x/u{i}.wav"), ("utt2spk", "u{i:07d} s")):
            if other != p.name:
                (d / other).write_text("".join(line.format(i=i) + "\n" for i in range(n)))
        return read_datadir(d, check_files=False)

    return read


def _scp_reader(p: Path):
    return read_embeddings(p)


def _ids_reader(p: Path):
    np.save(p.with_suffix(".npy"), np.ones((1, 2), np.float32))
    return read_embeddings(p.with_suffix(".npy"))


# name: (reader, file name, the i-th valid line)
READERS = {
    "trials-kaldi": (read_trials, "trials", lambda i: f"e{i} t{i} target"),
    "trials-vox": (read_trials, "trials", lambda i: f"1 e{i} t{i}"),
    "scores": (read_scores, "scores", lambda i: f"e{i} t{i} 0.{i}"),
    "scores-labelled": (read_scores, "scores", lambda i: f"e{i} t{i} 0.{i} nontarget"),
    "trial-pairs": (read_trial_pairs, "pairs", lambda i: f"e{i} t{i}"),
    "models": (read_models, "models", lambda i: f"m{i} u{i} v{i}"),
    "table": (read_table, "utt2spk", lambda i: f"u{i} s{i}"),
    "labels": (load_labels, "labels.txt", lambda i: f"s{i} {i}"),
    "wav.scp": (_datadir_file("wav.scp"), "wav.scp", lambda i: f"u{i:07d} /x/u {i}.wav"),
    "utt2spk": (_datadir_file("utt2spk"), "utt2spk", lambda i: f"u{i:07d} s"),
    "embedding-scp": (_scp_reader, "x.scp", lambda i: f"u{i} /nonexistent/x.ark:{i + 1}"),
    "id-list": (_ids_reader, "x.ids", lambda i: f"u{i}"),
    "config": (load_yaml, "c.yaml", lambda i: f"k{i}: {i}"),
}
NEEDS_ONE_LINE = {"id-list"}  # its npy holds one row


def _within_limits(read, path):
    """``read(path)`` returns, or fails for a reason other than a limit (an scp's missing ark)."""
    try:
        read(path)
    except InputError as e:
        assert "JEFFREYS_MAX" not in str(e), str(e)


def _refused(read, path, pattern):
    with pytest.raises(InputError) as e:
        read(path)
    message = str(e.value)
    assert re.search(pattern, message), message
    assert "\n" not in message and len(message) <= 1000


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_line_longer_than_the_limit_is_refused_naming_its_line(tmp_path, monkeypatch, name):
    read, fname, line = READERS[name]
    rng = random.Random(name)
    for trial in range(6):
        max_line = rng.choice([40, 100, 333])
        monkeypatch.setenv("JEFFREYS_MAX_LINE_BYTES", str(max_line))
        monkeypatch.setattr(fileio, "_CHUNK", rng.choice([7, 64, 1000, 8 << 20]))  # lines cut anywhere
        n = 1 if name in NEEDS_ONE_LINE else rng.randint(1, 30)
        lines = [line(i) for i in range(n)]
        k = rng.randint(1, n)
        extra = max_line + rng.choice([1, 2, max_line, 50 * max_line])
        lines[k - 1] = lines[k - 1] + " " + "".join(rng.choice("abcdefghij") for _ in range(extra))
        path = tmp_path / str(trial) / fname
        path.parent.mkdir()
        path.write_text("\n".join(lines) + rng.choice(["", "\n"]))
        _refused(read, path, rf"{re.escape(fname)}:{k}: line longer than {max_line} bytes.*JEFFREYS_MAX_LINE_BYTES")


@pytest.mark.parametrize("name", sorted(set(READERS) - NEEDS_ONE_LINE))
def test_more_lines_than_the_limit_are_refused_and_the_limit_itself_passes(tmp_path, monkeypatch, name):
    read, fname, line = READERS[name]
    rng = random.Random(name)
    for trial in range(4):
        max_lines = rng.choice([1, 5, 37])
        monkeypatch.setenv("JEFFREYS_MAX_LIST_LINES", str(max_lines))
        monkeypatch.setattr(fileio, "_CHUNK", rng.choice([5, 100, 8 << 20]))
        end = rng.choice(["", "\n"])
        ok = tmp_path / f"ok{trial}" / fname
        ok.parent.mkdir()
        ok.write_text("\n".join(line(i) for i in range(max_lines)) + end)
        _within_limits(read, ok)
        over = tmp_path / f"over{trial}" / fname
        over.parent.mkdir()
        n = max_lines + rng.choice([1, 2, 10 * max_lines + 100])
        over.write_text("\n".join(line(i) for i in range(n)) + end)
        _refused(read, over, rf"{re.escape(fname)}: more than {max_lines} lines.*JEFFREYS_MAX_LIST_LINES")


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_file_larger_than_the_limit_is_refused_from_its_size_before_reading(tmp_path, monkeypatch, name):
    read, fname, line = READERS[name]
    rng = random.Random(name)

    original, under_test = fileio._read_bounded, []

    def read_bounded(f, p, *limits):
        assert p not in under_test, "read although larger than the limit"
        return original(f, p, *limits)

    monkeypatch.setattr(fileio, "_read_bounded", read_bounded)
    for trial, size in enumerate([1001, 5000, 1 << 30, 64 << 30]):  # sparse: holes cost no disk
        monkeypatch.setenv("JEFFREYS_MAX_LIST_BYTES", str(rng.choice([100, 1000])))
        path = tmp_path / str(trial) / fname
        under_test.append(path)
        path.parent.mkdir()
        with open(path, "wb") as f:
            f.write((line(0) + "\n").encode())
            f.truncate(size)
        _refused(read, path, rf"{re.escape(fname)}: {size} bytes, more than the limit of \d+ \(JEFFREYS_MAX_LIST_BYTES")
    monkeypatch.delenv("JEFFREYS_MAX_LIST_BYTES")
    huge = tmp_path / "huge" / fname  # the default (4 GiB) refuses a sparse 5 GiB file, unread
    huge.parent.mkdir()
    under_test.append(huge)
    with open(huge, "wb") as f:
        f.truncate(5 << 30)
    _refused(read, huge, r"more than the limit of 4294967296")


def test_the_line_scan_agrees_with_a_brute_force_reference_wherever_the_chunks_fall():
    rng = random.Random(0)
    for _ in range(3000):
        data = bytes(rng.choice(b"ab\n" if rng.random() < 0.5 else b"aaaaaaab\n") for _ in range(rng.randint(0, 150)))
        max_line, max_lines = rng.randint(1, 12), rng.randint(1, 60)
        fileio._CHUNK, chunk = rng.randint(1, 20), fileio._CHUNK
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        long = next((i for i, x in enumerate(lines, 1) if len(x) > max_line), None)
        try:
            got = fileio._read_bounded(io.BytesIO(data), Path("f"), 10**9, max_lines, max_line)
            error = None
        except InputError as e:
            error = str(e)
        finally:
            fileio._CHUNK = chunk
        if long is None and len(lines) <= max_lines:
            assert error is None and got == data
        elif long is None:
            assert error is not None and "more than" in error
        elif len(lines) <= max_lines:
            assert error is not None and error.startswith(f"f:{long}: line longer")
        else:  # both: whichever chunk passes a limit first
            assert error is not None and ("more than" in error or error.startswith(f"f:{long}: line longer"))


def test_a_file_that_grows_while_read_stops_at_the_byte_limit():
    class Endless(io.RawIOBase):  # what the stat said was small keeps coming
        def readinto(self, b):
            b[:] = b"a b\n" * (len(b) // 4) + b"a" * (len(b) % 4)
            return len(b)

        def readable(self):
            return True

    for max_bytes in (10, 4096, 100_000):
        with pytest.raises(InputError, match=rf"more than {max_bytes} bytes \(it grew while read\)"):
            fileio._read_bounded(Endless(), Path("g"), max_bytes, 10**9, 10**6)


def test_limits_come_from_the_environment_and_a_bad_value_is_named(tmp_path, monkeypatch):
    p = tmp_path / "t"
    p.write_text("a b target\n" * 3)
    assert LIMITS == {"JEFFREYS_MAX_LIST_BYTES": 4 << 30, "JEFFREYS_MAX_LIST_LINES": 50_000_000,
                      "JEFFREYS_MAX_LINE_BYTES": 1 << 20, "JEFFREYS_MAX_CONFIG_NODES": 100_000,
                      "JEFFREYS_MAX_EMBEDDING_BYTES": 4 << 30}
    for bad in ("0", "-5", "lots", "1e9", "1.5"):
        monkeypatch.setenv("JEFFREYS_MAX_LIST_LINES", bad)
        with pytest.raises(InputError, match=r"JEFFREYS_MAX_LIST_LINES=.*must be a positive integer"):
            read_text(p)
    monkeypatch.setenv("JEFFREYS_MAX_LIST_LINES", "2")
    with pytest.raises(InputError, match="more than 2 lines"):
        read_text(p)
    monkeypatch.setenv("JEFFREYS_MAX_LIST_LINES", "3")
    assert read_text(p)[1] == "a b target\n" * 3


def test_the_defaults_pass_voxceleb_sized_lists(tmp_path):
    """A trial list of 600,000 VoxCeleb-style lines (VoxCeleb1-E: ~580,000) and a spk2utt line
    of 3,000 utterances (a prolific VoxCeleb speaker has ~1,000) read under the defaults."""
    rng = np.random.default_rng(0)
    n = 600_000
    a, b = rng.integers(0, 10**5, n), rng.permutation(n)
    text = "".join(f"1 id1{x % 1000:04d}/yt{x:08d}/00001.wav id1{y % 1000:04d}/yt{y:08d}/00002.wav\n" for x, y in zip(a.tolist(), b.tolist()))
    (tmp_path / "trials").write_text(text)
    assert len(read_trials(tmp_path / "trials")) == n
    utts = [f"id10001-{k:011d}-00001" for k in range(3000)]
    (tmp_path / "spk2utt").write_text("id10001 " + " ".join(utts) + "\n")
    assert read_table(tmp_path / "spk2utt", 2, None)[0][1][1:] == utts
