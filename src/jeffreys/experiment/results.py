"""What an experiment reports: ``results.json``, the tables and the figures.

``results.json`` (the ``comparisons`` block is part of the design contract)::

    systems[NAME] = {"label", "seeds": [...], "runs": {SEED: one run's results},
                     "eval": {SET: seed means of eer, min_dcf, cllr, "per_seed", "ci", ...}}
    comparisons[NAME][SET][METRIC] = {"reference", "diff_rel", "ci": [lo, hi], "p", "p_adjusted",
                                      "seeds", "seeds_better"}   (METRIC: eer, min_dcf, cllr)
    multiplicity = {"method": "holm", "family": N}   (N: the comparisons carrying a p)
    environment = jeffreys.environment.environment() + seeds: machine, CPU and its SIMD flags,
                  library versions and builds, threads, kernel variables, loss kernel
    runs[SEED]["eval"][SET]["scores_sha256"]: SHA-256 of that run's scores (float64, trial order)

``p_adjusted`` is ``p`` after Holm's control over the run's whole family of comparisons
(:func:`.statistics.adjust_comparisons`, applied once in :func:`write_results`); every table,
figure and list calls a difference distinguishable only when ``p_adjusted < 1 - ci``.

Files: ``table.md`` (Table 1: seed means with their intervals, then the comparisons with the
reference), ``table.csv``, ``gains.png`` (Fig. 3 with the comparisons' intervals as error
bars), ``det_SET.png`` (Figs. 4–5, the first seed's runs), ``nontarget_SET.png``,
``probe_eer_vs_top.png`` (Fig. 1), ``probe_outputs.png`` (Fig. 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..config import to_dict
from ..metrics import jsonable, speaker_groups
from .config import EvalSpec, ExperimentConfig
from .statistics import METRICS, adjust_comparisons, alpha_of, distinguishable, multiplicity_text, resolution_note, set_statistics


def environment(cfg: ExperimentConfig) -> dict:
    """What a result's reproducibility depends on (:func:`jeffreys.environment.environment`),
    and the seeds (see docs/experiments.md, "Determinism")."""
    from ..environment import environment as current

    return {**current(), "seeds": list(cfg.seeds)}


def _groups(ev, tri, cfg: ExperimentConfig):
    if cfg.metrics.by != "speaker":
        return None
    from ..data.trials import read_models

    models = Path(ev.spec.data) / "models"
    return speaker_groups(tri.enroll, ev.datadir.utt2spk, read_models(models) if models.is_file() else None)


def _aggregate(cfg: ExperimentConfig, evals, runs, log) -> tuple[dict, dict]:
    """(systems[NAME]["eval"], comparisons) from the runs' scores."""
    m = cfg.metrics
    per_system: dict[str, dict] = {s.name: {} for s in cfg.systems}
    comparisons: dict[str, dict] = {s: {} for s in cfg.references()}
    by_key = {(r.system.name, r.seed): r for r in runs}
    for ev in evals:
        if ev.trials is None:
            continue
        name = ev.spec.name
        first = by_key[(cfg.systems[0].name, cfg.seeds[0])].scored[name][0]
        scores = {s.name: [by_key[(s.name, seed)].scored[name][1] for seed in cfg.seeds] for s in cfg.systems}
        st = set_statistics(scores, first.label, _groups(ev, first, cfg), cfg.references(), p_target=m.p_target,
                            n_boot=m.n_boot, ci=m.ci, seed=m.seed)
        for s in cfg.systems:
            run0 = by_key[(s.name, cfg.seeds[0])].result["eval"][name]
            cell: dict[str, Any] = {**st.means[s.name], "per_seed": st.per_seed[s.name], "p_target": m.p_target,
                                    "n_target": run0["n_target"], "n_nontarget": run0["n_nontarget"]}
            if st.intervals:
                cell["ci"] = {"level": m.ci, "n_boot": st.n_boot, "n_skipped": st.n_skipped,
                              "by": f"seed+{m.by}" if len(cfg.seeds) > 1 else m.by,
                              **{k: list(v) for k, v in st.intervals[s.name].items()}}
            per_system[s.name][name] = cell
            if s.name in st.comparisons:
                comparisons[s.name][name] = st.comparisons[s.name]
        iv = st.intervals.get(cfg.reference, {}).get("eer")
        log(f"{name}: statistics over {len(cfg.seeds)} seed(s)" + (f", reference EER interval [{100 * iv[0]:.2f}, {100 * iv[1]:.2f}] %" if iv else ""))
    return per_system, comparisons


def separation_summary(cfg: ExperimentConfig, comparisons: dict, labels: dict[str, str], multiplicity: dict) -> str:
    """Plain words: which comparisons this run can separate (adjusted p below ``1 - ci`` over
    the run's family, ``multiplicity``), and which it cannot."""
    alpha = alpha_of(cfg.metrics.ci)
    yes, no, alone = [], [], []
    for system, per_set in comparisons.items():
        for set_name, per_metric in per_set.items():
            for metric in ("eer", "min_dcf"):
                c = per_metric[metric]
                what = f"{labels[system]} vs {labels[c['reference']]}, {set_name} {'EER' if metric == 'eer' else 'minDCF'}"
                if distinguishable(c, alpha):
                    yes.append(f"{what}: {100 * c['diff_rel']:+.1f} % [{100 * c['ci'][0]:+.1f}, {100 * c['ci'][1]:+.1f}], "
                               f"p {c['p']:.3f}, adjusted {c['p_adjusted']:.3f}")
                else:
                    no.append(what)
                    if c["p_adjusted"] is not None and c["p"] < alpha:
                        alone.append(f"{what} (p {c['p']:.3f}, adjusted {c['p_adjusted']:.3f})")
    n = multiplicity["family"]
    lines = [f"\nWhat these {len(cfg.seeds)} seed(s) and evaluation speakers can separate ({multiplicity_text(multiplicity)}, "
             f"family-wise error {100 * alpha:g} %):"]
    lines += [f"- distinguishable: {y}" for y in yes] or ["- no difference with the reference is distinguishable."]
    if no:
        lines.append(f"- not distinguishable: {len(no)} of {len(yes) + len(no)} ("
                     + "; ".join(no[:12]) + ("; ..." if len(no) > 12 else "") + ")")
    if alone:
        lines.append(f"- p < {alpha:g} alone but not after adjustment (about {n * alpha:.1f} such among {n} comparisons "
                     f"are expected by chance when nothing differs): " + "; ".join(alone))
    note = resolution_note(multiplicity, cfg.metrics.n_boot, alpha)
    if note:
        lines.append(f"- {note}")
    if len(cfg.seeds) < 3:
        lines.append("- fewer than 3 seeds: training-seed variance is barely sampled; read differences as anecdotes.")
    return "\n".join(lines) + "\n"


def write_results(cfg: ExperimentConfig, out: Path, evals, runs, log, *, train_seconds: float, wall_seconds: float) -> dict:
    from .. import report as rep
    from ..fileio import atomic_write, write_text_atomic

    labels = {s.name: s.label or s.name for s in cfg.systems}
    per_system, comparisons = _aggregate(cfg, evals, runs, log)
    multiplicity = adjust_comparisons(comparisons)  # once, over the whole family the run reports
    scored_sets = [ev for ev in evals if ev.trials is not None]
    results: dict[str, Any] = {
        "systems": {}, "comparisons": comparisons, "multiplicity": multiplicity, "reference": cfg.reference,
        "eval_sets": {ev.spec.name: {"data": ev.spec.data, "trials": str(ev.trials) if ev.trials else None,
                                     "domain": ev.spec.domain, "utterances": len(ev.datadir.utts),
                                     **({"submission_pairs": str(ev.pairs)} if ev.trials is None else {})}
                      for ev in evals},
        "probe_rule": cfg.probe.rule, "environment": environment(cfg),
    }
    for s in cfg.systems:
        mine = [r for r in runs if r.system.name == s.name]
        results["systems"][s.name] = {"label": labels[s.name], "seeds": [r.seed for r in mine],
                                      "runs": {str(r.seed): r.result for r in mine}, "eval": per_system[s.name]}

    # Table 1 (seed means, intervals over seeds and speakers) and the comparisons.
    shown = {ev.spec.name: f"{ev.spec.name} ({ev.spec.domain})" if ev.spec.domain else ev.spec.name for ev in scored_sets}
    m = cfg.metrics
    cells = {labels[s.name]: {shown[e]: {**c, "min_dcf": {m.p_target: c["min_dcf"]},
                                         "ci": ({"eer": c["ci"]["eer"], "min_dcf": c["ci"]["min_dcf"]} if "ci" in c else None)}
                              for e, c in per_system[s.name].items()}
             for s in cfg.systems}
    md = rep.table_markdown(cells, m.p_target)
    md += f"Mean over {len(cfg.seeds)} training seed(s) ({', '.join(map(str, cfg.seeds))})"
    if m.n_boot:
        md += (f"; [{100 * m.ci:g} % interval, {m.n_boot} replicates resampling "
               + ("training seeds and " if len(cfg.seeds) > 1 else "") + f"evaluation {m.by}s]")
    md += "\n"
    cmp_md = ""
    if comparisons and m.n_boot:
        cmp_md = "\n" + rep.comparisons_markdown(comparisons, labels, [ev.spec.name for ev in scored_sets], m.ci,
                                                  multiplicity)
        cmp_md += separation_summary(cfg, comparisons, labels, multiplicity)
        log(f"comparisons: {multiplicity_text(multiplicity)} (p_adjusted in results.json)")
    results["table_markdown"], results["comparisons_markdown"] = md, cmp_md
    write_text_atomic(out / "table.md", md + cmp_md)
    with atomic_write(out / "table.csv", newline="") as f:
        f.write(rep.table_csv(cells, m.p_target))
    if len(cfg.systems) > 1:
        table = {labels[s]: {e: per_system[s][e] | {"min_dcf": {m.p_target: per_system[s][e]["min_dcf"]}} for e in per_system[s]}
                 for s in per_system}
        results["gains"] = rep.relative_gains(table, labels[cfg.reference], m.p_target)
    if cfg.figures:
        _figures(cfg, out, scored_sets, runs, comparisons, labels, log, multiplicity)
    results["train_wall_seconds"], results["wall_seconds"] = train_seconds, wall_seconds
    results["config"] = to_dict(cfg)
    write_text_atomic(out / "results.json", json.dumps(jsonable(results), indent=2))
    log(f"results: {out / 'results.json'}, table: {out / 'table.md'}")
    return results


def _figures(cfg: ExperimentConfig, out: Path, evals, runs, comparisons: dict, labels: dict, log,
             multiplicity: dict | None = None) -> None:
    from .. import report as rep
    from ..probe import plot_eer_vs_top, plot_nontarget_scores, plot_output_examples

    m = cfg.metrics
    first = {r.system.name: r for r in runs if r.seed == cfg.seeds[0]}
    if len(cfg.systems) > 1 and comparisons:
        rep.plot_comparisons(comparisons, labels, [ev.spec.name for ev in evals], out / "gains.png", level=m.ci,
                             title=f"Relative gains over {labels[cfg.reference]}, mean of {len(cfg.seeds)} seed(s), "
                             f"{100 * m.ci:g} % intervals" + _domains_note([ev.spec for ev in evals]),
                             multiplicity=multiplicity)
    seed_note = f", seed {cfg.seeds[0]}" if len(cfg.seeds) > 1 else ""
    for ev in evals:
        name = ev.spec.name
        per = {labels[s]: (r.scored[name][1], r.scored[name][0].label) for s, r in first.items()}
        rep.plot_det(per, out / f"det_{name}.png", p_target=m.p_target,
                     title=f"DET {name}" + (f" ({ev.spec.domain}-domain)" if ev.spec.domain else "") + seed_note + " (○ EER, △ minDCF)")
        plot_nontarget_scores(per, out / f"nontarget_{name}", title=f"non-target scores, {name}{seed_note}; dotted: 99.9 % quantile")
    pts = [{"system": labels[r.system.name], "eval_set": e, "mean_top_speakers": v["probe"]["mean_top_speakers"],
            "eer": v["eer"], "rule": v["probe"]["rule"]}
           for r in runs for e, v in r.result["eval"].items() if "probe" in v]
    if pts:
        plot_eer_vs_top(pts, out / "probe_eer_vs_top")
    names = cfg.probe.examples or ([cfg.systems[0].name, cfg.systems[-1].name] if len(cfg.systems) > 1 else [cfg.systems[0].name])
    examples = _output_examples([first[n] for n in names if n in first], labels)
    if examples:
        plot_output_examples(examples, out / "probe_outputs")
    log(f"figures in {out}")


def _domains_note(evals: list[EvalSpec]) -> str:
    """'; in-domain: a, b; out-of-domain: c' for titles (empty when no domain is given)."""
    parts = []
    for dom in dict.fromkeys(e.domain for e in evals if e.domain):
        parts.append(f"{dom}-domain: " + ", ".join(e.name for e in evals if e.domain == dom))
    return "\n" + "; ".join(parts) if parts else ""


def _output_examples(runs, labels: dict, n_utts: int = 2) -> list[dict]:
    """Output distributions of the same training utterances under each system (Fig. 2)."""
    from ..probe import head_logits, log_softmax

    runs = [r for r in runs if r.bundle.head is not None and r.train_labels is not None]
    if not runs:
        return []
    common = sorted(set.intersection(*(set(r.train_ids) for r in runs)))
    picked, seen = [], set()  # spread the examples over different speakers
    lab0 = dict(zip(runs[0].train_ids, runs[0].train_labels))
    for u in common:
        if lab0[u] not in seen:
            picked.append(u)
            seen.add(lab0[u])
        if len(picked) == n_utts:
            break
    ex = []
    for r in runs:
        idx = {u: i for i, u in enumerate(r.train_ids)}
        for u in picked:
            i = idx[u]
            p = np.exp(log_softmax(head_logits(r.bundle.head, r.train_emb[i : i + 1])))[0]
            ex.append({"system": labels[r.system.name], "utt": u, "probs": p, "target": int(r.train_labels[i])})
    return ex


__all__ = ["METRICS", "environment", "separation_summary", "write_results"]
