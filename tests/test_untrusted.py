"""Hostile and careless input through the command line: no file runs code, every bad input
is one line and exit 2, nothing new is left behind.

Every case runs ``jeffreys ...`` in a subprocess (``cli_driver.py`` runs them all in one,
each with its own stdout/stderr file descriptors and exit status, so C libraries' output
is caught too). Code-execution attempts each aim at a marker file of their own (a shell
``touch``, an ``os.system`` in a pickle, a request to a local HTTP server that writes one);
none may appear. The classes follow the issue: code execution, tracebacks, silent wrong
results, messages. Signals and file modes need real processes and have their own tests.
"""

from __future__ import annotations

import http.server
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from jeffreys.config import apply_overrides, parse_overrides
from jeffreys.embeddings import write_embeddings
from jeffreys.losses import build_head
from jeffreys.models import ResNetConfig, SpeakerModel, save_bundle
from train_helpers import make_datadir, tiny_overrides

SR = 16000
DRIVER = Path(__file__).with_name("cli_driver.py")
UMASK = os.umask(0)
os.umask(UMASK)


class Evil:
    """A pickle that runs ``touch MARKER`` when loaded."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@dataclass
class Case:
    id: str
    kind: str  # code | traceback | silent | message
    argv: list[str]  # "{ws}" = the workspace, "{out}" = this case's own output dir
    rc: int = 2
    says: tuple[str, ...] = ()  # fragments of the one stderr line
    markers: tuple[str, ...] = ()  # files (in ws/markers) that must not appear
    fsize: int | None = None
    setup: str | None = None  # name of a function below preparing {out}
    lines: int = 1  # stderr lines
    env: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- workspace
def _wave(seed: int, n: int = SR) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    return (0.3 * np.sin(2 * np.pi * (120 + 40 * seed) * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


def _datadir(d: Path, wav: dict[str, str], segments: str | None = None) -> Path:
    d.mkdir(parents=True)
    (d / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in sorted(wav.items())))
    utts = sorted(wav) if segments is None else [line.split()[0] for line in segments.splitlines()]
    (d / "utt2spk").write_text("".join(f"{u} s{i % 2}\n" for i, u in enumerate(sorted(utts))))
    if segments is not None:
        (d / "segments").write_text(segments)
    return d


class _Marker(http.server.BaseHTTPRequestHandler):
    markers: Path

    def do_GET(self):
        (self.markers / ("http" + self.path.replace("/", "_"))).touch()
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_marker(ws):
    """A local HTTP server: any request writes a marker file (FFmpeg must never connect)."""
    handler = type("H", (_Marker,), {"markers": ws / "markers"})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("untrusted")
    (ws / "markers").mkdir()
    (ws / "out").mkdir()
    m = ws / "markers"
    # model bundles
    torch.manual_seed(0)
    model = SpeakerModel(ResNetConfig(widths=[4, 8], depths=[1, 1], strides=[1, 2], num_mel_bins=16, embed_dim=8))
    save_bundle(ws / "model.pt", model, build_head("aam", 8, 3, scale=30.0, margin=0.2), ["s1", "s2", "s3"])
    good = torch.load(ws / "model.pt", weights_only=True)
    torch.save({**good, "state_dict": list(good["state_dict"].values())}, ws / "sd_list.pt")
    torch.save({**good, "speakers": 3}, ws / "speakers_int.pt")
    torch.save({**good, "meta": Evil(m / "model_pickle")}, ws / "evil.pt")
    with open(ws / "raw.pt", "wb") as f:
        pickle.dump({"weights": [1.0, 2.0]}, f, protocol=4)
    (ws / "empty.pt").write_bytes(b"")
    # audio
    wav = {}
    for i in range(4):
        sf.write(ws / f"a{i}.wav", _wave(i), SR)
        wav[f"u{i}"] = str(ws / f"a{i}.wav")
    sf.write(ws / "silent1.wav", np.zeros(SR, np.float32), SR)
    sf.write(ws / "silent2.wav", np.zeros(SR // 2, np.float32), SR)
    rng = np.random.default_rng(7)
    junk = bytearray(rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    for k in range(0, len(junk) - 4, 417):  # MPEG frame syncs: libsndfile would hand it to mpg123
        junk[k:k + 4] = bytes([0xFF, 0xFB, 0x90, 0x64])
    (ws / "mpeg_junk.wav").write_bytes(bytes(junk))
    (ws / "a_dir.wav").mkdir()
    # data dirs
    _datadir(ws / "data", wav)
    (ws / "data" / "trials").write_text("u0 u2 target\nu0 u1 nontarget\nu1 u3 target\nu2 u3 nontarget\n")
    _datadir(ws / "data1", {"u0": wav["u0"]})
    _datadir(ws / "data_seg", {"r0": wav["u0"]}, segments="u0 r0 0 inf\n")
    _datadir(ws / "data_pipe", {"u0": f"touch {m / 'wavscp_pipe'} |", "u1": wav["u1"]})
    bom = ws / "data_bom"
    _datadir(bom, wav)
    (bom / "wav.scp").write_bytes(b"\xef\xbb\xbf" + (bom / "wav.scp").read_bytes())
    # embeddings and the ways to poison them
    emb = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    write_embeddings(ws / "emb", [f"u{i}" for i in range(4)], emb)
    with open(ws / "pkl.ark", "wb") as f:
        for i in range(4):
            f.write(f"u{i} PKL".encode() + pickle.dumps(Evil(m / "ark_pkl")))
    (ws / "pkl.scp").write_text(f"u0 {ws / 'pkl.ark'}:3\n")
    with open(ws / "npy_in_ark.ark", "wb") as f:
        f.write(b"u0 NPY")  # kaldiio's numpy records: refused before np.load sees them
    (ws / "lead_pipe.scp").write_text(f"u0 | touch {m / 'scp_lead_pipe'}\n")
    (ws / "slice_pipe.scp").write_text(f"u0 touch {m / 'scp_slice_pipe'} |[0:1]\n")
    (ws / "trail_pipe.scp").write_text(f"u0 touch {m / 'scp_trail_pipe'} |\n")
    (ws / "shell_pipe.scp").write_text(f"u0 touch {m / 'scp_shell_a'} ; touch {m / 'scp_shell_b'} |\n")
    (ws / "subst_pipe.scp").write_text(f"u0 cat $(touch {m / 'scp_subst'}) |\n")
    (ws / "latin1.scp").write_bytes(f"u0 {ws / 'emb.ark'}:3\n\xe9u1 x.ark:9\n".encode("latin-1"))
    obj = np.empty(1, dtype=object)
    obj[0] = Evil(m / "npy_pickle")
    np.save(ws / "evil.npy", obj, allow_pickle=True)
    (ws / "evil.ids").write_text("u0\n")
    # scores, trials, calibrations
    (ws / "s.txt").write_text("u0 u2 0.9\nu0 u1 0.1\nu1 u3 0.8\nu2 u3 0.2\n")
    (ws / "s_twice.txt").write_text("u0 u2 0.9\nu0 u1 0.1\nu1 u3 0.8\nu2 u3 0.2\nu0 u2 0.7\n")
    (ws / "s_both.txt").write_text("u0 u2 0.9 target\nu0 u1 0.1 nontarget\nu0 u2 0.3 nontarget\n")
    (ws / "s_no_target.txt").write_text("u0 u2 0.9 nontarget\nu0 u1 0.1 nontarget\n")
    (ws / "s_no_nontarget.txt").write_text("u0 u2 0.9 target\nu0 u1 0.1 1\n")
    (ws / "s_bom.txt").write_bytes(b"\xef\xbb\xbfu0 u2 0.9 target\nu0 u1 0.1 nontarget\n")
    (ws / "cal_nan.json").write_text('{"type": "linear", "a": NaN, "b": 0.0, "prior": 0.5}\n')
    (ws / "cal.bin").write_bytes(bytes(range(256)))
    # training configs
    tdir = make_datadir(ws / "train_data", speakers=2, utts=2, seconds=0.6)
    base = apply_overrides({}, parse_overrides(tiny_overrides(tdir, steps=1)))

    def config(name: str, **changes) -> None:
        (ws / name).write_text(yaml.safe_dump(apply_overrides(base, changes)))

    config("train.yaml")
    config("chunk_nan.yaml", **{"data.chunk_seconds": float("nan")})
    config("lr_nan.yaml", **{"optim.lr": float("nan")})
    config("tpu.yaml", device="tpu0")
    config("pipes.yaml", **{"data.train": str(ws / "data_pipe")})
    (ws / "latin1.yaml").write_bytes((ws / "train.yaml").read_bytes() + b"# caf\xe9\n")
    (ws / "list.yaml").write_text("- a\n- b\n")
    (ws / "pyobj.yaml").write_text(f"seed: !!python/object/apply:os.system ['touch {m / 'yaml_tag'}']\n")
    for name, payload in (("exp_empty", b""), ("exp_evil", None)):
        ck = ws / name / "checkpoints" / "step-00000001.pt"
        ck.parent.mkdir(parents=True)
        if payload is None:
            torch.save({"format": "jeffreys-checkpoint/1", "model": Evil(m / "checkpoint_pickle")}, ck)
        else:
            ck.write_bytes(payload)
    return ws


@pytest.fixture(scope="module")
def playlists(ws, http_marker):
    """An HLS playlist and an FFmpeg concat list whose entries are on the marker server."""
    (ws / "list.m3u8").write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{http_marker}/hls_segment.ts\n"
        f"#EXTINF:1,\n{ws / 'a0.wav'}\n#EXT-X-ENDLIST\n"
    )
    (ws / "list.m4a").write_bytes((ws / "list.m3u8").read_bytes())
    (ws / "list.ffconcat").write_text(f"ffconcat version 1.0\nfile '{http_marker}/concat_entry.wav'\nfile '{ws / 'a0.wav'}'\n")
    _datadir(ws / "data_hls", {"u0": str(ws / "list.m3u8"), "u1": str(ws / "a1.wav")})
    return http_marker


# ----------------------------------------------------------------------------- the cases
M = "{ws}/model.pt"
A, B = "{ws}/a0.wav", "{ws}/a1.wav"
TRIALS = "{ws}/data/trials"
TRAIN = ["train", "--exp-dir", "{out}/exp"]

CASES = [
    # --- code execution: a marker file per attempt; each must be refused before it runs
    Case("ark-pkl-score", "code", ["score", "{ws}/pkl.ark", "--trials", TRIALS, "--out", "{out}/s"], says=("pickled",), markers=("ark_pkl",)),
    Case("scp-into-pkl-ark", "code", ["score", "{ws}/pkl.scp", "--trials", TRIALS, "--out", "{out}/s"], says=("pkl.scp:1", "pickled"), markers=("ark_pkl",)),
    Case("ark-pkl-probe", "code", ["probe", M, "{ws}/pkl.ark"], says=("pickled",), markers=("ark_pkl",)),
    Case("ark-npy-record", "code", ["score", "{ws}/npy_in_ark.ark", "--trials", TRIALS, "--out", "{out}/s"], says=("numpy record",)),
    Case("scp-leading-pipe", "code", ["score", "{ws}/lead_pipe.scp", "--trials", TRIALS, "--out", "{out}/s"], says=("lead_pipe.scp:1", "'| cmd'"), markers=("scp_lead_pipe",)),
    Case("scp-leading-pipe-opt-in", "code", ["score", "{ws}/lead_pipe.scp", "--trials", TRIALS, "--out", "{out}/s", "--allow-pipes"], says=("'| cmd'",), markers=("scp_lead_pipe",)),
    Case("scp-pipe-with-range", "code", ["score", "{ws}/slice_pipe.scp", "--trials", TRIALS, "--out", "{out}/s"], says=("is a command", "--allow-pipes"), markers=("scp_slice_pipe",)),
    Case("scp-trailing-pipe", "code", ["score", "{ws}/trail_pipe.scp", "--trials", TRIALS, "--out", "{out}/s"], says=("is a command",), markers=("scp_trail_pipe",)),
    Case("scp-pipe-probe", "code", ["probe", M, "{ws}/trail_pipe.scp"], says=("is a command",), markers=("scp_trail_pipe",)),
    Case("scp-shell-syntax-opt-in", "code", ["score", "{ws}/shell_pipe.scp", "--trials", TRIALS, "--out", "{out}/s", "--allow-pipes"], says=("shell syntax",), markers=("scp_shell_a", "scp_shell_b")),
    Case("scp-substitution-opt-in", "code", ["score", "{ws}/subst_pipe.scp", "--trials", TRIALS, "--out", "{out}/s", "--allow-pipes"], says=("needs a shell",), markers=("scp_subst",)),
    Case("wavscp-pipe-extract", "code", ["extract", M, "{ws}/data_pipe", "{out}/e", "--quiet"], says=("data_pipe/wav.scp:1", "--allow-pipes"), markers=("wavscp_pipe",)),
    Case("pipe-as-verify-argument", "code", ["verify", M, "touch {ws}/markers/verify_arg |", B, "--threshold", "0"], says=("allow_pipes",), markers=("verify_arg",)),
    Case("model-pickle", "code", ["verify", "{ws}/evil.pt", A, B, "--threshold", "0"], says=("evil.pt", "refused"), markers=("model_pickle",)),
    Case("checkpoint-pickle", "code", [*TRAIN[:2], "{ws}/exp_evil", "{ws}/train.yaml", "--resume"], says=("step-00000001.pt", "refused"), markers=("checkpoint_pickle",)),
    Case("npy-pickle-mean", "code", ["score", "{ws}/emb.scp", "--trials", TRIALS, "--out", "{out}/s", "--mean", "{ws}/evil.npy"], says=("evil.npy",), markers=("npy_pickle",)),
    Case("npy-pickle-embeddings", "code", ["score", "{ws}/evil.npy", "--trials", TRIALS, "--out", "{out}/s"], says=("evil.npy",), markers=("npy_pickle",)),
    Case("yaml-python-tag", "code", ["train", "{ws}/pyobj.yaml", "--exp-dir", "{out}/exp"], says=("pyobj.yaml", "invalid YAML"), markers=("yaml_tag",)),
    Case("hls-playlist-verify", "code", ["verify", M, "{ws}/list.m3u8", B, "--threshold", "0"], says=("list.m3u8", "playlists"), markers=("http_hls_segment.ts",)),
    Case("hls-playlist-named-m4a", "code", ["verify", M, "{ws}/list.m4a", B, "--threshold", "0"], says=("list.m4a", "cannot decode"), markers=("http_hls_segment.ts",)),
    Case("ffconcat-list", "code", ["verify", M, "{ws}/list.ffconcat", B, "--threshold", "0"], says=("list.ffconcat",), markers=("http_concat_entry.wav",)),
    Case("url-as-audio", "code", ["verify", M, "{http}/url_audio.wav", B, "--threshold", "0"], says=("no such audio file",), markers=("http_url_audio.wav",)),
    Case("hls-through-opted-in-pipe", "code", ["verify", M, "cat {ws}/list.m3u8 |", B, "--threshold", "0", "--allow-pipes"], says=("cannot decode",), markers=("http_hls_segment.ts",)),
    Case("hls-in-wav-scp", "code", ["extract", M, "{ws}/data_hls", "{out}/e", "--quiet"], says=("list.m3u8", "playlists"), markers=("http_hls_segment.ts",)),
    # --- tracebacks before: each now exit 2 and one line naming the item
    Case("verify-chunk-inf", "traceback", ["verify", M, A, B, "--max-chunk-seconds", "inf", "--threshold", "0"], says=("max_chunk_seconds", "inf")),
    Case("extract-batch-inf", "traceback", ["extract", M, "{ws}/data", "{out}/e", "--batch-seconds", "inf", "--quiet"], says=("batch_seconds", "inf")),
    Case("segments-end-inf", "traceback", ["extract", M, "{ws}/data_seg", "{out}/e", "--quiet"], says=("segments:1", "finite")),
    Case("metrics-c-miss-inf", "traceback", ["metrics", "{ws}/s.txt", "--trials", TRIALS, "--c-miss", "inf"], says=("c_miss", "inf")),
    Case("synth-nontargets-inf", "traceback", ["prepare", "synth", "{out}/c", "--nontargets-per-target", "inf"], says=("--nontargets-per-target",)),
    Case("config-chunk-nan", "traceback", ["train", "{ws}/chunk_nan.yaml", "--exp-dir", "{out}/exp"], says=("chunk_nan.yaml", "data.chunk_seconds", "finite")),
    Case("device-mps", "traceback", ["verify", M, A, B, "--device", "mps", "--threshold", "0"], says=("'mps'",)),
    Case("device-meta", "traceback", ["verify", M, A, B, "--device", "meta", "--threshold", "0"], says=("'meta'",)),
    Case("extract-device-meta", "traceback", ["extract", M, "{ws}/data", "{out}/e", "--device", "meta", "--quiet"], says=("'meta'",)),
    Case("config-device-tpu0", "traceback", ["train", "{ws}/tpu.yaml", "--exp-dir", "{out}/exp"], says=("tpu.yaml", "device", "tpu0")),
    Case("config-latin1", "traceback", ["train", "{ws}/latin1.yaml", "--exp-dir", "{out}/exp"], says=("latin1.yaml", "not UTF-8")),
    Case("calibration-binary", "traceback", ["score", "{ws}/emb.scp", "--trials", TRIALS, "--out", "{out}/s", "--calibration", "{ws}/cal.bin"], says=("cal.bin", "not UTF-8")),
    Case("calibration-directory", "traceback", ["score", "{ws}/emb.scp", "--trials", TRIALS, "--out", "{out}/s", "--calibration", "{ws}/data"], says=("is a directory",)),
    Case("scp-latin1", "traceback", ["score", "{ws}/latin1.scp", "--trials", TRIALS, "--out", "{out}/s"], says=("latin1.scp:2", "not UTF-8")),
    Case("mean-directory", "traceback", ["score", "{ws}/emb.scp", "--trials", TRIALS, "--out", "{out}/s", "--mean", "{ws}/data"], says=("is a directory",)),
    Case("out-parent-is-a-file", "traceback", ["score", "{ws}/emb.scp", "--trials", TRIALS, "--out", "{out}/file/s"], setup="file_in_out", says=("is not a directory",)),
    Case("out-is-a-directory", "traceback", ["score", "{ws}/emb.scp", "--trials", TRIALS, "--out", "{out}/dir"], setup="dir_in_out", says=("is a directory",)),
    Case("extract-out-parent-file", "traceback", ["extract", M, "{ws}/data", "{out}/file/e", "--quiet"], setup="file_in_out", says=("is not a directory",)),
    Case("extract-ark-is-a-directory", "traceback", ["extract", M, "{ws}/data", "{out}/e", "--quiet"], setup="ark_dir_in_out", says=("e.ark", "is a directory")),
    Case("extract-disk-full", "traceback", ["extract", M, "{ws}/data", "{out}/e", "--quiet"], fsize=100, says=("e.ark", "cannot write")),
    Case("extract-mean-out-fails-last", "traceback", ["extract", M, "{ws}/data1", "{out}/e", "--mean-out", "{out}/mean.npy", "--quiet"], fsize=150, says=("cannot write",)),
    Case("extract-store-mean-disk-full", "traceback", ["extract", "{out}/m.pt", "{ws}/data1", "{out}/e", "--store-mean", "--quiet"], setup="model_in_out", fsize=5000, says=("m.pt", "cannot write")),
    Case("score-disk-full", "traceback", ["score", "{ws}/emb.scp", "--trials", TRIALS, "--out", "{out}/s"], fsize=20, says=("cannot write",)),
    Case("empty-model", "traceback", ["verify", "{ws}/empty.pt", A, B, "--threshold", "0"], says=("empty.pt", "empty")),
    Case("empty-checkpoint", "traceback", ["train", "{ws}/train.yaml", "--exp-dir", "{ws}/exp_empty", "--resume"], says=("step-00000001.pt", "empty")),
    Case("bundle-state-dict-list", "traceback", ["verify", "{ws}/sd_list.pt", A, B, "--threshold", "0"], says=("sd_list.pt", "state_dict")),
    Case("bundle-speakers-int", "traceback", ["verify", "{ws}/speakers_int.pt", A, B, "--threshold", "0"], says=("speakers_int.pt", "speakers")),
    Case("set-key-under-scalar", "traceback", ["train", "{ws}/train.yaml", "--exp-dir", "{out}/exp", "--set", "steps.x=1"], says=("train.yaml", "cannot set 'steps.x'", "not a section")),
    Case("set-on-list-config", "traceback", ["train", "{ws}/list.yaml", "--exp-dir", "{out}/exp", "--set", "a.b=1"], says=("list.yaml", "cannot set 'a.b'", "not a mapping")),
    Case("metrics-seed-negative", "traceback", ["metrics", "{ws}/s.txt", "--trials", TRIALS, "--ci", "--seed", "-1"], says=("seed", "-1")),
    Case("synth-seed-negative", "traceback", ["prepare", "synth", "{out}/c", "--seed", "-1"], says=("--seed", "-1")),
    Case("synth-jobs-negative", "traceback", ["prepare", "synth", "{out}/c", "--jobs", "-1"], says=("--jobs", "-1")),
    Case("extract-workers-negative", "traceback", ["extract", M, "{ws}/data", "{out}/e", "--num-workers", "-1", "--quiet"], says=("num_workers", "-1")),
    # --- silent wrong results before: each now refused
    Case("verify-threshold-nan", "silent", ["verify", M, A, B, "--threshold", "nan"], says=("threshold", "nan")),
    Case("calibration-a-nan", "silent", ["score", "{ws}/emb.scp", "--trials", TRIALS, "--out", "{out}/s", "--calibration", "{ws}/cal_nan.json"], says=("cal_nan.json", "NaN")),
    Case("metrics-c-miss-nan", "silent", ["metrics", "{ws}/s.txt", "--trials", TRIALS, "--c-miss", "nan"], says=("c_miss", "nan")),
    Case("scores-trial-twice", "silent", ["metrics", "{ws}/s_twice.txt", "--trials", TRIALS], says=("s_twice.txt:5", "first on line 1")),
    Case("scores-pair-both-labels", "silent", ["metrics", "{ws}/s_both.txt"], says=("s_both.txt:3", "first on line 1")),
    Case("config-lr-nan", "silent", ["train", "{ws}/lr_nan.yaml", "--exp-dir", "{out}/exp"], says=("lr_nan.yaml", "optim.lr", "finite")),
    # --- messages
    Case("mpeg-junk-named-wav", "message", ["verify", M, "{ws}/mpeg_junk.wav", B, "--threshold", "0"], says=("mpeg_junk.wav", "cannot decode")),
    Case("raw-pickle-model", "message", ["verify", "{ws}/raw.pt", A, B, "--threshold", "0"], says=("raw.pt", "refused")),
    Case("metrics-no-target", "message", ["metrics", "{ws}/s_no_target.txt"], says=("s_no_target.txt", "no target")),
    Case("metrics-no-nontarget", "message", ["metrics", "{ws}/s_no_nontarget.txt"], says=("s_no_nontarget.txt", "no non-target")),
    Case("verify-silence", "message", ["verify", M, "{ws}/silent1.wav", "{ws}/silent2.wav", "--threshold", "0"], rc=3, says=("no speech", "silent1.wav")),
    Case("train-pipes-names-config-key", "message", ["train", "{ws}/pipes.yaml", "--exp-dir", "{out}/exp"], says=("data_pipe/wav.scp:1", "data.allow_pipes"), markers=("wavscp_pipe",)),
    Case("directory-as-audio", "message", ["verify", M, "{ws}/a_dir.wav", B, "--threshold", "0"], says=("a_dir.wav", "is a directory")),
    Case("bom-scores-accepted", "message", ["metrics", "{ws}/s_bom.txt"], rc=0, lines=0),
    Case("bom-wav-scp-accepted", "message", ["extract", M, "{ws}/data_bom", "{out}/e", "--quiet"], rc=0, lines=0),
]


def _file_in_out(out: Path) -> None:
    (out / "file").write_text("I am a file\n")


def _dir_in_out(out: Path) -> None:
    (out / "dir").mkdir()


def _ark_dir_in_out(out: Path) -> None:
    (out / "e.ark").mkdir()


def _model_in_out(out: Path) -> None:
    (out / "m.pt").write_bytes((out.parent.parent / "model.pt").read_bytes())


SETUPS = {"file_in_out": _file_in_out, "dir_in_out": _dir_in_out, "ark_dir_in_out": _ark_dir_in_out, "model_in_out": _model_in_out}


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def results(ws, playlists):
    """Run every case in one subprocess; per case: the result and its output dir's listing
    before and after."""
    fill = {"ws": str(ws), "http": playlists}
    todo, before = [], {}
    for c in CASES:
        out = ws / "out" / c.id
        out.mkdir()
        if c.setup:
            SETUPS[c.setup](out)
        before[c.id] = _listing(out)
        argv = [a.format(out=out, **fill) for a in c.argv]
        todo.append({"argv": argv, "fsize": c.fsize, "env": c.env})
    ws_before = _listing(ws)
    r = subprocess.run([sys.executable, str(DRIVER)], input=json.dumps(todo), capture_output=True, text=True,
                       timeout=900, cwd=ws / "out")
    assert r.returncode == 0, r.stderr[-3000:]
    got = dict(zip((c.id for c in CASES), json.loads(r.stdout)))
    return got, before, ws_before


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, results, ws):
    got, before, _ = results
    r = got[case.id]
    err = r["stderr"].strip()
    lines = err.splitlines()
    context = f"rc {r['rc']}, stderr:\n{r['stderr'][-2000:]}"
    assert r["rc"] == case.rc, context
    assert len(lines) == case.lines, context
    if case.lines:
        cmd = case.argv[0]
        prefix = f"jeffreys {cmd}: no speech" if case.rc == 3 else f"jeffreys {cmd}: error: "
        assert lines[0].startswith(prefix), context
        assert "Traceback" not in err and "weights_only=False" not in err and "[src/libmpg123" not in err, context
    for fragment in case.says:
        assert fragment in err, f"{fragment!r} not in: {err}"
    for marker in case.markers:
        assert not (ws / "markers" / marker).exists(), f"code ran: marker {marker} appeared"
    if case.rc != 0:  # a failed command leaves nothing new behind
        assert _listing(ws / "out" / case.id) == before[case.id]


def test_no_marker_and_no_stray_file(results, ws):
    """Over all cases: no marker at all, and nothing new in the workspace but the outputs of
    the commands that succeeded."""
    _, _, ws_before = results
    assert list((ws / "markers").iterdir()) == []
    ok = {c.id for c in CASES if c.rc == 0}
    new = [p for p in set(_listing(ws)) - set(ws_before) if not any(p.startswith(f"out/{i}/") for i in ok)]
    assert new == []


def test_counts():
    """The closing note's counts: every class is represented."""
    kinds = {k: sum(c.kind == k for c in CASES) for k in ("code", "traceback", "silent", "message")}
    assert kinds["code"] >= 20 and kinds["traceback"] >= 27 and kinds["silent"] == 6 and kinds["message"] >= 8
    assert sum(len(c.markers) for c in CASES if c.kind == "code") >= 20


# ----------------------------------------------------------------------------- outputs: modes, atomic groups
def test_store_mean_keeps_the_model_mode_and_new_files_honour_the_umask(ws, tmp_path):
    model = tmp_path / "m.pt"
    model.write_bytes((ws / "model.pt").read_bytes())
    os.chmod(model, 0o640)
    r = subprocess.run([sys.executable, "-m", "jeffreys", "extract", str(model), str(ws / "data"), str(tmp_path / "e"),
                        "--store-mean", "--mean-out", str(tmp_path / "mean.npy"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert oct(model.stat().st_mode & 0o777) == oct(0o640)
    for f in ("e.ark", "e.scp", "mean.npy"):
        assert oct((tmp_path / f).stat().st_mode & 0o777) == oct(0o666 & ~UMASK)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.ark", "e.scp", "m.pt", "mean.npy"]  # no temporaries


def _synth(dst: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "jeffreys", "prepare", "synth", str(dst), "--train-speakers", "2", "--utts-per-speaker", "2",
         "--eval-speakers", "2", "--eval-utts-per-speaker", "2", "--min-dur", "0.5", "--max-dur", "0.6", "--jobs", "1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_temp(parent: Path, name: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not any(p.name.startswith(f".{name}.tmp-") for p in parent.iterdir()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout
        time.sleep(0.05)


def test_prepare_sigkill_leftover_is_removed_by_the_next_run_and_sigterm_cleans_up(tmp_path):
    dst = tmp_path / "corpus"
    p = _synth(dst)
    _wait_for_temp(tmp_path, "corpus", p)
    p.kill()  # SIGKILL: nothing can clean up
    p.communicate()
    stale = [q for q in tmp_path.iterdir() if q.name.startswith(".corpus.tmp-")]
    assert len(stale) == 1
    p = _synth(dst)  # removes the dead run's directory, then is terminated itself
    t0 = time.monotonic()
    while stale[0].exists():
        assert time.monotonic() - t0 < 120 and p.poll() is None
        time.sleep(0.05)
    _wait_for_temp(tmp_path, "corpus", p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143 and err.strip().splitlines()[-1] == "jeffreys prepare: terminated"
    assert list(tmp_path.iterdir()) == []


def test_prepared_corpus_dirs_get_the_umask_mode(tmp_path):
    p = _synth(tmp_path / "corpus")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    want = oct(0o777 & ~UMASK)
    for d in [tmp_path / "corpus", *(q for q in (tmp_path / "corpus").iterdir() if q.is_dir())]:
        assert oct(d.stat().st_mode & 0o777) == want, d
    assert oct((tmp_path / "corpus" / "train" / "wav.scp").stat().st_mode & 0o777) == oct(0o666 & ~UMASK)


# ----------------------------------------------------------------------------- training: the NaN-checkpoint rule
def test_checkpoint_of_non_finite_weights_is_never_written(ws, tmp_path):
    from jeffreys.train import Trainer, TrainingError, load_train_config

    cfg = load_train_config(ws / "train.yaml")
    t = Trainer(cfg, tmp_path / "exp")
    (tmp_path / "exp" / "checkpoints").mkdir(parents=True)
    first = t._save_checkpoint(0, 0)
    with torch.no_grad():
        next(t.net.parameters())[0].fill_(float("nan"))
    t.step = 1
    with pytest.raises(TrainingError, match=f"non-finite .*last good checkpoint: {first}"):
        t._save_checkpoint(0, 1)
    assert sorted(p.name for p in (tmp_path / "exp" / "checkpoints").iterdir()) == [first.name]
