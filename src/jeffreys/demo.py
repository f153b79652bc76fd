"""``jeffreys demo``: the paper's Table 1 on the embedded corpus, on a laptop CPU.

1. builds the embedded corpus (``jeffreys prepare synth``) into ``OUT/corpus``, or reuses
   it when one built with the same seed and sizes is there;
2. runs the four systems of Table 1 — AAM-softmax; AAM + label smoothing with weight decay;
   AAM + label smoothing without; AAM + Jeffreys — with the CPU model preset, through the
   experiment runner (:mod:`jeffreys.experiment`) on the corpus's in-domain split and its
   three out-of-domain splits (other languages, telephone band, reverberant rooms);
3. prints the table with bootstrap intervals and writes the figures and ``results.json``
   into ``OUT``;
4. saves the Jeffreys system as ``OUT/model.pt`` with its centring mean and the EER
   threshold of the in-domain split in its meta, ready for ``jeffreys verify``,
   ``jeffreys extract`` and ``jeffreys export``.

The experiment is the YAML file ``jeffreys/conf/demo_experiment.yaml`` (``${CORPUS}`` is
the corpus directory; its systems train with ``jeffreys/conf/demo.yaml``); ``--quick``
merges ``jeffreys/conf/demo_quick.yaml`` over it, shrinking corpus, training and bootstrap
to a smoke run that exercises every stage. Re-running into the same ``OUT`` skips finished stages.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from importlib import resources
from pathlib import Path

import yaml

from .errors import InputError
from .fileio import write_text_atomic
from .experiment import ExperimentConfig, load_experiment, run_experiment

# Corpus sizes (jeffreys.corpora.synth.Sizes fields); the full demo uses the preparer's defaults.
CORPUS_FULL: dict = {}
CORPUS_QUICK = {"train_speakers": 16, "utts_per_speaker": 6, "eval_speakers": 4, "eval_utts_per_speaker": 3, "min_dur": 1.0, "max_dur": 1.5}


def demo_config(corpus: Path, quick: bool, seed: int) -> ExperimentConfig:
    """The demo's experiment: the packaged ``conf/demo_experiment.yaml`` with ``${CORPUS}``
    the corpus directory (and ``conf/demo_quick.yaml`` merged over it for ``--quick``)."""
    conf = resources.files("jeffreys") / "conf"
    with resources.as_file(conf / "demo_experiment.yaml") as path:
        patch = yaml.safe_load((conf / "demo_quick.yaml").read_text(encoding="utf-8")) if quick else {}
        return load_experiment(path, {"seed": seed, "seeds": [seed]}, variables={"CORPUS": str(corpus)}, patch=patch)


def build_corpus(dst: Path, quick: bool, seed: int, log) -> Path:
    """The embedded corpus at ``dst``, rebuilt only when missing or built with other sizes/seed."""
    from .corpora.synth import build_synth_corpus, validate_corpus

    sizes = CORPUS_QUICK if quick else CORPUS_FULL
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


def save_demo_model(results: dict, out: Path, system: str, in_domain: str) -> Path:
    """``system``'s model as ``OUT/model.pt`` with its centring mean and EER threshold in its
    meta, written in one atomic step."""
    from .models.bundle import bundle_with_meta, save_torch
    from .scoring import load_mean

    sres = results["systems"][system]
    seed = sres["seeds"][0]
    run = sres["runs"][str(seed)]
    mean = load_mean(out / "systems" / system / f"seed-{seed}" / "mean.npy")
    ev = run["eval"][in_domain]
    data = bundle_with_meta(
        run["model"],
        mean=[float(v) for v in mean],
        threshold=float(ev["eer_threshold"]),
        threshold_source=f"EER point of the demo's {in_domain} split (centred cosine), EER {ev['eer']:.4f}",
        system=system,
    )
    return save_torch(data, out / "model.pt")


def cli_demo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="jeffreys demo",
        description="The paper's Table 1 on the embedded corpus with the CPU model preset: builds "
        "the corpus, trains AAM, AAM+LS (with and without weight decay) and AAM+Jeffreys, scores "
        "in- and out-of-domain splits, prints the table, writes figures, results.json and the "
        "Jeffreys model (model.pt) into --out.",
    )
    parser.add_argument("--out", type=Path, default=Path("demo"), help="output directory (default: ./demo)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of every stage in a couple of minutes (tiny corpus, few steps)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus and of training (default 0)")
    args = parser.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()

    def log(msg: str) -> None:
        m, s = divmod(time.monotonic() - t0, 60)
        print(f"[{int(m):2d}:{s:04.1f}] {msg}", flush=True)

    corpus = build_corpus(out / "corpus", args.quick, args.seed, log)
    cfg = demo_config(corpus.resolve(), args.quick, args.seed)
    results = run_experiment(cfg, out, t0=t0)
    in_domain = next(e.name for e in cfg.eval_sets if e.domain == "in")
    model = save_demo_model(results, out, cfg.systems[-1].name, in_domain)
    print()
    print(results["table_markdown"], end="")
    print(results["comparisons_markdown"], end="")
    print()
    print(f"jeffreys demo: done in {(time.monotonic() - t0) / 60:.1f} min. Results in {out}/: table.md, "
          f"results.json, gains.png (Fig. 3), det_*.png (Figs. 4-5), probe_*.png (Figs. 1-2), nontarget_*.png")
    print(f"The Jeffreys model: {model} (try `jeffreys verify {model} a.wav b.wav`)")
    return 0
