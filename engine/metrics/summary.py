"""Per-request arrays -> summary statistics (SPEC §2, REFERENCE §6.5, SPEC_inputs_outputs §5).

Means and percentiles follow the reference's formulas: mean = (Σx / n) / 1000 and the
percentile p at rank p/100·(n−1) interpolated linearly between the neighbouring order
statistics (numpy's "linear" method), all from integer microseconds.
"""

from __future__ import annotations

import numpy as np

from infersweep import schema
from infersweep.metrics import summary_nb as snb
from infersweep.schema import METRIC_COLUMNS, STATUS_NAMES, SUMMARY

#: Latency metrics: statistics over completed requests (or scheduled ones), undefined (NaN,
#: null in JSON and Parquet) when there are none.
LATENCY_SLOTS = tuple(
    SUMMARY.index(f"{stem}_{stat}_ms")
    for stem in ("e2e", "ttft", "itl", "tpot")
    for stat in ("mean", "p50", "p90", "p95", "p99")
    if f"{stem}_{stat}_ms" in SUMMARY.names
) + (schema.M_PREEMPTION_RATE,)
SCHED_SLOTS = (
    schema.M_SCHEDULING_DELAY_MEAN_MS,
    schema.M_SCHEDULING_DELAY_P50_MS,
    schema.M_SCHEDULING_DELAY_P99_MS,
)


def mark_empty(metrics: np.ndarray) -> np.ndarray:
    """Honest empty results, in place on summary rows (1-D or 2-D): where no request completed,
    the latency statistics are NaN rather than 0, and a run that otherwise ended normally gets
    status ``unservable`` (every request was dropped: none fits in the KV cache)."""
    rows = metrics.reshape(-1, metrics.shape[-1])
    empty = rows[:, schema.M_COMPLETED_REQUESTS] == 0
    if empty.any():
        idx = np.flatnonzero(empty)
        rows[np.ix_(idx, LATENCY_SLOTS)] = np.nan
        ok = idx[rows[idx, schema.M_STATUS] == schema.STATUS_OK]
        rows[ok, schema.M_STATUS] = schema.STATUS_UNSERVABLE
        # scheduling delays: over requests that were scheduled at all (none when all dropped)
        none_sched = idx[
            (rows[idx, schema.M_SCHEDULING_DELAY_MEAN_MS] == 0)
            & (rows[idx, schema.M_SCHEDULING_DELAY_P99_MS] == 0)
        ]
        rows[np.ix_(none_sched, SCHED_SLOTS)] = np.nan
    return metrics


# --------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------


def summary_vector(raw) -> np.ndarray:
    if getattr(raw, "metrics", None) is not None:
        return raw.metrics  # computed by the kernel entry (scheduler.driver_nb)
    res = np.zeros(schema.N_M)
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
    """The metrics object printed by ``run``: schema.METRICS in order (the reference's keys,
    then ours), then the semantics and the status by name."""
    m: dict = {"instance_id": "cluster"}
    for metric in METRIC_COLUMNS:
        v = vec[SUMMARY.index(metric.name)]
        if metric.name == "kv_allocation_failures" and v == 0:
            continue  # the reference omits it when 0
        if metric.integer:
            m[metric.name] = int(v)
        else:
            m[metric.name] = None if np.isnan(v) else float(v)
    m["semantics"] = semantics
    m["status"] = STATUS_NAMES.get(int(vec[schema.M_STATUS]), "unknown")
    return m


def instance_records(inst: np.ndarray) -> list[dict]:
    """A cluster's per-instance metrics (rows ``CI_*`` of the cluster kernel)."""
    recs = []
    clock = float(inst[:, schema.CI_CLOCK].max()) if len(inst) else 0.0
    for i, row in enumerate(inst):
        hits = int(row[schema.CI_HITS])
        looked = hits + int(row[schema.CI_MISSES])
        recs.append(
            {
                "instance_id": f"instance_{i}",
                "requests": int(row[schema.CI_REQUESTS]),
                "completed_requests": int(row[schema.CI_COMPLETED]),
                "dropped_unservable": int(row[schema.CI_DROPPED]),
                "preemption_count": int(row[schema.CI_PREEMPT]),
                "kv_peak_blocks": int(row[schema.CI_KV_PEAK]),
                "cache_hit_rate": hits / looked if looked else 0.0,
                "utilization": float(row[schema.CI_BUSY_US]) / clock if clock > 0 else 0.0,
                "steps": int(row[schema.CI_STEPS]),
                "total_output_tokens": int(row[schema.CI_OUTPUT_TOK]),
            }
        )
        role = int(row[schema.CI_ROLE])
        if role != schema.ROLE_WHOLE:  # prefill/decode disaggregation
            recs[-1]["role"] = schema.ROLES.names[role]
            recs[-1]["handoffs"] = int(row[schema.CI_HANDOFFS])
            if role == schema.ROLE_PREFILL:
                busy = float(row[schema.CI_LINK_BUSY_US])
                recs[-1]["kv_link_utilization"] = busy / clock if clock > 0 else 0.0
    return recs


def summarize(raw) -> dict:
    m = summary_dict(summary_vector(raw), raw.semantics)
    inst = getattr(raw, "instances", None)
    if inst is not None:  # a cluster: per-instance metrics under their own key
        m["instances"] = instance_records(inst)
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
    state = o[:, schema.O_STATE]
    done = state == schema.STATE_DONE
    ttft = o[:, schema.O_TTFT]
    e2e = o[:, schema.O_E2E]
    span = (e2e - ttft).astype(np.float64)
    min_out = 0 if raw.semantics == "blis" else 1
    tp_all = np.where(
        done & (wl.output_tok > min_out), span / np.maximum(wl.output_tok - 1, 1), 0.0
    )
    registered = (state != schema.STATE_DROPPED) & (state != schema.STATE_PENDING)
    sched = o[:, schema.O_SCHED]
    route = getattr(raw, "route", None)  # clusters: each request's instance
    decode_route = getattr(raw, "decode_route", None)  # P/D: its decode instance
    n_prefill = 0  # decode instances are numbered after the prefill instances
    if decode_route is not None and raw.instances is not None:
        n_prefill = int((raw.instances[:, schema.CI_ROLE] == schema.ROLE_PREFILL).sum())
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
                "handled_by": f"instance_{0 if route is None else int(route[i])}",
            }
        )
        if decode_route is not None and decode_route[i] >= 0:
            recs[-1]["decoded_by"] = f"instance_{n_prefill + int(decode_route[i])}"
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

    state = out[:, schema.O_STATE]
    cols = {
        "request_id": rid.astype(np.int64),
        "arrival_s": workload.arrival_us / 1e6,
        "prompt_tokens": workload.prompt_tok,
        "output_tokens": workload.output_tok,
        "prefix_group": workload.group,
        "prefix_tokens": workload.prefix_tok,
        "ttft_ms": ms(schema.O_TTFT),
        "e2e_ms": ms(schema.O_E2E),
        "scheduling_delay_ms": ms(schema.O_SCHED),
        "preemptions": out[:, schema.O_PREEMPT].copy(),
        "completed": state == schema.STATE_DONE,
        "dropped": state == schema.STATE_DROPPED,
    }
    assert list(cols) == list(REQUEST_COLUMNS)
    return cols
