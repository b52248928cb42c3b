"""Order statistics of integer samples (µs) without a full sort."""

from __future__ import annotations

import numpy as np

from infersweep._jit import jit

MAX_COUNTING_RANGE = 1 << 24
# the range guessed from a sample of this many evenly spaced samples ...
RANGE_SAMPLE = 4096
# ... is widened by an eighth of its width and this much on each side; samples still outside it are
# kept aside (sorted at the end), up to n / OUTLIER_SHARE of them before the guess is given up
RANGE_PAD = 1024
OUTLIER_SHARE = 64


@jit
def _select_counted(counts, lo, below, n_below, ranks, out):
    """out[i] = sorted(x)[ranks[i]] where sorted(x) is sorted(below[:n_below]), then the
    values lo + j, counts[j] times each, then nothing else (ranks past them are left)."""
    order = np.argsort(ranks)
    j = 0
    cum = n_below
    for k in range(ranks.shape[0]):
        target = ranks[order[k]]
        if target < n_below:
            out[order[k]] = below[target]
            continue
        while j < counts.shape[0] and cum + counts[j] <= target:
            cum += counts[j]
            j += 1
        if j < counts.shape[0]:
            out[order[k]] = lo + j


@jit
def order_stats_nb(x, ranks, out):
    """out[i] = sorted(x)[ranks[i]]; returns float(sum(x)).

    One pass over x in the common case: a counting sort over a value range guessed from a
    sample of x, with the few samples outside it kept aside and sorted.  When the guess fails
    (too many outside) or the range is too wide, a min/max pass and a counting sort over the
    exact range, or a sorted copy.  Exact in every case."""
    n = x.shape[0]
    total = 0.0
    if n == 0:
        return total
    # the guess: the range of an evenly spaced sample, widened
    stride = n // RANGE_SAMPLE if n > RANGE_SAMPLE else 1
    g_lo = x[0]
    g_hi = x[0]
    for i in range(0, n, stride):
        v = x[i]
        if v < g_lo:
            g_lo = v
        if v > g_hi:
            g_hi = v
    pad = (g_hi - g_lo) // 8 + RANGE_PAD
    lo = g_lo - pad
    span = (g_hi + pad) - lo + 1
    if span <= MAX_COUNTING_RANGE and span <= 8 * n + 65536:
        counts = np.zeros(span, np.int64)
        room = n // OUTLIER_SHARE + 16
        aside = np.empty(room, np.int64)
        n_aside = 0
        acc = 0  # an integer sum: no float-add latency chain (exact; float() at the end)
        for i in range(n):
            v = x[i]
            acc += v
            d = v - lo
            if 0 <= d < span:
                counts[d] += 1
            elif n_aside < room:
                aside[n_aside] = v
                n_aside += 1
            else:
                n_aside = room + 1
                break
        if n_aside <= room:
            total = float(acc)
            # samples below the range come first in sorted order, those above last
            kept = np.sort(aside[:n_aside])
            n_below = 0
            while n_below < n_aside and kept[n_below] < lo:
                n_below += 1
            _select_counted(counts, lo, kept, n_below, ranks, out)
            n_in = n - n_aside
            for k in range(ranks.shape[0]):
                if ranks[k] >= n_below + n_in:
                    out[k] = kept[ranks[k] - n_in]
            return total
    # the exact range: min/max pass, then a counting sort, or a sorted copy
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
        _select_counted(counts, lo, x[:0], 0, ranks, out)
    else:
        s = np.sort(x)
        for k in range(ranks.shape[0]):
            out[k] = s[ranks[k]]
    return total
