"""The convolution memory layout: the per-machine choice, the narrow-convolution guard that
keeps oneDNN's broken AVX2 path unreachable, and the loss kernel's -march."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jeffreys.errors import InputError
from jeffreys.models import PRESETS, ResNetConfig, SpeakerModel, preset
from jeffreys.models import memory_format as mf

from train_helpers import make_datadir, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def _isa_env(monkeypatch, flags, **env):
    monkeypatch.setattr(mf, "_cpu_flags", lambda: frozenset(flags))
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


# ---- the choice ------------------------------------------------------------------------

@pytest.mark.parametrize("flags, env, isa", [
    ({"avx2", "avx512f"}, {}, "avx512"),
    ({"avx2", "avx512f"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "avx2"),
    ({"avx2", "avx512f"}, {"DNNL_MAX_CPU_ISA": "avx2_vnni"}, "avx2"),
    ({"avx2", "avx512f"}, {"ATEN_CPU_CAPABILITY": "avx2"}, "avx2"),
    ({"avx2", "avx512f"}, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, "avx512"),
    ({"avx2", "fma"}, {}, "avx2"),
    ({"avx2"}, {"ONEDNN_MAX_CPU_ISA": "AVX"}, "other"),
    ({"sse4_2"}, {}, "other"),
])
def test_cpu_vector_isa_reads_flags_and_caps(monkeypatch, flags, env, isa):
    _isa_env(monkeypatch, flags, **env)
    assert mf.cpu_vector_isa() == isa


def test_auto_rule_by_isa_width_and_device(monkeypatch):
    demo, paper = SpeakerModel(PRESETS["demo"]), SpeakerModel(PRESETS["paper"])
    tiny = SpeakerModel(preset("demo", widths=[4, 4, 8, 8], num_mel_bins=16, embed_dim=8))
    _isa_env(monkeypatch, {"avx2", "avx512f"})
    assert mf.choose(demo, "cpu") == "channels_last"  # only the 1-channel stem is guarded
    assert mf.choose(paper, "cpu") == "channels_last"
    assert mf.choose(tiny, "cpu") == "contiguous"  # most layers guarded: the layouts would meet at every block
    _isa_env(monkeypatch, {"avx2", "avx512f"}, **AVX2)
    assert mf.choose(demo, "cpu") == "contiguous"
    _isa_env(monkeypatch, {"avx2"})
    assert mf.choose(demo, "cpu") == "contiguous"
    assert mf.choose(paper, "cuda") == "channels_last"
    assert mf.choose(demo, "mps") == "contiguous"
    for fmt in ("channels_last", "contiguous"):  # an explicit request is obeyed
        assert mf.choose(paper, "cpu", fmt) == fmt


def test_requested_format_and_bad_names():
    assert mf.requested_format("auto", None) == "auto"
    assert mf.requested_format("auto", True) == "channels_last"
    assert mf.requested_format("channels_last", False) == "contiguous"
    for bad in ("nhwc", "", None, "Channels_Last"):
        with pytest.raises(InputError, match="memory_format must be one of"):
            mf.requested_format(bad)


# ---- the guard ---------------------------------------------------------------------------

def _standard(t: torch.Tensor) -> bool:
    return t.stride() == torch.empty(t.shape).stride()


def test_guard_keeps_narrow_convolutions_nchw_once():
    model = SpeakerModel(preset("demo", widths=[4, 8, 8, 16], num_mel_bins=16, embed_dim=8))
    model, fmt = mf.apply(model, "cpu", "channels_last")
    model, _ = mf.apply(model, "cpu", "channels_last")  # applying twice adds no second hook
    assert fmt == "channels_last"
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    narrow = [c for c in convs if c.in_channels < mf.NARROW_CHANNELS]
    assert narrow and len(narrow) < len(convs)
    for c in convs:
        if c in narrow:
            # NCHW strides exactly, also for the 1-input-channel stem and 1x1 shortcuts,
            # which .contiguous() would leave with channels_last strides
            assert _standard(c.weight) and len(c._forward_pre_hooks) == 1
        else:
            assert c.weight.is_contiguous(memory_format=torch.channels_last) and not c._forward_pre_hooks
    seen = []
    hooks = [c.register_forward_hook(lambda m, args, out: seen.append(_standard(args[0]))) for c in narrow]
    model(torch.randn(2, 16000) * 0.1)
    for h in hooks:
        h.remove()
    assert seen == [True] * len(narrow)


def test_layouts_give_the_same_embeddings_and_gradients():
    torch.manual_seed(0)
    # without the embedding's BatchNorm, whose input bias has a gradient of rounding noise
    cfg = preset("demo", widths=[4, 8, 8, 16], num_mel_bins=16, embed_dim=8, embed_bn=False)
    a = SpeakerModel(cfg)
    b = SpeakerModel(cfg)
    b.load_state_dict(a.state_dict())
    a, _ = mf.apply(a, "cpu", "contiguous")
    b, _ = mf.apply(b, "cpu", "channels_last")
    waves = torch.randn(3, 16000) * 0.1
    ea, eb = a(waves), b(waves)
    torch.testing.assert_close(ea, eb, rtol=1e-4, atol=1e-5)
    ea.square().sum().backward()
    eb.square().sum().backward()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        # float32 sums in another order: relative to the gradient's largest entry
        assert (p.grad - q.grad).abs().max() <= 1e-3 * p.grad.abs().max().clamp_min(1e-6), name


def test_contiguous_request_undoes_channels_last():
    model = SpeakerModel(PRESETS["demo"]).to(memory_format=torch.channels_last)
    model, fmt = mf.apply(model, "cpu", "contiguous")
    assert fmt == "contiguous"
    assert all(_standard(p) for p in model.parameters())


def _run(args, env=None, timeout=300):
    """A subprocess, so that a crash inside oneDNN fails the test instead of the run."""
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "2", **(env or {})})


def test_reduced_case_under_avx2_emulation():
    """The issue's reduced case (narrow channels_last convolutions, forward+backward, 30
    passes) through the toolkit's apply(), with oneDNN held to AVX2: no crash, and every
    gradient equal to a float64 NCHW reference (on an AVX-512 CPU emulating AVX2 the bug
    shows as wrong gradients rather than a crash: tests/onednn_case.py --unguarded)."""
    done = _run([sys.executable, "tests/onednn_case.py", "--passes", "30"], env=AVX2)
    assert done.returncode == 0, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "every gradient matches" in done.stdout


def test_training_step_narrow_channels_last_under_avx2(tmp_path):
    """`jeffreys train` with the tests' tiny widths (4-4-8-8) forced into channels_last, with
    oneDNN held to AVX2: 30 training steps complete, in the layout asked for."""
    data = make_datadir(tmp_path / "data")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("")
    overrides = tiny_overrides(data, "memory_format=channels_last", "num_threads=2", steps=30)
    sets = [a for o in overrides for a in ("--set", o)]
    done = _run([sys.executable, "-m", "jeffreys", "train", str(cfg), "--exp-dir", str(tmp_path / "exp"), *sets], env=AVX2)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    result = json.loads((tmp_path / "exp" / "train_result.json").read_text())
    assert (result["steps"], result["memory_format"]) == (30, "channels_last")


def test_train_config_memory_format(tmp_path):
    from jeffreys.train import load_train_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("memory_format: nhwc\n")
    with pytest.raises(InputError, match="memory_format"):
        load_train_config(cfg)
    cfg.write_text("channels_last: false\n")
    c = load_train_config(cfg)
    assert mf.requested_format(c.memory_format, c.channels_last) == "contiguous"


# ---- the loss kernel's -march ------------------------------------------------------------

def test_kernel_march_follows_the_emulated_isa(monkeypatch):
    from jeffreys.losses import _native

    monkeypatch.setattr(_native, "_x86", lambda: True)
    monkeypatch.delenv("JEFFREYS_KERNEL_MARCH", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    assert _native.march() == "native"
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert _native.march() == "x86-64-v3" and "-march=x86-64-v3" in _native.flags()
    monkeypatch.setenv("JEFFREYS_KERNEL_MARCH", "x86-64-v2")
    assert _native.march() == "x86-64-v2"
    for bad in ("native -O0", "$(id)", "-fplugin=x.so", "a" * 41):
        monkeypatch.setenv("JEFFREYS_KERNEL_MARCH", bad)
        with pytest.raises(InputError, match="JEFFREYS_KERNEL_MARCH"):
            _native.march()


def test_kernel_cache_key_changes_with_cpu_and_march(monkeypatch):
    """A library built with -march=native on one CPU is never loaded on another (a home
    directory shared between machines): the CPU's flags and the -march are in the key."""
    from jeffreys.losses import _native

    if shutil.which(os.environ.get("CC") or "cc") is None:
        pytest.skip("no C compiler")
    cc = _native._compiler()
    monkeypatch.setenv("JEFFREYS_KERNEL_MARCH", "native")
    base = _native._key(cc)
    monkeypatch.setattr(_native, "_cpu_flags", lambda: "flags : fpu sse2 avx2")
    other_cpu = _native._key(cc)
    monkeypatch.setenv("JEFFREYS_KERNEL_MARCH", "x86-64-v2")
    other_march = _native._key(cc)
    assert len({base, other_cpu, other_march}) == 3


@pytest.mark.skipif(shutil.which("objdump") is None or os.uname().machine != "x86_64", reason="needs objdump on x86-64")
def test_kernel_built_for_avx2_has_no_avx512_instructions(tmp_path, monkeypatch):
    from jeffreys.losses import _native

    if shutil.which(os.environ.get("CC") or "cc") is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("JEFFREYS_KERNEL_MARCH", "x86-64-v3")
    lib = _native.build(tmp_path)
    asm = subprocess.run(["objdump", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    assert "zmm" not in asm and "ymm" in asm  # 256-bit AVX2 vectors, no 512-bit ones
