"""Combine data dirs into one, every utterance of each source (Kaldi's utils/combine_data.sh).

SRC... are data dirs (wav.scp, utt2spk, ...; as `jeffreys prepare` writes them), not corpora.
DST: one data dir; wav.scp paths made absolute (a relative path means the current directory's,
as in Kaldi); segments kept; utt2dur, spk2gender and utt2lang when every source has them;
trial lists left out (DST is for training). DST/info.json lists each source's corpus and kind
of speech, which a model trained on DST keeps in its meta. Refused: an utterance id in two
sources, a speaker id in two sources (unless --allow-shared-speakers), a recording id naming
two files, wav.scp command pipelines.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..data.datadir import COMBINED, DataDir, describe, read_datadir
from ..data.tables import read_table
from ..errors import InputError, excerpt, one_line, shown
from ._common import DirSpec, write_dirs
from ._progress import current, reported

CARRIED = ("spk2gender", "utt2lang")  # kept when every source has them: (key, value) lines


def _read_source(src: Path) -> DataDir:
    """A source data dir, its wav.scp entries absolute."""
    if not src.is_dir():
        raise InputError(f"{shown(src)}: not found (a source data dir)" if not src.exists() else f"{shown(src)}: not a directory")
    if not (src / "wav.scp").is_file():
        # e.g. a `prepare debvoices` output, whose data dirs are DST/train and DST/eval
        subs = sorted(p.name for p in src.iterdir() if (p / "wav.scp").is_file())
        hint = f" (data dirs inside it: {', '.join(shown(s) for s in subs)})" if subs else ""
        raise InputError(f"{shown(src)}: not a data dir: no wav.scp{hint}")
    # Audio checked here, so that an absent file is named with the source's wav.scp line
    # (write_dirs checks DST again, in its temporary dir); pipelines are read so that they are
    # refused in words that fit this command.
    data = read_datadir(src, check_files=True, allow_pipes=True)
    cwd = os.getcwd()
    for key, value in data.wav.items():
        if value.endswith("|"):
            raise InputError(f"{shown(src / 'wav.scp')}: {excerpt(key)} is a command pipeline ('... |'); combine carries "
                             "audio paths, not commands (`jeffreys prepare convert --allow-pipes` it first)")  # fmt: skip
        # joined, not normalised: `a/../b` keeps the kernel's meaning when `a` is a link
        data.wav[key] = value if os.path.isabs(value) else os.path.join(cwd, value)
    return data


def _refuse_overwriting_a_source(dst: Path, sources: list[Path], datas: list[DataDir]) -> None:
    """--overwrite removes the old DST: refused when a source, or audio it names, lies there.
    Paths are compared as written and with DST's links resolved (not every audio path's:
    that would cost a look-up per file)."""
    roots = {os.path.abspath(dst), os.path.realpath(dst)}

    def inside(p: str) -> bool:
        return any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots)

    for src, data in zip(sources, datas):
        if inside(os.path.abspath(src)) or inside(os.path.realpath(src)):
            raise InputError(f"{shown(src)}: a source inside DST {shown(dst)}, which --overwrite would remove")
        for key, value in data.wav.items():
            if inside(value):
                raise InputError(f"{shown(src)}: audio of {excerpt(key)} lies inside DST {shown(dst)}, which --overwrite would remove")


def _carried(name: str, sources: list[Path], datas: list[DataDir], notes: list[str]) -> list[str] | None:
    """The lines of ``name`` (speaker or utterance -> value) over every source, or None with a
    note when a source has none. A shared speaker must have one value."""
    missing = [s for s in sources if not (s / name).is_file()]
    if missing:
        if len(missing) < len(sources):
            notes.append(f"{name} not written: {shown(missing[0])} has none")
        return None
    out: dict[str, str] = {}
    for src, data in zip(sources, datas):
        ids = data.spk2utt if name == "spk2gender" else data.utt2spk
        for n, (key, value) in read_table(src / name):
            if key not in ids:  # a stale line of the source: not carried, as Kaldi's fix_data_dir drops it
                continue
            if out.setdefault(key, value) != value:
                raise InputError(f"{shown(src / name)}:{n}: {excerpt(key)} is {excerpt(value)} here and {excerpt(out[key])} in an earlier source")
    return [f"{k} {out[k]}" for k in sorted(out)]


def _parts(datas: list[DataDir]) -> list[dict]:
    """info.json's record of each source (a combined source gives its own parts)."""
    parts = []
    for data in datas:
        d = describe(data)
        if d["corpus"] == COMBINED and "parts" in d:
            parts += d["parts"]
            continue
        part = {"data": d["data"], "corpus": d["corpus"], "kind": d.get("kind"), "speakers": d["speakers"], "utterances": d["utterances"]}
        if data.utt2dur is not None:
            part["hours"] = round(sum(data.utt2dur.values()) / 3600, 3)
        parts.append(part)
    return parts


def _merge(sources: list[Path], datas: list[DataDir], allow_shared_speakers: bool):
    """(wav, utt2spk, segments or None) of DST: every id once, from the source holding it."""
    with_segments = any(d.segments is not None for d in datas)
    wav: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    segments: dict[str, tuple[str, float, float]] = {}
    where_utt: dict[str, int] = {}  # id -> index of the first source holding it
    where_spk: dict[str, int] = {}
    where_rec: dict[str, int] = {}
    for i, (src, data) in enumerate(zip(sources, datas)):
        for spk in data.spk2utt:
            if where_spk.setdefault(spk, i) != i and not allow_shared_speakers:
                raise InputError(f"speaker id {excerpt(spk)} is in {shown(sources[where_spk[spk]])} and in {shown(src)}: two corpora's speakers "
                                 "would become one (rename one side's, or pass --allow-shared-speakers when they are the same people)")  # fmt: skip
        for utt, spk in data.utt2spk.items():
            if where_utt.setdefault(utt, i) != i:
                raise InputError(f"utterance id {excerpt(utt)} is in {shown(sources[where_utt[utt]])} and in {shown(src)} "
                                 "(ids must be unique in DST: prefix one source's ids)")  # fmt: skip
            utt2spk[utt] = spk
        if not with_segments:
            wav.update(data.wav)  # keyed by utterance: unique, as checked above
            continue
        # a source without segments gets one per file, 0 to the end (-1): the loader reads
        # the same samples either way
        segs = data.segments if data.segments is not None else {u: (u, 0.0, -1.0) for u in data.utt2spk}
        segments.update(segs)
        for rec in {r for r, _, _ in segs.values()}:
            path = data.wav[rec]
            if where_rec.setdefault(rec, i) != i and wav[rec] != path:  # the same file twice is one recording
                raise InputError(f"recording id {excerpt(rec)} names {shown(wav[rec])} in {shown(sources[where_rec[rec]])} "
                                 f"and {shown(path)} in {shown(src)}")  # fmt: skip
            wav[rec] = path
    return wav, utt2spk, segments if with_segments else None


def _first_line(dst, sources) -> str:
    return f"{' + '.join(shown(s) for s in sources)} -> {shown(dst)}"


@reported("combine", _first_line)
def combine_datadirs(dst: str | Path, sources: list[str | Path], *, allow_shared_speakers: bool = False,
                     overwrite: bool = False) -> DirSpec:  # fmt: skip
    """Write DST with every utterance of ``sources`` (see the module docstring); returns what was written."""
    dst, sources = Path(dst), [Path(s).absolute() for s in sources]
    if not sources:
        raise InputError("combine: no source data dir given")
    seen: dict[str, Path] = {}
    for s in sources:
        if seen.setdefault(os.path.realpath(s), s) is not s:
            raise InputError(f"{shown(s)}: given twice as a source")
    datas = []
    for s in current().each(sources, "reading the sources", unit="data dir", check_every=1):
        datas.append(_read_source(s))
    if overwrite and dst.exists():
        _refuse_overwriting_a_source(dst, sources, datas)
    wav, utt2spk, segments = _merge(sources, datas, allow_shared_speakers)
    notes: list[str] = []
    if all(d.utt2dur is not None for d in datas):
        utt2dur = {u: t for d in datas for u, t in d.utt2dur.items()}
    else:
        utt2dur = None
        notes.append(f"utt2dur not written: {shown(next(s for s, d in zip(sources, datas) if d.utt2dur is None))} has none")
    spec = DirSpec(wav, utt2spk, utt2dur, segments=segments, notes=notes)
    for name in CARRIED:
        lines = _carried(name, sources, datas, notes)
        if lines is not None:
            spec.extra[name] = lines
    if any(p.name.startswith("trials") for s in sources for p in s.iterdir()):
        notes.append("the sources' trial lists not carried (DST is for training)")
    parts = _parts(datas)
    for p in parts:
        notes.append(f"{p['utterances']} utterances of {p['speakers']} speakers from {shown(p['data'])} "
                     f"(corpus {one_line(p['corpus'] or 'not named')}, speech {p['kind'] or 'of unknown kind'})")  # fmt: skip
    write_dirs("combine", dst, {"": spec}, overwrite, info={"corpus": COMBINED, "parts": parts})
    return spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dst", type=Path, help="the combined data dir (built in a temporary dir, then renamed)")
    parser.add_argument("src", type=Path, nargs="+", help="the data dirs to combine")
    parser.add_argument("--allow-shared-speakers", action="store_true",
                        help="let a speaker id be in two sources (the same person in both; else refused)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DST")


def run(args) -> int:
    combine_datadirs(args.dst, args.src, allow_shared_speakers=args.allow_shared_speakers, overwrite=args.overwrite)
    return 0
