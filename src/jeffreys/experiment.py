"""The Table 1 runner: ``jeffreys experiment CONFIG [--out DIR]``.

One YAML config names the systems (training configs to train, or trained models to reuse)
and the evaluation sets (data dirs with trial lists). The runner, for every system:

1. trains it (``jeffreys.train``) unless a model is given;
2. extracts embeddings of a fixed subset of its training set; their mean is the centring
   vector of the scoring back-end (paper section 5.1) and their softmax outputs feed the
   probe of training utterances (Fig. 2);
3. extracts every evaluation set, scores its trials by centred cosine, computes EER,
   minDCF(p_target) and Cllr with bootstrap confidence intervals (``jeffreys.metrics``),
   and probes the output distribution (mean number of top training speakers, entropy);

then writes the Table-1-shaped table (``table.md``, ``table.csv``), the relative-gain chart
against the baseline (Fig. 3, ``gains.png``), one DET plot per evaluation set (Figs. 4–5,
``det_SET.png``), the probe figures (``probe_eer_vs_top.png`` = Fig. 1,
``probe_outputs.png`` = Fig. 2, ``nontarget_SET.png``) and ``results.json``.

Every stage writes a stamp (``OUT/.stamps/``) holding a digest of its inputs (configs, and
the size and modification time of the files it read); re-running skips a stage whose stamp
matches and whose outputs exist, and redoes it (and, through the digests, everything
downstream) when an input changed. An interrupted training run is resumed from its last
checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .config import from_dict, load_config, load_yaml, save_config, to_dict
from .errors import InputError
from .metrics import jsonable
from .probe import TopRule

# --------------------------------------------------------------------------- config schema


@dataclass
class SystemSpec:
    """A row of the table: a system to train, or a trained model to reuse.

    The training config of a system is the experiment's ``train`` mapping, then the YAML file
    ``config`` on top of it, then the dotted ``set`` overrides (as ``jeffreys train --set``).
    """

    name: str  # short id: directory and column names ([A-Za-z0-9_.-])
    label: str | None = None  # row title of the table (default: name)
    config: str | None = None  # training config YAML (relative to the experiment config)
    set: dict[str, Any] = field(default_factory=dict)  # dotted overrides of the training config
    model: str | None = None  # an existing model.pt: not trained again

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "_.-" for c in self.name):
            raise ValueError(f"system name {self.name!r} must be non-empty letters, digits, '_', '.', '-'")
        if self.model is not None and (self.config is not None or self.set):
            raise ValueError(f"system {self.name!r}: a reused 'model' takes no training 'config' or 'set'")


@dataclass
class EvalSpec:
    """A column group of the table: a data dir and its trial list."""

    name: str
    data: str  # data dir (relative to the experiment config)
    trials: str | None = None  # default DATA/trials
    domain: str = ""  # e.g. "in" / "out": shown in the table and the gains chart
    optional: bool = False  # a missing data dir is skipped (recipes list corpora that may be absent)

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "_.-" for c in self.name):
            raise ValueError(f"evaluation set name {self.name!r} must be letters, digits, '_', '.', '-'")


@dataclass
class MetricsSpec:
    p_target: float = 0.01
    n_boot: int = 1000  # bootstrap replicates (0: no intervals)
    ci: float = 0.95
    by: Literal["speaker", "trial"] = "speaker"  # resample whole enrolment speakers, or trials
    seed: int = 0


@dataclass
class ProbeSpec:
    rule: str = "mass:0.5"  # top training speakers: see jeffreys.probe
    train_utts: int = 2000  # training utterances extracted for the mean and the probe (0 = all)
    examples: list[str] = field(default_factory=list)  # systems shown in Fig. 2 (default: first and last)

    def __post_init__(self) -> None:
        TopRule.parse(self.rule)
        if self.train_utts < 0:
            raise ValueError(f"train_utts must be >= 0, got {self.train_utts}")


@dataclass
class ExtractSpec:
    device: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of jeffreys.extract.extract


@dataclass
class ExperimentConfig:
    systems: list[SystemSpec]
    eval_sets: list[EvalSpec]
    train: dict[str, Any] = field(default_factory=dict)  # training config shared by the systems
    train_data: str | None = None  # data dir for the centring mean (default: each system's training data)
    baseline: str | None = None  # system the gains are relative to (default: the first)
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    probe: ProbeSpec = field(default_factory=ProbeSpec)
    extract: ExtractSpec = field(default_factory=ExtractSpec)
    train_jobs: int = 1  # systems trained at the same time (subprocesses sharing the cores)
    figures: bool = True  # False: tables and results.json only
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.systems:
            raise ValueError("no systems")
        if not self.eval_sets:
            raise ValueError("no eval_sets")
        for kind, names in (("system", [s.name for s in self.systems]), ("evaluation set", [e.name for e in self.eval_sets])):
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"duplicate {kind} name {sorted(dup)[0]!r}")
        for s in self.systems:
            if s.model is None and s.config is None and not self.train:
                raise ValueError(f"system {s.name!r}: give 'model' (reuse), 'config' (train) or an experiment-level 'train' mapping")
        if self.train_jobs < 1:
            raise ValueError(f"train_jobs must be >= 1, got {self.train_jobs}")
        if self.baseline is not None and self.baseline not in [s.name for s in self.systems]:
            raise ValueError(f"baseline {self.baseline!r} is not a system")


def load_experiment(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read an experiment config; relative paths in it are resolved against its directory."""
    path = Path(path)
    return resolve_paths(load_config(ExperimentConfig, path, overrides), path.parent, source=str(path))


def resolve_paths(cfg: ExperimentConfig, base: Path, source: str = "") -> ExperimentConfig:
    """Expand ``~`` and ``${VAR}`` (environment) in paths and make them absolute from ``base``."""

    def res(p: str | None) -> str | None:
        if p is None:
            return None
        q = os.path.expandvars(os.path.expanduser(p))
        if "$" in q:
            raise InputError(f"{source or 'experiment config'}: path {p!r}: environment variable not set ({q!r})")
        return str((base / q).resolve())

    for s in cfg.systems:
        s.config, s.model = res(s.config), res(s.model)
    for e in cfg.eval_sets:
        e.data, e.trials = res(e.data), res(e.trials)
    cfg.train_data = res(cfg.train_data)
    return cfg


# --------------------------------------------------------------------------- stamps


def fingerprint(path: str | Path) -> list:
    """What identifies a file's content cheaply: name, size, modification time (ns)."""
    p = Path(path)
    if p.is_dir():
        return [fingerprint(f) for f in sorted(p.iterdir()) if f.is_file() and not f.name.startswith(".")]
    st = p.stat()
    return [str(p), st.st_size, st.st_mtime_ns]


def digest(inputs: Any) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Stamps:
    """Stage completion records: ``OUT/.stamps/NAME.json`` = {"key": digest of inputs}."""

    def __init__(self, root: Path):
        self.dir = Path(root) / ".stamps"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _file(self, name: str) -> Path:
        return self.dir / f"{name.replace('/', '__')}.json"

    def done(self, name: str, key: str, outputs: list[Path]) -> bool:
        f = self._file(name)
        if not f.exists() or not all(Path(o).exists() for o in outputs):
            return False
        try:
            return json.loads(f.read_text()).get("key") == key
        except (json.JSONDecodeError, OSError):
            return False

    def mark(self, name: str, key: str) -> None:
        tmp = self._file(name).with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}))
        os.replace(tmp, self._file(name))


# --------------------------------------------------------------------------- progress


class Progress:
    """One line per stage, with the elapsed wall time; everything also goes to ``log.txt``."""

    def __init__(self, out: Path, quiet: bool = False, t0: float | None = None):
        self.t0 = time.monotonic() if t0 is None else t0
        self.quiet = quiet
        self.log = open(Path(out) / "log.txt", "a", encoding="utf-8")

    def __call__(self, msg: str) -> None:
        m, s = divmod(time.monotonic() - self.t0, 60)
        line = f"[{int(m):2d}:{s:04.1f}] {msg}"
        self.log.write(line + "\n")
        self.log.flush()
        if not self.quiet:
            print(line, flush=True)

    def close(self) -> None:
        self.log.close()


# --------------------------------------------------------------------------- stages


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def train_config_of(spec: SystemSpec, cfg: ExperimentConfig):
    """The TrainConfig a system trains with: ``cfg.train``, its ``config`` file, its ``set``."""
    from .train import TrainConfig

    data = dict(cfg.train)
    source = "experiment config 'train'"
    if spec.config is not None:
        data = _merge(data, load_yaml(spec.config) or {})
        source = spec.config
    for dotted, value in spec.set.items():
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise InputError(f"system {spec.name!r}: set {dotted!r}: {p!r} is not a section")
        node[last] = value
    return from_dict(TrainConfig, data, source=f"{source} (system {spec.name})")


@dataclass
class TrainJob:
    """A system that still has to be trained: its config, directory, stamp key, resume flag."""

    spec: SystemSpec
    config: Any
    exp: Path
    key: str
    resume: bool


def plan_training(spec: SystemSpec, cfg: ExperimentConfig, sdir: Path, stamps: Stamps) -> Path | TrainJob:
    """The model of a system when it exists (reused or stamped), else the job that makes it."""
    if spec.model is not None:
        if not Path(spec.model).is_file():
            raise InputError(f"system {spec.name!r}: model {spec.model} not found")
        return Path(spec.model)
    tcfg = train_config_of(spec, cfg)
    exp = sdir / "train"
    key = digest(to_dict(tcfg))
    if stamps.done(f"{spec.name}/train", key, [exp / "model.pt"]):
        return exp / "model.pt"
    # An interrupted run of the same config resumes from its checkpoints; anything else in
    # the directory is a stale run of another config and goes.
    resume = False
    ckpt, old = exp / "checkpoints", exp / "config.yaml"
    if ckpt.is_dir() and any(ckpt.iterdir()) and old.exists():
        from .train import TrainConfig

        try:
            resume = digest(to_dict(load_config(TrainConfig, old))) == key
        except InputError:
            resume = False
    if exp.exists() and not resume:
        shutil.rmtree(exp)
    return TrainJob(spec, tcfg, exp, key, resume)


def run_training(jobs: list[TrainJob], parallel: int, stamps: Stamps, log) -> None:
    """Train the jobs, ``parallel`` at a time.

    One at a time, training runs in this process with all threads (its progress bar shows).
    Several at a time, each is a ``jeffreys train`` subprocess with ``cpu_count / parallel``
    threads, its output in ``SYSTEM/train.out``, and a status line is printed every 20 s: on
    a small CPU model two single-threaded runs train faster than one run on two threads.
    """
    if not jobs:
        return
    if parallel <= 1 or len(jobs) == 1:
        from .train import train

        for job in jobs:
            log(f"{job.spec.name}: {'resuming' if job.resume else 'training'} -> {job.exp}")
            train(job.config, job.exp, resume=job.resume)
            stamps.mark(f"{job.spec.name}/train", job.key)
        return
    import subprocess

    threads = max(1, (os.cpu_count() or 1) // parallel)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    import signal

    def _terminate(signum, frame):  # SIGTERM: stop the children too (the finally below)
        raise SystemExit(128 + signum)

    queue, running = list(jobs), {}
    last_status = time.monotonic()
    previous = signal.signal(signal.SIGTERM, _terminate) if threading_main() else None
    try:
        while queue or running:
            while queue and len(running) < parallel:
                job = queue.pop(0)
                cfg_file = job.exp.parent / "train_config.yaml"
                save_config(job.config, cfg_file)
                outf = open(job.exp.parent / "train.out", "w", encoding="utf-8")
                cmd = [sys.executable, "-m", "jeffreys", "train", str(cfg_file), "--exp-dir", str(job.exp)]
                if job.resume:
                    cmd.append("--resume")
                log(f"{job.spec.name}: {'resuming' if job.resume else 'training'} -> {job.exp} ({threads} thread(s), output in {outf.name})")
                running[job.spec.name] = (job, subprocess.Popen(cmd, stdout=outf, stderr=subprocess.STDOUT, env=env), outf)
            time.sleep(1.0)
            for name, (job, proc, outf) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                outf.close()
                del running[name]
                if rc != 0:
                    raise InputError(f"training system {name!r} failed (exit {rc}): {_last_line(Path(outf.name))} (see {outf.name})")
                stamps.mark(f"{name}/train", job.key)
                log(f"{name}: trained")
            if running and time.monotonic() - last_status >= 20:
                last_status = time.monotonic()
                for name, (_, _, outf) in running.items():
                    log(f"  {name}: {_last_line(Path(outf.name)) or 'starting (loading data, generating augmentation material)'}")
    finally:
        for _, proc, outf in running.values():
            proc.kill()
            proc.wait()
            outf.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _last_line(path: Path) -> str:
    """The last progress update of a log (tqdm rewrites its line with carriage returns)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    parts = [p.strip() for p in text.replace("\r", "\n").split("\n") if p.strip()]
    return parts[-1][:160] if parts else ""


def train_data_of(spec: SystemSpec, cfg: ExperimentConfig) -> Path:
    if cfg.train_data is not None:
        return Path(cfg.train_data)
    if spec.model is not None:
        raise InputError(f"system {spec.name!r} reuses a model: give 'train_data' (for the centring mean) in the experiment config")
    return Path(train_config_of(spec, cfg).data.train)


def subset_utts(datadir, n: int, seed: int) -> list[str]:
    """A seeded subset of ``n`` utterances spread evenly over speakers (all when n = 0)."""
    utts = datadir.utts
    if n == 0 or n >= len(utts):
        return utts
    rng = np.random.default_rng(seed)
    per_spk = {s: list(rng.permutation(u)) for s, u in datadir.spk2utt.items()}
    chosen: list[str] = []
    while len(chosen) < n:  # round robin over speakers
        for s in sorted(per_spk):
            if per_spk[s] and len(chosen) < n:
                chosen.append(per_spk[s].pop())
    return sorted(chosen)


def write_subset(datadir, utts: list[str], dst: Path) -> Path:
    from .data.datadir import write_datadir

    keep = set(utts)
    if datadir.segments is not None:
        segs = {u: datadir.segments[u] for u in utts}
        wav = {r: datadir.wav[r] for r in {s[0] for s in segs.values()}}
    else:
        segs, wav = None, {u: datadir.wav[u] for u in utts}
    dur = {u: d for u, d in datadir.utt2dur.items() if u in keep} if datadir.utt2dur else None
    return write_datadir(dst, wav, {u: datadir.utt2spk[u] for u in utts}, segments=segs, utt2dur=dur)


def emb_name(datadir: str) -> str:
    """Embedding file stem of a data dir: its name plus a digest of its full path."""
    return f"{Path(datadir).name.replace('.', '_')}-{digest(str(Path(datadir).resolve()))[:8]}"


def emb_file(stem: Path) -> Path:
    """The file ``extract`` writes for output stem ``stem`` (Kaldi format: STEM.scp + STEM.ark)."""
    return stem.with_name(stem.name + ".scp")


def _extract(bundle, datadir: Path, out: Path, cfg: ExperimentConfig, progress: bool):
    from .extract import extract

    return extract(bundle, datadir, out, device=cfg.extract.device, progress=progress, **cfg.extract.options)


def _read_emb(stem: Path):
    from .embeddings import read_embeddings

    return read_embeddings(emb_file(stem))


def stage_embed(name: str, bundle, model_key: str, datadir: Path, out: Path, stamps: Stamps, cfg: ExperimentConfig, log):
    """Embeddings of a data dir (Kaldi OUT.ark/OUT.scp), extracted unless stamped."""
    key = digest([model_key, fingerprint(datadir), to_dict(cfg.extract)])
    if stamps.done(name, key, [emb_file(out)]):
        return _read_emb(out)
    log(f"{name}: extracting {datadir}")
    out.parent.mkdir(parents=True, exist_ok=True)
    ids, mat = _extract(bundle, datadir, out, cfg, progress=not getattr(log, "quiet", False))
    stamps.mark(name, key)
    return list(ids), np.asarray(mat)


def eer_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """A threshold at the equal-error point (accept ``score >= t``): among the distinct scores,
    the one where |Pmiss - Pfa| is smallest (ties: the lower one)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    tar, non = np.sort(s[y]), np.sort(s[~y])
    cand = np.unique(s)
    pmiss = np.searchsorted(tar, cand, side="left") / len(tar)
    pfa = 1 - np.searchsorted(non, cand, side="left") / len(non)
    return float(cand[np.argmin(np.abs(pmiss - pfa))])


def _score(ids, mat, mean, trials_path: Path, datadir: Path):
    """Centred cosine scores of a trial list: (Trials, scores). A data dir's ``models`` file
    (``MODEL UTT1 UTT2 ...``, SdSV) lets trials name models enrolled by several utterances."""
    from .data.trials import read_trials
    from .scoring import cosine_scores

    trials = read_trials(trials_path)
    models = Path(datadir) / "models"
    return trials, cosine_scores((list(ids), np.asarray(mat)), None, trials, mean=mean, models=models if models.is_file() else None)


def _write_scores(path: Path, trials, scores: np.ndarray) -> None:
    from .scoring import write_scores

    tmp = path.with_suffix(".tmp")
    write_scores(tmp, trials, scores)
    os.replace(tmp, path)


def trial_groups(enroll: list[str], utt2spk: dict[str, str]) -> list[str]:
    """Bootstrap groups: the speaker of each trial's enrolment side (a model id with no
    utterance of its own stands for one speaker)."""
    return [utt2spk.get(e, e) for e in enroll]


def _metrics(scores, trials, utt2spk, cfg: ExperimentConfig) -> dict:
    from .metrics import bootstrap_ci, evaluate

    m = cfg.metrics
    res = evaluate(scores, trials.label, p_targets=(m.p_target,))
    out = {
        "eer": res["eer"],
        "min_dcf": res["min_dcf"][m.p_target],
        "cllr": res["cllr"],
        "min_cllr": res["min_cllr"],
        "n_target": int(res["n_target"]),
        "n_nontarget": int(res["n_nontarget"]),
        "p_target": m.p_target,
        "eer_threshold": eer_threshold(scores, trials.label),
    }
    if m.n_boot > 0:
        groups = trial_groups(trials.enroll, utt2spk) if m.by == "speaker" else None
        try:
            ci = bootstrap_ci(
                scores, trials.label, p_targets=(m.p_target,), ci=m.ci, n_boot=m.n_boot, seed=m.seed,
                groups=groups, metrics=("eer", "min_dcf", "cllr"),
            )
        except InputError as e:  # e.g. too few speakers for any replicate to hold both classes
            out["ci_error"] = str(e)
            return out
        out["ci"] = {
            "level": m.ci, "n_boot": m.n_boot, "by": m.by, "n_skipped": ci["n_skipped"],
            "eer": list(ci["eer"]), "min_dcf": list(ci["min_dcf"][m.p_target]), "cllr": list(ci["cllr"]),
        }
    return out


# --------------------------------------------------------------------------- the runner


@dataclass
class SystemRun:
    spec: SystemSpec
    model: Path
    mean: np.ndarray
    bundle: Any
    train_ids: list[str]
    train_emb: np.ndarray
    train_labels: np.ndarray | None


def run_experiment(cfg: ExperimentConfig, out: str | Path, *, quiet: bool = False, t0: float | None = None) -> dict:
    """Run (or finish) the experiment into ``out``; return the content of ``results.json``.

    ``t0``: a ``time.monotonic()`` origin for the progress clock (default: now)."""
    from .data.datadir import read_datadir
    from .models import load_bundle

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "experiment.yaml")
    stamps = Stamps(out)
    log = Progress(out, quiet=quiet, t0=t0)
    t_start = time.monotonic()
    try:
        evals = []
        for e in cfg.eval_sets:
            if not Path(e.data).is_dir():
                if e.optional:
                    log(f"evaluation set {e.name}: {e.data} absent, skipped (optional)")
                    continue
                raise InputError(f"evaluation set {e.name!r}: data dir {e.data} not found")
            trials = Path(e.trials) if e.trials else Path(e.data) / "trials"
            if not trials.is_file():
                raise InputError(f"evaluation set {e.name!r}: trials file {trials} not found")
            evals.append((e, read_datadir(e.data, check_files=False), trials))
        if not evals:
            raise InputError("no evaluation set is present")
        rule = TopRule.parse(cfg.probe.rule)

        results: dict[str, Any] = {"systems": {}, "eval_sets": {}, "probe_rule": str(rule)}
        for e, dd, trials in evals:
            results["eval_sets"][e.name] = {"data": e.data, "trials": str(trials), "domain": e.domain, "utterances": len(dd.utts)}
        runs: dict[str, SystemRun] = {}
        scored: dict[tuple[str, str], tuple[Any, np.ndarray]] = {}
        models: dict[str, Path] = {}
        jobs: list[TrainJob] = []
        for spec in cfg.systems:
            sdir = out / "systems" / spec.name
            sdir.mkdir(parents=True, exist_ok=True)
            planned = plan_training(spec, cfg, sdir, stamps)
            if isinstance(planned, TrainJob):
                jobs.append(planned)
                models[spec.name] = planned.exp / "model.pt"
            else:
                models[spec.name] = planned
                if spec.model is None:
                    log(f"{spec.name}: trained model found ({planned})")
        t_train = time.monotonic()
        run_training(jobs, cfg.train_jobs, stamps, log)
        results["train_wall_seconds"] = round(time.monotonic() - t_train, 1)
        for spec in cfg.systems:
            sdir = out / "systems" / spec.name
            model = models[spec.name]
            bundle = load_bundle(model)
            model_key = digest(fingerprint(model))

            # training subset: centring mean + probe of training utterances
            tdata = read_datadir(train_data_of(spec, cfg), check_files=False)
            sub = subset_utts(tdata, cfg.probe.train_utts, cfg.seed)
            sub_dir = sdir / "train_subset"
            if not sub_dir.exists() or read_datadir(sub_dir, check_files=False).utts != sub:
                if sub_dir.exists():
                    shutil.rmtree(sub_dir)
                write_subset(tdata, sub, sub_dir)
            ids, temb = stage_embed(f"{spec.name}/embed_train", bundle, model_key, sub_dir, sdir / "emb" / "train", stamps, cfg, log)
            mean = temb.mean(axis=0)
            np.save(sdir / "mean.npy", mean)
            spk_index = {s: i for i, s in enumerate(bundle.speakers)}
            labels = np.array([spk_index.get(tdata.utt2spk[u], -1) for u in ids])
            runs[spec.name] = SystemRun(spec, model, mean, bundle, ids, temb, labels if (labels >= 0).all() else None)
            sres: dict[str, Any] = {"model": str(model), "label": spec.label or spec.name, "eval": {}}
            tr = Path(model).parent / "train_result.json"
            if tr.is_file():
                sres["train_result"] = json.loads(tr.read_text())
            if bundle.head is not None and runs[spec.name].train_labels is not None:
                from .probe import training_summary

                sres["train_probe"] = training_summary(bundle.head, temb, runs[spec.name].train_labels)

            for e, dd, trials in evals:
                name = f"{spec.name}/{e.name}"
                # evaluation sets sharing a data dir (Vox1-O/E/H) share its embeddings
                emb_path = sdir / "emb" / emb_name(e.data)
                eids, emb = stage_embed(f"{spec.name}/embed_{emb_path.name}", bundle, model_key, Path(e.data), emb_path, stamps, cfg, log)
                score_path = sdir / "scores" / f"{e.name}.txt"
                score_path.parent.mkdir(exist_ok=True)
                mkey = digest([model_key, fingerprint(trials), to_dict(cfg.metrics), fingerprint(emb_file(emb_path)), cfg.probe.train_utts])
                met_path = sdir / "metrics" / f"{e.name}.json"
                met_path.parent.mkdir(exist_ok=True)
                tri, scores = _score(eids, emb, mean, trials, Path(e.data))
                if stamps.done(f"{name}/metrics", mkey, [met_path, score_path]):
                    met = json.loads(met_path.read_text())
                else:
                    _write_scores(score_path, tri, scores)
                    met = _metrics(scores, tri, dd.utt2spk, cfg)
                    met_path.write_text(json.dumps(met, indent=2))
                    stamps.mark(f"{name}/metrics", mkey)
                scored[(spec.name, e.name)] = (tri, scores)
                if bundle.head is not None:
                    from .probe import nontarget_tail, probe, write_probe_table

                    pr = probe(bundle.head, eids, emb, rule)
                    (sdir / "probe").mkdir(exist_ok=True)
                    write_probe_table(pr, bundle.speakers, sdir / "probe" / f"{e.name}.tsv")
                    met["probe"] = pr.summary()
                met["nontarget_tail"] = nontarget_tail(scores, tri.label)
                sres["eval"][e.name] = met
                ci = met.get("ci")
                iv = f" [{100 * ci['eer'][0]:.2f}, {100 * ci['eer'][1]:.2f}]" if ci else ""
                log(f"{name}: EER {100 * met['eer']:.2f} %{iv}  minDCF {met['min_dcf']:.3f}  Cllr {met['cllr']:.3f}")
            results["systems"][spec.name] = sres

        report(cfg, out, results, runs, scored, [e for e, _, _ in evals], log)
        results["wall_seconds"] = round(time.monotonic() - t_start, 1)
        results["config"] = to_dict(cfg)
        tmp = out / "results.json.tmp"
        tmp.write_text(json.dumps(jsonable(results), indent=2))
        os.replace(tmp, out / "results.json")
        log(f"results: {out / 'results.json'}, table: {out / 'table.md'}")
        return results
    finally:
        log.close()


# --------------------------------------------------------------------------- report


def report(cfg: ExperimentConfig, out: Path, results: dict, runs: dict, scored: dict, evals: list[EvalSpec], log) -> None:
    import csv

    from . import report as rep
    from .probe import plot_eer_vs_top, plot_nontarget_scores, plot_output_examples

    m = cfg.metrics
    base = cfg.baseline or cfg.systems[0].name
    labels = {s.name: s.label or s.name for s in cfg.systems}
    # The results structure of jeffreys.report, evaluation sets titled with their domain.
    shown = {e.name: f"{e.name} ({e.domain})" if e.domain else e.name for e in evals}
    cells = {
        labels[s.name]: {shown[e.name]: {**results["systems"][s.name]["eval"][e.name],
                                         "min_dcf": {m.p_target: results["systems"][s.name]["eval"][e.name]["min_dcf"]}}
                         for e in evals}
        for s in cfg.systems
    }
    md = rep.table_markdown(cells, m.p_target)
    if m.n_boot > 0:
        md += f"[{100 * m.ci:g} % bootstrap interval, {m.n_boot} replicates, resampling by {m.by}]\n"
    (out / "table.md").write_text(md)
    with open(out / "table.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["system", "eval_set", "domain", "eer", "eer_lo", "eer_hi", "min_dcf", "min_dcf_lo", "min_dcf_hi", "cllr", "mean_top_speakers", "mean_entropy_nats"])
        for s in cfg.systems:
            for e in evals:
                r = results["systems"][s.name]["eval"][e.name]
                ci = r.get("ci", {})
                pr = r.get("probe", {})
                w.writerow([s.name, e.name, e.domain, r["eer"], *(ci.get("eer") or ["", ""]), r["min_dcf"], *(ci.get("min_dcf") or ["", ""]), r["cllr"], pr.get("mean_top_speakers", ""), pr.get("mean_entropy_nats", "")])
    results["table_markdown"] = md

    # Fig. 3: relative gains of every other system over the baseline.
    table = {label: {e.name: per[shown[e.name]] for e in evals} for label, per in cells.items()}
    if len(cfg.systems) > 1:
        results["gains"] = rep.relative_gains(table, labels[base], m.p_target)
    if not cfg.figures:
        log(f"report: {out / 'table.md'} (figures off)")
        return
    if len(cfg.systems) > 1:
        rep.plot_gains(table, labels[base], out / "gains.png", p_target=m.p_target,
                       title=f"Relative gains over {labels[base]}" + _domains_note(evals))
    # Figs. 4-5: DET curves per evaluation set, and the non-target score tails.
    for e in evals:
        per = {labels[s.name]: (scored[(s.name, e.name)][1], scored[(s.name, e.name)][0].label) for s in cfg.systems}
        rep.plot_det(per, out / f"det_{e.name}.png", p_target=m.p_target,
                     title=f"DET {e.name}" + (f" ({e.domain}-domain)" if e.domain else "") + " (○ EER, △ minDCF)")
        plot_nontarget_scores(per, out / f"nontarget_{e.name}", title=f"non-target scores, {e.name}; dotted: 99.9 % quantile")
    # Fig. 1 and Fig. 2 from the probe.
    pts = []
    for s in cfg.systems:
        for e in evals:
            r = results["systems"][s.name]["eval"][e.name]
            if "probe" in r:
                pts.append({"system": labels[s.name], "eval_set": e.name, "mean_top_speakers": r["probe"]["mean_top_speakers"], "eer": r["eer"], "rule": r["probe"]["rule"]})
    if pts:
        plot_eer_vs_top(pts, out / "probe_eer_vs_top")
    ex_names = cfg.probe.examples or ([cfg.systems[0].name, cfg.systems[-1].name] if len(cfg.systems) > 1 else [cfg.systems[0].name])
    examples = _output_examples([runs[n] for n in ex_names if n in runs])
    if examples:
        plot_output_examples(examples, out / "probe_outputs")
    log(f"report: {out / 'table.md'}, figures in {out}")


def _domains_note(evals: list[EvalSpec]) -> str:
    """'; in-domain: a, b; out-of-domain: c' for titles (empty when no domain is given)."""
    parts = []
    for dom in dict.fromkeys(e.domain for e in evals if e.domain):
        parts.append(f"{dom}-domain: " + ", ".join(e.name for e in evals if e.domain == dom))
    return "\n" + "; ".join(parts) if parts else ""


def _output_examples(runs: list[SystemRun], n_utts: int = 2) -> list[dict]:
    """Output distributions of the same training utterances under each system (Fig. 2)."""
    from .probe import head_logits, log_softmax

    runs = [r for r in runs if r.bundle.head is not None and r.train_labels is not None]
    if not runs:
        return []
    common = sorted(set.intersection(*(set(r.train_ids) for r in runs)))
    # spread the examples over different speakers
    picked, seen = [], set()
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
            ex.append({"system": r.spec.label or r.spec.name, "utt": u, "probs": p, "target": int(r.train_labels[i])})
    return ex


# --------------------------------------------------------------------------- CLI


def cli_experiment(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="jeffreys experiment",
        description="Run a Table-1 experiment: train (or reuse) each system, extract, score by "
        "centred cosine, compute EER/minDCF/Cllr with bootstrap intervals, write the table, "
        "figures and results.json. Re-running skips finished stages.",
    )
    parser.add_argument("config", type=Path, help="experiment YAML (systems, eval_sets, ...)")
    parser.add_argument("--out", type=Path, help="output directory (default: next to the config, named after it)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key of the experiment config (dotted)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stdout (still in OUT/log.txt)")
    args = parser.parse_args(argv)
    from .train import parse_overrides

    cfg = load_experiment(args.config, parse_overrides(args.set))
    out = args.out or args.config.with_suffix("")
    results = run_experiment(cfg, out, quiet=args.quiet)
    print(results["table_markdown"], end="")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli_experiment(sys.argv[1:]))
