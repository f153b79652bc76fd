"""`jeffreys prepare mbrola`: the voice table, the packages' layout, the splits and trial lists,
determinism, and refusals. Synthesis itself needs Debian's libespeak-ng and the MBROLA
databases (recipes/realvoices/fetch.sh --mbrola); here a stand-in synthesiser replaces it, and
one test runs the real one where JEFFREYS_MBROLA_ROOT points at the unpacked packages."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from jeffreys.corpora import mbrola
from jeffreys.corpora.synth import available_languages
from jeffreys.data.datadir import read_datadir
from jeffreys.data.trials import read_trials
from jeffreys.errors import InputError

needs_cc = pytest.mark.skipif(shutil.which(os.environ.get("CC") or "cc") is None, reason="no C compiler")


def fake_root(tmp: Path, voices=("us1", "us3", "en1", "de2", "de5", "fr2", "af1")) -> Path:
    """The packages' layout with placeholder files (the stand-in synthesiser reads none)."""
    root = tmp / "root"
    lib = root / "usr/lib/x86_64-linux-gnu"
    for p in (root / "usr/bin/mbrola", lib / "libespeak-ng.so.1", lib / "libsonic.so.0",
              lib / "espeak-ng-data/phontab"):  # fmt: skip
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    (lib / "espeak-ng-data/mbrola_ph").mkdir(parents=True)
    (lib / "espeak-ng-data/voices/mb").mkdir(parents=True)
    table = {v.name: v for v in mbrola.manifest()}
    for name in voices:
        db = root / "usr/share/mbrola" / name / name
        db.parent.mkdir(parents=True)
        db.write_bytes(b"db")
        (lib / "espeak-ng-data/voices/mb" / table[name].espeak).write_text(f"name x\nmbrola {name} {name}_phtrans\n")
        (lib / "espeak-ng-data/mbrola_ph" / f"{name}_phtrans").write_bytes(b"t")
    return root


class FakeEspeak:
    """A voice = a fixed pair of tones; the text sets the length, the prosody the pitch."""

    sample_rate = 22050

    def __init__(self, name: str, silent: bool = False):
        self.base = 90 + int(hashlib.sha256(name.encode()).hexdigest()[:4], 16) % 120
        self.silent = silent

    def voice_sample_rate(self) -> int:
        return 16000

    def synth(self, text, *, rate=175, pitch=50, pitch_range=50, wordgap=0, seed=0):
        n = int(16000 * len(text) / 15 * 175 / rate)
        t = np.arange(n) / 16000
        f0 = self.base * (1 + (pitch - 50) / 200)
        x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 3.1 * f0 * t)
        return np.zeros(n, np.int16) if self.silent else np.round(x * 32767).astype(np.int16)


@pytest.fixture
def fake_synth(monkeypatch):
    monkeypatch.setattr(mbrola, "synthesiser", lambda job: FakeEspeak(job.voice.name))


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "wav.scp"}  # fmt: skip


def test_shipped_table_splits_voices_apart():
    voices = mbrola.manifest()
    assert len(voices) == 60 and len({v.name for v in voices}) == 60
    assert {v.text for v in voices} <= set(available_languages())
    by = {s: [v for v in voices if v.split == s] for s in mbrola.SPLITS}
    assert [len(by[s]) for s in mbrola.SPLITS] == [44, 6, 10]
    assert sorted(v.gender for v in by["eval"]) == ["f"] * 5 + ["m"] * 5
    # a voice reading English with its own diphones is driven by its -en espeak voice
    assert all(v.espeak == f"mb-{v.name}" or (v.espeak == f"mb-{v.name}-en" and v.text == "en") for v in voices)


@pytest.mark.parametrize("row", ["us1\ten\tmb-us1\tx\ttrain\tEnglish", "us1\ten\tmb-us1\tf\ttest\tEnglish",
                                 "us1\ten\tmb-us1\tf\ttrain", "u/1\ten\tmb-us1\tf\ttrain\tEnglish"])  # fmt: skip
def test_bad_table_rows_are_refused_with_their_line(row):
    with pytest.raises(InputError, match=r"mbrola.tsv:2: expected"):
        mbrola.read_manifest("# header\n" + row + "\n")
    with pytest.raises(InputError, match=r":3: .*a voice once"):
        mbrola.read_manifest("# h\nus1\ten\tmb-us1\tf\ttrain\tE\nus1\ten\tmb-us1\tf\ttrain\tE\n")


@pytest.mark.parametrize("missing, package", [("usr/bin/mbrola", "mbrola"),
                                              ("usr/lib/x86_64-linux-gnu/libespeak-ng.so.1", "libespeak-ng1"),
                                              ("usr/lib/x86_64-linux-gnu/libsonic.so.0", "libsonic0"),
                                              ("usr/lib/x86_64-linux-gnu/espeak-ng-data/mbrola_ph", "espeak-ng-data"),
                                              ("usr/share/mbrola/de2/de2", "mbrola-de2"),
                                              ("usr/lib/x86_64-linux-gnu/espeak-ng-data/mbrola_ph/us3_phtrans",
                                               "espeak-ng-data")])  # fmt: skip
def test_a_missing_package_is_named_in_one_line_and_nothing_is_written(tmp_path, missing, package):
    root = fake_root(tmp_path)
    p = root / missing
    shutil.rmtree(p) if p.is_dir() else p.unlink()
    r = subprocess.run([sys.executable, "-m", "jeffreys", "prepare", "mbrola", str(root), str(tmp_path / "out"),
                        "--voices", "us1,de2,us3,en1"], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2
    err = [x for x in r.stderr.splitlines() if "error" in x]
    assert len(err) == 1 and f"package {package}" in err[0], r.stderr
    assert not (tmp_path / "out").exists()


def test_bad_options_are_refused(tmp_path):
    root = fake_root(tmp_path)
    with pytest.raises(InputError, match="unknown voice 'zz9'"):
        mbrola.prepare_mbrola(root, tmp_path / "o", voices=["us1", "zz9"])
    with pytest.raises(InputError, match=r"--train-voices must lie in \[0, 3\]"):
        mbrola.prepare_mbrola(root, tmp_path / "o", voices=["us1", "de2", "af1", "us3"], train_voices=4)
    with pytest.raises(InputError, match="--eval-utts-per-voice >= 2"):
        mbrola.prepare_mbrola(root, tmp_path / "o", eval_utts_per_voice=1)
    assert not (tmp_path / "o").exists()


@needs_cc
def test_splits_trials_and_info(tmp_path, fake_synth, capsys):
    root = fake_root(tmp_path)
    info = mbrola.prepare_mbrola(root, tmp_path / "out", utts_per_voice=4, eval_utts_per_voice=3, min_dur=1.0,
                                 max_dur=2.0, jobs=2, voices=["us1", "us3", "en1", "de2", "de5", "fr2", "af1"])  # fmt: skip
    out = tmp_path / "out"
    assert "mbrola: wrote" in capsys.readouterr().out
    spk = {s: set(read_datadir(out / s).spk2utt) for s in mbrola.SPLITS}
    assert spk == {"train": {"mbrola_us1", "mbrola_de2", "mbrola_af1"}, "dev": {"mbrola_en1"},
                   "eval": {"mbrola_us3", "mbrola_de5", "mbrola_fr2"}}  # fmt: skip
    assert json.loads((out / "info.json").read_text())["kind"] == "diphone" == info["kind"]
    ev = read_datadir(out / "eval")
    assert len(ev.utt2spk) == 9
    tr = read_trials(out / "eval" / "trials")
    assert len(tr.label) == 9 * 8 // 2 and int(tr.label.sum()) == 3 * 3
    same = read_trials(out / "eval" / "trials_same_gender")  # de5 and fr2 are women, us3 a man
    assert len(same.label) == 3 + 3 + 3 + 9 and int(same.label.sum()) == 9
    assert not (out / "eval" / "trials_cross_lang").exists()  # one language per voice
    assert (out / "eval" / "spk2gender").read_text() == "mbrola_de5 f\nmbrola_fr2 f\nmbrola_us3 m\n"
    assert "mbrola_af1-001 en" in (out / "train" / "utt2lang").read_text()
    for u, path in read_datadir(out / "train").wav.items():
        x, fs = sf.read(path)
        assert fs == 16000 and 1.0 <= x.size / fs <= 2.0 + 1e-3 and np.abs(x).max() > 0.01
    assert not (out / ".mbrola").exists()


@needs_cc
def test_output_depends_on_seed_only_and_subsets_keep_held_out_voices(tmp_path, fake_synth):
    root = fake_root(tmp_path)
    kw = dict(utts_per_voice=2, eval_utts_per_voice=2, min_dur=1.0, max_dur=1.5)
    mbrola.prepare_mbrola(root, tmp_path / "a", jobs=1, voices=["us1", "de2", "af1", "us3", "en1"], **kw)
    mbrola.prepare_mbrola(root, tmp_path / "b", jobs=2, voices=["us1", "de2", "af1", "us3", "en1"], **kw)
    a, b = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert a == b
    mbrola.prepare_mbrola(root, tmp_path / "c", voices=["us1", "de2", "af1", "us3", "en1"], train_voices=1, **kw)
    c = digests(tmp_path / "c")
    assert len(read_datadir(tmp_path / "c" / "train").spk2utt) == 1
    held_out = {k: v for k, v in a.items() if k.startswith(("eval/", "dev/", "wav/eval/", "wav/dev/"))}
    assert held_out and all(c[k] == v for k, v in held_out.items())
    mbrola.prepare_mbrola(root, tmp_path / "d", voices=["us1", "de2", "af1", "us3", "en1"], seed=1, **kw)
    assert digests(tmp_path / "d")["wav/eval/mbrola_us3/mbrola_us3-001.wav"] != a["wav/eval/mbrola_us3/mbrola_us3-001.wav"]


@needs_cc
def test_a_voice_that_gives_no_audio_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(mbrola, "synthesiser", lambda job: FakeEspeak(job.voice.name, silent=job.voice.name == "de2"))
    root = fake_root(tmp_path)
    with pytest.raises(InputError, match="mbrola-de2: no audio came out of mbrola"):
        mbrola.prepare_mbrola(root, tmp_path / "out", voices=["us1", "de2", "us3", "en1"], utts_per_voice=1,
                              eval_utts_per_voice=2, min_dur=1.0, max_dur=1.2)  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_the_database_rate_is_what_the_mbrola_binary_writes(tmp_path):
    root = fake_root(tmp_path)
    fake = root / "usr/bin/mbrola"  # a stand-in binary: writes 0.1 s of silence at 22050 Hz
    fake.write_text(f"#!{sys.executable}\nimport sys, numpy, soundfile\n"
                    "soundfile.write(sys.argv[-1], numpy.zeros(2205), 22050)\n")  # fmt: skip
    fake.chmod(0o755)
    lay, voice = mbrola.Layout.find(root), {v.name: v for v in mbrola.manifest()}["us1"]
    assert mbrola.database_rate(lay, voice, tmp_path) == 22050
    fake.write_text("#!/bin/sh\nexit 1\n")
    assert mbrola.database_rate(lay, voice, tmp_path) == 0  # never equal to espeak-ng's rate: refused


def test_the_libpcaudio_stand_in_builds_and_defines_what_libespeak_ng_needs(tmp_path):
    if shutil.which("cc") is None or shutil.which("nm") is None:
        pytest.skip("no cc or nm")
    lib = mbrola.build_stub(tmp_path)
    syms = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True).stdout
    for name in ("create_audio_device_object", "audio_object_open", "audio_object_close", "audio_object_destroy",
                 "audio_object_write", "audio_object_drain", "audio_object_flush", "audio_object_strerror"):  # fmt: skip
        assert f" T {name}\n" in syms
    soname = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True).stdout
    assert "libpcaudio.so.0" in soname


@pytest.mark.skipif(not os.environ.get("JEFFREYS_MBROLA_ROOT"), reason="set JEFFREYS_MBROLA_ROOT to the unpacked packages")
def test_real_mbrola_voices_are_the_same_bytes_on_every_run(tmp_path):
    root = os.environ["JEFFREYS_MBROLA_ROOT"]
    kw = dict(voices=["us1", "tr2", "us3", "en1"], utts_per_voice=6, eval_utts_per_voice=2)  # tr2: a 22050 Hz database
    mbrola.prepare_mbrola(root, tmp_path / "a", **kw)
    mbrola.prepare_mbrola(root, tmp_path / "b", jobs=1, **kw)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    for u, path in read_datadir(tmp_path / "a" / "train").wav.items():
        x, fs = sf.read(path)
        assert fs == 16000 and np.abs(x).max() > 0.01


@pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("dpkg") is None, reason="needs dpkg")
def test_fetch_reads_contrib_and_non_free_through_a_private_apt_configuration(tmp_path):
    """recipes/realvoices/fetch.sh --mbrola with a stand-in apt-get on PATH (it records its
    arguments and builds a one-file .deb per package asked for): the private configuration
    names contrib and non-free, every voice of mbrola.tsv is asked for, and all is unpacked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    (bin_dir / "apt-get").write_text(f"""#!/bin/sh
echo "$@" >> {log}
for a in "$@"; do [ "$a" = update ] && exit 0; done
seen=0
for a in "$@"; do
  if [ $seen = 1 ]; then
    d=$(mktemp -d); mkdir -p "$d/DEBIAN" "$d/usr/share/fake"
    printf 'Package: %s\\nVersion: 1\\nArchitecture: all\\nMaintainer: x <x@x>\\nDescription: x\\n' "$a" > "$d/DEBIAN/control"
    echo "$a" > "$d/usr/share/fake/$a"
    dpkg-deb --build "$d" "${{a}}_1_all.deb" > /dev/null; rm -rf "$d"
  fi
  [ "$a" = download ] && seen=1
done
exit 0
""")
    (bin_dir / "apt-get").chmod(0o755)
    fetch = Path(__file__).parents[1] / "recipes/realvoices/fetch.sh"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SUITE": "bookworm"}
    if not Path("/usr/share/keyrings/debian-archive-keyring.gpg").is_file():
        pytest.skip("no Debian archive keyring")
    r = subprocess.run(["bash", str(fetch), "--mbrola", str(tmp_path / "f")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    sources = (tmp_path / "f/apt/sources.list").read_text()
    assert sources.startswith("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ")
    assert sources.split()[-4:] == ["bookworm", "main", "contrib", "non-free"]
    assert all(f"Dir::Etc::SourceList={tmp_path / 'f/apt/sources.list'}" in c for c in calls)
    asked = calls[-1].split()
    wanted = {f"mbrola-{v.name}" for v in mbrola.manifest()} | {"mbrola", "libespeak-ng1", "libsonic0", "espeak-ng-data"}
    assert wanted <= set(asked) and not any("asterisk" in a for a in asked)
    assert {p.name for p in (tmp_path / "f/root/usr/share/fake").iterdir()} >= wanted
    # a second run downloads nothing and unpacks again
    r = subprocess.run(["bash", str(fetch), "--mbrola", str(tmp_path / "f")], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and not any("download" in c for c in log.read_text().splitlines()[len(calls):])


class _Pho:
    """An espeak-ng stand-in for Renderer: the .pho it would write, or "" (its formant fallback)."""

    def __init__(self, pho: str):
        self.text = pho

    def pho(self, text, **prosody):
        return self.text


def test_the_renderer_refuses_a_voice_espeak_ng_did_not_drive_and_a_failing_mbrola(tmp_path):
    root = fake_root(tmp_path)
    lay, voice = mbrola.Layout.find(root), {v.name: v for v in mbrola.manifest()}["us1"]
    with pytest.raises(InputError, match="mbrola-us1: espeak-ng made no MBROLA input .*fell back"):
        mbrola.Renderer(_Pho(""), lay, voice, 16000).synth("hello")
    fake = root / "usr/bin/mbrola"  # stand-ins: one fails, one echoes 0.1 s of raw samples
    fake.write_text("#!/bin/sh\necho 'Fatal error in line 1: weird phoneme' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(InputError, match=r"mbrola-us1: mbrola failed \(exit 3\): .*weird phoneme"):
        mbrola.Renderer(_Pho("_ 100\n"), lay, voice, 16000).synth("hello")
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.stdin.read(); sys.stdout.buffer.write(bytes(3200))\n")
    x = mbrola.Renderer(_Pho("_ 100\n"), lay, voice, 16000).synth("hello")
    assert x.dtype == np.int16 and x.size == 1600
