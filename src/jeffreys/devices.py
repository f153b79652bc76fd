"""Which torch device runs a model: one check shared by ``extract``, ``verify`` and ``train``.

Accepted: ``cpu``, ``cuda`` / ``cuda:N`` (when CUDA is available and has device N) and
``mps`` (when this torch has it). Anything else (``meta``, which holds no data; ``xpu``
or a typo such as ``tpu0``) is an InputError naming the device, instead of an error from
deep inside torch when the first tensor moves.
"""

from __future__ import annotations

import re

from .errors import InputError

FORMS = "cpu, cuda, cuda:N or mps"
_SYNTAX = re.compile(r"cpu|mps|cuda(:\d+)?")


def check_device_name(name: str, what: str = "device") -> str:
    """``name`` when it is one of the accepted forms (no availability check)."""
    if not isinstance(name, str) or not _SYNTAX.fullmatch(name.strip()):
        raise InputError(f"{what} {name!r}: not a device that can run the model (use {FORMS})")
    return name.strip()


def resolve_device(device):
    """The ``torch.device`` of ``device`` (a name or a torch.device), available on this machine."""
    import torch

    name = check_device_name(str(device))
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InputError(f"device {name!r}: MPS is not available in this torch build or on this machine")
    return dev


__all__ = ["FORMS", "check_device_name", "resolve_device"]
