"""``jeffreys`` command line: one sub-command per pipeline stage.

Each sub-command lives in the module of its stage, as ``cli_<name>(argv) -> int`` (a hyphen
in the name as an underscore); the module is imported only when the command runs, so
``jeffreys --help`` stays fast and a stage can be replaced without touching the others.

A missing optional dependency (an extra: ``jeffreys[onnx]``, ``[synth]``, ``[plots]``,
``[tensorboard]``) is one line naming the ``pip install`` that fixes it (:mod:`jeffreys.extras`).

Exit statuses: 0 success (``verify``: same speaker), 1 ``verify``: different speakers,
2 an error (one line on stderr: ``jeffreys CMD: error: MESSAGE``), 3 ``verify``: no speech
in a file, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). SIGTERM is turned into an
exception in this process, so temporary outputs are removed as after any failure.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import warnings

from . import __version__
from .errors import JeffreysError, JeffreysWarning

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
    "compare-runs": ("jeffreys.experiment.compare", "check two runs' results.json against each other, within their intervals"),
    "calibrate": ("jeffreys.calibrate", "fit calibration + threshold on your labelled speakers, with intervals"),
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


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``with`` blocks clean up (a BaseException:
    ``except Exception`` does not swallow it)."""


def _terminate_handler(pid: int):
    def handler(signum, frame):
        if os.getpid() != pid:  # a forked worker inherited the handler: die as by default
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated()

    return handler


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
    def one_line_warning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, JeffreysWarning):
            print(f"jeffreys {name}: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    shown, warnings.showwarning = warnings.showwarning, one_line_warning
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate_handler(os.getpid()))
    try:
        return int(getattr(module, f"cli_{name.replace('-', '_')}")(rest) or 0)
    except JeffreysError as e:
        print(f"jeffreys {name}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except ImportError as e:  # an optional dependency missing where no MissingExtra was raised: one line
        from .extras import EXTRA_OF, missing_message

        top = (e.name or "").split(".")[0]
        if top not in EXTRA_OF:
            raise
        print(f"jeffreys {name}: error: {missing_message(top, f'jeffreys {name}')}", file=sys.stderr)
        return 2
    except OSError as e:  # the environment (permissions, a full disk) rather than a bug: one line
        where = f"{e.filename}: " if e.filename else ""
        print(f"jeffreys {name}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jeffreys {name}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"jeffreys {name}: terminated", file=sys.stderr)
        return 143
    finally:
        warnings.showwarning = shown
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
