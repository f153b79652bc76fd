"""Stages and their stamps: what lets an experiment resume where it stopped.

Every stage writes a stamp (``OUT/.stamps/NAME.json``) holding a digest of its inputs
(configs, and the size and modification time of the files it read). A re-run skips a stage
whose stamp matches and whose outputs exist, and redoes it — and, through the digests,
everything downstream — when an input changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import to_dict
from ..fileio import atomic_dir, write_text_atomic


def fingerprint(path: str | Path) -> list:
    """What identifies a file's content cheaply: name, size, modification time (ns)."""
    p = Path(path)
    if p.is_dir():
        return [fingerprint(f) for f in sorted(p.iterdir()) if f.is_file() and not f.name.startswith(".")]
    st = p.stat()
    return [str(p), st.st_size, st.st_mtime_ns]


def digest(inputs: Any) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Stamps:
    """Stage completion records: ``OUT/.stamps/NAME.json`` = {"key": digest of inputs}."""

    def __init__(self, root: Path):
        self.dir = Path(root) / ".stamps"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _file(self, name: str) -> Path:
        return self.dir / f"{name.replace('/', '__')}.json"

    def done(self, name: str, key: str, outputs: list[Path]) -> bool:
        f = self._file(name)
        if not f.exists() or not all(Path(o).exists() for o in outputs):
            return False
        try:
            return json.loads(f.read_text()).get("key") == key
        except (json.JSONDecodeError, OSError):
            return False

    def mark(self, name: str, key: str) -> None:
        write_text_atomic(self._file(name), json.dumps({"key": key, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}))


class Progress:
    """One line per stage, with the elapsed wall time; everything also goes to ``log.txt``."""

    def __init__(self, out: Path, quiet: bool = False, t0: float | None = None):
        self.t0 = time.monotonic() if t0 is None else t0
        self.quiet = quiet
        self.log = open(Path(out) / "log.txt", "a", encoding="utf-8")

    def __call__(self, msg: str) -> None:
        m, s = divmod(time.monotonic() - self.t0, 60)
        line = f"[{int(m):2d}:{s:04.1f}] {msg}"
        self.log.write(line + "\n")
        self.log.flush()
        if not self.quiet:
            print(line, flush=True)

    def close(self) -> None:
        self.log.close()


def subset_utts(datadir, n: int, seed: int) -> list[str]:
    """A seeded subset of ``n`` utterances spread evenly over speakers (all when n = 0)."""
    utts = datadir.utts
    if n == 0 or n >= len(utts):
        return utts
    rng = np.random.default_rng(seed)
    per_spk = {s: list(rng.permutation(u)) for s, u in datadir.spk2utt.items()}
    chosen: list[str] = []
    while len(chosen) < n:  # round robin over speakers
        for s in sorted(per_spk):
            if per_spk[s] and len(chosen) < n:
                chosen.append(per_spk[s].pop())
    return sorted(chosen)


def write_subset(datadir, utts: list[str], dst: Path) -> Path:
    """The data dir of ``utts`` (a subset of ``datadir``) at ``dst``, replaced as a whole."""
    from ..data.datadir import write_datadir

    keep = set(utts)
    if datadir.segments is not None:
        segs = {u: datadir.segments[u] for u in utts}
        wav = {r: datadir.wav[r] for r in {s[0] for s in segs.values()}}
    else:
        segs, wav = None, {u: datadir.wav[u] for u in utts}
    dur = {u: d for u, d in datadir.utt2dur.items() if u in keep} if datadir.utt2dur else None
    with atomic_dir(dst, overwrite=True) as tmp:
        write_datadir(tmp, wav, {u: datadir.utt2spk[u] for u in utts}, segments=segs, utt2dur=dur)
    return dst


def emb_name(datadir: str | Path) -> str:
    """Embedding file stem of a data dir: its name plus a digest of its full path."""
    return f"{Path(datadir).name.replace('.', '_')}-{digest(str(Path(datadir).resolve()))[:8]}"


def emb_file(stem: Path) -> Path:
    """The file ``extract`` writes for output stem ``stem`` (Kaldi format: STEM.scp + STEM.ark)."""
    return stem.with_name(stem.name + ".scp")


def stage_embed(name: str, bundle, model_key: str, datadir: Path, out: Path, stamps: Stamps, extract_spec, log):
    """Embeddings of a data dir (Kaldi OUT.ark/OUT.scp), extracted unless stamped."""
    from dataclasses import asdict

    from ..embeddings import read_embeddings
    from ..extract import extract

    key = digest([model_key, fingerprint(datadir), to_dict(extract_spec)])
    if stamps.done(name, key, [emb_file(out)]):
        return read_embeddings(emb_file(out))
    log(f"{name}: extracting {datadir}")
    out.parent.mkdir(parents=True, exist_ok=True)
    ids, mat = extract(bundle, datadir, out, device=extract_spec.device, progress=not getattr(log, "quiet", False),
                       **asdict(extract_spec.options))
    stamps.mark(name, key)
    return list(ids), np.asarray(mat)


__all__ = ["Progress", "Stamps", "digest", "emb_file", "emb_name", "fingerprint", "stage_embed", "subset_utts", "write_subset"]
