"""Miniature replicas of the published corpus layouts, built in a test's tmp_path.

Audio is tiny (0.1 s at 16 kHz by default) so a whole replica is written in milliseconds;
each builder returns what a test needs to check the prepared data dir against, and its
docstring names the published description of the layout it follows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def audio(path: Path, seconds: float = 0.1, sr: int = SR, seed: int = 0) -> Path:
    """A short noise burst as wav/flac (by suffix) or m4a (AAC through PyAV)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = (np.random.default_rng(seed).standard_normal(int(seconds * sr)) * 0.1).astype(np.float32)
    if path.suffix == ".m4a":
        import av

        with av.open(str(path), "w", format="mp4") as c:
            s = c.add_stream("aac", rate=sr)
            s.layout = "mono"
            frame = av.AudioFrame.from_ndarray(x[None, :], format="fltp", layout="mono")
            frame.sample_rate = sr
            for p in s.encode(frame):
                c.mux(p)
            for p in s.encode(None):
                c.mux(p)
    else:
        sf.write(path, x, sr)
    return path


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------- VoxCeleb
VOX1_DEV = {"id10001": ["1zcIwhmdeo4", "7gWzIy6yIIk"], "id10002": ["0_laIeN-Q44"]}
VOX1_TEST = {"id10270": ["5r0dWxy17C8", "x6uYqmx31kE"], "id10271": ["1gtz-CUIygI"]}


def voxceleb(root: Path, split_speakers: dict[str, dict[str, list[str]]], sub: str, ext: str, n_per_video: int = 2) -> list[str]:
    """``root/<split>/<sub>/idX/VIDEO/0000N<ext>``; returns the relative ``idX/VIDEO/N<ext>`` paths."""
    rels = []
    for split, speakers in split_speakers.items():
        for spk, videos in speakers.items():
            for v in videos:
                for k in range(1, n_per_video + 1):
                    rel = f"{spk}/{v}/{k:05d}{ext}"
                    audio(root / split / sub / rel)
                    rels.append(rel)
    return rels


def voxceleb1(root: Path) -> dict[str, list[str]]:
    voxceleb(root, {"dev": VOX1_DEV, "test": VOX1_TEST}, "wav", ".wav")
    o = [
        "1 id10270/5r0dWxy17C8/00001.wav id10270/x6uYqmx31kE/00002.wav",
        "0 id10270/5r0dWxy17C8/00001.wav id10271/1gtz-CUIygI/00001.wav",
        "0 id10271/1gtz-CUIygI/00002.wav id10270/x6uYqmx31kE/00001.wav",
    ]
    e = [
        "0 id10001/1zcIwhmdeo4/00001.wav id10270/5r0dWxy17C8/00002.wav",
        "1 id10001/1zcIwhmdeo4/00002.wav id10001/7gWzIy6yIIk/00001.wav",
    ]
    h = ["1 id10002/0_laIeN-Q44/00001.wav id10002/0_laIeN-Q44/00002.wav"]
    write(root / "veri_test2.txt", o)
    write(root / "list_test_all2.txt", e)
    write(root / "list_test_hard2.txt", h)
    write(root / "veri_test.txt", o + ["1 id10271/1gtz-CUIygI/00001.wav id10271/1gtz-CUIygI/00002.wav"])
    return {"O": o, "E": e, "H": h}


def voxceleb2(root: Path) -> list[str]:
    """``SRC/dev/aac/idX/VIDEO/N.m4a``: vox2_dev_aac unpacked as Kaldi's make_voxceleb2.pl reads it."""
    return voxceleb(root, {"dev": {"id00012": ["21Uxsk56VDQ"], "id00015": ["0fijmz4vTVU", "Abc-_de1"]}}, "aac", ".m4a", 1)


VOX1_O = [
    "1 id10270/5r0dWxy17C8/00001.wav id10270/x6uYqmx31kE/00002.wav",
    "0 id10270/5r0dWxy17C8/00001.wav id10271/1gtz-CUIygI/00001.wav",
]
VOX1_E = ["0 id10001/1zcIwhmdeo4/00001.wav id10270/5r0dWxy17C8/00002.wav", "1 id10001/1zcIwhmdeo4/00002.wav id10001/7gWzIy6yIIk/00001.wav"]
VOX1_H = ["1 id10002/0_laIeN-Q44/00001.wav id10002/0_laIeN-Q44/00002.wav", "0 id10002/0_laIeN-Q44/00001.wav id10001/7gWzIy6yIIk/00002.wav"]
VOX1_META_HEADER = "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"


def vox1_meta(path: Path, sets: dict[str, str]) -> Path:
    """``vox1_meta.csv`` as the VGG meta page publishes it and lhotse reads it: tab-separated,
    a header, the Set (dev/test) last; nationalities may hold spaces."""
    rows = [f"{spk}\tName_{spk[2:]}\tm\tNew Zealand\t{split}" for spk, split in sorted(sets.items())]
    return write(path, [VOX1_META_HEADER] + rows)


def voxceleb1_merged(root: Path, *, meta: bool = False, lists_in: str | None = "meta") -> list[str]:
    """Both official zips unpacked into one folder: ``SRC/wav/idX/VIDEO/N.wav`` (each zip holds
    ``wav/``), as SpeechBrain's VoxCeleb README and lhotse's ``download_voxceleb1`` leave it;
    SpeechBrain keeps the verification lists in ``SRC/meta/``, lhotse puts ``vox1_meta.csv``
    at SRC. ``lists_in``: sub-folder for the cleaned O/E/H lists (None: no list at all).
    Returns the relative audio paths."""
    rels = []
    for spk, videos in {**VOX1_DEV, **VOX1_TEST}.items():
        for v in videos:
            for k in (1, 2):
                rel = f"{spk}/{v}/{k:05d}.wav"
                audio(root / "wav" / rel)
                rels.append(rel)
    if meta:
        vox1_meta(root / "vox1_meta.csv", {**{s: "dev" for s in VOX1_DEV}, **{s: "test" for s in VOX1_TEST}})
    if lists_in is not None:
        d = root / lists_in if lists_in else root
        write(d / "veri_test2.txt", VOX1_O)
        write(d / "list_test_all2.txt", VOX1_E)
        write(d / "list_test_hard2.txt", VOX1_H)
    return rels


def voxceleb_trainer_vox1(root: Path) -> list[str]:
    """voxceleb_trainer's ``dataprep.py --extract``: the zips unpacked together, then ``wav/``
    renamed ``voxceleb1/``, so the speaker folders sit at SRC (``SRC/idX/VIDEO/N.wav``)."""
    rels = voxceleb1_merged(root, lists_in=None)
    for spk in {**VOX1_DEV, **VOX1_TEST}:
        (root / "wav" / spk).rename(root / spk)
    (root / "wav").rmdir()
    return rels


def wespeaker_vox1_trials(folder: Path) -> dict[str, Path]:
    """WeSpeaker's ``local/prepare_data.sh``: the VGG lists downloaded under new names into
    ``data/vox1/trials/`` (``vox1-O(cleaned).txt``, ...) and converted to Kaldi format
    (``vox1_O_cleaned.kaldi``: ``idX/V/N.wav idY/V/N.wav target|nontarget``).
    Returns list name -> the Kaldi-format copy."""
    out = {}
    for t, lines in (("O", VOX1_O), ("E", VOX1_E), ("H", VOX1_H)):
        write(folder / f"vox1-{t}(cleaned).txt", lines)
        kaldi = [f"{a} {b} {'target' if y == '1' else 'nontarget'}" for y, a, b in (x.split() for x in lines)]
        out[t] = write(folder / f"vox1_{t}_cleaned.kaldi", kaldi)
    return out


VOX2_DEV = {"id00012": ["21Uxsk56VDQ"], "id00015": ["0fijmz4vTVU"]}
VOX2_TEST = {"id00017": ["01dfn2spqyE"], "id00061": ["0G9G9oyFHI8"]}


def voxceleb2_lhotse(root: Path) -> dict[str, list[str]]:
    """lhotse's ``download_voxceleb2``: vox2_dev_aac (``dev/aac/``) and vox2_test_aac.zip (``aac/``)
    unpacked side by side at SRC, with ``vox2_meta.csv`` (comma-separated, spaces around the
    fields, as lhotse reads it). Returns split -> relative m4a paths."""
    out = {"dev": [], "test": []}
    for split, speakers, sub in (("dev", VOX2_DEV, "dev/aac"), ("test", VOX2_TEST, "aac")):
        for spk, videos in speakers.items():
            for v in videos:
                rel = f"{spk}/{v}/00001.m4a"
                audio(root / sub / rel)
                out[split].append(rel)
    rows = [f"{s} ,n{s[2:]} ,m ,{split} " for split, spk in (("dev", VOX2_DEV), ("test", VOX2_TEST)) for s in spk]
    write(root / "vox2_meta.csv", ["VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set "] + rows)
    return out


# ---------------------------------------------------------------- SITW
def sitw(root: Path, assist: bool = False) -> dict[str, list[str]]:
    """dev and eval, 2 models each; returns the published core-core key lines per split.
    ``assist``: the release's assist-condition lists beside the core ones (``enroll-assist.lst``
    with START END seconds in the enrolment file, ``keys/assist-core.lst``), as unpacked."""
    keys = {}
    for split, files in (("dev", ["aaaab", "aaabd", "aabcx", "abcde"]), ("eval", ["baaaa", "bbbbb", "bcdef", "bzzzz"])):
        for f in files:
            audio(root / split / "audio" / f"{f}.flac")
        write(root / split / "lists/enroll-core.lst", [f"10{split[0]}01 audio/{files[0]}.flac", f"10{split[0]}02 audio/{files[1]}.flac"])
        write(root / split / "lists/test-core.lst", [f"audio/{f}.flac" for f in files[2:]])
        keys[split] = [
            f"10{split[0]}02 audio/{files[2]}.flac imp",
            f"10{split[0]}01 audio/{files[2]}.flac tgt",
            f"10{split[0]}01 audio/{files[3]}.flac imp",
        ]
        write(root / split / "keys/core-core.lst", keys[split])
        if assist:
            write(root / split / "lists/enroll-assist.lst", [f"10{split[0]}01 audio/{files[0]}.flac 0.000 0.080",
                                                             f"10{split[0]}02 audio/{files[1]}.flac 0.010 0.090"])
            write(root / split / "keys/assist-core.lst", keys[split])
    return keys


SITW_LONG_S = 2.0  # the multi-speaker file of the assist replica


def sitw_assist(root: Path) -> dict:
    """The assist condition as the SITW README describes it: ``lists/enroll-assist.lst`` with
    four columns (model, ``audio/FILE.flac``, START and END seconds of the annotated segment
    where the person of interest speaks in a multi-speaker file) and ``keys/assist-core.lst``
    (``MODEL audio/FILE.flac tgt|imp``). Dev only: two models in one 2 s file, one in another.
    Returns the enrolment rows and the key lines."""
    files = {"mlong": SITW_LONG_S, "mshrt": 1.0, "tcore": 0.5, "tothr": 0.5}
    for k, (f, secs) in enumerate(files.items()):
        audio(root / "dev/audio" / f"{f}.flac", secs, seed=k)
    enrol = [("20d01", "mlong", 0.25, 0.9), ("20d02", "mlong", 1.1, 1.95), ("20d03", "mshrt", 0.0, 0.5)]
    write(root / "dev/lists/enroll-assist.lst", [f"{m} audio/{f}.flac {a:.3f} {b:.3f}" for m, f, a, b in enrol])
    write(root / "dev/lists/enroll-core.lst", ["20d03 audio/mshrt.flac"])
    key = ["20d01 audio/tcore.flac tgt", "20d02 audio/tcore.flac imp", "20d03 audio/tothr.flac imp", "20d02 audio/tothr.flac tgt"]
    write(root / "dev/keys/assist-core.lst", key)
    return {"enrol": enrol, "key": key}


# ---------------------------------------------------------------- SdSV 2021 task 2
def sdsv(root: Path, keyed: bool = False) -> dict:
    models = {"model_00001": ["enr_000001", "enr_000002", "enr_000003"], "model_00002": ["enr_000004"]}
    trials = [("model_00002", "evl_000002", "nontarget"), ("model_00001", "evl_000001", "target"), ("model_00001", "evl_000002", "nontarget")]
    for utts in models.values():
        for u in utts:
            audio(root / "wav/enrollment" / f"{u}.wav")
    for u in ("evl_000001", "evl_000002"):
        audio(root / "wav/evaluation" / f"{u}.wav")
    write(root / "docs/model_enrollment.txt", ["model-id enroll-file-id1 enroll-file-id2 enroll-file-id3"] + [f"{m} {' '.join(u)}" for m, u in models.items()])
    lines = [f"{m} {t}" + (f" {y}" if keyed else "") for m, t, y in trials]
    write(root / "docs/trials.txt", ["model-id evaluation-file-id"] + lines)
    return {"models": models, "trials": trials}


def sdsv_positional_key(path: Path, trials: list[tuple[str, str, str]]) -> Path:
    """The organisers' key as the challenge's scoring program reads ``ref/keys.txt``: one label
    (``1`` target, ``0`` non-target) per line of ``docs/trials.txt``, in its order, no header."""
    return write(path, ["1" if y == "target" else "0" for _, _, y in trials])


# ---------------------------------------------------------------- TEDx Spanish (OpenSLR 67)
TEDX_SR = 1000  # only headers are read: a low rate keeps 3-10 s files tiny


def tedx(root: Path, speakers: dict[str, int] | None = None) -> dict[str, float]:
    """``speech/<speaker dir>/TEDX_G_NNN_SPA_NNNN.wav``; returns file id -> duration written."""
    speakers = speakers or {"TEDX_M_001": 4, "TEDX_M_002": 3, "TEDX_M_003": 3, "TEDX_F_001": 3, "TEDX_F_002": 2}
    out = {}
    for spk, n in speakers.items():
        for k in range(1, n + 1):
            uid = f"{spk}_SPA_{k:04d}"
            seconds = 3.0 + (k % 5) * 1.5  # 3 .. 9 s
            audio(root / "speech" / spk / f"{uid}.wav", seconds, sr=TEDX_SR)
            out[uid] = seconds
    # outside the protocol's 3-10 s range
    audio(root / "speech/TEDX_M_001/TEDX_M_001_SPA_0099.wav", 2.0, sr=TEDX_SR)
    audio(root / "speech/TEDX_F_002/TEDX_F_002_SPA_0099.wav", 11.0, sr=TEDX_SR)
    write(root / "files/TEDx_Spanish.transcription", [f"text {u}" for u in out])
    return out


# ---------------------------------------------------------------- MUSAN (OpenSLR 17)
def musan(root: Path) -> dict[str, list[str]]:
    parts = {
        "music": {"fma": ["music-fma-0000", "music-fma-0001"], "jamendo": ["music-jamendo-0000"]},
        "noise": {"free-sound": ["noise-free-sound-0000", "noise-free-sound-0001"], "sound-bible": ["noise-sound-bible-0000"]},
        "speech": {"librivox": ["speech-librivox-0000"], "us-gov": ["speech-us-gov-0000", "speech-us-gov-0001"]},
    }
    out = {}
    for part, sources in parts.items():
        out[part] = []
        for source, ids in sources.items():
            for u in ids:
                audio(root / part / source / f"{u}.wav")
                out[part].append(u)
    write(root / "music/fma/ANNOTATIONS", ["music-fma-0000 rock Y artist1", "music-fma-0001 jazz N artist2"])
    write(root / "speech/librivox/ANNOTATIONS", ["speech-librivox-0000 male english"])
    return out


# ---------------------------------------------------------------- RIRS_NOISES (OpenSLR 28)
def rirs(root: Path, rooms: tuple[str, ...] = ("smallroom", "mediumroom", "largeroom")) -> dict[str, str]:
    """simulated rooms (2 rooms x 2 RIRs each, ``rir_list`` per room type as in rirs_noises.zip)
    and 2 real RIRs; id -> room type. voxceleb_trainer's ``dataprep.py --augment`` extracts only
    ``simulated_rirs/mediumroom`` and ``smallroom`` (``rooms=("smallroom", "mediumroom")``)."""
    out = {}
    for room in rooms:
        lines = []
        for r in (1, 2):
            for k in (1, 2):
                rel = f"Room{r:03d}/Room{r:03d}-{k:05d}.wav"
                audio(root / "simulated_rirs" / room / rel, 0.05)
                rid = f"{room}-Room{r:03d}-{k:05d}"
                lines.append(f"--rir-id {rid} --room-id {room}-Room{r:03d} RIRS_NOISES/simulated_rirs/{room}/{rel}")
                out[rid] = room
        write(root / "simulated_rirs" / room / "rir_list", lines)
    real = []
    for name in ("air_type1_air_binaural_aula_carolina_1_1_3_0", "RVB2014_type1_rir_largeroom1_near_angla"):
        audio(root / "real_rirs_isotropic_noises" / f"{name}.wav", 0.05)
        real.append(f"--rir-id {name} --room-id {name} RIRS_NOISES/real_rirs_isotropic_noises/{name}.wav")
    write(root / "real_rirs_isotropic_noises/rir_list", real)
    return out


# ---------------------------------------------------------------- DiPCo
def _hms(t: float) -> str:
    return f"{int(t // 3600):02d}:{int(t % 3600 // 60):02d}:{t % 60:05.2f}"


def dipco(root: Path) -> list[dict]:
    """One dev session (S02: P05 m, P06 f) and one eval session (S01: P01 f); arrays U01, U02
    only; 1.0 s recordings with 0.2-0.4 s utterances. Returns the utterance dicts written."""
    written = []
    for split, sess, speakers in (("dev", "S02", {"P05": "male", "P06": "female"}), ("eval", "S01", {"P01": "female"})):
        utts = []
        for k, (spk, gender) in enumerate(sorted(speakers.items()) * 2):
            t0 = 0.1 + 0.2 * k
            start = {"close-talk": _hms(t0), "U01": _hms(t0 + 0.01), "U02": _hms(t0 + 0.02)}
            end = {m: _hms(t0 + 0.15 + (0.05 if k % 2 else 0.0) + d) for m, d in (("close-talk", 0), ("U01", 0.01), ("U02", 0.02))}
            utts.append({"session_id": sess, "speaker_id": spk, "gender": gender, "start_time": start, "end_time": end, "words": "hola", "mother_tongue": "x", "nativeness": "y"})
        (root / "transcriptions" / split).mkdir(parents=True, exist_ok=True)
        import json

        (root / "transcriptions" / split / f"{sess}.json").write_text(json.dumps(utts, indent=2))
        for spk in speakers:
            audio(root / "audio" / split / f"{sess}_{spk}.wav", 1.0, sr=1000)
        for arr in ("U01", "U02"):
            for ch in range(1, 8):
                audio(root / "audio" / split / f"{sess}_{arr}.CH{ch}.wav", 1.0, sr=1000)
        written += utts
    return written


def voxceleb_trainer_vox2(root: Path, meta: Path) -> dict[str, list[str]]:
    """voxceleb_trainer's ``dataprep.py --extract`` then ``--convert``: VoxCeleb2 dev (``dev/aac``)
    moved into the test zip's ``aac/``, renamed ``voxceleb2/`` (``SRC/idX/VIDEO/N.m4a``), with
    each file's ``N.wav`` conversion beside it. ``vox2_meta.csv`` (the VGG meta page's, as lhotse
    reads it) is written at ``meta``, outside SRC. Returns split -> relative m4a paths."""
    out = {"dev": [], "test": []}
    for split, speakers in (("dev", VOX2_DEV), ("test", VOX2_TEST)):
        for spk, videos in speakers.items():
            for v in videos:
                rel = f"{spk}/{v}/00001.m4a"
                audio(root / rel)
                audio(root / rel.replace(".m4a", ".wav"))
                out[split].append(rel)
    rows = [f"{s} ,n{s[2:]} ,m ,{split} " for split, spk in (("dev", VOX2_DEV), ("test", VOX2_TEST)) for s in spk]
    write(meta, ["VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set "] + rows)
    return out
