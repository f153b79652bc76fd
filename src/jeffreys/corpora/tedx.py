"""TEDx Spanish (OpenSLR 67) with the paper's derived protocol: same-gender random pairs.

SRC/speech/**/TEDX_G_NNN_SPA_NNNN.wav (G = M|F speaker gender, NNN speaker number, NNNN file
number; the release groups them by speaker), SRC/files/TEDx_Spanish.transcription (not needed).
DST is one data dir of the files lasting 3-10 s (--min-dur/--max-dur), speakers TEDX_G_NNN,
with `spk2gender` and `trials`: 400k target and 1.6M non-target pairs (--n-target,
--n-nontarget), all within one gender, drawn without repetition with --seed (default 0).

The naming is the corpus README's identification key. The corpus has 11243 files of about
3-10 s each, so, as in the paper ("segments between 3 and 10 seconds"), a segment is a whole
file whose header duration lies in the range. Pairs are uniform over unordered pairs: target
pairs over all same-speaker pairs, non-target pairs over all same-gender pairs of different
speakers; enrol/test sides and the final order are shuffled. Before sampling, the pairs that
exist among the kept files are counted and printed; asking for more than exist is a one-line
error naming both counts. These trials are derived, not published: the seed and counts are
printed.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._common import DirSpec, TrialList, add_io_arguments, call_with_args, durations, preparer, scan_tree, stem, write_dirs
from ._progress import current

NAME = re.compile(r"^TEDX_([MF])_(\d+)_SPA_(\d+)$")
ENUMERATE_BELOW = 4  # enumerate all non-target pairs when fewer than this many times the request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_io_arguments(parser, trials=False, durations=False)
    parser.add_argument("--n-target", type=int, default=400_000, help="target trials (default 400000)")
    parser.add_argument("--n-nontarget", type=int, default=1_600_000, help="non-target trials (default 1600000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pair sampling (default 0)")
    parser.add_argument("--min-dur", type=float, default=3.0, help="shortest file kept, seconds (default 3)")
    parser.add_argument("--max-dur", type=float, default=10.0, help="longest file kept, seconds (default 10)")


def _all_pairs(n: int) -> np.ndarray:
    i, j = np.triu_indices(n, 1)
    return np.stack([i, j], axis=1)


def pair_counts(spk: np.ndarray, gender: np.ndarray) -> tuple[int, int]:
    """(distinct same-speaker pairs, distinct same-gender different-speaker pairs)."""
    _, per_spk = np.unique(spk, return_counts=True)
    target = int((per_spk * (per_spk - 1) // 2).sum())
    same_gender = sum(int(n) * (int(n) - 1) // 2 for n in np.unique(gender, return_counts=True)[1])
    return target, same_gender - target


def _codes(utts: list[str], utt2spk: dict[str, str], spk2gender: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    spk_index = {s: i for i, s in enumerate(sorted(set(utt2spk[u] for u in utts)))}
    return np.asarray([spk_index[utt2spk[u]] for u in utts]), np.asarray([spk2gender[utt2spk[u]] for u in utts])


def check_counts(n_target: int, n_nontarget: int, available: tuple[int, int], what: str = "these files") -> None:
    """One error naming both requested and available counts when a request cannot be met."""
    if n_target < 0 or n_nontarget < 0:
        raise InputError("--n-target and --n-nontarget must be >= 0")
    t, n = available
    if n_target > t or n_nontarget > n:
        raise InputError(
            f"--n-target {n_target} --n-nontarget {n_nontarget}: {what} give only {t} target "
            f"(same-speaker) and {n} non-target (same-gender) distinct pairs"
        )


def target_pairs(spk: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` distinct unordered same-speaker pairs (utterance indices), uniformly."""
    pools = []
    for s in np.unique(spk):
        idx = np.flatnonzero(spk == s)
        pools.append(idx[_all_pairs(len(idx))])
    pool = np.concatenate(pools) if pools else np.zeros((0, 2), int)
    if k > len(pool):
        raise InputError(f"--n-target {k}: only {len(pool)} distinct same-speaker pairs exist")
    return pool[rng.choice(len(pool), size=k, replace=False)]


def nontarget_pairs(spk: np.ndarray, gender: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` distinct unordered pairs of different speakers of one gender, uniformly."""
    groups = [np.flatnonzero(gender == g) for g in np.unique(gender)]
    counts = []
    for idx in groups:
        _, per_spk = np.unique(spk[idx], return_counts=True)
        counts.append(len(idx) * (len(idx) - 1) // 2 - int((per_spk * (per_spk - 1) // 2).sum()))
    total = sum(counts)
    if k > total:
        raise InputError(f"--n-nontarget {k}: only {total} distinct same-gender different-speaker pairs exist")
    if total < ENUMERATE_BELOW * k:
        pool = []
        for idx in groups:
            p = idx[_all_pairs(len(idx))]
            pool.append(p[spk[p[:, 0]] != spk[p[:, 1]]])
        pool = np.concatenate(pool)
        return pool[rng.choice(len(pool), size=k, replace=False)]
    # Rejection sampling: pick a gender with probability proportional to its pair count,
    # then two utterances of it; keep different-speaker pairs not drawn before.
    weights = np.asarray(counts, float) / total
    n = len(spk)
    seen: set[int] = set()
    out: list[tuple[int, int]] = []
    while len(out) < k:
        m = 2 * (k - len(out)) + 1024
        g = rng.choice(len(groups), size=m, p=weights)
        a = np.empty(m, int)
        b = np.empty(m, int)
        for gi, idx in enumerate(groups):
            sel = g == gi
            a[sel] = idx[rng.integers(len(idx), size=sel.sum())]
            b[sel] = idx[rng.integers(len(idx), size=sel.sum())]
        ok = spk[a] != spk[b]
        lo, hi = np.minimum(a, b)[ok], np.maximum(a, b)[ok]
        for x, y in zip(lo.tolist(), hi.tolist()):
            code = x * n + y
            if code not in seen:
                seen.add(code)
                out.append((x, y))
                if len(out) == k:
                    break
    return np.asarray(out, int)


def sample_trials(utts: list[str], utt2spk: dict[str, str], spk2gender: dict[str, str], n_target: int, n_nontarget: int, seed: int) -> list[tuple[str, str, bool]]:
    """The derived protocol: shuffled (enroll, test, is_target) rows."""
    spk, gender = _codes(utts, utt2spk, spk2gender)
    check_counts(n_target, n_nontarget, pair_counts(spk, gender))
    rng = np.random.default_rng(seed)
    pairs = np.concatenate([target_pairs(spk, n_target, rng), nontarget_pairs(spk, gender, n_nontarget, rng)])
    label = np.concatenate([np.ones(n_target, bool), np.zeros(n_nontarget, bool)])
    swap = rng.random(len(pairs)) < 0.5
    pairs[swap] = pairs[swap][:, ::-1]
    order = rng.permutation(len(pairs))
    return [(utts[pairs[i, 0]], utts[pairs[i, 1]], bool(label[i])) for i in order]


@preparer("tedx")
def prepare_tedx(
    src: str | Path,
    dst: str | Path,
    *,
    n_target: int = 400_000,
    n_nontarget: int = 1_600_000,
    seed: int = 0,
    min_dur: float = 3.0,
    max_dur: float = 10.0,
    jobs: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the TEDx data dir with the derived same-gender trials at ``dst``; print what was found."""
    root = src / "speech"
    wav: dict[str, str] = {}
    for rel, path in scan_tree(root, ".wav", "tedx", "TEDx speech/**/TEDX_G_NNN_SPA_NNNN.wav"):
        uid = stem(rel[-1], ".wav")
        if not NAME.match(uid):
            raise InputError(f"{root.joinpath(*rel)}: file name does not follow TEDX_<M|F>_<speaker>_SPA_<number>.wav")
        if uid in wav:
            raise InputError(f"{root.joinpath(*rel)}: duplicate file id (also {wav[uid]})")
        wav[uid] = path
    dur = durations(wav, skip=False, jobs=jobs)
    keep = {u: p for u, p in wav.items() if min_dur <= dur[u] <= max_dur}
    if not keep:
        raise InputError(f"{src / 'speech'}: no file lasts {min_dur}-{max_dur} s")
    utt2spk = {u: "_".join(u.split("_")[:3]) for u in keep}
    spk2gender = {s: s.split("_")[1].lower() for s in utt2spk.values()}
    utts = sorted(keep)
    available = pair_counts(*_codes(utts, utt2spk, spk2gender))
    check_counts(n_target, n_nontarget, available, f"the {len(keep)} files of {min_dur}-{max_dur} s")
    with current().waiting(f"drawing {n_target:,} target and {n_nontarget:,} non-target trials"):
        rows = sample_trials(utts, utt2spk, spk2gender, n_target, n_nontarget, seed)
    spec = DirSpec(keep, utt2spk, {u: dur[u] for u in keep}, [TrialList("trials", rows)])
    spec.extra["spk2gender"] = [f"{s} {g}" for s, g in sorted(spk2gender.items())]
    spec.notes.append(f"{len(wav) - len(keep)} file(s) outside {min_dur}-{max_dur} s left out; pairs drawn with seed {seed}")
    spec.notes.append(f"pairs available among the {len(keep)} files kept: {available[0]} target, {available[1]} non-target (same gender)")
    genders = sorted(spk2gender.values())
    spec.notes.append(f"speakers by gender: {genders.count('m')} male, {genders.count('f')} female")
    write_dirs("tedx", dst, {"": spec}, overwrite)
    return dst


def run(args) -> int:
    return call_with_args(prepare_tedx, args)
