"""``jeffreys compare-runs A B``: do two runs of an experiment agree within their intervals?

A and B are two ``results.json`` of ``jeffreys experiment`` or ``jeffreys demo`` (or the
directories holding them): the same experiment on another machine, with another library
version, or simply twice. For every system and evaluation set present in both, and METRIC in
``eer``, ``min_dcf``, ``cllr``, the two seed means are tested against each other:

* each run's interval (95 % unless the run says otherwise) gives a standard error, its
  half-width on the side facing the other run divided by the normal quantile of its level
  (``1.96`` at 95 %): ``se = (a - lo_a) / 1.96`` when ``a > b``, ``(hi_a - a) / 1.96`` else;
* ``z = (a - b) / sqrt(se_a² + se_b²)`` and the two-sided normal p-value ``erfc(|z| / √2)``
  (the table shows z of ``B - A``);
* Holm's step-down adjustment (:func:`.statistics.holm`) over the whole family of (system,
  set, metric) tested; a pair *differs* when ``p_adjusted < 0.05`` (the package's one
  meaning of "distinguishable").

It also says which systems and sets only one run has, whether the runs are bit-identical
(every per-seed score digest, ``scores_sha256``, and every per-seed metric equal; "unknown"
when a results.json predates the digests), which fields of ``environment`` differ, and
whether the configs and seeds differ. Exit status: 0 consistent, 1 some difference beyond the
intervals, 2 bad input (one line naming the file and the key).

``results.json`` is read as untrusted data: at most ``--max-bytes`` (64 MiB), UTF-8 JSON
whose every value read is checked for its type; names taken from it are printed escaped and
shortened.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

from ..errors import InputError
from ..fileio import input_file, read_text
from .statistics import holm

MAX_BYTES = 64 << 20
METRICS = ("eer", "min_dcf", "cllr")
SEED_METRICS = ("eer", "min_dcf", "cllr", "min_cllr")  # per-seed values compared for bit identity
ALPHA = 0.05
METHOD = "holm"
_SHOWN = {"eer": ("EER %", 100.0, "{:.3f}"), "min_dcf": ("minDCF", 1.0, "{:.4f}"), "cllr": ("Cllr", 1.0, "{:.4f}")}
_ABSENT = object()


# ----------------------------------------------------------------------------- reading
def show(text: Any, limit: int = 40) -> str:
    """A name or value taken from an untrusted file, safe to print: control and format
    characters escaped, at most ``limit`` characters."""
    try:
        s = text if isinstance(text, str) else json.dumps(text, default=str)
    except (RecursionError, ValueError):
        s = f"({_type(text)} nested too deeply)"
    cut = s[:limit]
    if not cut.isprintable():
        cut = cut.encode("unicode_escape").decode("ascii")[:limit]
    return cut + ("..." if len(s) > limit else "")


def _type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


@dataclass
class Cell:
    """A system's result on one evaluation set: seed means, intervals, their level."""

    values: dict[str, float]
    ci: dict[str, tuple[float, float]] | None
    level: float
    p_target: float | None


@dataclass
class System:
    seeds: list[int]
    eval: dict[str, Cell]
    runs: dict[str, dict[str, tuple[dict[str, float], str | None]]]  # seed -> set -> (metrics, scores_sha256)


@dataclass
class Results:
    """What compare-runs reads from one results.json."""

    path: Path
    systems: dict[str, System]
    environment: dict | None
    config: dict | None


class _Reader:
    """Typed access to parsed JSON; every failure is one line naming the file and the key."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, what: str, value) -> InputError:
        return InputError(f"{self.path}: key {key}: expected {what}, got {_type(value)}")

    def obj(self, value, key: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(key, "an object", value)
        return value

    def get(self, parent: dict, name: str, key: str, default=_ABSENT):
        if name not in parent:
            if default is not _ABSENT:
                return default
            raise InputError(f"{self.path}: key {key}{'.' if key else ''}{name} missing")
        return parent[name]

    def number(self, value, key: str) -> float:
        if isinstance(value, str) and value in ("nan", "inf", "-inf"):  # how jsonable writes them
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, "a number", value)
        try:
            return float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise InputError(f"{self.path}: key {key}: number out of range") from None

    def interval(self, value, key: str) -> tuple[float, float]:
        if not isinstance(value, list) or len(value) != 2:
            raise self.fail(key, "a list [lo, hi]", value) if not isinstance(value, list) else \
                InputError(f"{self.path}: key {key}: expected a list [lo, hi], got {len(value)} values")
        return self.number(value[0], f"{key}[0]"), self.number(value[1], f"{key}[1]")


def _k(base: str, name: str) -> str:
    return f"{base}[{json.dumps(show(name))}]"


def _read_cell(r: _Reader, raw, key: str) -> Cell:
    raw = r.obj(raw, key)
    values = {m: r.number(r.get(raw, m, key), f"{key}.{m}") for m in METRICS}
    p_target = raw.get("p_target")
    p_target = None if p_target is None else r.number(p_target, f"{key}.p_target")
    ci_raw = r.get(raw, "ci", key, None)
    ci, level = None, 0.95
    if ci_raw is not None:
        ci_raw = r.obj(ci_raw, f"{key}.ci")
        level = r.number(r.get(ci_raw, "level", f"{key}.ci", 0.95), f"{key}.ci.level")
        if not 0 < level < 1:
            raise InputError(f"{r.path}: key {key}.ci.level: expected a level in (0, 1), got {level:g}")
        ci = {m: r.interval(r.get(ci_raw, m, f"{key}.ci"), f"{key}.ci.{m}") for m in METRICS}
    return Cell(values, ci, level, p_target)


def _read_system(r: _Reader, raw, key: str) -> System:
    raw = r.obj(raw, key)
    seeds = r.get(raw, "seeds", key)
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise r.fail(f"{key}.seeds", "a list of integers", seeds if not isinstance(seeds, list) else
                     next(s for s in seeds if not isinstance(s, int) or isinstance(s, bool)))
    ev = r.obj(r.get(raw, "eval", key), f"{key}.eval")
    cells = {name: _read_cell(r, cell, _k(f"{key}.eval", name)) for name, cell in ev.items()}
    runs: dict[str, dict] = {}
    for seed, run in r.obj(r.get(raw, "runs", key, {}), f"{key}.runs").items():
        rkey = _k(f"{key}.runs", seed)
        run_eval = r.obj(r.get(r.obj(run, rkey), "eval", rkey), f"{rkey}.eval")
        runs[seed] = {}
        for name, met in run_eval.items():
            mkey = _k(f"{rkey}.eval", name)
            met = r.obj(met, mkey)
            for m in METRICS:
                r.get(met, m, mkey)
            values = {m: r.number(met[m], f"{mkey}.{m}") for m in SEED_METRICS if m in met}
            digest = met.get("scores_sha256")
            if digest is not None and not isinstance(digest, str):
                raise r.fail(f"{mkey}.scores_sha256", "a string", digest)
            runs[seed][name] = (values, digest)
    return System(list(seeds), cells, runs)


def load_results(path: str | Path, *, max_bytes: int = MAX_BYTES) -> Results:
    """A ``results.json`` (or the directory holding one), size-limited and checked key by key."""
    p = Path(path)
    if p.is_dir():
        if not (p / "results.json").exists():
            raise InputError(f"{p}: no results.json in this directory")
        p = p / "results.json"
    size = input_file(p, "results").stat().st_size
    if size > max_bytes:
        raise InputError(f"{p}: {size} bytes, more than the limit of {max_bytes} (--max-bytes)")
    data, text = read_text(p, "results")
    if len(data) > max_bytes:  # grew since the check
        raise InputError(f"{p}: more than the limit of {max_bytes} bytes (--max-bytes)")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{p}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from None
    except RecursionError:
        raise InputError(f"{p}: not valid JSON (nested too deeply)") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise InputError(f"{p}: not valid JSON ({show(str(e).splitlines()[0] if str(e) else 'bad value', 80)})") from None
    r = _Reader(p)
    if not isinstance(raw, dict):
        raise InputError(f"{p}: expected a JSON object (a results.json) at the top level, got {_type(raw)}")
    systems_raw = r.obj(r.get(raw, "systems", ""), "systems")
    systems = {name: _read_system(r, s, _k("systems", name)) for name, s in systems_raw.items()}
    env = r.get(raw, "environment", "", None)
    env = None if env is None else r.obj(env, "environment")
    config = r.get(raw, "config", "", None)
    config = None if config is None else r.obj(config, "config")
    return Results(p, systems, env, config)


# ----------------------------------------------------------------------------- statistics
def z_test(a: float, ci_a: tuple[float, float], b: float, ci_b: tuple[float, float],
           level_a: float = 0.95, level_b: float = 0.95) -> tuple[float, float, float, float]:
    """(z, two-sided p, se_a, se_b) of the difference of two independent estimates, each
    standard error read off its own interval on the side facing the other estimate."""
    qa, qb = NormalDist().inv_cdf(0.5 + level_a / 2), NormalDist().inv_cdf(0.5 + level_b / 2)
    side_a = (a - ci_a[0]) if a > b else (ci_a[1] - a)
    side_b = (ci_b[1] - b) if a > b else (b - ci_b[0])
    se_a, se_b = max(side_a, 0.0) / qa, max(side_b, 0.0) / qb
    se = math.hypot(se_a, se_b)
    if a == b:
        return 0.0, 1.0, se_a, se_b
    if se == 0:
        return math.copysign(math.inf, a - b), 0.0, se_a, se_b
    z = (a - b) / se
    return z, math.erfc(abs(z) / math.sqrt(2)), se_a, se_b


def _same(x: float, y: float) -> bool:
    return x == y or (math.isnan(x) and math.isnan(y))


# ----------------------------------------------------------------------------- comparing
def _flatten(x, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    if isinstance(x, dict) and x and depth < 8:
        out = {}
        for k, v in x.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1))
        return out
    if isinstance(x, list) and x and depth < 8 and any(isinstance(v, (dict, list)) for v in x):
        out = {}
        for i, v in enumerate(x):
            out.update(_flatten(v, f"{prefix}[{i}]", depth + 1))
        return out
    if depth >= 8 and isinstance(x, (dict, list)):  # compared as text: no deep recursion
        try:
            x = json.dumps(x, sort_keys=True, default=str)
        except (RecursionError, ValueError):
            x = f"({_type(x)} nested too deeply)"
    return {prefix: x}


def _differences(a: dict | None, b: dict | None, skip: tuple[str, ...] = ()) -> dict[str, list]:
    fa, fb = _flatten(a or {}), _flatten(b or {})
    keys = [k for k in dict.fromkeys([*fa, *fb]) if k.split(".")[0].split("[")[0] not in skip]
    return {k: [fa.get(k, _ABSENT), fb.get(k, _ABSENT)] for k in keys if fa.get(k, _ABSENT) != fb.get(k, _ABSENT)}


def _bit_identity(A: Results, B: Results) -> tuple[bool | None, list[str]]:
    """(True/False/None for unknown, why): every per-seed digest and metric equal."""
    def keys(R: Results) -> set:
        return {(s, seed, e) for s, sysr in R.systems.items() for seed, per in sysr.runs.items() for e in per}

    ka, kb = keys(A), keys(B)
    why: list[str] = []
    if ka != kb:
        why.append(f"different (system, seed, set) runs: {len(ka - kb)} only in A, {len(kb - ka)} only in B")
    missing = differ = 0
    for s, seed, e in sorted(ka & kb):
        (va, da), (vb, db) = A.systems[s].runs[seed][e], B.systems[s].runs[seed][e]
        bad = [m for m in dict.fromkeys([*va, *vb]) if m not in va or m not in vb or not _same(va[m], vb[m])]
        if da is None or db is None:
            missing += 1
        elif da != db:
            bad.append("scores")
        if bad:
            differ += 1
            why.append(f"{show(s)}/seed-{show(seed, 12)}/{show(e)}: {', '.join(bad)}")
    if differ:
        why.insert(0, f"{differ} of {len(ka & kb)} common runs differ")
    if why:
        return False, why
    if not ka:
        return None, ["no per-seed runs recorded"]
    if missing:
        return None, [f"score digests missing for {missing} of {len(ka)} runs (a results.json from before they were recorded)"]
    return True, [f"{len(ka)} runs: every score digest and per-seed metric equal"]


def compare_runs(a: str | Path, b: str | Path, *, max_bytes: int = MAX_BYTES) -> dict:
    """The comparison of two runs as JSON data (what ``--json`` prints)."""
    A, B = load_results(a, max_bytes=max_bytes), load_results(b, max_bytes=max_bytes)
    rows: list[dict] = []
    common = [s for s in A.systems if s in B.systems]
    for s in common:
        sa, sb = A.systems[s], B.systems[s]
        for e in [e for e in sa.eval if e in sb.eval]:
            ca, cb = sa.eval[e], sb.eval[e]
            for m in METRICS:
                va, vb = ca.values[m], cb.values[m]
                row: dict[str, Any] = {"system": s, "set": e, "metric": m, "a": va, "b": vb, "diff": vb - va,
                                       "ci_a": list(ca.ci[m]) if ca.ci else None, "ci_b": list(cb.ci[m]) if cb.ci else None,
                                       "se_a": None, "se_b": None, "z": None, "p": None, "p_adjusted": None}
                if m == "min_dcf" and ca.p_target is not None and cb.p_target is not None and ca.p_target != cb.p_target:
                    row["verdict"] = f"p_target {ca.p_target:g} vs {cb.p_target:g}"
                elif ca.ci is None or cb.ci is None:
                    row["verdict"] = "no interval"
                elif not all(map(math.isfinite, (va, vb, *ca.ci[m], *cb.ci[m]))):
                    row["verdict"] = "equal" if _same(va, vb) else "not finite"
                else:
                    # z of the difference B - A, as the table shows it
                    row["z"], row["p"], row["se_b"], row["se_a"] = z_test(vb, cb.ci[m], va, ca.ci[m], cb.level, ca.level)
                rows.append(row)
    if not rows:
        raise InputError(f"{B.path}: no system and evaluation set in common with {A.path}: nothing to compare")
    tested = [r for r in rows if r["p"] is not None]
    for r, adj in zip(tested, holm([r["p"] for r in tested])):
        r["p_adjusted"] = adj
        r["verdict"] = "DIFFER" if adj < ALPHA else "within"
    beyond = [r for r in tested if r["verdict"] == "DIFFER"]

    only = {"a": {"systems": [s for s in A.systems if s not in B.systems], "sets": {}},
            "b": {"systems": [s for s in B.systems if s not in A.systems], "sets": {}}}
    for s in common:
        for side, X, Y in (("a", A, B), ("b", B, A)):
            extra = [e for e in X.systems[s].eval if e not in Y.systems[s].eval]
            if extra:
                only[side]["sets"][s] = extra
    identical, why = _bit_identity(A, B)
    seeds = {s: [A.systems[s].seeds, B.systems[s].seeds] for s in common if A.systems[s].seeds != B.systems[s].seeds}
    env_diff = _differences(A.environment, B.environment, skip=("seeds",))
    cfg_diff = _differences(A.config, B.config, skip=("seeds",))
    return {
        "a": str(A.path), "b": str(B.path),
        "comparisons": rows,
        "multiplicity": {"method": METHOD, "family": len(tested), "alpha": ALPHA},
        "untested": len(rows) - len(tested),
        "beyond_intervals": [{"system": r["system"], "set": r["set"], "metric": r["metric"]} for r in beyond],
        "consistent": not beyond,
        "only_in": only,
        "bit_identical": "unknown" if identical is None else identical,
        "bit_identity": why,
        "seeds_differ": seeds,
        "environment": {"recorded": [A.environment is not None, B.environment is not None],
                        "differences": {k: [None if v is _ABSENT else v for v in ab] for k, ab in env_diff.items()},
                        "absent": {k: [v is _ABSENT for v in ab] for k, ab in env_diff.items() if _ABSENT in ab}},
        "config": {"recorded": [A.config is not None, B.config is not None],
                   "differences": {k: [None if v is _ABSENT else v for v in ab] for k, ab in cfg_diff.items()}},
        "exit_status": 1 if beyond else 0,
    }


# ----------------------------------------------------------------------------- printing
def _value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, list):
        return show(",".join(map(str, v)) if all(isinstance(x, (str, int, float)) for x in v) else v, 60)
    return show(v, 60)


def _fmt(x: float | None, spec: str = "{:.3g}") -> str:
    if x is None:
        return "-"
    return spec.format(x) if math.isfinite(x) else str(x)


def format_report(rep: dict, limit: int = 30) -> str:
    """The report as a readable table and a few plain lines."""
    lines = [f"A: {show(rep['a'], 200)}", f"B: {show(rep['b'], 200)}", ""]
    header = ["system", "set", "metric", "A", "B", "B - A", "z", "p", "p_adj", "verdict"]
    table = []
    for r in rep["comparisons"]:
        label, scale, spec = _SHOWN[r["metric"]]
        sc = lambda v: None if v is None else v * scale  # noqa: E731
        table.append([show(r["system"], 24), show(r["set"], 24), label, _fmt(sc(r["a"]), spec), _fmt(sc(r["b"]), spec),
                      _fmt(sc(r["diff"]), "{:+" + spec[2:]), _fmt(r["z"], "{:+.2f}"), _fmt(r["p"], "{:.3g}"),
                      _fmt(r["p_adjusted"], "{:.3g}"), r["verdict"]])
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    right = {3, 4, 5, 6, 7, 8}
    for row in [header, *table]:
        lines.append("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    mult = rep["multiplicity"]
    n_sys = len({r["system"] for r in rep["comparisons"]})
    n_set = len({(r["system"], r["set"]) for r in rep["comparisons"]})
    lines += ["", f"{mult['family']} comparisons tested ({n_sys} system(s), {n_set} system-set pair(s), {len(METRICS)} metrics), "
              "Holm-adjusted over that family;", f"a pair differs when p_adjusted < {mult['alpha']:g}."]
    if rep["untested"]:
        lines.append(f"{rep['untested']} not tested (no interval in a results.json, e.g. metrics.n_boot: 0, "
                     "a different p_target, or a value that is not finite).")
    for side, name in (("a", "A"), ("b", "B")):
        o = rep["only_in"][side]
        parts = [f"system {show(s)}" for s in o["systems"]]
        parts += [f"{show(s)} on {', '.join(show(e) for e in es)}" for s, es in o["sets"].items()]
        if parts:
            lines.append(f"Only in {name}: " + "; ".join(parts[:limit]) + ("; ..." if len(parts) > limit else ""))
    bit = rep["bit_identical"]
    why = rep["bit_identity"]
    lines.append(f"Bit-identical: {'yes' if bit is True else 'no' if bit is False else 'unknown'} ("
                 + "; ".join(why[:3]) + ("; ..." if len(why) > 3 else "") + ")")
    if rep["seeds_differ"]:
        lines.append("Seeds differ: " + "; ".join(f"{show(s)}: {a} in A, {b} in B" for s, (a, b) in
                                                    list(rep["seeds_differ"].items())[:limit]))
    for what, block in (("Environment", rep["environment"]), ("Config", rep["config"])):
        rec = block["recorded"]
        if not all(rec):
            lines.append(f"{what}: not recorded in " + " and ".join(n for n, r in zip("AB", rec) if not r))
        diffs = block["differences"]
        if not diffs:
            if all(rec):
                lines.append(f"{what}: the same")
            continue
        absent = block.get("absent", {})
        shown = [f"  {show(k, 60)}: " + " -> ".join("(absent)" if absent.get(k, [False, False])[i] else _value(v)
                                                    for i, v in enumerate(ab)) for k, ab in list(diffs.items())[:limit]]
        lines.append(f"{what} differs ({len(diffs)} field(s)):")
        lines += shown + ([f"  ... and {len(diffs) - limit} more (--json lists all)"] if len(diffs) > limit else [])
    beyond = rep["beyond_intervals"]
    if beyond:
        what = "; ".join(f"{show(b['system'])} on {show(b['set'])} ({_SHOWN[b['metric']][0].split()[0]})" for b in beyond[:limit])
        lines.append(f"Verdict: NOT consistent: {len(beyond)} of {mult['family']} difference(s) beyond the intervals: {what}.")
    else:
        lines.append(f"Verdict: consistent: every tested difference ({mult['family']}) lies within what the intervals allow.")
    return "\n".join(lines) + "\n"


def cli_compare_runs(argv: list[str]) -> int:
    from ..metrics import jsonable

    parser = argparse.ArgumentParser(
        prog="jeffreys compare-runs",
        description="Check two runs of an experiment against each other (another machine, another library "
        "version): per system, evaluation set and metric (EER, minDCF, Cllr), whether the difference of the seed "
        "means lies within what the two runs' intervals allow (z test from the intervals, Holm-adjusted over all "
        "pairs); whether the runs are bit-identical; which environment fields, configs and seeds differ. Exit "
        "status 0 consistent, 1 a difference beyond the intervals, 2 bad input.",
    )
    parser.add_argument("a", type=Path, help="results.json of the first run (or its experiment directory)")
    parser.add_argument("b", type=Path, help="results.json of the second run (or its experiment directory)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.add_argument("--max-bytes", type=int, default=MAX_BYTES, metavar="N",
                        help=f"largest results.json read (default {MAX_BYTES}, 64 MiB)")
    args = parser.parse_args(argv)
    if args.max_bytes <= 0:
        raise InputError(f"--max-bytes must be positive, got {args.max_bytes}")
    rep = compare_runs(args.a, args.b, max_bytes=args.max_bytes)
    if args.json:
        print(json.dumps(jsonable(rep), indent=2))
    else:
        print(format_report(rep), end="")
    return rep["exit_status"]


__all__ = ["ALPHA", "MAX_BYTES", "METRICS", "Results", "cli_compare_runs", "compare_runs", "format_report", "load_results",
           "show", "z_test"]
