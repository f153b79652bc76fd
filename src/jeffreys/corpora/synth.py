"""Embedded corpus: synthetic speakers made from eSpeak NG voice variants (pip only).

no source needed: everything is synthesised (libespeak-ng and its voice data come with the
`espeakng-loader` wheel; sentences ship in jeffreys/corpora/texts/LANG.txt). Writes
DST/{train,in_domain,other_lang,telephone,reverberant}/ (Kaldi data dirs with utt2dur,
spk2gender, utt2lang; the four evaluation dirs have a `trials` file), 16 kHz wav files
under DST/wav/SPLIT/SPK/ (telephone: 8 kHz), DST/voices/SPK (each speaker's voice
definition) and DST/info.json (seed, sizes, languages, hours).

A speaker is an espeak-ng voice variant written into a private copy of the voice data:
base pitch and range, vocal-tract length (all formant frequencies scaled together, plus
per-formant deviations), formant strengths and widths, tone (spectral tilt), flutter,
roughness, breathiness, consonant strength, stress timing, Klatt or formant-table voice
source and speaking rate, drawn from gender-dependent distributions seeded per speaker.
Each utterance varies within the speaker (speaking rate, pitch level and range, sentence)
and goes through a random channel: microphone response, coloured noise (15-40 dB SNR),
level; plus a 300-3400 Hz, 8 kHz, mu-law telephone channel or a simulated room.

Everything is a function of the seed: each speaker is rendered in a fresh process (libespeak-
ng carries state from one utterance to the next), so the files are identical bit for bit
whatever the number of workers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..acoustics import shoebox_rir
from ..data.datadir import read_datadir, write_datadir
from ..data.trials import read_trials
from ..errors import InputError, nonnegative_int, shown
from ..fileio import atomic_dir
from ..interrupts import deferred, raise_if_stopped_by
from . import synth_channel as ch
from ._progress import current
from .espeak import Espeak, espeak_version, packaged_data_dir, private_data_dir

# Progress (a first line, then the renderers' bar) only on a terminal: a run logged or piped
# keeps its stderr to the one line of a refusal or a stop, as before.
PROGRESS_ON_TERMINAL_ONLY = True

SAMPLE_RATE = 16000
_SCRATCH = ".espeak"  # per-speaker espeak-ng data dirs, inside the build dir
TRAIN_LANGUAGES = ("en", "fr", "es", "de")
OTHER_LANGUAGES = ("it", "pt", "nl", "pl")


@dataclass(frozen=True)
class Split:
    name: str
    prefix: str  # speaker-id prefix, unique per split
    held_out_languages: bool
    channel: str  # "clean" | "telephone" | "reverberant"


SPLITS = (
    Split("train", "trn", False, "clean"),
    Split("in_domain", "ind", False, "clean"),
    Split("other_lang", "oth", True, "clean"),
    Split("telephone", "tel", False, "telephone"),
    Split("reverberant", "rev", False, "reverberant"),
    # Held-out speakers in the training conditions, for choosing a threshold or fitting a
    # calibration without touching the splits whose EER is reported. Last, so that adding
    # it left every other split as it was (each split's speakers are seeded by its index).
    Split("dev", "dev", False, "clean"),
)
EVAL_SPLITS = tuple(s.name for s in SPLITS if s.name not in ("train", "dev"))
# Sizes fields added after the first release: info.json names them only when not at their
# default, so that a default corpus stays identical, info.json included.
_ADDED_FIELDS = ("voice_spread", "speaker_eq_db", "utterance_eq_db")


@dataclass(frozen=True)
class Sizes:
    """Corpus size. The default (~1 min on 2 cores) is sized for the CPU demo."""

    train_speakers: int = 200
    utts_per_speaker: int = 20
    eval_speakers: int = 40
    eval_utts_per_speaker: int = 8
    dev_speakers: int = 40  # the dev split (same utterances per speaker as the evaluation splits)
    min_dur: float = 2.0
    max_dur: float = 4.0
    nontargets_per_target: float = 4.0
    train_languages: tuple[str, ...] = TRAIN_LANGUAGES
    other_languages: tuple[str, ...] = OTHER_LANGUAGES
    # Variation (defaults: the corpus as first released, bit for bit). voice_spread scales the
    # spread of every voice attribute around its gender's centre; speaker_eq_db gives each
    # speaker a fixed random spectral colouring (octave-band gains ~ N(0, dB), its own
    # high-pass), the timbre and microphone a real voice keeps from one recording to the next;
    # utterance_eq_db is the per-utterance microphone response drawn on top.
    voice_spread: float = 1.0
    speaker_eq_db: float = 0.0
    utterance_eq_db: float = 4.0

    def check(self) -> None:
        def bad(msg: str) -> InputError:
            return InputError(f"synth corpus: {msg}")

        if self.train_speakers < 1 or self.utts_per_speaker < 1:
            raise bad("--train-speakers and --utts-per-speaker must be >= 1")
        if self.eval_speakers < 2 or self.eval_utts_per_speaker < 2 or self.dev_speakers < 2:
            raise bad("--eval-speakers, --dev-speakers and --eval-utts-per-speaker must be >= 2 (trials need targets and non-targets)")
        if not 0.5 <= self.min_dur <= self.max_dur <= 30.0:
            raise bad(f"durations must satisfy 0.5 <= min ({self.min_dur}) <= max ({self.max_dur}) <= 30 seconds")
        if not 0 < self.nontargets_per_target < float("inf"):
            raise bad(f"--nontargets-per-target must be a finite number > 0, got {self.nontargets_per_target}")
        if not 0 <= self.voice_spread <= 3 or not 0 <= self.speaker_eq_db <= 20 or not 0 <= self.utterance_eq_db <= 20:
            raise bad("--voice-spread must lie in [0, 3], --speaker-eq-db and --utterance-eq-db in [0, 20] dB")
        if not self.train_languages or not self.other_languages:
            raise bad("--train-languages and --other-languages must not be empty")
        overlap = sorted(set(self.train_languages) & set(self.other_languages))
        if overlap:
            raise bad(f"language {overlap[0]!r} is both a training and an other language")
        for lang in (*self.train_languages, *self.other_languages):
            check_language(lang)


# ---------------------------------------------------------------- languages and texts


def available_languages() -> list[str]:
    texts = resources.files("jeffreys.corpora") / "texts"
    return sorted(p.name[:-4] for p in texts.iterdir() if p.name.endswith(".txt"))


def _espeak_has_language(lang: str) -> bool:
    lang_dir = packaged_data_dir() / "lang"
    return any(p.name == lang for p in lang_dir.rglob(lang) if p.is_file())


def check_language(lang: str) -> None:
    known = available_languages()
    if lang not in known:
        raise InputError(
            f"synth corpus: unknown language {lang!r} (sentence lists ship for {', '.join(known)})"
        )
    if not _espeak_has_language(lang):
        raise InputError(f"synth corpus: espeak-ng has no voice for language {lang!r}")


def sentences(lang: str) -> list[str]:
    text = (resources.files("jeffreys.corpora") / "texts" / f"{lang}.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------- speakers


@dataclass
class Speaker:
    id: str
    split: str
    gender: str  # "m" | "f"
    language: str
    voice: dict = field(default_factory=dict)  # variant attributes (see voice_variant)

    @property
    def variant(self) -> str:
        return f"jf-{self.id}"


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def _spread(rng: np.random.Generator, lo: float, hi: float, k: float) -> float:
    """Uniform on [lo, hi] widened (k > 1) or narrowed around its centre by ``k``; k = 1
    draws exactly what ``rng.uniform(lo, hi)`` draws."""
    if k == 1.0:
        return rng.uniform(lo, hi)
    mid, half = (lo + hi) / 2, (hi - lo) / 2 * k
    return rng.uniform(mid - half, mid + half)


def draw_voice(gender: str, rng: np.random.Generator, spread: float = 1.0) -> dict:
    """Voice-variant attributes of one speaker, from gender-dependent distributions.

    Vocal-tract length moves all formants together (female ~15% higher), each formant also
    deviates on its own; pitch is log-normal around 105 Hz (m) / 195 Hz (f). ``spread``
    scales every attribute's spread around its centre (1: the released corpus; values are
    then clipped to what espeak-ng accepts).
    """
    female = gender == "f"
    k = spread
    lo, hi = (0.85, 1.35) if k <= 1 else (0.8, 1.45)
    vtl = float(np.clip(rng.normal(1.14 if female else 0.99, 0.05 * k), lo, hi))
    formants = []
    for i in range(9):
        freq = 100 * vtl * (rng.normal(1.0, 0.035 * k) if 1 <= i <= 5 else 1.0)
        height = _spread(rng, 75, 110, k) if 1 <= i <= 3 else _spread(rng, 55, 110, k)
        width = _spread(rng, 90, 160, k) if female else _spread(rng, 80, 130, k)
        formants.append([i, round(freq), max(round(height), 10), max(round(width), 20)])
    base = float(np.exp(rng.normal(np.log(195.0 if female else 105.0), 0.13 * k)))
    voice = {
        "gender": "female" if female else "male",
        "pitch": [round(base), round(base * max(_spread(rng, 1.2, 1.8, k), 1.05))],
        "formant": formants,
        "tone": [600, int(_spread(rng, 130, 220, k)), 1200, int(_spread(rng, 100, 170, k)), 2000, max(int(_spread(rng, 60, 150, k)), 10)],
        "flutter": int(_spread(rng, 15, 30, k)) if rng.random() < 0.1 else max(int(_spread(rng, 0, 12, k)), 0),
        "roughness": int(rng.integers(0, 6)),
        "voicing": int(_spread(rng, 85, 115, k)),
        "consonants": [int(_spread(rng, 70, 130, k)), int(_spread(rng, 70, 130, k))],
        "stressAdd": [int(v) for v in np.round(rng.normal(0, np.asarray([10, 10, 10, 10, 0.1, 0.1, 20, 30]) * k))],
        "speed": int(_spread(rng, 82, 118, k)),
    }
    if rng.random() < 0.35:  # breathy voices: noise at the formant peaks
        strength = rng.uniform(5, 35)
        voice["breath"] = [int(strength * rng.uniform(0.4, 1.0) * 0.85**i) for i in range(8)]
    if rng.random() < 0.3:  # Klatt voice source instead of espeak's wavetable
        voice["klatt"] = int(rng.integers(1, 5))
    return voice


def voice_variant(voice: dict) -> str:
    """The body of an espeak-ng voice variant file (docs/voices.md syntax)."""
    lines = []
    for key, value in voice.items():
        if key == "formant":
            lines += [f"formant {' '.join(map(str, row))}" for row in value]
        elif isinstance(value, list):
            lines.append(f"{key} {' '.join(map(str, value))}")
        else:
            lines.append(f"{key} {value}")
    return "\n".join(lines) + "\n"


def plan_speakers(split: Split, n: int, languages: tuple[str, ...], seed: int, spread: float = 1.0) -> list[Speaker]:
    """n speakers, languages round-robin and genders alternating per language."""
    index = [s.name for s in SPLITS].index(split.name)
    out = []
    for i in range(n):
        gender = "mf"[(i // len(languages)) % 2]
        spk = Speaker(f"{split.prefix}{i + 1:04d}", split.name, gender, languages[i % len(languages)])
        spk.voice = draw_voice(gender, _rng(seed, index, i, 0), spread)
        out.append(spk)
    return out


# ---------------------------------------------------------------- rendering (worker side)


@dataclass(frozen=True)
class _Job:
    speaker: Speaker
    split_index: int
    channel: str
    n_utts: int
    seed: int
    min_dur: float
    max_dur: float
    out_dir: str  # where the wav files go now (inside the temporary build dir)
    speaker_eq_db: float = 0.0
    utterance_eq_db: float = 4.0


def _speech(es: Espeak, texts: list[str], order: np.ndarray, start: int, seconds: float,
            rng: np.random.Generator) -> tuple[np.ndarray, int]:  # fmt: skip
    """Synthesise sentences (from ``order[start:]``, cycling) until ``seconds`` are
    covered, with the utterance's own rate and pitch; 16 kHz float. Returns next start."""
    rate = int(round(175 * rng.uniform(0.88, 1.12)))
    pitch = 50 + int(rng.integers(-6, 7))
    pitch_range = 50 + int(rng.integers(-15, 16))
    pieces, have, k = [], 0, start
    while have < seconds * SAMPLE_RATE:
        text = texts[order[k % len(order)]]
        k += 1
        raw = es.synth(text, rate=rate, pitch=pitch, pitch_range=pitch_range, seed=int(rng.integers(1 << 30)))
        x = ch.trim_silence(soxr.resample(raw.astype(np.float64) / 32768.0, es.voice_sample_rate(), SAMPLE_RATE, quality="HQ"))
        if pieces:
            pieces.append(np.zeros(int(rng.uniform(0.15, 0.4) * SAMPLE_RATE)))
        pieces.append(x)
        have += sum(p.size for p in pieces[-2:])
        if k - start > 4 * len(order):
            raise RuntimeError("espeak-ng produced no audio for this speaker's sentences")
    return np.concatenate(pieces), k


def _channel(x: np.ndarray, channel: str, rng: np.random.Generator, eq_db: float = 4.0) -> tuple[np.ndarray, int]:
    fs = SAMPLE_RATE
    if channel == "reverberant":
        x = ch.ss.oaconvolve(x, shoebox_rir(fs, rng))[: x.size]
    x = ch.random_eq(x, fs, rng, spread_db=eq_db)
    x = ch.add_noise(x, fs, rng, rng.uniform(15.0, 40.0))
    if channel == "telephone":
        x, fs = ch.telephone(x, fs), ch.TELEPHONE_RATE
    x = ch.set_level(x, fs, rng.uniform(-32.0, -18.0))
    if channel == "telephone":
        x = ch.mu_law(x)
    return x, fs


def render_speaker(job: _Job) -> list[tuple[str, str, float]]:
    """Synthesise and write one speaker's utterances: [(utt, relative path, seconds)]."""
    spk = job.speaker
    # inside the build dir, so that a killed build leaves nothing elsewhere
    scratch = Path(job.out_dir) / _SCRATCH / spk.id
    try:
        es = Espeak.get(private_data_dir(scratch, spk.language, {spk.variant: voice_variant(spk.voice)}))
        return _render(job, es)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _render(job: _Job, es: Espeak) -> list[tuple[str, str, float]]:
    spk = job.speaker
    es.set_voice(f"{spk.language}+{spk.variant}")
    texts = sentences(spk.language)
    k = int(spk.id[len(spk.id.rstrip("0123456789")):])  # the speaker's number (not only its last 4 digits)
    order = _rng(job.seed, job.split_index, k, 1).permutation(len(texts))
    rel_dir = Path("wav") / spk.split / spk.id
    (Path(job.out_dir) / rel_dir).mkdir(parents=True, exist_ok=True)
    out, start = [], 0
    for j in range(job.n_utts):
        rng = _rng(job.seed, job.split_index, k, 2, j)
        seconds = rng.uniform(job.min_dur, job.max_dur)
        speech, start = _speech(es, texts, order, start, seconds, rng)
        x = ch.fit_duration(speech, SAMPLE_RATE, seconds, rng)
        if job.speaker_eq_db > 0:  # the same draws for every utterance: one response per speaker
            x = ch.random_eq(x, SAMPLE_RATE, _rng(job.seed, job.split_index, k, 4), job.speaker_eq_db)
        y, fs = _channel(x, job.channel, rng, job.utterance_eq_db)
        utt = f"{spk.id}-{j + 1:03d}"
        rel = rel_dir / f"{utt}.wav"
        sf.write(Path(job.out_dir) / rel, np.round(np.clip(y, -1, 1) * 32767).astype(np.int16), fs, subtype="PCM_16")
        out.append((utt, str(rel), y.size / fs))
    return out


def say(text: str, language: str = "en", voice: dict | None = None, *, rate: int = 175, pitch: int = 50,
        pitch_range: int = 50, seed: int = 0) -> tuple[np.ndarray, int]:  # fmt: skip
    """Synthesise ``text`` with a voice (variant attributes as from :func:`draw_voice`, or
    None for espeak-ng's default) in a fresh process: (int16 samples, sample rate)."""
    if not _espeak_has_language(language):
        raise InputError(f"espeak-ng has no voice for language {language!r}")
    with mp.get_context("fork").Pool(1) as pool:
        return pool.apply(_say, (text, language, voice, rate, pitch, pitch_range, seed))


def _say(text, language, voice, rate, pitch, pitch_range, seed) -> tuple[np.ndarray, int]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="jeffreys-say-") as scratch:
        variants = {"jf-say": voice_variant(voice)} if voice else {}
        es = Espeak.get(private_data_dir(scratch, language, variants))
        es.set_voice(f"{language}+jf-say" if voice else language)
        return es.synth(text, rate=rate, pitch=pitch, pitch_range=pitch_range, seed=seed), es.sample_rate


# ---------------------------------------------------------------- trials


def make_trials(spk2utt: dict[str, list[str]], speakers: dict[str, Speaker], ratio: float,
                rng: np.random.Generator) -> tuple[list[tuple[str, str, bool]], dict]:  # fmt: skip
    """All same-speaker pairs as targets; ``ratio`` x as many non-targets, drawn first among
    pairs of the same gender and language (the hard ones), then among any other pairs."""
    targets = [(a, b, True) for utts in spk2utt.values() for i, a in enumerate(utts) for b in utts[i + 1 :]]
    spks = sorted(spk2utt)
    hard, easy = [], []
    for i, s in enumerate(spks):
        for t in spks[i + 1 :]:
            same = (speakers[s].gender, speakers[s].language) == (speakers[t].gender, speakers[t].language)
            (hard if same else easy).append((s, t))
    want = int(round(ratio * len(targets)))

    def draw(pairs: list[tuple[str, str]], n: int) -> list[tuple[str, str, bool]]:
        # speaker pairs weighted by their number of utterance pairs: expand lazily by index
        sizes = np.array([len(spk2utt[s]) * len(spk2utt[t]) for s, t in pairs], dtype=np.int64)
        total = int(sizes.sum())
        picks = np.sort(rng.choice(total, size=min(n, total), replace=False)) if total else np.zeros(0, int)
        bounds = np.cumsum(sizes)
        rows = []
        for p in picks:
            k = int(np.searchsorted(bounds, p, side="right"))
            s, t = pairs[k]
            off = int(p - (bounds[k] - sizes[k]))
            a, b = spk2utt[s][off // len(spk2utt[t])], spk2utt[t][off % len(spk2utt[t])]
            rows.append((a, b, False))
        return rows

    non = draw(hard, want)
    n_hard = len(non)
    non += draw(easy, want - n_hard)
    rows = sorted(targets + non)
    stats = {"trials": len(rows), "targets": len(targets), "nontargets": len(non),
             "nontargets_same_gender_language": n_hard}  # fmt: skip
    return rows, stats


# ---------------------------------------------------------------- build


def _default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def build_synth_corpus(dst: str | Path, seed: int = 0, *, overwrite: bool = False, jobs: int | None = None,
                       progress: bool = False, **sizes) -> Path:  # fmt: skip
    """Synthesise the embedded corpus into ``dst`` and return its path.

    ``sizes``: the fields of :class:`Sizes` (train_speakers, utts_per_speaker,
    eval_speakers, eval_utts_per_speaker, min_dur, max_dur, nontargets_per_target,
    train_languages, other_languages). The output is a function of ``seed`` and the sizes
    only (not of ``jobs``).
    """
    unknown = sorted(set(sizes) - set(Sizes.__dataclass_fields__))
    if unknown:
        raise InputError(f"synth corpus: unknown size option {unknown[0]!r}")
    for key in ("train_languages", "other_languages"):
        if key in sizes:
            sizes[key] = tuple(sizes[key])
    cfg = Sizes(**sizes)
    cfg.check()
    nonnegative_int(seed, "synth corpus: --seed")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise InputError(f"synth corpus: --jobs must be an integer >= 1, got {jobs!r}")
    dst = Path(dst).absolute()
    jobs = jobs or _default_jobs()

    plan: list[tuple[Split, list[Speaker]]] = []
    for split in SPLITS:
        langs = cfg.other_languages if split.held_out_languages else cfg.train_languages
        n = {"train": cfg.train_speakers, "dev": cfg.dev_speakers}.get(split.name, cfg.eval_speakers)
        plan.append((split, plan_speakers(split, n, langs, seed, cfg.voice_spread)))

    try:
        ctx = atomic_dir(dst, overwrite=overwrite)
        tmp = ctx.__enter__()
    except OSError as e:
        raise InputError(f"{dst}: cannot create the corpus directory ({e.strerror})") from None
    try:
        (tmp / "voices").mkdir()
        jobs_list = []
        for index, (split, speakers) in enumerate(plan):
            n_utts = cfg.utts_per_speaker if split.name == "train" else cfg.eval_utts_per_speaker
            for spk in speakers:
                (tmp / "voices" / spk.id).write_text(voice_variant(spk.voice), encoding="utf-8")
                jobs_list.append(_Job(spk, index, split.channel, n_utts, seed, cfg.min_dur, cfg.max_dur, str(tmp),
                                      cfg.speaker_eq_db, cfg.utterance_eq_db))  # fmt: skip
        if any(job.channel == "reverberant" for job in jobs_list):
            import pyroomacoustics  # noqa: F401  # imported once here, not in every forked child
        results = _render_all(jobs_list, jobs, progress)
        shutil.rmtree(tmp / _SCRATCH, ignore_errors=True)
        info = _write_splits(tmp, dst, plan, results, cfg, seed)
        (tmp / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except BaseException:
        ctx.__exit__(*sys.exc_info())
        raise
    ctx.__exit__(None, None, None)
    validate_corpus(dst)
    return dst


def _render_all(jobs_list: list, jobs: int, progress: bool, render: Callable | None = None,
                name: Callable = lambda job: job.speaker.id, desc: str = "synth speakers") -> dict[str, list[tuple[str, str, float]]]:  # fmt: skip
    """``render(job)`` (default :func:`render_speaker`) for every job, each in a forked child:
    {name(job): what it returned}."""
    # One speaker per child process, forked from this process, which never initialises
    # espeak-ng: every speaker starts from the same fresh synthesiser state. fork rather than
    # forkserver/spawn: those re-run the caller's __main__ script. Every child is forked here,
    # in this thread (not by a pool's helper thread, which may fork while an interruption is
    # stopping the pool), so the finally below stops every child it started: after an error
    # or SIGTERM nothing outlives the command.
    from multiprocessing.connection import wait

    ctx = mp.get_context("fork")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs_list), desc=desc, unit="spk")
    results: dict[str, list[tuple[str, str, float]]] = {}
    queue, running = list(jobs_list), {}
    try:
        while queue or running:
            while queue and len(running) < jobs:
                job = queue.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_render_child, args=(render or render_speaker, job, send), daemon=True)
                with deferred():  # a stop comes after the child is recorded, so the finally stops it
                    proc.start()
                    running[recv] = (proc, job)
                send.close()
            for conn in wait(list(running)):
                proc, job = running.pop(conn)
                try:
                    ok, value = conn.recv()
                except EOFError:
                    proc.join()
                    raise_if_stopped_by(proc.exitcode)  # killed by the signal that stops us
                    ok, value = False, InputError(f"the process rendering speaker {name(job)} died (exit code {proc.exitcode})")
                finally:
                    conn.close()
                    proc.join()
                if not ok:
                    raise value
                results[name(job)] = value
                if bar is not None:
                    bar.update(1)
    finally:
        for conn, (proc, _) in running.items():
            proc.terminate()
            proc.join()
            conn.close()
        if bar is not None:
            bar.close()
    return results


def _render_child(render: Callable, job, conn) -> None:
    try:
        conn.send((True, render(job)))
    except Exception as e:  # reported by the parent, as it is
        conn.send((False, e))


def _write_splits(tmp: Path, dst: Path, plan, results, cfg: Sizes, seed: int) -> dict:
    info = {
        "corpus": "jeffreys synth",
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()
                  if k not in _ADDED_FIELDS or v != getattr(Sizes(), k)},  # fmt: skip
        "espeak_ng": espeak_version(),
        "splits": {},
    }
    for index, (split, speakers) in enumerate(plan):
        wav, utt2spk, utt2dur, utt2lang = {}, {}, {}, {}
        for spk in speakers:
            for utt, rel, dur in results[spk.id]:
                wav[utt] = str(dst / rel)
                utt2spk[utt] = spk.id
                utt2dur[utt] = dur
                utt2lang[utt] = spk.language
        trials, stats = None, {}
        if split.name != "train":
            spk2utt = {s.id: [u for u, _, _ in results[s.id]] for s in speakers}
            trials, stats = make_trials(spk2utt, {s.id: s for s in speakers}, cfg.nontargets_per_target,
                                        _rng(seed, index, 0, 3))  # fmt: skip
        out = write_datadir(tmp / split.name, wav, utt2spk, utt2dur=utt2dur, trials=trials)
        (out / "spk2gender").write_text("".join(f"{s.id} {s.gender}\n" for s in speakers), encoding="utf-8")
        (out / "utt2lang").write_text("".join(f"{u} {utt2lang[u]}\n" for u in sorted(utt2lang)), encoding="utf-8")
        info["splits"][split.name] = {
            "speakers": len(speakers),
            "utterances": len(wav),
            "hours": round(sum(utt2dur.values()) / 3600, 4),
            "sample_rate": ch.TELEPHONE_RATE if split.channel == "telephone" else SAMPLE_RATE,
            "channel": split.channel,
            "languages": sorted({s.language for s in speakers}),
            "genders": {g: sum(s.gender == g for s in speakers) for g in "mf"},
            **stats,
        }
    return info


def validate_corpus(dst: str | Path) -> dict:
    """Read back every split (Kaldi validation) and check each trial list against it."""
    dst = Path(dst)
    info = json.loads((dst / "info.json").read_text(encoding="utf-8"))
    for name in info["splits"]:
        dd = read_datadir(dst / name)
        if name == "train":
            continue
        trials = read_trials(dst / name / "trials")
        for n, (e, t) in enumerate(zip(trials.enroll, trials.test), 1):
            for utt in (e, t):
                if utt not in dd.utt2spk:
                    raise InputError(f"{dst / name / 'trials'}:{n}: unknown utterance {utt!r}")
            if (dd.utt2spk[e] == dd.utt2spk[t]) != bool(trials.label[n - 1]):
                raise InputError(f"{dst / name / 'trials'}:{n}: label disagrees with utt2spk")
    return info


def corpus_digest(dst: str | Path) -> str:
    """SHA-256 over every file of a built corpus (paths relative to it): a reproducibility check."""
    dst = Path(dst)
    h = hashlib.sha256()
    for p in sorted(q for q in dst.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(dst)).encode() + b"\0")
        data = p.read_bytes()
        if p.name == "wav.scp":  # absolute paths differ between two locations
            data = data.replace(str(dst).encode(), b"DST")
        h.update(data)
    return h.hexdigest()


# ---------------------------------------------------------------- command line


def _langs(text: str) -> tuple[str, ...]:
    return tuple(x for x in text.split(",") if x)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Sizes()
    parser.add_argument("dst", help="output directory (must not exist unless --overwrite)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    parser.add_argument("--train-speakers", type=int, default=d.train_speakers)
    parser.add_argument("--utts-per-speaker", type=int, default=d.utts_per_speaker, help="training utterances per speaker")
    parser.add_argument("--eval-speakers", type=int, default=d.eval_speakers, help="speakers of each evaluation split")
    parser.add_argument("--eval-utts-per-speaker", type=int, default=d.eval_utts_per_speaker)
    parser.add_argument("--dev-speakers", type=int, default=d.dev_speakers,
                        help="speakers of the dev split (held out, training conditions: for thresholds and calibration)")
    parser.add_argument("--min-dur", type=float, default=d.min_dur, help="seconds")
    parser.add_argument("--max-dur", type=float, default=d.max_dur, help="seconds")
    parser.add_argument("--nontargets-per-target", type=float, default=d.nontargets_per_target)
    parser.add_argument("--train-languages", type=_langs, default=d.train_languages, metavar="L1,L2,...")
    parser.add_argument("--other-languages", type=_langs, default=d.other_languages, metavar="L1,L2,...")
    parser.add_argument("--voice-spread", type=float, default=d.voice_spread, help="scale of the voices' spread (default 1)")
    parser.add_argument("--speaker-eq-db", type=float, default=d.speaker_eq_db,
                        help="fixed spectral colouring per speaker, dB per octave band (default 0: none)")  # fmt: skip
    parser.add_argument("--utterance-eq-db", type=float, default=d.utterance_eq_db,
                        help="random microphone response per utterance, dB per octave band (default 4)")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DST")


def run(args: argparse.Namespace) -> int:
    sizes = {k: getattr(args, k) for k in Sizes.__dataclass_fields__}
    progress = sys.stderr.isatty() and not getattr(args, "quiet", False)
    if progress:
        current().step(f"synthesising the embedded corpus into {shown(args.dst)} (seed {args.seed})")
    dst = build_synth_corpus(args.dst, args.seed, overwrite=args.overwrite, jobs=args.jobs,
                             progress=progress, **sizes)  # fmt: skip
    info = json.loads((dst / "info.json").read_text(encoding="utf-8"))
    for name, s in info["splits"].items():
        extra = f", {s['trials']} trials ({s['targets']} target)" if "trials" in s else ""
        print(f"{dst / name}: {s['speakers']} speakers, {s['utterances']} utterances, "
              f"{s['hours']:.2f} h at {s['sample_rate']} Hz{extra}")  # fmt: skip
    return 0
