"""Experiments: the paper's Table 1 as a reproducible, resumable run (``jeffreys experiment``).

One YAML config names the systems (training configs to train once per seed, or trained
models to reuse) and the evaluation sets (data dirs with trial lists). The package follows
the run:

* :mod:`.config` — the typed schema (systems, evaluation sets, seeds, metrics, probe, extraction);
* :mod:`.stages` — stamps, progress, the training subset, the embedding stage;
* :mod:`.training` — one training per (system, seed): planned, resumed, scheduled;
* :mod:`.runner` — evaluation of every run and the CLI;
* :mod:`.statistics` — seed means, intervals over seeds and evaluation speakers, paired comparisons;
* :mod:`.results` — ``results.json``, the tables and the figures.
"""

from .config import EvalSpec, ExperimentConfig, SystemSpec, load_experiment, merge, train_config_of
from .runner import cli_experiment, run_experiment
from .stages import subset_utts
from .statistics import set_statistics

__all__ = [
    "EvalSpec", "ExperimentConfig", "SystemSpec", "cli_experiment", "load_experiment", "merge", "run_experiment",
    "set_statistics", "subset_utts", "train_config_of",
]
