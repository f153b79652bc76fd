"""Real recorded voices from Debian packages (games, educational software, a TTS voice).

SRC: the packages unpacked into one root (`dpkg -x PKG.deb SRC` each; recipes/realvoices/
fetch.sh does it), or / where they are installed:
  SRC/usr/share/games/fillets-ng/sound/**/{cs,nl}/LEVEL-{m,v}-WORD.ogg   fillets-ng-data-cs, -nl
  SRC/usr/share/tuxpaint/stamps/**/NAME_desc_LANG.ogg                    tuxpaint-stamps-default
  SRC/usr/share/kajongg/voices/[de/]VOICE/*.ogg                          kajongg
  SRC/usr/share/klettres/LANG/{alpha,syllab}/*.ogg                       klettres-data
  SRC/usr/share/festival/voices/russian/msu_ru_nsh_clunits/wav/*.wav     festvox-ru
Which files are whose voice: the table debvoices.tsv shipped with this module (--packages
selects packages). DST/train and DST/eval (disjoint speakers): Kaldi data dirs with utt2dur,
spk2gender, utt2lang; DST/eval has `trials` (all pairs), `trials_same_gender` and
`trials_cross_lang` (pairs across the two languages of a bilingual voice); DST/info.json
says the speech is recorded (a trained model's meta keeps it).

Speakers, genders, languages and the train/eval assignment come from the packages' credits,
copyright files, file naming and ARTIST tags, checked by listening statistics (median F0)
and by clustering each claimed speaker's utterances (docs/real-voices.md). Files with
identical bytes are kept once (the packages repeat some recordings), files shorter than
--min-dur are left out (counted), and each evaluation speaker keeps at most
--max-eval-utts utterances per language, drawn with --seed, so that no voice dominates the
trials. Audio is read where it lies (ogg/wav/opus through jeffreys.audio); nothing is
converted.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..audio import audio_duration
from ..errors import InputError
from ._common import DirSpec, TrialList, add_io_arguments, default_jobs, parallel_map, require, write_dirs
from ._progress import current, reported

MANIFEST = "debvoices.tsv"
SPLITS = ("train", "eval")
GENDERS = ("m", "f")
_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
MAX_LISTED = 3  # files named in a note about left-out files


@dataclass(frozen=True)
class Rule:
    """One manifest row: the files of ``glob`` (relative to SRC) whose name fully matches
    ``name`` and that lie in none of the ``exclude`` folders (relative to :attr:`base`)
    belong to ``speaker``, speaking ``language``."""

    speaker: str
    gender: str
    language: str
    split: str
    package: str
    glob: str
    name: str
    exclude: tuple[str, ...]
    source: str
    line: int

    @property
    def base(self) -> str:
        """The literal directory part of the glob (checked to exist)."""
        parts = []
        for part in self.glob.split("/"):
            if any(c in part for c in "*?["):
                break
            parts.append(part)
        return "/".join(parts)


def read_manifest(text: str, where: str = MANIFEST) -> list[Rule]:
    """Rows ``speaker gender language split package glob name exclude source``
    (tab-separated, ``#`` comments); a speaker's rows must agree on gender and split."""
    rules: list[Rule] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        f = [x.strip() for x in line.split("\t")]
        if len(f) != 9:
            raise InputError(f"{where}:{n}: want 9 tab-separated fields, got {len(f)}")
        try:
            re.compile(f[6])
        except re.error as e:
            raise InputError(f"{where}:{n}: bad file-name expression {f[6]!r} ({e})") from None
        exclude = () if f[7] == "-" else tuple(x.strip("/") for x in f[7].split(",") if x)
        rule = Rule(*f[:7], exclude, f[8], line=n)
        if rule.gender not in GENDERS or rule.split not in SPLITS or not rule.speaker or _ID_CHARS.search(rule.speaker):
            raise InputError(f"{where}:{n}: bad gender/split/speaker {rule.gender!r}/{rule.split!r}/{rule.speaker!r}")
        rules.append(rule)
    seen: dict[str, Rule] = {}
    for r in rules:
        first = seen.setdefault(r.speaker, r)
        if (first.gender, first.split) != (r.gender, r.split):
            raise InputError(f"{where}:{r.line}: speaker {r.speaker} disagrees with line {first.line} on gender or split")
    return rules


def manifest() -> list[Rule]:
    text = (resources.files("jeffreys.corpora") / MANIFEST).read_text(encoding="utf-8")
    return read_manifest(text)


@dataclass
class Utt:
    speaker: str
    language: str
    path: Path
    seconds: float


def utterance_id(rule: Rule, path: Path, src: Path) -> str:
    """SPEAKER-LANG-<path below the rule's literal directory, without suffix>."""
    rel = path.relative_to(src / rule.base).with_suffix("")
    return f"{rule.speaker}-{rule.language}-" + _ID_CHARS.sub("_", "-".join(rel.parts))


def _digest_and_seconds(path: str) -> tuple[str, float | None, Exception | None]:
    """(SHA-1 of the bytes, duration or None when the file holds no audio, another error of
    the duration's reader: raised only if the file is kept), in a worker process."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):  # in blocks: a large file is not held in memory
            h.update(block)
    try:
        return h.hexdigest(), audio_duration(path), None
    except InputError:  # an empty recording in the package, e.g. a 0-sample ogg
        return h.hexdigest(), None, None
    except Exception as e:  # noqa: BLE001 (raised by the caller unless the file repeats a kept one)
        return h.hexdigest(), None, e


def collect(src: Path, rules: list[Rule], min_dur: float, jobs: int | None = None) -> tuple[dict[str, Utt], list[str]]:
    """utt id -> Utt over every rule, and notes on what was left out. Files are hashed and
    their durations read by ``jobs`` processes (default: every CPU)."""
    for r in rules:
        if not (src / r.base).is_dir():
            raise InputError(
                f"{src / r.base}: not found (package {r.package}, {MANIFEST}:{r.line}); unpack it into SRC "
                "(recipes/realvoices/fetch.sh) or leave it out with --packages"
            )
    utts: dict[str, Utt] = {}
    by_hash: dict[str, str] = {}
    claimed: dict[Path, Rule] = {}
    dup, short, unreadable = [], [], []
    for r in current().each(rules, f"matching the rules of {MANIFEST}", unit="rule", check_every=1):
        pattern = re.compile(r.name)
        base = src / r.base
        files = sorted(
            p for p in src.glob(r.glob)
            if p.is_file() and pattern.fullmatch(p.name)
            and not any(p.relative_to(base).parts[: len(x.split("/"))] == tuple(x.split("/")) for x in r.exclude)
        )  # fmt: skip
        if not files:
            raise InputError(f"{src / r.glob}: no file matches (package {r.package}, {MANIFEST}:{r.line})")
        for p in files:
            if p in claimed:
                raise InputError(f"{p}: claimed by {MANIFEST}:{claimed[p].line} and {MANIFEST}:{r.line}")
            claimed[p] = r
    files = list(claimed)
    read = parallel_map(_digest_and_seconds, [str(p) for p in files], jobs or default_jobs(), "hashes and durations")
    for p, (digest, seconds, error) in zip(files, read):
        r = claimed[p]
        uid = utterance_id(r, p, src)
        if uid in utts:
            raise InputError(f"{p}: utterance id {uid} also names {utts[uid].path}")
        if digest in by_hash:  # the packages repeat some recordings: keep the first
            dup.append(f"{p} (= {utts[by_hash[digest]].path})")
            continue
        if error is not None:
            raise error
        if seconds is None:
            unreadable.append(str(p))
            continue
        if seconds < min_dur:
            short.append(str(p))
            continue
        by_hash[digest] = uid
        utts[uid] = Utt(r.speaker, r.language, p, seconds)
    notes = []
    for what, items in (("with the same bytes as a file kept", dup), ("without audio samples", unreadable),
                        (f"shorter than {min_dur} s", short)):  # fmt: skip
        if items:
            more = f" (and {len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
            notes.append(f"{len(items)} file(s) {what} left out, e.g. {'; '.join(items[:MAX_LISTED])}{more}")
    return utts, notes


def cap_per_voice(utts: dict[str, Utt], cap: int, seed: int) -> dict[str, Utt]:
    """At most ``cap`` utterances per (speaker, language), drawn with ``seed``."""
    groups: dict[tuple[str, str], list[str]] = {}
    for uid in sorted(utts):
        groups.setdefault((utts[uid].speaker, utts[uid].language), []).append(uid)
    rng = np.random.default_rng(seed)
    keep = []
    for key in sorted(groups):
        ids = groups[key]
        keep += ids if len(ids) <= cap else [ids[i] for i in sorted(rng.choice(len(ids), cap, replace=False))]
    return {u: utts[u] for u in sorted(keep)}


def make_trials(utts: dict[str, Utt], gender: dict[str, str]) -> dict[str, list[tuple[str, str, bool]]]:
    """Every unordered pair of utterances (sorted ids, enrol < test), in three lists:
    ``trials`` all pairs; ``trials_same_gender`` pairs of one gender; ``trials_cross_lang``
    pairs in two different languages that some bilingual speaker speaks (its targets are that
    speaker's pairs across its languages; empty when no speaker has two languages)."""
    ids = sorted(utts)
    spk = np.array([utts[u].speaker for u in ids])
    lang = np.array([utts[u].language for u in ids])
    gen = np.array([gender[s] for s in spk])
    spoken: dict[str, set[str]] = {}
    for s, la in zip(spk, lang):
        spoken.setdefault(s, set()).add(la)
    pairs = {frozenset(x) for x in spoken.values() if len(x) == 2}
    if any(len(x) > 2 for x in spoken.values()):
        raise InputError("debvoices: a speaker with more than two languages (cross-language trials assume two)")
    i, j = np.triu_indices(len(ids), 1)
    target = spk[i] == spk[j]
    same_gender = gen[i] == gen[j]
    cross = np.zeros(i.size, bool)
    for a, b in (tuple(sorted(p)) for p in pairs):
        cross |= ((lang[i] == a) & (lang[j] == b)) | ((lang[i] == b) & (lang[j] == a))
    out = {}
    for name, sel in (("trials", np.ones(i.size, bool)), ("trials_same_gender", same_gender), ("trials_cross_lang", cross)):
        k = np.flatnonzero(sel)
        out[name] = [(ids[i[x]], ids[j[x]], bool(target[x])) for x in k]
    return out


@reported("debvoices")
def prepare_debvoices(src: str | Path, dst: str | Path, *, packages: list[str] | None = None, min_dur: float = 0.5,
                      max_eval_utts: int = 40, seed: int = 0, jobs: int | None = None,
                      overwrite: bool = False) -> dict[str, DirSpec]:  # fmt: skip
    """Write DST/train and DST/eval (see the module docstring); returns what was written."""
    src = require(Path(src), "root of the unpacked packages", "debvoices")
    if min_dur < 0 or max_eval_utts < 2:
        raise InputError("debvoices: --min-dur must be >= 0 and --max-eval-utts >= 2")
    rules = manifest()
    known = sorted({r.package for r in rules})
    if packages is not None:
        bad = [p for p in packages if p not in known]
        if bad or not packages:
            raise InputError(f"--packages: unknown package {bad[0] if bad else ''!r} (known: {','.join(known)})")
        rules = [r for r in rules if r.package in packages]
    utts, notes = collect(src, rules, min_dur, jobs)
    gender = {r.speaker: r.gender for r in rules}
    split_of = {r.speaker: r.split for r in rules}
    dirs: dict[str, DirSpec] = {}
    for split in SPLITS:
        part = {u: x for u, x in utts.items() if split_of[x.speaker] == split}
        if not part:
            continue
        capped = cap_per_voice(part, max_eval_utts, seed) if split == "eval" else part
        spec = DirSpec({u: str(x.path.resolve()) for u, x in capped.items()}, {u: x.speaker for u, x in capped.items()},
                       {u: x.seconds for u, x in capped.items()})  # fmt: skip
        speakers = sorted({x.speaker for x in capped.values()})
        spec.extra["spk2gender"] = [f"{s} {gender[s]}" for s in speakers]
        spec.extra["utt2lang"] = [f"{u} {capped[u].language}" for u in sorted(capped)]
        if split == "eval":
            spec.trials = [TrialList(name, rows) for name, rows in make_trials(capped, gender).items() if rows]
        g = Counter(gender[s] for s in speakers)
        langs = sorted({x.language for x in capped.values()})
        minutes = sum(x.seconds for x in capped.values()) / 60
        spec.notes.append(f"{g['m']} male, {g['f']} female; {minutes:.1f} minutes; languages {','.join(langs)}")
        if len(capped) < len(part):
            spec.notes.append(f"{len(part) - len(capped)} utterance(s) beyond {max_eval_utts} per speaker and language left out (seed {seed})")
        dirs[split] = spec
    if "eval" not in dirs:
        raise InputError("debvoices: the selected packages hold no evaluation speaker")
    dirs[next(iter(dirs))].notes += [f"(all splits) {n}" for n in notes]
    # DST/info.json: describe() of DST/train (the parent's) then tells a trained model's meta
    # that it heard recorded voices
    write_dirs("debvoices", Path(dst), dirs, overwrite, info={"corpus": "debvoices", "kind": "recorded"})
    return dirs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_io_arguments(parser, trials=False, durations=False)
    parser.add_argument("--packages", type=lambda s: [p for p in s.split(",") if p], default=None,
                        help="comma-separated packages to use (default: all of debvoices.tsv)")  # fmt: skip
    parser.add_argument("--min-dur", type=float, default=0.5, help="shortest file kept, seconds (default 0.5)")
    parser.add_argument("--max-eval-utts", type=int, default=40,
                        help="utterances kept per evaluation speaker and language (default 40)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of that choice (default 0)")


def run(args) -> int:
    prepare_debvoices(args.src, args.dst, packages=args.packages, min_dur=args.min_dur,
                      max_eval_utts=args.max_eval_utts, seed=args.seed, jobs=args.jobs, overwrite=args.overwrite)  # fmt: skip
    return 0
