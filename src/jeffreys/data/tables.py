"""Kaldi text tables (``key value...`` a line): the reader every data-dir and trial-list file
goes through, so that each bad line is reported the same way (``FILE:LINE: what``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..fileio import read_text


def read_table(path: Path, min_fields: int = 2, max_fields: int | None = 2) -> list[tuple[int, list[str]]]:
    """Lines of a Kaldi table as (line number, fields); blank lines are errors."""
    text = read_text(path)[1]
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if len(parts) < min_fields or (max_fields is not None and len(parts) > max_fields):
            want = f"{min_fields}" if max_fields == min_fields else f"{min_fields}+" if max_fields is None else f"{min_fields}-{max_fields}"
            raise InputError(f"{path}:{n}: expected {want} fields, got {len(parts)}: {line.strip()!r}")
        rows.append((n, parts))
    return rows


__all__ = ["read_table"]
