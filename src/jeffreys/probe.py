"""Probing the output distribution (paper section 3): top training speakers and entropy.

For an utterance embedding ``x``, the trained head gives unmargined scaled cosines
``z = s·cos(x, w_k)`` over the K training speakers, and ``p = softmax(z)`` is the output
distribution the regulariser shapes. The paper (after its ref. [23], Bousquet, Rouvier &
Bonastre, Interspeech 2022) calls the dominant labels of ``p`` the utterance's *top training
speakers* — "the labels with the highest values are retained" — and shows that the mean
number of them over an evaluation set tracks its EER (Fig. 1).

"The labels with the highest values" needs a rule; ours is explicit and configurable
(:class:`TopRule`, written ``kind:value``):

* ``mass:c`` (**default, c = 0.5**): the smallest set of labels, taken in decreasing order of
  probability, whose total probability reaches ``c``. One label when the top speaker holds at
  least half the mass; many when the mass is spread. It depends only on ``p``, not on K.
* ``prob:t``: the labels with ``p_i >= t`` (may be 0 labels when ``p`` is flat).
* ``ratio:r``: the labels with ``p_i >= r · max(p)`` (at least 1).

Entropies are in nats. All arithmetic is float64 from the head's logits on.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

_KINDS = ("mass", "prob", "ratio")


@dataclass(frozen=True)
class TopRule:
    """Which labels count as an utterance's top training speakers (see module doc)."""

    kind: str = "mass"
    value: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"top-speaker rule kind must be one of {', '.join(_KINDS)}, got {self.kind!r}")
        ok = 0.0 < self.value <= 1.0
        if not ok or not math.isfinite(self.value):
            raise ValueError(f"top-speaker rule {self.kind}: value must be in (0, 1], got {self.value!r}")

    def __str__(self) -> str:
        return f"{self.kind}:{self.value:g}"

    @classmethod
    def parse(cls, spec: str) -> TopRule:
        """``"mass:0.5"`` → TopRule("mass", 0.5); errors are InputError naming the spec."""
        kind, sep, value = spec.partition(":")
        try:
            if not sep:
                raise ValueError("want KIND:VALUE, e.g. mass:0.5")
            return cls(kind.strip(), float(value))
        except ValueError as e:
            raise InputError(f"top-speaker rule {spec!r}: {e}") from None


DEFAULT_RULE = TopRule("mass", 0.5)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def entropy(log_probs: np.ndarray) -> np.ndarray:
    """Row-wise entropy (nats) of distributions given as log-probabilities."""
    lp = np.asarray(log_probs, dtype=np.float64)
    p = np.exp(lp)
    # p = 0 where lp = -inf: those terms are 0 (p log p → 0), not 0 · -inf = NaN.
    return -(p * np.where(p > 0, lp, 0.0)).sum(axis=-1)


def top_speaker_counts(log_probs: np.ndarray, rule: TopRule = DEFAULT_RULE) -> np.ndarray:
    """Number of top training speakers of each row (int64), by ``rule``."""
    p = np.exp(np.asarray(log_probs, dtype=np.float64))
    if p.ndim != 2:
        raise ValueError("log_probs must be [utterances, speakers]")
    if rule.kind == "prob":
        return (p >= rule.value).sum(axis=1).astype(np.int64)
    if rule.kind == "ratio":
        return (p >= rule.value * p.max(axis=1, keepdims=True)).sum(axis=1).astype(np.int64)
    # mass: the first position where the descending cumulative sum reaches the share, with
    # a relative slack of 1e-12 so that rounding (5 × 0.1 = 0.49999999999999994) does not
    # add a label; the total can fall short of 1 by rounding, so the count is capped at K.
    cum = np.cumsum(-np.sort(-p, axis=1), axis=1)
    counts = (cum < rule.value * (1 - 1e-12)).sum(axis=1) + 1
    return np.minimum(counts, p.shape[1]).astype(np.int64)


def nontarget_entropy(log_probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Entropy (nats) of the renormalised non-target distribution ``p_i / (1 - p_k)``, i ≠ k.

    This is what label smoothing and the Jeffreys loss push towards the uniform (maximum
    ``log(K - 1)``) on training utterances of speaker k.
    """
    lp = np.asarray(log_probs, dtype=np.float64).copy()
    rows = np.arange(len(lp))
    lp[rows, targets] = -np.inf
    lp -= np.logaddexp.reduce(lp, axis=1, keepdims=True)
    return entropy(lp)


def head_logits(head, embeddings: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Unmargined scaled cosines ``head(emb)`` as float64 [N, K], computed in batches."""
    import torch

    emb = np.asarray(embeddings, dtype=np.float32)
    out = []
    was_training = head.training
    head.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(emb), batch):
                out.append(head(torch.from_numpy(emb[i : i + batch])).double().numpy())
    finally:
        head.train(was_training)
    if not out:
        return np.zeros((0, 0))
    return np.concatenate(out)


@dataclass
class ProbeResult:
    """Per-utterance probe of one set: ids, top-speaker counts, entropies, top-1 label."""

    ids: list[str]
    n_top: np.ndarray
    entropy: np.ndarray
    top1: np.ndarray
    p_top1: np.ndarray
    rule: TopRule

    def summary(self) -> dict:
        return {
            "rule": str(self.rule),
            "utterances": len(self.ids),
            "mean_top_speakers": float(np.mean(self.n_top)),
            "median_top_speakers": float(np.median(self.n_top)),
            "mean_entropy_nats": float(np.mean(self.entropy)),
            "mean_top1_prob": float(np.mean(self.p_top1)),
        }


def probe_log_probs(ids: Sequence[str], log_probs: np.ndarray, rule: TopRule = DEFAULT_RULE) -> ProbeResult:
    lp = np.asarray(log_probs, dtype=np.float64)
    if len(ids) != len(lp):
        raise ValueError(f"{len(ids)} ids for {len(lp)} rows")
    top1 = lp.argmax(axis=1)
    return ProbeResult(
        ids=list(ids),
        n_top=top_speaker_counts(lp, rule),
        entropy=entropy(lp),
        top1=top1,
        p_top1=np.exp(lp[np.arange(len(lp)), top1]),
        rule=rule,
    )


def probe(head, ids: Sequence[str], embeddings: np.ndarray, rule: TopRule = DEFAULT_RULE, batch: int = 2048) -> ProbeResult:
    """Probe utterance embeddings through ``head`` (in batches, so K × N never sits in memory)."""
    if len(ids) == 0:
        raise InputError("probe: no utterances")
    parts = []
    for i in range(0, len(ids), batch):
        lp = log_softmax(head_logits(head, embeddings[i : i + batch]))
        parts.append(probe_log_probs(ids[i : i + batch], lp, rule))
    return ProbeResult(
        ids=list(ids),
        n_top=np.concatenate([p.n_top for p in parts]),
        entropy=np.concatenate([p.entropy for p in parts]),
        top1=np.concatenate([p.top1 for p in parts]),
        p_top1=np.concatenate([p.p_top1 for p in parts]),
        rule=rule,
    )


def write_probe_table(result: ProbeResult, speakers: Sequence[str], path: str | Path, *, files=None) -> None:
    """TSV: utt, number of top speakers, entropy (nats), top-1 training speaker, its probability
    (written atomically; ``files``: a :class:`jeffreys.fileio.AtomicFiles` of the caller's)."""
    from .fileio import AtomicFiles

    with AtomicFiles() as own:
        f = (files or own).open(path)
        f.write("utt\tn_top\tentropy_nats\ttop1_speaker\tp_top1\n")
        for u, n, h, k, p in zip(result.ids, result.n_top, result.entropy, result.top1, result.p_top1):
            f.write(f"{u}\t{n}\t{h:.6f}\t{speakers[k]}\t{p:.6f}\n")


def training_summary(head, embeddings: np.ndarray, labels: np.ndarray) -> dict:
    """Output distributions of training utterances: target probability and non-target spread."""
    lp = log_softmax(head_logits(head, embeddings))
    k = lp.shape[1]
    h_nt = nontarget_entropy(lp, labels)
    return {
        "utterances": int(len(lp)),
        "mean_target_prob": float(np.mean(np.exp(lp[np.arange(len(lp)), labels]))),
        "mean_nontarget_entropy_nats": float(np.mean(h_nt)),
        # 1 = non-target values exactly uniform, as the regularisers aim for.
        "mean_nontarget_entropy_relative": float(np.mean(h_nt) / math.log(k - 1)) if k > 2 else float("nan"),
    }


def nontarget_tail(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Upper tail of the non-target scores: quantiles and the standardised 99.9 % quantile."""
    nt = np.asarray(scores, dtype=np.float64)[~np.asarray(labels, dtype=bool)]
    if nt.size == 0:
        raise InputError("no non-target trials")
    q99, q999 = np.quantile(nt, [0.99, 0.999])
    sd = float(nt.std())
    return {
        "nontarget_mean": float(nt.mean()),
        "nontarget_std": sd,
        "nontarget_q99": float(q99),
        "nontarget_q999": float(q999),
        "nontarget_q999_z": float((q999 - nt.mean()) / sd) if sd > 0 else float("nan"),
    }


# --------------------------------------------------------------------------- figures


def _pyplot():
    from .extras import require

    matplotlib = require("matplotlib", "the probe figures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> list[Path]:
    from .report import save_figure

    return [save_figure(fig, path, dpi=110)]


def plot_eer_vs_top(points: Sequence[Mapping], path: str | Path) -> list[Path]:
    """Fig. 1: EER (%) against the mean number of top training speakers of each evaluation set.

    ``points``: dicts with ``system``, ``eval_set``, ``mean_top_speakers``, ``eer`` (fraction).
    One marker series per system; each point labelled with its evaluation set.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    systems = list(dict.fromkeys(p["system"] for p in points))
    for s in systems:
        pts = sorted((p for p in points if p["system"] == s), key=lambda p: p["mean_top_speakers"])
        xs = [p["mean_top_speakers"] for p in pts]
        ys = [100 * p["eer"] for p in pts]
        ax.plot(xs, ys, "o-", label=s, alpha=0.8)
        for p, x, y in zip(pts, xs, ys):
            ax.annotate(p["eval_set"], (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    rule = points[0].get("rule", "") if points else ""
    ax.set_xlabel(f"mean number of top training speakers ({rule})" if rule else "mean number of top training speakers")
    ax.set_ylabel("EER (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_output_examples(examples: Sequence[Mapping], path: str | Path, n_bars: int = 30) -> list[Path]:
    """Fig. 2: output softmax of training utterances, one panel per (utterance, system).

    ``examples``: dicts with ``system``, ``utt``, ``probs`` (1-D over training speakers) and
    ``target`` (index of the utterance's speaker). The target bar and the ``n_bars - 1``
    largest non-target values are drawn (log scale), the largest non-target in red, as in
    the paper's figure; the title gives the non-target entropy relative to uniform.
    """
    plt = _pyplot()
    systems = list(dict.fromkeys(e["system"] for e in examples))
    utts = list(dict.fromkeys(e["utt"] for e in examples))
    fig, axes = plt.subplots(len(utts), len(systems), figsize=(3.6 * len(systems), 2.6 * len(utts)), squeeze=False)
    for e in examples:
        ax = axes[utts.index(e["utt"])][systems.index(e["system"])]
        p = np.asarray(e["probs"], dtype=np.float64)
        k = int(e["target"])
        others = np.delete(p, k)
        order = np.argsort(-others)[: n_bars - 1]
        vals = np.concatenate([[p[k]], others[order]])
        colors = ["tab:green"] + ["tab:red"] + ["tab:gray"] * (len(vals) - 2)
        ax.bar(np.arange(len(vals)), vals, color=colors[: len(vals)])
        ax.set_yscale("log")
        lp = np.log(np.clip(p, 1e-300, None))[None]
        rel = nontarget_entropy(lp, np.array([k]))[0] / math.log(len(p) - 1) if len(p) > 2 else float("nan")
        ax.set_title(f"{e['system']}\n{e['utt']}: p_k={p[k]:.3f}, H_nt/H_max={rel:.3f}", fontsize=7)
        ax.set_xticks([0])
        ax.set_xticklabels(["target"], fontsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle("output distributions of training utterances (target, then non-targets sorted)", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_nontarget_scores(per_system: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "") -> list[Path]:
    """Histogram (log density) of non-target scores per system, to compare upper tails.

    ``per_system``: system → (scores, labels). The dotted line is each system's 99.9 %
    non-target quantile.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, (name, (scores, labels)) in enumerate(per_system.items()):
        nt = np.asarray(scores, dtype=np.float64)[~np.asarray(labels, dtype=bool)]
        color = f"C{i}"
        ax.hist(nt, bins=60, density=True, histtype="step", label=name, color=color)
        ax.axvline(np.quantile(nt, 0.999), color=color, ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("non-target score (centred cosine)")
    ax.set_ylabel("density (log)")
    ax.set_title(title or "non-target scores; dotted: 99.9 % quantile", fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------- CLI


def _load_set(path: Path, allow_pipes: bool = False):
    """(ids, matrix) of an embeddings file written by ``jeffreys extract``."""
    from . import embeddings

    return embeddings.read_embeddings(path, allow_pipes=allow_pipes)


def cli_probe(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="jeffreys probe",
        description=(
            "Probe the softmax output of a trained model on utterance embeddings: number of "
            "top training speakers and entropy per utterance, their means per set."
        ),
        epilog=(
            "Rules: mass:C (default mass:0.5) = smallest set of labels, by decreasing "
            "probability, holding at least C of the mass; prob:T = labels with p >= T; "
            "ratio:R = labels with p >= R * max p. Embeddings come from `jeffreys extract` "
            "(raw, not centred: the head sees what the network computes)."
        ),
    )
    parser.add_argument("model", type=Path, help="model bundle (model.pt) with its classification head")
    parser.add_argument("embeddings", type=Path, nargs="+", help="embedding files (.scp/.ark/.npy) of one or more sets")
    parser.add_argument("--rule", default=str(DEFAULT_RULE), help="top-speaker rule KIND:VALUE (default %(default)s)")
    parser.add_argument("--out", type=Path, help="write NAME.tsv per set and summary.json here")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--allow-pipes", action="store_true",
                        help="run `cmd |` entries of embedding scp files (without a shell); refused by default")
    args = parser.parse_args(argv)
    rule = TopRule.parse(args.rule)

    from .models import load_bundle

    bundle = load_bundle(args.model)
    if bundle.head is None:
        raise InputError(f"{args.model}: the model has no classification head to probe")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise InputError(f"{args.out}: exists and is not a directory")
    summary, tables = {}, []
    for path in args.embeddings:
        ids, mat = _load_set(path, args.allow_pipes)
        name = path.stem if path.stem not in summary else str(path)
        res = probe(bundle.head, ids, mat, rule)
        summary[name] = res.summary()
        tables.append((res, path.stem))
    if args.out:
        from .fileio import AtomicFiles

        with AtomicFiles() as files:  # every table and the summary, or nothing
            for res, stem in tables:
                write_probe_table(res, bundle.speakers, args.out / f"{stem}.tsv", files=files)
            files.open(args.out / "summary.json").write(json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"rule {rule}; entropy in nats")
        print(f"{'set':<24} {'utts':>7} {'mean top':>9} {'entropy':>8}")
        for name, s in summary.items():
            print(f"{name:<24} {s['utterances']:>7} {s['mean_top_speakers']:>9.2f} {s['mean_entropy_nats']:>8.3f}")
    return 0
