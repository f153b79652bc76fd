"""Progress of `jeffreys prepare` on stderr (a first line before any file is visited, then
updates throttled by time), the scan's file rules, and header reading in a process pool by
default."""

from __future__ import annotations

import inspect
import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import replicas
import soundfile as sf

from jeffreys.cli import main
from jeffreys.corpora import _common, _progress, prepare_voxceleb2
from jeffreys.errors import InputError


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recorder(io.StringIO):
    """A stream noting the fake time of each line written."""

    def __init__(self, clock: FakeClock):
        super().__init__()
        self.clock, self.lines = clock, []

    def write(self, s: str) -> int:
        self.lines += [(self.clock.now, line) for line in s.splitlines() if line]
        return super().write(s)


def tree(root: Path, n_dirs: int, per_dir: int) -> list[str]:
    """``root/idNNNNN/vid/NNNNN.m4a`` (empty files: the scan reads names and types only)."""
    rels = []
    for i in range(n_dirs):
        d = root / f"id{i:05d}" / "vid"
        d.mkdir(parents=True)
        for k in range(per_dir):
            (d / f"{k:05d}.m4a").touch()
            rels.append(f"id{i:05d}/vid/{k:05d}.m4a")
    return rels


def test_scan_reports_at_once_then_once_per_interval(tmp_path, monkeypatch):
    root = tmp_path / "aac"
    rels = tree(root, 40, 3)
    clock = FakeClock()
    out = Recorder(clock)
    seen_before_first_listing = []
    real_entries = _common._entries

    def slow_entries(path):  # a slow file system: 0.3 s per folder listed
        if not seen_before_first_listing:
            seen_before_first_listing.append(list(out.lines))
        clock.now += 0.3
        return real_entries(path)

    monkeypatch.setattr(_common, "_entries", slow_entries)
    with _progress.reporting("voxceleb2", stream=out, live=False, defer=0, clock=clock):
        found = list(_common.scan_tree(root, ".m4a", "voxceleb2", "audio"))
    assert ["/".join(f.rel) for f in found] == rels
    # the first line came before any folder was listed
    assert seen_before_first_listing[0] == [(0.0, f"prepare voxceleb2: scanning {root} for .m4a files")]
    updates = [t for t, line in out.lines if ": scanned: " in line]
    span = clock.now  # 81 listings (root, 40 speakers, 40 videos): 24.3 s
    assert span > 20 and updates[0] <= 1.0 + 0.3
    gaps = [b - a for a, b in zip(updates, updates[1:])]
    assert all(1.0 <= g <= 1.0 + 0.3 + 1e-9 for g in gaps), gaps  # at most one a second, and at least one
    assert span - updates[-1] <= 1.3
    assert out.lines[-2:] == [(span, f"prepare voxceleb2: found 120 .m4a files in {root}"), (span, "prepare voxceleb2: done in 24 s")]


def test_quiet_and_deferred_output(tmp_path, monkeypatch, capsys):
    src = tmp_path / "vox2"
    n = len(replicas.voxceleb2(src))
    # off a terminal, a run shorter than DEFER_S prints nothing on stderr (as before)
    assert main(["prepare", "voxceleb2", str(src), str(tmp_path / "a"), "--no-durations"]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(_progress, "DEFER_S", 0.0)
    assert main(["prepare", "voxceleb2", str(src), str(tmp_path / "b"), "--no-durations"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [f"prepare voxceleb2: {src} -> {tmp_path / 'b'}", f"prepare voxceleb2: scanning {src / 'dev/aac'} for .m4a files"]
    assert f"prepare voxceleb2: found {n} .m4a files in {src / 'dev/aac'}" in err
    assert main(["prepare", "voxceleb2", str(src), str(tmp_path / "c"), "--no-durations", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    with _progress.quiet():
        prepare_voxceleb2(src, tmp_path / "d", measure_durations=False)
    assert capsys.readouterr().err == ""
    # a refusal after progress lines: the error is the last line, alone
    (src / "dev/aac/id00012/stray.m4a").touch()
    assert main(["prepare", "voxceleb2", str(src), str(tmp_path / "e"), "--no-durations"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("jeffreys prepare: error: ") and "expected idXXXXX/VIDEO/NNNNN.m4a" in err[-1]
    assert all(line.startswith("prepare voxceleb2: ") for line in err[:-1]) and len(err) >= 3


def _on_a_terminal(argv: list[str]) -> tuple[int, str, str]:
    """(status, stdout, stderr as a terminal shows it) of ``jeffreys ARGV`` whose stderr is a pty."""
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "jeffreys", *argv], stdout=subprocess.PIPE, stderr=slave,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    os.close(slave)
    chunks, t0 = [], time.monotonic()
    while time.monotonic() - t0 < 120:
        if select.select([master], [], [], 0.1)[0]:
            try:
                data = os.read(master, 65536)
            except OSError:  # the other end closed
                break
            if not data:
                break
            chunks.append(data)
        elif p.poll() is not None:
            break
    out = p.communicate(timeout=60)[0]
    os.close(master)
    return p.returncode, out.decode(), b"".join(chunks).decode().replace("\r\n", "\n")


def test_on_a_terminal_lines_come_at_once_and_end_before_an_error(tmp_path):
    src = tmp_path / "vox2"
    n = len(replicas.voxceleb2(src))
    rc, out, err = _on_a_terminal(["prepare", "voxceleb2", str(src), str(tmp_path / "a")])
    assert rc == 0 and "voxceleb2: wrote" in out
    lines = [line.rsplit("\r", 1)[-1].replace("\x1b[K", "") for line in err.split("\n")]  # what stays on screen
    assert lines[:2] == [f"prepare voxceleb2: {src} -> {tmp_path / 'a'}", f"prepare voxceleb2: scanning {src / 'dev/aac'} for .m4a files"]
    found, reading = f"prepare voxceleb2: found {n} .m4a files in {src / 'dev/aac'}", f"prepare voxceleb2: durations: {n} files, one process"
    assert lines.index(found) < lines.index(reading)
    (src / "dev/aac/id00012/stray.m4a").touch()
    rc, _, err = _on_a_terminal(["prepare", "voxceleb2", str(src), str(tmp_path / "b")])
    # the scan's live line is ended: the error starts a line of its own
    assert rc == 2 and "\njeffreys prepare: error: " in err and err.endswith("\n")


def test_scan_keeps_the_rules_of_sorted_rglob_is_file(tmp_path):
    root = tmp_path / "r"
    for rel in ("b/x.m4a", "a/z/y.m4a", "a/y.m4a", "a-b/w.m4a", ".h/.x.m4a", "c/X.M4A", "c/d.m4a.txt", ".m4a"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    (root / "dir.m4a").mkdir()  # a folder named like a file: not a file
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.m4a").touch()
    (root / "link_dir").symlink_to(outside, target_is_directory=True)  # not followed
    (root / "b/link.m4a").symlink_to(outside / "o.m4a")  # a link to a file counts, resolved
    (root / "b/broken.m4a").symlink_to(tmp_path / "nowhere.m4a")
    found = list(_common.scan_tree(root, ".m4a", "voxceleb2", "audio"))
    # sorted by components ("a/z" before "a-b", whatever '/' < '-' says), hidden files kept
    assert [f.rel for f in found] == [
        (".h", ".x.m4a"), (".m4a",), ("a", "y.m4a"), ("a", "z", "y.m4a"), ("a-b", "w.m4a"), ("b", "link.m4a"), ("b", "x.m4a"),
    ]
    assert [f.path for f in found] == [str(root.joinpath(*f.rel).resolve()) for f in found]
    assert found[5].path == str(outside / "o.m4a")
    assert _common.files_under(root, ".m4a", "voxceleb2", "audio") == [root.joinpath(*f.rel) for f in found]
    with pytest.raises(InputError, match=r"no \.flac files found \(audio\)"):
        _common.files_under(root, ".flac", "sitw", "audio")
    with pytest.raises(InputError, match="not found"):
        _common.files_under(tmp_path / "absent", ".m4a", "voxceleb2", "audio")
    deep = tmp_path / "deep"
    leaf = deep.joinpath(*["d"] * 400)
    leaf.mkdir(parents=True)
    (leaf / "u.wav").touch()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 100)  # the tree is deeper: the walk must not recurse
    try:
        found = [len(f.rel) for f in _common.scan_tree(deep, ".wav", "tedx", "audio")]
    finally:
        sys.setrecursionlimit(limit)
    assert found == [401]


class FakePool:
    """A process pool that maps in this process and notes how it was made."""

    made: list[int] = []

    def __init__(self, jobs: int):
        FakePool.made.append(jobs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items, chunksize=1):
        return map(fn, items)


def _vox1(tmp_path):
    replicas.voxceleb1(tmp_path / "src")
    return ["voxceleb1", tmp_path / "src"]


def _vox2(tmp_path):
    replicas.voxceleb2(tmp_path / "src")
    return ["voxceleb2", tmp_path / "src"]


def _sitw(tmp_path):
    replicas.sitw(tmp_path / "src")
    return ["sitw", tmp_path / "src", "--split", "dev"]


def _sdsv(tmp_path):
    replicas.sdsv(tmp_path / "src", keyed=True)
    return ["sdsv", tmp_path / "src"]


def _tedx(tmp_path):
    replicas.tedx(tmp_path / "src")
    return ["tedx", tmp_path / "src", "--n-target", "1", "--n-nontarget", "1"]


def _musan(tmp_path):
    replicas.musan(tmp_path / "src")
    return ["musan", tmp_path / "src", "--parts", "noise"]


def _rirs(tmp_path):
    replicas.rirs(tmp_path / "src")
    return ["rirs", tmp_path / "src"]


def _folder(tmp_path):
    for spk in ("a", "b"):
        (tmp_path / "src" / spk).mkdir(parents=True)
        sf.write(tmp_path / "src" / spk / "u.wav", [0.0] * 1600, 16000)
    return ["folder", tmp_path / "src"]


@pytest.mark.parametrize("make", [_vox1, _vox2, _sitw, _sdsv, _tedx, _musan, _rirs, _folder], ids=lambda f: f.__name__[1:])
def test_durations_go_through_the_pool_by_default(make, tmp_path, monkeypatch):
    """Without --jobs, a corpus above PARALLEL_ABOVE files is read by default_jobs() processes."""
    name, *args = make(tmp_path)
    monkeypatch.setattr(_common, "ProcessPoolExecutor", FakePool)
    monkeypatch.setattr(_common, "default_jobs", lambda: 3)
    monkeypatch.setattr(FakePool, "made", [])
    assert main(["prepare", name, *map(str, args), str(tmp_path / "small")]) == 0
    assert FakePool.made == []  # a few files: read here, no processes started
    monkeypatch.setattr(_common, "PARALLEL_ABOVE", 2)
    assert main(["prepare", name, *map(str, args), str(tmp_path / "large")]) == 0
    assert FakePool.made == [3]  # --jobs defaults to default_jobs()
    sub = "noise" if name == "musan" else ""
    for table in ("utt2dur", "wav.scp"):
        assert (tmp_path / "small" / sub / table).read_text() == (tmp_path / "large" / sub / table).read_text()


def test_durations_default_jobs_and_threshold(monkeypatch):
    calls = []
    monkeypatch.setattr(_common, "ProcessPoolExecutor", FakePool)
    monkeypatch.setattr(FakePool, "made", [])
    monkeypatch.setattr(_common, "default_jobs", lambda: 5)
    monkeypatch.setattr(_common, "_duration", lambda p: calls.append(p) or 1.0)
    wav = {f"u{i}": f"/x/{i}.wav" for i in range(10)}
    monkeypatch.setattr(_common, "PARALLEL_ABOVE", 10)
    assert _common.durations(wav, skip=False) == dict.fromkeys(wav, 1.0) and FakePool.made == [5]
    monkeypatch.setattr(_common, "PARALLEL_ABOVE", 11)
    assert _common.durations(wav, skip=False) == dict.fromkeys(wav, 1.0) and FakePool.made == [5]  # below: no pool
    assert _common.durations(wav, skip=False, jobs=1) is not None and FakePool.made == [5]  # --jobs 1: none
    assert _common.durations(wav, skip=True) is None
    assert len(calls) == 30
