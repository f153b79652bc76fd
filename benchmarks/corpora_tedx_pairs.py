"""Time the TEDx Spanish derived protocol at the paper's scale (prints JSON).

11243 files of 142 speakers (102 men, 40 women, sizes drawn like the corpus: ~79 files a
speaker), 0.4M target and 1.6M non-target same-gender pairs, seed 0. Only the pair sampling
is timed (the file scan and header reads depend on the disk).
"""

import json
import platform
import time

import numpy as np

from jeffreys.corpora.tedx import sample_trials


def main() -> None:
    rng = np.random.default_rng(1)
    sizes = rng.multinomial(11243 - 142 * 20, np.full(142, 1 / 142)) + 20
    utt2spk, spk2gender = {}, {}
    for k, n in enumerate(sizes):
        g = "M" if k < 102 else "F"
        spk = f"TEDX_{g}_{k:03d}"
        spk2gender[spk] = g.lower()
        for j in range(n):
            utt2spk[f"{spk}_SPA_{j:04d}"] = spk
    utts = sorted(utt2spk)
    t0 = time.perf_counter()
    rows = sample_trials(utts, utt2spk, spk2gender, 400_000, 1_600_000, seed=0)
    dt = time.perf_counter() - t0
    print(json.dumps({
        "benchmark": "tedx_pair_sampling",
        "files": len(utts), "speakers": len(sizes),
        "trials": len(rows), "targets": sum(y for _, _, y in rows),
        "seconds": round(dt, 2), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }))


if __name__ == "__main__":
    main()
