"""The compiled CPU kernel of the Jeffreys loss: its build and cache, when it is used, and
what test_losses.py (which runs every loss test on both implementations) does not reach:
paper-sized K against float64, thread counts, the fallbacks, bad arguments."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import torch

from jeffreys.errors import InputError
from jeffreys.losses import JeffreysLoss, LabelSmoothingLoss
from jeffreys.losses import _native
from jeffreys.losses._native import KernelUnavailable, use_kernel


def _kind(out: torch.Tensor) -> str:
    return type(out.grad_fn).__name__


# ---------------------------------------------------------------- build and cache
def test_builds_from_source_into_an_empty_cache_and_reuses_it(tmp_path):
    path = _native.build(tmp_path)
    assert path.parent == tmp_path and path.name.startswith("jeffreys_loss_") and path.suffix == ".so"
    before = path.stat().st_mtime_ns
    assert _native.build(tmp_path) == path and path.stat().st_mtime_ns == before  # not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left
    lib = _native._load(path)
    assert lib.jeffreys_kernel_nstat() == _native.NSTAT


def test_a_changed_source_gets_a_new_library(tmp_path, monkeypatch):
    source = tmp_path / "_kernel.c"
    source.write_bytes(_native.SOURCE.read_bytes())
    monkeypatch.setattr(_native, "SOURCE", source)
    first = _native.build(tmp_path / "cache")
    source.write_bytes(source.read_bytes() + b"\n/* edited */\n")
    assert _native.build(tmp_path / "cache") != first


def test_concurrent_builders_leave_one_whole_library(tmp_path):
    code = "import sys; from jeffreys.losses import _native; print(_native.build(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    paths = {p.communicate(timeout=300)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(paths) == 1 and [p.name for p in tmp_path.iterdir()] == [os.path.basename(paths.pop())]


def test_no_compiler_falls_back_in_auto_and_is_an_error_in_on(tmp_path, monkeypatch, fresh_library):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("JEFFREYS_CACHE_DIR", str(tmp_path / "cache"))
    x = torch.randn(3, 5, requires_grad=True)
    y = torch.tensor([0, 1, 4])
    with use_kernel("auto"):
        assert _native.library() is None
        assert "no C compiler" in _native.unavailable_reason()
        assert _kind(JeffreysLoss()(x, y)) == "JeffreysRowsBackward"  # the eager Function
    with use_kernel("on"), pytest.raises(KernelUnavailable, match="no C compiler"):
        JeffreysLoss()(x, y)


def test_a_failing_compiler_is_reported_with_its_first_line(tmp_path, monkeypatch, fresh_library):
    cc = tmp_path / "cc"
    cc.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo fake 1.0; exit 0; }\necho 'fatal: broken' >&2\nexit 1\n")
    cc.chmod(cc.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CC", str(cc))
    monkeypatch.setenv("JEFFREYS_CACHE_DIR", str(tmp_path / "cache"))
    with use_kernel("on"), pytest.raises(KernelUnavailable, match="failed .*fatal: broken"):
        _native.library()
    assert not any((tmp_path / "cache").iterdir())  # the failed output was removed


def test_modes(monkeypatch):
    monkeypatch.setenv("JEFFREYS_LOSS_KERNEL", "sometimes")
    with pytest.raises(InputError, match="JEFFREYS_LOSS_KERNEL must be one of auto, on, off"):
        _native.mode()
    monkeypatch.setenv("JEFFREYS_LOSS_KERNEL", "off")
    assert _native.library() is None and _native.unavailable_reason() == "JEFFREYS_LOSS_KERNEL=off"
    with use_kernel("on"):
        assert _native.mode() == "on"
    with pytest.raises(ValueError, match="mode must be"):
        with use_kernel("fast"):
            pass


# ---------------------------------------------------------------- dispatch
def test_cpu_logits_go_through_the_kernel_when_on():
    y = torch.tensor([0, 3, 8, 1])
    with use_kernel("on"):
        for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            x = torch.randn(4, 9).to(dtype).requires_grad_()
            assert _kind(JeffreysLoss()(x, y)) == "JeffreysRowsKernelBackward", dtype
        assert _kind(LabelSmoothingLoss()(x, y)) == "JeffreysRowsKernelBackward"
    with use_kernel("off"):
        assert _kind(JeffreysLoss()(x, y)) == "JeffreysRowsBackward"


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_a_non_finite_logit_takes_the_eager_path_and_gives_its_result(bad):
    x = torch.randn(3, 6)
    x[1, 2] = bad
    y = torch.tensor([0, 2, 5])
    results = {}
    for kind in ("on", "off"):
        z = x.clone().requires_grad_()
        with use_kernel(kind):
            out = JeffreysLoss(reduction="none")(z, y)
            out.sum().backward()
        results[kind] = (out.detach(), z.grad)
        assert _kind(out) == "JeffreysRowsBackward"
    torch.testing.assert_close(results["on"], results["off"], equal_nan=True)


# ---------------------------------------------------------------- agreement
@pytest.mark.parametrize("target_weight", ["paper", "reference"])
@pytest.mark.parametrize(("alpha", "beta"), [(0.1, 0.025), (0.1, 0.0), (0.0, 0.2), (0.0, 0.0)])
def test_float32_kernel_matches_float64_at_paper_size(target_weight, alpha, beta):
    """B=64, K=5994 (VoxCeleb2's speakers), logits of an AAM head (scale 30) in float32
    through the kernel, against the float64 eager implementation of the same logits."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(64, 5994, generator=gen) * 6.0
    y = torch.randint(0, 5994, (64,), generator=gen)
    x[:8, :] = x[:8, :].clamp(-30, 30)
    x[torch.arange(8), y[:8]] = 30.0  # confident rows, as late in training
    loss = JeffreysLoss(alpha, beta, target_weight, reduction="none")
    z = x.clone().requires_grad_()
    with use_kernel("on"):
        got = loss(z, y)
        (got * torch.linspace(0.5, 2.0, 64)).sum().backward()
    z64 = x.double().requires_grad_()
    with use_kernel("off"):
        want = loss(z64, y)
        (want * torch.linspace(0.5, 2.0, 64, dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(got.double(), want, rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(z.grad.double(), z64.grad, rtol=1e-4, atol=1e-7)


def test_results_do_not_depend_on_the_thread_count():
    lib = _native.library() or pytest.fail("kernel unavailable: " + str(_native.unavailable_reason()))
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(37, 3001, generator=gen) * 4
    y = torch.randint(0, 3001, (37,), generator=gen)
    outputs = []
    for threads in (1, 2, 3, 8, 64):
        stats = torch.empty(37, _native.NSTAT, dtype=torch.float64)
        grad = torch.empty_like(x)
        bad = lib.jeffreys_forward(x.data_ptr(), 4, y.data_ptr(), 37, 3001, 1.0, 0.1, 0.025, 0.5,
                                   stats.data_ptr(), grad.data_ptr(), threads)
        assert bad == 0
        outputs.append((stats, grad))
    for stats, grad in outputs[1:]:
        assert torch.equal(stats, outputs[0][0]) and torch.equal(grad, outputs[0][1])


def test_non_contiguous_logits_and_scaled_upstream_gradient():
    gen = torch.Generator().manual_seed(9)
    base = torch.randn(50, 6, generator=gen)
    y = torch.randint(0, 50, (6,), generator=gen)
    with use_kernel("on"):
        z = base.t().requires_grad_()  # (6, 50), not contiguous
        (JeffreysLoss()(z, y) * 2.5).backward()
        zc = base.t().contiguous().requires_grad_()
        JeffreysLoss()(zc, y).backward()
    torch.testing.assert_close(z.grad, 2.5 * zc.grad)


def test_bad_arguments_to_the_kernel_are_refused_not_read_out_of_bounds():
    with use_kernel("on"):
        x = torch.randn(2, 4)
        for labels in ([0, 4], [-1, 0]):
            with pytest.raises(ValueError, match="labels in \\[0, 4\\) required"):
                _native.run(x, torch.tensor(labels), 1.0, 0.1, 0.025)
        with pytest.raises(ValueError, match="bad arguments"):
            _native.run(torch.randn(2, 1), torch.tensor([0, 0]), 1.0, 0.1, 0.025)
        empty = _native.run(torch.randn(0, 4), torch.zeros(0, dtype=torch.long), 1.0, 0.1, 0.025, 1.0, True)
        assert empty.stats.shape == (0, _native.NSTAT) and empty.grad.shape == (0, 4)


def test_pthreads_build_equals_the_openmp_build(tmp_path, monkeypatch):
    """A compiler without OpenMP gets the pthreads variant: same results, bit for bit."""
    default = _native.library() or pytest.fail("kernel unavailable: " + str(_native.unavailable_reason()))
    monkeypatch.setattr(_native, "VARIANTS", ((),))
    plain = _native._load(_native.build(tmp_path))
    assert plain.jeffreys_kernel_openmp() == 0
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(9, 777, generator=gen) * 5
    y = torch.randint(0, 777, (9,), generator=gen)
    results = []
    for lib in (default, plain):
        stats = torch.empty(9, _native.NSTAT, dtype=torch.float64)
        grad = torch.empty_like(x)
        assert lib.jeffreys_forward(x.data_ptr(), 4, y.data_ptr(), 9, 777, 1.0, 0.1, 0.025, 1.0,
                                    stats.data_ptr(), grad.data_ptr(), 2) == 0
        results.append((stats, grad))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_a_cached_library_writable_by_others_is_refused(tmp_path):
    path = _native.build(tmp_path)
    path.chmod(0o666)
    with pytest.raises(KernelUnavailable, match="refusing to load .*writable by others"):
        _native.build(tmp_path)
