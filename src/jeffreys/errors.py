"""The one exception type that reaches the user as a one-line message, the functions that
keep what a message quotes short and harmless, and the checks of user-given numbers.

Anything raised as :class:`JeffreysError` is printed by the CLI as
``jeffreys CMD: error: MESSAGE`` (exit status 2) instead of a traceback. The message
must name the offending file, line, utterance or key.

What a message quotes from the input is bounded and escaped, whatever the input:

* :func:`shown` for a path: as it is when it is short, printable and holds no whitespace;
  else its ``repr`` (every control character, line break and odd space escaped), cut in
  the middle to :data:`PATH_CHARS` characters.
* :func:`excerpt` for an id, a field or a line: its ``repr``, the first
  :data:`EXCERPT_CHARS` characters and ``...`` when cut.
* :func:`one_line`, applied by ``str()`` of every :class:`JeffreysError` and
  :class:`JeffreysWarning`: escapes whatever is left that would break the line or drive
  the terminal (``\\n``, ``\\r``, ``\\x85``, ``\\u2028``, ESC, ...) and cuts the message in
  the middle to :data:`MESSAGE_CHARS` characters, so that the CLI's one line stays one line
  of bounded length even where a message was built from raw input. (An error re-raised
  from a DataLoader worker keeps torch's traceback; the CLI prints its last line, which
  went through this function in the worker.)
"""

from __future__ import annotations

import math
import os
from numbers import Integral, Real

PATH_CHARS = 200  # a path in a message: longer ones are cut in the middle
EXCERPT_CHARS = 60  # an id, field or line quoted in a message
MESSAGE_CHARS = 1000  # a whole message


def _cut(s: str, limit: int) -> str:
    """``s`` cut in the middle to at most ``limit`` characters ("head...tail")."""
    if len(s) <= limit:
        return s
    keep = max(limit - 3, 2)
    return f"{s[: keep - keep // 2]}...{s[len(s) - keep // 2:]}"


def _escaped(s: str) -> str:
    """``s`` with every non-printable character (line breaks of any kind, tabs, control
    characters, lone surrogates, odd spaces) as its Python escape."""
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def shown(path, limit: int = PATH_CHARS) -> str:
    """A path for a message: unchanged when short, printable and without whitespace; else
    ``repr``-quoted (so that spaces, tabs and control characters are visible and cannot
    break the line) and cut in the middle to ``limit`` characters."""
    try:
        s = os.fsdecode(path)
    except (TypeError, ValueError):
        s = str(path)
    if len(s) <= limit and s.isprintable() and not any(c.isspace() for c in s):
        return s
    return _cut(repr(s), limit)


def excerpt(text, limit: int = EXCERPT_CHARS) -> str:
    """``repr`` of the first ``limit`` characters of ``text`` (an id, a field, a line),
    followed by ``...`` when it is longer."""
    s = str(text)
    return repr(s[:limit]) + ("..." if len(s) > limit else "")


def one_line(message, limit: int = MESSAGE_CHARS) -> str:
    """``message`` as one line of at most ``limit`` characters: line breaks of every kind
    (``\\n``, ``\\r``, ``\\x85``, ``\\u2028``, ...) and every other character that could
    break the line or drive a terminal are escaped, and a longer message is cut in the
    middle (its head names the file and line, its tail often the value)."""
    return _cut(_escaped(str(message)), limit)


def _worker_traceback(message: str) -> bool:
    """Whether ``message`` is an exception re-raised by torch from a DataLoader worker: the
    worker's traceback, whose last line (``jeffreys.errors.InputError: MESSAGE``, already
    one line there) the CLI prints."""
    return message.startswith("Caught ") and "\nOriginal Traceback" in message


class JeffreysError(Exception):
    """Bad input or configuration, reported to the user in one line (``str()`` gives the
    message through :func:`one_line`)."""

    def __str__(self) -> str:
        message = super().__str__()
        return message if _worker_traceback(message) else one_line(message)


class InputError(JeffreysError, ValueError):
    """A file, line, utterance or value given by the user is invalid."""


def finite(value, what: str) -> float:
    """``value`` as a float when it is a finite number; else an InputError naming ``what``
    (``inf`` and ``nan`` pass argparse's ``type=float`` and would otherwise surface as an
    OverflowError deep inside, or as a silently wrong result)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise InputError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def positive(value, what: str) -> float:
    """A finite number > 0."""
    v = finite(value, what)
    if not v > 0:
        raise InputError(f"{what} must be positive, got {value!r}")
    return v


def nonnegative_int(value, what: str) -> int:
    """An integer >= 0 (seeds, counts)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise InputError(f"{what} must be an integer >= 0, got {value!r}")
    return int(value)


class JeffreysWarning(UserWarning):
    """Something the user should know that does not stop the command; the CLI prints it as
    one line, ``jeffreys CMD: warning: MESSAGE``."""

    def __str__(self) -> str:
        return one_line(super().__str__())


__all__ = [
    "EXCERPT_CHARS", "InputError", "JeffreysError", "JeffreysWarning", "MESSAGE_CHARS", "PATH_CHARS", "excerpt",
    "finite", "nonnegative_int", "one_line", "positive", "shown",
]
