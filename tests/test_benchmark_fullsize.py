"""benchmarks/fullsize.py at a tiny scale: the stand-ins have the published layouts and trial
lists of existing files, every measured command ran, and the JSON holds times, peak memory
and growth exponents. Structure only; no timing is judged."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "fullsize.py"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("fullsize")
    r = subprocess.run([sys.executable, str(SCRIPT), "--scale", "0.0005", "0.001", "--stages", "prepare", "score", "metrics",
                        "--work", str(work), "--keep", "--markdown", str(work / "table.md")],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    return json.loads(r.stdout), work


def test_json_has_every_measurement_with_times_memory_and_exponents(run):
    report, work = run
    assert report["benchmark"] == "fullsize" and report["errors"] == []
    assert report["machine"]["cpus"] and report["machine"]["torch"] and report["machine"]["python"]
    assert {s: set(m) for s, m in report["stages"].items()} == {
        "prepare": {"voxceleb1", "voxceleb2"}, "score": {"cosine", "asnorm"}, "metrics": {"plain", "ci"}}
    for measures in report["stages"].values():
        for m in measures.values():
            assert [r["scale"] for r in m["runs"]] == [0.0005, 0.001] and m["baseline"]["scale"] == 0.0001
            for r in m["runs"] + [m["baseline"]]:
                assert r["rc"] == 0 and r["wall_s"] > 0 and r["cpu_s"] >= 0 and r["peak_rss_mb"] > 5 and r["n"] > 0
            assert m["runs"][1]["n"] > m["runs"][0]["n"]
            assert isinstance(m["exponents"]["wall"], float) and isinstance(m["exponents"]["cpu"], float)
            assert set(m["exponents"]) == {"time", "wall", "cpu", "wall_above_baseline", "cpu_above_baseline",
                                           "peak_rss_above_baseline"}
    prep = report["stages"]["prepare"]
    assert [r["utterances_written"] for r in prep["voxceleb2"]["runs"]] == [546, 1092]
    assert report["stand_ins"]["0.001"]["trials"] == {"O": 38, "E": 580, "H": 551}
    assert (work / "table.md").read_text().count("\n") == 2 + 6


def test_stand_ins_have_the_published_layout_and_lists_of_existing_files(run):
    _, work = run
    corpus = work / "scale-0.001" / "corpus"
    wavs = sorted((corpus / "vox1" / "wav").glob("id*/*/*.wav"))
    m4as = sorted((corpus / "vox2" / "dev" / "aac").glob("id*/*/*.m4a"))
    assert len(wavs) == 154 and len(m4as) == 1092
    assert all(p.stat().st_nlink > 1 for p in wavs[:5] + m4as[:5])  # hard links, not copies
    assert m4as[0].read_bytes()[4:8] == b"ftyp"  # an MP4 container (AAC encoded by PyAV)
    for name, n in (("veri_test2.txt", 38), ("list_test_all2.txt", 580), ("list_test_hard2.txt", 551)):
        lines = (corpus / "vox1" / name).read_text().splitlines()
        assert len(lines) == n and len(set(lines)) == n
        rows = [line.split(" ") for line in lines]
        assert {r[0] for r in rows} == {"0", "1"} and all(len(r) == 3 for r in rows)
        assert all((corpus / "vox1" / "wav" / p).is_file() for r in rows for p in r[1:])
        assert all((r[1].split("/")[0] == r[2].split("/")[0]) == (r[0] == "1") for r in rows)
        if name == "veri_test2.txt":  # Vox1-O: the test speakers only
            assert all(10270 <= int(p[2:7]) <= 10309 for r in rows for p in r[1:])
    # what score and metrics read is what `jeffreys prepare voxceleb1` wrote
    assert (work / "scale-0.001" / "score" / "trials_E").read_bytes() == \
        (work / "scale-0.001" / "prepared-voxceleb1" / "trials_E").read_bytes()


def test_trial_pairs_are_distinct_and_half_targets():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import fullsize
    finally:
        sys.path.remove(str(SCRIPT.parent))
    rng = np.random.default_rng(0)
    spk = np.repeat(np.arange(50), 20)
    pairs = fullsize._pairs(spk, np.arange(len(spk)), 4000, rng)
    assert len(pairs) == 4000 and len({tuple(p) for p in pairs.tolist()}) == 4000
    assert (pairs[:, 0] != pairs[:, 1]).all()
    assert (spk[pairs[:, 0]] == spk[pairs[:, 1]]).sum() == 2000
    c = fullsize.counts(1.0)
    assert c["vox2"] == {"speakers": 5994, "videos": 145569, "utterances": 1092009}
    assert c["trials"] == {"O": 37611, "E": 579818, "H": 550894} and c["vox1"]["utterances"] == 153516


def test_linker_copies_a_source_when_the_link_limit_is_reached(tmp_path, monkeypatch):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import fullsize
    finally:
        sys.path.remove(str(SCRIPT.parent))
    srcs = []
    for i in range(2):
        srcs.append(tmp_path / f"s{i}.wav")
        srcs[-1].write_bytes(bytes([i]) * 10)
    link, calls = os.link, {}

    def limited(src, dst):  # a file system that allows 3 links per file
        calls[str(src)] = calls.get(str(src), 0) + 1
        if calls[str(src)] > 3:
            raise OSError(errno.EMLINK, "Too many links")
        link(src, dst)

    monkeypatch.setattr(fullsize.os, "link", limited)
    linker = fullsize.Linker(srcs, tmp_path / "sources")
    for i in range(10):
        linker.link(tmp_path / f"f{i}.wav", i)
    assert linker.copies >= 2
    assert [(tmp_path / f"f{i}.wav").read_bytes() for i in range(10)] == [bytes([i % 2]) * 10 for i in range(10)]
