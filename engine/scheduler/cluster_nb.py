"""Cluster kernel: ``replicas`` identical vllm instances behind a router, on one clock.

Each instance is one :func:`~infersweep.scheduler.vllm_nb.vllm_advance_nb` state (its scalars,
running slots, request lists and KV pool, in arrays of its own); the per-request arrays (outputs,
block lists, generated tokens) and the step-cost memo are shared, since a request lives on one
instance and the instances are identical.  Requests are routed in arrival order.  A router that
looks at load first brings every instance to the routing time (each stops at its first step
boundary at or after it, exactly where a single instance would see the request) and takes a
snapshot of their load; with ``snapshot_interval`` > 0 the snapshot is refreshed only on that
grid, and between refreshes the router adds the requests it sent itself.  The chosen instance
gets the request in its arrival list at arrival + ``routing_latency``; it sees it at its first
step boundary from then on.  At the end every instance runs to completion.
"""

from __future__ import annotations

import numpy as np

from infersweep._jit import hjit, jit
from infersweep.metrics.summary_nb import summarize_nb
from infersweep.scheduler.common_nb import add_request_overheads_nb, init_outputs
from infersweep.scheduler.vllm_nb import (
    TIME_MAX,
    init_requests_nb,
    new_cost_scratch_nb,
    new_work_nb,
    unfinished_tokens_nb,
    vllm_advance_nb,
)
from infersweep.schema import (
    CFG_BLOCK,
    CFG_BLOCKS,
    CFG_MAX_RUN,
    CI_BUSY_US,
    CI_CLOCK,
    CI_COMPLETED,
    CI_DROPPED,
    CI_HITS,
    CI_KV_BLOCKS,
    CI_KV_PEAK,
    CI_MISSES,
    CI_OUTPUT_TOK,
    CI_PREEMPT,
    CI_REQUESTS,
    CI_STEPS,
    CL_AFFINITY_SLACK,
    CL_LATENCY_US,
    CL_REPLICAS,
    CL_ROUTER,
    CL_SEED,
    CL_SNAPSHOT_US,
    CL_W_KV,
    CL_W_LOAD,
    CL_W_PREFIX,
    IQ_ARR_REQ,
    IQ_ARR_T,
    K_BUSY_US,
    K_CLOCK,
    K_COMPLETED,
    K_DROPPED,
    K_INPUT_TOK,
    K_N_ARRIVED,
    K_N_KNOWN,
    K_N_RUN,
    K_OUTPUT_TOK,
    K_PREEMPT,
    K_ROUTED,
    K_STATUS,
    K_STEPS,
    K_WQ_N,
    N_B,
    N_IQ,
    N_K,
    N_LOG,
    N_R,
    N_RS,
    N_SC,
    N_SL,
    N_ST,
    Q_ARRIVAL,
    Q_GROUP,
    Q_OUTPUT,
    Q_PREFIX,
    Q_PROMPT,
    R_CNT,
    R_OFF,
    R_ORD,
    R_TOK,
    ROUTER_LEAST_KV,
    ROUTER_LEAST_OUTSTANDING,
    ROUTER_PREFIX_AFFINITY,
    ROUTER_RANDOM,
    ROUTER_ROUND_ROBIN,
    SC_BUSY_US,
    SC_CLOCK,
    SC_COMPLETED,
    SC_DROPPED,
    SC_HITS,
    SC_INPUT_TOK,
    SC_KV_PEAK,
    SC_MISSES,
    SC_N_ITL,
    SC_OUTPUT_TOK,
    SC_PREEMPT,
    SC_QUEUED,
    SC_RUNNING,
    SC_STATUS,
    SC_STEPS,
    ST_BS,
    ST_HEAD,
    ST_HITS,
    ST_MISSES,
    ST_PEAK,
    ST_TAIL,
    ST_TOTAL,
    ST_USED,
    STATUS_OK,
)


@hjit
def instance_counters_nb(row, k, st):
    """One instance's row of per-instance counters (``CI_*``) from its scalars ``k`` (``K_*``)
    and KV pool state ``st`` (``ST_*``); clusters and P/D runs (``pd_nb``) alike."""
    row[CI_REQUESTS] = k[K_ROUTED]
    row[CI_COMPLETED] = k[K_COMPLETED]
    row[CI_DROPPED] = k[K_DROPPED]
    row[CI_PREEMPT] = k[K_PREEMPT]
    row[CI_KV_PEAK] = st[ST_PEAK]
    row[CI_HITS] = st[ST_HITS]
    row[CI_MISSES] = st[ST_MISSES]
    row[CI_BUSY_US] = k[K_BUSY_US]
    row[CI_CLOCK] = k[K_CLOCK]
    row[CI_STEPS] = k[K_STEPS]
    row[CI_OUTPUT_TOK] = k[K_OUTPUT_TOK]
    row[CI_KV_BLOCKS] = st[ST_TOTAL]


@hjit
def _rand_below(rng, n):
    """A uniform integer in [0, n) from the splitmix64 state rng[0]."""
    rng[0] += -7046029254386353131  # 0x9E3779B97F4A7C15 as int64
    z = rng[0]
    z = (z ^ ((z >> 30) & 0x3FFFFFFFF)) * -4658895280553007687  # 0xBF58476D1CE4E5B9
    z = (z ^ ((z >> 27) & 0x1FFFFFFFFF)) * -7723592293110705685  # 0x94D049BB133111EB
    z = z ^ ((z >> 31) & 0x1FFFFFFFF)
    return (z & 0x7FFFFFFFFFFFFFFF) % n


@hjit
def _prefix_hits(slot_block, gb, g, n_blocks):
    """Leading blocks of group g's shared prefix resident in one instance's cache."""
    c = 0
    base = gb[g]
    for j in range(n_blocks):
        if slot_block[base + j] < 0:
            break
        c += 1
    return c


@hjit
def _least(load, n, start):
    """The instance with the lowest load; of equals the first from ``start`` on (cyclically),
    so that ties rotate instead of favouring instance 0."""
    best = start
    for j in range(1, n):
        i = (start + j) % n
        if load[i] < load[best]:
            best = i
    return best


@hjit
def choose_instance_nb(
    a, rq, router, n_inst, load, kv, hits, score, home, rng, slot_block, gb, bs, slack, w_load,
    w_kv, w_prefix,
):  # fmt: skip
    """The router's choice of instance for request ``a`` (``ROUTER_*`` code ``router``), from
    the load snapshot ``load`` and KV use ``kv``; ``hits``, ``score`` are scratch, ``home`` the
    last instance of each prefix group, ``rng`` the random router's state."""
    if router == ROUTER_ROUND_ROBIN:
        c = a % n_inst
    elif router == ROUTER_RANDOM:
        c = _rand_below(rng, n_inst)
    elif router == ROUTER_LEAST_OUTSTANDING:
        c = _least(load, n_inst, a % n_inst)
    elif router == ROUTER_LEAST_KV:
        c = 0
        for i in range(1, n_inst):
            if kv[i] < kv[c] or (kv[i] == kv[c] and load[i] < load[c]):
                c = i
    else:  # prefix-affinity and weighted: the prefix term
        g = rq[a, Q_GROUP]
        pb = 0
        best_hits = 0
        if g >= 0:
            pb = min(rq[a, Q_PREFIX], rq[a, Q_PROMPT] - 1) // bs
            for i in range(n_inst):
                hits[i] = _prefix_hits(slot_block, gb[i], g, pb)
                if hits[i] > best_hits:
                    best_hits = hits[i]
        low = _least(load, n_inst, a % n_inst)
        if router == ROUTER_PREFIX_AFFINITY:
            c = low
            if g >= 0:
                target = -1
                if best_hits > 0:  # the least loaded of the instances with the most hits
                    for i in range(n_inst):
                        if hits[i] == best_hits and (target < 0 or load[i] < load[target]):
                            target = i
                else:
                    target = home[g]
                if target >= 0 and load[target] <= load[low] + slack:
                    c = target
                home[g] = c
        else:  # weighted: load and KV use relative to the largest, minus the prefix share
            # (weights router_weights)
            max_load = 1
            max_kv = 1
            for i in range(n_inst):
                max_load = max(max_load, load[i])
                max_kv = max(max_kv, kv[i])
            for i in range(n_inst):
                score[i] = w_load * load[i] / max_load + w_kv * kv[i] / max_kv
                if g >= 0:
                    if best_hits > 0:
                        score[i] -= w_prefix * hits[i] / best_hits
                    elif home[g] == i:
                        score[i] -= w_prefix
            c = 0
            for i in range(1, n_inst):
                if score[i] < score[c]:
                    c = i
            if g >= 0:
                home[g] = c
    return c


@jit
def simulate_cluster_nb(rq, gbase, cfg, n_slots, ctf, cti, ccfg, out, sc, res, inst, route):
    """Simulate requests ``rq`` on ``ccfg[CL_REPLICAS]`` vllm instances behind the router of
    ``ccfg`` (``CL_*``); fills ``out``, the cluster counters ``sc``, the summary ``res``, the
    per-instance counters ``inst`` (``CI_*``) and each request's instance ``route``; returns the
    ITL samples (µs)."""
    n = rq.shape[0]
    n_inst = ccfg[CL_REPLICAS]
    router = ccfg[CL_ROUTER]
    slack = ccfg[CL_AFFINITY_SLACK]
    snap_us = ccfg[CL_SNAPSHOT_US]
    latency = ccfg[CL_LATENCY_US]
    w_load = ccfg[CL_W_LOAD] / 1000.0  # weighted router
    w_kv = ccfg[CL_W_KV] / 1000.0
    w_prefix = ccfg[CL_W_PREFIX] / 1000.0
    total = cfg[CFG_BLOCKS]
    bs = cfg[CFG_BLOCK]

    # prefix-table slots: a request's own keys are looked up on its instance only, so they are
    # shared; each instance has its own copy of the shared-prefix groups' slots
    ng = gbase.shape[0]
    g_slots = 0
    for r in range(n):
        if rq[r, Q_GROUP] >= 0:
            g_slots = n_slots - gbase[0]
            break
    gb = np.empty((n_inst, ng), np.int64)
    for i in range(n_inst):
        for g in range(ng):
            gb[i, g] = gbase[g] + i * g_slots
    slot_block = np.full(max(n_slots + (n_inst - 1) * g_slots, 1), -1, np.int64)
    # KV pools (block lists are per request, hence shared)
    st = np.zeros((n_inst, N_ST), np.int64)
    for i in range(n_inst):
        st[i, ST_HEAD] = -1
        st[i, ST_TAIL] = -1
        st[i, ST_TOTAL] = total
        st[i, ST_BS] = bs
    blk = np.empty((n_inst, total, N_B), np.int64)
    rinfo = np.zeros((n, N_R), np.int64)
    output_tok = np.empty(n, np.int64)
    cap_sum = 0
    for r in range(n):
        o = rq[r, Q_OUTPUT]
        output_tok[r] = o
        rinfo[r, R_OFF] = cap_sum
        rinfo[r, R_CNT] = 0
        rinfo[r, R_TOK] = 0
        rinfo[r, R_ORD] = 1
        cap_sum += (rq[r, Q_PROMPT] + (o if o > 1 else 1)) // bs + 2
    rb = np.empty(max(cap_sum, 1), np.int64)

    init_outputs(out)
    rs = np.empty((N_RS, n), np.int64)
    n_gaps, max_ctx = init_requests_nb(rq, rs)
    cap_run = max(1, min(n, cfg[CFG_MAX_RUN]))
    ks = np.zeros((n_inst, N_K), np.int64)
    for i in range(n_inst):
        ks[i, K_STATUS] = STATUS_OK
    sls = np.zeros((n_inst, N_SL, cap_run), np.int64)
    iqs = np.zeros((n_inst, N_IQ, max(n, 1)), np.int64)
    itl = np.empty(max(n_gaps, 1), np.int64)
    for j in range(N_SC):
        sc[j] = 0
    cost = new_cost_scratch_nb(ctf, cti, max_ctx)
    work = new_work_nb(cap_run, max_ctx, bs)
    log = np.zeros((0, N_LOG), np.int64)

    # ---- route every request, in arrival order ----
    needs_state = router != ROUTER_ROUND_ROBIN and router != ROUTER_RANDOM
    load = np.zeros(n_inst, np.int64)  # snapshot: queued + running + in flight, + sent since
    kv = np.zeros(n_inst, np.int64)  # snapshot: KV blocks in use
    hits = np.zeros(n_inst, np.int64)
    score = np.zeros(n_inst)
    home = np.full(max(ng, 1), -1, np.int64)  # prefix-affinity: the last instance of a group
    rng = np.zeros(1, np.int64)
    rng[0] = ccfg[CL_SEED]
    next_snap = -1
    for a in range(n):
        t_a = rq[a, Q_ARRIVAL]
        if needs_state and (snap_us <= 0 or t_a >= next_snap):
            snap_t = t_a if snap_us <= 0 else (t_a // snap_us) * snap_us
            next_snap = snap_t + snap_us
            for i in range(n_inst):
                vllm_advance_nb(
                    rq, gb[i], cfg, cost, (st[i], blk[i], slot_block, rb, rinfo), rs, out, sc,
                    log, itl, ks[i], sls[i], iqs[i], work, snap_t, False,
                )  # fmt: skip
                load[i] = ks[i, K_N_RUN] + ks[i, K_WQ_N] + ks[i, K_N_KNOWN] - ks[i, K_N_ARRIVED]
                kv[i] = st[i, ST_USED]
        c = choose_instance_nb(
            a, rq, router, n_inst, load, kv, hits, score, home, rng, slot_block, gb, bs, slack,
            w_load, w_kv, w_prefix,
        )  # fmt: skip
        route[a] = c
        j = ks[c, K_N_KNOWN]
        iqs[c, IQ_ARR_REQ, j] = a
        iqs[c, IQ_ARR_T, j] = t_a + latency
        ks[c, K_N_KNOWN] = j + 1
        ks[c, K_ROUTED] += 1
        load[c] += 1

    # ---- every instance runs to the end ----
    for i in range(n_inst):
        vllm_advance_nb(
            rq, gb[i], cfg, cost, (st[i], blk[i], slot_block, rb, rinfo), rs, out, sc, log, itl,
            ks[i], sls[i], iqs[i], work, TIME_MAX, True,
        )  # fmt: skip
        unfinished_tokens_nb(out, rs, sls[i], ks[i, K_N_RUN])

    # ---- counters: per instance, and the cluster's (sums; clock and KV peak the largest,
    # busy time the mean, so that utilisation is the instances' mean) ----
    busy = 0
    status = STATUS_OK
    for i in range(n_inst):
        instance_counters_nb(inst[i], ks[i], st[i])
        sc[SC_CLOCK] = max(sc[SC_CLOCK], ks[i, K_CLOCK])
        sc[SC_COMPLETED] += ks[i, K_COMPLETED]
        sc[SC_QUEUED] += ks[i, K_WQ_N]
        sc[SC_RUNNING] += ks[i, K_N_RUN]
        sc[SC_DROPPED] += ks[i, K_DROPPED]
        sc[SC_INPUT_TOK] += ks[i, K_INPUT_TOK]
        sc[SC_OUTPUT_TOK] += ks[i, K_OUTPUT_TOK]
        sc[SC_PREEMPT] += ks[i, K_PREEMPT]
        sc[SC_KV_PEAK] = max(sc[SC_KV_PEAK], st[i, ST_PEAK])
        sc[SC_HITS] += st[i, ST_HITS]
        sc[SC_MISSES] += st[i, ST_MISSES]
        sc[SC_STEPS] += ks[i, K_STEPS]
        busy += ks[i, K_BUSY_US]
        if status == STATUS_OK:
            status = ks[i, K_STATUS]
    sc[SC_BUSY_US] = busy // n_inst
    sc[SC_STATUS] = status
    n_itl = sc[SC_N_ITL]
    itl_out = itl[:n_itl].copy()
    add_request_overheads_nb(rq, out, itl_out, ctf)  # client-side fields; nothing when all 0
    summarize_nb(out, sc, itl_out, output_tok, False, total, res)
    return itl_out
