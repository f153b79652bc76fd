"""Stop signals: SIGINT, SIGTERM and SIGHUP end a command the same way, with nothing half-written.

Ctrl-C sends SIGINT; ``timeout``, ``docker stop``, batch schedulers and systemd send SIGTERM;
closing the terminal sends SIGHUP. :func:`handling` (entered by :func:`jeffreys.cli.main`
around every command) turns each into an exception raised in the main thread
(:class:`Interrupted`, a KeyboardInterrupt, for SIGINT; :class:`Terminated` for the other
two), so that every ``with`` block of the command unwinds: atomic writers remove their
temporaries (:mod:`jeffreys.fileio`), pools and worker processes are stopped and reaped. The
CLI then prints one line and exits with 128 + the signal's number (130, 143, 129).

The rules that make this hold for every command, whatever runs when the signal comes:

* **One stop.** The first signal raises; later ones (a second Ctrl-C, ``timeout``'s signal
  to the whole process group after the one to the command) are ignored while the command
  cleans up, so the cleanup itself is never cut short. SIGKILL still kills; the next write to
  the same destination removes what a killed run left (:func:`jeffreys.fileio.remove_stale_temps`).
* **Never swallowed.** Python drops an exception raised where it cannot propagate (a fork
  handler, ``__del__``, a weakref callback: "Exception ignored in ..."), and a signal that
  arrives there would be lost: the command would go on and exit 0. The stop is then sent
  again, and raised at the next ordinary line of the command.
* **Whatever error follows.** Once a stop has arrived, the command ends with its status and
  one line even if the stop surfaced as another error (a worker that died of the same
  signal, a broken pool), see :func:`received`; what objects cut short by the stop print
  from ``__del__`` ("Exception ignored in ...") is dropped.
* **Workers die at once.** A process forked by the command (a pool worker, a DataLoader
  worker, a synth renderer) gets the default actions back, so a signal sent to the whole
  process group (Ctrl-C, ``timeout``) ends it without a traceback; the parent, which got the
  same signal, cleans up. A worker that died of a stop signal stops the parent as that signal
  would (:func:`raise_if_stopped_by`).
* **Commits are not cut.** :func:`deferred` holds a stop back during a few statements that
  must run together (renaming a set of files into place; starting a child and recording it
  for cleanup): it is raised right after them.
* A signal ignored when the command starts (``nohup``; a background job of a script, whose
  SIGINT the shell ignores) stays ignored.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

STOP_SIGNALS = tuple(
    s for s in (getattr(signal, "SIGHUP", None), signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None
)
_WORDS = {signal.SIGINT: "interrupted"}
if hasattr(signal, "SIGTERM"):
    _WORDS[signal.SIGTERM] = "terminated"
if hasattr(signal, "SIGHUP"):
    _WORDS[signal.SIGHUP] = "hung up (SIGHUP)"


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread so that ``with`` blocks clean up (a
    BaseException: ``except Exception`` does not swallow it). ``signum``: which."""

    def __init__(self, signum: int = getattr(signal, "SIGTERM", 15)):
        super().__init__(signum)
        self.signum = int(signum)


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C): a KeyboardInterrupt, as libraries expect, with ``signum``."""

    signum = int(signal.SIGINT)


def stop_exception(signum: int) -> BaseException:
    return Interrupted() if signum == signal.SIGINT else Terminated(signum)


def describe(signum: int) -> str:
    """What the CLI prints after ``jeffreys CMD: ``: ``interrupted``, ``terminated``, ..."""
    return _WORDS.get(signum, f"stopped by signal {signum}")


class _State:
    def __init__(self) -> None:
        self.pid: int | None = None  # the process handling stops (None: not active)
        self.signum: int | None = None  # the first stop received
        self.raised = False  # the stop exception is on its way up
        self.depth = 0  # inside deferred()


_state = _State()
_fork_hook = False


def _handler(signum, frame):
    if os.getpid() != _state.pid:  # a forked child that has not reset yet: die as by default
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if _state.raised:
        return  # stopping already: let the cleanup finish
    if _state.signum is None:
        _state.signum = signum
    if _state.depth:
        return  # raised when the deferred block ends
    _state.raised = True
    raise stop_exception(_state.signum)


def _unraisable(hook):
    def unraisable(u):
        exc = getattr(u, "exc_value", None)
        if isinstance(exc, (Terminated, Interrupted)) and _state.pid == os.getpid() and _state.raised:
            # Dropped where it was raised (a fork handler, __del__, ...): sent again, from a
            # thread, once this hook has returned (a signal handled inside the hook would be
            # dropped again, or escape the hook). Until then stops stay ignored: the thread
            # re-arms the handler just before it sends.
            pid, signum = os.getpid(), getattr(exc, "signum", _state.signum or signal.SIGTERM)
            returned = threading.Event()
            threading.Thread(target=_send_later, args=(pid, signum, returned), name="jeffreys-stop", daemon=True).start()
            returned.set()
            return
        if _state.signum is not None and _state.pid == os.getpid():
            return  # debris of the stop (an object whose __init__ it cut short, failing in __del__)
        hook(u)

    return unraisable


def _quiet(unraisable) -> None:
    pass


def _send_later(pid: int, signum: int, returned: threading.Event) -> None:
    returned.wait()
    time.sleep(0.002)  # the hook's last line
    _state.raised = False
    with contextlib.suppress(OSError):
        os.kill(pid, signum)


def _in_child() -> None:
    """After a fork: the child gets the default actions back (it dies of a stop signal at once,
    without a traceback) and stops nothing on its own."""
    if _state.pid is None:
        return
    for s in STOP_SIGNALS:
        with contextlib.suppress(OSError, ValueError):
            if signal.getsignal(s) is _handler:
                signal.signal(s, signal.SIG_DFL)
    _state.pid, _state.signum, _state.raised, _state.depth = None, None, False, 0


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """Turn the stop signals into exceptions for the duration of the block (module docstring).
    Outside the main thread, or when already active, it does nothing."""
    global _fork_hook
    if threading.current_thread() is not threading.main_thread() or _state.pid == os.getpid():
        yield
        return
    previous = {}
    for s in STOP_SIGNALS:
        current = signal.getsignal(s)
        if current is signal.SIG_IGN:
            continue  # nohup, or a background job: stays ignored
        previous[s] = current
    if not _fork_hook and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_in_child)
        _fork_hook = True
    saved_hook = sys.unraisablehook
    _state.pid, _state.signum, _state.raised, _state.depth = os.getpid(), None, False, 0
    sys.unraisablehook = _unraisable(saved_hook)
    try:
        for s in previous:
            signal.signal(s, _handler)
        yield
    finally:
        # Stops arriving from here on are ignored until the previous handlers are back.
        _state.raised = True
        for s, h in previous.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(s, h if h is not None else signal.SIG_DFL)
        # After a stop, objects it cut short may still fail in __del__ while the process
        # ends (a DataLoader iterator interrupted in its __init__): the stop's one line says it.
        sys.unraisablehook = saved_hook if _state.signum is None else _quiet
        _state.pid, _state.depth = None, 0


def received() -> int | None:
    """The stop signal received during the current :func:`handling` block (the first one), or None."""
    return _state.signum if _state.pid == os.getpid() else None


def active() -> bool:
    return _state.pid == os.getpid()


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a stop back while the block runs; it is raised when the block ends (module
    docstring). Without :func:`handling`, or outside the main thread, it changes nothing."""
    if _state.pid != os.getpid() or threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if _state.depth == 0 and _state.signum is not None and not _state.raised:
            _state.raised = True
            raise stop_exception(_state.signum)


def stopped_by(exitcode: int | None) -> int | None:
    """The stop signal a child process died of (exit code ``-n`` from multiprocessing, or
    ``128 + n`` from a shell or a ``jeffreys`` command), else None."""
    if exitcode is None:
        return None
    for s in STOP_SIGNALS:
        if exitcode in (-int(s), 128 + int(s)):
            return int(s)
    return None


def raise_if_stopped_by(exitcode: int | None) -> None:
    """Stop this command as the signal a child died of would (when it died of one)."""
    signum = stopped_by(exitcode)
    if signum is None:
        return
    if _state.pid == os.getpid():
        if _state.signum is None:
            _state.signum = signum
        if _state.raised:
            return
        _state.raised = True
        raise stop_exception(_state.signum)
    raise stop_exception(signum)


__all__ = [
    "Interrupted", "STOP_SIGNALS", "Terminated", "active", "deferred", "describe", "handling", "raise_if_stopped_by",
    "received", "stop_exception", "stopped_by",
]
