"""MBROLA voices: speech from diphone databases, each recorded from one person (Debian contrib/non-free).

SRC: these Debian packages unpacked into one root (`dpkg -x PKG.deb SRC` each; recipes/
realvoices/fetch.sh --mbrola does it through a private apt configuration):
  SRC/usr/bin/mbrola                                    mbrola (contrib)
  SRC/usr/share/mbrola/VOICE/VOICE                      mbrola-VOICE (non-free), one per voice
  SRC/usr/lib/ARCH/libespeak-ng.so.1, libsonic.so.0     libespeak-ng1, libsonic0
  SRC/usr/lib/ARCH/espeak-ng-data/{voices/mb,mbrola_ph} espeak-ng-data
Debian's libespeak-ng turns text into MBROLA's input (the espeakng-loader wheel is built
without MBROLA support) and the unpacked mbrola binary renders it; libespeak-ng's audio output
library is replaced by a stub compiled here with $CC (or cc), as playback is never used.
SRC is software, not data: its programs run (trust it as you trust what you install).
Which voices, their gender, the language they read and their split come from mbrola.tsv,
shipped with this module: DST/train, DST/dev (for calibration) and DST/eval (held out) never
share a voice. DST/dev and DST/eval have `trials` (every pair) and `trials_same_gender`.
--train-voices K keeps K training voices drawn with --seed (the first K of one permutation:
a smaller K's voices are among a larger K's); dev and eval are the same files whatever K.

Each utterance: sentences of jeffreys/corpora/texts/LANG.txt read with its own speaking rate,
pitch level and range (espeak-ng's prosody: only the voice quality is a person's), cut to a
drawn duration, then the embedded corpus's clean channel (microphone colouring, 15-40 dB
coloured noise, level). 16 kHz wav files under DST/wav/SPLIT/VOICE/. Each voice is rendered in
a fresh process, so the output is a function of --seed and the sizes only.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import soundfile as sf

from ..data.trials import write_trials
from ..errors import InputError, excerpt, shown
from ..fileio import atomic_dir, atomic_write, read_text
from ..data.datadir import read_datadir, write_datadir
from . import synth_channel as ch
from ._common import default_jobs, require
from ._progress import current, reported
from .debvoices import make_trials
from .synth import SAMPLE_RATE, _channel, _render_all, _rng, _speech, sentences

MANIFEST = "mbrola.tsv"
SPLITS = ("train", "dev", "eval")
_SCRATCH = ".mbrola"  # per-voice espeak-ng data dirs and the stub library, inside the build dir


@dataclass(frozen=True)
class Voice:
    name: str  # the MBROLA database (package mbrola-NAME)
    text: str  # language of the sentences it reads
    espeak: str  # espeak-ng voice driving it
    gender: str
    split: str
    language: str  # as the Debian package describes the voice

    @property
    def speaker(self) -> str:
        return f"mbrola_{self.name}"


def read_manifest(text: str, where: str = MANIFEST) -> list[Voice]:
    voices, seen = [], set()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split("\t")
        if len(f) != 6 or f[3] not in ("m", "f") or f[4] not in SPLITS or f[0] in seen or not f[0].isalnum():
            raise InputError(f"{where}:{n}: expected 'voice text espeak gender(m|f) split(train|dev|eval) language', "
                             f"a voice once")  # fmt: skip
        seen.add(f[0])
        voices.append(Voice(*f))
    return voices


def manifest() -> list[Voice]:
    return read_manifest((resources.files("jeffreys.corpora") / MANIFEST).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Layout:
    """Where the unpacked packages put what synthesis needs."""

    mbrola: Path  # the synthesiser binary
    databases: Path  # usr/share/mbrola
    library: Path  # libespeak-ng.so.1
    sonic: Path  # libsonic.so.0, loaded before it
    data: Path  # espeak-ng-data

    @classmethod
    def find(cls, src: Path) -> Layout:
        libs = sorted(src.glob("usr/lib/*/libespeak-ng.so.1"))
        lib_dir = libs[0].parent if libs else src / "usr/lib/x86_64-linux-gnu"
        layout = cls(src / "usr/bin/mbrola", src / "usr/share/mbrola", lib_dir / "libespeak-ng.so.1",
                     lib_dir / "libsonic.so.0", lib_dir / "espeak-ng-data")  # fmt: skip
        for path, package in ((layout.mbrola, "mbrola"), (layout.library, "libespeak-ng1"), (layout.sonic, "libsonic0"),
                              (layout.data / "mbrola_ph", "espeak-ng-data"), (layout.data / "voices" / "mb", "espeak-ng-data")):  # fmt: skip
            if not path.exists():
                raise InputError(f"{shown(path)}: not found (package {package}); unpack it into SRC "
                                 f"(recipes/realvoices/fetch.sh --mbrola)")  # fmt: skip
        return layout

    def check_voice(self, voice: Voice) -> None:
        if not (self.databases / voice.name / voice.name).is_file():
            raise InputError(f"{shown(self.databases / voice.name / voice.name)}: not found (package mbrola-{voice.name}); "
                             f"fetch it or leave the voice out with --voices")  # fmt: skip
        path = self.data / "voices" / "mb" / voice.espeak
        if not path.is_file():
            raise InputError(f"{shown(path)}: not found (espeak-ng-data has no voice {voice.espeak!r} for mbrola-{voice.name})")
        # its `mbrola DATABASE TABLE` line: espeak-ng maps its phonemes to the database's with TABLE
        lines = [x.split() for x in read_text(path, "espeak-ng voice file")[1].splitlines()]
        table = next((f[2] for f in lines if len(f) >= 3 and f[0] == "mbrola"), None)
        if table is None or not (self.data / "mbrola_ph" / table).is_file():
            raise InputError(f"{shown(path)}: its phoneme table for mbrola-{voice.name} "
                             f"({shown(self.data / 'mbrola_ph' / str(table))}) not found (package espeak-ng-data)")  # fmt: skip


def build_stub(out: Path) -> Path:
    """Compile the stand-in libpcaudio.so.0 (pcaudio_stub.c) into ``out``."""
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        raise InputError(f"no C compiler: {cc!r} not found (set CC); it builds a 12-line stand-in for libpcaudio")
    src = out / "pcaudio_stub.c"
    src.write_text((resources.files("jeffreys.corpora") / "pcaudio_stub.c").read_text(encoding="utf-8"), encoding="utf-8")
    lib = out / "libpcaudio.so.0"
    r = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wl,-soname,libpcaudio.so.0", "-o", str(lib), str(src)],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    if r.returncode != 0:
        raise InputError(f"{cc} could not build the libpcaudio stand-in: {(r.stderr.strip().splitlines() or ['?'])[-1][:200]}")
    return lib


@dataclass(frozen=True)
class _Job:
    voice: Voice
    index: int  # the voice's row in the manifest: its random streams
    n_utts: int
    seed: int
    min_dur: float
    max_dur: float
    out_dir: str
    layout: Layout
    stub: str


class Renderer:
    """One voice: espeak-ng turns text into MBROLA's input (phonemes, durations and pitch, the
    prosody of :meth:`synth`'s options), the fetched ``mbrola`` binary renders it, one run per
    sentence, reading stdin and writing raw samples (no shell, no file).

    espeak-ng can drive mbrola itself, but it reads mbrola's output with a deadline: on a busy
    machine the end of one sentence came out at the start of the next (2 of 290 files differed
    between two identical runs), so the sound would depend on the load, not on the seed."""

    def __init__(self, es, layout: Layout, voice: Voice, rate: int):
        self.es, self.voice, self.rate = es, voice, rate
        self.cmd = [str(layout.mbrola), "-e", str(layout.databases / voice.name / voice.name), "-", "-.raw"]

    def voice_sample_rate(self) -> int:
        return self.rate

    def synth(self, text: str, **prosody) -> np.ndarray:
        pho = self.es.pho(text, **prosody)
        if not pho.strip():
            raise InputError(f"mbrola-{self.voice.name}: espeak-ng made no MBROLA input with voice {self.voice.espeak!r} "
                             f"(it fell back to its own synthesiser)")  # fmt: skip
        r = subprocess.run(self.cmd, input=pho.encode("latin-1"), capture_output=True, timeout=120)
        if r.returncode != 0:
            raise InputError(f"mbrola-{self.voice.name}: mbrola failed (exit {r.returncode}): "
                             f"{excerpt(r.stderr.decode('latin-1').strip()[-200:])}")  # fmt: skip
        return np.frombuffer(r.stdout[: len(r.stdout) // 2 * 2], dtype="<i2").astype(np.int16)


def synthesiser(job: _Job) -> Renderer:
    """The renderer of the job's voice, in this (fresh) process: espeak-ng on a private data
    dir that sees the job's one MBROLA database, with the job's voice selected."""
    from .espeak import Espeak

    v, lay = job.voice, job.layout
    scratch = Path(job.out_dir) / _SCRATCH / v.name / "espeak-ng-data"
    scratch.mkdir(parents=True)
    for entry in lay.data.iterdir():
        if entry.name != "mbrola":
            (scratch / entry.name).symlink_to(entry)
    (scratch / "mbrola").mkdir()
    (scratch / "mbrola" / v.name).symlink_to(lay.databases / v.name / v.name)
    # selecting an mb-* voice starts `mbrola` from PATH (fork and exec, no shell) to check
    # the database: the unpacked one first
    os.environ["PATH"] = f"{lay.mbrola.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    for dep in (job.stub, lay.sonic):  # found by soname when libespeak-ng is loaded
        ctypes.CDLL(str(dep), mode=ctypes.RTLD_GLOBAL)
    # mbrola warns on stderr for every diphone it lacks (normal for text of another
    # language); this child reports its errors through its pipe, so its stderr goes
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    es = Espeak.get(scratch, lay.library)
    es.set_voice(v.espeak)
    rate = database_rate(lay, v, scratch.parent)
    if rate <= 0:
        raise InputError(f"mbrola-{v.name}: the mbrola binary could not read {shown(lay.databases / v.name / v.name)}")
    return Renderer(es, lay, v, rate)


def database_rate(lay: Layout, voice: Voice, scratch: Path) -> int:
    """The sample rate of a database: what the mbrola binary writes for a moment of silence
    (0 when it cannot)."""
    (scratch / "probe.pho").write_text("_ 100\n", encoding="ascii")
    out = scratch / "probe.wav"
    out.unlink(missing_ok=True)
    db = lay.databases / voice.name / voice.name
    try:
        r = subprocess.run([str(lay.mbrola), "-e", str(db), str(scratch / "probe.pho"), str(out)],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)  # fmt: skip
        return sf.info(str(out)).samplerate if r.returncode == 0 else 0
    except (OSError, subprocess.TimeoutExpired, sf.LibsndfileError):
        return 0


def render_voice(job: _Job) -> list[tuple[str, str, float]]:
    """In a fresh process: one voice's utterances, [(utt, relative path, seconds)]."""
    v = job.voice
    es = synthesiser(job)
    texts = sentences(v.text)
    order = _rng(job.seed, 7, job.index, 1).permutation(len(texts))
    rel_dir = Path("wav") / v.split / v.speaker
    (Path(job.out_dir) / rel_dir).mkdir(parents=True, exist_ok=True)
    out, start = [], 0
    for j in range(job.n_utts):
        rng = _rng(job.seed, 7, job.index, 2, j)
        seconds = rng.uniform(job.min_dur, job.max_dur)
        speech, start = _speech(es, texts, order, start, seconds, rng)
        if not np.any(speech):
            raise InputError(f"mbrola-{v.name}: no audio came out of mbrola (voice {v.espeak!r})")
        y, fs = _channel(ch.fit_duration(speech, SAMPLE_RATE, seconds, rng), "clean", rng)
        utt = f"{v.speaker}-{j + 1:03d}"
        rel = rel_dir / f"{utt}.wav"
        sf.write(Path(job.out_dir) / rel, np.round(np.clip(y, -1, 1) * 32767).astype(np.int16), fs, subtype="PCM_16")
        out.append((utt, str(rel), y.size / fs))
    return out


@dataclass(frozen=True)
class _Utt:  # what debvoices.make_trials reads
    speaker: str
    language: str


@reported("mbrola")
def prepare_mbrola(src: str | Path, dst: str | Path, *, voices: list[str] | None = None, train_voices: int | None = None,
                   utts_per_voice: int = 100, eval_utts_per_voice: int = 40, min_dur: float = 2.0, max_dur: float = 6.0,
                   seed: int = 0, jobs: int | None = None, overwrite: bool = False) -> dict:  # fmt: skip
    """Write DST/{train,dev,eval} (see the module docstring); returns DST/info.json's content.

    ``voices``: names to use (default every row of mbrola.tsv); ``train_voices``: keep that
    many of the training voices, drawn with ``seed`` (dev and eval stay whole)."""
    src = require(Path(src), "root of the unpacked packages", "mbrola")
    if utts_per_voice < 1 or eval_utts_per_voice < 2 or not 0.5 <= min_dur <= max_dur <= 30:
        raise InputError("mbrola: --utts-per-voice >= 1, --eval-utts-per-voice >= 2 and 0.5 <= --min-dur <= --max-dur <= 30")
    table = manifest()
    chosen = table
    if voices is not None:
        known = {v.name for v in table}
        bad = [x for x in voices if x not in known]
        if bad or not voices:
            raise InputError(f"--voices: unknown voice {(bad or [''])[0]!r} (known: {','.join(sorted(known))})")
        chosen = [v for v in table if v.name in voices]
    if train_voices is not None:
        train = [v for v in chosen if v.split == "train"]
        if not 0 <= train_voices <= len(train):
            raise InputError(f"--train-voices must lie in [0, {len(train)}], got {train_voices}")
        keep = {train[i].name for i in np.random.default_rng(seed).permutation(len(train))[:train_voices]}
        chosen = [v for v in chosen if v.split != "train" or v.name in keep]
    layout = Layout.find(src)
    for v in chosen:
        layout.check_voice(v)
    dst = Path(dst).absolute()
    rep = current()
    with atomic_dir(dst, overwrite=overwrite) as tmp:
        (tmp / _SCRATCH).mkdir()
        stub = build_stub(tmp / _SCRATCH)
        index = {v.name: i for i, v in enumerate(table)}
        job_list = [_Job(v, index[v.name], utts_per_voice if v.split == "train" else eval_utts_per_voice, seed,
                         min_dur, max_dur, str(tmp), layout, str(stub)) for v in chosen]  # fmt: skip
        rep.step(f"synthesising {len(job_list)} MBROLA voices")
        results = _render_all(job_list, jobs or default_jobs(), sys.stderr.isatty(), render_voice,
                              name=lambda job: job.voice.name, desc="mbrola voices")  # fmt: skip
        shutil.rmtree(tmp / _SCRATCH)
        info = {"corpus": "mbrola", "kind": "diphone", "seed": seed, "sample_rate": SAMPLE_RATE, "splits": {}}
        for split in SPLITS:
            vs = [v for v in chosen if v.split == split]
            if not vs:
                continue
            rows = [(utt, str((dst / rel)), sec, v) for v in vs for utt, rel, sec in results[v.name]]
            path = tmp / split
            write_datadir(path, {u: p for u, p, _, _ in rows}, {u: v.speaker for u, _, _, v in rows},
                          utt2dur={u: s for u, _, s, _ in rows})  # fmt: skip
            _write_lines(path / "spk2gender", sorted(f"{v.speaker} {v.gender}" for v in vs))
            _write_lines(path / "utt2lang", sorted(f"{u} {v.text}" for u, _, _, v in rows))
            if split != "train":
                lists = make_trials({u: _Utt(v.speaker, v.text) for u, _, _, v in rows}, {v.speaker: v.gender for v in vs})
                for name, trials in lists.items():
                    if trials:
                        write_trials(path / name, trials)
            g = Counter(v.gender for v in vs)
            info["splits"][split] = {"voices": [v.name for v in vs], "male": g["m"], "female": g["f"],
                                     "utterances": len(rows), "hours": round(sum(r[2] for r in rows) / 3600, 3)}  # fmt: skip
        (tmp / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for split in info["splits"]:
        read_datadir(dst / split, check_files=True)
    rep.end_line()
    print(summary(dst, info))
    return info


def _write_lines(path: Path, lines: list[str]) -> None:
    with atomic_write(path) as f:
        f.writelines(f"{x}\n" for x in lines)


def summary(dst: Path, info: dict) -> str:
    lines = [f"mbrola: wrote {dst}"]
    for split, s in info["splits"].items():
        lines.append(f"  {dst / split}: {len(s['voices'])} voices ({s['male']} male, {s['female']} female), "
                     f"{s['utterances']} utterances, {s['hours']:.2f} hours")  # fmt: skip
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, help="root of the unpacked packages (the layout above)")
    parser.add_argument("dst", type=Path, help="output directory (must not exist unless --overwrite)")
    parser.add_argument("--voices", type=lambda s: [x for x in s.split(",") if x], default=None,
                        help="comma-separated voices to use (default: every row of mbrola.tsv)")  # fmt: skip
    parser.add_argument("--train-voices", type=int, default=None, help="keep this many training voices, drawn with --seed")
    parser.add_argument("--utts-per-voice", type=int, default=100, help="utterances per training voice (default 100)")
    parser.add_argument("--eval-utts-per-voice", type=int, default=40, help="utterances per dev/eval voice (default 40)")
    parser.add_argument("--min-dur", type=float, default=2.0, help="seconds (default 2)")
    parser.add_argument("--max-dur", type=float, default=6.0, help="seconds (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the utterances and of --train-voices (default 0)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DST")


def run(args) -> int:
    prepare_mbrola(args.src, args.dst, voices=args.voices, train_voices=args.train_voices,
                   utts_per_voice=args.utts_per_voice, eval_utts_per_voice=args.eval_utts_per_voice,
                   min_dur=args.min_dur, max_dur=args.max_dur, seed=args.seed, jobs=args.jobs,
                   overwrite=args.overwrite)  # fmt: skip
    return 0
