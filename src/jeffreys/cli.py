"""``jeffreys`` command line: one sub-command per pipeline stage.

Each sub-command lives in the module of its stage, as ``cli_<name>(argv) -> int`` (a hyphen
in the name as an underscore); the module is imported only when the command runs, so
``jeffreys --help`` stays fast and a stage can be replaced without touching the others.

A missing optional dependency (an extra: ``jeffreys[onnx]``, ``[synth]``, ``[plots]``,
``[tensorboard]``) is one line naming the ``pip install`` that fixes it (:mod:`jeffreys.extras`).

Exit statuses: 0 success (``verify``: same speaker), 1 ``verify``: different speakers,
2 an error (one line on stderr: ``jeffreys CMD: error: MESSAGE``), 3 ``verify``: no speech
in a file, 128 + n when stopped by signal n: 130 interrupted (SIGINT, Ctrl-C), 143
terminated (SIGTERM), 129 hung up (SIGHUP). A stop is one line on stderr too, and leaves
nothing half-written: the signal becomes an exception in the main thread, so temporary
outputs are removed as after any failure (:mod:`jeffreys.interrupts` has the rules).

Limits on what readers accept (:class:`jeffreys.audio.AudioLimits`, the model-size limit
of :mod:`jeffreys.models.bundle`, :data:`jeffreys.fileio.LIMITS`) are environment
variables, so that they reach every worker process and every command a command starts; the
options ``--max-audio-seconds``, ``--max-list-lines`` etc. (:data:`LIMIT_OPTIONS`, one for
each limit), given before the command name, set them for that command.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings

from . import __version__, interrupts
from .errors import JeffreysError, JeffreysWarning
from .fileio import LIMITS
from .interrupts import Interrupted, Terminated  # noqa: F401  (jeffreys.cli.Terminated: kept importable)

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
    lines += ["", "limits of the readers (before COMMAND; each sets its environment variable for the command):"]
    flags = {opt: f"{opt} {meta}" for opt, (_, meta, _) in LIMIT_OPTIONS.items()}
    w = max(map(len, flags.values()))
    lines += [f"  {flags[opt]:<{w}}  {help_} ({env})" for opt, (env, _, help_) in LIMIT_OPTIONS.items()]
    lines += ["", "Run `jeffreys COMMAND --help` for the options of a command."]
    return "\n".join(lines)


# option -> (environment variable, metavar, help); read by jeffreys.audio.AudioLimits,
# jeffreys.models.bundle.max_model_bytes and jeffreys.fileio.limit, in this process and in
# every process it starts. Every limit of a reader has its option here.
LIMIT_OPTIONS: dict[str, tuple[str, str, str]] = {
    "--max-audio-seconds": ("JEFFREYS_MAX_AUDIO_SECONDS", "S", "audio decoded per file or segment (default 7200)"),
    "--min-audio-rate": ("JEFFREYS_MIN_AUDIO_RATE", "HZ", "lowest sample rate read (default 1000)"),
    "--max-audio-rate": ("JEFFREYS_MAX_AUDIO_RATE", "HZ", "highest sample rate read (default 384000)"),
    "--max-audio-channels": ("JEFFREYS_MAX_AUDIO_CHANNELS", "N", "channels of an audio file (default 64)"),
    "--max-model-bytes": ("JEFFREYS_MAX_MODEL_BYTES", "BYTES", "a model file and what its config builds (default 4G)"),
    **{opt: (env, meta, f"{help_} (default {LIMITS[env]})") for opt, env, meta, help_ in (
        ("--max-list-bytes", "JEFFREYS_MAX_LIST_BYTES", "BYTES", "a list or config file"),
        ("--max-list-lines", "JEFFREYS_MAX_LIST_LINES", "N", "lines of a list or config file"),
        ("--max-line-bytes", "JEFFREYS_MAX_LINE_BYTES", "BYTES", "one line of a list or config file"),
        ("--max-config-nodes", "JEFFREYS_MAX_CONFIG_NODES", "N", "nodes of a YAML config, aliases expanded"),
        ("--max-embedding-bytes", "JEFFREYS_MAX_EMBEDDING_BYTES", "BYTES", "an embedding ark or .npy, or what an scp reads"),
    )},
}


def _limit_options(argv: list[str]) -> list[str]:
    """Take the limit options from the front of ``argv`` into the environment; the rest.
    The values are checked where they are read (an error names the variable)."""
    while argv and argv[0].split("=", 1)[0] in LIMIT_OPTIONS:
        opt, eq, value = argv[0].partition("=")
        if not eq:
            if len(argv) < 2:
                raise JeffreysError(f"{opt} needs a value")
            value, argv = argv[1], argv[1:]
        os.environ[LIMIT_OPTIONS[opt][0]] = value
        argv = argv[1:]
    return argv


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


def _say(text: str) -> None:
    """``text`` and its newline on stderr in one write: print() writes them apart on a
    non-terminal stderr, and the lines of processes sharing it (torchrun ranks, pool
    workers) then run into each other."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = _limit_options(argv)
    except JeffreysError as e:
        _say(f"jeffreys: error: {e}")
        return 2
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"jeffreys {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        _say(f"jeffreys: error: unknown command {name!r}\n\n{_usage()}")
        return 2

    def one_line_warning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, JeffreysWarning):
            _say(f"jeffreys {name}: warning: {message}")
        else:
            shown(message, category, filename, lineno, file, line)

    shown, warnings.showwarning = warnings.showwarning, one_line_warning
    try:
        # SIGINT, SIGTERM, SIGHUP: an exception in this thread; the first one decides the
        # status, whatever error it surfaces as (a worker killed by the same signal, ...)
        with interrupts.handling():
            try:
                module = importlib.import_module(COMMANDS[name][0])
                status = int(getattr(module, f"cli_{name.replace('-', '_')}")(rest) or 0)
            except BaseException:
                signum = interrupts.received()
                if signum is None:
                    raise
                return _stopped(name, signum)
            signum = interrupts.received()  # a stop that something caught: still a stop
            return status if signum is None else _stopped(name, signum)
    except JeffreysError as e:
        _say(f"jeffreys {name}: error: {_one_line(e)}")
        return 2
    except ImportError as e:  # an optional dependency missing where no MissingExtra was raised: one line
        from .extras import EXTRA_OF, missing_message

        top = (e.name or "").split(".")[0]
        if top not in EXTRA_OF:
            raise
        _say(f"jeffreys {name}: error: {missing_message(top, f'jeffreys {name}')}")
        return 2
    except OSError as e:  # the environment (permissions, a full disk) rather than a bug: one line
        where = f"{e.filename}: " if e.filename else ""
        _say(f"jeffreys {name}: error: {where}{e.strerror or e}")
        return 2
    except KeyboardInterrupt:  # outside the main thread: Python's own Ctrl-C
        return _stopped(name, Interrupted.signum)
    except Terminated as e:
        return _stopped(name, e.signum)
    finally:
        warnings.showwarning = shown


def _stopped(name: str, signum: int) -> int:
    """The one line of a command stopped by signal ``signum``; its status, 128 + n."""
    try:
        _say(f"jeffreys {name}: {interrupts.describe(signum)}")
    except (OSError, ValueError):  # no terminal any more (SIGHUP): the status says it
        pass
    return 128 + int(signum)


if __name__ == "__main__":
    sys.exit(main())
