"""Progress of a preparation on stderr: what it does, then an update about every second of a
long phase (directory scan, header reading, trial mapping, writing), throttled by time.

Lines read ``prepare NAME: ...``. On a terminal the first comes at once and the updates of a
phase rewrite one line. Elsewhere (a log, a pipe, a test capturing stderr) one line per update,
and nothing before the preparation has run :data:`DEFER_S`: the lines held back until then are
printed at that moment, so a long run's log is whole while a short run, and its one-line
refusal, print nothing more than before. ``jeffreys prepare NAME --quiet`` (or
``with quiet():`` around the Python functions) prints nothing.

Hot loops call :meth:`Counter.add`: an increment and a comparison, the clock read once every
``check_every`` items, a line at most once every :data:`EVERY_S`. Phases spent inside one
call (writing and validating a data dir, reading a long list) get a heartbeat thread instead;
no process is forked while one runs.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar

from ..errors import shown

EVERY_S = 1.0  # seconds between two updates of a phase
DEFER_S = 0.5  # off a terminal, seconds of quiet before the first line (a refusal comes sooner)
_NEVER = 1 << 62

_current: ContextVar[Reporter | None] = ContextVar("jeffreys_prepare_progress", default=None)
_quiet: ContextVar[bool] = ContextVar("jeffreys_prepare_quiet", default=False)


def seconds(s: float) -> str:
    s = max(0, int(s + 0.5))
    return f"{s} s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s // 60 % 60:02d}m"


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Reporter:
    """The progress lines of one preparation (``name``: the corpus, as in ``jeffreys prepare NAME``)."""

    def __init__(self, name: str, *, enabled: bool = True, stream=None, live: bool | None = None,
                 defer: float | None = None, every: float = EVERY_S, clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.prefix = f"prepare {name}: "
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.live = _isatty(self.stream) if live is None else live  # rewrite one line per phase
        self.defer = (0.0 if self.live else DEFER_S) if defer is None else defer
        self.every = every
        self.clock = clock
        self.t0 = clock()
        self._shown = enabled and self.defer <= 0
        self._pending: list[str] = []
        self._open = False  # a live line is on the terminal, not ended
        self._lock = threading.RLock()  # the heartbeat thread writes too

    # ---------------------------------------------------------------- output
    def _allowed(self) -> bool:
        """Whether lines may be printed now; the first time, print those held back."""
        if self._shown or not self.enabled:
            return self._shown
        with self._lock:
            if not self._shown and self.clock() - self.t0 >= self.defer:
                self._shown = True
                for line in self._pending:
                    self._write(line, final=True)
                self._pending.clear()
        return self._shown

    def _write(self, text: str, *, final: bool) -> None:
        with self._lock:
            try:
                if self.live:
                    self.stream.write(f"\r{self.prefix}{text}\x1b[K" + ("\n" if final else ""))
                    self._open = not final
                else:
                    self.stream.write(f"{self.prefix}{text}\n")
                self.stream.flush()
            except (OSError, ValueError):  # stderr gone (closed pipe, hung-up terminal): work on
                self.enabled = False

    def end_line(self) -> None:
        """End a live line, so that what is printed next starts a line of its own."""
        with self._lock:
            if self._open:
                self._open = False
                try:
                    self.stream.write("\n")
                    self.stream.flush()
                except (OSError, ValueError):
                    self.enabled = False

    def step(self, text: str) -> None:
        """A line saying what the preparation does now (held back while deferred)."""
        if not self.enabled:
            return
        with self._lock:
            if self._allowed():
                self._write(text, final=True)
            else:
                self._pending.append(text)

    # ---------------------------------------------------------------- phases
    def counter(self, desc: str, total: int | None = None, unit: str = "file", check_every: int = 1) -> Counter:
        return Counter(self, desc, total, unit, check_every)

    def each(self, items: Iterable, desc: str, total: int | None = None, unit: str = "file", check_every: int = 256) -> Iterator:
        """``items``, counted; the counter's last line once they are exhausted."""
        if total is None and hasattr(items, "__len__"):
            total = len(items)
        c = self.counter(desc, total, unit, check_every)
        for x in items:
            yield x
            c.add()
        c.close()

    @contextlib.contextmanager
    def waiting(self, text: str):
        """A phase spent inside one call: ``text``, then ``text: N s`` every :attr:`every`
        from a thread (so no fork may happen inside)."""
        if not self.enabled:
            yield
            return
        self.step(text)
        stop, t0 = threading.Event(), self.clock()

        def beat() -> None:
            while not stop.wait(self.every):
                with self._lock:
                    if not stop.is_set() and self.enabled and self._allowed():
                        self._write(f"{text}: {seconds(self.clock() - t0)}", final=False)

        thread = threading.Thread(target=beat, name="jeffreys-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.end_line()

    def close(self, ok: bool) -> None:
        took = self.clock() - self.t0
        if ok and self.enabled and took >= self.every and self._allowed():
            self._write(f"done in {seconds(took)}", final=True)
        self.end_line()


class Counter:
    """Items done in one phase; a line at most every ``reporter.every`` seconds."""

    def __init__(self, rep: Reporter, desc: str, total: int | None, unit: str, check_every: int):
        self.rep, self.desc, self.total, self.unit = rep, desc, total, unit
        self.n = 0
        self.t0 = rep.clock()
        self._next = self.t0 + rep.every
        self._stride = max(1, check_every)
        self._check_at = self._stride if rep.enabled else _NEVER
        if rep.enabled and rep.live and rep._allowed():
            rep._write(self.text(self.t0), final=False)

    def add(self, k: int = 1) -> None:
        self.n += k
        if self.n >= self._check_at:
            self.poll()

    def poll(self) -> None:
        """Read the clock now (a loop whose items do not all count calls it, e.g. per folder)."""
        rep = self.rep
        if not rep.enabled:
            self._check_at = _NEVER
            return
        self._check_at = self.n + self._stride
        now = rep.clock()
        if now >= self._next and rep._allowed():
            rep._write(self.text(now), final=False)
            self._next = now + rep.every

    def text(self, now: float) -> str:
        dt = now - self.t0
        unit = self.unit if self.n == 1 else f"{self.unit}s"
        if self.total is None:
            return f"{self.desc}: {self.n:,} {unit} ({seconds(dt)})"
        pct = 100 * self.n / self.total if self.total else 100
        left = f", {seconds((self.total - self.n) * dt / self.n)} left" if 0 < self.n < self.total and dt > 0 else ""
        rate = f", {self.n / dt:,.0f}/s" if dt > 0 else ""
        return f"{self.desc}: {self.n:,}/{self.total:,} {self.unit}s ({pct:.0f}%){rate}{left}"

    def close(self, text: str | None = None) -> None:
        """The phase's last line (``text``, or the count and the time taken)."""
        rep = self.rep
        if rep.enabled:
            unit = self.unit if self.n == 1 else f"{self.unit}s"
            rep.step(text if text is not None else f"{self.desc}: {self.n:,} {unit} in {seconds(rep.clock() - self.t0)}")


def current() -> Reporter:
    """The reporter of the running preparation (one without a name outside any)."""
    rep = _current.get()
    return rep if rep is not None else Reporter("(no corpus)", enabled=False)


@contextlib.contextmanager
def reporting(name: str, *, enabled: bool | None = None, **options):
    """Report the preparation run inside on stderr; inside another one, that one goes on."""
    if _current.get() is not None:
        yield _current.get()
        return
    rep = Reporter(name, enabled=not _quiet.get() if enabled is None else enabled, **options)
    token = _current.set(rep)
    ok = False
    try:
        yield rep
        ok = True
    finally:
        _current.reset(token)
        rep.close(ok)


@contextlib.contextmanager
def quiet():
    """No progress lines from the preparations run inside (their summary is still printed)."""
    token = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(token)


def reported(corpus: str, first: Callable[..., str] | None = None):
    """Decorator of a preparation ``fn(src, dst, ...)``: run inside :func:`reporting`, its
    first line (``SRC -> DST``, or ``first(src, dst)``) printed before any work."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(src, dst, *args, **kwargs):
            with reporting(corpus) as rep:
                rep.step(first(src, dst) if first else f"{shown(src)} -> {shown(dst)}")
                return fn(src, dst, *args, **kwargs)

        return wrapper

    return deco
