"""Summary statistics of one simulation, in numba: the single implementation behind ``run``'s
metrics and every point of a sweep (REFERENCE §6.5, SPEC §2).

Means are (Σx / n) / 1000 and percentile p is the reference's CalculatePercentile: rank
p/100·(n−1), linear between the neighbouring order statistics, from integer microseconds.
"""

from __future__ import annotations

import numpy as np

from infersweep._jit import hjit, jit
from infersweep.metrics.stats_nb import order_stats_nb
from infersweep.scheduler.common_nb import (
    O_E2E,
    O_SCHED,
    O_STATE,
    O_TTFT,
    SC_BUSY_US,
    SC_CLOCK,
    SC_COMPLETED,
    SC_DROPPED,
    SC_HITS,
    SC_INPUT_TOK,
    SC_KV_FAIL,
    SC_KV_PEAK,
    SC_LIVELOCK,
    SC_MISSES,
    SC_OUTPUT_TOK,
    SC_PREEMPT,
    SC_QUEUED,
    SC_RUNNING,
    SC_STATUS,
    SC_STEPS,
    STATE_DONE,
)

# indices of the summary vector -------------------------------------------------------------
M_COMPLETED = 0
M_QUEUED = 1
M_RUNNING = 2
M_INJECTED = 3
M_INPUT_TOK = 4
M_OUTPUT_TOK = 5
M_DURATION_S = 6
M_RESP_PER_S = 7
M_TOK_PER_S = 8
M_E2E_MEAN = 9
M_E2E_P50 = 10
M_E2E_P90 = 11
M_E2E_P95 = 12
M_E2E_P99 = 13
M_TTFT_MEAN = 14
M_TTFT_P50 = 15
M_TTFT_P90 = 16
M_TTFT_P95 = 17
M_TTFT_P99 = 18
M_ITL_MEAN = 19
M_ITL_P50 = 20
M_ITL_P90 = 21
M_ITL_P95 = 22
M_ITL_P99 = 23
M_SCHED_MEAN = 24
M_SCHED_P50 = 25
M_SCHED_P99 = 26
M_KV_FAIL = 27
M_PREEMPT = 28
M_DROPPED = 29
M_TPOT_MEAN = 30
M_TPOT_P50 = 31
M_TPOT_P90 = 32
M_TPOT_P99 = 33
M_KV_TOTAL = 34
M_KV_PEAK = 35
M_KV_PEAK_FRAC = 36
M_HIT_RATE = 37
M_PREEMPT_RATE = 38
M_STEPS = 39
M_UTIL = 40
M_STATUS = 41
M_LIVELOCK = 42  # blis: 1 = rerun in safe preemption mode (the reference would livelock)
N_M = 43

_QS = (50.0, 90.0, 95.0, 99.0)


@hjit
def _rank(p, n):
    """The reference's percentile rank p/100·(n−1) of n samples and the two order statistics
    it falls between."""
    rank = p / 100.0 * float(n - 1)
    lo = int(np.floor(rank))
    hi = int(np.ceil(rank))
    if hi > n - 1:
        hi = n - 1
    return rank, lo, hi


@jit
def _percentiles(x, ps, out, o0):
    """Mean (returned, ms) and the reference's percentiles (written to out[o0:], ms) of the
    integer samples x."""
    n = x.shape[0]
    if n == 0:
        for j in range(ps.shape[0]):
            out[o0 + j] = 0.0
        return 0.0
    ranks = np.empty(2 * ps.shape[0], np.int64)
    rk = np.empty(ps.shape[0])
    for j in range(ps.shape[0]):
        rank, lo, hi = _rank(ps[j], n)
        rk[j] = rank
        ranks[2 * j] = lo
        ranks[2 * j + 1] = hi
    vals = np.empty(ranks.shape[0], np.int64)
    total = order_stats_nb(x, ranks, vals)
    for j in range(ps.shape[0]):
        lo = ranks[2 * j]
        hi = ranks[2 * j + 1]
        a = vals[2 * j]
        b = vals[2 * j + 1]
        if lo == hi:
            out[o0 + j] = float(a) / 1000
        else:
            out[o0 + j] = float(a) / 1000 + float(b - a) * (rk[j] - float(lo)) / 1000
    return (total / n) / 1000


@jit
def _float_percentiles(x, ps, out, o0):
    """Mean and percentiles (ms) of float samples in µs (TPOT)."""
    n = x.shape[0]
    if n == 0:
        for j in range(ps.shape[0]):
            out[o0 + j] = 0.0
        return 0.0
    s = np.sort(x)
    total = 0.0
    for i in range(n):
        total += x[i]
    for j in range(ps.shape[0]):
        rank, lo, hi = _rank(ps[j], n)
        if lo == hi:
            out[o0 + j] = s[lo] / 1000
        else:
            out[o0 + j] = s[lo] / 1000 + (s[hi] - s[lo]) * (rank - float(lo)) / 1000
    return (total / n) / 1000


@jit
def summarize_nb(out, sc, itl, output_tok, blis, kv_total, res):
    """Fill res[0:N_M] from one simulation's per-request outputs and counters."""
    n = out.shape[0]
    completed = sc[SC_COMPLETED]
    e2e = np.empty(completed, np.int64)
    ttft = np.empty(completed, np.int64)
    tpot = np.empty(completed)
    n_sched = 0
    for r in range(n):
        if out[r, O_SCHED] >= 0:
            n_sched += 1
    sched = np.empty(n_sched, np.int64)
    k = 0
    m = 0
    q = 0
    for r in range(n):
        if out[r, O_SCHED] >= 0:
            sched[q] = out[r, O_SCHED]
            q += 1
        if out[r, O_STATE] == STATE_DONE:
            e2e[k] = out[r, O_E2E]
            ttft[k] = out[r, O_TTFT]
            o = output_tok[r]
            span = float(out[r, O_E2E] - out[r, O_TTFT])
            if blis:
                tpot[m] = span / float(o - 1 if o > 1 else 1) if o > 0 else 0.0
                m += 1
            elif o > 1:
                tpot[m] = span / float(o - 1)
                m += 1
            k += 1
    qs = np.array(_QS)
    duration = float(sc[SC_CLOCK]) / 1e6
    res[M_COMPLETED] = completed
    res[M_QUEUED] = sc[SC_QUEUED]
    res[M_RUNNING] = sc[SC_RUNNING]
    res[M_INJECTED] = completed + sc[SC_QUEUED] + sc[SC_RUNNING] + sc[SC_DROPPED]
    res[M_INPUT_TOK] = sc[SC_INPUT_TOK]
    res[M_OUTPUT_TOK] = sc[SC_OUTPUT_TOK]
    res[M_DURATION_S] = duration
    res[M_RESP_PER_S] = completed / duration if duration > 0 else 0.0
    res[M_TOK_PER_S] = sc[SC_OUTPUT_TOK] / duration if duration > 0 else 0.0
    res[M_E2E_MEAN] = _percentiles(e2e, qs, res, M_E2E_P50)
    res[M_TTFT_MEAN] = _percentiles(ttft, qs, res, M_TTFT_P50)
    res[M_ITL_MEAN] = _percentiles(itl, qs, res, M_ITL_P50)
    tmp = np.zeros(2)
    res[M_SCHED_MEAN] = _percentiles(sched, np.array([50.0, 99.0]), tmp, 0)
    res[M_SCHED_P50] = tmp[0]
    res[M_SCHED_P99] = tmp[1]
    res[M_KV_FAIL] = sc[SC_KV_FAIL]
    res[M_PREEMPT] = sc[SC_PREEMPT]
    res[M_DROPPED] = sc[SC_DROPPED]
    tmp3 = np.zeros(3)
    res[M_TPOT_MEAN] = _float_percentiles(tpot[:m], np.array([50.0, 90.0, 99.0]), tmp3, 0)
    res[M_TPOT_P50] = tmp3[0]
    res[M_TPOT_P90] = tmp3[1]
    res[M_TPOT_P99] = tmp3[2]
    res[M_KV_TOTAL] = kv_total
    res[M_KV_PEAK] = sc[SC_KV_PEAK]
    res[M_KV_PEAK_FRAC] = float(sc[SC_KV_PEAK]) / float(kv_total)
    hits = sc[SC_HITS]
    miss = sc[SC_MISSES]
    res[M_HIT_RATE] = hits / (hits + miss) if hits + miss > 0 else 0.0
    res[M_PREEMPT_RATE] = sc[SC_PREEMPT] / completed if completed > 0 else 0.0
    res[M_STEPS] = sc[SC_STEPS]
    res[M_UTIL] = float(sc[SC_BUSY_US]) / float(sc[SC_CLOCK]) if sc[SC_CLOCK] > 0 else 0.0
    res[M_STATUS] = sc[SC_STATUS]
    res[M_LIVELOCK] = sc[SC_LIVELOCK]
