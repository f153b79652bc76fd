"""Stop signals on every command that writes (jeffreys.interrupts, jeffreys.cli).

SIGINT (Ctrl-C), SIGTERM (``timeout``, ``docker stop``, schedulers, systemd) and SIGHUP (a
closed terminal), sent midway, must each give: exit status 128 + n, exactly one line on
stderr, no output and no temporary left (nothing half-written), and a rerun that works.

Where the signal comes is not left to a sleep: the writers are stopped from
``stop_driver.py``, which pauses at the N-th commit of an atomic writer (every temporary
written, nothing renamed: the worst moment) and tells the test; the commands with worker
processes (``prepare synth``'s renderers, DataLoader workers, ``experiment``'s training
subprocesses) are stopped once their temporary output shows they are at work, with the
signal sent to the whole process group as ``timeout`` and Ctrl-C do, or to the main
process alone as ``docker stop`` does.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from jeffreys import cli, interrupts
from jeffreys.config import apply_overrides, parse_overrides
from jeffreys.embeddings import write_embeddings
from jeffreys.losses import AAMHead
from jeffreys.models import ResNetConfig, SpeakerModel, save_bundle

from train_helpers import make_datadir, tiny_overrides

HERE = Path(__file__).parent
DRIVER = HERE / "stop_driver.py"
INT, TERM, HUP = signal.SIGINT, signal.SIGTERM, signal.SIGHUP
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")]))


def _as_from_a_terminal() -> None:
    """In a child before exec: the stop signals' default actions, as a command typed in a
    terminal has them. A test run started as a background job of a script inherits SIGINT
    ignored, and a command keeps an ignored signal ignored (the nohup rule)."""
    for s in (INT, TERM, HUP):
        signal.signal(s, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def _stop_signals_as_in_a_terminal():
    """The same in this process, for the tests that signal it: SIGINT raising
    KeyboardInterrupt, SIGTERM and SIGHUP by default, whatever the test run inherited."""
    saved = {s: signal.getsignal(s) for s in (INT, TERM, HUP)}
    signal.signal(INT, signal.default_int_handler)
    signal.signal(TERM, signal.SIG_DFL)
    signal.signal(HUP, signal.SIG_DFL)
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def _temps(root: Path) -> list[str]:
    """Temporary files and directories of the atomic writers under ``root``."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".tmp-" in p.name)


def _listing(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _one_line(err: str, command: str, signum: int) -> None:
    lines = err.strip().splitlines()
    assert lines == [f"jeffreys {command}: {interrupts.describe(signum)}"], err


def _wait(predicate, proc: subprocess.Popen | None = None, timeout: float = 180) -> None:
    t0 = time.monotonic()
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"finished before the signal: {proc.communicate()}")
        assert time.monotonic() - t0 < timeout, "timed out waiting for the command to get to work"
        time.sleep(0.02)


# ----------------------------------------------------------------------------- workspace
@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("stops")
    data = make_datadir(ws / "td", speakers=4, utts=4, seconds=0.8)
    utts = sorted(line.split()[0] for line in (data / "utt2spk").read_text().splitlines())
    rows = [(a, b) for i, a in enumerate(utts) for b in utts[i + 1:]]
    same = {(a, b): a.split("-")[0] == b.split("-")[0] for a, b in rows}
    (data / "trials").write_text("".join(f"{a} {b} {'target' if same[a, b] else 'nontarget'}\n" for a, b in rows))
    torch.manual_seed(0)
    model = SpeakerModel(ResNetConfig(widths=[4, 8], depths=[1, 1], strides=[1, 2], num_mel_bins=16, embed_dim=8))
    save_bundle(ws / "model.pt", model, AAMHead(8, 4), [f"spk{i}" for i in range(4)])
    write_embeddings(ws / "emb", utts, np.random.default_rng(1).standard_normal((len(utts), 8)).astype(np.float32))
    rng = np.random.default_rng(2)
    (ws / "s.txt").write_text("".join(f"{a} {b} {rng.normal(0.6 if same[a, b] else 0.0, 0.3):.4f}\n" for a, b in rows))
    base = apply_overrides({}, parse_overrides(tiny_overrides(data, steps=4)))
    (ws / "train.yaml").write_text(yaml.safe_dump(base))
    workers = apply_overrides(base, {"data.num_workers": 2, "steps": 400})
    (ws / "train_workers.yaml").write_text(yaml.safe_dump(workers))
    exp = {
        "systems": [{"name": "a", "model": str(ws / "model.pt")}, {"name": "b", "model": str(ws / "model.pt")}],
        "train_data": str(data),
        "eval_sets": [{"name": "ev", "data": str(data), "domain": "in"}],
        "metrics": {"n_boot": 20},
        "probe": {"train_utts": 8},
    }
    (ws / "exp.yaml").write_text(yaml.safe_dump(exp))
    return ws


# ----------------------------------------------------------------------------- writers, stopped at a commit
@dataclass
class Case:
    id: str
    signum: int
    argv: list[str]  # "{ws}": the workspace, "{out}": this case's output dir
    nth: int = 1  # which commit to stop at
    rerun: list[str] | None = None  # the rerun's argv when not the same
    copy_model: bool = False  # {out}/m.pt: a copy of the model, rewritten in place by the command

    @property
    def command(self) -> str:
        return self.argv[0]


TRIALS = "{ws}/td/train/trials"
CASES = [
    Case("extract", TERM, ["extract", "{ws}/model.pt", "{ws}/td/train", "{out}/e", "--quiet"]),
    Case("extract-store-mean", INT, ["extract", "{out}/m.pt", "{ws}/td/train", "{out}/e", "--store-mean", "--mean-out", "{out}/mean.npy", "--quiet"], copy_model=True),
    Case("score-int", INT, ["score", "{ws}/emb.scp", "--trials", TRIALS, "--out", "{out}/s"]),
    Case("score-term", TERM, ["score", "{ws}/emb.scp", "--trials", TRIALS, "--out", "{out}/s"]),
    Case("score-hup", HUP, ["score", "{ws}/emb.scp", "--trials", TRIALS, "--out", "{out}/s", "--train-calibration", "{ws}/s.txt",
                            "--dev-trials", TRIALS, "--save-calibration", "{out}/cal.json"]),
    Case("probe-out", HUP, ["probe", "{ws}/model.pt", "{ws}/emb.scp", "--out", "{out}/p"]),
    Case("det", INT, ["det", "{ws}/s.txt", "--trials", TRIALS, "--out", "{out}/det.png"]),
    Case("calibrate", TERM, ["calibrate", "{out}/m.pt", "{ws}/td/train", "--quiet", "--n-boot", "10", "--folds", "2", "--out", "{out}/r.json"],
         copy_model=True),
    Case("export", HUP, ["export", "{ws}/model.pt", "--onnx", "{out}/m.onnx", "--no-check"]),
    Case("train", INT, ["train", "{ws}/train.yaml", "--exp-dir", "{out}/exp"], nth=2),
    Case("experiment", TERM, ["experiment", "{ws}/exp.yaml", "--out", "{out}/x", "--quiet"], nth=4),
]


def _fill(argv: list[str], ws: Path, out: Path) -> list[str]:
    return [a.replace("{ws}", str(ws)).replace("{out}", str(out)) for a in argv]


@pytest.fixture(scope="module")
def stopped(ws):
    """Every case run in one driver process: stopped at its commit, then rerun; per case
    (stopped result, listing after the stop, rerun result, listing before)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        CASES[:] = [c for c in CASES if c.command != "export"]
    todo, before = [], {}
    for c in CASES:
        out = ws / "out" / c.id
        out.mkdir(parents=True)
        if c.copy_model:
            (out / "m.pt").write_bytes((ws / "model.pt").read_bytes())
        before[c.id] = _listing(out)
        todo.append({"argv": _fill(c.argv, ws, out), "nth": c.nth, "marker": str(ws / "out" / f"{c.id}.paused")})
    for c in CASES:
        todo.append({"argv": _fill(c.rerun or c.argv, ws, ws / "out" / c.id), "nth": 0})
    results = ws / "out" / "results.jsonl"
    p = subprocess.Popen([sys.executable, str(DRIVER), str(results)], stdin=subprocess.PIPE, env=ENV,
                         preexec_fn=_as_from_a_terminal,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    p.stdin.write(json.dumps(todo))
    p.stdin.close()

    def done() -> list[dict]:
        return [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []

    after = {}
    try:
        for i, c in enumerate(CASES):
            marker = Path(todo[i]["marker"])
            _wait(lambda: marker.exists() or len(done()) > i, p)
            assert marker.exists(), f"{c.id}: finished without reaching commit {c.nth}: {done()[i]}"
            p.send_signal(c.signum)
            _wait(lambda: len(done()) > i, p)
            after[c.id] = _listing(ws / "out" / c.id)
        assert p.wait(timeout=600) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
    res = done()
    return {c.id: (res[i], after[c.id], res[len(CASES) + i], before[c.id]) for i, c in enumerate(CASES)}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_writer_stopped_at_its_commit(case, stopped, ws):
    if case.id not in stopped:
        pytest.skip("onnx/onnxruntime not installed")
    first, after, rerun, before = stopped[case.id]
    assert first["rc"] == 128 + case.signum, first
    _one_line(first["stderr"], case.command, case.signum)
    out = ws / "out" / case.id
    assert not _temps(out)
    if case.command == "train":  # what is there is whole: the config, the log, an empty checkpoints dir
        assert set(after) - set(before) <= {"exp", "exp/config.yaml", "exp/train.log", "exp/checkpoints"}, sorted(after)
    elif case.command == "experiment":  # finished stages stay (whole, stamped); the rest is redone
        assert all(".tmp-" not in k for k in after)
    else:
        assert after == before, "the stopped run changed its outputs"
    assert rerun["rc"] == 0, rerun
    assert not _temps(out)


# ----------------------------------------------------------------------------- worker processes
SYNTH = ["prepare", "synth", "--train-speakers", "6", "--utts-per-speaker", "2", "--eval-speakers", "2",
         "--eval-utts-per-speaker", "2", "--dev-speakers", "2", "--jobs", "2"]


def _run(argv, *, group_signal: int | None = None, ready=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``jeffreys ARGV`` in its own session; with ``ready``, signal it once ``ready()`` holds:
    the whole process group (``group_signal``), as Ctrl-C and ``timeout`` do."""
    p = subprocess.Popen([sys.executable, "-m", "jeffreys", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=ENV, start_new_session=True, preexec_fn=_as_from_a_terminal)
    try:
        if ready is not None:
            _wait(ready, p)
            os.killpg(p.pid, group_signal)
        out, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


def _synth_at_work(parent: Path, name: str):
    def ready() -> bool:  # the build directory holds rendered speech: the renderers are busy
        return any(True for t in parent.glob(f".{name}.tmp-*") for _ in t.glob("wav/*/*/*.wav"))

    return ready


@pytest.mark.parametrize("signum", [INT, TERM, HUP], ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_prepare_synth_stopped_with_its_renderers(tmp_path, signum):
    dst = tmp_path / "corpus"
    r = _run([*SYNTH[:2], str(dst), *SYNTH[2:]], group_signal=signum, ready=_synth_at_work(tmp_path, "corpus"))
    assert r.returncode == 128 + signum, r
    _one_line(r.stderr, "prepare", signum)
    assert list(tmp_path.iterdir()) == []  # no DST, no build directory
    r = _run([*SYNTH[:2], str(dst), *SYNTH[2:]])
    assert r.returncode == 0, r.stderr
    assert (dst / "info.json").is_file() and not _temps(tmp_path)


def test_prepare_synth_sigterm_to_the_main_process_only(tmp_path):
    """``docker stop``: only the command gets SIGTERM; it stops its renderers itself."""
    dst = tmp_path / "corpus"
    p = subprocess.Popen([sys.executable, "-m", "jeffreys", *SYNTH[:2], str(dst), *SYNTH[2:]], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True,
                         preexec_fn=_as_from_a_terminal)
    try:
        _wait(_synth_at_work(tmp_path, "corpus"), p)
        p.send_signal(TERM)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 143
    _one_line(err, "prepare", TERM)
    assert list(tmp_path.iterdir()) == []
    _group_gone(p.pid)  # no renderer outlived it


def test_train_with_dataloader_workers_stopped_by_ctrl_c(ws, tmp_path):
    exp = tmp_path / "exp"
    r = _run(["train", str(ws / "train_workers.yaml"), "--exp-dir", str(exp)], group_signal=INT,
             ready=lambda: (exp / "train.log").is_file() and "step" in (exp / "train.log").read_text())
    assert r.returncode == 130, r
    _one_line(r.stderr, "train", INT)
    assert not _temps(tmp_path)


def test_experiment_forwards_the_stop_to_its_training_subprocesses(ws, tmp_path):
    """SIGTERM to the experiment alone: its `jeffreys train` children get it too and clean up."""
    cfg = yaml.safe_load((ws / "exp.yaml").read_text())
    train = yaml.safe_load((ws / "train_workers.yaml").read_text())
    train["data"]["num_workers"] = 0
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(train))
    cfg["systems"] = [{"name": n, "config": str(tmp_path / "base.yaml"), "set": {"optim.lr": lr}}
                      for n, lr in (("a", 0.1), ("b", 0.05))]
    cfg["train_jobs"] = 2
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "x"
    p = subprocess.Popen([sys.executable, "-m", "jeffreys", "experiment", str(tmp_path / "exp.yaml"), "--out", str(out), "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                         start_new_session=True, preexec_fn=_as_from_a_terminal)
    try:
        _wait(lambda: sum(1 for f in out.rglob("train.log") if "step" in f.read_text()) >= 1, p)
        p.send_signal(TERM)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 143, err
    _one_line(err, "experiment", TERM)
    assert not _temps(out)
    _group_gone(p.pid)  # no training outlived it


def _group_gone(pgid: int, grace: float = 10.0) -> None:
    """Every process of the group has exited, within ``grace`` seconds: a helper such as
    multiprocessing's resource tracker leaves a moment after its parent, on a loaded machine
    later still; a training still running then is a leak."""
    t0 = time.monotonic()
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        left = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    left.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120])
            except (OSError, IndexError, ValueError):
                continue
        if not left:  # zombies only, waiting for init to reap them
            return
        assert time.monotonic() - t0 < grace, f"outlived the command: {left}"
        time.sleep(0.05)


# ----------------------------------------------------------------------------- the rules, in this process
def _command(monkeypatch, body) -> None:
    """Register ``body`` as the command ``stoptest`` of the CLI."""
    module = type(sys)("jeffreys_stoptest")
    module.cli_stoptest = body
    monkeypatch.setitem(sys.modules, "jeffreys_stoptest", module)
    monkeypatch.setitem(cli.COMMANDS, "stoptest", ("jeffreys_stoptest", "test"))


def _busy(seconds: float = 10.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(0.001)


class _SignalsInDel:
    def __init__(self, signum: int):
        self.signum = signum

    def __del__(self):
        os.kill(os.getpid(), self.signum)
        time.sleep(0.05)  # the handler runs here, inside __del__, where Python drops exceptions


@pytest.mark.parametrize("signum", [INT, TERM, HUP])
def test_a_stop_dropped_by_python_is_raised_again(monkeypatch, capsys, signum):
    """A signal handled inside __del__ (or a fork handler): Python prints "Exception
    ignored" and goes on; the command must still stop, with its one line."""

    def body(argv):
        _SignalsInDel(signum)  # collected at once
        _busy()
        return 0

    _command(monkeypatch, body)
    assert cli.main(["stoptest"]) == 128 + signum
    _one_line(capsys.readouterr().err, "stoptest", signum)


HALF_BUILT = """
import gc, os, sys, time
from jeffreys import cli

class HalfBuilt:  # its __init__ cut short by the stop; torch's DataLoader iterator is one
    def __init__(self, signum):
        os.kill(os.getpid(), signum)
        time.sleep(10)
        self._shutdown = False

    def __del__(self):
        self._shutdown  # AttributeError: what Python prints as "Exception ignored in ..."

def body(argv):
    try:
        HalfBuilt(int(argv[0]))
    finally:
        gc.collect()
    return 0

module = type(sys)("stoptest")
module.cli_stoptest = body
sys.modules["stoptest"] = module
cli.COMMANDS["stoptest"] = ("stoptest", "test")
sys.exit(cli.main(["stoptest", sys.argv[1]]))
"""


@pytest.mark.parametrize("signum", [INT, TERM])
def test_what_a_stop_cut_short_prints_from_del_is_dropped(signum):
    """In a process of its own: pytest catches unraisable exceptions itself."""
    r = subprocess.run([sys.executable, "-c", HALF_BUILT, str(signum)], capture_output=True, text=True, timeout=60, env=ENV,
                       preexec_fn=_as_from_a_terminal)
    assert r.returncode == 128 + signum, r
    _one_line(r.stderr, "stoptest", signum)


def test_second_signal_does_not_cut_the_cleanup(monkeypatch, capsys, tmp_path):
    def body(argv):
        try:
            os.kill(os.getpid(), TERM)
            _busy()
        finally:
            os.kill(os.getpid(), INT)  # a second Ctrl-C while cleaning up
            os.kill(os.getpid(), HUP)
            _busy(0.2)
            (tmp_path / "cleaned").touch()
        return 0

    _command(monkeypatch, body)
    assert cli.main(["stoptest"]) == 143
    _one_line(capsys.readouterr().err, "stoptest", TERM)
    assert (tmp_path / "cleaned").exists()


def test_a_stop_inside_deferred_comes_after_it(monkeypatch, capsys):
    order = []

    def body(argv):
        with interrupts.deferred():
            os.kill(os.getpid(), HUP)
            _busy(0.2)
            order.append("block done")
        order.append("after")  # never reached
        return 0

    _command(monkeypatch, body)
    assert cli.main(["stoptest"]) == 129
    assert order == ["block done"]


def test_an_ignored_signal_stays_ignored(monkeypatch, capsys):
    """``nohup``: SIGHUP ignored before the command starts is not turned into a stop."""

    def body(argv):
        os.kill(os.getpid(), HUP)
        _busy(0.2)
        return 0

    _command(monkeypatch, body)
    previous = signal.signal(HUP, signal.SIG_IGN)
    try:
        assert cli.main(["stoptest"]) == 0
        assert signal.getsignal(HUP) is signal.SIG_IGN
    finally:
        signal.signal(HUP, previous)


def _die_by(signum):
    os.kill(os.getpid(), signum)


def test_a_worker_killed_by_a_stop_signal_stops_the_command(monkeypatch, capsys):
    def body(argv):
        p = mp.get_context("fork").Process(target=_die_by, args=(TERM,))
        p.start()
        p.join()
        interrupts.raise_if_stopped_by(p.exitcode)
        return 0

    _command(monkeypatch, body)
    assert cli.main(["stoptest"]) == 143
    _one_line(capsys.readouterr().err, "stoptest", TERM)


def test_forked_children_die_of_a_stop_silently(monkeypatch, capsys):
    """A child forked by a command has the default actions back: a signal to the process group
    kills it at once, without a traceback (Python's KeyboardInterrupt would print one)."""

    def body(argv):
        ctx = mp.get_context("fork")
        p = ctx.Process(target=_busy, args=(30,))
        p.start()
        time.sleep(0.3)
        os.kill(p.pid, INT)
        p.join(10)
        assert p.exitcode == -INT
        return 0

    _command(monkeypatch, body)
    assert cli.main(["stoptest"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_handlers_are_restored_after_the_command(monkeypatch):
    _command(monkeypatch, lambda argv: 0)
    before = {s: signal.getsignal(s) for s in interrupts.STOP_SIGNALS}
    assert cli.main(["stoptest"]) == 0
    assert {s: signal.getsignal(s) for s in interrupts.STOP_SIGNALS} == before
    assert not interrupts.active()


def test_a_killed_conversion_workers_temporary_is_removed_by_the_rerun(tmp_path):
    """`prepare convert` writes each file from a worker process; a worker killed by a signal
    (the default action, no cleanup) leaves its temporary, named after its dead process,
    which the next conversion of the same file removes."""
    import soundfile as sf

    from jeffreys.corpora.convert import convert_datadir
    from jeffreys.data.datadir import write_datadir
    from jeffreys.fileio import _HOST

    wav = {}
    for i in range(2):
        sf.write(tmp_path / f"u{i}.wav", np.zeros(1600, np.float32), 16000)
        wav[f"u{i}"] = str(tmp_path / f"u{i}.wav")
    src = write_datadir(tmp_path / "src", wav, {"u0": "s0", "u1": "s1"})
    audio = tmp_path / "audio"
    convert_datadir(src, tmp_path / "dst", audio, jobs=1)
    target = audio / "s0" / "u0.flac"
    target.unlink()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = target.with_name(f".{target.name}.tmp-{_HOST}-{dead.pid}-0badc0de")
    stale.write_bytes(b"half a file")
    convert_datadir(src, tmp_path / "dst", audio, jobs=1, overwrite=True)
    assert target.is_file() and not stale.exists() and not _temps(tmp_path)
