"""``jeffreys demo``: the paper's Table 1 on the embedded corpus, on a laptop CPU.

1. builds the embedded corpus (``jeffreys prepare synth``) into ``OUT/corpus``, or reuses
   it when one built with the same seed and sizes is there;
2. runs the four systems of Table 1 — AAM-softmax; AAM + label smoothing with weight decay;
   AAM + label smoothing without; AAM + Jeffreys — with the CPU model preset, each once per
   training seed (three by default), through the experiment runner
   (:mod:`jeffreys.experiment`), on the corpus's in-domain split and its three
   out-of-domain splits (other languages, telephone band, reverberant rooms);
3. prints Table 1 (seed means with intervals covering seeds and evaluation speakers), the
   paired comparisons with AAM and, in plain words, what the run can and cannot separate
   (p-values adjusted by Holm over every comparison the run reports);
   writes the figures and ``results.json`` into ``OUT``;
4. saves the Jeffreys system as ``OUT/model.pt`` with its centring mean, calibrated on the
   corpus's ``dev`` speakers (held out from every reported split), so that its stored
   threshold was not chosen on the data whose EER the table reports; ready for
   ``jeffreys verify``, ``jeffreys extract`` and ``jeffreys export``.

The experiment is the YAML file ``jeffreys/conf/demo_experiment.yaml`` (``${CORPUS}`` is
the corpus directory, ``${OUT}`` the output; its systems train with
``jeffreys/conf/demo.yaml``); ``--quick`` merges ``jeffreys/conf/demo_quick.yaml`` over it,
shrinking corpus, training and bootstrap to a smoke run that exercises every stage.
``--set KEY=VALUE`` (repeatable) sets a key of every system's training config, e.g.
``--set model.feature_norm=sliding`` or ``--set model.vad=energy --set data.offline_copies=0``
(it is the experiment's ``--set train.KEY=VALUE``); the runs' stamps follow their configs.
``--study speakers`` runs ``jeffreys/conf/study_speakers.yaml`` instead: where the
regulariser's effect lives as the number of training speakers grows (and draws
``OUT/effect_vs_speakers.png``). ``--real-voices DIR`` (a ``jeffreys prepare debvoices``
output) adds the recorded voices as evaluation sets and the MFCC-statistics baseline on the
same trials (:mod:`jeffreys.realvoices`). Re-running into the same ``OUT`` skips finished
stages.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from .errors import InputError
from .experiment import ExperimentConfig, load_experiment, run_experiment
from .fileio import write_text_atomic


@dataclass(frozen=True)
class Demo:
    """A packaged experiment on the embedded corpus: its config and its corpus's sizes
    (fields of :class:`jeffreys.corpora.synth.Sizes`)."""

    config: str
    corpus: dict = field(default_factory=dict)
    quick_corpus: dict = field(default_factory=dict)
    out: str = "demo"


QUICK = {"train_speakers": 16, "utts_per_speaker": 6, "eval_speakers": 4, "dev_speakers": 4, "eval_utts_per_speaker": 3,
         "min_dur": 1.0, "max_dur": 1.5}
DEMOS = {
    # 100 speakers per evaluation split: the speaker part of an EER interval is about +-16 %
    # relative there, against +-31 % with 40 (benchmarks/eval_power.py, docs/benchmarks.md);
    # more would not fit the 15 minutes with three seeds per system.
    "table1": Demo("demo_experiment.yaml", {"eval_speakers": 100}, QUICK),
    "speakers": Demo("study_speakers.yaml", {"train_speakers": 3000, "utts_per_speaker": 8, "eval_speakers": 100},
                     {**QUICK, "train_speakers": 12}, out="demo-speakers"),
}


def demo_config(demo: Demo, corpus: Path, out: Path, quick: bool, seed: int, seeds: list[int] | None = None,
                train_set: dict | None = None) -> ExperimentConfig:
    """A packaged experiment with ``${CORPUS}`` and ``${OUT}`` filled in (and, for ``--quick``,
    ``conf/demo_quick.yaml`` merged over it); ``train_set``: dotted keys of the training
    config (``{"model.feature_norm": "sliding"}``) set for every system."""
    conf = resources.files("jeffreys") / "conf"
    with resources.as_file(conf / demo.config) as path:
        patch = yaml.safe_load((conf / "demo_quick.yaml").read_text(encoding="utf-8")) if quick else {}
        overrides = {"seed": seed, **({"seeds": list(seeds)} if seeds else {})}
        overrides.update({f"train.{k}": v for k, v in (train_set or {}).items()})
        return load_experiment(path, overrides, variables={"CORPUS": str(corpus), "OUT": str(out)}, patch=patch)


def build_corpus(dst: Path, sizes: dict, seed: int, log) -> Path:
    """The embedded corpus at ``dst``, rebuilt only when missing or built with other sizes/seed."""
    from .corpora.synth import build_synth_corpus, validate_corpus

    want = {"seed": seed, "sizes": sizes}
    stamp = dst / ".demo_corpus.json"
    if dst.exists():
        try:
            ok = json.loads(stamp.read_text()) == want
            if ok:
                validate_corpus(dst)
                log(f"corpus: reusing {dst}")
                return dst
        except (OSError, ValueError, InputError):
            pass
        log(f"corpus: {dst} was built with other settings (or is damaged); rebuilding")
        shutil.rmtree(dst)
    log(f"corpus: synthesising the embedded corpus into {dst} ...")
    t0 = time.monotonic()
    build_synth_corpus(dst, seed=seed, progress=True, **sizes)
    write_text_atomic(stamp, json.dumps(want))
    info = json.loads((dst / "info.json").read_text())
    parts = ", ".join(f"{k} {v['speakers']} spk/{v['utterances']} utts" for k, v in info["splits"].items())
    log(f"corpus: built in {time.monotonic() - t0:.0f} s: {parts}")
    return dst


def save_demo_model(results: dict, out: Path, system: str, dev: Path, quick: bool) -> tuple[Path, dict]:
    """``system``'s first-seed model as ``OUT/model.pt`` with its centring mean, then calibrated
    on ``dev`` — speakers of no split the table reports — which stores the calibration and the
    threshold in it (:func:`jeffreys.calibrate.calibrate`; its report in ``OUT/calibration.txt``)."""
    from .calibrate import calibrate, format_report
    from .models.bundle import bundle_with_meta, save_torch
    from .scoring import load_mean

    seed = results["systems"][system]["seeds"][0]
    run = results["systems"][system]["runs"][str(seed)]
    mean = load_mean(out / "systems" / system / f"seed-{seed}" / "mean.npy")
    model = save_torch(bundle_with_meta(run["model"], mean=[float(v) for v in mean], system=system, seed=seed),
                       out / "model.pt")
    report = calibrate(model, dev, p_target=0.5, n_boot=100 if quick else 1000, folds=2 if quick else 5, num_workers=1)
    write_text_atomic(out / "calibration.txt", format_report(report))
    return model, report


def effect_vs_speakers(cfg: ExperimentConfig, results: dict, out: Path) -> Path:
    """The study's figure: each system compared with a reference of its own size (AAM-Jeffreys
    with AAM) against the number of training speakers, per evaluation set
    (``OUT/effect_vs_speakers.png``); a filled marker is distinguishable after control over the
    study's whole family of comparisons (``results["multiplicity"]``)."""
    from .report import plot_effect_curve

    points: dict[str, list] = {}
    for s in cfg.systems:
        if s.reference is None:  # the AAM systems: compared with the smallest one, not part of the curve
            continue
        size = float(s.set["data.max_speakers"])
        for name, comparison in results["comparisons"].get(s.name, {}).items():
            points.setdefault(name, []).append((size, comparison))
    path = out / "effect_vs_speakers.png"
    plot_effect_curve(points, path, "training speakers", title="AAM-Jeffreys against AAM of the same size: relative EER change",
                      level=cfg.metrics.ci, multiplicity=results["multiplicity"])
    return path


def real_voices_stage(cfg: ExperimentConfig, out: Path, sets: list, log) -> tuple[dict, str]:
    """The MFCC-statistics baseline on the real-voice trials, standardised on the training
    subset the systems were centred with, and each system against it (``OUT/real_voices.json``
    and ``.md``; a family of comparisons of its own, adjusted apart from ``results.json``'s);
    returns the report and its markdown."""
    from .experiment.runner import train_data_of
    from .experiment.stages import emb_name
    from .realvoices import compare_with_baseline, real_voices_markdown

    subset = out / "train_subsets" / emb_name(train_data_of(cfg.systems[0], cfg))
    report = compare_with_baseline(cfg, out, sets, subset, log)
    labels = {s.name: s.label or s.name for s in cfg.systems}
    md = real_voices_markdown(report, labels, cfg.metrics.ci, n_boot=cfg.metrics.n_boot)
    write_text_atomic(out / "real_voices.md", md)
    return report, md


def cli_demo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="jeffreys demo",
        description="The paper's Table 1 on the embedded corpus with the CPU model preset: builds "
        "the corpus, trains AAM, AAM+LS (with and without weight decay) and AAM+Jeffreys once per seed, "
        "scores in- and out-of-domain splits, prints the table with intervals over seeds and speakers "
        "and the paired comparisons, writes figures, results.json and the Jeffreys model (model.pt).",
    )
    parser.add_argument("--out", type=Path, help="output directory (default: ./demo, ./demo-speakers for the study)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of every stage in a couple of minutes (tiny corpus, few steps)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus, of subsets and bootstrap (default 0)")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="SEED", help="training seeds (default: the experiment's, 0 1 2)")
    parser.add_argument("--real-voices", type=Path, metavar="DIR",
                        help="also evaluate on recorded voices: a `jeffreys prepare debvoices` output (DIR/eval with "
                        "its trial lists), next to the MFCC-statistics baseline on the same trials (docs/real-voices.md)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="train_set",
                        help="set a key of every system's training config (repeatable), e.g. model.feature_norm=sliding, "
                        "model.vad=energy (with data.offline_copies=0: the feature cache keeps no frame energies)")
    parser.add_argument("--study", choices=[k for k in DEMOS if k != "table1"],
                        help="run a packaged study instead of Table 1: 'speakers' (the effect against the number "
                        "of training speakers, 5 seeds, about 50 minutes on 2 cores)")
    args = parser.parse_args(argv)
    from .config import parse_overrides

    train_set = parse_overrides(args.train_set)  # checked before any work
    demo = DEMOS[args.study or "table1"]
    out = args.out or Path(demo.out)
    real_sets = []
    if args.real_voices is not None:  # checked before any work
        from .realvoices import real_voice_sets

        real_sets = real_voice_sets(args.real_voices)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()

    def log(msg: str) -> None:
        m, s = divmod(time.monotonic() - t0, 60)
        print(f"[{int(m):2d}:{s:04.1f}] {msg}", flush=True)

    cfg = demo_config(demo, (out / "corpus").resolve(), out.resolve(), args.quick, args.seed, args.seeds, train_set)
    if train_set:  # a bad key or value fails now, not after the corpus is built
        from .experiment.config import train_config_of

        for system in cfg.systems:
            train_config_of(system, cfg, cfg.seeds[0])
    corpus = build_corpus(out / "corpus", demo.quick_corpus if args.quick else demo.corpus, args.seed, log)
    cfg.eval_sets.extend(real_sets)
    results = run_experiment(cfg, out, t0=t0)
    real, real_md = None, ""
    if real_sets:
        real, real_md = real_voices_stage(cfg, out, real_sets, log)
    if demo is DEMOS["speakers"]:
        effect_vs_speakers(cfg, results, out)
    model = report = None
    if demo is DEMOS["table1"]:
        model, report = save_demo_model(results, out, cfg.systems[-1].name, corpus / "dev", args.quick)
    print()
    print(results["table_markdown"], end="")
    print(results["comparisons_markdown"], end="")
    if real_md:
        print("\nReal voices against the MFCC-statistics baseline (OUT/real_voices.json):")
        print(real_md, end="")
    print()
    print(f"jeffreys demo: done in {(time.monotonic() - t0) / 60:.1f} min. Results in {out}/: table.md, "
          f"results.json, gains.png (Fig. 3), det_*.png (Figs. 4-5), probe_*.png (Figs. 1-2), nontarget_*.png")
    if model is not None:
        print(f"The Jeffreys model: {model} (try `jeffreys verify {model} a.wav b.wav`), calibrated on the corpus's "
              f"held-out dev speakers: same speaker when the score is >= {report['threshold']:.4f} "
              f"({out / 'calibration.txt'})")
    if model is not None and real is not None:
        from .realvoices import BASELINE

        on = real["sets"]["real"]["systems"]
        print(f"On the real voices it gets {100 * on[cfg.systems[-1].name]['per_seed_eer'][0]:.2f} % EER, where the "
              f"MFCC-statistics baseline gets {100 * on[BASELINE]['eer']:.2f} % (OUT/real_voices.md).")
    return 0
