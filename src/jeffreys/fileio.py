"""Files in and out under the toolkit's rules: untrusted input is read as data and fails in
one line; output appears whole or not at all.

Input:

* :func:`read_text`: a text file given by the user, as UTF-8 (a leading byte-order mark
  is dropped). A missing file, a directory, a FIFO or device, or bytes that are not UTF-8
  are an :class:`~jeffreys.errors.InputError` naming the file (and the line of a bad byte).
* :func:`input_file`: the same checks for a binary file, before a library opens it.
* :func:`read_npy`: one ``.npy`` array, never unpickling (``allow_pickle=False``).

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
import errno
import os
import secrets
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import InputError

_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.EROFS}
_HOST = socket.gethostname().replace("-", "_").replace(".", "_")[:32] or "host"


# ----------------------------------------------------------------------------- input
def input_file(path: str | Path, what: str = "") -> Path:
    """``path`` as a Path when it is a readable regular file; else a one-line InputError
    ("no such trials file", "is a directory, expected a model file", ...). A FIFO or a
    device is refused: reading one could block forever or never end."""
    p = Path(path)
    kind = f"{what} file" if what else "file"
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{p}: no such {kind}") from None
    except NotADirectoryError:
        raise InputError(f"{p}: no such {kind} (a parent is not a directory)") from None
    except OSError as e:
        raise InputError(f"{p}: cannot read {kind}: {e.strerror}") from None
    except ValueError:  # a NUL byte in the name
        raise InputError(f"{str(p)!r}: no such {kind} (the name holds a NUL byte)") from None
    a = "an" if kind[0] in "aeiou" else "a"
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{p}: is a directory, expected {a} {kind}")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{p}: not a regular file, expected {a} {kind}")
    return p


def read_text(path: str | Path, what: str = "") -> tuple[bytes, str]:
    """(bytes, text) of a UTF-8 text file given by the user; see the module docstring.

    ``bytes`` are those of the text (without a byte-order mark), for parsers that scan bytes."""
    p = input_file(path, what)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"{p}: cannot read: {e.strerror}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data, data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(f"{p}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def read_npy(path: str | Path, what: str = ".npy") -> Any:
    """The array stored in ``path`` (a ``.npy`` file); pickled objects are refused."""
    import numpy as np

    p = input_file(path, what)
    try:
        with open(p, "rb") as f:
            m = np.load(f, allow_pickle=False)
            if not isinstance(m, np.ndarray):  # an .npz archive
                raise ValueError("an archive of several arrays")
    except (ValueError, EOFError, OSError) as e:
        why = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{p}: not a {what} array file ({why})") from None
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
        if self.dst.exists() and not self.overwrite:
            raise InputError(f"{self.dst}: already exists (remove it or pass --overwrite)")
        if self.dst.exists() and not self.dst.is_dir():
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
            if self.dst.exists():
                old = _temp_name(self.dst)
                os.replace(self.dst, old)  # out of the way first: the new dir then appears in one rename
                try:
                    os.replace(self.tmp, self.dst)
                except OSError:
                    os.replace(old, self.dst)  # put the old one back
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(self.tmp, self.dst)
        except OSError as e:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise InputError(f"{self.dst}: cannot move the new directory into place: {e.strerror}") from None


__all__ = [
    "AtomicFiles", "atomic_dir", "atomic_write", "check_output", "input_file", "read_npy", "read_text",
    "remove_stale_temps", "save_npy", "write_text_atomic",
]
