"""Figures and tables of the paper's shape: DET curves (Figs. 4-5), relative gains (Fig. 3),
Table 1 as Markdown or CSV.

The *results* structure that the tables and the gain chart read is a nested dict::

    results[system][evalset] = evaluate(scores, labels, p_targets=(0.01, ...))

i.e. ``{"AAM-Softmax": {"VoxCeleb1-O": {"eer": 0.0093, "min_dcf": {0.01: 0.095}, ...}, ...},
...}``. Only ``"eer"`` and ``"min_dcf"`` (a dict p_target -> value) are read, so a dict
loaded back from JSON (keys ``"0.01"``) works too. A cell may also carry bootstrap
intervals, ``"ci": {"eer": (lo, hi), "min_dcf": (lo, hi) or {p_target: (lo, hi)}}`` (the
shape of :func:`jeffreys.metrics.bootstrap_ci`), printed after the value in the Markdown
table. Systems are rows in dict order,
evaluation sets columns in order of first appearance (or as given by ``evalsets=``).
EER is printed in percent, minDCF as a fraction, as in Table 1.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .errors import InputError
from .fileio import atomic_write
from .metrics import det_points, evaluate

DET_TICKS = (0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9)


# ----------------------------------------------------------------------------- tables
def _dcf(cell: Mapping, p_target: float) -> float:
    d = cell["min_dcf"]
    for k, v in d.items():
        if float(k) == p_target:
            return float(v)
    raise InputError(f"no minDCF at p_target={p_target:g} (have {', '.join(str(k) for k in d)})")


def _evalsets(results: Mapping, evalsets: Sequence[str] | None) -> list[str]:
    if evalsets is not None:
        return list(evalsets)
    seen: dict[str, None] = {}
    for per_set in results.values():
        seen.update(dict.fromkeys(per_set))
    return list(seen)


def _interval(ci: Mapping | None, key: str, p_target: float) -> tuple[float, float] | None:
    if not ci or ci.get(key) is None:
        return None
    v = ci[key]
    if isinstance(v, Mapping):
        v = next((iv for k, iv in v.items() if float(k) == p_target), None)
    return None if v is None else (float(v[0]), float(v[1]))


def _rows(results: Mapping, p_target: float, evalsets: Sequence[str] | None):
    """(sets, [(system, [(eer, min_dcf, eer_interval, dcf_interval) per set])]); Nones where a
    system lacks a set or a cell has no intervals."""
    sets = _evalsets(results, evalsets)
    rows = []
    for system, per_set in results.items():
        vals = []
        for e in sets:
            cell = per_set.get(e)
            if cell is None:
                vals.append((None, None, None, None))
                continue
            ci = cell.get("ci")
            vals.append((float(cell["eer"]), _dcf(cell, p_target),
                         _interval(ci, "eer", p_target), _interval(ci, "min_dcf", p_target)))
        rows.append((system, vals))
    return sets, rows


def table_markdown(results: Mapping, p_target: float = 0.01, evalsets: Sequence[str] | None = None,
                   bold_best: bool = True, eer_digits: int = 2, dcf_digits: int = 3) -> str:
    """Table 1: one row per system; per evaluation set an ``EER %`` and a ``minDCF``
    column (p_target as given); the best value of each column in bold; "[lo, hi]" after a
    value whose cell carries bootstrap intervals; "–" where a system lacks a set."""
    sets, rows = _rows(results, p_target, evalsets)
    best = []
    for j in range(len(sets)):
        col = [r[1][j] for r in rows if r[1][j][0] is not None]
        best.append((min(c[0] for c in col), min(c[1] for c in col)) if col else (None, None))

    def fmt(v, digits, b, interval=None, scale=1.0):
        if v is None:
            return "–"
        s = f"{v:.{digits}f}"
        s = f"**{s}**" if bold_best and len(rows) > 1 and f"{b:.{digits}f}" == s else s
        if interval is not None:
            s += f" [{interval[0] * scale:.{digits}f}, {interval[1] * scale:.{digits}f}]"
        return s

    head = "| System | " + " | ".join(f"{e} EER % | {e} minDCF" for e in sets) + " |"
    rule = "|---|" + "---:|---:|" * len(sets)
    lines = [head, rule]
    for system, vals in rows:
        cells = []
        for (eer, dcf, eer_ci, dcf_ci), (beer, bdcf) in zip(vals, best):
            cells += [fmt(None if eer is None else eer * 100, eer_digits, None if beer is None else beer * 100,
                          eer_ci, 100.0),
                      fmt(dcf, dcf_digits, bdcf, dcf_ci)]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    lines.append(f"\nEER in percent; minDCF normalised, p_target = {p_target:g}, C_miss = C_fa = 1.")
    return "\n".join(lines) + "\n"


def table_csv(results: Mapping, p_target: float = 0.01, evalsets: Sequence[str] | None = None) -> str:
    """Table 1 as CSV: ``system, <set> EER %, <set> EER % lo, <set> EER % hi, <set> minDCF,
    lo, hi, ...``; full precision; empty cells where a system lacks a set or an interval."""
    sets, rows = _rows(results, p_target, evalsets)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["system"] + [f"{e} {h}" for e in sets
                             for h in ("EER %", "EER % lo", "EER % hi", f"minDCF p={p_target:g}", "minDCF lo", "minDCF hi")])
    for system, vals in rows:
        cells = []
        for eer, dcf, eer_ci, dcf_ci in vals:
            if eer is None:
                cells += [""] * 6
                continue
            cells += [repr(eer * 100), *(("", "") if eer_ci is None else (repr(eer_ci[0] * 100), repr(eer_ci[1] * 100))),
                      repr(dcf), *(("", "") if dcf_ci is None else (repr(dcf_ci[0]), repr(dcf_ci[1])))]
        w.writerow([system] + cells)
    return buf.getvalue()


def comparisons_markdown(comparisons: Mapping, labels: Mapping[str, str], evalsets: Sequence[str], level: float = 0.95,
                         multiplicity: Mapping | None = None) -> str:
    """The paired comparisons (``results.json``'s ``comparisons`` block): per system, against
    its reference, and per evaluation set, the relative change of EER and minDCF (negative =
    better) with its interval, its p-value and its p adjusted over the run's family
    (``p_adjusted``, see :func:`jeffreys.experiment.statistics.adjust_comparisons`; required);
    bold where the comparison is distinguishable (adjusted p below ``1 - level``), "n.d." (not
    distinguishable) where it is not, whatever its own interval. ``multiplicity``: the run's
    ``{"method", "family"}`` record, named under the table."""
    from .experiment.statistics import alpha_of, distinguishable, multiplicity_text

    alpha = alpha_of(level)
    sets = [e for e in evalsets if any(e in per for per in comparisons.values())]

    def cell(c: Mapping) -> str:
        lo, hi = c["ci"]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return "–"
        q = c["p_adjusted"]
        s = f"{100 * c['diff_rel']:+.1f} % [{100 * lo:+.1f}, {100 * hi:+.1f}] p {c['p']:.3f}" + (
            f", adj. {q:.3f}" if q is not None else "")
        return f"**{s}**" if distinguishable(c, alpha) else f"{s} n.d."

    head = "| System | vs | " + " | ".join(f"{e} ΔEER | {e} ΔminDCF" for e in sets) + " |"
    lines = [head, "|---|---|" + "---:|---:|" * len(sets)]
    for system, per_set in comparisons.items():
        cells, ref = [], None
        for e in sets:
            c = per_set.get(e)
            cells += ["–", "–"] if c is None else [cell(c["eer"]), cell(c["min_dcf"])]
            ref = ref or (c and c["eer"]["reference"])
        lines.append(f"| {labels.get(system, system)} | {labels.get(ref, ref)} | " + " | ".join(cells) + " |")
    family = f" ({multiplicity_text(multiplicity)}, Cllr's included)" if multiplicity else ""
    lines.append(f"\nRelative change of the seed mean against the reference (negative = better), paired over training "
                 f"seeds and evaluation speakers; [{100 * level:g} % interval of the comparison alone], two-sided "
                 f"bootstrap p; adj.: p adjusted over every comparison the run reports{family}, family-wise error "
                 f"<= {100 * alpha:g} %. "
                 f"**Bold**: distinguishable (adjusted p < {alpha:g}); n.d.: not distinguishable, even where the "
                 f"interval alone excludes 0.")
    return "\n".join(lines) + "\n"


def relative_gains(results: Mapping, baseline: str, p_target: float = 0.01,
                   evalsets: Sequence[str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """``gains[system][evalset] = {"eer": g, "min_dcf": g}`` with ``g = (base - sys) / base``
    (a fraction; positive = better than the baseline; NaN where undefined)."""
    if baseline not in results:
        raise InputError(f"baseline {baseline!r} is not among the systems ({', '.join(results)})")
    sets = _evalsets(results, evalsets)
    base = results[baseline]
    out: dict = {}
    for system, per_set in results.items():
        if system == baseline:
            continue
        out[system] = {}
        for e in sets:
            if e not in per_set or e not in base:
                continue
            g = {}
            for key, get in (("eer", lambda c: float(c["eer"])), ("min_dcf", lambda c: _dcf(c, p_target))):
                b, s = get(base[e]), get(per_set[e])
                g[key] = (b - s) / b if b > 0 else math.nan
            out[system][e] = g
    return out


# ----------------------------------------------------------------------------- figures
def _pyplot():
    from .extras import require

    matplotlib = require("matplotlib", "figures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


FIGURE_FORMATS = (".png", ".pdf", ".svg")


def figure_path(path: str | Path) -> Path:
    """Where :func:`save_figure` writes ``path``: as given when it ends in .png, .pdf or .svg,
    else with ``.png`` appended (names may hold dots: ``det_vox1.O`` -> ``det_vox1.O.png``)."""
    p = Path(path)
    return p if p.suffix.lower() in FIGURE_FORMATS else p.with_name(p.name + ".png")


def save_figure(fig, path: str | Path, dpi: int = 150) -> Path:
    """Write ``fig`` to :func:`figure_path` of ``path`` atomically, close it, return the path.
    The one figure writer of the package (report and probe figures)."""
    out = figure_path(path)
    try:
        with atomic_write(out, "wb") as f:
            fig.savefig(f, format=out.suffix[1:].lower(), dpi=dpi, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return out


def plot_gains(table: Mapping, baseline: str, out_path: str | Path, p_target: float = 0.01,
               evalsets: Sequence[str] | None = None, title: str | None = None) -> dict:
    """Fig. 3: grouped bars of the relative gain (percent) of each system over ``baseline``,
    per evaluation set, EER and minDCF side by side. ``table`` is a results structure (see
    the module docstring). Returns the gains (fractions)."""
    gains = relative_gains(table, baseline, p_target, evalsets)
    sets = _evalsets(table, evalsets)
    plt = _pyplot()
    systems = list(gains)
    labels = [f"{e}\n{m}" for e in sets for m in ("EER", "DCF")]
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(labels) + 2), 3.6))
    for k, system in enumerate(systems):
        vals = [100 * gains[system].get(e, {}).get(m, math.nan) for e in sets for m in ("eer", "min_dcf")]
        ax.bar(x + (k - (len(systems) - 1) / 2) * width, vals, width, label=system)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel(f"relative gain over {baseline} (%)")
    ax.set_title(title or f"Relative gains, minDCF at p_target={p_target:g}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, out_path)
    return gains


def comparison_bars(comparisons: Mapping, system: str, evalsets: Sequence[str], alpha: float = 0.05):
    """Fig. 3's bars of one system: per evaluation set, EER then minDCF, the gain (percent,
    positive = better), the whisker lengths below and above, and whether the bar is hatched
    (not distinguishable: adjusted p not below ``alpha``). NaN gains where a comparison is missing."""
    from .experiment.statistics import distinguishable

    gain, err_lo, err_hi, hatch = [], [], [], []
    for e in evalsets:
        for metric in ("eer", "min_dcf"):
            c = comparisons[system].get(e, {}).get(metric)
            if c is None or not math.isfinite(c["ci"][0]):
                gain.append(math.nan), err_lo.append(0.0), err_hi.append(0.0), hatch.append(False)
                continue
            g, lo, hi = -100 * c["diff_rel"], -100 * c["ci"][1], -100 * c["ci"][0]
            gain.append(g), err_lo.append(max(0.0, g - lo)), err_hi.append(max(0.0, hi - g))
            hatch.append(not distinguishable(c, alpha))
    return gain, err_lo, err_hi, hatch


def plot_comparisons(comparisons: Mapping, labels: Mapping[str, str], evalsets: Sequence[str], out_path: str | Path,
                     level: float = 0.95, title: str | None = None, multiplicity: Mapping | None = None) -> None:
    """Fig. 3 with error bars: the relative gain (percent, positive = better) of each system
    over the reference per evaluation set, EER and minDCF side by side, from the paired
    comparisons; the bars' whiskers are the comparisons' own intervals, and a hatched bar is
    not distinguishable from 0 after control over the run's family (``p_adjusted``, see
    :func:`comparison_bars`; ``multiplicity`` names the method and family in the legend)."""
    from .experiment.statistics import alpha_of, multiplicity_text

    alpha = alpha_of(level)
    plt = _pyplot()
    systems = list(comparisons)
    sets = [e for e in evalsets if any(e in per for per in comparisons.values())]
    ticks = [f"{e}\n{m}" for e in sets for m in ("EER", "DCF")]
    x = np.arange(len(ticks))
    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(ticks) + 2), 3.8))
    for k, system in enumerate(systems):
        gain, err_lo, err_hi, hatch = comparison_bars(comparisons, system, sets, alpha)
        pos = x + (k - (len(systems) - 1) / 2) * width
        ref = next(iter(comparisons[system].values()))["eer"]["reference"]
        bars = ax.bar(pos, gain, width, label=f"{labels.get(system, system)} vs {labels.get(ref, ref)}", yerr=[err_lo, err_hi], capsize=2,
                      error_kw={"lw": 0.8})
        for bar, h in zip(bars, hatch):
            if h:
                bar.set_hatch("///")
                bar.set_alpha(0.6)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, ticks, fontsize=8)
    refs = {c["eer"]["reference"] for per in comparisons.values() for c in per.values()}
    ax.set_ylabel("relative gain over " + (labels.get(ref := next(iter(refs)), ref) if len(refs) == 1 else "each system's reference") + " (%)")
    ax.set_title(title or f"Relative gains, {100 * level:g} % intervals", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    adj = f"{multiplicity_text(multiplicity)}: " if multiplicity else ""
    ax.legend(fontsize=8, title=f"hatched: not distinguishable ({adj}adjusted p >= {alpha:g})", title_fontsize=7)
    save_figure(fig, out_path)


def effect_markers(points: Sequence[tuple[float, Mapping]], alpha: float = 0.05) -> list[bool]:
    """Per ``(x, comparison)`` of :func:`plot_effect_curve`: whether its marker is filled (the
    EER comparison distinguishable: adjusted p below ``alpha``)."""
    from .experiment.statistics import distinguishable

    return [distinguishable(c["eer"], alpha) for _, c in points]


def plot_effect_curve(points: Mapping[str, Sequence[tuple[float, Mapping]]], out_path: str | Path, xlabel: str,
                      title: str | None = None, level: float = 0.95, multiplicity: Mapping | None = None) -> None:
    """A comparison's relative EER change (percent, negative = better) against a setting, one
    line per evaluation set: ``points[set] = [(x, comparison), ...]`` with the comparisons of
    ``results.json`` (``{"eer": {"diff_rel", "ci", "reference", "p_adjusted"}}``); whiskers are
    their own intervals, hollow markers where the comparison is not distinguishable after
    control over the run's family (:func:`effect_markers`)."""
    from .experiment.statistics import alpha_of, multiplicity_text

    alpha = alpha_of(level)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    sets = list(points)
    for k, name in enumerate(sets):
        pts = sorted(points[name], key=lambda p: p[0])
        shift = 1 + 0.03 * (k - (len(sets) - 1) / 2)  # side by side on a log axis
        xs = [x * shift for x, _ in pts]
        ys = [100 * c["eer"]["diff_rel"] for _, c in pts]
        # a percentile interval need not contain the point estimate: whiskers stop at it
        lo = [max(0.0, y - 100 * c["eer"]["ci"][0]) for y, (_, c) in zip(ys, pts)]
        hi = [max(0.0, 100 * c["eer"]["ci"][1] - y) for y, (_, c) in zip(ys, pts)]
        colour = f"C{k}"
        ax.errorbar(xs, ys, yerr=[lo, hi], color=colour, capsize=3, lw=1, label=name)
        for x, y, filled in zip(xs, ys, effect_markers(pts, alpha)):
            ax.plot([x], [y], "o", color=colour, mfc=colour if filled else "white", zorder=3)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.minorticks_off()
    xticks = sorted({x for pts in points.values() for x, _ in pts})
    ax.set_xticks(xticks, [f"{x:g}" for x in xticks])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("relative EER change (%)")
    adj = f"; {multiplicity_text(multiplicity)}" if multiplicity else ""
    ax.set_title((title + "\n" if title else f"Relative EER change, {100 * level:g} % intervals\n")
                 + f"(hollow: not distinguishable, adjusted p >= {alpha:g}{adj})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, out_path)


def plot_det(systems: Mapping[str, tuple], out_path: str | Path, p_target: float = 0.01, title: str | None = None,
             lim: tuple[float, float] | None = None) -> dict[str, dict]:
    """DET curves (probit axes, in percent) of ``systems[name] = (scores, labels)`` on one
    plot, the EER of each marked by a circle and its minDCF operating point by a triangle
    (Figs. 4-5). ``lim``: axis range as probabilities, by default 0.1 % to 50 % widened
    to show every marker. Writes PNG, PDF or SVG by the suffix of ``out_path``; returns
    each system's :func:`jeffreys.metrics.evaluate` dict."""
    from scipy.stats import norm

    if not systems:
        raise InputError("plot_det needs at least one system")
    results = {name: evaluate(s, y, p_targets=(p_target,)) for name, (s, y) in systems.items()}
    if lim is None:
        marks = [v for r in results.values() for v in (r["eer"], *r["min_dcf_point"][p_target])]
        inner = [v for v in marks if 0 < v < 1]
        lim = (max(1e-5, min([0.001, *inner]) * 0.7), min(0.99, max([0.5, *inner]) * 1.1))
    lo, hi = lim
    if not 0 < lo < hi < 1:
        raise InputError(f"DET range must satisfy 0 < low < high < 1 (got {lim})")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    clip = (norm.ppf(lo) - 1, norm.ppf(hi) + 1)
    for k, (name, (scores, labels)) in enumerate(systems.items()):
        r = results[name]
        pfa, pmiss = det_points(scores, labels)
        x = np.clip(norm.ppf(pfa), *clip)
        y = np.clip(norm.ppf(pmiss), *clip)
        color = f"C{k % 10}"
        ax.plot(x, y, color=color, lw=1.4,
                label=f"{name} (EER {100 * r['eer']:.2f} %, minDCF {r['min_dcf'][p_target]:.3f})")
        e = norm.ppf(min(max(r["eer"], 1e-12), 1 - 1e-12))
        ax.plot([e], [e], "o", mfc="none", mec=color, ms=8, mew=1.5)
        fa, miss = r["min_dcf_point"][p_target]
        ax.plot([np.clip(norm.ppf(fa), *clip)], [np.clip(norm.ppf(miss), *clip)], "^", mfc="none", mec=color, ms=8, mew=1.5)
    ticks = []
    for t in (t for t in DET_TICKS if lo <= t <= hi):  # keep ticks >= 0.3 probit apart
        if not ticks or norm.ppf(t) - norm.ppf(ticks[-1]) >= 0.3:
            ticks.append(t)
    names = [f"{100 * t:g}" for t in ticks]
    for set_ticks, set_lim in ((ax.set_xticks, ax.set_xlim), (ax.set_yticks, ax.set_ylim)):
        set_ticks(norm.ppf(ticks), names)
        set_lim(norm.ppf(lo), norm.ppf(hi))
    ax.plot([norm.ppf(lo), norm.ppf(hi)], [norm.ppf(lo), norm.ppf(hi)], color="0.7", lw=0.6, ls=":")
    ax.set_xlabel("False alarm probability (%)")
    ax.set_ylabel("Miss probability (%)")
    ax.set_title(title or f"DET (○ EER, △ minDCF at p_target={p_target:g})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    save_figure(fig, out_path)
    return results


# ----------------------------------------------------------------------------- CLI
def cli_det(argv: list[str]) -> int:
    from .metrics import load_scored_trials

    ap = argparse.ArgumentParser(
        prog="jeffreys det",
        description="DET curves of one or more scores files on one plot (EER: circle, minDCF: triangle).",
    )
    ap.add_argument("scores", nargs="+", help="scores files ('enroll test score' lines)")
    ap.add_argument("--trials", help="trial list labelling every scores file (else each file's 4th column)")
    ap.add_argument("--labels", nargs="+", help="legend name of each scores file (default: file names)")
    ap.add_argument("--out", required=True, help="figure to write: .png, .pdf or .svg (other names get .png appended)")
    ap.add_argument("--pdf", action="store_true", help="also write a PDF next to --out")
    ap.add_argument("--p-target", type=float, default=0.01)
    ap.add_argument("--title")
    ap.add_argument("--range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                    help="axis range as probabilities (default: 0.001 0.5, widened to show every marker)")
    args = ap.parse_args(argv)
    names = args.labels or [Path(s).name for s in args.scores]
    if len(names) != len(args.scores):
        raise InputError(f"{len(names)} --labels for {len(args.scores)} scores files")
    if len(set(names)) != len(names):
        raise InputError(f"legend names must differ (got {' '.join(names)}); give --labels")
    systems = {}
    for name, path in zip(names, args.scores):
        sc, labels = load_scored_trials(path, args.trials)
        systems[name] = (sc.score, labels)
    lim = tuple(args.range) if args.range else None
    results = plot_det(systems, args.out, args.p_target, args.title, lim)
    outs = [str(figure_path(args.out))]
    if args.pdf and not args.out.lower().endswith(".pdf"):
        pdf = str(Path(args.out).with_suffix(".pdf"))
        plot_det(systems, pdf, args.p_target, args.title, lim)
        outs.append(pdf)
    for name, r in results.items():
        print(f"{name}: EER {100 * r['eer']:.3f} %, minDCF(p={args.p_target:g}) {r['min_dcf'][args.p_target]:.4f}")
    print("wrote " + ", ".join(outs))
    return 0
