"""Calibrate a model on the user's own labelled speakers: ``jeffreys calibrate MODEL DATADIR``.

A threshold copied from VoxCeleb fails on other data: scores shift with language, channel,
duration and the speakers themselves. ``calibrate`` measures the model where it will be used:

1. embeds the utterances of DATADIR's trials (``--trials T``, else ``DATADIR/trials``, else
   ``--max-trials`` trials generated from ``utt2spk``: half same-speaker pairs, see
   :func:`jeffreys.data.trials.generate_trials`) exactly as ``jeffreys extract`` does, and
   scores them as ``verify`` does (cosine after subtracting the model's stored mean);
2. fits the linear calibration ``llr = a * score + b`` of :class:`jeffreys.scoring.LinearCalibration`
   (prior-weighted logistic regression, BOSARIS), at the operating prior;
3. chooses the operating point: by default the Bayes threshold of the calibrated LLR for the
   target prior ``--p-target`` (0.5: minimum total error for equally likely same and
   different speakers), or ``--max-false-accept F`` (the lowest threshold whose false-accept
   rate on these trials is at most F), or a ``--threshold`` on the score; the threshold is
   stored on the score, so every consumer applies ``score >= threshold``
   (:mod:`jeffreys.decision`);
4. reports false-accept and false-reject rates at that threshold, EER, minDCF and actDCF (at
   the operating prior and 0.01), Cllr and minCllr, each with a 95 % bootstrap interval that
   resamples whole speakers (:func:`jeffreys.metrics.bootstrap_ci`, trials grouped by their
   enrolment speaker), and for each interval how many more speakers would halve its width
   (below);
5. checks the fit on speakers it did not see: in ``folds`` speaker-disjoint folds (fewer
   when there are fewer than 3 speakers a fold), the
   calibration and threshold are fitted on the trials among the other folds' speakers and
   applied to the trials among this fold's speakers (``held_out`` in the report);
6. writes ``calibration`` (a, b, prior), ``threshold``, ``threshold_source`` and
   ``calibration_report`` (a summary) into the bundle's meta, atomically (``--no-write``:
   report only). ``jeffreys export`` carries them into the ONNX metadata, so ``verify``,
   :func:`jeffreys.load` and an ONNX deployment decide alike.

How many more speakers would halve an interval: the speaker bootstrap is run again drawing
``m`` speakers (with replacement, each with all its trials) for ``m`` from half to up to 16
times the N speakers observed (until every interval has halved), the width of each
measure's 95 % interval is fitted as ``width ~ c * m^-g`` over those sizes, and
``N * 2^(1/g) - N`` more speakers halve it. The estimate assumes that new speakers are like
these: drawn from the population these N stand for, with as many recordings and trials each
(the N observed speakers are that population's only picture: speakers unlike any of them are
not foreseen). For a measure that averages per-speaker contributions ``g`` is about 1/2 and
the answer about 3N; the fitted ``g`` says how far a measure departs from that. With fewer
than 10 enrolment speakers it is not given; a measure whose width does not halve within 16N
is reported as such.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from .errors import InputError, finite, nonnegative_int
from .extract import DEFAULT_BATCH_SECONDS, DEFAULT_MAX_CHUNK_SECONDS, add_policy_arguments

DEFAULT_MAX_TRIALS = 20000
# multiples of the observed speakers drawn by the bootstraps that measure how intervals shrink
HALVING_GRID = (0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16)
HALVING_BOOT = 300  # replicates per size (fewer when the main bootstrap has fewer)
MIN_SPEAKERS_HALVING = 10
REPORTED = ("false_accept", "false_reject", "eer", "min_dcf", "act_dcf", "cllr", "min_cllr")


# --------------------------------------------------------------------------- pieces
def used_datadir(dd, utts: set[str]):
    """``dd`` restricted to ``utts`` (and the recordings their segments need)."""
    keep = sorted(utts)
    utt2spk = {u: dd.utt2spk[u] for u in keep}
    utt2dur = {u: dd.utt2dur[u] for u in keep if u in dd.utt2dur} if dd.utt2dur is not None else None
    if dd.segments is not None:
        segments = {u: dd.segments[u] for u in keep}
        wav = {r: dd.wav[r] for r in {s[0] for s in segments.values()}}
    else:
        segments, wav = None, {u: dd.wav[u] for u in keep}
    return replace(dd, wav=wav, utt2spk=utt2spk, segments=segments, utt2dur=utt2dur, spk2utt={})


def rates_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """(false-accept, false-reject) fractions of the rule ``score >= threshold``."""
    tar, non = scores[labels], scores[~labels]
    return float(np.mean(non >= threshold)), float(np.mean(tar < threshold))


def far_threshold(scores: np.ndarray, labels: np.ndarray, max_fa: float) -> float:
    """The lowest threshold whose false-accept rate (``score >= t`` on non-targets) is at most ``max_fa``."""
    non = np.sort(scores[~labels])
    allowed = math.floor(max_fa * len(non) + 1e-9)
    if allowed >= len(non):
        return float(np.min(scores))
    return float(np.nextafter(non[len(non) - allowed - 1], np.inf))


def operating_threshold(cal, scores, labels, mode: dict) -> tuple[float, float | None]:
    """(threshold on the score, its LLR) of the operating point ``mode``: ``{"p_target": p}``,
    ``{"max_false_accept": f}`` or ``{"threshold": t}``."""
    from .decision import bayes_threshold

    if "p_target" in mode:
        t_llr = bayes_threshold(mode["p_target"])
        return (t_llr - cal.b) / cal.a, t_llr
    t = far_threshold(scores, labels, mode["max_false_accept"]) if "max_false_accept" in mode else mode["threshold"]
    return t, cal.a * t + cal.b


def _measures(trials_llr, trials_score, threshold: float, llr_threshold_ps, w=None) -> dict | None:
    """Every reported measure of one (re)sample: ``w`` group weights (None: all trials once)."""
    kw = {} if w is None else {"group_w": w}
    m = trials_llr.evaluate(llr_threshold_ps, ("eer", "min_dcf", "act_dcf", "cllr", "min_cllr"), **kw)
    if m is None:
        return None
    st = trials_score
    tar_w = np.ones(len(st.tar)) if w is None else w[st.g_tar]
    non_w = np.ones(len(st.non)) if w is None else w[st.g_non]
    out = {"eer": m["eer"], "cllr": m["cllr"], "min_cllr": m["min_cllr"]}
    for p in llr_threshold_ps:
        out[f"min_dcf@{p:g}"], out[f"act_dcf@{p:g}"] = m["min_dcf"][p], m["act_dcf"][p]
    out["false_accept"] = float(non_w[st.non >= threshold].sum() / non_w.sum())
    out["false_reject"] = float(tar_w[st.tar < threshold].sum() / tar_w.sum())
    return out


def speaker_bootstrap(scores, llr, labels, groups, threshold, ps, n_boot, seed, ci=0.95) -> tuple[dict, dict]:
    """(values on all trials, 95 % intervals resampling whole groups) of every measure. The
    replicates are those of :func:`jeffreys.metrics.bootstrap_ci` with the same seed and
    groups (one draw of group multiplicities each, in the same order)."""
    from .metrics import SortedTrials, multiplicities, percentile_interval

    t_llr, t_score = SortedTrials(llr, labels, groups), SortedTrials(scores, labels, groups)
    values = _measures(t_llr, t_score, threshold, ps)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_boot):
        w = multiplicities(rng, t_llr.n_groups)
        if t_llr.has_both(group_w=w):
            rows.append(_measures(t_llr, t_score, threshold, ps, w))
    if not rows:
        raise InputError("every bootstrap replicate lacked targets or non-targets; too few speakers")
    return values, {k: percentile_interval([r[k] for r in rows], ci) for k in values}


def _widths(t_llr, t_score, threshold, ps, draws: int, n_boot: int, seed: int, ci: float = 0.95) -> dict[str, float]:
    """Width of each measure's percentile interval over ``n_boot`` replicates of ``draws``
    speakers drawn with replacement from the observed ones (more or fewer than there are)."""
    from .metrics import percentile_interval

    rng = np.random.default_rng(seed)
    n = t_llr.n_groups
    rows = []
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, n, draws), minlength=n)
        if t_llr.has_both(group_w=w):
            rows.append(_measures(t_llr, t_score, threshold, ps, w))
    if len(rows) < n_boot // 2:
        return {}
    return {k: float(np.subtract(*percentile_interval([r[k] for r in rows], ci)[::-1])) for k in rows[0]}


def halving(scores, llr, labels, groups, threshold, ps, seed, n_boot: int = HALVING_BOOT) -> dict:
    """Per measure: the exponent g of ``width ~ m^-g`` fitted to the interval widths of
    speaker bootstraps drawing ``m`` speakers (``m`` on :data:`HALVING_GRID`, multiples of the
    N observed, until every width has halved) and the speakers to add to halve the interval,
    ``N * 2^(1/g) - N`` (module docstring); None where the width did not halve."""
    from .metrics import SortedTrials

    groups = np.asarray(groups)
    t_llr, t_score = SortedTrials(llr, labels, groups), SortedTrials(scores, labels, groups)
    n = t_llr.n_groups
    out = {"speakers": n, "grid": list(HALVING_GRID), "n_boot": n_boot, "measures": {}}
    if n < MIN_SPEAKERS_HALVING:
        out["why_not"] = f"{n} enrolment speakers; at least {MIN_SPEAKERS_HALVING} are needed to stand for their population"
        return out
    sizes, widths = [], []
    for f in HALVING_GRID:
        m = max(2, round(f * n))
        w = _widths(t_llr, t_score, threshold, ps, m, n_boot, seed + 7919 * m)
        sizes.append(m)
        widths.append(w)
        at_n = widths[HALVING_GRID.index(1)] if f >= 1 else None
        if at_n and w and all(w[k] <= at_n[k] / 2 for k in at_n if at_n[k] > 0):
            break  # every measure has halved
    base = widths[HALVING_GRID.index(1)]
    for k in base:
        pts = [(m, w[k]) for m, w in zip(sizes, widths) if w.get(k, 0) > 0]
        entry: dict = {"widths": {str(m): w for m, w in pts}, "more_speakers": None, "exponent": None}
        if len(pts) >= 3:
            x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
            g = -float(np.polyfit(x, y, 1)[0])
            entry["exponent"] = g
            reached = any(m > n and w <= base[k] / 2 for m, w in pts)
            if g > 0.05 and reached:  # halved within the grid: read off the fitted curve
                entry["more_speakers"] = int(math.ceil(n * 2 ** (1 / g) - n))
        out["measures"][k] = entry
    return out


def held_out(scores, labels, enroll_spk, test_spk, prior: float, mode: dict, folds: int, seed: int,
             full: tuple | None = None) -> dict:
    """Calibration and threshold fitted without a fold's speakers, applied to the trials
    among them; pooled over the folds. ``full``: (calibration, threshold) fitted on all the
    trials, whose figures on the same held-out trials are given alongside (``in_sample``)."""
    from .metrics import evaluate
    from .scoring import LinearCalibration

    speakers = sorted(set(enroll_spk) | set(test_spk))
    folds = min(folds, len(speakers) // 3)  # at least 3 speakers a fold: non-targets among them
    if folds < 2:
        return {"folds": folds, "why_not": f"{len(speakers)} speakers are too few for 2 folds of 3 speakers"}
    order = np.random.default_rng(seed + 2).permutation(len(speakers))
    fold_of = {speakers[i]: k % folds for k, i in enumerate(order)}
    fe, ft = np.array([fold_of[s] for s in enroll_spk]), np.array([fold_of[s] for s in test_spk])
    llr_out, acc_out, lab_out, idx_out = [], [], [], []
    for k in range(folds):
        train = (fe != k) & (ft != k)
        test = (fe == k) & (ft == k)
        if not (labels[train].any() and (~labels[train]).any() and test.any()):
            continue
        cal = LinearCalibration.fit(scores[train], labels[train], prior=prior)
        if not cal.a > 0:
            continue
        t, _ = operating_threshold(cal, scores[train], labels[train], mode)
        llr_out.append(cal.apply(scores[test]))
        acc_out.append(scores[test] >= t)
        lab_out.append(labels[test])
        idx_out.append(np.flatnonzero(test))
    if not lab_out:
        return {"folds": folds, "why_not": "no fold had trials of both kinds to fit on and to test"}
    llr, acc, lab = np.concatenate(llr_out), np.concatenate(acc_out), np.concatenate(lab_out)
    out = {"folds": folds, "trials": int(len(lab)), "targets": int(lab.sum())}
    if lab.any() and (~lab).any():
        p = mode.get("p_target", prior)
        m = evaluate(llr, lab, p_targets=(p,))
        out.update(false_accept=float(acc[~lab].mean()), false_reject=float((~acc[lab]).mean()),
                   act_dcf={f"{p:g}": m["act_dcf"][p]}, cllr=m["cllr"])
        if full is not None:
            cal, t = full
            idx = np.concatenate(idx_out)
            fa, fr = rates_at(scores[idx], lab, t)
            m_in = evaluate(cal.apply(scores[idx]), lab, p_targets=(p,))
            out["in_sample"] = {"false_accept": fa, "false_reject": fr, "act_dcf": {f"{p:g}": m_in["act_dcf"][p]},
                                "cllr": m_in["cllr"]}
    return out


# --------------------------------------------------------------------------- calibrate
def calibrate(
    model: str | Path,
    datadir: str | Path,
    trials: str | Path | None = None,
    *,
    p_target: float | None = None,
    max_false_accept: float | None = None,
    threshold: float | None = None,
    prior: float | None = None,
    max_trials: int = DEFAULT_MAX_TRIALS,
    n_boot: int = 1000,
    folds: int = 5,
    seed: int = 0,
    write: bool = True,
    out: str | Path | None = None,
    device: str = "cpu",
    batch_seconds: float = DEFAULT_BATCH_SECONDS,
    max_chunk_seconds: float = DEFAULT_MAX_CHUNK_SECONDS,
    num_workers: int = 2,
    allow_pipes: bool = False,
    progress: bool = False,
) -> dict:
    """Calibrate bundle ``model`` on the labelled speakers of ``datadir`` (module docstring)
    and return the report (plain data; :func:`format_report` prints it). At most one of
    ``p_target`` (default 0.5), ``max_false_accept`` and ``threshold`` chooses the operating
    point; ``prior`` is the calibration objective's (default: the operating prior, else 0.5).
    ``write``: into the bundle's meta; ``out``: the report as JSON, with the bundle in one
    atomic step."""
    from .data.datadir import read_datadir
    from .data.trials import generate_trials, read_trials
    from .extract import extract
    from .fileio import AtomicFiles, check_output
    from .metrics import speaker_groups
    from .models.bundle import bundle_with_meta, load_bundle
    from .scoring import LinearCalibration, cosine_scores

    model = Path(model)
    if model.suffix.lower() == ".onnx":
        raise InputError(f"{model}: calibrate writes into a bundle: calibrate model.pt, then `jeffreys export` it again")
    given = [k for k, v in (("p_target", p_target), ("max_false_accept", max_false_accept), ("threshold", threshold)) if v is not None]
    if len(given) > 1:
        raise InputError(f"choose one operating point: {' and '.join(given)} were both given")
    if threshold is not None:
        mode = {"threshold": finite(threshold, "threshold")}
    elif max_false_accept is not None:
        f = finite(max_false_accept, "max_false_accept")
        if not 0 <= f < 1:
            raise InputError(f"max_false_accept must lie in [0, 1), got {max_false_accept}")
        mode = {"max_false_accept": f}
    else:
        mode = {"p_target": 0.5 if p_target is None else finite(p_target, "p_target")}
    prior = finite(prior, "prior") if prior is not None else mode.get("p_target", 0.5)
    if not 0 < prior < 1 or not 0 < mode.get("p_target", 0.5) < 1:
        raise InputError(f"p_target and prior must lie strictly between 0 and 1, got {mode.get('p_target')} and {prior}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise InputError(f"n_boot must be a positive integer, got {n_boot!r}")
    nonnegative_int(seed, "seed")
    if out is not None:
        check_output(out)

    bundle = load_bundle(model)
    from .decision import mean_of

    mean = mean_of(bundle.meta, bundle.model.embed_dim, model)
    dd = read_datadir(datadir, allow_pipes=allow_pipes)
    if trials is None and (dd.path / "trials").is_file():
        trials = dd.path / "trials"
    if trials is not None:
        tl = read_trials(trials)
        enroll, test, labels = list(tl.enroll), list(tl.test), np.asarray(tl.label, dtype=bool)
        source = str(trials)
    else:
        gen = generate_trials(dd.utt2spk, max_trials, seed=seed)
        enroll, test = [e for e, _, _ in gen], [t for _, t, _ in gen]
        labels = np.array([y for _, _, y in gen], dtype=bool)
        source = f"generated from {dd.path}/utt2spk (seed {seed})"
    missing = sorted({u for u in enroll + test if u not in dd.utt2spk})
    if missing:
        raise InputError(f"{trials}: {len(missing)} trial utterances are not in {dd.path}; first: {', '.join(missing[:5])}")
    if labels.all() or not labels.any():
        raise InputError(f"{source}: calibration needs target and non-target trials (got {int(labels.sum())} and {int((~labels).sum())})")

    used = used_datadir(dd, set(enroll) | set(test))
    ids, matrix = extract(bundle, used, None, device=device, batch_seconds=batch_seconds, max_chunk_seconds=max_chunk_seconds,
                          num_workers=num_workers, allow_pipes=allow_pipes, progress=progress)
    scores = cosine_scores((ids, matrix), None, (enroll, test), mean=mean)
    cal = LinearCalibration.fit(scores, labels, prior=prior)
    if not cal.a > 0:
        raise InputError(f"{dd.path}: scores do not rise with same-speaker trials (calibration slope {cal.a:.3g}); "
                         "the model does not separate these speakers")
    llr = cal.apply(scores)
    t, t_llr = operating_threshold(cal, scores, labels, mode)
    ps = tuple(sorted({mode.get("p_target", prior), 0.01}))
    enroll_spk = speaker_groups(enroll, dd.utt2spk)
    test_spk = speaker_groups(test, dd.utt2spk)
    values, cis = speaker_bootstrap(scores, llr, labels, enroll_spk, t, ps, n_boot, seed)
    report = {
        "model": str(model),
        "datadir": str(dd.path),
        "trials": {"source": source, "count": int(len(labels)), "targets": int(labels.sum()),
                   "nontargets": int((~labels).sum())},
        "speakers": len(set(enroll_spk) | set(test_spk)),
        "utterances": len(ids),
        "centred": mean is not None,
        "calibration": {"a": cal.a, "b": cal.b, "prior": cal.prior},
        "operating_point": mode,
        "threshold": t,
        "threshold_llr": t_llr,
        "p_targets": list(ps),
        "values": values,
        "ci": {k: list(v) for k, v in cis.items()},
        "ci_level": 0.95,
        "n_boot": n_boot,
        "seed": seed,
        "halving": halving(scores, llr, labels, enroll_spk, t, ps, seed, min(n_boot, HALVING_BOOT)),
        "held_out": held_out(scores, labels, enroll_spk, test_spk, prior, mode, folds, seed, full=(cal, t)),
        "written": bool(write),
    }
    if write or out is not None:
        with AtomicFiles() as files:
            if write:
                import torch

                point = ", ".join(f"{k} {v:g}" for k, v in mode.items())
                summary = {k: report[k] for k in ("datadir", "trials", "speakers", "operating_point", "values", "ci")}
                data = bundle_with_meta(
                    model,
                    calibration={"a": cal.a, "b": cal.b, "prior": cal.prior},
                    threshold=t,
                    threshold_source=f"jeffreys calibrate on {dd.path} ({report['speakers']} speakers, {len(labels)} trials; {point})",
                    calibration_report=summary,
                )
                torch.save(data, files.open(model, "wb"))
            if out is not None:
                files.open(out).write(json.dumps(_jsonable(report), indent=2) + "\n")
    return report


def _jsonable(x):
    from .metrics import jsonable

    return jsonable(x)


# --------------------------------------------------------------------------- report
_LABELS = {
    "false_accept": ("false accepts (non-targets accepted)", "%"),
    "false_reject": ("false rejects (targets rejected)", "%"),
    "eer": ("EER", "%"),
    "min_dcf": ("minDCF (p_target {p})", ""),
    "act_dcf": ("actDCF (p_target {p})", ""),
    "cllr": ("Cllr (bits)", ""),
    "min_cllr": ("minCllr (bits)", ""),
}


def _rows(report: dict) -> list[tuple[str, str]]:
    """(label, key) of each reported measure, in order."""
    rows = []
    for name in REPORTED:
        label, _ = _LABELS[name]
        if name in ("min_dcf", "act_dcf"):
            rows += [(label.format(p=f"{p:g}"), f"{name}@{p:g}") for p in report["p_targets"]]
        else:
            rows.append((label, name))
    return rows


def format_report(report: dict) -> str:
    """The report as text: the operating point, a table of measures with intervals and the
    speakers that would halve each interval, the held-out check."""
    cal, tr = report["calibration"], report["trials"]
    mode = report["operating_point"]
    if "p_target" in mode:
        point = f"Bayes threshold of the calibrated LLR for p_target {mode['p_target']:g}"
    elif "max_false_accept" in mode:
        point = f"lowest threshold with at most {100 * mode['max_false_accept']:.2f} % false accepts on these trials"
    else:
        point = "threshold given"
    lines = [
        f"jeffreys calibrate: {report['model']} on {report['datadir']}: {report['speakers']} speakers, "
        f"{report['utterances']} utterances, {tr['count']} trials ({tr['targets']} target, {tr['nontargets']} non-target; {tr['source']})",
        "score: cosine of the embeddings" + (" after subtracting the model's mean" if report["centred"] else
                                             " (no mean stored in the model: not centred)"),
        f"calibration: llr = {cal['a']:.4f} * score {'+' if cal['b'] >= 0 else '-'} {abs(cal['b']):.4f} (natural log; prior {cal['prior']:g})",
        f"operating point: {point}",
        f"decision: same speaker when score >= {report['threshold']:.6f} (llr >= {report['threshold_llr']:.4f})",
        "",
    ]
    half = report["halving"]
    head = f"{'':40s} {'value':>9s}  {'95 % interval (speaker bootstrap)':>34s}  speakers to add to halve it"
    lines.append(head)
    for label, key in _rows(report):
        pct = key in ("false_accept", "false_reject", "eer")
        scale, unit = (100.0, " %") if pct else (1.0, "")
        v, (lo, hi) = report["values"][key], report["ci"][key]
        h = half.get("measures", {}).get(key, {})
        more = h.get("more_speakers")
        g = f", width ~ m^-{h['exponent']:.2f}" if h.get("exponent") is not None else ""
        if more is not None:
            hs = f"+{more}{g}"
        elif "why_not" in half:
            hs = "-"
        else:
            hs = f"more than {max(half['grid']) - 1:g}N{g}"
        lines.append(f"{label:40s} {scale * v:>7.3f}{unit:2s}  [{scale * lo:8.3f}, {scale * hi:8.3f}]{unit:2s}{'':14s}  {hs}")
    lines.append("")
    lines.append(f"intervals: {report['n_boot']} bootstrap replicates resampling the {report['speakers']} speakers "
                 "(trials grouped by enrolment speaker), seed " + str(report["seed"]))
    if "why_not" in half:
        lines.append(f"speakers to halve an interval: not estimated ({half['why_not']})")
    else:
        lines.append(
            f"speakers to halve an interval: width ~ m^-g fitted to the intervals of bootstraps drawing m of the "
            f"{half['speakers']} enrolment speakers (with replacement, {half['n_boot']} replicates, m from "
            f"{min(half['grid']):g}N up to {max(half['grid']):g}N), N * 2^(1/g) - N; assumes new speakers like these "
            f"(same population, recordings and trials per speaker); g = 0.5 would give {3 * half['speakers']}")
    ho = report["held_out"]
    if "why_not" in ho:
        lines.append(f"held-out check: not run ({ho['why_not']})")
    elif "false_accept" in ho:
        (p, adcf), = ho["act_dcf"].items()
        fig = (f"false accepts {100 * ho['false_accept']:.3f} %, false rejects {100 * ho['false_reject']:.3f} %, "
               f"actDCF (p_target {p}) {adcf:.4f}, Cllr {ho['cllr']:.4f}")
        lines.append(f"held-out check ({ho['folds']} speaker folds; {ho['trials']} trials among a fold's speakers, "
                     f"calibration and threshold fitted on the other folds' trials): {fig}")
        if "in_sample" in ho:
            ins = ho["in_sample"]
            lines.append(f"  the same trials with the calibration and threshold fitted on all: false accepts "
                         f"{100 * ins['false_accept']:.3f} %, false rejects {100 * ins['false_reject']:.3f} %, "
                         f"actDCF (p_target {p}) {ins['act_dcf'][p]:.4f}, Cllr {ins['cllr']:.4f}")
    lines.append(f"written into {report['model']}: calibration, threshold" if report["written"] else "not written (--no-write)")
    return "\n".join(lines)


def cli_calibrate(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="jeffreys calibrate",
        description="Fit the score calibration and a decision threshold on labelled recordings of your own "
        "speakers, report the error rates with speaker-bootstrap intervals, and store both in the model.",
    )
    p.add_argument("model", help="model bundle (model.pt); rewritten with the calibration and threshold")
    p.add_argument("datadir", help="data dir of labelled speakers (e.g. from `jeffreys prepare folder`)")
    p.add_argument("--trials", help="trial list (Kaldi or VoxCeleb); default DATADIR/trials, else generated")
    point = p.add_mutually_exclusive_group()
    point.add_argument("--p-target", type=float, help="operating prior: Bayes threshold of the calibrated LLR (default 0.5)")
    point.add_argument("--max-false-accept", type=float, metavar="F",
                       help="the lowest threshold with at most this fraction of false accepts on the trials (e.g. 0.01)")
    point.add_argument("--threshold", type=float, help="a threshold on the score (cosine) of your choice")
    p.add_argument("--prior", type=float, help="prior of the calibration objective (default: the operating prior, else 0.5)")
    p.add_argument("--max-trials", type=int, default=DEFAULT_MAX_TRIALS,
                   help=f"trials generated when there is no trial list (default {DEFAULT_MAX_TRIALS}, half same-speaker)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates (default 1000)")
    p.add_argument("--folds", type=int, default=5, help="speaker folds of the held-out check (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of generated trials, bootstrap and folds (default 0)")
    p.add_argument("--no-write", dest="write", action="store_false", help="report only; leave the model unchanged")
    p.add_argument("--out", metavar="REPORT.json", help="also write the report as JSON")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_policy_arguments(p, batching=False)
    p.add_argument("--num-workers", type=int, default=2, help="audio-reading threads (default 2)")
    p.add_argument("--allow-pipes", action="store_true", help="run `cmd |` wav.scp entries (without a shell)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    report = calibrate(
        a.model, a.datadir, a.trials, p_target=a.p_target, max_false_accept=a.max_false_accept, threshold=a.threshold,
        prior=a.prior, max_trials=a.max_trials, n_boot=a.n_boot, folds=a.folds, seed=a.seed, write=a.write, out=a.out,
        device=a.device, max_chunk_seconds=a.max_chunk_seconds,
        num_workers=a.num_workers, allow_pipes=a.allow_pipes, progress=not a.quiet,
    )
    print(json.dumps(_jsonable(report), indent=2) if a.json else format_report(report))
    return 0


__all__ = ["calibrate", "cli_calibrate", "far_threshold", "format_report", "operating_threshold", "rates_at"]
