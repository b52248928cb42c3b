"""Per-request arrays -> summary statistics (SPEC §2, REFERENCE §6.5, SPEC_inputs_outputs §5).

Means and percentiles follow the reference's formulas: mean = (Σx / n) / 1000 and the
percentile p at rank p/100·(n−1) interpolated linearly between the neighbouring order
statistics (numpy's "linear" method), all from integer microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infersweep.metrics import summary_nb as snb
from infersweep.scheduler import common_nb as sc_nb

#: The reference simulator's keys, in its order.
REFERENCE_KEYS = (
    "instance_id",
    "completed_requests",
    "still_queued",
    "still_running",
    "injected_requests",
    "total_input_tokens",
    "total_output_tokens",
    "vllm_estimated_duration_s",
    "responses_per_sec",
    "tokens_per_sec",
    "e2e_mean_ms",
    "e2e_p90_ms",
    "e2e_p95_ms",
    "e2e_p99_ms",
    "ttft_mean_ms",
    "ttft_p90_ms",
    "ttft_p95_ms",
    "ttft_p99_ms",
    "itl_mean_ms",
    "itl_p90_ms",
    "itl_p95_ms",
    "itl_p99_ms",
    "scheduling_delay_p99_ms",
    "kv_allocation_failures",
    "preemption_count",
    "dropped_unservable",
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
    "still_running": _m(
        "1", "requests still running", "Requests in the running batch when the run ended."
    ),
    "injected_requests": _m(
        "1", "injected requests", "completed + still queued + still running + dropped."
    ),
    "total_input_tokens": _m(
        "tokens", "total input tokens", "Prompt tokens of the requests that entered the queue."
    ),
    "total_output_tokens": _m(
        "tokens",
        "total output tokens",
        "Output tokens produced (blis semantics: decode-step tokens only, "
        "as the reference counts them).",
    ),
    "vllm_estimated_duration_s": _m("s", "simulated duration", "Time of the last simulated event."),
    "responses_per_sec": _m(
        "1/s", "completed requests per second", "completed_requests / duration."
    ),
    "tokens_per_sec": _m("tokens/s", "output tokens per second", "total_output_tokens / duration."),
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
    "itl_mean_ms": _m(
        "ms", "mean inter-token latency", "Mean over all inter-token gaps of completed requests."
    ),
    "itl_p50_ms": _m("ms", "median inter-token latency", "50th percentile of the ITL samples."),
    "itl_p90_ms": _m("ms", "p90 inter-token latency", "90th percentile of the ITL samples."),
    "itl_p95_ms": _m("ms", "p95 inter-token latency", "95th percentile of the ITL samples."),
    "itl_p99_ms": _m("ms", "p99 inter-token latency", "99th percentile of the ITL samples."),
    "scheduling_delay_p99_ms": _m(
        "ms", "p99 scheduling delay", "99th percentile of arrival-to-first-scheduling time."
    ),
    "kv_allocation_failures": _m(
        "1", "KV allocation failures", "Final-token KV allocations that failed (blis semantics)."
    ),
    "preemption_count": _m("1", "preemptions", "Requests evicted from the running batch."),
    "dropped_unservable": _m(
        "1", "dropped requests", "Requests that can never fit in the KV cache."
    ),
    "tpot_mean_ms": _m(
        "ms", "mean time per output token", "Mean over requests of (E2E - TTFT) / (outputs - 1)."
    ),
    "tpot_p50_ms": _m("ms", "median time per output token", "50th percentile of TPOT."),
    "tpot_p90_ms": _m("ms", "p90 time per output token", "90th percentile of TPOT."),
    "tpot_p99_ms": _m("ms", "p99 time per output token", "99th percentile of TPOT."),
    "scheduling_delay_mean_ms": _m(
        "ms", "mean scheduling delay", "Mean of arrival-to-first-scheduling time."
    ),
    "scheduling_delay_p50_ms": _m(
        "ms", "median scheduling delay", "50th percentile of the scheduling delay."
    ),
    "kv_blocks_total": _m("blocks", "KV blocks", "KV-cache blocks available."),
    "kv_peak_blocks": _m("blocks", "peak KV blocks used", "Most KV blocks in use at once."),
    "kv_peak_fraction": _m("1", "peak KV utilisation", "kv_peak_blocks / kv_blocks_total."),
    "cache_hit_rate": _m(
        "1", "prefix-cache hit rate", "Cached blocks reused / (reused + newly allocated)."
    ),
    "preemption_rate": _m(
        "1", "preemptions per completed request", "preemption_count / completed_requests."
    ),
    "steps": _m("1", "engine steps", "Scheduler steps simulated."),
    "utilization": _m(
        "1", "engine busy fraction", "Time spent in non-empty steps / simulated duration."
    ),
    "blis_safe_fallback": _m(
        "1",
        "rerun in safe preemption mode",
        "blis semantics: 1 when the reference's preemption rules would "
        "never terminate, so the run used blis_preemption safe.",
    ),
}

#: Our additions to the reference's keys, in output order.
EXTRA_KEYS = (
    "ttft_p50_ms",
    "e2e_p50_ms",
    "itl_p50_ms",
    "tpot_mean_ms",
    "tpot_p50_ms",
    "tpot_p90_ms",
    "tpot_p99_ms",
    "scheduling_delay_mean_ms",
    "scheduling_delay_p50_ms",
    "kv_blocks_total",
    "kv_peak_blocks",
    "kv_peak_fraction",
    "cache_hit_rate",
    "preemption_rate",
    "steps",
    "utilization",
    "blis_safe_fallback",
)

STATUS_NAMES = {
    sc_nb.STATUS_OK: "ok",
    sc_nb.STATUS_STALLED: "stalled",
    sc_nb.STATUS_HORIZON: "horizon",
    sc_nb.STATUS_UNSERVABLE: "unservable",
}

#: Latency metrics: statistics over completed requests (or scheduled ones), undefined (NaN,
#: null in JSON and Parquet) when there are none.
LATENCY_SLOTS = tuple(
    snb_i
    for snb_i in (
        snb.M_E2E_MEAN,
        snb.M_E2E_P50,
        snb.M_E2E_P90,
        snb.M_E2E_P95,
        snb.M_E2E_P99,
        snb.M_TTFT_MEAN,
        snb.M_TTFT_P50,
        snb.M_TTFT_P90,
        snb.M_TTFT_P95,
        snb.M_TTFT_P99,
        snb.M_ITL_MEAN,
        snb.M_ITL_P50,
        snb.M_ITL_P90,
        snb.M_ITL_P95,
        snb.M_ITL_P99,
        snb.M_TPOT_MEAN,
        snb.M_TPOT_P50,
        snb.M_TPOT_P90,
        snb.M_TPOT_P99,
        snb.M_PREEMPT_RATE,
    )
)
SCHED_SLOTS = (snb.M_SCHED_MEAN, snb.M_SCHED_P50, snb.M_SCHED_P99)


def mark_empty(metrics: np.ndarray) -> np.ndarray:
    """Honest empty results, in place on summary rows (1-D or 2-D): where no request completed,
    the latency statistics are NaN rather than 0, and a run that otherwise ended normally gets
    status ``unservable`` (every request was dropped: none fits in the KV cache)."""
    rows = metrics.reshape(-1, metrics.shape[-1])
    empty = rows[:, snb.M_COMPLETED] == 0
    if empty.any():
        idx = np.flatnonzero(empty)
        rows[np.ix_(idx, LATENCY_SLOTS)] = np.nan
        ok = idx[rows[idx, snb.M_STATUS] == sc_nb.STATUS_OK]
        rows[ok, snb.M_STATUS] = sc_nb.STATUS_UNSERVABLE
        # scheduling delays: over requests that were scheduled at all (none when all dropped)
        none_sched = idx[(rows[idx, snb.M_SCHED_MEAN] == 0) & (rows[idx, snb.M_SCHED_P99] == 0)]
        rows[np.ix_(none_sched, SCHED_SLOTS)] = np.nan
    return metrics


# --------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------

#: summary key -> (index in summary_nb's vector, is an integer count)
SUMMARY_INDEX: dict[str, tuple[int, bool]] = {
    "completed_requests": (snb.M_COMPLETED, True),
    "still_queued": (snb.M_QUEUED, True),
    "still_running": (snb.M_RUNNING, True),
    "injected_requests": (snb.M_INJECTED, True),
    "total_input_tokens": (snb.M_INPUT_TOK, True),
    "total_output_tokens": (snb.M_OUTPUT_TOK, True),
    "vllm_estimated_duration_s": (snb.M_DURATION_S, False),
    "responses_per_sec": (snb.M_RESP_PER_S, False),
    "tokens_per_sec": (snb.M_TOK_PER_S, False),
    "e2e_mean_ms": (snb.M_E2E_MEAN, False),
    "e2e_p90_ms": (snb.M_E2E_P90, False),
    "e2e_p95_ms": (snb.M_E2E_P95, False),
    "e2e_p99_ms": (snb.M_E2E_P99, False),
    "ttft_mean_ms": (snb.M_TTFT_MEAN, False),
    "ttft_p90_ms": (snb.M_TTFT_P90, False),
    "ttft_p95_ms": (snb.M_TTFT_P95, False),
    "ttft_p99_ms": (snb.M_TTFT_P99, False),
    "itl_mean_ms": (snb.M_ITL_MEAN, False),
    "itl_p90_ms": (snb.M_ITL_P90, False),
    "itl_p95_ms": (snb.M_ITL_P95, False),
    "itl_p99_ms": (snb.M_ITL_P99, False),
    "scheduling_delay_p99_ms": (snb.M_SCHED_P99, False),
    "kv_allocation_failures": (snb.M_KV_FAIL, True),
    "preemption_count": (snb.M_PREEMPT, True),
    "dropped_unservable": (snb.M_DROPPED, True),
    "ttft_p50_ms": (snb.M_TTFT_P50, False),
    "e2e_p50_ms": (snb.M_E2E_P50, False),
    "itl_p50_ms": (snb.M_ITL_P50, False),
    "tpot_mean_ms": (snb.M_TPOT_MEAN, False),
    "tpot_p50_ms": (snb.M_TPOT_P50, False),
    "tpot_p90_ms": (snb.M_TPOT_P90, False),
    "tpot_p99_ms": (snb.M_TPOT_P99, False),
    "scheduling_delay_mean_ms": (snb.M_SCHED_MEAN, False),
    "scheduling_delay_p50_ms": (snb.M_SCHED_P50, False),
    "kv_blocks_total": (snb.M_KV_TOTAL, True),
    "kv_peak_blocks": (snb.M_KV_PEAK, True),
    "kv_peak_fraction": (snb.M_KV_PEAK_FRAC, False),
    "cache_hit_rate": (snb.M_HIT_RATE, False),
    "preemption_rate": (snb.M_PREEMPT_RATE, False),
    "steps": (snb.M_STEPS, True),
    "utilization": (snb.M_UTIL, False),
    "blis_safe_fallback": (snb.M_LIVELOCK, True),
}

#: metric keys of a sweep result, in output order
SWEEP_METRICS = tuple(k for k in SUMMARY_INDEX)


def summary_vector(raw) -> np.ndarray:
    res = np.zeros(snb.N_M)
    snb.summarize_nb(
        raw.out,
        raw.scalars,
        np.ascontiguousarray(raw.itl_us, np.int64),
        raw.workload.output_tok,
        raw.semantics == "blis",
        raw.kv_blocks_total,
        res,
    )
    return mark_empty(res)


def summary_dict(vec: np.ndarray, semantics: str) -> dict:
    """The metrics object printed by ``run`` (reference keys in order, then ours)."""
    m: dict = {"instance_id": "cluster"}
    for key, (i, is_int) in SUMMARY_INDEX.items():
        if key == "kv_allocation_failures" and vec[i] == 0:
            continue  # the reference omits it when 0
        if is_int:
            m[key] = int(vec[i])
        else:
            m[key] = None if np.isnan(vec[i]) else float(vec[i])
    m["semantics"] = semantics
    m["status"] = STATUS_NAMES.get(int(vec[snb.M_STATUS]), "unknown")
    return m


def summarize(raw) -> dict:
    return summary_dict(summary_vector(raw), raw.semantics)


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
    tp_all = np.where(
        done & (wl.output_tok > min_out), span / np.maximum(wl.output_tok - 1, 1), 0.0
    )
    registered = (state != sc_nb.STATE_DROPPED) & (state != sc_nb.STATE_PENDING)
    sched = o[:, sc_nb.O_SCHED]
    recs = []
    for i in np.flatnonzero(registered):
        recs.append(
            {
                "arrived_at": float(wl.arrival_us[i]) / 1e6,
                "requestID": f"request_{int(ids[i])}",
                "num_prefill_tokens": int(wl.prompt_tok[i]),
                "num_decode_tokens": int(wl.output_tok[i]),
                "ttft_ms": float(max(ttft[i], 0)) / 1000,
                "itl_ms": float(tp_all[i]) / 1000,
                "e2e_ms": float(e2e[i]) / 1000 if done[i] else 0.0,
                "scheduling_delay_ms": float(max(sched[i], 0)) / 1000,
                "handled_by": "instance_0",
            }
        )
    return recs


#: The per-request table of ``run --results-path X.parquet``, ``sweep --per-request`` and
#: ``SimResult.requests_table()``: column -> (units, description).
REQUEST_COLUMNS = {
    "request_id": ("1", "row of the request in its trace (generation order otherwise)"),
    "arrival_s": ("s", "arrival time"),
    "prompt_tokens": ("tokens", "prompt length"),
    "output_tokens": ("tokens", "output length"),
    "prefix_group": ("1", "shared-prefix group (-1 = none)"),
    "prefix_tokens": ("tokens", "tokens of the group's shared prefix"),
    "ttft_ms": ("ms", "time to first token (NaN if none)"),
    "e2e_ms": ("ms", "end-to-end latency (NaN if not completed)"),
    "scheduling_delay_ms": ("ms", "arrival to first scheduling (NaN if never scheduled)"),
    "preemptions": ("1", "times the request was preempted"),
    "completed": ("1", "the request finished"),
    "dropped": ("1", "the request can never fit in the KV cache"),
}


def request_columns(workload, out: np.ndarray) -> dict[str, np.ndarray]:
    """The per-request columns (:data:`REQUEST_COLUMNS`, arrival order) of one simulation's
    kernel outputs ``out`` (``O_*`` columns)."""
    rows = workload.extra.get("trace_row")
    rid = np.arange(len(workload)) if rows is None else np.asarray(rows)

    def ms(col: int) -> np.ndarray:
        v = out[:, col]
        return np.where(v >= 0, v / 1000.0, np.nan)

    state = out[:, sc_nb.O_STATE]
    cols = {
        "request_id": rid.astype(np.int64),
        "arrival_s": workload.arrival_us / 1e6,
        "prompt_tokens": workload.prompt_tok,
        "output_tokens": workload.output_tok,
        "prefix_group": workload.group,
        "prefix_tokens": workload.prefix_tok,
        "ttft_ms": ms(sc_nb.O_TTFT),
        "e2e_ms": ms(sc_nb.O_E2E),
        "scheduling_delay_ms": ms(sc_nb.O_SCHED),
        "preemptions": out[:, sc_nb.O_PREEMPT].copy(),
        "completed": state == sc_nb.STATE_DONE,
        "dropped": state == sc_nb.STATE_DROPPED,
    }
    assert list(cols) == list(REQUEST_COLUMNS)
    return cols
