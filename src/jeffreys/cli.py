"""``jeffreys`` command line: one sub-command per pipeline stage.

Each sub-command lives in the module of its stage, as ``cli_<name>(argv) -> int``; the
module is imported only when the command runs, so ``jeffreys --help`` stays fast and a
stage can be replaced without touching the others.
"""

from __future__ import annotations

import importlib
import sys

from . import __version__
from .errors import JeffreysError

# name -> (module, one-line help); the order is the pipeline's.
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("jeffreys.corpora", "write a Kaldi-style data dir (+ trials) from a corpus"),
    "train": ("jeffreys.train", "train a speaker-embedding extractor from a YAML config"),
    "extract": ("jeffreys.extract", "extract embeddings of a data dir (Kaldi ark/scp)"),
    "score": ("jeffreys.scoring", "score a trial list from embeddings (centred cosine)"),
    "metrics": ("jeffreys.metrics", "EER, minDCF, actDCF, Cllr of a scores file"),
    "det": ("jeffreys.report", "DET curves of one or more scores files"),
    "probe": ("jeffreys.probe", "probe the softmax output: top training speakers, entropy"),
    "experiment": ("jeffreys.experiment", "run a Table-1 experiment: train, extract, score, report"),
    "demo": ("jeffreys.demo", "the paper's Table 1 on the embedded corpus, on a CPU"),
    "export": ("jeffreys.export", "export a trained extractor to ONNX"),
    "verify": ("jeffreys.verify", "score two audio files with a trained model"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: jeffreys [--version] [--help] COMMAND [ARGS...]",
        "",
        "Speaker recognition with the Jeffreys-divergence output regulariser",
        "(Bousquet & Rouvier, ICASSP 2023).",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `jeffreys COMMAND --help` for the options of a command."]
    return "\n".join(lines)


def _one_line(error: Exception) -> str:
    """The error's message on one line. An error raised in a DataLoader worker comes back
    re-raised with the worker's whole traceback as its message; its last line is
    ``jeffreys.errors.InputError: MESSAGE``, the one the user needs."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else type(error).__name__
    last = lines[-1]
    prefix = f"{type(error).__module__}.{type(error).__name__}: "
    return last[len(prefix):] if last.startswith(prefix) else " ".join(x.strip() for x in lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"jeffreys {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"jeffreys: error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(getattr(module, f"cli_{name}")(rest) or 0)
    except JeffreysError as e:
        print(f"jeffreys {name}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jeffreys {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
