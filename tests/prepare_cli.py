"""Run `jeffreys prepare` as a user does (a subprocess) and check its refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def prepare(*args) -> subprocess.CompletedProcess:
    """``jeffreys prepare ARGS...`` in a fresh interpreter; stdout/stderr captured as text."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "jeffreys", "prepare", *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def ok(r: subprocess.CompletedProcess) -> str:
    """The stdout of a run that must have succeeded."""
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def refused(r: subprocess.CompletedProcess, dst: Path, *needles: str) -> str:
    """A refusal: exit status 2, one line `jeffreys prepare: error: ...` holding every needle,
    and nothing left behind (no DST, no temporary sibling). Progress lines (`prepare NAME: ...`,
    printed once a run has lasted half a second) may come before it."""
    lines = [x for x in r.stderr.splitlines() if not x.startswith("prepare ")]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("jeffreys prepare: error: "), (r.returncode, r.stderr)
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not dst.exists()
    if dst.parent.exists():
        assert not [p.name for p in dst.parent.iterdir() if p.name.startswith(f".{dst.name}.")]
    return lines[0]
