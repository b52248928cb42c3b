"""Order statistics of integer samples (µs) without a full sort."""

from __future__ import annotations

import numpy as np

from infersweep._jit import jit

MAX_COUNTING_RANGE = 1 << 24


@jit
def order_stats_nb(x, ranks, out):
    """out[i] = sorted(x)[ranks[i]]; returns float(sum(x)).  Counting sort over the value range
    when it is small, a sorted copy otherwise."""
    n = x.shape[0]
    total = 0.0
    if n == 0:
        return total
    lo = x[0]
    hi = x[0]
    for i in range(n):
        v = x[i]
        total += float(v)
        if v < lo:
            lo = v
        if v > hi:
            hi = v
    span = hi - lo + 1
    if span <= MAX_COUNTING_RANGE and span <= 8 * n + 65536:
        counts = np.zeros(span, np.int64)
        for i in range(n):
            counts[x[i] - lo] += 1
        order = np.argsort(ranks)
        j = 0
        cum = 0
        for k in range(ranks.shape[0]):
            target = ranks[order[k]]
            while cum + counts[j] <= target:
                cum += counts[j]
                j += 1
            out[order[k]] = lo + j
    else:
        s = np.sort(x)
        for k in range(ranks.shape[0]):
            out[k] = s[ranks[k]]
    return total
