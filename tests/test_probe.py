"""Probe of the output distribution, checked against a float64 brute force in plain Python."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from jeffreys.errors import InputError
from jeffreys.probe import (
    DEFAULT_RULE,
    TopRule,
    entropy,
    head_logits,
    log_softmax,
    nontarget_entropy,
    nontarget_tail,
    plot_eer_vs_top,
    plot_nontarget_scores,
    plot_output_examples,
    probe,
    probe_log_probs,
    top_speaker_counts,
)


def brute(logits_row, rule):
    """Softmax, entropy and top-speaker count of one row, by the definitions, in Python floats."""
    m = max(logits_row)
    e = [math.exp(z - m) for z in logits_row]
    total = sum(e)
    p = [v / total for v in e]
    h = -sum(v * math.log(v) for v in p if v > 0)
    if rule.kind == "mass":
        acc, n = 0.0, 0
        for v in sorted(p, reverse=True):
            acc += v
            n += 1
            if acc >= rule.value:
                break
    elif rule.kind == "prob":
        n = sum(1 for v in p if v >= rule.value)
    else:
        n = sum(1 for v in p if v >= rule.value * max(p))
    return p, h, n


@pytest.mark.parametrize("rule", [TopRule("mass", 0.5), TopRule("mass", 0.9), TopRule("prob", 0.05), TopRule("ratio", 0.2)])
@pytest.mark.parametrize("k", [2, 7, 300])
def test_probe_matches_brute_force(rule, k):
    rng = np.random.default_rng(k)
    # Scaled cosines as a head gives them: scale 30 (peaky) and 3 (flat) rows mixed.
    logits = np.concatenate([30 * rng.uniform(-1, 1, (20, k)), 3 * rng.uniform(-1, 1, (20, k))])
    res = probe_log_probs([f"u{i}" for i in range(len(logits))], log_softmax(logits), rule)
    for i, row in enumerate(logits):
        p, h, n = brute(list(map(float, row)), rule)
        assert res.n_top[i] == n
        assert res.entropy[i] == pytest.approx(h, rel=1e-12, abs=1e-12)
        assert res.p_top1[i] == pytest.approx(max(p), rel=1e-12)
        assert res.top1[i] == int(np.argmax(p))


def test_edge_cases_of_rules():
    uniform = log_softmax(np.zeros((1, 10)))
    assert entropy(uniform)[0] == pytest.approx(math.log(10))
    assert top_speaker_counts(uniform, TopRule("mass", 0.5))[0] == 5
    assert top_speaker_counts(uniform, TopRule("mass", 1.0))[0] == 10  # rounding never gives 11
    assert top_speaker_counts(uniform, TopRule("prob", 0.2))[0] == 0  # a flat output has no dominant label
    assert top_speaker_counts(uniform, TopRule("ratio", 1.0))[0] == 10
    one_hot = log_softmax(np.array([[1e4, 0.0, 0.0]]))
    assert entropy(one_hot)[0] == 0.0
    assert top_speaker_counts(one_hot)[0] == 1
    assert str(DEFAULT_RULE) == "mass:0.5"


def test_rule_parsing_errors_name_the_spec():
    assert TopRule.parse("ratio:0.1") == TopRule("ratio", 0.1)
    for bad in ["mass", "mass:abc", "top:0.5", "mass:1.5", "prob:0", "mass:nan"]:
        with pytest.raises(InputError, match=bad.split(":")[0]):
            TopRule.parse(bad)


def test_nontarget_entropy_is_entropy_of_renormalised_rest():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 9)) * 4
    targets = rng.integers(0, 9, 5)
    got = nontarget_entropy(log_softmax(logits), targets)
    for i in range(5):
        rest = [z for j, z in enumerate(logits[i]) if j != targets[i]]
        _, h, _ = brute(rest, DEFAULT_RULE)  # softmax of the rest = renormalised non-targets
        assert got[i] == pytest.approx(h, rel=1e-12)


class CosineHead(torch.nn.Module):
    """Test stand-in for a margin head at inference: scale · cos(x, w_k)."""

    def __init__(self, weight, scale):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.as_tensor(weight, dtype=torch.float32))
        self.scale = scale

    def forward(self, emb, labels=None):
        return self.scale * torch.nn.functional.normalize(emb) @ torch.nn.functional.normalize(self.weight).T


def test_probe_through_a_head_in_batches():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(50, 8))
    x = rng.normal(size=(33, 8)).astype(np.float32)
    head = CosineHead(w, 30.0)
    res = probe(head, [f"u{i}" for i in range(33)], x, TopRule("mass", 0.5), batch=10)
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    for i in range(33):
        _, h, n = brute(list(30 * cos[i]), TopRule("mass", 0.5))
        assert res.n_top[i] == n
        assert res.entropy[i] == pytest.approx(h, abs=1e-4)  # head runs in float32
    s = res.summary()
    assert s["mean_top_speakers"] == pytest.approx(np.mean(res.n_top)) and s["utterances"] == 33
    assert head.training  # restored
    with pytest.raises(InputError):
        probe(head, [], x[:0])


def test_nontarget_tail_and_figures(tmp_path):
    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(50, bool), np.zeros(2000, bool)]
    scores = np.r_[rng.normal(0.6, 0.1, 50), rng.normal(0.0, 0.1, 2000)]
    t = nontarget_tail(scores, labels)
    assert t["nontarget_q999"] > t["nontarget_q99"] > t["nontarget_mean"]
    assert t["nontarget_q999_z"] == pytest.approx(3.1, abs=0.5)  # ≈ normal 99.9 % point
    with pytest.raises(InputError):
        nontarget_tail(scores[:50], labels[:50])
    pts = [
        {"system": s, "eval_set": e, "mean_top_speakers": m, "eer": r, "rule": "mass:0.5"}
        for s, e, m, r in [("A", "in", 1.5, 0.05), ("A", "out", 3.0, 0.12), ("B", "in", 1.4, 0.04), ("B", "out", 2.5, 0.10)]
    ]
    files = plot_eer_vs_top(pts, tmp_path / "fig1")
    p = np.exp(log_softmax(rng.normal(size=(1, 40)) * 3))[0]
    files += plot_output_examples(
        [{"system": s, "utt": "spk1-u1", "probs": p, "target": 3} for s in ("A", "B")], tmp_path / "fig2"
    )
    files += plot_nontarget_scores({"A": (scores, labels), "B": (scores * 0.8, labels)}, tmp_path / "tail")
    for f in files:
        assert f.stat().st_size > 1000


def test_cli_probe(tmp_path, capsys):
    from jeffreys.cli import main
    from jeffreys.embeddings import write_embeddings
    from jeffreys.losses import build_head
    from jeffreys.models import ResNetConfig, SpeakerModel, save_bundle

    torch.manual_seed(0)
    cfg = ResNetConfig(widths=[4, 4, 4, 4], depths=[1, 1, 1, 1], num_mel_bins=20, embed_dim=8, stem_stride=2)
    head = build_head("aam", 8, 5, scale=30.0, margin=0.2)
    model = save_bundle(tmp_path / "m.pt", SpeakerModel(cfg), head, [f"spk{i}" for i in range(5)])
    x = np.random.default_rng(0).normal(size=(7, 8)).astype(np.float32)
    write_embeddings(tmp_path / "evalset", [f"u{i}" for i in range(7)], x)
    assert main(["probe", str(model), str(tmp_path / "evalset.scp"), "--rule", "ratio:0.5", "--out", str(tmp_path / "p"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["evalset"]
    want = probe_log_probs(list("abcdefg"), log_softmax(head_logits(head, x)), TopRule("ratio", 0.5))
    assert summary["mean_top_speakers"] == pytest.approx(float(np.mean(want.n_top)))
    assert summary["rule"] == "ratio:0.5" and summary["utterances"] == 7
    rows = (tmp_path / "p" / "evalset.tsv").read_text().splitlines()
    assert rows[0].startswith("utt\tn_top") and len(rows) == 8 and rows[1].split("\t")[3].startswith("spk")
    assert main(["probe", str(model), str(tmp_path / "evalset.scp"), "--rule", "top:3"]) == 2
    assert "rule 'top:3'" in capsys.readouterr().err
