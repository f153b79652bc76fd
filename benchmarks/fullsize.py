"""The VoxCeleb recipe at full size, without the corpus: stand-ins of VoxCeleb1 and VoxCeleb2
dev in their published layouts, made of hard links to a few small valid audio files, at
``--scale`` fractions of the real counts; every measured command runs as a child process of
the real CLI, one core each (``--jobs``), one at a time. Prints one JSON document.

    .venv/bin/python benchmarks/fullsize.py [--scale 0.01 0.1 1.0] [--stages prepare train_startup extract score metrics]
        [--work DIR --keep] [--jobs 1] [--train-workers 2] [--worker-batches 20] [--repeat 1] [--markdown TABLE.md]

Stand-ins at scale s (full sizes in FULL): VoxCeleb1 under SRC1/wav/idXXXXX/VIDEO/NNNNN.wav
with the cleaned trial lists veri_test2.txt, list_test_all2.txt, list_test_hard2.txt (O over
the test speakers id10270-id10309, E and H over all; half targets; distinct pairs of existing
files); VoxCeleb2 dev under SRC2/dev/aac/idXXXXX/VIDEO/NNNNN.m4a (AAC-LC in MP4, encoded by
PyAV; where it cannot encode AAC the files are wav under .m4a names and ``stand_ins.vox2_audio``
says so). Speakers, videos and utterances are s times the real ones (with floors that keep a
tiny stand-in valid); the i-th file links to the (i mod 8)-th source, 8 lengths at the
quantiles of VoxCeleb-like durations with mean --audio-seconds.

Every run (``runs`` per scale, ``baseline`` at --baseline-scale): wall_s, cpu_s (the command
and its reaped children), peak_rss_mb (ru_maxrss of the command, reaped by a small wrapper
process: a child forked from this big process would inherit its high-water mark),
first_output_s (first byte on stdout/stderr), n (what the command works through), rc.

* ``prepare``: ``jeffreys prepare voxceleb1 SRC1 DST`` (durations read) and ``jeffreys
  prepare voxceleb2 SRC2 DST --no-durations``, n = utterances (checked against wav.scp);
* ``train_startup``: ``jeffreys train conf/demo.yaml`` on the prepared VoxCeleb2 stand-in with
  its utt2dur, as the recipe trains (demo preset, s x 5 994 speakers); "demo" the first run
  on it, "demo_warm" the next (the index kept by the first); with ``data.num_workers`` = --train-workers, held by
  the trainer's ``JEFFREYS_TRAIN_FAULT=stall@N`` hook after N = --worker-batches steps (one
  epoch if shorter or with 0: each worker has then served its share of it); from train.log's own time stamps: setup_s (launch to the
  ``start:`` line), first_step_s (launch to ``step 1/``; with the trainer's CPU seconds then,
  first_step_cpu_s), wall_s (launch to step N); then the private memory (Private_Clean +
  Private_Dirty of /proc/PID/smaps_rollup) of each DataLoader worker and of the trainer, read
  once the workers are idle (their prefetch done), before they are killed; n = utterances;
* ``extract``: ``jeffreys extract`` (demo-preset model, one thread, ``--num-workers 0``) of
  --extract-utts/4 and --extract-utts utterances of each format (independent of the scale):
  utterances/s and audio-s/s, whole and marginal (the difference of the two runs: start-up
  excluded);
* ``score``: ``jeffreys score`` of the Vox1-E list (s x 579 818 trials, Kaldi format as
  ``prepare`` writes it) on synthetic --dim embeddings of the s x 153 516 utterances (Kaldi
  ark/scp, training mean given), centred cosine and AS-norm (cohort: s x 5 994 embeddings,
  top min(--top-n, cohort)), n = trials;
* ``metrics``: ``jeffreys metrics --json`` of the cosine scores, plain and with ``--ci``.

Growth per measurement (``exponents``): the least-squares slope of log(time) on log(n) over
the scales, for wall and CPU time, and of log(x - baseline) for wall, CPU and peak RSS, where
the baseline is the same command at ``--baseline-scale`` (a near-empty input: interpreter,
imports, fixed start-up); null where a difference is not positive or fewer than two sizes
were measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
STAGES = ("prepare", "train_startup", "extract", "score", "metrics")
FULL = {
    "vox1": {"speakers": 1251, "test_speakers": 40, "videos": 22496, "utterances": 153516},
    "vox2": {"speakers": 5994, "videos": 145569, "utterances": 1092009},
    "trials": {"O": 37611, "E": 579818, "H": 550894},
    "cohort": 5994,
}
TRIAL_FILES = {"O": "veri_test2.txt", "E": "list_test_all2.txt", "H": "list_test_hard2.txt"}
VOX1_TEST = range(10270, 10310)  # the published test speakers (what prepare splits by without vox1_meta.csv)
YOUTUBE = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


# ---- stand-ins ---------------------------------------------------------------------

def _signal(seconds: float, seed: int) -> np.ndarray:
    """A few tones with a vibrato and some noise: decodes like speech-length audio, nothing more."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110 + 60 * rng.random()
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.05 + 0.003 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def _write_m4a(path: Path, x: np.ndarray) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=SR, layout="mono")
        stream.bit_rate = 64000
        for i in range(0, len(x), 1024):
            frame = av.AudioFrame.from_ndarray(x[None, i: i + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = SR, i
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode(None):
            out.mux(pkt)


def lengths(mean: float, k: int = 8) -> list[float]:
    """``k`` file lengths at the quantiles of VoxCeleb-like durations (4 s plus an exponential,
    cut at 20 s), scaled to ``mean`` seconds: batching by length and decoding see a spread."""
    q = (np.arange(k) + 0.5) / k
    x = np.minimum(4.0 - 3.8 * np.log1p(-q), 20.0)
    return [round(float(v), 2) for v in x * mean / x.mean()]


def source_audio(root: Path, mean_seconds: float) -> dict:
    """The files every stand-in links to (one per length and format), each checked by the
    project's own reader."""
    from jeffreys.audio import audio_duration

    root.mkdir(parents=True, exist_ok=True)
    out = {"wav": [], "m4a": [], "seconds": {"wav": [], "m4a": []}, "vox2_audio": "m4a (AAC-LC 64 kb/s in MP4, PyAV)"}
    for i, sec in enumerate(lengths(mean_seconds)):
        wav, m4a = root / f"source{i}.wav", root / f"source{i}.m4a"
        sf.write(wav, _signal(sec, 2 * i), SR, subtype="PCM_16")
        try:
            _write_m4a(m4a, _signal(sec, 2 * i + 1))
            audio_duration(m4a)
        except Exception as e:  # no AAC encoder in this PyAV build: the preparer still finds *.m4a names
            sf.write(m4a, _signal(sec, 2 * i + 1), SR, subtype="PCM_16", format="WAV")
            out["vox2_audio"] = f"wav under .m4a names (PyAV could not encode AAC: {type(e).__name__}: {e})"
        for fmt, path in (("wav", wav), ("m4a", m4a)):
            out[fmt].append(path)
            out["seconds"][fmt].append(round(audio_duration(path), 3))
    return out


class Linker:
    """Hard links to a few sources (the i-th link to source i mod k); a fresh copy of a source
    when a file system's link limit is reached (65 000 on ext4)."""

    def __init__(self, sources: list[Path], folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.originals, self.copies = folder, list(sources), 0
        self.current = []
        for src in sources:
            own = folder / src.name  # stand-ins keep to their own folder: removing them leaves the originals
            shutil.copyfile(src, own)
            self.current.append(own)

    def link(self, dst: Path, i: int) -> None:
        k = i % len(self.current)
        try:
            os.link(self.current[k], dst)
        except OSError as e:
            if e.errno != errno.EMLINK:
                raise
            self.copies += 1
            src = self.originals[k]
            self.current[k] = self.folder / f"{src.stem}.{self.copies}{src.suffix}"
            shutil.copyfile(src, self.current[k])
            os.link(self.current[k], dst)


def audio_total(seconds: list[float], n: int) -> float:
    """Seconds of audio in ``n`` files linked as Linker links them."""
    k = len(seconds)
    return sum(seconds[i % k] for i in range(n))


def _split(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """``total`` items into ``parts`` groups of at least one, the rest at random."""
    return 1 + rng.multinomial(total - parts, np.full(parts, 1 / parts))


def _video_ids(n: int, rng: np.random.Generator) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        for row in YOUTUBE[rng.integers(0, len(YOUTUBE), (n - len(out), 11))]:
            v = "".join(row)
            if v not in seen:
                seen.add(v)
                out.append(v)
    return out


def layout(speaker_ids: list[str], videos: int, utterances: int, rng: np.random.Generator) -> list[tuple[str, str, int]]:
    """(speaker, video, utterance number) of every file, grouped by speaker."""
    videos = max(len(speaker_ids), min(videos, utterances))
    per_spk = _split(videos, len(speaker_ids), rng)
    per_vid = _split(utterances, videos, rng)
    vids = iter(zip(_video_ids(videos, rng), per_vid.tolist()))
    out = []
    for spk, nv in zip(speaker_ids, per_spk.tolist()):
        for _ in range(nv):
            v, nu = next(vids)
            out.extend((spk, v, k) for k in range(1, nu + 1))
    return out


def counts(scale: float) -> dict:
    """The stand-in's sizes at ``scale``; floors keep a near-empty one valid (two test speakers
    and two others for Vox1-O/E/H, a training batch of 64 for VoxCeleb2)."""
    v1, v2 = FULL["vox1"], FULL["vox2"]
    s1 = max(4, round(scale * v1["speakers"]))
    t1 = max(2, min(s1 - 2, round(scale * v1["test_speakers"])))
    n1 = max(3 * s1, round(scale * v1["utterances"]))
    s2 = max(2, round(scale * v2["speakers"]))
    n2 = max(64, 2 * s2, round(scale * v2["utterances"]))
    return {
        "vox1": {"speakers": s1, "test_speakers": t1, "videos": max(s1, round(scale * v1["videos"])), "utterances": n1},
        "vox2": {"speakers": s2, "videos": max(s2, round(scale * v2["videos"])), "utterances": n2},
        "trials": {k: max(4, round(scale * v)) for k, v in FULL["trials"].items()},
        "cohort": max(2, round(scale * FULL["cohort"])),
    }


def _pairs(spk: np.ndarray, pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct (enrol, test) index pairs within ``pool`` (indices into ``spk``), half of
    them targets (as many as the pool's speakers allow), in random order."""
    pool = pool[np.argsort(spk[pool], kind="stable")]
    s = spk[pool]
    starts = np.searchsorted(s, s, side="left")
    sizes = np.searchsorted(s, s, side="right") - starts
    multi = np.flatnonzero(sizes > 1)
    max_target = int(np.sum(sizes[multi] - 1))
    want_t = min(n // 2, max_target)
    keys: dict[bool, np.ndarray] = {}
    m = len(pool)
    for target, want in ((True, want_t), (False, n - want_t)):
        got = np.empty(0, dtype=np.int64)
        for _ in range(50):
            if len(got) >= want:
                break
            k = max(16, int((want - len(got)) * 1.3))
            if target:
                e = multi[rng.integers(0, len(multi), k)]
                t = starts[e] + (e - starts[e] + 1 + rng.integers(0, 1 << 30, k) % (sizes[e] - 1)) % sizes[e]
            else:
                e, t = rng.integers(0, m, k), rng.integers(0, m, k)
                keep = s[e] != s[t]
                e, t = e[keep], t[keep]
            got = np.concatenate([got, e.astype(np.int64) * m + t])
            _, first = np.unique(got, return_index=True)
            got = got[np.sort(first)]
        keys[target] = got[:want]
    both = np.concatenate([keys[True], keys[False]])
    both = both[rng.permutation(len(both))]
    return np.stack([pool[both // m], pool[both % m]], axis=1)


class StandIn:
    """The layouts and trial lists of one scale (deterministic in seed and scale); ``build``
    links the files unless a finished build of the same parameters is there."""

    def __init__(self, root: Path, scale: float, seed: int):
        self.root, self.scale, self.counts = root, scale, counts(scale)
        rng = np.random.default_rng([seed, round(scale * 1e9)])
        c1, c2 = self.counts["vox1"], self.counts["vox2"]
        test = [f"id{k}" for k in VOX1_TEST[: c1["test_speakers"]]]
        dev = [f"id{k}" for k in range(10001, 11252) if k not in VOX1_TEST][: c1["speakers"] - len(test)]
        # speaker ids as in the corpus: dev speakers id1xxxx (test ones id10270-id10309); vox2 id0xxxx
        self.vox1 = layout(sorted(test + dev), c1["videos"], c1["utterances"], rng)
        step = max(1, 9000 // c2["speakers"])
        self.vox2 = layout([f"id{k * step + 12:05d}" for k in range(c2["speakers"])], c2["videos"], c2["utterances"], rng)
        spk_of = {s: i for i, s in enumerate(sorted({s for s, _, _ in self.vox1}))}
        spk = np.array([spk_of[s] for s, _, _ in self.vox1])
        is_test = np.array([s in test for s, _, _ in self.vox1])
        self.trials = {}
        for name, n in self.counts["trials"].items():
            pool = np.flatnonzero(is_test) if name == "O" else np.arange(len(self.vox1))
            self.trials[name] = _pairs(spk, pool, n, rng)
        self.spk = spk
        self.src1, self.src2 = root / "vox1", root / "vox2"

    def vox1_rel(self, i: int) -> str:
        s, v, k = self.vox1[i]
        return f"{s}/{v}/{k:05d}.wav"

    def vox1_utt(self, i: int) -> str:
        s, v, k = self.vox1[i]
        return f"{s}-{v}-{k:05d}"

    def build(self, audio: dict) -> dict:
        marker = self.root / "stand_ins.json"
        info = {"scale": self.scale, **self.counts, "trials": {k: len(v) for k, v in self.trials.items()},
                "audio_hours": {"vox1": round(audio_total(audio["seconds"]["wav"], len(self.vox1)) / 3600, 2),
                                "vox2": round(audio_total(audio["seconds"]["m4a"], len(self.vox2)) / 3600, 2)},
                "source_seconds": audio["seconds"], "vox2_audio": audio["vox2_audio"]}
        if marker.is_file() and json.loads(marker.read_text()).get("counts") == info:
            return {**info, "build_s": None, "reused": True}
        t0 = time.perf_counter()
        shutil.rmtree(self.root, ignore_errors=True)
        for base, files, ext in ((self.src1 / "wav", self.vox1, "wav"), (self.src2 / "dev" / "aac", self.vox2, "m4a")):
            linker = Linker(audio[ext], self.root / "sources")
            last = None
            for i, (s, v, k) in enumerate(files):
                d = base / s / v
                if d != last:
                    d.mkdir(parents=True)
                    last = d
                linker.link(d / f"{k:05d}.{ext}", i)
        for name, pairs in self.trials.items():
            y = self.spk[pairs[:, 0]] == self.spk[pairs[:, 1]]
            with open(self.src1 / TRIAL_FILES[name], "w") as f:
                f.writelines(f"{int(t)} {self.vox1_rel(a)} {self.vox1_rel(b)}\n" for (a, b), t in zip(pairs.tolist(), y.tolist()))
        build_s = round(time.perf_counter() - t0, 2)
        marker.write_text(json.dumps({"counts": info}))
        return {**info, "build_s": build_s, "reused": False}

    def kaldi_trials(self, name: str, path: Path) -> int:
        """The list as ``prepare voxceleb1`` writes it (``enroll test target|nontarget``, utterance ids)."""
        pairs = self.trials[name]
        y = self.spk[pairs[:, 0]] == self.spk[pairs[:, 1]]
        with open(path, "w") as f:
            f.writelines(f"{self.vox1_utt(a)} {self.vox1_utt(b)} {'target' if t else 'nontarget'}\n"
                         for (a, b), t in zip(pairs.tolist(), y.tolist()))
        return len(pairs)


# ---- running a command -------------------------------------------------------------

def jeffreys_cli() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m jeffreys``."""
    exe = Path(sys.executable).parent / "jeffreys"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "jeffreys"]


def child_env(jobs: int, **extra: str) -> dict:
    # one core per command: torch, OpenMP and BLAS pools sized by --jobs
    env = dict(os.environ, OMP_NUM_THREADS=str(jobs), MKL_NUM_THREADS=str(jobs), OPENBLAS_NUM_THREADS=str(jobs))
    env.pop("JEFFREYS_TRAIN_FAULT", None)
    env.update(extra)
    return env


# Forks and reaps the measured command from a small process: a child's ru_maxrss starts from
# the memory of the process it was forked from (Linux keeps the pre-exec high-water mark), and
# this benchmark holds torch and the stand-ins' layouts. Writes the child's own resource usage
# and its start/end times (CLOCK_MONOTONIC and wall clock, comparable across processes).
WRAPPER = """
import json, os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
t0, w0 = time.monotonic(), time.time()
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
t1 = time.monotonic()
with open(out, "w") as f:
    json.dump({"pid": pid, "t0": t0, "time0": w0, "t1": t1, "code": os.waitstatus_to_exitcode(status),
               "maxrss_kb": ru.ru_maxrss, "cpu_s": ru.ru_utime + ru.ru_stime}, f)
"""


def run(argv: list[str], env: dict, *, watch=None, timeout: float = 7200.0) -> dict:
    """Run ``argv`` (no shell) under WRAPPER, its output read by two threads with time stamps.
    ``watch(pid)`` (pid: the command's) is called every 50 ms while it runs; it may end the
    command, and what it returns is merged into the result."""
    fd, report = tempfile.mkstemp(prefix="jeffreys-fullsize-", suffix=".json")
    os.close(fd)
    proc = subprocess.Popen([sys.executable, "-S", "-c", WRAPPER, report, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    first: list[float] = []
    text = {"stdout": bytearray(), "stderr": bytearray()}

    def read(stream, name):
        fd = stream.fileno()
        while chunk := os.read(fd, 65536):
            if not first and chunk.strip():
                first.append(time.monotonic())
            if len(text[name]) < 1 << 20:
                text[name] += chunk

    readers = [threading.Thread(target=read, args=(s, n), daemon=True) for s, n in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))]
    for r in readers:
        r.start()
    started, extra, killed, child = time.monotonic(), {}, None, None
    while proc.poll() is None:
        time.sleep(0.05)
        if killed is not None:
            continue
        if child is None:
            kids = _children(proc.pid)
            child = kids[0] if kids else None
        if child is None:
            continue
        if time.monotonic() - started > timeout:
            killed = "timeout"
            _kill(child)
        elif watch is not None:
            extra = watch(child) or extra
            if extra.pop("_killed", False):
                killed = "benchmark"
    for r in readers:
        r.join(30)
    proc.stdout.close()
    proc.stderr.close()
    try:
        w = json.loads(Path(report).read_text())
    except (OSError, ValueError):
        w = None
    finally:
        Path(report).unlink(missing_ok=True)
    if w is None:
        return {"error": f"the wrapper failed (rc {proc.returncode}): {text['stderr'].decode(errors='replace')[-500:]}"}
    out = {"wall_s": round(w["t1"] - w["t0"], 3), "cpu_s": round(w["cpu_s"], 3),
           "peak_rss_mb": round(w["maxrss_kb"] / 1024, 1),
           "first_output_s": round(first[0] - w["t0"], 3) if first else None, "rc": w["code"]}
    for k, v in extra.items():  # the watcher's wall-clock time stamps, relative to the launch
        out[k] = round(v - w["time0"], 3) if k.endswith("_at") else v
    if killed == "timeout" or (w["code"] != 0 and killed is None):
        tail = (text["stderr"] or text["stdout"]).decode(errors="replace").strip().splitlines()[-8:]
        out["error"] = ("timed out: " if killed == "timeout" else f"rc {w['code']}: ") + " | ".join(tail)
    return out


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---- /proc ---------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return sorted(out)


def _kb(path: Path, keys: tuple[str, ...]) -> dict[str, int]:
    got = {}
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(":")
            if k in keys:
                got[k] = int(v.split()[0])
    except OSError:
        pass
    return got


def memory_of(pid: int) -> dict:
    """Resident and private memory (MB) of one process, from smaps_rollup and status."""
    roll = _kb(Path(f"/proc/{pid}/smaps_rollup"), ("Rss", "Pss", "Private_Clean", "Private_Dirty"))
    st = _kb(Path(f"/proc/{pid}/status"), ("VmHWM",))
    mb = lambda kb: round(kb / 1024, 1)  # noqa: E731
    return {"pid": pid, "rss_mb": mb(roll.get("Rss", 0)), "pss_mb": mb(roll.get("Pss", 0)),
            "private_mb": mb(roll.get("Private_Clean", 0) + roll.get("Private_Dirty", 0)),
            "hwm_mb": mb(st.get("VmHWM", 0))}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one process so far (its own threads, not its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# ---- stages --------------------------------------------------------------------------

class Bench:
    def __init__(self, args, work: Path):
        self.args, self.work = args, work
        self.cli = jeffreys_cli()
        self.env = child_env(args.jobs)
        self.audio = None
        self.stand_ins: dict[float, StandIn] = {}
        self.info: dict[str, dict] = {}

    def scale_dir(self, scale: float) -> Path:
        return self.work / f"scale-{scale:g}"

    def stand_in(self, scale: float) -> StandIn:
        if scale not in self.stand_ins:
            if self.audio is None:
                self.audio = source_audio(self.work / "audio", self.args.audio_seconds)
            si = StandIn(self.scale_dir(scale) / "corpus", scale, self.args.seed)
            self.info[f"{scale:g}"] = si.build(self.audio)
            self.stand_ins[scale] = si
        return self.stand_ins[scale]

    def prepared(self, scale: float, corpus: str, measure: bool) -> tuple[Path, dict | None]:
        """``jeffreys prepare`` of a stand-in into DST (measured, or once as set-up)."""
        si = self.stand_in(scale)
        dst = self.scale_dir(scale) / f"prepared-{corpus}"
        if not measure and (dst / "wav.scp").is_file():
            return dst, None
        shutil.rmtree(dst, ignore_errors=True)
        if corpus == "voxceleb1":
            argv = [*self.cli, "prepare", "voxceleb1", str(si.src1), str(dst), "--jobs", str(self.args.jobs)]
            n = len(si.vox1)
        else:
            argv = [*self.cli, "prepare", "voxceleb2", str(si.src2), str(dst), "--no-durations", "--jobs", str(self.args.jobs)]
            n = len(si.vox2)
        r = run(argv, self.env, timeout=self.args.timeout)
        r["n"] = n
        if "error" not in r:
            r["utterances_written"] = sum(1 for _ in open(dst / "wav.scp"))
            r["output_mb"] = round(sum(p.stat().st_size for p in dst.rglob("*") if p.is_file()) / 2**20, 2)
            if r["utterances_written"] != n:
                r["error"] = f"wav.scp has {r['utterances_written']} utterances, the stand-in {n}"
        elif measure is False:
            raise RuntimeError(f"set-up failed: {' '.join(argv[1:3])}: {r['error']}")
        return dst, r

    def best(self, once) -> dict:
        """``once()`` --repeat times; the fastest run that succeeded (the first failure if none
        did), with every run's figures under ``repeats``."""
        runs = [once() for _ in range(self.args.repeat)]
        good = [r for r in runs if "error" not in r]
        pick = min(good, key=lambda r: r.get("first_step_s") or r["wall_s"]) if good else runs[0]
        if len(runs) > 1:
            pick["repeats"] = [{k: r.get(k) for k in ("wall_s", "cpu_s", "peak_rss_mb", "first_step_s", "error") if k in r}
                               for r in runs]
        return pick

    def stage_prepare(self, scale: float) -> dict:
        return {c: self.best(lambda: self.prepared(scale, c, True)[1]) for c in ("voxceleb1", "voxceleb2")}

    def demo_config(self) -> Path:
        import jeffreys

        return Path(jeffreys.__file__).parent / "conf" / "demo.yaml"

    def stage_train_startup(self, scale: float) -> dict:
        # "demo": the first run on a data dir (its index read from the tables); "demo_warm": the
        # next one (a data dir of 50,000 utterances and more maps the index kept by the first)
        return {"demo": self.best(lambda: self.train_once(scale, cold=True)),
                "demo_warm": self.best(lambda: self.train_once(scale, cold=False))}

    def training_data(self, scale: float) -> Path:
        """The prepared VoxCeleb2 stand-in with the utt2dur that ``prepare voxceleb2`` writes by
        default (the recipe's training data: a crop then decodes its 4 s, not the whole file).
        The stand-in is prepared --no-durations (12 min at full size here); each file's duration
        is its source's, found by size (the sources differ in length), read from its header."""
        from jeffreys.audio import audio_duration

        data, _ = self.prepared(scale, "voxceleb2", False)
        dst = self.scale_dir(scale) / "train-data"
        if (dst / "utt2dur").is_file():
            return dst
        shutil.rmtree(dst, ignore_errors=True)
        dst.mkdir(parents=True)
        for name in ("wav.scp", "utt2spk", "spk2utt"):
            shutil.copyfile(data / name, dst / name)
        seconds = {p.stat().st_size: audio_duration(str(p)) for p in self.audio["m4a"]}
        with open(data / "wav.scp") as f, open(dst / "utt2dur.tmp", "w") as out:
            for line in f:
                utt, path = line.rstrip("\n").split(" ", 1)
                out.write(f"{utt} {seconds[os.stat(path).st_size]:.3f}\n")
        os.replace(dst / "utt2dur.tmp", dst / "utt2dur")
        return dst

    def train_once(self, scale: float, cold: bool = True) -> dict:
        a = self.args
        cache = self.work / "cache"  # the runs' JEFFREYS_CACHE_DIR: RIR bank, kept indexes
        if cold:
            shutil.rmtree(cache / "index", ignore_errors=True)
        data = self.training_data(scale)
        exp = self.scale_dir(scale) / "train"
        shutil.rmtree(exp, ignore_errors=True)
        n = len(self.stand_in(scale).vox2)
        batch = 64  # the demo config's batch_size, stated again so the epoch below is right
        per_epoch = n // batch  # one process, utterance sampling: the trainer's steps per epoch
        stall = max(1, min(a.worker_batches, per_epoch) if a.worker_batches > 0 else per_epoch)
        argv = [*self.cli, "train", str(self.demo_config()), "--exp-dir", str(exp),
                "--set", f"data.train={data}", "--set", f"data.num_workers={a.train_workers}",
                "--set", f"batch_size={batch}", "--set", f"steps={stall + 1}", "--set", "log_every=1",
                "--set", "progress=false"]
        # the trainer's own test hook: after step N it waits forever, its workers alive and idle
        env = child_env(a.jobs, JEFFREYS_TRAIN_FAULT=f"stall@{stall}", JEFFREYS_CACHE_DIR=str(cache))
        state = {"pos": 0, "buf": "", "marks": {}}

        def watch(pid):
            try:
                with open(exp / "train.log") as f:
                    f.seek(state["pos"])
                    state["buf"] += f.read()
                    state["pos"] = f.tell()
            except OSError:
                return None
            marks = state["marks"]
            lines = state["buf"].split("\n")
            state["buf"] = lines.pop()
            for line in lines:  # "2026-12-07 10:11:12,345 message" (logging's asctime, local time)
                try:
                    at = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                except ValueError:
                    continue
                msg = line[24:]
                if msg.startswith("start:") and "setup_at" not in marks:
                    marks["setup_at"], marks["setup_cpu_s"] = at, cpu_seconds(pid)
                    marks["steps_per_epoch"] = int(msg.split(" steps/epoch")[0].rsplit(", ", 1)[1])
                elif msg.startswith("step 1/") and "first_step_at" not in marks:
                    marks["first_step_at"], marks["first_step_cpu_s"] = at, cpu_seconds(pid)
                elif msg.startswith("JEFFREYS_TRAIN_FAULT: stalling"):
                    marks["steps_done_at"] = at
            if "steps_done_at" not in marks:
                return None
            me = _cmdline(pid)
            kids = _children(pid)
            workers = [k for k in kids if _cmdline(k) == me]  # forked: the trainer's command line
            # the workers finish the batches they prefetch past step N: read them idle (their CPU
            # time still for half a second), so that a snapshot holds no batch in the making
            before, waited = None, time.monotonic()
            while time.monotonic() - waited < 60:
                now = [cpu_seconds(w) for w in workers]
                if now == before:
                    break
                before = now
                time.sleep(0.5)
            mem = {"trainer": memory_of(pid), "workers": [memory_of(w) for w in workers],
                   "other_children": len(kids) - len(workers)}
            for p in workers + [pid]:  # this run's processes only, each by its id
                _kill(p)
            spe = marks.get("steps_per_epoch")
            return {"_killed": True, **marks, "memory": mem, "batches": stall, "batch_size": batch,
                    "num_workers": a.train_workers, "epoch_fraction": round(stall / spe, 4) if spe else None,
                    "worker_private_mb_max": max((w["private_mb"] for w in mem["workers"]), default=None)}

        r = run(argv, env, watch=watch, timeout=a.timeout)
        r["n"] = n
        r["speakers"] = self.stand_in(scale).counts["vox2"]["speakers"]
        for k in ("setup", "first_step", "steps_done"):
            if f"{k}_at" in r:
                r[f"{k}_s"] = r.pop(f"{k}_at")
        if "steps_done_s" in r:
            r["wall_s"] = r.pop("steps_done_s")  # launch to step N (the kill is not part of it)
        elif "error" not in r:
            r["error"] = f"training ended (rc {r.get('rc')}) before the stall marker"
        r.pop("first_output_s", None)  # progress is off: first_step_s is the first output that counts
        return r

    # -- extract (independent of the scale: a fixed number of utterances per format) --
    def model(self) -> Path:
        bundle = self.work / "model" / "model.pt"
        if bundle.is_file():
            return bundle
        from jeffreys.data.datadir import write_datadir

        self.stand_in(min(self.args.scale))
        d = self.work / "model" / "data"
        wav = {f"spk{i % 4}-u{i:03d}": str(self.audio["wav"][i % len(self.audio["wav"])]) for i in range(16)}
        write_datadir(d, wav, {u: u.split("-")[0] for u in wav})
        argv = [*self.cli, "train", str(self.demo_config()), "--exp-dir", str(bundle.parent / "exp"),
                "--set", f"data.train={d}", "--set", "steps=1", "--set", "batch_size=8", "--set", "data.num_workers=0",
                "--set", "data.augment.prob=0", "--set", "progress=false"]
        r = run(argv, self.env, timeout=self.args.timeout)
        if "error" in r:
            raise RuntimeError(f"set-up failed: training the extraction model: {r['error']}")
        shutil.copyfile(bundle.parent / "exp" / "model.pt", bundle)
        return bundle

    def stage_extract(self) -> dict:
        from jeffreys.data.datadir import write_datadir

        model = self.model()
        n_big = max(4, self.args.extract_utts)
        out = {}
        for fmt in ("wav", "m4a"):
            runs = []
            for n in (max(1, n_big // 4), n_big):
                base = self.work / "extract" / f"{fmt}-{n}"
                shutil.rmtree(base, ignore_errors=True)
                (base / "audio").mkdir(parents=True)
                linker = Linker(self.audio[fmt], base / "sources")
                wav = {}
                for i in range(n):
                    p = base / "audio" / f"u{i:05d}.{fmt}"
                    linker.link(p, i)
                    wav[f"spk{i % 8}-u{i:05d}"] = str(p)
                write_datadir(base / "data", wav, {u: u.split("-")[0] for u in wav})
                argv = [*self.cli, "extract", str(model), str(base / "data"), str(base / "emb"), "--num-workers", "0", "--quiet"]
                r = self.best(lambda: run(argv, self.env, timeout=self.args.timeout))
                r["n"] = n
                secs = audio_total(self.audio["seconds"][fmt], n)
                r["audio_s"] = round(secs, 1)
                if "error" not in r:
                    r["utt_per_s"] = round(n / r["wall_s"], 3)
                    r["audio_s_per_s"] = round(secs / r["wall_s"], 2)
                    r["audio_s_per_cpu_s"] = round(secs / r["cpu_s"], 2) if r["cpu_s"] else None
                runs.append(r)
            a, b = runs
            marginal = None
            if "error" not in a and "error" not in b and b["wall_s"] > a["wall_s"]:
                du, dt_ = b["n"] - a["n"], b["wall_s"] - a["wall_s"]
                marginal = {"utt_per_s": round(du / dt_, 3),
                            "audio_s_per_s": round((b["audio_s"] - a["audio_s"]) / dt_, 2),
                            "startup_s": round(a["wall_s"] - a["n"] * dt_ / du, 3)}
            out[fmt] = {"runs": runs, "marginal": marginal, "exponents": exponents(runs, "wall_s")}
        return out

    # -- score and metrics --
    def score_inputs(self, scale: float) -> dict:
        from jeffreys.embeddings import write_embeddings

        si = self.stand_in(scale)
        d = self.scale_dir(scale) / "score"
        paths = {"emb": d / "emb.scp", "cohort": d / "cohort.scp", "mean": d / "mean.npy", "trials": d / "trials_E"}
        if all(p.is_file() for p in paths.values()):
            return paths
        d.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([self.args.seed, 7, round(scale * 1e9)])
        dim = self.args.dim
        # speaker centres plus noise, shifted by a common offset (what centring removes)
        centres = rng.standard_normal((int(si.spk.max()) + 1, dim)).astype(np.float32)
        offset = rng.standard_normal(dim).astype(np.float32)
        emb = centres[si.spk] + 1.5 * rng.standard_normal((len(si.spk), dim)).astype(np.float32) + offset
        write_embeddings(paths["emb"], [si.vox1_utt(i) for i in range(len(si.vox1))], emb)
        n_coh = si.counts["cohort"]
        cohort = rng.standard_normal((n_coh, dim)).astype(np.float32) + offset
        write_embeddings(paths["cohort"], [f"cohort{k:05d}" for k in range(n_coh)], cohort)
        np.save(paths["mean"], emb.mean(axis=0))
        si.kaldi_trials("E", paths["trials"])
        return paths

    def scored(self, scale: float, kind: str, measure: bool) -> tuple[Path, dict | None]:
        p = self.score_inputs(scale)
        out = p["emb"].parent / f"scores_E_{kind}"
        if not measure and out.is_file():
            return out, None
        out.unlink(missing_ok=True)
        argv = [*self.cli, "score", str(p["emb"]), "--trials", str(p["trials"]), "--out", str(out), "--mean", str(p["mean"])]
        n_coh = self.stand_in(scale).counts["cohort"]
        top = min(self.args.top_n, n_coh)
        if kind == "asnorm":
            argv += ["--cohort", str(p["cohort"]), "--top-n", str(top)]
        r = run(argv, self.env, timeout=self.args.timeout)
        r["n"] = len(self.stand_in(scale).trials["E"])
        if kind == "asnorm":
            r.update(cohort=n_coh, top_n=top)
        if "error" in r and not measure:
            raise RuntimeError(f"set-up failed: jeffreys score: {r['error']}")
        return out, r

    def stage_score(self, scale: float) -> dict:
        return {k: self.best(lambda: self.scored(scale, k, True)[1]) for k in ("cosine", "asnorm")}

    def stage_metrics(self, scale: float) -> dict:
        scores, _ = self.scored(scale, "cosine", False)
        trials = self.score_inputs(scale)["trials"]
        out = {}
        for kind, extra in (("plain", []), ("ci", ["--ci"])):
            r = self.best(lambda: run([*self.cli, "metrics", str(scores), "--trials", str(trials), "--json", *extra],
                                      self.env, timeout=self.args.timeout))
            r["n"] = len(self.stand_in(scale).trials["E"])
            out[kind] = r
        return out


# ---- growth ----------------------------------------------------------------------------

def _slope(n: list[float], y: list[float]) -> float | None:
    pts = [(math.log(a), math.log(b)) for a, b in zip(n, y) if a > 0 and b > 0]
    if len(pts) < 2 or len({p[0] for p in pts}) < 2 or len(pts) < len(n):
        return None
    x, z = np.array(pts).T
    return round(float(np.polyfit(x, z, 1)[0]), 3)


def exponents(runs: list[dict], time_key: str, cpu_key: str = "cpu_s", *, baseline: dict | None = None) -> dict:
    """Growth of wall time, CPU time (the comparable figure on a shared machine) and peak RSS
    with n, raw and above the baseline run."""
    ok = [r for r in runs if r and "error" not in r and r.get(time_key) is not None]
    n = [r["n"] for r in ok]
    out = {"time": time_key, "wall": _slope(n, [r[time_key] for r in ok]),
           "cpu": _slope(n, [r.get(cpu_key) or 0 for r in ok])}
    if baseline and "error" not in baseline and baseline.get(time_key) is not None:
        out["wall_above_baseline"] = _slope(n, [r[time_key] - baseline[time_key] for r in ok])
        out["cpu_above_baseline"] = _slope(n, [(r.get(cpu_key) or 0) - (baseline.get(cpu_key) or 0) for r in ok])
        out["peak_rss_above_baseline"] = _slope(n, [r["peak_rss_mb"] - baseline["peak_rss_mb"] for r in ok])
    return out


TIME_KEY = {"train_startup": ("first_step_s", "first_step_cpu_s")}


def machine() -> dict:
    from jeffreys.environment import environment

    env = environment()
    keep = ("jeffreys", "python", "system", "machine", "cpu_model", "cpu_flags", "cpus", "torch",
            "torch_cpu_capability", "torch_threads", "numpy", "scipy", "env")
    out = {k: env.get(k) for k in keep}
    mem = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("MemTotal", "MemAvailable"):
                mem[k] = round(int(v.split()[0]) / 2**20, 1)
    except OSError:
        pass
    out["ram_gib"], out["ram_available_gib_at_start"] = mem.get("MemTotal"), mem.get("MemAvailable")
    out["loadavg_at_start"] = os.getloadavg()
    for mod in ("av", "soundfile"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:
            out[mod] = None
    try:
        root = Path(__file__).resolve().parents[1]
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "src"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        out["commit"] = head.stdout.strip() or None
        out["src_modified"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        out["commit"] = None
    return out


def markdown(result: dict) -> str:
    """The table for docs/benchmarks.md: per measurement and scale n / time / peak RSS."""
    scales = result["args"]["scale"]
    rows = ["| stage | measure | " + " | ".join(f"{s:g}: n / s / peak RSS MB" for s in scales)
            + " | growth of time | above baseline: time, RSS |", "|" + "---|" * (len(scales) + 4)]
    for stage, measures in result["stages"].items():
        for name, m in measures.items():
            e = m.get("exponents") or {}
            key = e.get("time", "wall_s")
            cells = []
            for r in [next((r for r in m.get("runs", []) if r.get("scale") == s), None) for s in scales]:
                if r is None or "error" in r or r.get(key) is None:
                    cells.append("–" if r is None else "error")
                else:
                    cells.append(f"{r['n']:,} / {r[key]:.2f} / {r['peak_rss_mb']:.0f}")
            if stage == "extract":  # not by scale: both sizes and the marginal rate in one cell
                ok = [r for r in m.get("runs", []) if "error" not in r]
                cells = ["; ".join(f"{r['n']} utts / {r['wall_s']:.2f} / {r['peak_rss_mb']:.0f}" for r in ok)
                         + (f"; marginal {m['marginal']['utt_per_s']} utt/s, {m['marginal']['audio_s_per_s']} audio-s/s"
                            if m.get("marginal") else "")] + [""] * (len(scales) - 1)
            rows.append(f"| {stage} | {name} | " + " | ".join(cells)
                        + f" | {e.get('wall')} | {e.get('wall_above_baseline')}, {e.get('peak_rss_above_baseline')} |")
    return "\n".join(rows) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, nargs="+", default=[0.01, 0.1, 1.0], help="fractions of the real corpora")
    ap.add_argument("--baseline-scale", type=float, default=1e-4,
                    help="the near-empty run every growth is taken above (0: none)")
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    ap.add_argument("--work", help="working folder (default: a temporary one, removed at the end unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the working folder (stand-ins are reused from it)")
    ap.add_argument("--jobs", type=int, default=1, help="cores per command (threads, prepare --jobs; default 1)")
    ap.add_argument("--train-workers", type=int, default=2, help="DataLoader workers of the training start-up")
    ap.add_argument("--worker-batches", type=int, default=20,
                    help="training steps before the workers' memory is read (at most an epoch; 0: a whole epoch)")
    ap.add_argument("--extract-utts", type=int, default=200, help="utterances per format of the larger extraction run")
    ap.add_argument("--audio-seconds", type=float, default=8.0, help="length of every stand-in file")
    ap.add_argument("--dim", type=int, default=256, help="dimension of the synthetic embeddings")
    ap.add_argument("--top-n", type=int, default=300, help="AS-norm top-N (at most the cohort)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each measured command; the fastest is reported")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=7200.0, help="seconds per command")
    ap.add_argument("--markdown", metavar="PATH", help="also write the table (markdown) here")
    args = ap.parse_args()
    if any(not 0 < s <= 1 for s in args.scale) or not 0 <= args.baseline_scale < min(args.scale):
        ap.error("scales must lie in (0, 1], the baseline scale in [0, smallest scale)")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="jeffreys-fullsize-"))
    work.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    result = {"benchmark": "fullsize", "date": started.isoformat(timespec="seconds"), "machine": machine(),
              "args": {k: v for k, v in vars(args).items() if k not in ("work", "markdown")}, "full_sizes": FULL,
              "stand_ins": {}, "stages": {}}
    bench = Bench(args, work)
    try:
        per_scale = [s for s in STAGES if s in args.stages and s != "extract"]
        scales = ([args.baseline_scale] if args.baseline_scale else []) + sorted(args.scale)
        collected: dict[str, dict[str, dict]] = {}
        for scale in scales:
            bench.stand_in(scale)
            for stage in per_scale:
                try:
                    got = getattr(bench, f"stage_{stage}")(scale)
                except Exception as e:  # one failing stage must not lose the others' figures
                    got = {"all": {"error": f"{type(e).__name__}: {e}", "n": None}}
                for name, r in got.items():
                    slot = collected.setdefault(stage, {}).setdefault(name, {"runs": [], "baseline": None})
                    r["scale"] = scale
                    if scale == args.baseline_scale:
                        slot["baseline"] = r
                    else:
                        slot["runs"].append(r)
            if not args.keep and scale == args.baseline_scale:
                shutil.rmtree(bench.scale_dir(scale), ignore_errors=True)
        for stage, measures in collected.items():
            for m in measures.values():
                m["exponents"] = exponents(m["runs"], *TIME_KEY.get(stage, ("wall_s", "cpu_s")), baseline=m["baseline"])
                if stage == "train_startup" and m["baseline"] and m["baseline"].get("worker_private_mb_max") is not None:
                    # growth of what a worker copied; tracks the corpus only where N covers an epoch (--worker-batches 0)
                    ok = [r for r in m["runs"] if "error" not in r and r.get("worker_private_mb_max") is not None]
                    m["exponents"]["worker_private_above_baseline"] = _slope(
                        [r["n"] for r in ok], [r["worker_private_mb_max"] - m["baseline"]["worker_private_mb_max"] for r in ok])
        if "extract" in args.stages:
            try:
                collected["extract"] = bench.stage_extract()
            except Exception as e:
                collected["extract"] = {"all": {"runs": [], "error": f"{type(e).__name__}: {e}", "exponents": {}}}
        result["stages"] = {s: collected[s] for s in STAGES if s in collected}
        result["stand_ins"] = bench.info
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["wall_s"] = round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 1)
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    errors = [f"{s}.{n}" for s, ms in result["stages"].items() for n, m in ms.items()
              if m.get("error") or any("error" in r for r in m.get("runs", []) if r) or (m.get("baseline") or {}).get("error")]
    result["errors"] = errors
    if args.markdown:
        Path(args.markdown).write_text(markdown(result))
    print(json.dumps(result, indent=1))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
