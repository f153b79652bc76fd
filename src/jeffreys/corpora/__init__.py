"""Corpus preparers: ``jeffreys prepare NAME [SRC] DST``.

Each preparer is a module of this package exposing

* a plain function ``prepare_NAME(src, dst, *, ...) -> Path`` that does the work (importable
  from here: ``from jeffreys.corpora import prepare_voxceleb1``), prints what it found and
  raises :class:`jeffreys.errors.InputError` on a bad source;
* ``add_arguments(parser)`` (or ``add_arguments_for(name, parser)``): its options (``src``/``dst``
  positionals included);
* ``run(args) -> int``: a thin wrapper mapping the options onto the function;
* a module docstring whose first paragraph is the one-line summary and whose second
  describes the source layout it expects (shown by ``jeffreys prepare --help``).

Progress goes to stderr (:mod:`jeffreys.corpora._progress`): at once on a terminal, after
half a second elsewhere; ``--quiet`` (every preparer has it), or ``with jeffreys.corpora.quiet():``
around the functions, turns it off.

Preparers write through :class:`jeffreys.data.datadir.atomic_dir`, so a failed run never
leaves a half-written destination.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module; the order is the one shown by --help.
PREPARERS: dict[str, str] = {
    "synth": "jeffreys.corpora.synth",
    "voxceleb1": "jeffreys.corpora.voxceleb",
    "voxceleb2": "jeffreys.corpora.voxceleb",
    "sitw": "jeffreys.corpora.sitw",
    "sdsv": "jeffreys.corpora.sdsv",
    "dipco": "jeffreys.corpora.dipco",
    "tedx": "jeffreys.corpora.tedx",
    "debvoices": "jeffreys.corpora.debvoices",
    "mbrola": "jeffreys.corpora.mbrola",
    "musan": "jeffreys.corpora.musan",
    "rirs": "jeffreys.corpora.rirs",
    "convert": "jeffreys.corpora.convert",
    "folder": "jeffreys.corpora.folder",
    "combine": "jeffreys.corpora.combine",
}


# prepare_NAME -> module, resolved on first use so that importing the package stays cheap.
FUNCTIONS: dict[str, str] = {
    "prepare_voxceleb1": "jeffreys.corpora.voxceleb",
    "prepare_voxceleb2": "jeffreys.corpora.voxceleb",
    "prepare_sitw": "jeffreys.corpora.sitw",
    "prepare_sdsv": "jeffreys.corpora.sdsv",
    "prepare_dipco": "jeffreys.corpora.dipco",
    "prepare_tedx": "jeffreys.corpora.tedx",
    "prepare_musan": "jeffreys.corpora.musan",
    "prepare_rirs": "jeffreys.corpora.rirs",
    "convert_datadir": "jeffreys.corpora.convert",
    "prepare_folder": "jeffreys.corpora.folder",
    "prepare_debvoices": "jeffreys.corpora.debvoices",
    "combine_datadirs": "jeffreys.corpora.combine",
    "prepare_mbrola": "jeffreys.corpora.mbrola",
    "quiet": "jeffreys.corpora._progress",
}


def __getattr__(name: str):
    if name in FUNCTIONS:
        return getattr(importlib.import_module(FUNCTIONS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _doc_parts(module) -> tuple[str, str]:
    paras = [p.strip() for p in (module.__doc__ or "").split("\n\n") if p.strip()]
    summary = paras[0].splitlines()[0] if paras else ""
    layout = paras[1] if len(paras) > 1 else ""
    return summary, layout


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    # One named preparer imports only its own module (the others may pull in heavy
    # dependencies); `prepare --help` imports them all to list their layouts.
    names = [only] if only in PREPARERS else list(PREPARERS)
    modules = {name: importlib.import_module(PREPARERS[name]) for name in names}
    epilog = ["expected layouts:"]
    for name, mod in modules.items():
        _, layout = _doc_parts(mod)
        epilog.append(f"  {name}:\n" + "\n".join(f"    {line}" for line in layout.splitlines()))
    parser = argparse.ArgumentParser(
        prog="jeffreys prepare",
        description="Write a validated Kaldi-style data dir (and trial lists) from a corpus.",
        epilog="\n".join(epilog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="corpus", metavar="NAME", required=True)
    for name, mod in modules.items():
        summary, layout = _doc_parts(mod)
        p = sub.add_parser(
            name,
            help=summary,
            description=f"{summary}\n\nexpected layout:\n{layout}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if hasattr(mod, "add_arguments_for"):
            mod.add_arguments_for(name, p)
        else:
            mod.add_arguments(p)
        try:
            p.add_argument("--quiet", action="store_true", help="no progress on stderr (the summary is still printed)")
        except argparse.ArgumentError:  # a plug-in's own --quiet
            pass
        p.set_defaults(_module=mod)
    return parser


def cli_prepare(argv: list[str]) -> int:
    from ._progress import reporting

    only = argv[0] if argv and argv[0] in PREPARERS else None
    args = _parser(only).parse_args(argv)
    enabled = not getattr(args, "quiet", False)
    if getattr(args._module, "PROGRESS_ON_TERMINAL_ONLY", False):
        enabled = enabled and sys.stderr.isatty()
    with reporting(args.corpus, enabled=enabled):
        return int(args._module.run(args) or 0)
