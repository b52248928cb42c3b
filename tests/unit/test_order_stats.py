"""metrics.stats_nb.order_stats_nb: the order statistics behind every percentile, against a
full sort, on every path (one pass with a guessed range and samples kept aside, the exact
range, a sorted copy)."""

from __future__ import annotations

import numpy as np
import pytest

from infersweep.metrics.stats_nb import OUTLIER_SHARE, RANGE_SAMPLE, order_stats_nb


def _cases():
    rng = np.random.default_rng(7)
    steady = rng.integers(4_000, 17_000, 300_000)
    yield "steady ITL-like", steady
    # a few samples far outside the sampled range: kept aside, below and above
    spiky = steady.copy()
    spiky[[3, 1_000, 250_001]] = [1, 10**9, 10**12]
    yield "outliers on both sides", spiky
    # more outliers than the side buffer holds: the guess is given up (exact range path)
    many = steady.copy()
    stride = len(many) // RANGE_SAMPLE
    off_sample = np.arange(len(many)) % stride >= stride // 2  # never looked at by the guess
    assert off_sample.sum() > len(many) // OUTLIER_SHARE + 16
    many[off_sample] = rng.integers(10**6, 2 * 10**6, int(off_sample.sum()))
    yield "too many outliers", many
    # a sorted series whose sample misses the top (the largest values sit between samples)
    ramp = np.repeat(np.arange(RANGE_SAMPLE * 3), 5)
    ramp[-1] = 10**7
    yield "ramp with a tail", ramp
    yield "range too wide to count", rng.integers(0, 10**12, 5_000)
    yield "one sample", np.array([5])
    yield "ties", np.array([7, 7, 7, 7])
    yield "negative values", rng.integers(-50, 50, 1_000)


@pytest.mark.parametrize("name,x", list(_cases()), ids=[c[0] for c in _cases()])
def test_order_statistics_are_those_of_a_full_sort(name, x):
    x = np.ascontiguousarray(x, np.int64)
    n = len(x)
    ranks = np.array([0, 1, n // 2, n * 9 // 10, n * 99 // 100, n - 2, n - 1])
    ranks = np.unique(ranks.clip(0, n - 1)).astype(np.int64)
    out = np.full(len(ranks), -123456789, np.int64)
    total = order_stats_nb(x, ranks, out)
    np.testing.assert_array_equal(out, np.sort(x)[ranks])
    assert total == float(x.sum())


def test_empty_input_returns_zero_and_leaves_out_alone():
    out = np.full(2, 9, np.int64)
    assert order_stats_nb(np.zeros(0, np.int64), np.array([0, 0], np.int64), out) == 0.0
    assert list(out) == [9, 9]
