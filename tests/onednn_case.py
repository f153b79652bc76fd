"""The reduced case of the oneDNN AVX2 bug, through the toolkit's own model and guard.

oneDNN v3.12.0's AVX2 weight-gradient kernel for channels_last convolutions with fewer than
8 input channels corrupts the heap (a crash on AVX2-only CPUs; on an AVX-512 CPU emulating
AVX2 with ``ONEDNN_MAX_CPU_ISA=AVX2`` it returns wrong gradients or hangs). Run as a script,
in a subprocess, so a crash fails the calling test instead of killing the test run:

    python tests/onednn_case.py [--unguarded] [--passes 30]

It puts a narrow extractor (the tests' tiny widths, 4-4-8-8) and its AAM head in
channels_last through :func:`jeffreys.models.memory_format.apply` (the trainer's and
extract's path), runs forward+backward passes, and compares every weight gradient with a
float64 NCHW copy of the same network. Exit 0 when all agree, 1 naming the first that does
not. ``--unguarded`` converts the model with a plain ``.to(memory_format=channels_last)``
instead (the code before the guard) to show the bug.
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch

from jeffreys.losses import AAMHead, JeffreysLoss
from jeffreys.models import ResNetConfig, SpeakerModel
from jeffreys.models.memory_format import apply


class Net(torch.nn.Module):
    def __init__(self, model, head):
        super().__init__()
        self.model, self.head = model, head

    def forward(self, feats, labels):
        return self.head(self.model.embed_features(feats), labels)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--unguarded", action="store_true")
    ap.add_argument("--passes", type=int, default=30)
    a = ap.parse_args()
    torch.manual_seed(0)
    cfg = ResNetConfig(widths=[4, 4, 8, 8], depths=[1, 1, 1, 1], num_mel_bins=16, embed_dim=8, stem_stride=2)
    net = Net(SpeakerModel(cfg), AAMHead(embed_dim=8, num_classes=6, scale=30.0, margin=0.2))
    ref = copy.deepcopy(net).double()
    if a.unguarded:
        net = net.to(memory_format=torch.channels_last)
    else:
        net, fmt = apply(net, "cpu", "channels_last")
        assert fmt == "channels_last"
    loss_fn = JeffreysLoss(alpha=0.1, beta=0.025)
    for step in range(a.passes):
        feats = torch.randn(4, 48, 16)
        labels = torch.randint(0, 6, (4,))
        net.zero_grad(set_to_none=True)
        ref.zero_grad(set_to_none=True)
        loss_fn(net(feats, labels), labels).backward()
        loss_fn(ref(feats.double(), labels), labels).backward()
        for (name, p), q in zip(net.named_parameters(), ref.parameters()):
            # float32 against float64: the difference relative to the gradient's largest entry
            err = float("inf") if p.grad is None else ((p.grad.double() - q.grad).abs().max() / q.grad.abs().max().clamp_min(1e-6)).item()
            if not err < 1e-3:
                print(f"pass {step}: gradient of {name} differs from the float64 NCHW reference (relative {err:.3g})")
                return 1
    print(f"{a.passes} passes: every gradient matches the float64 NCHW reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
