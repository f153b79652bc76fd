"""Files in and out under the toolkit's rules: untrusted input is read as data and fails in
one line; output appears whole or not at all.

Input:

* :func:`input_file`: the check every file given by the user passes before anything opens
  it: it must be a regular file (after following symbolic links) and must not live on a
  kernel pseudo-filesystem (procfs, sysfs, debugfs, cgroup, ...), whose "regular files"
  are made by the kernel when read (``/proc/self/environ`` has a size of 0 and holds the
  environment). A directory, FIFO, socket or device is refused by what it is, before it is
  opened (a FIFO would block, ``/dev/zero`` never end).
* :func:`read_text`: a text file given by the user, as UTF-8 (a leading byte-order mark
  is dropped), read within the list limits (below). A missing file, a non-file, bytes that
  are not UTF-8 or a limit passed are an :class:`~jeffreys.errors.InputError` naming the
  file (and the line).
* :func:`split_lines`: a text's lines as ``sed -n Np`` numbers them: split on ``\\n`` only
  (never on ``\\r``, ``\\x0b``, ``\\x0c``, ``\\x1c``-``\\x1e``, ``\\x85``, ``\\u2028``,
  ``\\u2029``, which :meth:`str.splitlines` also splits on).
* :func:`read_npy`: one ``.npy`` array, never unpickling (``allow_pickle=False``).

Limits of every text file read (data-dir tables, trial lists, scores, models files, scp
files, id lists, configs), in :data:`LIMITS`, each overridable by the environment variable
of its name (read at each call, so it reaches the CLI, the Python API, DataLoader workers
and the subprocesses of ``jeffreys experiment`` alike):

* ``JEFFREYS_MAX_LIST_BYTES`` (4 GiB): the file's size, from ``fstat`` before reading, and
  the bytes read (a file that grows while it is read stops at the limit);
* ``JEFFREYS_MAX_LIST_LINES`` (50,000,000): lines, counted while reading;
* ``JEFFREYS_MAX_LINE_BYTES`` (1 MiB): bytes of one line, checked while reading;
* ``JEFFREYS_MAX_CONFIG_NODES`` (100,000): nodes of a YAML config read as a tree, every
  alias expanded (:func:`jeffreys.config.load_yaml`);
* ``JEFFREYS_MAX_EMBEDDING_BYTES`` (4 GiB): embedding data (:mod:`jeffreys.embeddings`): an
  ark's or ``.npy``'s size before reading, the records an scp reads, summed.

and :func:`save_npy` writes one, checking every write (numpy alone can truncate silently).

Output (every writer of the package goes through these):

* :func:`atomic_write`: ``with atomic_write(path) as f: ...`` writes a temporary file in
  the destination's directory and renames it over ``path`` when the block ends without an
  error; on an error the temporary file is removed and ``path`` is untouched.
* :class:`AtomicFiles`: several files committed together (an ark and its scp, embeddings
  and their mean): all are written first, then renamed; on an error none appears.
* :class:`atomic_dir`: a directory built in a temporary sibling, renamed into place.

A new file gets the mode a plain ``open(path, "w")`` would give (0666 less the umask; a
directory 0777 less the umask), and a replaced file keeps its mode. Temporary names are
``.NAME.tmp-HOST-PID-RANDOM``: a run killed by SIGKILL leaves one behind, and the next
write to the same destination from this host removes those whose process is gone. The
CLI turns SIGTERM into an exception, so a terminated command cleans up like a failed one.
Operating-system errors while writing (no space, file too large, a parent that is a file,
a destination that is a directory) are InputErrors naming the destination.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import math
import os
import secrets
import shutil
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import InputError, excerpt, shown
from .interrupts import deferred

_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.EROFS}
_HOST = socket.gethostname().replace("-", "_").replace(".", "_")[:32] or "host"


# ----------------------------------------------------------------------------- limits
LIMITS: dict[str, int] = {
    # 50 M lines of a VoxCeleb-style trial ("1 id10270/x6uYqmx31kE/00001.wav id10270/...", ~64
    # bytes) fit in 4 GiB; VoxCeleb2 dev's wav.scp (1,092,009 lines) and the VoxCeleb1-E/H
    # lists (~580,000 lines) are 50 to 100 times smaller.
    "JEFFREYS_MAX_LIST_BYTES": 4 << 30,
    "JEFFREYS_MAX_LIST_LINES": 50_000_000,
    # spk2utt and models lines list a speaker's utterances: ~1,000 ids of ~26 bytes for the
    # most prolific VoxCeleb speakers, so 4 KiB would refuse real corpora; 1 MiB holds 40,000.
    "JEFFREYS_MAX_LINE_BYTES": 1 << 20,
    # a config has hundreds of nodes; "billion laughs" aliases expand to 10^9 and more
    "JEFFREYS_MAX_CONFIG_NODES": 100_000,
    # binary float32 rows cost about their size (a list line ~9 times its own), hence their own
    # limit: VoxCeleb2 dev's 1,092,009 embeddings take 1.1 GB at 256 dimensions, 2.2 GB at 512
    "JEFFREYS_MAX_EMBEDDING_BYTES": 4 << 30,
}
_CHUNK = 8 << 20  # bytes read (and checked) at a time


def limit(name: str) -> int:
    """The limit ``name`` (a key of :data:`LIMITS`): the environment variable of that name
    when set (a positive integer, ``_`` allowed), else the default."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return LIMITS[name]
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise InputError(f"environment variable {name}={excerpt(raw)}: must be a positive integer (default {LIMITS[name]})")
    return value


# ----------------------------------------------------------------------------- input
# Kernel pseudo-filesystems (statfs f_type, <linux/magic.h>): their regular files hold what
# the kernel makes when they are read (a process's environment, memory maps, ...), not
# stored data, and their sizes (0, 4096) say nothing of it. tmpfs/devtmpfs (0x01021994)
# hold real files (/dev/shm, a /tmp in memory); the devices of /dev are refused as devices.
_PSEUDO_FS = {
    0x9FA0: "procfs", 0x62656572: "sysfs", 0x64626720: "debugfs", 0x74726163: "tracefs",
    0x73636673: "securityfs", 0x27E0EB: "cgroup", 0x63677270: "cgroup2", 0x62656570: "configfs",
    0x6165676C: "pstore", 0xDE5E81E4: "efivarfs", 0xCAFE4A11: "bpf", 0x65735543: "fusectl",
    0xF97CFF8C: "selinuxfs", 0x42494E4D: "binfmt_misc", 0x6E736673: "nsfs", 0x1CD1: "devpts",
    0x19800202: "mqueue", 0x67596969: "rpc_pipefs",
}
_STATFS = None


def _fs_type(target: str | Path | int) -> int | None:
    """The filesystem magic (``statfs(2)`` ``f_type``) of a path (symbolic links followed)
    or an open descriptor; None off Linux or where it cannot be had."""
    global _STATFS
    if sys.platform != "linux":
        return None
    if _STATFS is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _STATFS = (libc.statfs, libc.fstatfs)
        except (OSError, AttributeError):
            _STATFS = ()
    if not _STATFS:
        return None
    buf = ctypes.create_string_buffer(256)  # struct statfs: 120 bytes on 64-bit Linux, f_type first
    try:
        if isinstance(target, int):
            ok = _STATFS[1](target, buf) == 0
        else:
            ok = _STATFS[0](os.fsencode(target), buf) == 0
    except (ValueError, TypeError):
        return None
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF if ok else None


def _link_note(p: Path) -> str:
    """`` (a link to TARGET)`` when ``p`` goes through a symbolic link."""
    try:
        real = os.path.realpath(p)
        if real != os.path.abspath(p):
            return f" (a link to {shown(real)})"
    except (OSError, ValueError):
        pass
    return ""


def _refuse_special(p: Path, st: os.stat_result, kind: str, fs: int | None) -> None:
    a = "an" if kind[0] in "aeiou" else "a"
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{shown(p)}: is a directory, expected {a} {kind}")
    if not stat.S_ISREG(st.st_mode):
        what = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a character device" if stat.S_ISCHR(st.st_mode)
                else "a block device" if stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "special")
        raise InputError(f"{shown(p)}: not a regular file ({what}){_link_note(p)}, expected {a} {kind}")
    if fs in _PSEUDO_FS:
        raise InputError(
            f"{shown(p)}: not a regular file (on {_PSEUDO_FS[fs]}, whose files the kernel makes when they are "
            f"read){_link_note(p)}, expected {a} {kind}"
        )


def input_file(path: str | Path, what: str = "") -> Path:
    """``path`` as a Path when it is a readable regular file; else a one-line InputError
    ("no such trials file", "is a directory, expected a model file", ...). Symbolic links
    are followed and what they lead to is checked: a FIFO, socket or device is refused
    (reading one could block forever or never end), and so is a file on a kernel
    pseudo-filesystem (``/proc``, ``/sys``, ...: content made when read, not data)."""
    p = Path(path)
    kind = f"{what} file" if what else "file"
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{shown(p)}: no such {kind}") from None
    except NotADirectoryError:
        raise InputError(f"{shown(p)}: no such {kind} (a parent is not a directory)") from None
    except OSError as e:
        raise InputError(f"{shown(p)}: cannot read {kind}: {e.strerror}") from None
    except ValueError:  # a NUL byte in the name
        raise InputError(f"{shown(str(p))}: no such {kind} (the name holds a NUL byte)") from None
    _refuse_special(p, st, kind, _fs_type_of_device(p, st.st_dev) if stat.S_ISREG(st.st_mode) else None)
    return p


_FS_BY_DEVICE: dict[int, int | None] = {}


def _fs_type_of_device(p: Path, device: int) -> int | None:
    """:func:`_fs_type` of ``p``, asked once per device (a device is one filesystem): checking
    the 1.09 M files of a VoxCeleb2 data dir then costs a stat each, not a stat and a statfs."""
    if device not in _FS_BY_DEVICE:
        _FS_BY_DEVICE[device] = _fs_type(p)
    return _FS_BY_DEVICE[device]


def _too_long(p: Path, line: int, max_line: int) -> InputError:
    return InputError(f"{shown(p)}:{line}: line longer than {max_line} bytes, the limit (JEFFREYS_MAX_LINE_BYTES raises it)")


def _too_many(p: Path, max_lines: int) -> InputError:
    return InputError(f"{shown(p)}: more than {max_lines} lines, the limit (JEFFREYS_MAX_LIST_LINES raises it)")


def _read_bounded(f, p: Path, max_bytes: int, max_lines: int, max_line: int) -> bytes:
    """The bytes of open file ``f``, read in chunks, each checked as it arrives: at most
    ``max_bytes`` in all, ``max_lines`` lines (``\\n``-separated, a last line without one
    counted) and ``max_line`` bytes a line (its ``\\n`` not counted). Reading stops at the
    first chunk that passes a limit, so that neither a huge line nor a file that grows
    while it is read is ever held whole."""
    chunks: list[bytes] = []
    total = newlines = 0
    line_start = 0  # offset of the current line's first byte
    while True:
        chunk = f.read(min(_CHUNK, max_bytes + 1 - total))
        if not chunk:
            break
        n, off = len(chunk), total
        if total + n > max_bytes:
            raise InputError(f"{shown(p)}: more than {max_bytes} bytes (it grew while read), the limit (JEFFREYS_MAX_LIST_BYTES raises it)")
        pos = line_start - off  # negative when the line began in an earlier chunk (never below -max_line)
        while pos + max_line < n:  # the line would pass the limit inside this chunk unless a newline comes
            j = chunk.rfind(b"\n", max(pos, 0), pos + max_line + 1)
            if j < 0:
                raise _too_long(p, newlines + chunk.count(b"\n", 0, max(pos, 0)) + 1, max_line)
            pos = j + 1
        j = chunk.rfind(b"\n", max(pos, 0))
        line_start = off + (j + 1 if j >= 0 else pos)
        newlines += chunk.count(b"\n")
        if newlines > max_lines:
            raise _too_many(p, max_lines)
        chunks.append(chunk)
        total += n
    if newlines + (1 if total and not chunks[-1].endswith(b"\n") else 0) > max_lines:
        raise _too_many(p, max_lines)
    return b"".join(chunks)


def read_text(path: str | Path, what: str = "") -> tuple[bytes, str]:
    """(bytes, text) of a UTF-8 text file given by the user; see the module docstring.

    ``bytes`` are those of the text (without a byte-order mark), for parsers that scan bytes.
    The file is checked (:func:`input_file`), opened without blocking, checked again on its
    descriptor (a path swapped for a FIFO in between is refused, not waited on), its size
    compared with ``JEFFREYS_MAX_LIST_BYTES`` before anything is allocated, and read within
    the line limits (:data:`LIMITS`)."""
    p = input_file(path, what)
    data = _read_list(p, what)
    try:
        return data, data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _not_utf8(p, data, e) from None


def read_utf8(path: str | Path, what: str = "") -> bytes:
    """The bytes of :func:`read_text` (same limits, same checks) without the decoded text,
    for parsers of large tables that scan bytes (an ASCII file is never copied into a str)."""
    p = input_file(path, what)
    data = _read_list(p, what)
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _not_utf8(p, data, e) from None
    return data


def _not_utf8(p: Path, data: bytes, e: UnicodeDecodeError) -> InputError:
    line = data.count(b"\n", 0, e.start) + 1
    return InputError(f"{shown(p)}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})")


def _read_list(p: Path, what: str) -> bytes:
    """The bytes of a checked list file, read within the limits, without a byte-order mark."""
    kind = f"{what} file" if what else "file"
    max_bytes, max_lines, max_line = (limit(k) for k in ("JEFFREYS_MAX_LIST_BYTES", "JEFFREYS_MAX_LIST_LINES", "JEFFREYS_MAX_LINE_BYTES"))
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise InputError(f"{shown(p)}: cannot read: {e.strerror}") from None
    with open(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        _refuse_special(p, st, kind, _fs_type(fd) if stat.S_ISREG(st.st_mode) else None)
        if st.st_size > max_bytes:
            raise InputError(f"{shown(p)}: {st.st_size} bytes, more than the limit of {max_bytes} (JEFFREYS_MAX_LIST_BYTES raises it)")
        try:
            data = _read_bounded(f, p, max_bytes, max_lines, max_line)
        except OSError as e:
            raise InputError(f"{shown(p)}: cannot read: {e.strerror}") from None
    return data[3:] if data.startswith(b"\xef\xbb\xbf") else data


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` as ``sed -n Np`` and ``wc -l`` count them: split on ``\\n`` only,
    a final ``\\n`` ending the last line rather than starting an empty one. Other line
    breaks that :meth:`str.splitlines` honours (``\\r``, ``\\x0b``, ``\\x0c``, ``\\x1c``-``\\x1e``,
    ``\\x85``, ``\\u2028``, ``\\u2029``) stay inside their line; a ``\\r`` before the ``\\n``
    (Windows) is left to the parser, for which it is whitespace."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def read_npy(path: str | Path, what: str = ".npy", *, size_limit: str | None = None) -> Any:
    """The array stored in ``path`` (a ``.npy`` file); pickled objects are refused.

    ``size_limit`` (a key of :data:`LIMITS`): refuse first a file larger than that limit.
    A header whose shape needs more bytes than the file holds is refused before numpy
    allocates what it claims (a 100-byte file may claim terabytes)."""
    import numpy as np
    from numpy.lib import format as npy_format

    p = input_file(path, what)
    max_bytes = None if size_limit is None else limit(size_limit)
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if max_bytes is not None and size > max_bytes:
                raise InputError(f"{shown(p)}: {size} bytes, more than the limit of {max_bytes} ({size_limit} raises it)")
            if f.read(6) == b"\x93NUMPY":
                f.seek(0)
                version = npy_format.read_magic(f)
                read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
                shape, _, dtype = read_header(f)
                if not dtype.hasobject and math.prod(shape) * dtype.itemsize > size - f.tell():
                    raise ValueError(f"its header claims shape {shape} of {dtype}, more than the file holds")
            f.seek(0)
            m = np.load(f, allow_pickle=False)
            if not isinstance(m, np.ndarray):  # an .npz archive
                raise ValueError("an archive of several arrays")
    except InputError:
        raise
    except (ValueError, EOFError, OSError) as e:
        why = str(e).split("\n")[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{shown(p)}: not a {what} array file ({why})") from None
    return m


def save_npy(f: IO, array) -> None:
    """``np.save(f, array)`` with every write checked. Given a real file, numpy writes the
    data with C ``fwrite`` and ignores a failed flush (a full disk, ``ulimit -f``): the file
    is silently truncated. Through ``f.write`` each failure raises."""
    import numpy as np

    class _Checked:
        def __init__(self, f: IO):
            self.write = f.write

    np.save(_Checked(f), np.asarray(array), allow_pickle=False)


# ----------------------------------------------------------------------------- temporary names
def _temp_prefix(dst: Path) -> str:
    return f".{dst.name}.tmp-"


def _temp_name(dst: Path) -> Path:
    return dst.with_name(f"{_temp_prefix(dst)}{_HOST}-{os.getpid()}-{secrets.token_hex(4)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(dst: str | Path) -> list[Path]:
    """Remove temporary siblings of ``dst`` left by a killed run on this host (its process is
    gone); returns what was removed. Temporaries of live processes are left alone."""
    dst = Path(dst)
    removed = []
    try:
        siblings = list(dst.parent.iterdir()) if dst.parent.is_dir() else []
    except OSError:
        return removed
    prefix = _temp_prefix(dst) + _HOST + "-"
    for p in siblings:
        if not p.name.startswith(prefix):
            continue
        pid = p.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
        removed.append(p)
    return removed


def _write_failure(exc: BaseException | None) -> OSError | None:
    """The failed write (an OSError without a file name: no space, file too large) that
    ``exc`` is or was raised while handling."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.filename is None and exc.errno in _WRITE_ERRNOS:
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _write_error(path: Path, e: OSError) -> InputError:
    why = e.strerror or type(e).__name__
    return InputError(f"{path}: cannot write: {why}")


def _make_parent(path: Path) -> list[Path]:
    """Create the missing parents of ``path``; returns those created (outermost first)."""
    missing = []
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            break
        missing.append(parent)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        raise InputError(f"{path}: cannot create: {blocker} is not a directory") from None
    except OSError as e:
        raise InputError(f"{path}: cannot create its directory: {e.strerror}") from None
    return missing[::-1]


def check_output(path: str | Path) -> Path:
    """Fail early (before a long computation) when ``path`` cannot become a file: it is a
    directory, or a parent of it is a file."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a directory; give a file name to write")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{p}: cannot create: {parent} is not a directory")
            break
    return p


# ----------------------------------------------------------------------------- atomic files
class AtomicFiles:
    """Several output files that appear together or not at all.

    ``open(path, mode)`` returns a file object writing to a temporary sibling of ``path``;
    ``temp(path)`` the temporary path itself, for writers that take a file name. Leaving
    the ``with`` block without an error renames every temporary onto its destination, in
    the order they were opened (a reader that opens the last one, e.g. an scp, finds the
    others in place); an error removes them all. Destinations already renamed when a later
    rename fails are removed again, so a failed commit leaves no new file; directories
    created for the outputs are removed again when they stay empty.
    """

    def __init__(self) -> None:
        self._items: list[tuple[Path, Path, IO | None]] = []
        self._dirs: list[Path] = []
        self._done = False

    def __enter__(self) -> AtomicFiles:
        return self

    def _create(self, dst: Path) -> tuple[Path, int]:
        self._dirs += _make_parent(dst)
        if dst.is_dir():
            raise InputError(f"{dst}: is a directory; give a file name to write")
        remove_stale_temps(dst)
        for _ in range(100):
            tmp = _temp_name(dst)
            try:
                # 0o666: the kernel applies the umask, as for a plain open(path, "w")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
                return tmp, fd
            except FileExistsError:
                continue
            except OSError as e:
                raise _write_error(dst, e) from None
        raise InputError(f"{dst}: cannot create a temporary file next to it")

    def open(self, path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None) -> IO:
        if mode not in ("w", "wb"):
            raise ValueError(f"AtomicFiles.open: mode must be 'w' or 'wb', got {mode!r}")
        dst = Path(path)
        tmp, fd = self._create(dst)
        f = os.fdopen(fd, mode, encoding=None if "b" in mode else encoding, newline=newline)
        self._items.append((dst, tmp, f))
        return f

    def temp(self, path: str | Path) -> Path:
        dst = Path(path)
        tmp, fd = self._create(dst)
        os.close(fd)
        self._items.append((dst, tmp, None))
        return tmp

    def _discard(self) -> None:
        for _, tmp, f in self._items:
            if f is not None:
                with contextlib.suppress(Exception):
                    f.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
        for d in reversed(self._dirs):
            with contextlib.suppress(OSError):
                d.rmdir()

    def _commit(self) -> None:
        for dst, tmp, f in self._items:
            try:
                if f is not None:
                    f.flush()
                    os.fsync(f.fileno())
                    f.close()
                else:
                    with open(tmp, "rb") as g:
                        os.fsync(g.fileno())
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(tmp, stat.S_IMODE(os.stat(dst).st_mode))  # a replaced file keeps its mode
            except OSError as e:
                raise _write_error(dst, e) from None
        renamed: list[Path] = []
        try:
            with deferred():  # a stop signal waits until every file is in place
                for dst, tmp, _ in self._items:
                    os.replace(tmp, dst)
                    renamed.append(dst)
        except OSError as e:
            for dst in renamed:
                with contextlib.suppress(OSError):
                    dst.unlink()
            raise _write_error(dst, e) from None

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._done:
            return
        self._done = True
        if exc_type is not None:
            self._discard()
            # A write into the file being written (the last opened) failed: disk full, file
            # too large (torch re-raises it as a RuntimeError from its zip writer). Errors of
            # other files (an input) carry their file name: left as they are.
            cause = _write_failure(exc)
            if cause is not None and self._items:
                raise _write_error(self._items[-1][0], cause) from None
            return
        try:
            self._commit()
        except BaseException:
            self._discard()
            raise


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None) -> Iterator[IO]:
    """``with atomic_write(path) as f:``: ``f`` writes a temporary sibling renamed onto
    ``path`` at the end of the block; on an error ``path`` is untouched (module docstring)."""
    with AtomicFiles() as files:
        yield files.open(path, mode, encoding=encoding, newline=newline)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``Path.write_text`` (UTF-8), atomically."""
    with atomic_write(path) as f:
        f.write(text)
    return Path(path)


# ----------------------------------------------------------------------------- atomic directories
class atomic_dir:
    """Context manager: build a directory in a temporary sibling, rename it into place.

    On an exception (SIGTERM included, see :mod:`jeffreys.cli`) the temporary directory is
    removed and ``dst`` is left untouched. An existing ``dst`` is refused unless
    ``overwrite``. The directory gets the mode ``mkdir`` gives (0777 less the umask).
    """

    def __init__(self, dst: str | Path, *, overwrite: bool = False):
        self.dst = Path(dst)
        self.overwrite = overwrite
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        try:  # one stat: another writer may rename dst away between two looks
            st = os.stat(self.dst)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is not None and not self.overwrite:
            raise InputError(f"{self.dst}: already exists (remove it or pass --overwrite)")
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise InputError(f"{self.dst}: exists and is not a directory")
        _make_parent(self.dst)
        remove_stale_temps(self.dst)
        for _ in range(100):
            tmp = _temp_name(self.dst)
            try:
                os.mkdir(tmp, 0o777)
                break
            except FileExistsError:
                continue
            except OSError as e:
                raise InputError(f"{self.dst}: cannot create a directory next to it: {e.strerror}") from None
        else:
            raise InputError(f"{self.dst}: cannot create a temporary directory next to it")
        self.tmp = tmp
        return tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            with deferred():  # a stop signal waits until the new directory is in place
                self._move_into_place()
        except InputError:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        except OSError as e:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise InputError(f"{self.dst}: cannot move the new directory into place: {e.strerror}") from None

    def _move_into_place(self) -> None:
        """Rename the temporary directory to ``dst``. A ``dst`` that appears meanwhile (another
        process writing the same directory) is replaced when overwriting, as one found at the
        start would be; the last writer wins and no reader sees a half-written directory."""
        for _ in range(100):
            if self.dst.exists():
                if not self.overwrite:
                    raise InputError(f"{self.dst}: already exists (another process wrote it meanwhile)")
                old = _temp_name(self.dst)
                try:
                    os.replace(self.dst, old)  # out of the way first: the new dir then appears in one rename
                except FileNotFoundError:
                    continue  # the other writer moved it away first
                try:
                    os.replace(self.tmp, self.dst)
                except OSError as e:
                    try:
                        os.replace(old, self.dst)  # put the old one back
                    except OSError:
                        shutil.rmtree(old, ignore_errors=True)  # a newer one took its place
                    if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                        continue
                    raise
                shutil.rmtree(old, ignore_errors=True)
                return
            try:
                os.replace(self.tmp, self.dst)
                return
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        raise OSError(errno.EBUSY, "other processes keep replacing it")


__all__ = [
    "LIMITS", "AtomicFiles", "atomic_dir", "atomic_write", "check_output", "input_file", "limit", "read_npy",
    "read_text", "read_utf8", "remove_stale_temps", "save_npy", "split_lines", "write_text_atomic",
]
