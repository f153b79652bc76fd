"""Kaldi text tables (``key value...`` a line): the reader every data-dir and trial-list file
goes through, so that each bad line is reported the same way (``FILE:LINE: what``).

One reading rule for every table, Kaldi's (``SplitStringToVector``/``Trim`` with the
white-space characters of C's ``isspace``):

* lines end at ``\\n`` and only there, so a line number is the one ``sed -n Np`` shows
  (:func:`jeffreys.fileio.split_lines`); the file is read within the list limits of
  :func:`jeffreys.fileio.read_text`;
* fields are separated by runs of ASCII white space (space, ``\\t``, ``\\r``, ``\\v``,
  ``\\f``); a ``\\r`` ending a line (a file written on Windows) is white space like the
  others. Other characters Python's :meth:`str.split` would split on (``\\x1c``-``\\x1f``,
  ``\\x85``, ``\\xa0``, ``\\u2028``, ...) belong to their field;
* in an scp table (``wav.scp``, :func:`read_scp`) the key is the first field and the value
  is the rest of the line after the white space that follows the key, inner white space
  kept as written, leading and trailing white space dropped (Kaldi's
  ``SplitStringOnFirstSpace``): ``u1 /data/my  file.wav`` names ``/data/my  file.wav``.

Messages quote at most a short escaped excerpt of a line (:func:`jeffreys.errors.excerpt`).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InputError, excerpt, shown
from ..fileio import read_text, split_lines

WHITESPACE = " \t\r\x0b\x0c"  # C isspace() but the line separator \n
_RUN = re.compile(f"[{re.escape(WHITESPACE)}]+")


def fields(line: str) -> list[str]:
    """The fields of a table line, split on runs of :data:`WHITESPACE` only."""
    line = line.strip(WHITESPACE)
    return _RUN.split(line) if line else []


def split_key(line: str) -> tuple[str, str]:
    """(key, rest) of an scp line: the rest is everything after the white space that follows
    the key, inner white space kept, outer white space dropped ("" when there is none)."""
    parts = _RUN.split(line.strip(WHITESPACE), maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def _want(min_fields: int, max_fields: int | None) -> str:
    if max_fields == min_fields:
        return f"{min_fields}"
    return f"{min_fields}+" if max_fields is None else f"{min_fields}-{max_fields}"


def read_table(path: Path, min_fields: int = 2, max_fields: int | None = 2) -> list[tuple[int, list[str]]]:
    """Lines of a Kaldi table as (line number, fields); blank lines are errors."""
    text = read_text(path)[1]
    rows = []
    for n, line in enumerate(split_lines(text), 1):
        parts = fields(line)
        if len(parts) < min_fields or (max_fields is not None and len(parts) > max_fields):
            raise InputError(
                f"{shown(path)}:{n}: expected {_want(min_fields, max_fields)} fields, got {len(parts)}: {excerpt(line.strip(WHITESPACE))}"
            )
        rows.append((n, parts))
    return rows


def read_scp(path: Path) -> list[tuple[int, str, str]]:
    """Lines of an scp table (``key rxfilename``) as (line number, key, value), the value
    read by Kaldi's rule (module docstring); a line without a value is an error."""
    rows = []
    for n, line in enumerate(split_lines(read_text(path)[1]), 1):
        key, value = split_key(line)
        if not value:
            got = len(fields(line))
            raise InputError(f"{shown(path)}:{n}: expected 2+ fields, got {got}: {excerpt(line.strip(WHITESPACE))}")
        rows.append((n, key, value))
    return rows


__all__ = ["WHITESPACE", "fields", "read_scp", "read_table", "split_key"]
