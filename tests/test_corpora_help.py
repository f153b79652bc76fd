"""`jeffreys prepare --help` lists every preparer with the source layout it expects."""

import pytest

from jeffreys.cli import main
from jeffreys.corpora import PREPARERS

MINE = {
    "voxceleb1": "SRC/dev/wav/idXXXXX/VIDEO/NNNNN.wav",
    "voxceleb2": "SRC/dev/aac/idXXXXX/VIDEO/NNNNN.m4a",
    "sitw": "SRC/{dev,eval}/keys/core-core.lst",
    "sdsv": "SRC/docs/model_enrollment.txt",
    "dipco": "SRC/transcriptions/{dev,eval}/SNN.json",
    "tedx": "SRC/speech/**/TEDX_G_NNN_SPA_NNNN.wav",
    "musan": "SRC/noise/{free-sound,sound-bible}/*.wav",
    "rirs": "SRC/simulated_rirs/{smallroom,mediumroom,largeroom}/RoomNNN/RoomNNN-NNNNN.wav",
    "convert": "SRC is a data dir",
}


def test_prepare_help_lists_layouts(capsys):
    with pytest.raises(SystemExit) as e:
        main(["prepare", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for name in PREPARERS:
        assert f"\n  {name}:\n" in out
    for name, layout in MINE.items():
        assert name in PREPARERS and layout in out, name


@pytest.mark.parametrize("name", sorted(MINE))
def test_each_preparer_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main(["prepare", name, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "expected layout:" in out and MINE[name] in out and "--overwrite" in out
