"""``jeffreys experiment CONFIG``: train every (system, seed), evaluate every run, report.

For each system and each seed of the experiment:

1. train it (:mod:`.training`) unless a model is given;
2. extract embeddings of a fixed subset of its training set: their mean is the centring
   vector of the scoring back-end (paper section 5.1) and their softmax outputs feed the
   probe of training utterances (Fig. 2);
3. extract every evaluation set, score its trials by centred cosine, compute EER,
   minDCF(p_target) and Cllr, and probe the output distribution (top training speakers);

then, per evaluation set, the seed means with intervals covering seeds and evaluation
speakers and the paired comparisons with the reference system (:mod:`.statistics`), the
tables, figures and ``results.json`` (:mod:`.results`). Every stage is stamped
(:mod:`.stages`), so a re-run skips what is done and an interrupted training resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import save_config
from ..errors import InputError
from ..probe import TopRule
from .config import EvalSpec, ExperimentConfig, SystemSpec, load_experiment, train_config_of
from .stages import Progress, Stamps, digest, emb_file, emb_name, fingerprint, stage_embed, subset_utts, write_subset
from .training import TrainJob, plan_training, run_dir, run_training


@dataclass
class EvalSet:
    """An evaluation set that is present: its spec, data dir, labelled trials (None when only
    unlabelled pairs exist: scored into a submission file, no metrics)."""

    spec: EvalSpec
    datadir: Any
    trials: Path | None
    pairs: Path | None = None


@dataclass
class Run:
    """One trained model (system, seed) and what its evaluation produced."""

    system: SystemSpec
    seed: int
    model: Path
    bundle: Any = None
    train_ids: list[str] = field(default_factory=list)
    train_emb: np.ndarray | None = None
    train_labels: np.ndarray | None = None
    result: dict = field(default_factory=dict)  # results.json's runs[seed]
    scored: dict = field(default_factory=dict)  # eval set -> (Trials, scores)


def present_eval_sets(cfg: ExperimentConfig, log) -> list[EvalSet]:
    """The evaluation sets to score; an optional one without data or labels is skipped with a note."""
    from ..data.datadir import read_datadir

    found = []
    for e in cfg.eval_sets:
        if not Path(e.data).is_dir():
            if e.optional:
                log(f"evaluation set {e.name}: {e.data} absent, skipped (optional)")
                continue
            raise InputError(f"evaluation set {e.name!r}: data dir {e.data} not found")
        trials = Path(e.trials) if e.trials else Path(e.data) / "trials"
        if trials.is_file():
            found.append(EvalSet(e, read_datadir(e.data, check_files=False), trials))
            continue
        pairs = Path(e.data) / "trial_pairs"
        if e.optional and pairs.is_file():
            log(f"evaluation set {e.name}: no labelled trials ({trials} absent); its {pairs.name} are scored "
                f"into submission files, without metrics (optional)")
            found.append(EvalSet(e, read_datadir(e.data, check_files=False), None, pairs))
        elif e.optional:
            log(f"evaluation set {e.name}: trials file {trials} absent, skipped (optional)")
        else:
            raise InputError(f"evaluation set {e.name!r}: trials file {trials} not found")
    if not any(s.trials for s in found):
        raise InputError("no evaluation set with labelled trials is present")
    return found


def train_data_of(spec: SystemSpec, cfg: ExperimentConfig) -> Path:
    if cfg.train_data is not None:
        return Path(cfg.train_data)
    if spec.model is not None:
        raise InputError(f"system {spec.name!r} reuses a model: give 'train_data' (for the centring mean) in the experiment config")
    return Path(train_config_of(spec, cfg, cfg.seeds[0]).data.train)


def _train_subset(tdata, cfg: ExperimentConfig, out: Path) -> Path:
    """The seeded training subset of a training data dir, shared by the systems using it."""
    from ..data.datadir import read_datadir

    sub = subset_utts(tdata, cfg.probe.train_utts, cfg.seed)
    sub_dir = out / "train_subsets" / emb_name(tdata.path)
    if not sub_dir.exists() or read_datadir(sub_dir, check_files=False).utts != sub:
        write_subset(tdata, sub, sub_dir)
    return sub_dir


def _score(run: Run, ev: EvalSet, ids, emb, mean, trials_path: Path):
    """Centred cosine scores of a trial list (labelled, or the unlabelled pairs of a
    submission): (trials, scores). A data dir's ``models`` file (``MODEL UTT1 UTT2 ...``,
    SdSV) lets trials name models enrolled by several utterances."""
    from ..data.trials import read_trial_pairs, read_trials
    from ..scoring import cosine_scores

    trials = read_trials(trials_path) if trials_path == ev.trials else read_trial_pairs(trials_path)
    models = Path(ev.spec.data) / "models"
    return trials, cosine_scores((list(ids), np.asarray(emb)), None, trials, mean=mean, models=models if models.is_file() else None)


def evaluate_run(run: Run, evals: list[EvalSet], cfg: ExperimentConfig, out: Path, stamps: Stamps, log) -> None:
    """Embed, centre, score and probe one run on every evaluation set (stamped stages)."""
    from ..data.datadir import read_datadir
    from ..metrics import eer_threshold, evaluate
    from ..models import load_bundle
    from ..probe import nontarget_tail, probe, training_summary, write_probe_table
    from ..fileio import write_text_atomic
    from ..scoring import save_mean, write_scores

    rdir = run_dir(out, run.system.name, run.seed)
    name = f"{run.system.name}/seed-{run.seed}"
    run.bundle = bundle = load_bundle(run.model)
    model_key = digest(fingerprint(run.model))
    tdata = read_datadir(train_data_of(run.system, cfg), check_files=False)
    sub_dir = _train_subset(tdata, cfg, out)
    ids, temb = stage_embed(f"{name}/embed_train", bundle, model_key, sub_dir, rdir / "emb" / "train", stamps, cfg.extract, log)
    mean = temb.mean(axis=0)
    save_mean(rdir / "mean.npy", mean)
    spk_index = {s: i for i, s in enumerate(bundle.speakers)}
    labels = np.array([spk_index.get(tdata.utt2spk[u], -1) for u in ids])
    run.train_ids, run.train_emb = ids, temb
    run.train_labels = labels if (labels >= 0).all() else None
    res: dict[str, Any] = {"model": str(run.model), "eval": {}}
    tr = Path(run.model).parent / "train_result.json"
    if tr.is_file():
        res["train_result"] = json.loads(tr.read_text())
    if bundle.head is not None and run.train_labels is not None:
        res["train_probe"] = training_summary(bundle.head, temb, run.train_labels)
    rule = TopRule.parse(cfg.probe.rule)
    for ev in evals:
        # evaluation sets sharing a data dir (Vox1-O/E/H) share its embeddings
        emb_path = rdir / "emb" / emb_name(ev.spec.data)
        eids, emb = stage_embed(f"{name}/embed_{emb_path.name}", bundle, model_key, Path(ev.spec.data), emb_path, stamps, cfg.extract, log)
        if ev.trials is None:  # unlabelled pairs: a submission file
            tri, scores = _score(run, ev, eids, emb, mean, ev.pairs)
            sub = rdir / "submissions" / f"{ev.spec.name}.txt"
            sub.parent.mkdir(exist_ok=True)
            write_scores(sub, tri, scores)
            continue
        score_path = rdir / "scores" / f"{ev.spec.name}.txt"
        score_path.parent.mkdir(exist_ok=True)
        mkey = digest([model_key, fingerprint(ev.trials), cfg.metrics.p_target, fingerprint(emb_file(emb_path)), cfg.probe.train_utts])
        met_path = rdir / "metrics" / f"{ev.spec.name}.json"
        met_path.parent.mkdir(exist_ok=True)
        tri, scores = _score(run, ev, eids, emb, mean, ev.trials)
        if stamps.done(f"{name}/{ev.spec.name}/metrics", mkey, [met_path, score_path]):
            met = json.loads(met_path.read_text())
        else:
            write_scores(score_path, tri, scores)
            r = evaluate(scores, tri.label, p_targets=(cfg.metrics.p_target,))
            met = {"eer": r["eer"], "min_dcf": r["min_dcf"][cfg.metrics.p_target], "cllr": r["cllr"],
                   "min_cllr": r["min_cllr"], "n_target": int(r["n_target"]), "n_nontarget": int(r["n_nontarget"]),
                   "eer_threshold": eer_threshold(scores, tri.label)}
            write_text_atomic(met_path, json.dumps(met, indent=2))
            stamps.mark(f"{name}/{ev.spec.name}/metrics", mkey)
        run.scored[ev.spec.name] = (tri, scores)
        if bundle.head is not None:
            pr = probe(bundle.head, eids, emb, rule)
            (rdir / "probe").mkdir(exist_ok=True)
            write_probe_table(pr, bundle.speakers, rdir / "probe" / f"{ev.spec.name}.tsv")
            met["probe"] = pr.summary()
        met["nontarget_tail"] = nontarget_tail(scores, tri.label)
        met["scores_sha256"] = scores_digest(scores)  # bit-identity across runs (jeffreys compare-runs)
        res["eval"][ev.spec.name] = met
        log(f"{name}/{ev.spec.name}: EER {100 * met['eer']:.2f} %  minDCF {met['min_dcf']:.3f}  Cllr {met['cllr']:.3f}")
    run.result = res


def scores_digest(scores) -> str:
    """SHA-256 (hex) of a run's scores as little-endian float64 in trial order: equal exactly
    when the scores are bit for bit the same (the scores file rounds to 10 digits)."""
    return hashlib.sha256(np.ascontiguousarray(scores, dtype="<f8").tobytes()).hexdigest()


# Set by evaluate_runs just before forking its workers, which inherit it.
_SHARED: dict = {}


class _QuietLog:
    """The experiment's log without progress bars (several processes write to one terminal)."""

    quiet = True

    def __init__(self, log):
        self.log = log

    def __call__(self, msg: str) -> None:
        self.log(msg)


def _evaluate_child(index: int):
    import torch

    torch.set_num_threads(1)  # one process per core
    run, (evals, cfg, out, stamps, log) = _SHARED["runs"][index], _SHARED["args"]
    evaluate_run(run, evals, cfg, out, stamps, _QuietLog(log))
    return run.result, run.scored, run.train_ids, run.train_emb, run.train_labels


def evaluate_runs(runs: list[Run], evals: list[EvalSet], cfg: ExperimentConfig, out: Path, stamps: Stamps, log) -> None:
    """:func:`evaluate_run` for every run, ``cfg.eval_jobs`` processes at a time. (Forked from
    this thread, all up front: leaving the block, by an error or SIGTERM, terminates them.)"""
    if cfg.eval_jobs <= 1 or len(runs) <= 1:
        for run in runs:
            evaluate_run(run, evals, cfg, out, stamps, log)
        return
    import multiprocessing as mp

    from ..data.datadir import read_datadir
    from ..models import load_bundle

    # Each run reads the training subset of its system's data; written here once, not by
    # workers racing to write the same directory.
    for path in dict.fromkeys(train_data_of(run.system, cfg) for run in runs):
        _train_subset(read_datadir(path, check_files=False), cfg, out)
    _SHARED.update(runs=runs, args=(evals, cfg, out, stamps, log))
    try:
        with mp.get_context("fork").Pool(min(cfg.eval_jobs, len(runs))) as pool:
            done = pool.map(_evaluate_child, range(len(runs)), chunksize=1)
    finally:
        _SHARED.clear()
    for run, (result, scored, ids, emb, labels) in zip(runs, done):
        run.result, run.scored, run.train_ids, run.train_emb, run.train_labels = result, scored, ids, emb, labels
        run.bundle = load_bundle(run.model)


def run_experiment(cfg: ExperimentConfig, out: str | Path, *, quiet: bool = False, t0: float | None = None,
                   only_train: bool = False) -> dict:
    """Run (or finish) the experiment into ``out``; return the content of ``results.json``.

    ``t0``: a ``time.monotonic()`` origin for the progress clock (default: now).
    ``only_train``: stop once every (system, seed) is trained; returns ``{"models": ...}``."""
    from .results import write_results

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "experiment.yaml")
    stamps = Stamps(out)
    log = Progress(out, quiet=quiet, t0=t0)
    t_start = time.monotonic()
    try:
        evals = [] if only_train else present_eval_sets(cfg, log)
        runs: list[Run] = []
        jobs: list[TrainJob] = []
        for spec in cfg.systems:
            for seed in cfg.seeds:
                planned = plan_training(spec, seed, cfg, out, stamps)
                if isinstance(planned, TrainJob):
                    jobs.append(planned)
                    runs.append(Run(spec, seed, planned.exp / "model.pt"))
                else:
                    runs.append(Run(spec, seed, planned))
                    if spec.model is None:
                        log(f"{spec.name}/seed-{seed}: trained model found ({planned})")
        t_train = time.monotonic()
        run_training(jobs, cfg, stamps, log)
        train_seconds = round(time.monotonic() - t_train, 1)
        if only_train:
            log(f"trained: {len(runs)} runs ({len(jobs)} this time)")
            return {"models": {f"{r.system.name}/seed-{r.seed}": str(r.model) for r in runs}}
        evaluate_runs(runs, evals, cfg, out, stamps, log)
        results = write_results(cfg, out, evals, runs, log, train_seconds=train_seconds,
                                wall_seconds=round(time.monotonic() - t_start, 1))
        return results
    finally:
        log.close()


def cli_experiment(argv: list[str]) -> int:
    from ..config import parse_overrides

    parser = argparse.ArgumentParser(
        prog="jeffreys experiment",
        description="Run a Table-1 experiment: train each system once per seed (or reuse models), extract, "
        "score by centred cosine, compute EER/minDCF/Cllr, then the seed means with intervals over seeds and "
        "evaluation speakers, paired comparisons with the reference system, the tables, figures and "
        "results.json. Re-running skips finished stages.",
    )
    parser.add_argument("config", type=Path, help="experiment YAML (systems, eval_sets, seeds, ...)")
    parser.add_argument("--out", type=Path, help="output directory (default: next to the config, named after it)")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="SEED", help="training seeds (overrides the config's 'seeds')")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key of the experiment config (dotted)")
    parser.add_argument("--only-train", action="store_true", help="stop once every system and seed is trained")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stdout (still in OUT/log.txt)")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    cfg = load_experiment(args.config, overrides)
    out = args.out or args.config.with_suffix("")
    results = run_experiment(cfg, out, quiet=args.quiet, only_train=args.only_train)
    if not args.only_train:
        print(results["table_markdown"], end="")
        print(results["comparisons_markdown"], end="")
    return 0


__all__ = ["EvalSet", "Run", "cli_experiment", "evaluate_run", "present_eval_sets", "run_experiment", "scores_digest",
           "train_data_of"]
