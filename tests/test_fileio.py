"""jeffreys.fileio: untrusted text in, atomic output (modes, groups, cleanup, write errors)."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest

from jeffreys.errors import InputError, finite, nonnegative_int, positive
from jeffreys.fileio import (
    AtomicFiles,
    atomic_dir,
    atomic_write,
    check_output,
    input_file,
    read_npy,
    read_text,
    remove_stale_temps,
    save_npy,
)

UMASK = os.umask(0)
os.umask(UMASK)


def _mode(p) -> int:
    return p.stat().st_mode & 0o777


def test_read_text_drops_a_bom_and_names_bad_bytes_and_non_files(tmp_path):
    p = tmp_path / "t"
    p.write_bytes(b"\xef\xbb\xbfa b\n")
    assert read_text(p) == (b"a b\n", "a b\n")
    p.write_bytes(b"a\nb\n\xff\n")
    with pytest.raises(InputError, match=r"t:3: not UTF-8 text \(byte 0xff at offset 4\)"):
        read_text(p)
    with pytest.raises(InputError, match="is a directory, expected a trials file"):
        read_text(tmp_path, "trials")
    with pytest.raises(InputError, match="no such audio file"):
        input_file(tmp_path / "nope", "audio")
    with pytest.raises(InputError, match="not a regular file"):
        input_file("/dev/null")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):  # would block forever if opened
        read_text(fifo)
    with pytest.raises(InputError, match="NUL byte"):
        input_file("a\0b")


def test_atomic_write_new_file_mode_is_a_plain_writes_and_a_replaced_file_keeps_its_own(tmp_path):
    p = tmp_path / "sub" / "f.txt"
    with atomic_write(p) as f:
        f.write("x")
        assert not p.exists()  # nothing at the destination before the end of the block
    assert p.read_text() == "x" and _mode(p) == 0o666 & ~UMASK
    os.chmod(p, 0o604)
    with atomic_write(p) as f:
        f.write("y")
    assert p.read_text() == "y" and _mode(p) == 0o604
    assert sorted(q.name for q in p.parent.iterdir()) == ["f.txt"]


def test_a_failure_leaves_nothing_new_not_even_the_directory_made_for_it(tmp_path):
    with pytest.raises(RuntimeError):
        with AtomicFiles() as files:
            files.open(tmp_path / "a" / "b" / "x.ark", "wb").write(b"1")
            files.open(tmp_path / "a" / "x.scp").write("2")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "old").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "old") as f:
            f.write("new")
            raise RuntimeError
    assert [q.name for q in tmp_path.iterdir()] == ["old"] and (tmp_path / "old").read_text() == "old"


def test_a_group_appears_together_in_the_order_opened(tmp_path):
    with AtomicFiles() as files:
        files.open(tmp_path / "e.ark", "wb").write(b"ark")
        files.open(tmp_path / "e.scp").write("scp")
        t = files.temp(tmp_path / "m.bin")
        t.write_bytes(b"by name")
        assert sorted(q.name for q in tmp_path.iterdir() if not q.name.startswith(".")) == []
    assert sorted(q.name for q in tmp_path.iterdir()) == ["e.ark", "e.scp", "m.bin"]
    assert (tmp_path / "m.bin").read_bytes() == b"by name"


def test_write_errors_name_the_file_and_leave_nothing(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="cannot create: .*file is not a directory"):
        with atomic_write(tmp_path / "file" / "x"):
            pass
    (tmp_path / "dir").mkdir()
    with pytest.raises(InputError, match="dir: is a directory"):
        with atomic_write(tmp_path / "dir"):
            pass
    with pytest.raises(InputError, match="is a directory"):
        check_output(tmp_path / "dir")
    with pytest.raises(InputError, match="file is not a directory"):
        check_output(tmp_path / "file" / "deeper" / "x")
    # a full disk / ulimit -f, in a child so the limit does not outlive the test
    code = (
        "import resource, sys\n"
        "from jeffreys.fileio import atomic_write\n"
        "from jeffreys.errors import InputError\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    with atomic_write(sys.argv[1], 'wb') as f:\n"
        "        f.write(b'x' * 10000)\n"
        "except InputError as e:\n"
        "    print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "big")], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == f"{tmp_path / 'big'}: cannot write: File too large", r.stderr
    assert sorted(q.name for q in tmp_path.iterdir()) == ["dir", "file"]


def test_save_npy_never_truncates_silently(tmp_path):
    # np.save on a real file writes with fwrite and ignores a failed flush; save_npy does not
    code = (
        "import resource, sys, numpy as np\n"
        "from jeffreys.fileio import save_npy\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (150, resource.RLIM_INFINITY))\n"
        "with open(sys.argv[1], 'wb') as f:\n"
        "    np.save(f, np.zeros(8, np.float32))\n"
        "try:\n"
        "    with open(sys.argv[2], 'wb') as f:\n"
        "        save_npy(f, np.zeros(8, np.float32))\n"
        "except OSError as e:\n"
        "    print('refused', e.errno)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "np.npy"), str(tmp_path / "ours.npy")],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "refused 27", r.stderr
    buf = io.BytesIO()
    save_npy(buf, np.arange(3.0))
    buf.seek(0)
    assert np.load(buf).tolist() == [0.0, 1.0, 2.0]


def test_read_npy_refuses_pickles_and_archives(tmp_path):
    obj = np.empty(1, dtype=object)
    obj[0] = {"a": 1}
    np.save(tmp_path / "o.npy", obj, allow_pickle=True)
    with pytest.raises(InputError, match="o.npy: not a"):
        read_npy(tmp_path / "o.npy")
    np.savez(tmp_path / "z.npz", a=np.ones(2))
    with pytest.raises(InputError, match="archive"):
        read_npy(tmp_path / "z.npz")
    (tmp_path / "e.npy").write_bytes(b"")
    with pytest.raises(InputError, match="e.npy: not a"):
        read_npy(tmp_path / "e.npy")
    np.save(tmp_path / "ok.npy", np.ones(3))
    assert read_npy(tmp_path / "ok.npy").tolist() == [1, 1, 1]


def test_stale_temporaries_of_dead_processes_go_and_live_ones_stay(tmp_path):
    dst = tmp_path / "corpus"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    with atomic_dir(dst) as live_tmp:  # ours: alive
        prefix = live_tmp.name.rsplit("-", 2)[0]
        stale = tmp_path / f"{prefix}-{dead}-0000"
        stale.mkdir()
        (stale / "wav.scp").write_text("x")
        other = tmp_path / ".corpus.tmp-otherhost-1-0000"  # another host's: never ours to judge
        other.mkdir()
        assert remove_stale_temps(dst) == [stale]
        assert live_tmp.exists() and other.exists() and not stale.exists()
        (live_tmp / "f").write_text("y")
    assert (dst / "f").read_text() == "y" and _mode(dst) == 0o777 & ~UMASK


def test_atomic_dir_replaces_in_one_rename_and_cleans_up(tmp_path):
    dst = tmp_path / "d"
    with atomic_dir(dst) as t:
        (t / "a").write_text("1")
    with pytest.raises(InputError, match="already exists"):
        with atomic_dir(dst):
            pass
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(dst, overwrite=True) as t:
            (t / "b").write_text("2")
            raise KeyboardInterrupt
    assert sorted(q.name for q in tmp_path.iterdir()) == ["d"] and (dst / "a").exists()
    with atomic_dir(dst, overwrite=True) as t:
        (t / "b").write_text("2")
    assert sorted(q.name for q in dst.iterdir()) == ["b"] and sorted(q.name for q in tmp_path.iterdir()) == ["d"]


def test_atomic_dir_a_directory_that_appears_meanwhile_is_replaced_or_refused(tmp_path):
    # Two writers of one directory (the experiment's training subset, written by forked
    # evaluation workers, was one): the later rename must not fail on the earlier's result.
    dst = tmp_path / "d"
    with atomic_dir(dst, overwrite=True) as t1:
        (t1 / "first").write_text("1")
        with atomic_dir(dst, overwrite=True) as t2:
            (t2 / "second").write_text("2")
    assert sorted(q.name for q in dst.iterdir()) == ["first"] and sorted(q.name for q in tmp_path.iterdir()) == ["d"]
    other = tmp_path / "e"
    with pytest.raises(InputError, match="already exists"):
        with atomic_dir(other) as t1:
            (t1 / "first").write_text("1")
            with atomic_dir(other) as t2:
                (t2 / "second").write_text("2")
    assert sorted(q.name for q in other.iterdir()) == ["second"]
    assert sorted(q.name for q in tmp_path.iterdir()) == ["d", "e"]


_RACER = """
import sys
from pathlib import Path
from jeffreys.fileio import atomic_dir
dst, me = Path(sys.argv[1]), sys.argv[2]
for i in range(40):
    with atomic_dir(dst, overwrite=True) as t:
        for k in range(5):
            (t / f"f{k}").write_text(me)
"""


def test_atomic_dir_concurrent_writers_all_succeed_and_leave_one_whole_directory(tmp_path):
    dst = tmp_path / "d"
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(dst), str(n)], stderr=subprocess.PIPE, text=True)
             for n in range(4)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errs
    contents = {f.read_text() for f in dst.iterdir()}
    assert sorted(f.name for f in dst.iterdir()) == [f"f{k}" for k in range(5)] and len(contents) == 1
    assert sorted(q.name for q in tmp_path.iterdir()) == ["d"]


def test_number_checks():
    assert finite(2, "x") == 2.0 and positive(0.5, "x") == 0.5 and nonnegative_int(0, "s") == 0
    for bad in (float("nan"), float("inf"), "1", True, None):
        with pytest.raises(InputError, match="x must be a finite number"):
            finite(bad, "x")
    with pytest.raises(InputError, match="x must be positive"):
        positive(0.0, "x")
    for bad in (-1, 1.5, True):
        with pytest.raises(InputError, match="seed must be an integer >= 0"):
            nonnegative_int(bad, "seed")



def test_the_filesystem_type_is_asked_once_per_device(tmp_path, monkeypatch):
    import jeffreys.fileio as fileio

    calls = []
    monkeypatch.setattr(fileio, "_FS_BY_DEVICE", {})
    monkeypatch.setattr(fileio, "_fs_type", lambda p: calls.append(p) or None)
    for i in range(20):
        (tmp_path / f"f{i}").write_text("x")
        input_file(tmp_path / f"f{i}")
    assert len(calls) == 1
    monkeypatch.setattr(fileio, "_FS_BY_DEVICE", {os.stat(tmp_path).st_dev: 0x9FA0})  # as if procfs
    with pytest.raises(InputError, match="procfs"):
        input_file(tmp_path / "f0")
