"""The memory layout of a model's convolutions: chosen per device and model, and guarded.

Two layouts: ``contiguous`` (NCHW, PyTorch's default) and ``channels_last`` (NHWC). Which is
faster depends on the CPU's vector ISA and the model (``benchmarks/memory_format.py``,
docs/benchmarks.md#memory-format): on AVX-512, channels_last costs 8-18 % less for every
width measured, except where the guard below keeps most layers in NCHW (a 4-4-8-8 model: the
two layouts meet at every block; 0.93x and 1.07x in two runs); on AVX2 it costs 18 % more
for the paper's ResNet-34, 10 % less for the demo model, within noise elsewhere. ``auto`` (the default of
``jeffreys train`` and ``extract``) applies that rule:

* CPU: ``channels_last`` when oneDNN may use AVX-512 here (the CPU has ``avx512f`` and
  neither ``ONEDNN_MAX_CPU_ISA`` nor ``ATEN_CPU_CAPABILITY`` caps it lower) and the guard
  keeps no convolution in NCHW but 1-channel ones (the stem); ``contiguous`` otherwise.
* CUDA: ``channels_last`` (what AMP's tensor-core kernels want; not measured here).
* anything else: ``contiguous``.

**The guard.** oneDNN v3.12.0 (inside the torch CPU wheels 2.9.1 to 2.14.1) corrupts the
heap on its AVX2 path when it computes the weight gradient of a channels_last convolution
with fewer than 8 input channels (``jit_1x1:avx2,backward_weights``, weights blocked
``ABcd8b8a``): 30 forward+backward passes of ``nn.Conv2d(4, 4, 1, stride=2)`` on a channels_last
[4, 4, 16, 48] input crash or return wrong gradients; NCHW, 8 or more channels, or
``ONEDNN_MAX_CPU_ISA=AVX`` do not. :func:`apply` therefore keeps every CPU convolution
with fewer than :data:`NARROW_CHANNELS` input channels per group in NCHW (its weight
with NCHW strides, its input given NCHW strides by a forward pre-hook), whatever layout the rest of
the model uses and whatever the CPU: no configuration reaches that path.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError

FORMATS = ("auto", "channels_last", "contiguous")
NARROW_CHANNELS = 8  # oneDNN's AVX2 weight-gradient kernel blocks input channels by 8
# ONEDNN_MAX_CPU_ISA values (case-insensitive; DNNL_MAX_CPU_ISA is the older name) that
# keep oneDNN below AVX-512, and ATEN_CPU_CAPABILITY values that keep ATen below it.
_ONEDNN_BELOW_AVX512 = {"sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2"}
_ATEN_BELOW_AVX512 = {"default", "avx2"}


def check_format(value) -> str:
    """``value`` when it is one of :data:`FORMATS`; else an InputError naming the choices."""
    if value not in FORMATS:
        raise InputError(f"memory_format must be one of {', '.join(FORMATS)}, got {value!r}")
    return value


def requested_format(memory_format: str = "auto", channels_last: bool | None = None) -> str:
    """The layout asked for: ``channels_last`` (the older boolean spelling, when not None)
    wins over ``memory_format``."""
    if channels_last is not None:
        return "channels_last" if channels_last else "contiguous"
    return check_format(memory_format)


@functools.cache
def _cpu_flags() -> frozenset[str]:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_vector_isa() -> str:
    """``avx512`` when oneDNN's and ATen's CPU kernels may use AVX-512 here, ``avx2`` when
    the best they may use is AVX2, else ``other`` (no /proc/cpuinfo, ARM, older x86)."""
    flags = _cpu_flags()
    if not flags:  # no /proc/cpuinfo: ATen's own detection, which honours ATEN_CPU_CAPABILITY
        capability = torch.backends.cpu.get_cpu_capability().lower()
        return "avx512" if capability.startswith("avx512") else "avx2" if capability == "avx2" else "other"
    onednn = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().lower()
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if "avx512f" in flags and onednn not in _ONEDNN_BELOW_AVX512 and aten not in _ATEN_BELOW_AVX512:
        return "avx512"
    if "avx2" in flags and onednn not in {"sse41", "avx"} and aten != "default":
        return "avx2"
    return "other"


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def choose(model: nn.Module, device, requested: str = "auto") -> str:
    """``channels_last`` or ``contiguous`` for ``model`` on ``device`` (module docstring)."""
    requested = check_format(requested)
    if requested != "auto":
        return requested
    kind = torch.device(device).type
    if kind == "cuda":
        return "channels_last"
    if kind != "cpu":
        return "contiguous"
    # a model most of whose layers the guard keeps in NCHW pays a reorder at every block
    mixed = any(1 < m.in_channels // m.groups < NARROW_CHANNELS for m in _convs(model))
    return "channels_last" if cpu_vector_isa() == "avx512" and not mixed else "contiguous"


def _nchw(t: torch.Tensor) -> torch.Tensor:
    """``t`` with NCHW strides exactly. Not ``t.contiguous()``: a tensor with a size-1
    dimension (a 1x1 weight, a 1-channel input) counts as contiguous with channels_last
    strides, and oneDNN then takes it as channels_last."""
    standard, step = [], 1
    for n in reversed(t.shape):
        standard.append(step)
        step *= n
    return t if t.stride() == tuple(reversed(standard)) else t.clone(memory_format=torch.contiguous_format)


def _nchw_input(module, args):
    return (_nchw(args[0]), *args[1:])


def apply(model: nn.Module, device, requested: str = "auto") -> tuple[nn.Module, str]:
    """Move ``model`` to ``device`` in the layout :func:`choose` gives, with the guard on
    CPU; (the model, the layout). In place, like ``model.to``; call it once per model."""
    device = torch.device(device)
    fmt = choose(model, device, requested)
    model = model.to(device)
    model = model.to(memory_format=torch.channels_last if fmt == "channels_last" else torch.contiguous_format)
    if fmt == "channels_last" and device.type == "cpu":
        for conv in _convs(model):
            if conv.in_channels // conv.groups < NARROW_CHANNELS:
                conv.weight.data = _nchw(conv.weight.data)
                if not getattr(conv, "_nchw_guard", False):  # once, however often apply() runs
                    conv.register_forward_pre_hook(_nchw_input)
                    conv._nchw_guard = True
    return model, fmt


def memory_format_policy() -> dict:
    """What :func:`choose` reads on this machine (for a run's recorded environment)."""
    return {"cpu_vector_isa": cpu_vector_isa(), "narrow_channels_guard": NARROW_CHANNELS}


__all__ = ["FORMATS", "NARROW_CHANNELS", "apply", "check_format", "choose", "cpu_vector_isa",
           "memory_format_policy", "requested_format"]
