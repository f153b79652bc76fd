"""The one exception type that reaches the user as a one-line message, and the checks of
user-given numbers that raise it.

Anything raised as :class:`JeffreysError` is printed by the CLI as
``jeffreys CMD: error: MESSAGE`` (exit status 2) instead of a traceback. The message
must name the offending file, line, utterance or key.
"""

from __future__ import annotations

import math
from numbers import Integral, Real


class JeffreysError(Exception):
    """Bad input or configuration, reported to the user in one line."""


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
