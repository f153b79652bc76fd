"""Run ``jeffreys`` command lines one after the other in this process, each paused where a stop
signal hurts most, for tests/test_interrupts.py.

``python stop_driver.py RESULTS.jsonl < cases.json``: a JSON list of cases ``{"argv": [...],
"nth": N, "marker": PATH}``. In a case with ``nth`` > 0, the N-th time an atomic writer is
about to rename its finished temporaries into place
(:meth:`jeffreys.fileio.AtomicFiles._commit`), the driver creates ``marker`` and sleeps; the
test then sends this process a signal, which arrives with every temporary of that writer
complete on disk and nothing renamed. ``nth`` = 0: no pause (a run that must succeed).
After each case one line ``{"rc", "stdout", "stderr"}`` is appended to RESULTS.jsonl. File
descriptors 1 and 2 are redirected per case, so C libraries' messages are caught too, and
torch is imported once for all the cases.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path


def run_case(case: dict) -> dict:
    from jeffreys import fileio
    from jeffreys.cli import main

    commit = fileio.AtomicFiles._commit
    seen = [0]
    nth, marker = int(case.get("nth", 0)), case.get("marker")

    def paused_commit(self):
        seen[0] += 1
        if seen[0] == nth:
            Path(marker).write_text("paused\n")
            time.sleep(120)  # the signal ends this
        return commit(self)

    fileio.AtomicFiles._commit = paused_commit
    files = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
    saved = os.dup(1), os.dup(2)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(files[0].fileno(), 1)
    os.dup2(files[1].fileno(), 2)
    try:
        try:
            rc = main(list(case["argv"]))
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            rc = 1
    finally:
        fileio.AtomicFiles._commit = commit
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
    out = []
    for f in files:
        f.seek(0)
        out.append(f.read().decode("utf-8", errors="replace"))
        f.close()
    return {"rc": rc, "stdout": out[0], "stderr": out[1]}


if __name__ == "__main__":
    results = Path(sys.argv[1])
    for case in json.load(sys.stdin):
        r = run_case(case)
        with open(results, "a", encoding="utf-8") as f:
            f.write(json.dumps(r) + "\n")
