"""jeffreys: speaker recognition with the Jeffreys-divergence output regulariser.

``jeffreys.load(path)`` gives the library face (:mod:`jeffreys.api`); the pipeline's stages
are modules of this package (``jeffreys.losses``, ``jeffreys.extract``, ``jeffreys.scoring``,
...). Importing the package itself imports nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .api import Recognizer


def load(path, **options) -> Recognizer:
    """A model bundle (``model.pt``) or ONNX export (``model.onnx``) ready to embed, score,
    verify, enroll and identify: see :func:`jeffreys.api.load` for the options."""
    from .api import load as _load

    return _load(path, **options)


__all__ = ["__version__", "load"]
