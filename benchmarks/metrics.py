"""Time jeffreys.metrics.evaluate (EER, ROCCH-EER, minDCF at 3 priors, actDCF, Cllr, minCllr)
on 10^6 and 10^7 synthetic trials (1 % targets, float32), next to np.sort of the same array
(the floor) and, with --compare, the field's usual sklearn roc_curve EER.

    .venv/bin/python benchmarks/metrics.py [--sizes 1000000 10000000] [--repeat 3] [--compare]

Prints one JSON object; times are the best and the median of --repeat runs, in seconds.
"""

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from jeffreys.metrics import evaluate


def timed(f, repeat):
    ts, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t)
    return {"best_s": round(min(ts), 4), "median_s": round(statistics.median(ts), 4)}, out


def sklearn_eer(scores, labels):
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1 - tpr
    i = np.nanargmin(np.abs(fnr - fpr))
    return (fpr[i] + fnr[i]) / 2


def blas() -> str:
    """The BLAS numpy was built with (the metrics use none: sorting and searchsorted are
    single-threaded; only scoring's matrix products do)."""
    try:
        b = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{b.get('name')} {b.get('version')}"
    except Exception:  # older numpy: no dict mode
        return "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10**6, 10**7])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compare", action="store_true", help="also time sklearn's roc_curve EER")
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        rng = np.random.default_rng(0)
        labels = rng.random(n) < 0.01
        scores = (rng.standard_normal(n) + 2.5 * labels).astype(np.float32)
        floor, _ = timed(lambda: np.sort(scores), args.repeat)
        full, r = timed(lambda: evaluate(scores, labels, p_targets=(0.01, 0.005, 0.001)), args.repeat)
        row = {"n_trials": n, "n_target": r["n_target"], "np_sort": floor, "evaluate": full,
               "eer": r["eer"], "min_dcf_0.01": r["min_dcf"][0.01], "min_cllr": r["min_cllr"]}
        if args.compare:
            row["sklearn_roc_curve_eer"], _ = timed(lambda: sklearn_eer(scores, labels), 1)
        rows.append(row)
    print(json.dumps({
        "benchmark": "metrics.evaluate (EER, ROCCH-EER, minDCF x3, actDCF x3, Cllr, minCllr)",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "numpy": np.__version__, "blas": blas(),
                    "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}},
        "results": rows,
    }, indent=1))


if __name__ == "__main__":
    main()
