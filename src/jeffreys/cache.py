"""The one place where the package keeps what it computes once and reuses: the compiled loss
kernel, the simulated room responses of the augmentation, cached features.

``JEFFREYS_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/jeffreys``, else ``~/.cache/jeffreys``.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    if os.environ.get("JEFFREYS_CACHE_DIR"):
        return Path(os.environ["JEFFREYS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jeffreys"


__all__ = ["cache_dir"]
