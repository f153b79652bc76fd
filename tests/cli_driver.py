"""Run many ``jeffreys`` command lines in one subprocess, each as the console script would.

Reads a JSON list of cases on stdin, ``{"argv": [...], "fsize": bytes | null, "env": {...}}``,
and prints a JSON list of ``{"rc", "stdout", "stderr"}``. For each case, file descriptors 1
and 2 are redirected to files, so messages written by C libraries (FFmpeg, libsndfile,
mpg123) are caught as well as Python's; an exception escaping ``jeffreys.cli.main`` is
printed as the interpreter would (a traceback, status 1). ``fsize`` lowers the file-size
limit (``ulimit -f``) for that case only (output goes through pipes, which it does not
limit). Importing torch once for all cases keeps the
suite fast; warnings filters are reset per case so a "shown once" warning shows in each.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import traceback
import warnings


def _drain(fd: int, chunks: list[bytes]) -> threading.Thread:
    def read() -> None:
        while data := os.read(fd, 65536):
            chunks.append(data)
        os.close(fd)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def run_case(case: dict) -> dict:
    from jeffreys.cli import main

    # pipes, not files: the file-size limit of a case must not cut its own messages
    (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
    chunks: tuple[list[bytes], list[bytes]] = ([], [])
    readers = [_drain(out_r, chunks[0]), _drain(err_r, chunks[1])]
    saved = os.dup(1), os.dup(2)
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    env = {k: os.environ.get(k) for k in case.get("env", {})}
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.close(out_w)
    os.close(err_w)
    warnings.resetwarnings()
    warnings.simplefilter("default")
    os.environ.update(case.get("env", {}))
    try:
        if case.get("fsize") is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (case["fsize"], limit[1]))
        try:
            rc = main(case["argv"])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            rc = 1
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
    for t in readers:
        t.join()
    out, err = (b"".join(c).decode("utf-8", errors="replace") for c in chunks)
    return {"rc": rc, "stdout": out, "stderr": err}


if __name__ == "__main__":
    cases = json.load(sys.stdin)
    results = [run_case(c) for c in cases]
    sys.stdout.write(json.dumps(results))
