"""Per-request arrays -> summary statistics (SPEC §2, REFERENCE §6.5, SPEC_inputs_outputs §5).

Means and percentiles follow the reference's formulas: mean = (Σx / n) / 1000 and the
percentile p at rank p/100·(n−1) interpolated linearly between the neighbouring order
statistics (numpy's "linear" method), all from integer microseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import sched_common_nb as sc_nb
from .stats_nb import order_stats_nb

#: The reference simulator's keys, in its order.
REFERENCE_KEYS = (
    "instance_id", "completed_requests", "still_queued", "still_running", "injected_requests",
    "total_input_tokens", "total_output_tokens", "vllm_estimated_duration_s",
    "responses_per_sec", "tokens_per_sec", "e2e_mean_ms", "e2e_p90_ms", "e2e_p95_ms",
    "e2e_p99_ms", "ttft_mean_ms", "ttft_p90_ms", "ttft_p95_ms", "ttft_p99_ms", "itl_mean_ms",
    "itl_p90_ms", "itl_p95_ms", "itl_p99_ms", "scheduling_delay_p99_ms",
    "kv_allocation_failures", "preemption_count", "dropped_unservable",
)


@dataclass(frozen=True, slots=True)
class MetricInfo:
    units: str
    long_name: str
    description: str


def _m(units: str, long_name: str, description: str) -> MetricInfo:
    return MetricInfo(units, long_name, description)


#: Every summary metric: units, long name, description (used for the sweep Dataset too).
METRICS: dict[str, MetricInfo] = {
    "completed_requests": _m("1", "completed requests", "Requests that finished."),
    "still_queued": _m("1", "requests still queued", "Requests waiting when the run ended."),
    "still_running": _m("1", "requests still running",
                        "Requests in the running batch when the run ended."),
    "injected_requests": _m("1", "injected requests",
                            "completed + still queued + still running + dropped."),
    "total_input_tokens": _m("tokens", "total input tokens",
                             "Prompt tokens of the requests that entered the queue."),
    "total_output_tokens": _m("tokens", "total output tokens",
                              "Output tokens produced (blis semantics: decode-step tokens only, "
                              "as the reference counts them)."),
    "vllm_estimated_duration_s": _m("s", "simulated duration",
                                    "Time of the last simulated event."),
    "responses_per_sec": _m("1/s", "completed requests per second",
                            "completed_requests / duration."),
    "tokens_per_sec": _m("tokens/s", "output tokens per second",
                         "total_output_tokens / duration."),
    "e2e_mean_ms": _m("ms", "mean end-to-end latency", "Mean of arrival-to-last-token time."),
    "e2e_p50_ms": _m("ms", "median end-to-end latency", "50th percentile of E2E latency."),
    "e2e_p90_ms": _m("ms", "p90 end-to-end latency", "90th percentile of E2E latency."),
    "e2e_p95_ms": _m("ms", "p95 end-to-end latency", "95th percentile of E2E latency."),
    "e2e_p99_ms": _m("ms", "p99 end-to-end latency", "99th percentile of E2E latency."),
    "ttft_mean_ms": _m("ms", "mean time to first token", "Mean of arrival-to-first-token time."),
    "ttft_p50_ms": _m("ms", "median time to first token", "50th percentile of TTFT."),
    "ttft_p90_ms": _m("ms", "p90 time to first token", "90th percentile of TTFT."),
    "ttft_p95_ms": _m("ms", "p95 time to first token", "95th percentile of TTFT."),
    "ttft_p99_ms": _m("ms", "p99 time to first token", "99th percentile of TTFT."),
    "itl_mean_ms": _m("ms", "mean inter-token latency",
                      "Mean over all inter-token gaps of completed requests."),
    "itl_p50_ms": _m("ms", "median inter-token latency", "50th percentile of the ITL samples."),
    "itl_p90_ms": _m("ms", "p90 inter-token latency", "90th percentile of the ITL samples."),
    "itl_p95_ms": _m("ms", "p95 inter-token latency", "95th percentile of the ITL samples."),
    "itl_p99_ms": _m("ms", "p99 inter-token latency", "99th percentile of the ITL samples."),
    "scheduling_delay_p99_ms": _m("ms", "p99 scheduling delay",
                                  "99th percentile of arrival-to-first-scheduling time."),
    "kv_allocation_failures": _m("1", "KV allocation failures",
                                 "Final-token KV allocations that failed (blis semantics)."),
    "preemption_count": _m("1", "preemptions", "Requests evicted from the running batch."),
    "dropped_unservable": _m("1", "dropped requests",
                             "Requests that can never fit in the KV cache."),
    "tpot_mean_ms": _m("ms", "mean time per output token",
                       "Mean over requests of (E2E - TTFT) / (outputs - 1)."),
    "tpot_p50_ms": _m("ms", "median time per output token", "50th percentile of TPOT."),
    "tpot_p90_ms": _m("ms", "p90 time per output token", "90th percentile of TPOT."),
    "tpot_p99_ms": _m("ms", "p99 time per output token", "99th percentile of TPOT."),
    "scheduling_delay_mean_ms": _m("ms", "mean scheduling delay",
                                   "Mean of arrival-to-first-scheduling time."),
    "scheduling_delay_p50_ms": _m("ms", "median scheduling delay",
                                  "50th percentile of the scheduling delay."),
    "kv_blocks_total": _m("blocks", "KV blocks", "KV-cache blocks available."),
    "kv_peak_blocks": _m("blocks", "peak KV blocks used", "Most KV blocks in use at once."),
    "kv_peak_fraction": _m("1", "peak KV utilisation", "kv_peak_blocks / kv_blocks_total."),
    "cache_hit_rate": _m("1", "prefix-cache hit rate",
                         "Cached blocks reused / (reused + newly allocated)."),
    "preemption_rate": _m("1", "preemptions per completed request",
                          "preemption_count / completed_requests."),
    "steps": _m("1", "engine steps", "Scheduler steps simulated."),
    "utilization": _m("1", "engine busy fraction",
                      "Time spent in non-empty steps / simulated duration."),
}

#: Our additions to the reference's keys, in output order.
EXTRA_KEYS = (
    "ttft_p50_ms", "e2e_p50_ms", "itl_p50_ms", "tpot_mean_ms", "tpot_p50_ms", "tpot_p90_ms",
    "tpot_p99_ms", "scheduling_delay_mean_ms", "scheduling_delay_p50_ms", "kv_blocks_total",
    "kv_peak_blocks", "kv_peak_fraction", "cache_hit_rate", "preemption_rate", "steps",
    "utilization",
)

STATUS_NAMES = {sc_nb.STATUS_OK: "ok", sc_nb.STATUS_STALLED: "stalled",
                sc_nb.STATUS_HORIZON: "horizon"}


# --------------------------------------------------------------------------------------------
# statistics with the reference's formulas
# --------------------------------------------------------------------------------------------


def mean_ms(x: np.ndarray) -> float:
    n = len(x)
    if n == 0:
        return 0.0
    return (float(np.sum(x, dtype=np.float64)) / n) / 1000


def _plan(n: int, ps: tuple[float, ...]) -> list[tuple[float, float, int, int]]:
    plan = []
    for p in ps:
        rank = p / 100.0 * float(n - 1)
        lo = int(math.floor(rank))
        hi = min(int(math.ceil(rank)), n - 1)
        plan.append((p, rank, lo, hi))
    return plan


def _interp(plan, st: dict) -> dict[float, float]:
    out = {}
    for p, rank, lo, hi in plan:
        a = st[lo]
        b = st[hi]
        if lo == hi:
            out[p] = float(a) / 1000
        else:
            out[p] = float(a) / 1000 + float(b - a) * (rank - float(lo)) / 1000
    return out


def percentiles_ms(x: np.ndarray, ps: tuple[float, ...]) -> dict[float, float]:
    """The reference's CalculatePercentile for each p (x in µs, unsorted)."""
    return mean_and_percentiles_ms(x, ps)[1]


def mean_and_percentiles_ms(x: np.ndarray, ps: tuple[float, ...]) -> tuple[float, dict]:
    """Mean (ms) and the reference's CalculatePercentile for each p (x in µs, unsorted)."""
    n = len(x)
    if n == 0:
        return 0.0, {p: 0.0 for p in ps}
    plan = _plan(n, ps)
    ranks = sorted({r for _, _, lo, hi in plan for r in (lo, hi)})
    if x.dtype.kind in "iu":
        vals = np.zeros(len(ranks), np.int64)
        total = order_stats_nb(np.ascontiguousarray(x, np.int64), np.asarray(ranks, np.int64),
                               vals)
        st = dict(zip(ranks, vals.tolist()))
        return (total / n) / 1000, _interp(plan, st)
    part = np.partition(x, ranks)
    st = {k: part[k].item() for k in ranks}
    return mean_ms(x), _interp(plan, st)


# --------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------


def tpot_us(raw) -> np.ndarray:
    """Per completed request: (E2E - TTFT) / (outputs - 1) in µs (float)."""
    o = raw.out
    done = o[:, sc_nb.O_STATE] == sc_nb.STATE_DONE
    out_tok = raw.workload.output_tok
    span = (o[:, sc_nb.O_E2E] - o[:, sc_nb.O_TTFT]).astype(np.float64)
    if raw.semantics == "blis":
        den = np.maximum(out_tok - 1, 1).astype(np.float64)
        val = np.where(out_tok > 0, span / den, 0.0)
        return val[done]
    keep = done & (out_tok > 1)
    return span[keep] / (out_tok[keep] - 1)


def summarize(raw) -> dict:
    """The metrics object printed by ``run`` (reference keys in order, then ours)."""
    o = raw.out
    s = raw.scalars
    done = o[:, sc_nb.O_STATE] == sc_nb.STATE_DONE
    completed = int(s[sc_nb.SC_COMPLETED])
    queued = int(s[sc_nb.SC_QUEUED])
    running = int(s[sc_nb.SC_RUNNING])
    dropped = int(s[sc_nb.SC_DROPPED])
    duration = float(s[sc_nb.SC_CLOCK]) / 1e6
    out_tok = int(s[sc_nb.SC_OUTPUT_TOK])
    e2e = o[done, sc_nb.O_E2E]
    ttft = o[done, sc_nb.O_TTFT]
    itl = raw.itl_us
    sched = o[o[:, sc_nb.O_SCHED] >= 0, sc_nb.O_SCHED]
    tp = tpot_us(raw)
    qs = (50.0, 90.0, 95.0, 99.0)
    me, pe = mean_and_percentiles_ms(e2e, qs)
    mt, pt = mean_and_percentiles_ms(ttft, qs)
    mi, pi = mean_and_percentiles_ms(itl, qs)
    msd, ps = mean_and_percentiles_ms(sched, (50.0, 99.0))
    m: dict = {
        "instance_id": "cluster",
        "completed_requests": completed,
        "still_queued": queued,
        "still_running": running,
        "injected_requests": completed + queued + running + dropped,
        "total_input_tokens": int(s[sc_nb.SC_INPUT_TOK]),
        "total_output_tokens": out_tok,
        "vllm_estimated_duration_s": duration,
        "responses_per_sec": completed / duration if duration > 0 else 0.0,
        "tokens_per_sec": out_tok / duration if duration > 0 else 0.0,
        "e2e_mean_ms": me, "e2e_p90_ms": pe[90.0], "e2e_p95_ms": pe[95.0],
        "e2e_p99_ms": pe[99.0],
        "ttft_mean_ms": mt, "ttft_p90_ms": pt[90.0], "ttft_p95_ms": pt[95.0],
        "ttft_p99_ms": pt[99.0],
        "itl_mean_ms": mi, "itl_p90_ms": pi[90.0], "itl_p95_ms": pi[95.0],
        "itl_p99_ms": pi[99.0],
        "scheduling_delay_p99_ms": ps[99.0],
    }
    if s[sc_nb.SC_KV_FAIL] > 0:
        m["kv_allocation_failures"] = int(s[sc_nb.SC_KV_FAIL])
    m["preemption_count"] = int(s[sc_nb.SC_PREEMPT])
    m["dropped_unservable"] = dropped
    hits = int(s[sc_nb.SC_HITS])
    misses = int(s[sc_nb.SC_MISSES])
    tpp = percentiles_ms(tp, (50.0, 90.0, 99.0)) if len(tp) else {50.0: 0.0, 90.0: 0.0,
                                                                         99.0: 0.0}
    m.update({
        "ttft_p50_ms": pt[50.0], "e2e_p50_ms": pe[50.0], "itl_p50_ms": pi[50.0],
        "tpot_mean_ms": float(np.mean(tp)) / 1000 if len(tp) else 0.0,
        "tpot_p50_ms": tpp[50.0], "tpot_p90_ms": tpp[90.0], "tpot_p99_ms": tpp[99.0],
        "scheduling_delay_mean_ms": msd, "scheduling_delay_p50_ms": ps[50.0],
        "kv_blocks_total": int(raw.kv_blocks_total),
        "kv_peak_blocks": int(s[sc_nb.SC_KV_PEAK]),
        "kv_peak_fraction": float(s[sc_nb.SC_KV_PEAK]) / raw.kv_blocks_total,
        "cache_hit_rate": hits / (hits + misses) if hits + misses else 0.0,
        "preemption_rate": int(s[sc_nb.SC_PREEMPT]) / completed if completed else 0.0,
        "steps": int(s[sc_nb.SC_STEPS]),
        "utilization": float(s[sc_nb.SC_BUSY_US]) / float(s[sc_nb.SC_CLOCK])
        if s[sc_nb.SC_CLOCK] > 0 else 0.0,
        "semantics": raw.semantics,
        "status": STATUS_NAMES.get(int(s[sc_nb.SC_STATUS]), "unknown"),
    })
    return m


def request_ids(raw) -> np.ndarray:
    """The row number of each request in its trace (request_<i>), in arrival order."""
    rows = raw.workload.extra.get("trace_row")
    return np.arange(len(raw.workload)) if rows is None else np.asarray(rows)


def request_records(raw) -> list[dict]:
    """Per-request records of ``--results-path`` (dropped requests excluded), by arrival."""
    o = raw.out
    wl = raw.workload
    ids = request_ids(raw)
    state = o[:, sc_nb.O_STATE]
    done = state == sc_nb.STATE_DONE
    ttft = o[:, sc_nb.O_TTFT]
    e2e = o[:, sc_nb.O_E2E]
    span = (e2e - ttft).astype(np.float64)
    min_out = 0 if raw.semantics == "blis" else 1
    tp_all = np.where(done & (wl.output_tok > min_out),
                      span / np.maximum(wl.output_tok - 1, 1), 0.0)
    registered = (state != sc_nb.STATE_DROPPED) & (state != sc_nb.STATE_PENDING)
    sched = o[:, sc_nb.O_SCHED]
    recs = []
    for i in np.flatnonzero(registered):
        recs.append({
            "arrived_at": float(wl.arrival_us[i]) / 1e6,
            "requestID": f"request_{int(ids[i])}",
            "num_prefill_tokens": int(wl.prompt_tok[i]),
            "num_decode_tokens": int(wl.output_tok[i]),
            "ttft_ms": float(max(ttft[i], 0)) / 1000,
            "itl_ms": float(tp_all[i]) / 1000,
            "e2e_ms": float(e2e[i]) / 1000 if done[i] else 0.0,
            "scheduling_delay_ms": float(max(sched[i], 0)) / 1000,
            "handled_by": "instance_0",
        })
    return recs
