"""Test the package at both ends of the torch range that pyproject.toml admits (prints JSON).

    python tools/torch_range.py                      # the floor and the ceiling below
    python tools/torch_range.py --torch 2.11.0       # another version of the range
    python tools/torch_range.py --pip-arg=--index-url=https://download.pytorch.org/whl/cpu

``make torch-range`` runs it (``make torch-range ARGS=--fresh`` passes options). For each
version: a venv of its own under ``--venvs`` (default ``.venvs/``, ignored by git), made
with the Python running this script (``--python`` for another); ``pip install torch==X``
(with the ``--pip-arg`` options: without them pip takes PyPI's build, on Linux x86_64 a
CUDA build of several GB, which runs on the CPU alike); ``pip install -e '.[all,test]'``;
then ``pytest -p no:randomly -q`` on FAST_TESTS (hypothesis derandomised, ``CI=1``). A
venv whose torch is already X, installed with the same ``--pip-arg``, is reused (``--fresh``
rebuilds it); the package install
runs every time (a no-op when nothing changed).

The JSON gives, per version, the torch installed (``torch.__version__``) and its build
(``cpu``, ``cu128``, ...), the Python, a few dependencies' versions, pytest's counts from
its summary line and the wall times. Pip's and pytest's output go to stderr. The exit
status is 1 when a version did not install, or pulled a different torch in with the
package, or failed a test.

The range is pyproject's ``torch`` requirement; the patch releases tested at its ends are
TORCH_FLOOR and TORCH_CEILING here (pyproject cannot say which patch release was tested,
and editing it would rebuild every ``.venv``). The script stops before installing anything
when they have fallen out of step: a floor not of the lower bound's minor release, a
ceiling not of the last minor release below the upper bound.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH_FLOOR = "2.9.1"
TORCH_CEILING = "2.14.1"

# The fast files: the core (losses, models, features, training, extraction, scoring, the
# CLI, the API, export). The other files are slow (corpora, recipes, DDP, the demo) or
# test no torch API. docs/benchmarks.md#torch-versions-tested refers here.
FAST_TESTS = [f"tests/test_{name}.py" for name in (
    "losses", "heads", "loss_kernel", "models", "features", "extract", "scoring", "scoring_models",
    "metrics", "train", "resume", "verify", "api", "prepare_folder", "extras", "datadir", "trials",
    "audio", "embeddings", "config", "cli", "calibrate", "finetune", "export", "memory_format",
)]

PROBE = """
import json, platform, sys
from importlib import metadata
import torch
v = torch.__version__
build = v.partition("+")[2] or ("cu" + torch.version.cuda.replace(".", "") if torch.version.cuda else "cpu")
deps = {}
for d in ("numpy", "scipy", "onnx", "onnxruntime", "onnxscript"):
    try:
        deps[d] = metadata.version(d)
    except metadata.PackageNotFoundError:
        deps[d] = None
print(json.dumps({"torch": v, "build": build, "cuda_available": torch.cuda.is_available(),
                  "python": platform.python_version(), "deps": deps}))
"""

COUNT_WORDS = {"passed": "passed", "failed": "failed", "skipped": "skipped", "error": "errors", "errors": "errors",
               "xfailed": "xfailed", "xpassed": "xpassed", "deselected": "deselected"}


def release(v: str) -> tuple[int, ...]:
    """The release numbers of a version: "2.9.1+cu128" -> (2, 9, 1)."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", v)
    if not m:
        raise ValueError(f"not a version: {v!r}")
    return tuple(int(x) for x in m.group(1).split("."))


def cmp(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = max(len(a), len(b))
    a, b = a + (0,) * (n - len(a)), b + (0,) * (n - len(b))
    return (a > b) - (a < b)


def torch_requirement() -> list[tuple[str, tuple[int, ...]]]:
    """pyproject's torch specifier as [(op, release)], e.g. [(">=", (2, 9)), ("<", (2, 15))]."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    spec = next((d[len("torch"):] for d in deps if re.match(r"torch\s*[<>=!~]", d)), None)
    if spec is None:
        raise SystemExit("torch_range: pyproject.toml has no torch requirement with a version range")
    out = []
    for part in spec.split(";")[0].split(","):
        m = re.fullmatch(r"\s*(>=|<=|==|!=|>|<)\s*([\d.]+)\s*", part)
        if not m:
            raise SystemExit(f"torch_range: cannot read the torch requirement {spec.strip()!r}"
                             " (only >=, >, <=, <, ==, !=)")
        out.append((m.group(1), release(m.group(2))))
    return out


def admits(spec: list[tuple[str, tuple[int, ...]]], v: str) -> bool:
    ok = {">=": lambda c: c >= 0, ">": lambda c: c > 0, "<=": lambda c: c <= 0, "<": lambda c: c < 0,
          "==": lambda c: c == 0, "!=": lambda c: c != 0}
    return all(ok[op](cmp(release(v), bound)) for op, bound in spec)


def spec_text(spec) -> str:
    return ",".join(op + ".".join(map(str, b)) for op, b in spec)


def check_ends(spec) -> None:
    """The floor and the ceiling tested are the ends of the range pyproject admits."""
    problems = []
    for name, v in (("TORCH_FLOOR", TORCH_FLOOR), ("TORCH_CEILING", TORCH_CEILING)):
        if not admits(spec, v):
            problems.append(f"{name} {v} is outside it")
    lower = [b for op, b in spec if op == ">="]
    upper = [b for op, b in spec if op == "<"]
    if lower and release(TORCH_FLOOR)[:2] != (lower[0] + (0,))[:2]:
        problems.append(f"TORCH_FLOOR {TORCH_FLOOR} is not a {'.'.join(map(str, lower[0][:2]))} release")
    if upper:
        top = (upper[0] + (0,))[:2]
        if top[1] > 0 and release(TORCH_CEILING)[:2] != (top[0], top[1] - 1):
            problems.append(f"TORCH_CEILING {TORCH_CEILING} is not a {top[0]}.{top[1] - 1} release")
    if problems:
        raise SystemExit(f"torch_range: pyproject.toml admits torch{spec_text(spec)}, but " + "; ".join(problems)
                         + f": update the constants in {Path(__file__).name} (and docs/install.md)")


def log(msg: str) -> None:
    print(f"[torch_range] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> None:
    log(" ".join(cmd))
    subprocess.run(cmd, check=True, stdout=sys.stderr, **kw)


def probe(python: Path) -> dict | None:
    r = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 and r.stdout.strip() else None


def venv_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV")}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    return env


def parse_summary(lines: list[str]) -> tuple[dict[str, int], str | None]:
    """pytest's last line, e.g. "1 failed, 505 passed, 2 skipped in 301.2s (0:05:01)"."""
    for line in reversed(lines):
        text = line.strip().strip("=").strip()
        if re.search(r"\bin [\d.]+s\b", text) and re.search(r"\d+ (passed|failed|skipped|errors?|no tests ran)", text) \
                or text.startswith("no tests ran"):
            counts = {k: 0 for k in ("passed", "failed", "skipped", "errors")}
            for n, word in re.findall(r"(\d+) (\w+)", text):
                if word in COUNT_WORDS:
                    counts[COUNT_WORDS[word]] = counts.get(COUNT_WORDS[word], 0) + int(n)
            return counts, text
    return {}, None


def pytest(venv: Path, workers: int, files: list[str]) -> tuple[int, dict[str, int], str | None]:
    cmd = [str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:randomly", "-q"]
    if workers > 1:
        cmd += ["-n", str(workers)]
    cmd += files
    log(" ".join(cmd))
    env = dict(venv_env(venv), CI="1")
    lines: list[str] = []
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        for line in p.stdout:
            sys.stderr.write(line)
            sys.stderr.flush()
            lines.append(line)
            del lines[:-200]
    counts, summary = parse_summary(lines)
    return p.returncode, counts, summary


def test_version(version: str, args) -> dict:
    venv = args.venvs / f"torch-{version}"
    python = venv / "bin" / "python"
    res: dict = {"requested": version, "venv": os.path.relpath(venv, ROOT) if venv.is_relative_to(ROOT) else str(venv)}
    t0 = time.perf_counter()
    try:
        marker = venv / "torch_range.json"  # how its torch was installed
        wanted = {"torch": version, "pip_arg": args.pip_arg}
        have = probe(python) if python.exists() and marker.exists() and not args.fresh else None
        res["reused"] = bool(have and have["torch"].split("+")[0] == version
                             and json.loads(marker.read_text(encoding="utf-8")) == wanted)
        if not res["reused"]:
            if venv.exists():
                log(f"removing {venv}")
                shutil.rmtree(venv)
            venv.parent.mkdir(parents=True, exist_ok=True)
            run([args.python, "-m", "venv", str(venv)])
            run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], env=venv_env(venv))
            run([str(python), "-m", "pip", "install", "--quiet", f"torch=={version}", *args.pip_arg],
                env=venv_env(venv))
            marker.write_text(json.dumps(wanted) + "\n", encoding="utf-8")
        run([str(python), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[all,test]"], env=venv_env(venv), cwd=ROOT)
    except subprocess.CalledProcessError as e:
        res.update(ok=False, error=f"{' '.join(e.cmd)} exited with {e.returncode}",
                   setup_s=round(time.perf_counter() - t0, 1))
        return res
    res["setup_s"] = round(time.perf_counter() - t0, 1)
    info = probe(python)
    if info is None:
        res.update(ok=False, error="torch does not import in the venv")
        return res
    res.update(info)
    if info["torch"].split("+")[0] != version:
        res.update(ok=False, error=f"asked for torch {version}, the venv has {info['torch']}"
                                   " (did the package's requirements replace it?)")
        return res
    t1 = time.perf_counter()
    rc, counts, summary = pytest(venv, args.workers, FAST_TESTS)
    res.update(counts)
    res.update(pytest_rc=rc, summary=summary, tests_s=round(time.perf_counter() - t1, 1),
               total_s=round(time.perf_counter() - t0, 1))
    res["ok"] = rc == 0 and summary is not None and counts.get("failed", 0) == 0 and counts.get("errors", 0) == 0
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--torch", action="append", metavar="X.Y.Z",
                    help=f"a torch release to test (repeatable; default the floor {TORCH_FLOOR}"
                         f" and the ceiling {TORCH_CEILING})")
    ap.add_argument("--venvs", type=Path, default=ROOT / ".venvs",
                    help="where the venvs go, one per version (default .venvs/)")
    ap.add_argument("--fresh", action="store_true", help="rebuild the venvs even where torch is already the right one")
    ap.add_argument("--python", default=sys.executable,
                    help="the interpreter the venvs are made from (default this one)")
    ap.add_argument("--pip-arg", action="append", default=[], metavar="ARG",
                    help="an option for pip when it installs torch, e.g."
                         " --pip-arg=--index-url=https://download.pytorch.org/whl/cpu "
                         "(repeatable; write it with '=')")
    ap.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (default 2; 1 runs without xdist)")
    ap.add_argument("--list", action="store_true", help="print the versions and the test files, and stop")
    args = ap.parse_args()
    args.venvs = args.venvs.resolve()

    spec = torch_requirement()
    if args.torch is None:
        check_ends(spec)
        args.torch = [TORCH_FLOOR, TORCH_CEILING]
    outside = [v for v in args.torch if not admits(spec, v)]
    if outside:
        ap.error(f"pyproject.toml admits torch{spec_text(spec)}: {', '.join(outside)} is outside it "
                 "(pip would replace it when it installs the package)")
    if args.list:
        print(json.dumps({"pyproject": f"torch{spec_text(spec)}", "torch": args.torch, "tests": FAST_TESTS}, indent=2))
        return 0
    results = []
    for v in args.torch:
        log(f"torch {v}")
        results.append(test_version(v, args))
        log(json.dumps(results[-1]))
    ok = all(r["ok"] for r in results)
    print(json.dumps({"pyproject": f"torch{spec_text(spec)}", "test_files": len(FAST_TESTS), "workers": args.workers,
                      "ok": ok, "results": results}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
