"""Install size and import time of the package in one or more environments (e.g. the core
install against the full one).

    python benchmarks/install.py --python core=/path/venv-core/bin/python --python full=/path/venv-full/bin/python

For each NAME=PYTHON: the size of its site-packages (bytes, by walking it, as ``du -sb``),
the distributions installed, and the wall and CPU time of ``import jeffreys.api`` and of
``from jeffreys.losses import JeffreysLoss`` in a fresh process (median and best of
``--repeat``, one thread; the environments take turns, so load on the machine falls on
both alike), the extras' modules that statement imported, and ``python -X importtime``'s
cumulative microseconds of it.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
from pathlib import Path

STATEMENTS = {"api": "import jeffreys.api", "loss": "from jeffreys.losses import JeffreysLoss"}
TIMER = """
import os, sys, time
t0, c0 = time.perf_counter(), os.times()
{stmt}
c1 = os.times()
extras = {{"onnx", "onnxruntime", "onnxscript", "matplotlib", "tensorboard", "pyroomacoustics", "espeakng_loader"}}
print(time.perf_counter() - t0, (c1.user - c0.user) + (c1.system - c0.system),
      ",".join(sorted({{m.split(".")[0] for m in sys.modules}} & extras)) or "-")
"""


def tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def site_packages(python: str) -> Path:
    out = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def distributions(python: str) -> list[str]:
    out = subprocess.run([python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
                         capture_output=True, text=True, check=True)
    return sorted(line for line in out.stdout.splitlines() if line and not line.startswith("#"))


def import_times(python: str, stmt: str, repeat: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    subprocess.run([python, "-c", stmt], check=True, env=env)  # warm the file cache and the .pyc files
    wall, cpu = [], []
    for _ in range(repeat):
        out = subprocess.run([python, "-c", TIMER.format(stmt=stmt)], capture_output=True, text=True, check=True, env=env)
        w, c, loaded = out.stdout.split()
        wall.append(float(w))
        cpu.append(float(c))
    r = subprocess.run([python, "-X", "importtime", "-c", stmt], capture_output=True, text=True, check=True, env=env)
    cumulative = [int(m.group(1)) for m in re.finditer(r"^import time:\s+\d+ \|\s+(\d+) \| \S", r.stderr, flags=re.M)]
    return {"extras_imported": [] if loaded == "-" else loaded.split(","),
            "wall_s": {"median": statistics.median(wall), "best": min(wall)},
            "cpu_s": {"median": statistics.median(cpu), "best": min(cpu)},
            "importtime_top_level_us": sum(cumulative)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", action="append", required=True, metavar="NAME=PYTHON")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    envs = [item.partition("=")[::2] for item in args.python]
    out = {}
    for name, python in envs:
        dists = distributions(python)
        out[name] = {
            "site_packages_bytes": tree_bytes(site_packages(python)),
            "distributions": len(dists),
            "torch": next((d for d in dists if d.lower().startswith("torch==")), None),
            "imports": {},
            "installed": dists,
        }
    for k, stmt in STATEMENTS.items():
        runs: dict[str, list[dict]] = {name: [] for name, _ in envs}
        for _ in range(args.repeat):  # in turns
            for name, python in envs:
                runs[name].append(import_times(python, stmt, 1))
        for name, _ in envs:
            rs = runs[name]
            wall = [r["wall_s"]["best"] for r in rs]
            cpu = [r["cpu_s"]["best"] for r in rs]
            out[name]["imports"][k] = {
                "extras_imported": rs[0]["extras_imported"],
                "wall_s": {"median": statistics.median(wall), "best": min(wall)},
                "cpu_s": {"median": statistics.median(cpu), "best": min(cpu)},
                "importtime_us_median": statistics.median(r["importtime_top_level_us"] for r in rs),
            }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
