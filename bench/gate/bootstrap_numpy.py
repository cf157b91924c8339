#!/usr/bin/env python3
"""The gate's bootstrap written the naive numpy way, for comparison.

Each resample draws n indices with replacement (rng.integers) and takes the
mean of the drawn losses: the same work as modelgate.BootstrapMeans, on the
same kind of data (squared normal errors). With --run smaller than
--resamples only that many resamples are timed and the full time is
extrapolated linearly (each resample costs the same).
"""
import argparse
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000, help="per-example losses")
    ap.add_argument("--resamples", type=int, default=10_000, help="resamples of the full benchmark")
    ap.add_argument("--run", type=int, default=0, help="resamples actually run (default: all)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    run = a.run or a.resamples

    rng = np.random.default_rng(a.seed)
    x = (50 * rng.standard_normal(a.n)) ** 2
    means = np.empty(run)
    t0, c0 = time.perf_counter(), time.process_time()
    for b in range(run):
        idx = rng.integers(0, a.n, size=a.n)
        means[b] = x[idx].mean()
    lo, hi = np.percentile(means, [2.5, 97.5])
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0

    rate = run * a.n / dt
    print(f"numpy {np.__version__}: {run} resamples of {a.n} draws in {dt:.2f} s, {rate:.4g} draws/s "
          f"({cpu:.2f} s of CPU; 95% percentile interval [{lo:.2f}, {hi:.2f}])")
    if run < a.resamples:
        print(f"numpy full size, {a.resamples} resamples: {dt * a.resamples / run:.1f} s "
              f"(extrapolated linearly from {run} resamples)")
    else:
        print(f"numpy full size, {a.resamples} resamples: {dt:.1f} s (measured)")
    print(f"NUMPY_DRAWS_PER_S {rate:.6g}")
    print(f"NUMPY_DRAWS_PER_CPU_S {run * a.n / cpu:.6g}")


if __name__ == "__main__":
    main()
