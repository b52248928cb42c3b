"""Summary statistics of one simulation, in numba: the single implementation behind ``run``'s
metrics and every point of a sweep (REFERENCE §6.5, SPEC §2).

Means are (Σx / n) / 1000 and percentile p is the reference's CalculatePercentile: rank
p/100·(n−1), linear between the neighbouring order statistics, from integer microseconds.
"""

from __future__ import annotations

import numpy as np

from infersweep import schema as S
from infersweep._jit import hjit, jit
from infersweep.metrics.stats_nb import order_stats_nb
from infersweep.schema import (
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

# The slots of the summary vector are declared in infersweep.schema.METRICS (M_*); the
# percentile families below name which slot each percentile of a sample set goes to.
_QS = (50.0, 90.0, 95.0, 99.0)
_E2E_SLOTS = (S.M_E2E_P50_MS, S.M_E2E_P90_MS, S.M_E2E_P95_MS, S.M_E2E_P99_MS)
_TTFT_SLOTS = (S.M_TTFT_P50_MS, S.M_TTFT_P90_MS, S.M_TTFT_P95_MS, S.M_TTFT_P99_MS)
_ITL_SLOTS = (S.M_ITL_P50_MS, S.M_ITL_P90_MS, S.M_ITL_P95_MS, S.M_ITL_P99_MS)
_SCHED_QS = (50.0, 99.0)
_SCHED_SLOTS = (S.M_SCHEDULING_DELAY_P50_MS, S.M_SCHEDULING_DELAY_P99_MS)
_TPOT_QS = (50.0, 90.0, 99.0)
_TPOT_SLOTS = (S.M_TPOT_P50_MS, S.M_TPOT_P90_MS, S.M_TPOT_P99_MS)


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
def _percentiles(x, ps, out, slots):
    """Mean (returned, ms) and the reference's percentiles (percentile j written to
    out[slots[j]], ms) of the integer samples x."""
    n = x.shape[0]
    if n == 0:
        for j in range(ps.shape[0]):
            out[slots[j]] = 0.0
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
            out[slots[j]] = float(a) / 1000
        else:
            out[slots[j]] = float(a) / 1000 + float(b - a) * (rk[j] - float(lo)) / 1000
    return (total / n) / 1000


@jit
def _float_percentiles(x, ps, out, slots):
    """Mean and percentiles (ms) of float samples in µs (TPOT)."""
    n = x.shape[0]
    if n == 0:
        for j in range(ps.shape[0]):
            out[slots[j]] = 0.0
        return 0.0
    s = np.sort(x)
    total = 0.0
    for i in range(n):
        total += x[i]
    for j in range(ps.shape[0]):
        rank, lo, hi = _rank(ps[j], n)
        if lo == hi:
            out[slots[j]] = s[lo] / 1000
        else:
            out[slots[j]] = s[lo] / 1000 + (s[hi] - s[lo]) * (rank - float(lo)) / 1000
    return (total / n) / 1000


@jit
def summarize_nb(out, sc, itl, output_tok, blis, kv_total, res):
    """Fill res[0:N_M] (the slots of schema.METRICS) from one simulation's per-request
    outputs and counters."""
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
    res[S.M_COMPLETED_REQUESTS] = completed
    res[S.M_STILL_QUEUED] = sc[SC_QUEUED]
    res[S.M_STILL_RUNNING] = sc[SC_RUNNING]
    res[S.M_INJECTED_REQUESTS] = completed + sc[SC_QUEUED] + sc[SC_RUNNING] + sc[SC_DROPPED]
    res[S.M_TOTAL_INPUT_TOKENS] = sc[SC_INPUT_TOK]
    res[S.M_TOTAL_OUTPUT_TOKENS] = sc[SC_OUTPUT_TOK]
    res[S.M_VLLM_ESTIMATED_DURATION_S] = duration
    res[S.M_RESPONSES_PER_SEC] = completed / duration if duration > 0 else 0.0
    res[S.M_TOKENS_PER_SEC] = sc[SC_OUTPUT_TOK] / duration if duration > 0 else 0.0
    res[S.M_E2E_MEAN_MS] = _percentiles(e2e, qs, res, np.array(_E2E_SLOTS))
    res[S.M_TTFT_MEAN_MS] = _percentiles(ttft, qs, res, np.array(_TTFT_SLOTS))
    res[S.M_ITL_MEAN_MS] = _percentiles(itl, qs, res, np.array(_ITL_SLOTS))
    res[S.M_SCHEDULING_DELAY_MEAN_MS] = _percentiles(
        sched, np.array(_SCHED_QS), res, np.array(_SCHED_SLOTS)
    )
    res[S.M_KV_ALLOCATION_FAILURES] = sc[SC_KV_FAIL]
    res[S.M_PREEMPTION_COUNT] = sc[SC_PREEMPT]
    res[S.M_DROPPED_UNSERVABLE] = sc[SC_DROPPED]
    res[S.M_TPOT_MEAN_MS] = _float_percentiles(
        tpot[:m], np.array(_TPOT_QS), res, np.array(_TPOT_SLOTS)
    )
    res[S.M_KV_BLOCKS_TOTAL] = kv_total
    res[S.M_KV_PEAK_BLOCKS] = sc[SC_KV_PEAK]
    res[S.M_KV_PEAK_FRACTION] = float(sc[SC_KV_PEAK]) / float(kv_total)
    hits = sc[SC_HITS]
    miss = sc[SC_MISSES]
    res[S.M_CACHE_HIT_RATE] = hits / (hits + miss) if hits + miss > 0 else 0.0
    res[S.M_PREEMPTION_RATE] = sc[SC_PREEMPT] / completed if completed > 0 else 0.0
    res[S.M_STEPS] = sc[SC_STEPS]
    res[S.M_UTILIZATION] = float(sc[SC_BUSY_US]) / float(sc[SC_CLOCK]) if sc[SC_CLOCK] > 0 else 0.0
    res[S.M_STATUS] = sc[SC_STATUS]
    res[S.M_BLIS_SAFE_FALLBACK] = sc[SC_LIVELOCK]
    res[S.M_LOAD_IMBALANCE] = 1.0  # one instance (the cluster driver sets a cluster's)
    res[S.M_KV_TRANSFER_MEAN_MS] = 0.0  # no KV transfers (scheduler/pd_nb.py sets its own)
    res[S.M_KV_TRANSFER_P99_MS] = 0.0
    res[S.M_KV_LINK_UTILIZATION] = 0.0
