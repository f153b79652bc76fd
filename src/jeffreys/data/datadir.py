"""Kaldi-style data directories.

A data dir holds ``wav.scp`` (``utt path``), ``utt2spk`` (``utt spk``), ``spk2utt``
(``spk utt1 utt2 ...``) and optionally ``segments`` (``utt recording start end``, seconds;
``wav.scp`` is then keyed by recording), ``utt2dur`` (``utt seconds``) and ``trials``.
Validation follows Kaldi's ``utils/validate_data_dir.sh``: sorted unique ids, every
utterance has a speaker, spk2utt is the inverse of utt2spk, files exist. Every error names
the file and line.

A ``wav.scp`` line is read by Kaldi's rule (:mod:`jeffreys.data.tables`): the first run of
white space separates the utterance (or recording) id from the rxfilename, and everything
after it is the path, inner white space included (``u1 /data/my  file.wav`` names
``/data/my  file.wav``); white space at the end of the line is dropped. With
``check_files`` each path must lead to a regular file (:func:`jeffreys.fileio.input_file`:
not a directory, FIFO, device or kernel pseudo-file); the error names the path as read.

``wav.scp`` entries ending in ``|`` are shell pipelines in Kaldi. They are data, not
commands: reading them is refused unless the caller opts in with ``allow_pipes=True``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, excerpt, shown
from ..fileio import atomic_dir, atomic_write, input_file, read_text
from .tables import read_scp, read_table

# A data dir's wav.scp pipes run only on request; how to ask depends on the caller.
PIPES_OPT_IN = "opt in with --allow-pipes (in a training config: data.allow_pipes: true; in Python: allow_pipes=True)"


@dataclass
class DataDir:
    """An in-memory data dir. ``wav`` is keyed by recording when ``segments`` is set.

    ``allow_pipes`` records the reader's opt-in, so that loaders
    (:func:`jeffreys.audio.load_utterance`) run ``cmd |`` entries only when it was given.
    """

    path: Path
    wav: dict[str, str]
    utt2spk: dict[str, str]
    segments: dict[str, tuple[str, float, float]] | None = None
    utt2dur: dict[str, float] | None = None
    spk2utt: dict[str, list[str]] = field(default_factory=dict)
    allow_pipes: bool = False

    def __post_init__(self) -> None:
        if not self.spk2utt:
            self.spk2utt = spk2utt_of(self.utt2spk)
        elif any(a > b for a, b in zip(self.spk2utt, list(self.spk2utt)[1:])):
            self.spk2utt = dict(sorted(self.spk2utt.items()))  # sorted once, not at every use

    @property
    def utts(self) -> list[str]:
        return sorted(self.utt2spk)

    @property
    def speakers(self) -> list[str]:
        """Sorted speaker ids (spk2utt is kept in sorted order)."""
        return list(self.spk2utt)

    def subset(self, speakers) -> DataDir:
        """The utterances of ``speakers`` only (same path, same files)."""
        keep = set(speakers)
        utt2spk = {u: s for u, s in self.utt2spk.items() if s in keep}
        segments = {u: self.segments[u] for u in utt2spk} if self.segments is not None else None
        wav = {r: self.wav[r] for r in {v[0] for v in segments.values()}} if segments is not None else {u: self.wav[u] for u in utt2spk}
        utt2dur = {u: self.utt2dur[u] for u in utt2spk} if self.utt2dur else None
        return DataDir(self.path, wav, utt2spk, segments, utt2dur, allow_pipes=self.allow_pipes)

    def source(self, utt: str) -> tuple[str, float, float | None]:
        """(wav.scp entry, start seconds, end seconds or None) of an utterance.

        A segment end of -1 (Kaldi: "to the end of the recording") is given as None.
        """
        if self.segments is not None:
            rec, start, end = self.segments[utt]
            return self.wav[rec], start, (None if end < 0 else end)
        return self.wav[utt], 0.0, None


# What a corpus's speech is, by the corpus an info.json names (its own "kind" field wins):
# a model's meta says what it heard, and the API warns when that was not what it will hear.
KINDS = ("synthetic", "diphone", "recorded")
CORPUS_KINDS = {"jeffreys synth": "synthetic", "mbrola": "diphone"}  # any other named corpus: recorded
COMBINED = "combined"  # the corpus of `jeffreys prepare combine`: its info.json lists the parts


def corpus_kind(info: Mapping) -> str | None:
    """The kind of speech of a corpus described by an info.json (see :data:`KINDS`)."""
    kind = info.get("kind")
    if kind in KINDS:
        return kind
    corpus = info.get("corpus")
    return CORPUS_KINDS.get(corpus, "recorded") if isinstance(corpus, str) and corpus != COMBINED else None


def _corpus_info(path: Path) -> dict | None:
    """The info.json beside or above a data dir that names a corpus, or None."""
    import json

    for info in (path / "info.json", path.parent / "info.json"):
        try:
            record = json.loads(read_text(info, "corpus info")[1]) if info.exists() else None
        except (ValueError, OSError):  # InputError is a ValueError: an unreadable info.json says nothing
            continue
        if isinstance(record, dict) and isinstance(record.get("corpus"), str):
            return record
    return None


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def part_record(record: Mapping) -> dict | None:
    """A part of a combined dir as its info.json keeps it (corpus, kind, speakers, utterances,
    hours when known), or None when it is not one: a file read from disk is checked."""
    speakers, utterances = _count(record.get("speakers")), _count(record.get("utterances"))
    corpus, kind, hours = record.get("corpus"), record.get("kind"), record.get("hours")
    if speakers is None or utterances is None or not (corpus is None or isinstance(corpus, str)) or not (kind is None or kind in KINDS):
        return None
    data = record.get("data")
    out = {"data": data if isinstance(data, str) else None, "corpus": corpus, "kind": kind, "speakers": speakers, "utterances": utterances}
    if isinstance(hours, (int, float)) and not isinstance(hours, bool) and math.isfinite(hours) and hours >= 0:
        out["hours"] = float(hours)
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def heard(parts: Iterable[Mapping]) -> str:
    """What a model trained on ``parts`` heard, in words, e.g. "4000 synthetic utterances of
    200 voices (jeffreys synth); 551 recorded utterances of 7 speakers (debvoices)"."""
    out = []
    for p in parts:
        u, s, kind = p["utterances"], p["speakers"], p.get("kind")
        what = (f"{_plural(u, 'synthetic utterance')} of {_plural(s, 'voice')}" if kind == "synthetic"
                else f"{_plural(u, 'diphone utterance')} of {_plural(s, 'recorded voice')}" if kind == "diphone"
                else f"{_plural(u, 'recorded utterance')} of {_plural(s, 'speaker')}" if kind == "recorded"
                else f"{_plural(u, 'utterance')} of {_plural(s, 'speaker')} of unknown kind")  # fmt: skip
        out.append(f"{what} ({p.get('corpus') or p.get('data')})")
    return "; ".join(out)


def describe(data: DataDir) -> dict:
    """What a model trained on ``data`` was trained on, for its bundle's meta: the data dir,
    its speakers and utterances, and the corpus named by an ``info.json`` beside or above it
    (the preparers of synth, debvoices and combine write one), with its ``kind`` of speech
    (:func:`corpus_kind`), ``hours`` when utt2dur gives them and ``heard`` (:func:`heard`).
    A combined dir gives its ``parts`` (one record per source) too; ``synthetic`` is true when
    all the speech is the embedded corpus's. Without an info.json nothing more is said: the
    record is the one of older versions (corpus None, not synthetic)."""
    out = {"data": str(data.path), "speakers": len(data.speakers), "utterances": len(data.utt2spk),
           "corpus": None, "synthetic": False}
    info = _corpus_info(Path(data.path))
    if info is None:
        return out
    if data.utt2dur is not None:
        out["hours"] = round(sum(data.utt2dur.values()) / 3600, 3)
    if info["corpus"] == COMBINED:
        raw = info.get("parts")
        parts = [part_record(p) if isinstance(p, dict) else None for p in raw] if isinstance(raw, list) else [None]
        if not parts or None in parts:  # parts that cannot be read: a combined dir of unknown speech
            return {**out, "corpus": COMBINED, "kind": None}
        kinds = {p["kind"] for p in parts}
        kind = kinds.pop() if len(kinds) == 1 else "mixed"
        return {**out, "corpus": COMBINED, "kind": kind, "synthetic": kind == "synthetic", "parts": parts, "heard": heard(parts)}
    kind = corpus_kind(info)
    out.update(corpus=info["corpus"], kind=kind, synthetic=kind == "synthetic")
    out["heard"] = heard([out])
    return out


def spk2utt_of(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return dict(sorted(out.items()))


def _keyed(path: Path, rows: list[tuple[int, list[str]]], what: str = "id") -> dict[str, tuple[int, list[str]]]:
    """Rows keyed by their first field; duplicate or unsorted keys (Kaldi needs C order) are errors."""
    out: dict[str, tuple[int, list[str]]] = {}
    prev = None
    for n, parts in rows:
        key = parts[0]
        if key in out:
            raise InputError(f"{shown(path)}:{n}: duplicate {what} {excerpt(key)} (first on line {out[key][0]})")
        # Python compares str by code point, which is the byte order of UTF-8 (LC_ALL=C).
        if prev is not None and key < prev:
            raise InputError(f"{shown(path)}:{n}: not sorted: {excerpt(key)} after {excerpt(prev)} (sort with `LC_ALL=C sort`)")
        prev = key
        out[key] = (n, parts[1:])
    if not out:
        raise InputError(f"{shown(path)}: empty")
    return out


def _check_audio(scp: Path, n: int, key: str, value: str) -> None:
    """The audio path of ``key`` (line ``n`` of ``scp``) leads to a regular file."""
    try:
        input_file(value, "audio")
    except InputError as e:
        if not os.path.exists(value):
            raise InputError(f"{shown(scp)}:{n}: audio file of {excerpt(key)} not found: {shown(value)}") from None
        raise InputError(f"{shown(scp)}:{n}: audio file of {excerpt(key)}: {e}") from None


def read_datadir(path: str | Path, *, check_files: bool = True, allow_pipes: bool = False) -> DataDir:
    """Read and validate a data dir. ``check_files``: every wav.scp path must exist.

    Checks, after Kaldi's ``utils/validate_data_dir.sh --no-feats --no-text``: each table is
    sorted (C order) with unique ids and the right number of fields; the utterances of
    ``utt2spk`` are exactly those of ``wav.scp`` (or of ``segments``, whose recordings must be
    exactly those of ``wav.scp``); ``spk2utt``, when present, is the inverse of ``utt2spk``
    (speakers sorted, each line's utterances sorted); ``utt2dur``, when present, has every
    utterance once with a positive duration; segment times are numbers with start < end
    (end -1: to the end). ``spk2utt`` may be missing (it is derived). Not enforced, because
    nothing here needs it: Kaldi's rule that speaker ids prefix utterance ids.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{shown(path)}: not a directory")
    scp = path / "wav.scp"
    wav_rows = {k: (n, v[0]) for k, (n, v) in _keyed(scp, [(n, [k, v]) for n, k, v in read_scp(scp)]).items()}
    for key, (n, value) in wav_rows.items():
        if value.endswith("|"):
            if not allow_pipes:
                raise InputError(
                    f"{shown(scp)}:{n}: {excerpt(key)} is a command pipeline ('... |'); refusing to run commands "
                    f"from a data file; {PIPES_OPT_IN}"
                )
        elif check_files:
            _check_audio(scp, n, key, value)

    u2s_path = path / "utt2spk"
    u2s_rows = _keyed(u2s_path, read_table(u2s_path), "utterance")
    utt2spk = {u: v[0] for u, (_, v) in u2s_rows.items()}

    segments = None
    seg_path = path / "segments"
    if seg_path.exists():
        segments = {}
        seg_rows = _keyed(seg_path, read_table(seg_path, 4, 4), "utterance")
        for utt, (n, (rec, start, end)) in seg_rows.items():
            if rec not in wav_rows:
                raise InputError(f"{shown(seg_path)}:{n}: recording {excerpt(rec)} of {excerpt(utt)} is not in wav.scp")
            try:
                t0, t1 = float(start), float(end)
            except ValueError:
                raise InputError(f"{shown(seg_path)}:{n}: start/end must be numbers: {excerpt(start)} {excerpt(end)}") from None
            if not (math.isfinite(t0) and math.isfinite(t1)):
                raise InputError(f"{shown(seg_path)}:{n}: segment times of {excerpt(utt)} must be finite numbers, got {start} {end}")
            if not (0 <= t0 < t1 or (t1 == -1 and t0 >= 0)):
                raise InputError(f"{shown(seg_path)}:{n}: bad segment times {start} {end} for {excerpt(utt)} (need 0 <= start < end)")
            segments[utt] = (rec, t0, t1)
        used = {rec for rec, _, _ in segments.values()}
        for rec, (n, _) in wav_rows.items():
            if rec not in used:
                raise InputError(f"{shown(scp)}:{n}: recording {excerpt(rec)} has no line in segments")
        utt_rows, where = {u: n for u, (n, _) in seg_rows.items()}, seg_path
    else:
        utt_rows, where = {u: n for u, (n, _) in wav_rows.items()}, scp
    for utt, (n, _) in u2s_rows.items():
        if utt not in utt_rows:
            raise InputError(f"{shown(u2s_path)}:{n}: utterance {excerpt(utt)} is not in {where.name}")
    for utt, n in utt_rows.items():
        if utt not in utt2spk:
            raise InputError(f"{shown(where)}:{n}: utterance {excerpt(utt)} has no speaker in utt2spk")

    expected = spk2utt_of(utt2spk)
    s2u_path = path / "spk2utt"
    if s2u_path.exists():
        s2u_rows = _keyed(s2u_path, read_table(s2u_path, 2, None), "speaker")
        for spk, (n, utts) in s2u_rows.items():
            if spk not in expected:
                raise InputError(f"{shown(s2u_path)}:{n}: speaker {excerpt(spk)} is not in utt2spk")
            if utts != expected[spk]:
                extra = sorted(set(utts) - set(expected[spk]))
                lost = sorted(set(expected[spk]) - set(utts))
                why = (
                    f"utterance {excerpt(extra[0])} is not this speaker's in utt2spk" if extra
                    else f"utterance {excerpt(lost[0])} of utt2spk is missing" if lost
                    else "utterances repeated or not sorted"
                )
                raise InputError(f"{shown(s2u_path)}:{n}: speaker {excerpt(spk)} does not match utt2spk: {why} (regenerate spk2utt)")
        missing = [s for s in expected if s not in s2u_rows]
        if missing:
            raise InputError(f"{shown(s2u_path)}: speaker {excerpt(missing[0])} of utt2spk is missing")

    utt2dur = None
    dur_path = path / "utt2dur"
    if dur_path.exists():
        utt2dur = {}
        for utt, (n, (value,)) in _keyed(dur_path, read_table(dur_path), "utterance").items():
            if utt not in utt2spk:
                raise InputError(f"{shown(dur_path)}:{n}: unknown utterance {excerpt(utt)} (not in utt2spk)")
            try:
                dur = float(value)
            except ValueError:
                raise InputError(f"{shown(dur_path)}:{n}: duration must be a number, got {excerpt(value)}") from None
            if not dur > 0 or dur == float("inf"):
                raise InputError(f"{shown(dur_path)}:{n}: duration of {excerpt(utt)} must be positive, got {excerpt(value)}")
            utt2dur[utt] = dur
        missing = [u for u in utt2spk if u not in utt2dur]
        if missing:
            raise InputError(f"{shown(dur_path)}: utterance {excerpt(missing[0])} (utt2spk line {u2s_rows[missing[0]][0]}) has no duration")
    return DataDir(
        path=path,
        wav={k: v for k, (_, v) in wav_rows.items()},
        utt2spk=utt2spk,
        segments=segments,
        utt2dur=utt2dur,
        spk2utt=expected,
        allow_pipes=allow_pipes,
    )


def _write_lines(path: Path, rows: Iterable[str]) -> None:
    with atomic_write(path) as f:
        f.writelines(f"{r}\n" for r in rows)


def write_datadir(
    path: str | Path,
    wav: Mapping[str, str],
    utt2spk: Mapping[str, str],
    *,
    segments: Mapping[str, tuple[str, float, float]] | None = None,
    utt2dur: Mapping[str, float] | None = None,
    trials: Iterable[tuple[str, str, bool]] | None = None,
) -> Path:
    """Write a sorted data dir (``spk2utt`` derived) and return its path.

    Ids must not contain whitespace; ``trials`` are (enroll, test, is_target) and are
    written in the given order (a published pairing is never re-sorted).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name, table in (("wav.scp", wav), ("utt2spk", utt2spk)):
        for key, value in table.items():
            if not key or any(c.isspace() for c in key) or not str(value):
                raise InputError(f"{path / name}: invalid id or value {excerpt(key)} -> {excerpt(value)}")
    _write_lines(path / "wav.scp", (f"{k} {wav[k]}" for k in sorted(wav)))
    _write_lines(path / "utt2spk", (f"{k} {utt2spk[k]}" for k in sorted(utt2spk)))
    _write_lines(path / "spk2utt", (f"{s} {' '.join(u)}" for s, u in spk2utt_of(utt2spk).items()))
    if segments is not None:
        _write_lines(path / "segments", (f"{u} {r} {a:.3f} {b:.3f}" for u, (r, a, b) in sorted(segments.items())))
    if utt2dur is not None:
        _write_lines(path / "utt2dur", (f"{u} {utt2dur[u]:.3f}" for u in sorted(utt2dur)))
    if trials is not None:
        from .trials import write_trials

        write_trials(path / "trials", trials)
    return path


__all__ = [
    "COMBINED", "CORPUS_KINDS", "DataDir", "KINDS", "PIPES_OPT_IN", "atomic_dir", "corpus_kind", "describe", "heard",
    "read_datadir", "spk2utt_of", "write_datadir",
]
