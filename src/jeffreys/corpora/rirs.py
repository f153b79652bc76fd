"""RIRS_NOISES (OpenSLR 28) room impulse responses as one data dir for reverberation.

SRC/simulated_rirs/{smallroom,mediumroom,largeroom}/RoomNNN/RoomNNN-NNNNN.wav (any of the three: voxceleb_trainer
extracts only smallroom and mediumroom; SRC may also be simulated_rirs/ itself), each room type
with an optional rir_list (`--rir-id ID --room-id ROOM RIRS_NOISES/simulated_rirs/.../X.wav`);
with --real also SRC/real_rirs_isotropic_noises/rir_list and the files it names.
DST is one data dir: utterance id `ROOMTYPE-RoomNNN-NNNNN` (the rir_list id), utt2spk maps it to
its room type (smallroom, mediumroom, largeroom; `real` for --real), so an augmenter can draw a
room type first. pointsource_noises/ and the isotropic noises are not used.

Relied on: the layout of rirs_noises.zip as read by Kaldi's reverberate_data_dir.py (whose
VoxCeleb v2 recipe uses the small and medium rooms) and as voxceleb_trainer's ``dataprep.py
--augment`` extracts it (``simulated_rirs/mediumroom`` and ``smallroom`` only). The room types
found are printed; none at all is an error. A rir_list entry whose file is absent is refused
(its line is named); files present but not in a rir_list are still taken.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ._common import DirSpec, add_io_arguments, call_with_args, durations, preparer, read_rows, require, scan_tree, stem, utt_id, write_dirs

ROOMS = ("smallroom", "mediumroom", "largeroom")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_io_arguments(parser, trials=False)
    parser.add_argument("--real", action="store_true", help="add the real RIRs of real_rirs_isotropic_noises/rir_list")


def read_rir_list(path: Path, base: Path, anchor: str) -> dict[str, Path]:
    """rir id -> file; listed paths are taken relative to ``base`` from the ``anchor`` folder on."""
    out: dict[str, Path] = {}
    for n, parts in read_rows(path, 3):
        try:
            rid = parts[parts.index("--rir-id") + 1]
        except (ValueError, IndexError):
            raise InputError(f"{path}:{n}: no `--rir-id ID`: {' '.join(parts)!r}") from None
        rel = Path(parts[-1]).parts
        if anchor not in rel:
            raise InputError(f"{path}:{n}: path {parts[-1]!r} is not under {anchor}/")
        f = base.joinpath(*rel[rel.index(anchor) + 1 :])
        if not f.is_file():
            raise InputError(f"{path}:{n}: {rid}: file not found: {f}")
        out[rid] = f
    return out


@preparer("rirs")
def prepare_rirs(
    src: str | Path,
    dst: str | Path,
    *,
    real: bool = False,
    measure_durations: bool = True,
    jobs: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the RIR data dir at ``dst`` from whichever simulated room types are present; print what was found."""
    sim = src / "simulated_rirs"
    if not sim.is_dir() and any((src / room).is_dir() for room in ROOMS):
        sim = src  # SRC is simulated_rirs/ itself
    present = [room for room in ROOMS if (sim / room).is_dir()]
    if not present:
        raise InputError(f"{sim}: none of {', '.join(ROOMS)} found (simulated RIRs, RoomNNN/RoomNNN-NNNNN.wav); see `jeffreys prepare rirs --help`")
    wav: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    for room in present:
        base = sim / room
        for rel, path in scan_tree(base, ".wav", "rirs", f"simulated {room} RIRs, RoomNNN/RoomNNN-NNNNN.wav"):
            if len(rel) != 2:
                raise InputError(f"{base.joinpath(*rel)}: expected {room}/RoomNNN/RoomNNN-NNNNN.wav")
            uid = utt_id(room, rel[0], stem(rel[1], ".wav").split("-", 1)[-1])
            wav[uid], utt2spk[uid] = path, room
        if (base / "rir_list").is_file():
            # the list's ids win over the ones derived from the path (they agree in the release)
            by_path = {p: u for u, p in wav.items()}
            for rid, f in read_rir_list(base / "rir_list", sim, "simulated_rirs").items():
                old = by_path.get(str(f.resolve()))
                if old is not None and old != rid:
                    del wav[old], utt2spk[old]
                wav[rid], utt2spk[rid] = str(f.resolve()), room
    if real:
        real_dir = src / "real_rirs_isotropic_noises"
        lst = require(real_dir / "rir_list", "real RIR list", "rirs")
        for rid, f in read_rir_list(lst, real_dir, "real_rirs_isotropic_noises").items():
            if rid in wav:
                raise InputError(f"{lst}: rir id {rid!r} is also a simulated RIR")
            wav[rid], utt2spk[rid] = str(f.resolve()), "real"
    spec = DirSpec(wav, utt2spk, durations(wav, not measure_durations, jobs))
    counts = ", ".join(f"{room} ({sum(1 for r in utt2spk.values() if r == room)})" for room in present)
    absent = [room for room in ROOMS if room not in present]
    spec.notes.append(f"room types found: {counts}" + (f"; absent: {', '.join(absent)}" if absent else ""))
    write_dirs("rirs", dst, {"": spec}, overwrite)
    return dst


def run(args) -> int:
    return call_with_args(prepare_rirs, args)
