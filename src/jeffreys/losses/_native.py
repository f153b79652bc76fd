"""The compiled CPU kernel of the Jeffreys loss (``_kernel.c``) and its autograd Function.

The C source ships with the package and is compiled on first use with the system's C
compiler (``$CC``, else ``cc``) into a per-user cache, keyed by a hash of the source, the
flags (``-march``: :func:`march`), the compiler's version and the CPU's feature flags (a
library built with ``-march=native`` on one CPU is never loaded on another), then loaded
with ctypes: no Python or torch headers, about a second to build. Where no compiler works
the eager implementation of ``_fused`` is used instead, with the same results (the tests
run every loss test on both).

``JEFFREYS_LOSS_KERNEL``: ``auto`` (default: the kernel where it builds), ``off`` (always
eager), ``on`` (the kernel or an error saying why not). ``JEFFREYS_KERNEL_MARCH``: the
``-march`` to build for (default ``native``, or the ISA ``ATEN_CPU_CAPABILITY`` caps torch
to). ``JEFFREYS_CACHE_DIR`` moves the cache (default ``$XDG_CACHE_HOME/jeffreys`` or
``~/.cache/jeffreys``); a cached library not owned by the user, or writable by others, is
refused rather than loaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..cache import cache_dir
from ..errors import InputError, JeffreysError

SOURCE = Path(__file__).with_name("_kernel.c")
FLAGS = ("-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared", "-pthread")
# -march: JEFFREYS_KERNEL_MARCH when set (e.g. x86-64-v3 for an AVX2 build on any AVX2 CPU);
# else the ISA ATEN_CPU_CAPABILITY caps torch's own kernels to, so that emulating an AVX2
# CPU (ATEN_CPU_CAPABILITY=avx2) runs the kernel an AVX2 CPU would build; else native.
ATEN_MARCH = {"avx2": "x86-64-v3", "default": "x86-64-v2"}
_MARCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,39}")
# x86 only: 512-bit vectors where the CPU has them (gcc prefers 256; torch's own kernels
# use 512 on such CPUs; measured 0.55 vs 0.69 ms for B=128, K=5994 on one thread).
X86_FLAGS = ("-mprefer-vector-width=512",)
MODES = ("auto", "on", "off")
# Below this many logits one thread does the whole batch (waking a team of threads costs
# tens of microseconds).
MIN_ELEMENTS_PER_THREAD = 1 << 15

_F64 = ctypes.c_double
_PTR = ctypes.c_void_p
_I64 = ctypes.c_int64
_forced: str | None = None  # set by use_kernel(): overrides the environment


class KernelUnavailable(JeffreysError, RuntimeError):
    """The kernel was required (JEFFREYS_LOSS_KERNEL=on) but cannot be built or loaded
    (a JeffreysError: the CLI prints it in one line)."""


def mode() -> str:
    value = _forced or os.environ.get("JEFFREYS_LOSS_KERNEL", "auto").strip().lower() or "auto"
    if value not in MODES:
        raise InputError(f"JEFFREYS_LOSS_KERNEL must be one of {', '.join(MODES)}, got {value!r}")
    return value


@contextlib.contextmanager
def use_kernel(value: str):
    """Force a mode ("auto", "on", "off") inside the block (tests, benchmarks)."""
    global _forced
    if value not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {value!r}")
    saved, _forced = _forced, value
    try:
        yield
    finally:
        _forced = saved


def _compiler() -> str:
    cc = os.environ.get("CC") or "cc"
    found = shutil.which(cc)
    if found is None:
        raise KernelUnavailable(f"no C compiler: {cc!r} not found (set CC, or JEFFREYS_LOSS_KERNEL=off)")
    return found


def _cpu_flags() -> str:
    """The CPU's feature flags: a binary built with -march=native runs only where they match."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    return platform.processor() or platform.machine()


def _x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def march() -> str:
    """The ``-march`` the kernel is built for (see :data:`ATEN_MARCH`)."""
    value = os.environ.get("JEFFREYS_KERNEL_MARCH", "").strip()
    if value:
        if not _MARCH.fullmatch(value):
            raise InputError(f"JEFFREYS_KERNEL_MARCH must be a -march name such as native or x86-64-v3, got {value[:40]!r}")
        return value
    capped = ATEN_MARCH.get(os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower())
    return capped if capped and _x86() else "native"


def flags() -> tuple[str, ...]:
    common = (FLAGS[0], f"-march={march()}", *FLAGS[1:])
    return common + X86_FLAGS if _x86() else common


# Tried in order: with OpenMP the rows are split over torch's own threads (the library binds
# to the libgomp torch loaded); without it (a compiler lacking OpenMP) over pthreads.
VARIANTS = (("-fopenmp",), ())


def _key(cc: str) -> str:
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise KernelUnavailable(f"cannot run the C compiler {cc}: {err}") from None
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(flags()).encode(), repr(VARIANTS).encode(), version.encode(),
                 _cpu_flags().encode(), platform.machine().encode()):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def _compile(cc: str, out: str) -> None:
    """Build ``out`` with the first variant that compiles; KernelUnavailable naming the
    last one's first error line otherwise."""
    for extra in VARIANTS:
        cmd = [cc, *flags(), *extra, "-o", out, str(SOURCE), "-lm"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as err:
            raise KernelUnavailable(f"compiling {SOURCE.name} failed: {err}") from None
        if done.returncode == 0:
            return
    first = (done.stderr.strip().splitlines() or ["(no message)"])[0]
    raise KernelUnavailable(f"compiling {SOURCE.name} failed ({' '.join(cmd)}): {first}")


def _check_owner(path: Path) -> None:
    """Code is loaded from the cache: refuse a file someone else could have put there."""
    info = path.stat()
    if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o022):
        raise KernelUnavailable(f"refusing to load {path}: not owned by this user, or writable by others")


def build(directory: Path | None = None) -> Path:
    """Compile the kernel into ``directory`` (the cache by default) unless it is there;
    return the shared library's path. Concurrent builders each write a private file and
    rename it into place, so a half-written library is never loaded."""
    cc = _compiler()
    directory = Path(directory) if directory is not None else cache_dir()
    target = directory / f"jeffreys_loss_{_key(cc)}.so"
    if target.is_file():
        _check_owner(target)
        return target
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".tmp.so", dir=directory)
    os.close(fd)
    try:
        _compile(cc, tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return target


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.jeffreys_forward.restype = ctypes.c_int
    lib.jeffreys_forward.argtypes = [_PTR, ctypes.c_int, _PTR, _I64, _I64, _F64, _F64, _F64, _F64, _PTR, _PTR,
                                     ctypes.c_int]
    lib.jeffreys_kernel_nstat.restype = ctypes.c_int
    lib.jeffreys_kernel_openmp.restype = ctypes.c_int
    if lib.jeffreys_kernel_nstat() != NSTAT:
        raise KernelUnavailable(f"{path} does not match this version of jeffreys")
    return lib


@functools.cache
def _library() -> ctypes.CDLL | KernelUnavailable:
    try:
        return _load(build())
    except KernelUnavailable as err:
        return err
    except OSError as err:  # a cache we cannot write, a library that does not load
        return KernelUnavailable(f"loss kernel unavailable: {err}")


def library() -> ctypes.CDLL | None:
    """The loaded kernel, or None when the mode is "off" or (in "auto") it cannot be built."""
    current = mode()
    if current == "off":
        return None
    lib = _library()
    if isinstance(lib, KernelUnavailable):
        if current == "on":
            raise lib
        return None
    return lib


def describe() -> dict:
    """What the loss runs on here, for benchmarks, bug reports and ``results.json``: whether
    the compiled kernel runs, its threading, its compile flags and the CPU's SIMD features it
    was built for (results are bit-reproducible only where the -march and these match)."""
    lib = library()
    simd = sorted({f for f in _cpu_flags().split() if f.startswith(("sse", "avx", "fma", "asimd", "sve", "neon"))})
    return {"kernel": lib is not None, "threads": ("openmp" if lib.jeffreys_kernel_openmp() else "pthreads")
            if lib is not None else None, "why_not": unavailable_reason(),
            "compile_flags": list(flags()) if lib is not None else None, "cpu_simd_flags": simd}


def unavailable_reason() -> str | None:
    """Why the kernel is not used ("off", or the build error), None when it is."""
    if mode() == "off":
        return "JEFFREYS_LOSS_KERNEL=off"
    lib = _library()
    return str(lib) if isinstance(lib, KernelUnavailable) else None


# Columns of the per-row statistics (the enum of _kernel.c).
CE, LS, J, LOSS, M, LSE_NT, EBAR, LOG_S = range(8)
NSTAT = 8


def applies(logits: Tensor) -> bool:
    """The kernel handles CPU logits of any float dtype (half precision is widened to
    float32 first) when it is available."""
    return logits.device.type == "cpu" and library() is not None


def _threads(rows: int, classes: int) -> int:
    return max(1, min(torch.get_num_threads(), rows, rows * classes // MIN_ELEMENTS_PER_THREAD))


def _widened(logits: Tensor) -> Tensor:
    x = logits.detach()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return x.contiguous()


class Prepared(NamedTuple):
    """What the kernel's forward gives the autograd Function."""

    x: Tensor  # the logits, widened to float32 (or float64) and contiguous
    labels: Tensor  # int64, contiguous
    stats: Tensor  # (B, 8) float64, columns CE ... LOG_S
    grad: Tensor | None  # gradient of scale * sum of the row losses, x's dtype, or None
    scale: float


def run(logits: Tensor, labels: Tensor, w: float, alpha: float, beta: float, scale: float = 1.0,
        want_grad: bool = False) -> Prepared | None:
    """Statistics and (``want_grad``) the gradient of ``scale`` times the summed row losses;
    None when a row holds a non-finite logit (the eager path defines that case). Labels
    must already be checked."""
    lib = _library()  # the mode was the caller's decision (applies); a backward must not depend on it
    if isinstance(lib, KernelUnavailable):
        raise lib
    x = _widened(logits)
    y = labels.detach().to(torch.int64).contiguous()
    rows, classes = x.shape
    stats = torch.empty(rows, NSTAT, dtype=torch.float64)
    grad = torch.empty_like(x) if want_grad else None
    bad = lib.jeffreys_forward(x.data_ptr(), x.element_size(), y.data_ptr(), rows, classes, w, alpha, beta,
                               scale, stats.data_ptr(), grad.data_ptr() if want_grad else None,
                               _threads(rows, classes))
    if bad < 0:
        raise ValueError(f"loss kernel: bad arguments (shape {tuple(x.shape)}, labels in [0, {classes}) required)")
    return None if bad else Prepared(x, y, stats, grad, scale)


class JeffreysRowsKernel(torch.autograd.Function):
    """As ``_fused.JeffreysRows`` (same results), from the kernel's ``run`` done by the
    caller (``prepared``, with the gradient for an upstream gradient of 1). The backward
    scales that gradient by the upstream one: nothing to compute for ``loss.backward()``.
    The gradient buffer is handed over at the first backward; a second backward through a
    retained graph recomputes it."""

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor, w: float, alpha: float, beta: float, reduction: str,
                terms_out: dict | None, prepared: Prepared):
        stats = prepared.stats
        batch = stats.shape[0]
        out_dtype = prepared.x.dtype
        if terms_out is not None and alpha and beta:
            terms_out["terms"] = stats[:, CE:LOSS].to(out_dtype)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(prepared.x, prepared.labels)
            ctx.grad = prepared.grad
            ctx.args = (w, alpha, beta, prepared.scale, reduction == "none", logits.dtype)
        rows = stats[:, LOSS]
        if reduction == "none":
            return rows.to(out_dtype)
        total = rows.sum() / batch if reduction == "mean" else rows.sum()  # empty mean: NaN, as torch
        return total.to(out_dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, y = ctx.saved_tensors
        w, alpha, beta, scale, per_row, dtype = ctx.args
        grad, ctx.grad = ctx.grad, None
        if grad is None:  # second backward: the first one took the buffer
            grad = run(x, y, w, alpha, beta, scale, True).grad
        if per_row:
            grad.mul_(grad_out.to(grad.dtype).unsqueeze(1))
        elif grad_out.numel() != 1 or float(grad_out) != 1.0:
            grad.mul_(grad_out.to(grad.dtype))
        return grad.to(dtype), None, None, None, None, None, None, None


def term_rows(logits: Tensor, labels: Tensor) -> Tensor | None:
    """(B, 3) ce, ls, jeffreys by the kernel, or None when the eager path is needed."""
    done = run(logits, labels, 1.0, 0.1, 0.025)
    return None if done is None else done.stats[:, CE:LOSS].to(done.x.dtype)
