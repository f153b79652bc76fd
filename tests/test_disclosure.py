"""Nothing read is disclosed.

* A file where a regular file is expected is checked for what it is before anything reads
  it, after following symbolic links: FIFOs, sockets and devices are refused, and so are
  the "regular files" of kernel pseudo-filesystems (``/proc``, ``/sys``), whose content
  (an environment, memory maps) is made when read and would otherwise surface in an error
  quoting a bad line. Every reader: lists, data-dir tables, audio paths inside ``wav.scp``,
  models, ``.npy`` files, configs.
* An error quotes at most a short escaped excerpt of the offending line, and stays one
  line of bounded length whatever the line or the path holds (control characters,
  terminal escapes, Unicode line breaks, 10 kB).
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import string
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from jeffreys.config import load_yaml
from jeffreys.data.datadir import read_datadir
from jeffreys.data.dataset import load_labels
from jeffreys.data.tables import read_table
from jeffreys.data.trials import read_models, read_scores, read_trial_pairs, read_trials
from jeffreys.embeddings import read_embeddings
from jeffreys.errors import EXCERPT_CHARS, MESSAGE_CHARS, PATH_CHARS, InputError, excerpt, one_line, shown
from jeffreys.fileio import input_file, read_npy, read_text


@contextmanager
def deadline(seconds: int = 20):
    """Fail instead of hanging when a FIFO is opened."""

    def boom(*_):
        raise TimeoutError("blocked: a FIFO was opened")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _sysfs_file() -> str | None:
    for p in ("/sys/kernel/mm/transparent_hugepage/enabled", "/sys/kernel/uevent_seqnum", "/sys/power/state"):
        if os.path.isfile(p):
            return p
    return None


PSEUDO = ["/proc/self/environ", "/proc/self/status", "/proc/self/cmdline", "/proc/self/maps", "/proc/version", _sysfs_file()]
DEVICES = ["/dev/zero", "/dev/urandom", "/dev/null"]


def specials(root: Path) -> list[tuple[str, Path]]:
    """(kind, a path leading to it) for every non-file: directly, through a link, through a
    chain of two links."""
    fifo = root / "fifo"
    os.mkfifo(fifo)
    sock = root / "sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    targets = [("pseudo", p) for p in PSEUDO if p] + [("device", p) for p in DEVICES] + [("fifo", str(fifo)), ("socket", str(sock))]
    out = []
    for i, (kind, target) in enumerate(targets):
        out.append((kind, Path(target)))
        link = root / f"link{i}"
        link.symlink_to(target)
        out.append((kind, link))
        chain = root / f"chain{i}"
        chain.symlink_to(link)
        out.append((kind, chain))
    return out


WHAT = r"(on (procfs|sysfs)[^)]*|a FIFO|a socket|a character device)"


def _only_names_the_file(message: str, path: Path) -> None:
    """The message is the path, what it is, the link it goes through, and nothing read."""
    pattern = (rf"(.*: )?{re.escape(shown(path))}: not a regular file \({WHAT}\)"
               rf"( \(a link to [^ ]+\))?, expected an? [\w .]*file")
    assert re.fullmatch(pattern, message), message


def _table_reader(name):
    def read(p: Path):
        d = p.parent
        for other, text in (("wav.scp", "u1 /x/u1.wav\n"), ("utt2spk", "u1 s\n")):
            if other != name:
                (d / other).write_text(text)
        return read_datadir(d, check_files=False)

    return read


READERS = {
    "trials": read_trials, "scores": read_scores, "models": read_models, "trial-pairs": read_trial_pairs,
    "table": read_table, "labels": load_labels, "config": load_yaml, "scp": lambda p: read_embeddings(Path(str(p) + ".scp")),
    "npy": read_npy, "text": read_text, "input_file": input_file,
    "wav.scp": _table_reader("wav.scp"), "utt2spk": _table_reader("utt2spk"), "spk2utt": _table_reader("spk2utt"),
    "segments": _table_reader("segments"), "utt2dur": _table_reader("utt2dur"),
}
DIR_TABLES = {"wav.scp", "utt2spk", "spk2utt", "segments", "utt2dur"}


@pytest.mark.parametrize("name", sorted(READERS))
def test_pseudo_files_devices_fifos_and_sockets_are_refused_by_what_they_are_through_links(tmp_path, name):
    read = READERS[name]
    root = tmp_path / "t"
    root.mkdir()
    for i, (kind, path) in enumerate(specials(root)):
        if name in DIR_TABLES:  # the table, in a data dir, is the link
            d = tmp_path / f"d{i}"
            d.mkdir()
            target = d / name
            target.symlink_to(path if path.is_absolute() else path.resolve())
            path = target
        elif name == "scp":
            link = tmp_path / f"s{i}.scp"
            link.symlink_to(path.resolve() if path.is_symlink() else path)
            path = tmp_path / f"s{i}"
        with deadline():
            with pytest.raises(InputError) as e:
                read(path)
        shown_path = path if name != "scp" else Path(str(path) + ".scp")
        _only_names_the_file(str(e.value), shown_path)


def test_audio_paths_in_wav_scp_are_checked_for_what_they_are(tmp_path):
    specs = specials(tmp_path)
    d = tmp_path / "data"
    d.mkdir()
    for kind, path in specs:
        (d / "wav.scp").write_text(f"u1 {path}\n")
        (d / "utt2spk").write_text("u1 s\n")
        with deadline():
            with pytest.raises(InputError) as e:
                read_datadir(d, check_files=True)
        message = str(e.value)
        assert message.startswith(f"{d / 'wav.scp'}:1: audio file of 'u1': "), message
        _only_names_the_file(message.split("audio file of 'u1': ", 1)[1], path)


def test_audio_and_model_loaders_refuse_them_too(tmp_path):
    from jeffreys.audio import load_audio
    from jeffreys.models.bundle import load_plain

    for kind, path in specials(tmp_path):
        for load in (load_audio, load_plain):
            with deadline():
                with pytest.raises(InputError) as e:
                    load(path)
            assert "not a regular file" in str(e.value) and len(str(e.value)) <= MESSAGE_CHARS, str(e.value)


def test_a_regular_file_through_a_link_is_read(tmp_path):
    real = tmp_path / "real"
    real.write_text("a b target\n")
    (tmp_path / "link").symlink_to(real)
    assert len(read_trials(tmp_path / "link")) == 1


ALPHABET = string.ascii_letters + string.digits + "/._-"
NASTY = ["\x1b[31m", "\x1b]0;title\x07", "\r", "\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x00", "\t",
         "\x7f", "\u202e", "\ud800", "é", "\u00a0", "'", '"', "\\"]


def random_text(rng: random.Random, n: int, nasty: float) -> str:
    return "".join(rng.choice(NASTY) if rng.random() < nasty else rng.choice(ALPHABET) for _ in range(n))


def _bounded_one_line(message: str) -> None:
    assert len(message) <= MESSAGE_CHARS, len(message)
    assert message.isprintable(), repr(message)  # no line break, no control character, no escape


def _longest_quoted(message: str, secret: str) -> int:
    """Length of the longest piece of ``secret`` that appears in ``message`` as written."""
    best = 0
    for i in range(0, len(secret), 7):
        lo, hi = 0, len(secret) - i
        while lo < hi:  # the longest prefix of secret[i:] in the message
            mid = (lo + hi + 1) // 2
            if secret[i:i + mid] in message:
                lo = mid
            else:
                hi = mid - 1
        best = max(best, lo)
    return best


# (reader, file name, a line that the reader refuses when ``junk`` is inserted as a field)
BAD_LINES = {
    "trials": (read_trials, "trials", lambda junk: f"{junk} maybe"),
    "scores": (read_scores, "scores", lambda junk: f"a {junk} notanumber"),
    "scores-fields": (read_scores, "scores", lambda junk: f"a b 1 target {junk}"),
    "models-dup": (read_models, "models", lambda junk: f"m1 {junk}\nm1 {junk}"),
    "table": (read_table, "utt2spk", lambda junk: f"u1 s1 {junk}"),
    "labels": (load_labels, "labels.txt", lambda junk: f"s0 {junk}"),
    "utt2dur": (_table_reader("utt2dur"), "utt2dur", lambda junk: f"u1 {junk}"),
    "scp": (lambda p: read_embeddings(p), "x.scp", lambda junk: f"u1 {junk}:3"),
    "config": (load_yaml, "c.yaml", lambda junk: f"a: [{junk}"),
}


@pytest.mark.parametrize("name", sorted(BAD_LINES))
def test_errors_quote_a_short_escaped_excerpt_of_any_line(tmp_path, name):
    read, fname, make = BAD_LINES[name]
    rng = random.Random(name)
    for trial in range(12):
        n = rng.choice([1, 59, 61, 300, 10_000, 100_000])
        junk = random_text(rng, n, nasty=rng.choice([0.0, 0.1, 0.9]))
        junk = "x" + junk.replace(" ", "_")  # one field (white space would add fields)
        for c in " \t\r\x0b\x0c\x00":  # white space splits the field; NUL is not YAML
            junk = junk.replace(c, "_")
        if name == "config":
            junk = junk.replace("\x85", "_").replace("\u2028", "_").replace("\u2029", "_")
        d = tmp_path / str(trial)
        d.mkdir()
        (d / fname).write_text(make(junk) + "\n", encoding="utf-8", errors="surrogatepass")
        with pytest.raises(InputError) as e:
            read(d / fname)
        message = str(e.value)
        _bounded_one_line(message)
        # an excerpt of a line, or a path read from it (a missing ark), cut in the middle
        assert _longest_quoted(message, junk) <= (PATH_CHARS if name == "scp" else EXCERPT_CHARS), message


@pytest.mark.parametrize("seed", range(4))
def test_paths_of_any_length_and_characters_stay_one_bounded_line(tmp_path, seed, capsys):
    """A path naming the file (missing, a directory, a bad line inside) with control
    characters, line breaks, terminal escapes, or 10 kB long: the message, and the CLI's
    line, stay one line of at most MESSAGE_CHARS characters."""
    from jeffreys.cli import main

    rng = random.Random(seed)
    for trial in range(8):
        name = random_text(rng, rng.choice([5, 40, 80]), nasty=0.3).replace("/", "_").replace("\x00", "_")
        name = "n" + "".join(c for c in name if not 0xD800 <= ord(c) <= 0xDFFF)  # a file name is bytes
        d = tmp_path / f"{trial}"
        d.mkdir()
        bad = d / name
        bad.write_text("a b maybe\n")
        long_missing = tmp_path / ("y" * rng.choice([300, 5000, 10_000]))  # too long to exist
        deep = tmp_path.joinpath(*["d" * 200] * rng.choice([1, 15]))  # a real long path
        deep.mkdir(parents=True, exist_ok=True)
        for path in (bad, long_missing, d, deep / "missing"):
            with pytest.raises(InputError) as e:
                read_trials(path)
            _bounded_one_line(str(e.value))
            assert main(["metrics", str(path), "--trials", str(path)]) == 2
            err = capsys.readouterr().err
            assert err.startswith("jeffreys metrics: error: ") and err.endswith("\n") and err.count("\n") == 1, repr(err)
            _bounded_one_line(err[len("jeffreys metrics: error: "):-1])


def test_the_message_helpers():
    assert shown("/data/a.wav") == "/data/a.wav"
    assert shown("/data/my  file.wav") == "'/data/my  file.wav'"
    assert shown("a\nb\x1b[31m") == "'a\\nb\\x1b[31m'"
    long = shown("/" + "a" * 10_000 + "/name.wav")
    assert len(long) <= 200 and long.endswith("/name.wav'") and "..." in long
    assert excerpt("abc") == "'abc'"
    assert excerpt("x" * 100) == repr("x" * 60) + "..."
    assert one_line("a\nb\rc\x85d\u2028e") == "a\\nb\\rc\\x85d\\u2028e"
    assert len(one_line("z" * 5000)) == MESSAGE_CHARS
    assert str(InputError("f:1: bad \x1b[2J" + "q" * 5000)).isprintable()
    assert len(str(InputError("q" * 5000))) == MESSAGE_CHARS


def test_npy_through_a_link_to_a_pseudo_file_is_refused(tmp_path):
    good = tmp_path / "m.npy"
    np.save(good, np.zeros(3))
    (tmp_path / "env.npy").symlink_to("/proc/self/environ")
    assert read_npy(good).shape == (3,)
    with pytest.raises(InputError, match=r"env.npy: not a regular file \(on procfs"):
        read_npy(tmp_path / "env.npy")
