"""What a run's numbers depend on, as plain JSON data: :func:`environment`.

Recorded in ``results.json`` (``environment``) by ``jeffreys experiment`` and ``jeffreys
demo``, and compared field by field by ``jeffreys compare-runs``. Same machine, same library
versions and the same fields below give bit-identical numbers; another CPU instruction set,
another torch (its CPU capability, oneDNN, MKL) or another thread count changes the kernels,
hence the last bits, and results then agree within their intervals only
(docs/experiments.md, "Determinism" and "Checking two runs against each other").

Cheap by design: no subprocess, no compilation (the loss kernel is reported as this process
has it, never built just to report), no import beyond torch and numpy, and CUDA is never
initialised by asking (a forked worker after it would fail).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

# Environment variables that change which kernels run (or how many threads split a reduction).
KERNEL_VARIABLES = (
    "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "MKL_CBWR", "JEFFREYS_LOSS_KERNEL", "JEFFREYS_KERNEL_MARCH", "CUBLAS_WORKSPACE_CONFIG",
)

# CPU features that select different kernels in torch, oneDNN, MKL or the loss's C kernel
# (x86 and Arm names as /proc/cpuinfo spells them).
SIMD_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
    "asimd", "asimdhp", "asimddp", "sve", "sve2", "bf16", "i8mm",
)


def _cpuinfo() -> tuple[str | None, list[str] | None]:
    """(model name, the SIMD_FLAGS present) from /proc/cpuinfo; (None, None) where it is absent."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None, None
    model = flags = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if model is None and key in ("model name", "hardware", "cpu model"):
            model = value.strip() or None
        elif flags is None and key in ("flags", "features"):
            flags = set(value.split())
        if model is not None and flags is not None:
            break
    return model, (sorted(f for f in SIMD_FLAGS if f in flags) if flags is not None else None)


def _torch_build(torch) -> dict:
    """oneDNN (MKL-DNN) and MKL versions and the BLAS of torch's build, from ``torch.__config__.show()``."""
    try:
        shown = torch.__config__.show()
    except Exception:  # an exotic build without it: report what the APIs give
        shown = ""
    onednn = re.search(r"(?:MKL-DNN|oneDNN)\s+v?([0-9][\w.]*)", shown)
    mkl = re.search(r"Math Kernel Library Version\s+([\w.\-]+?)(?:-Product|\s|$)", shown)
    blas = re.search(r"BLAS_INFO=([\w.\-]+)", shown)
    return {
        "torch_onednn": onednn.group(1) if onednn else (True if torch.backends.mkldnn.is_available() else None),
        "torch_mkl": mkl.group(1) if mkl else bool(torch.backends.mkl.is_available()),
        "torch_blas": blas.group(1) if blas else None,
    }


def _loss_kernel() -> dict:
    """The Jeffreys loss's C kernel as this process has it: its mode, whether it is loaded
    (None: not tried in this process; it is never built here just to report)."""
    from .errors import JeffreysError
    from .losses import _native

    try:
        mode = _native.mode()
    except JeffreysError as e:
        mode = f"invalid: {e}"
    loaded = threads = why_not = None
    if mode == "off":
        loaded, why_not = False, "JEFFREYS_LOSS_KERNEL=off"
    elif _native._library.cache_info().currsize:  # already built or refused in this process: no build
        lib = _native._library()
        if isinstance(lib, Exception):
            loaded, why_not = False, str(lib)
        else:
            loaded, threads = True, "openmp" if lib.jeffreys_kernel_openmp() else "pthreads"
    return {"mode": mode, "loaded": loaded, "threads": threads, "why_not": why_not,
            "compile_flags": list(_native.flags())}


def _memory_format() -> dict:
    """What ``memory_format: auto`` reads on this machine (jeffreys.models.memory_format)."""
    from .models.memory_format import memory_format_policy

    return memory_format_policy()


def _version(name: str) -> str | None:
    module = sys.modules.get(name)
    if module is not None and isinstance(getattr(module, "__version__", None), str):
        return module.__version__
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """What this process's numbers depend on (JSON data; keys documented in docs/experiments.md)."""
    import numpy as np
    import torch

    from . import __version__

    model, simd = _cpuinfo()
    cuda = torch.version.cuda
    gpu = None
    with contextlib.suppress(Exception):  # only when CUDA is already initialised: asking must not initialise it
        if cuda and torch.cuda.is_initialized():
            gpu = torch.cuda.get_device_name(torch.cuda.current_device())
    return {
        "jeffreys": __version__,
        "python": platform.python_version(),
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu_model": model,
        "cpu_flags": simd,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        **_torch_build(torch),
        "torch_threads": torch.get_num_threads(),
        "cuda": cuda,
        "gpu": gpu,
        "numpy": np.__version__,
        "scipy": _version("scipy"),
        "env": {name: os.environ.get(name) for name in KERNEL_VARIABLES},
        "loss_kernel": _loss_kernel(),
        "memory_format": _memory_format(),
    }


__all__ = ["KERNEL_VARIABLES", "SIMD_FLAGS", "environment"]
