"""SdSV Challenge 2021 task 2 (text-independent, DeepMine): enrolment models and trials.

SRC/docs/model_enrollment.txt (`model-id enroll-file-id1 ...` header, then `MODEL ENR1 [ENR2 ...]`),
SRC/docs/trials.txt (`model-id evaluation-file-id` header, then `MODEL EVL`; a third column
`target|nontarget` (or tgt/imp, 1/0) when keyed), SRC/wav/enrollment/ENR.wav, SRC/wav/evaluation/EVL.wav;
--key FILE gives the labels when trials.txt has none: the organisers' positional key (one `1|0` per line of
trials.txt, as ref/keys.txt is read by the challenge's scorer) or `MODEL EVL LABEL` lines.
DST is one data dir (enrolment + evaluation utterances, ids = file ids) with `models`
(`MODEL UTT1 UTT2 ...`: the scorer averages the enrolment embeddings of a model) and `trials`
(`MODEL EVL target|nontarget`, published order); without labels `trial_pairs` (`MODEL EVL`).

Relied on: the challenge's evaluation plan and its released docs/ files as read by public
recipes (one header line; a model has one or more enrolment files; trials name model and
evaluation file; hyperion's egs/sdsv20 make-data script reads them the same way). The
organisers' key gives one label a line, in the order of ``trials.txt`` (its header not
counted), so its length must match. Enrolment utterances get their model as speaker (an enrolment file shared by
several models is its own speaker); evaluation utterances are their own speaker. A model with
an absent enrolment file is refused, or dropped with --drop-missing together with its trials.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ._common import MAX_LISTED, DirSpec, add_io_arguments, call_with_args, durations, map_trials, preparer, read_rows, require, scan_tree, stem, write_dirs

_LABELS = {"target": True, "nontarget": False, "tgt": True, "imp": False, "1": True, "0": False}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_io_arguments(parser)
    parser.add_argument("--key", type=Path, default=None, help="labels when docs/trials.txt has none: one 1|0 per trial line (the organisers' keys.txt) or `MODEL EVL LABEL` lines")


def _label(path: Path, n: int, value: str) -> bool:
    if value not in _LABELS:
        raise InputError(f"{path}:{n}: label must be target/nontarget (tgt/imp, 1/0), got {value!r}")
    return _LABELS[value]


def read_models(path: Path, enroll_wav: dict[str, str], drop_missing: bool) -> tuple[dict[str, list[str]], list[str]]:
    """model -> enrolment utterances; models with absent files are refused or dropped."""
    models: dict[str, list[str]] = {}
    line_of: dict[str, int] = {}
    missing: list[str] = []
    dropped: list[str] = []
    for n, parts in read_rows(path, 2, header="model-id"):
        model, files = parts[0], [Path(p).stem for p in parts[1:]]
        if model in models:
            raise InputError(f"{path}:{n}: model {model!r} listed twice (first on line {line_of[model]})")
        absent = [f for f in files if f not in enroll_wav]
        if absent:
            missing += [f"{path}:{n}: {f}" for f in absent]
            dropped.append(model)
            continue
        models[model], line_of[model] = files, n
    if missing and not drop_missing:
        more = f" (and {len(missing) - MAX_LISTED} more)" if len(missing) > MAX_LISTED else ""
        raise InputError(
            f"{len(missing)} enrolment file(s) absent from wav/enrollment: " + "; ".join(missing[:MAX_LISTED]) + more + " (pass --drop-missing to drop their models)"
        )
    return models, dropped


def read_key(key: Path, trials_path: Path, pairs: list[tuple[int, str, str]]) -> list[bool]:
    """Labels of ``pairs`` (in order) from a positional key (one label a line) or `MODEL EVL LABEL` lines."""
    rows = read_rows(require(key, "trial key", "sdsv"), 1, 3, header="model-id")
    width = len(rows[0][1])
    other = next(((n, p) for n, p in rows if len(p) != width or width == 2), None)
    if other:
        raise InputError(f"{key}:{other[0]}: expected one label (positional key) or `MODEL EVL LABEL` on every line, got {' '.join(other[1])!r}")
    if width == 1:
        if len(rows) == len(pairs) + 1 and rows[0][1][0] not in _LABELS:
            rows = rows[1:]  # a header line
        if len(rows) != len(pairs):
            raise InputError(f"{key}: {len(rows)} labels for the {len(pairs)} trials of {trials_path} (a positional key has one label per trial, in order)")
        return [_label(key, n, p[0]) for n, p in rows]
    labels = {(p[0], Path(p[1]).stem): _label(key, n, p[2]) for n, p in rows}
    missing = next(((n, m, t) for n, m, t in pairs if (m, t) not in labels), None)
    if missing:
        raise InputError(f"{trials_path}:{missing[0]}: trial {missing[1]} {missing[2]} has no label in {key}")
    return [labels[(m, t)] for _, m, t in pairs]


def read_trial_rows(path: Path, key: Path | None) -> tuple[list[tuple[int, str, str, bool]], list[tuple[int, str, str]]]:
    """Labelled rows (line, model, test, label) when labels are known, else unlabelled pairs."""
    rows = read_rows(path, 2, 3, header="model-id")
    pairs = [(n, p[0], Path(p[1]).stem) for n, p in rows]
    if key is not None:
        return [(n, m, t, y) for (n, m, t), y in zip(pairs, read_key(key, path, pairs))], pairs
    if all(len(p) == 3 for _, p in rows):
        return [(n, p[0], Path(p[1]).stem, _label(path, n, p[2])) for n, p in rows], pairs
    if any(len(p) == 3 for _, p in rows):
        n = next(n for n, p in rows if len(p) == 2)
        raise InputError(f"{path}:{n}: some trials have a label and this one has none")
    return [], pairs


@preparer("sdsv")
def prepare_sdsv(
    src: str | Path,
    dst: str | Path,
    *,
    key: str | Path | None = None,
    drop_missing: bool = False,
    measure_durations: bool = True,
    jobs: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the SdSV task 2 data dir at ``dst`` (``trials``, or ``trial_pairs`` without a key); print what was found."""
    enroll_path = require(src / "docs/model_enrollment.txt", "model enrolment list", "sdsv")
    trials_path = require(src / "docs/trials.txt", "trial list", "sdsv")
    enroll_wav = {stem(f.rel[-1], ".wav"): f.path for f in scan_tree(src / "wav/enrollment", ".wav", "sdsv", "enrolment audio")}
    test_wav = {stem(f.rel[-1], ".wav"): f.path for f in scan_tree(src / "wav/evaluation", ".wav", "sdsv", "evaluation audio")}
    clash = sorted(set(enroll_wav) & set(test_wav))
    if clash:
        raise InputError(f"{src / 'wav'}: file id {clash[0]!r} is both in enrollment/ and evaluation/")
    models, dropped = read_models(enroll_path, enroll_wav, drop_missing)
    labelled, pairs = read_trial_rows(trials_path, Path(key) if key is not None else None)

    def model(m: str) -> str | None:
        return m if m in models else None

    def test(t: str) -> str | None:
        return t if t in test_wav else None

    unknown = next(((n, m) for n, m, _ in pairs if m not in models and m not in dropped), None)
    if unknown:
        raise InputError(f"{trials_path}:{unknown[0]}: model {unknown[1]!r} is not in {enroll_path}")
    wav = {**enroll_wav, **test_wav}
    owners: dict[str, list[str]] = {}
    for m, utts in models.items():
        for u in utts:
            owners.setdefault(u, []).append(m)
    utt2spk = {u: owners[u][0] if len(owners.get(u, ())) == 1 else u for u in wav}
    spec = DirSpec(wav, utt2spk, durations(wav, not measure_durations, jobs))
    spec.extra["models"] = [f"{m} {' '.join(us)}" for m, us in sorted(models.items())]
    if dropped:
        spec.notes.append(f"{len(dropped)} model(s) dropped for absent enrolment files")
    if labelled:
        spec.trials.append(map_trials("trials", trials_path, labelled, model, test, drop_missing))
    else:
        # no key: keep the pairing (scores can be computed), labels come later
        kept = map_trials("trial_pairs", trials_path, [(n, m, t, False) for n, m, t in pairs], model, test, drop_missing)
        spec.extra["trial_pairs"] = [f"{m} {t}" for m, t, _ in kept.rows]
        spec.notes.append(f"trial_pairs: {len(kept.rows)} unlabelled trials (no key: pass --key for `trials`)" + (f"; {kept.dropped} dropped (absent audio)" if kept.dropped else ""))
    write_dirs("sdsv", dst, {"": spec}, overwrite)
    return dst


def run(args) -> int:
    return call_with_args(prepare_sdsv, args)
