"""Trial lists.

Two formats are read, detected per line:

* Kaldi: ``enroll test target|nontarget``
* VoxCeleb: ``1|0 enroll test`` (enroll/test are paths such as ``id10270/x/00001.wav``)

and one is written (Kaldi). Scores files are ``enroll test score``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

_KALDI = {"target": True, "nontarget": False}
_VOX = {"1": True, "0": False}


@dataclass
class Trials:
    enroll: list[str]
    test: list[str]
    label: np.ndarray  # bool, True for a target trial

    def __len__(self) -> int:
        return len(self.enroll)

    @property
    def n_target(self) -> int:
        return int(self.label.sum())


def parse_trial_line(parts: list[str], where: str) -> tuple[str, str, bool]:
    if len(parts) == 3:
        if parts[2] in _KALDI:
            return parts[0], parts[1], _KALDI[parts[2]]
        if parts[0] in _VOX:
            return parts[1], parts[2], _VOX[parts[0]]
    raise InputError(
        f"{where}: not a trial line (want 'enroll test target|nontarget' or '1|0 enroll test'): "
        f"{' '.join(parts)!r}"
    )


def read_trials(path: str | Path) -> Trials:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: no such trials file") from None
    enroll, test, label = [], [], []
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        e, t, y = parse_trial_line(parts, f"{path}:{n}")
        enroll.append(e)
        test.append(t)
        label.append(y)
    if not enroll:
        raise InputError(f"{path}: no trials")
    return Trials(enroll, test, np.asarray(label, dtype=bool))


def write_trials(path: str | Path, trials: Iterable[tuple[str, str, bool]]) -> None:
    """Write Kaldi-format trials in the given order."""
    with open(path, "w", encoding="utf-8") as f:
        for e, t, y in trials:
            f.write(f"{e} {t} {'target' if y else 'nontarget'}\n")
