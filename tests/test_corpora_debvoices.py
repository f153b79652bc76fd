"""`jeffreys prepare debvoices`: a miniature replica of the Debian packages' published layouts
(tiny generated ogg/wav files with the real naming scheme), prepared through the CLI in a
subprocess and checked against the shipped speaker table and a brute-force pair list."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from jeffreys.corpora import debvoices
from jeffreys.data.datadir import read_datadir
from jeffreys.data.trials import read_trials
from jeffreys.errors import InputError

SR = 16000
FILLETS = "usr/share/games/fillets-ng/sound"
TUX = "usr/share/tuxpaint/stamps"
KAJ = "usr/share/kajongg/voices"
KLET = "usr/share/klettres"
FEST = "usr/share/festival/voices/russian/msu_ru_nsh_clunits/wav"

_n = 0


def audio(path: Path, seconds: float = 0.6) -> Path:
    """A distinct noise burst (ogg by suffix, else wav); 0 s writes a header without samples."""
    global _n
    _n += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    x = (np.random.default_rng(_n).standard_normal(int(seconds * SR)) * 0.1).astype(np.float32)
    sf.write(path, x, SR)
    return path




def replica(root: Path) -> dict[str, tuple[str, str]]:
    """The packages' layouts in miniature; returns the files expected in DST (path -> speaker, lang)."""
    kept: dict[str, tuple[str, str]] = {}

    def keep(rel: str, spk: str, lang: str, seconds: float = 0.6) -> None:
        audio(root / rel, seconds)
        kept[rel] = (spk, lang)

    for lang in ("cs", "nl"):
        for level, prefix in (("city", "vit"), ("share/borejokes", "bore")):
            keep(f"{FILLETS}/{level}/{lang}/{prefix}-m-hlava.ogg", f"fillets_{lang}_small", lang)
            keep(f"{FILLETS}/{level}/{lang}/{prefix}-v-proc.ogg", f"fillets_{lang}_big", lang)
        audio(root / f"{FILLETS}/city/{lang}/vit-hs-klid1.ogg")  # a non-player character
        audio(root / f"{FILLETS}/city/{lang}/v-vyrobil.ogg")  # no LEVEL- prefix: not LEVEL-v-WORD
        keep(f"{FILLETS}/city/{lang}/vit-v-dlouhe-slovo.ogg", f"fillets_{lang}_big", lang)
    audio(root / f"{FILLETS}/gems/nl/zav-v-sto.ogg", 0.0)  # the package's empty recordings
    for lang in ("be", "bg", "ca", "da", "el", "es", "fr", "ro", "ru"):
        keep(f"{TUX}/town/houses/house_desc_{lang}.ogg", f"tuxpaint_{lang}", lang)
        keep(f"{TUX}/food/fruit/cartoon/pear_desc_{lang}.ogg", f"tuxpaint_{lang}", lang)
        audio(root / f"{TUX}/symbols/math/one_desc_{lang}.ogg")  # numbers: other voices
        audio(root / f"{TUX}/symbols/alphabets/a_desc_{lang}.ogg")
        if lang in ("fr", "ca"):
            audio(root / f"{TUX}/animals/birds/owl_desc_{lang}.ogg")
        else:
            keep(f"{TUX}/animals/birds/owl_desc_{lang}.ogg", f"tuxpaint_{lang}", lang)
    audio(root / f"{TUX}/town/houses/house.ogg")  # a sound effect, not a description
    (root / f"{TUX}/town/houses/hut_desc_es.ogg").write_bytes((root / f"{TUX}/town/houses/house_desc_es.ogg").read_bytes())
    audio(root / f"{TUX}/town/houses/cabin_desc_es.ogg", 0.3)  # shorter than --min-dur
    for folder, spk in (("female1", "petra"), ("female2", "maria"), ("male1", "wolfgang")):
        for call in ("b1", "pung"):
            keep(f"{KAJ}/{folder}/{call}.ogg", f"kajongg_{spk}", "en")
            keep(f"{KAJ}/de/{folder}/{call}.ogg", f"kajongg_{spk}", "de")
        (root / f"{KAJ}/{folder}/COPYRIGHT").write_text("GPL v2 or later\n")
    for call in ("b1", "c2"):
        keep(f"{KAJ}/de/male2/{call}.ogg", "kajongg_klaus", "de")
        keep(f"{KAJ}/male2/{call}.ogg", "kajongg_male2", "en")
    for lang in ("en", "fr", "he", "ml"):
        keep(f"{KLET}/{lang}/alpha/a.ogg", f"klettres_{lang}", lang)
        keep(f"{KLET}/{lang}/syllab/ba.ogg", f"klettres_{lang}", lang)
    for n in (1, 2):
        keep(f"{FEST}/ru_{n:04d}.wav", "festvox_ru_nsh", "ru")
    return kept


def prepare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jeffreys", "prepare", "debvoices", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def brute_force(utts, spk, lang, gender):
    """Every unordered pair, by definition: (pairs, same-gender pairs, cross-language pairs),
    each a set of (frozenset pair, is_target)."""
    spoken: dict[str, set[str]] = {}
    for u in utts:
        spoken.setdefault(spk[u], set()).add(lang[u])
    bilingual = [langs for langs in spoken.values() if len(langs) == 2]
    every, same_gender, cross = set(), set(), set()
    for a, b in combinations(utts, 2):
        row = (frozenset((a, b)), spk[a] == spk[b])
        every.add(row)
        if gender[spk[a]] == gender[spk[b]]:
            same_gender.add(row)
        if lang[a] != lang[b] and {lang[a], lang[b]} in bilingual:
            cross.add(row)
    return every, same_gender, cross


def trial_set(path: Path):
    t = read_trials(path)
    rows = [(frozenset((e, s)), bool(y)) for e, s, y in zip(t.enroll, t.test, t.label)]
    assert len(set(rows)) == len(rows) and all(e < s for e, s in zip(t.enroll, t.test))
    return set(rows)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("debvoices")
    kept = replica(tmp / "root")
    r = prepare(str(tmp / "root"), str(tmp / "out"))
    assert r.returncode == 0, r.stderr
    return tmp, kept, r.stdout


def test_prepare_replica(prepared):
    tmp, kept, out = prepared
    dst = tmp / "out"
    table = debvoices.manifest()
    split_of = {r.speaker: r.split for r in table}
    gender = {r.speaker: r.gender for r in table}
    found: dict[str, tuple[str, str]] = {}
    for split in ("train", "eval"):
        d = read_datadir(dst / split)
        lang = dict(line.split() for line in (dst / split / "utt2lang").read_text().splitlines())
        assert dict(line.split() for line in (dst / split / "spk2gender").read_text().splitlines()) == {s: gender[s] for s in d.spk2utt}
        assert all(split_of[s] == split for s in d.spk2utt)
        for u in d.utts:
            rel = str(Path(d.wav[u]).relative_to((tmp / "root").resolve()))
            found[rel] = (d.utt2spk[u], lang[u])
            assert abs(d.utt2dur[u] - 0.6) < 1e-3
    # exactly the expected files, each with the table's speaker and language: NPCs, excluded
    # folders, effects, the byte copy, the empty and the short file are left out
    assert found == kept
    train, ev = (set(read_datadir(dst / s).spk2utt) for s in ("train", "eval"))
    assert train and ev and not train & ev
    assert "1 file(s) with the same bytes" in out and "1 file(s) without audio samples" in out
    assert "1 file(s) shorter than 0.5 s" in out and "eval: 16 speakers" in out


def test_trials_equal_brute_force(prepared):
    tmp, _, out = prepared
    ev = tmp / "out" / "eval"
    d = read_datadir(ev)
    lang = dict(line.split() for line in (ev / "utt2lang").read_text().splitlines())
    gender = dict(line.split() for line in (ev / "spk2gender").read_text().splitlines())
    every, same_gender, cross = brute_force(d.utts, d.utt2spk, lang, gender)
    assert trial_set(ev / "trials") == every
    assert trial_set(ev / "trials_same_gender") == same_gender
    assert trial_set(ev / "trials_cross_lang") == cross
    n, t = len(every), sum(y for _, y in every)
    assert f"trials: {n} trials ({t} target, {n - t} non-target)" in out
    # kajongg: three voices in two languages, 2 files each per language
    assert sum(y for _, y in cross) == 3 * 2 * 2 and len(cross) > 12


def test_hashes_and_durations_in_a_pool_match_one_process(tmp_path, monkeypatch, capsys):
    """--jobs (default: every CPU) reads the files in worker processes once there are more than
    PARALLEL_ABOVE; the result is the one process's, byte for byte."""
    from jeffreys.corpora import _common

    replica(tmp_path / "root")
    debvoices.prepare_debvoices(tmp_path / "root", tmp_path / "one", jobs=1)
    pools = []
    monkeypatch.setattr(_common, "PARALLEL_ABOVE", 0)
    monkeypatch.setattr(_common, "ProcessPoolExecutor", lambda jobs: pools.append(jobs) or ProcessPoolExecutor(jobs))
    debvoices.prepare_debvoices(tmp_path / "root", tmp_path / "pool", jobs=2)
    assert pools == [2]
    for split in ("train", "eval"):
        for name in ("wav.scp", "utt2spk", "utt2dur", "utt2lang", "spk2gender"):
            assert (tmp_path / "one" / split / name).read_text() == (tmp_path / "pool" / split / name).read_text()
    out = capsys.readouterr().out.split("debvoices: wrote")
    assert out[1].replace("/one", "/pool") == out[2]


def test_cap_per_voice_is_seeded(tmp_path):
    kept = replica(tmp_path / "root")
    runs = {}
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        r = prepare(str(tmp_path / "root"), str(tmp_path / name), "--max-eval-utts", "2", "--seed", seed, "--packages", "tuxpaint-stamps-default")
        assert r.returncode == 0, r.stderr
        runs[name] = (tmp_path / name / "eval" / "wav.scp").read_text()
        d = read_datadir(tmp_path / name / "eval")
        assert all(len(u) == 2 for u in d.spk2utt.values()) and len(d.spk2utt) == 9
        assert "beyond 2 per speaker and language left out (seed" in r.stdout
        assert not (tmp_path / name / "train").exists()
    assert runs["a"] == runs["b"]
    # seven speakers have 3 files, so some choice must differ between seeds 1 and 2
    assert runs["a"] != runs["c"] and sum(1 for s, _ in kept.values() if s.startswith("tuxpaint")) == 25


def test_refusals(tmp_path):
    dst = tmp_path / "out"
    r = prepare(str(tmp_path / "nowhere"), str(dst))
    assert r.returncode == 2 and "nowhere: not found" in r.stderr and r.stderr.count("\n") == 1
    replica(tmp_path / "root")
    # a package missing from SRC: named with its path, the table line and the way out
    for p in (tmp_path / "root" / KLET).rglob("*"):
        if p.is_file():
            p.unlink()
    r = prepare(str(tmp_path / "root"), str(dst))
    assert r.returncode == 2 and "usr/share/klettres/en/**/*.ogg: no file matches (package klettres-data" in r.stderr
    import shutil

    shutil.rmtree(tmp_path / "root" / KLET)
    r = prepare(str(tmp_path / "root"), str(dst))
    assert r.returncode == 2 and "usr/share/klettres/en: not found (package klettres-data" in r.stderr and "--packages" in r.stderr
    r = prepare(str(tmp_path / "root"), str(dst), "--packages", "kajongg,nope")
    assert r.returncode == 2 and "unknown package 'nope'" in r.stderr
    r = prepare(str(tmp_path / "root"), str(dst), "--packages", "festvox-ru")
    assert r.returncode == 2 and "no evaluation speaker" in r.stderr
    assert not dst.exists()
    r = prepare(str(tmp_path / "root"), str(dst), "--packages", "kajongg,festvox-ru")
    assert r.returncode == 0, r.stderr
    assert "eval: 5 speakers" in r.stdout and "train: 1 speakers" in r.stdout
    r = prepare(str(tmp_path / "root"), str(dst), "--packages", "kajongg")
    assert r.returncode == 2 and "already exists" in r.stderr


def test_manifest_rows():
    row = "spk\tf\ten\teval\tpkg\ta/b/*.ogg\t.*\t-\tsource"
    (rule,) = debvoices.read_manifest(row)
    assert rule.base == "a/b" and rule.exclude == () and rule.line == 1
    bad = {
        "spk\tf\ten\teval\tpkg\ta/*.ogg\t.*\tsource": "want 9 tab-separated fields",
        row.replace("\tf\t", "\tx\t"): "bad gender/split/speaker",
        row.replace("\teval\t", "\ttest\t"): "bad gender/split/speaker",
        row.replace("\t.*\t", "\t(\t"): "bad file-name expression",
        row + "\n" + row.replace("\tf\t", "\tm\t"): "disagrees with line 1",
    }
    for text, msg in bad.items():
        with pytest.raises(InputError, match=msg):
            debvoices.read_manifest(text)


def test_shipped_table():
    """The table itself: speaker ids usable as Kaldi ids, every speaker in one split, both
    genders and a bilingual voice in the evaluation split, every package once in fetch.sh."""
    table = debvoices.manifest()
    ev = {r.speaker for r in table if r.split == "eval"}
    assert {r.gender for r in table if r.split == "eval"} == {"m", "f"}
    langs: dict[str, set[str]] = {}
    for r in table:
        langs.setdefault(r.speaker, set()).add(r.language)
    assert any(len(langs[s]) == 2 for s in ev) and all(len(x) <= 2 for x in langs.values())
    fetch = (Path(__file__).parents[1] / "recipes/realvoices/fetch.sh").read_text()
    assert all(f"  {p} " in fetch for p in {r.package for r in table})
    assert "asterisk" not in fetch
