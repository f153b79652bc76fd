"""Optional dependencies ("extras") and the one-line error when one is missing.

The core install (``pip install jeffreys``) holds what training, extraction and scoring
need. The rest comes with extras::

    pip install 'jeffreys[onnx]'         # export to ONNX, load model.onnx (onnx, onnxruntime, onnxscript)
    pip install 'jeffreys[synth]'        # the embedded corpus, simulated rooms (espeakng-loader, pyroomacoustics)
    pip install 'jeffreys[plots]'        # figures: DET curves, Fig. 1-3 (matplotlib)
    pip install 'jeffreys[tensorboard]'  # TensorBoard curves of training (train.log is written without it)
    pip install 'jeffreys[all]'          # all of them

A feature whose extra is missing raises :class:`MissingExtra`, one line naming the
``pip install`` that fixes it (the CLI prints it as any error: ``jeffreys CMD: error: ...``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import JeffreysError

# extra -> the top-level modules it provides
EXTRAS: dict[str, tuple[str, ...]] = {
    "onnx": ("onnx", "onnxruntime", "onnxscript"),
    "synth": ("espeakng_loader", "pyroomacoustics"),
    "plots": ("matplotlib",),
    "tensorboard": ("tensorboard",),
}
EXTRA_OF: dict[str, str] = {m: extra for extra, modules in EXTRAS.items() for m in modules}


class MissingExtra(JeffreysError, ImportError):
    """An optional dependency is not installed (an ImportError too, for ``except ImportError``)."""


def install_hint(module: str) -> str:
    """``pip install 'jeffreys[EXTRA]'`` for a module of an extra, else ``pip install MODULE``."""
    top = module.split(".")[0]
    return f"pip install 'jeffreys[{EXTRA_OF[top]}]'" if top in EXTRA_OF else f"pip install {top}"


def missing_message(module: str, what: str = "") -> str:
    top = module.split(".")[0]
    extra = f" (the [{EXTRA_OF[top]}] extra)" if top in EXTRA_OF else ""
    needs = f"{what} needs {top}{extra}" if what else f"{top}{extra} is needed"
    return f"{needs}, which is not installed: {install_hint(top)}"


def require(module: str, what: str = "") -> ModuleType:
    """``import module``; if it (or a module it needs) is missing, a :class:`MissingExtra`
    whose one line says what needs it and the ``pip install`` that fixes it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = (e.name or module).split(".")[0]
        raise MissingExtra(missing_message(missing if missing in EXTRA_OF else module, what)) from None


def available(module: str) -> bool:
    """Whether ``module`` imports (it is imported to find out)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


__all__ = ["EXTRAS", "EXTRA_OF", "MissingExtra", "available", "install_hint", "missing_message", "require"]
