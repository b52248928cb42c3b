"""Prefill/decode disaggregation: ``prefill_instances`` P and ``decode_instances`` D vllm
instances on one clock, with the prompt KV moving between them over a link.

Each instance is one :func:`~infersweep.scheduler.vllm_nb.vllm_advance_nb` state with a role
(``cfg[CFG_ROLE]``).  A request is routed (the cluster routers, ``cluster_nb``) to a prefill
instance, which schedules its prompt as vLLM does and produces the first token; the request then
leaves that batch, its blocks still held, and goes to the decode instance with the fewest
outstanding requests.  There it waits in the queue until the decode instance allocates blocks
for its prompt and first token (first come, first served, like any admission; prompt blocks it
holds in its own prefix cache are not transferred); the transfer is then booked on the prefill
instance's link, first in first out: it starts when the link is free and takes latency + bytes /
bandwidth.  When it ends the prefill instance frees the blocks and the decode instance admits the
request as a decode (its own step costs: its own TP and GPU).

Time is advanced in event order.  An instance's next event is its next step boundary (or, when
idle or waiting for a transfer, its next arrival); a transfer's is its end; a router's (routers
that look at load) the next arrival.  At equal times transfers come first, then routing, then
decode instances, then prefill instances (what a decode instance does at time t cannot depend
on a prefill step starting at t, and vice versa a transfer ending at t is seen by both at t).
The earliest instance runs until the next other event (it stops at its first step boundary at or
after it), and pauses earlier right after a handoff or a booking, so that nothing is decided
before the events it depends on exist.
"""

from __future__ import annotations

import numpy as np

from infersweep._jit import hjit, jit
from infersweep.metrics.summary_nb import _percentiles, summarize_nb
from infersweep.scheduler.cluster_nb import _least, choose_instance_nb, instance_counters_nb
from infersweep.scheduler.common_nb import add_request_overheads_nb, deq_push_front, init_outputs
from infersweep.scheduler.kvcache_nb import release_nb
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
    CI_HANDOFFS,
    CI_HITS,
    CI_LINK_BUSY_US,
    CI_MISSES,
    CI_ROLE,
    CL_AFFINITY_SLACK,
    CL_DECODE,
    CL_LATENCY_US,
    CL_LINK_BPS,
    CL_LINK_LAT_NS,
    CL_LOCKSTEP,
    CL_PREFILL,
    CL_ROUTER,
    CL_SEED,
    CL_SNAPSHOT_US,
    CL_W_KV,
    CL_W_LOAD,
    CL_W_PREFIX,
    IQ_ARR_REQ,
    IQ_ARR_T,
    IQ_WAIT,
    K_BUSY_US,
    K_CLOCK,
    K_COMPLETED,
    K_DROPPED,
    K_ENDED,
    K_HELD,
    K_INPUT_TOK,
    K_N_ARRIVED,
    K_N_KNOWN,
    K_N_OUT,
    K_N_RUN,
    K_OUT_HEAD,
    K_OUTPUT_TOK,
    K_PREEMPT,
    K_ROUTED,
    K_STATUS,
    K_STEPS,
    K_STUCK,
    K_T,
    K_WQ_HEAD,
    K_WQ_N,
    KV_LOCAL,
    KV_READY,
    KV_REMOTE,
    M_KV_LINK_UTILIZATION,
    M_KV_TRANSFER_MEAN_MS,
    M_KV_TRANSFER_P99_MS,
    N_B,
    N_IQ,
    N_K,
    N_LOG,
    N_R,
    N_RS,
    N_SC,
    N_SL,
    N_ST,
    O_STATE,
    O_TOKENS,
    P_KVTOK,
    P_TP,
    Q_ARRIVAL,
    Q_GROUP,
    Q_OUTPUT,
    Q_PROMPT,
    R_CNT,
    R_OFF,
    R_ORD,
    R_TOK,
    ROLE_DECODE,
    ROLE_PREFILL,
    ROUTER_RANDOM,
    ROUTER_ROUND_ROBIN,
    RS_BOOK_T,
    RS_GEN,
    RS_KV,
    RS_LAST_TOK,
    RS_OUT_NEXT,
    RS_WANT,
    RS_XFER_TOK,
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
    ST_PEAK,
    ST_TAIL,
    ST_TOTAL,
    ST_USED,
    STATE_DROPPED,
    STATE_QUEUED,
    STATE_RUNNING,
    STATUS_OK,
)


@hjit
def _next_event(k, arr_t):
    """An instance's next event: its next step boundary while it has work, else its next
    arrival (TIME_MAX: none known)."""
    if k[K_ENDED] != 0:
        return TIME_MAX
    if k[K_N_RUN] > 0 or (k[K_WQ_N] > 0 and k[K_STUCK] == 0):
        return k[K_T]
    if k[K_N_ARRIVED] < k[K_N_KNOWN]:
        return max(k[K_T], arr_t[k[K_N_ARRIVED]])
    return TIME_MAX


@jit
def _pools(n_inst, total, bs, n, rq, n_slots, gbase, g_slots):
    """The KV pools of one side: pool scalars, blocks, prefix table (group slots per instance),
    block lists, per-instance group bases."""
    st = np.zeros((n_inst, N_ST), np.int64)
    for i in range(n_inst):
        st[i, ST_HEAD] = -1
        st[i, ST_TAIL] = -1
        st[i, ST_TOTAL] = total
        st[i, ST_BS] = bs
    blk = np.empty((n_inst, total, N_B), np.int64)
    rinfo = np.zeros((n, N_R), np.int64)
    cap_sum = 0
    for r in range(n):
        o = rq[r, Q_OUTPUT]
        rinfo[r, R_OFF] = cap_sum
        rinfo[r, R_CNT] = 0
        rinfo[r, R_TOK] = 0
        rinfo[r, R_ORD] = 1
        cap_sum += (rq[r, Q_PROMPT] + (o if o > 1 else 1)) // bs + 2
    rb = np.empty(max(cap_sum, 1), np.int64)
    ng = gbase.shape[0]
    gb = np.empty((n_inst, ng), np.int64)
    for i in range(n_inst):
        for g in range(ng):
            gb[i, g] = gbase[g] + i * g_slots
    slot_block = np.full(max(n_slots + (n_inst - 1) * g_slots, 1), -1, np.int64)
    return st, blk, slot_block, rb, rinfo, gb


@jit
def simulate_pd_nb(
    rq, gbase, cfg_p, cfg_d, n_slots, ctf_p, cti_p, ctf_d, cti_d, ccfg, out, sc, res, inst, route,
    xfer,
):  # fmt: skip
    """Simulate requests ``rq`` on ``ccfg[CL_PREFILL]`` prefill and ``ccfg[CL_DECODE]`` decode
    instances (settings ``cfg_p``/``cfg_d``, cost tables ``ctf_p``/``cti_p`` and
    ``ctf_d``/``cti_d``); fills ``out``, ``sc``, the summary ``res``, the per-instance counters
    ``inst`` (``CI_*``; prefill instances first), each request's prefill instance ``route[0]``
    and decode instance ``route[1]`` (-1: none) and its KV transfer time ``xfer`` (µs, from
    booking to arrival; -1: none); returns the ITL samples (µs)."""
    n = rq.shape[0]
    n_p = ccfg[CL_PREFILL]
    n_d = ccfg[CL_DECODE]
    n_inst = n_p + n_d
    router = ccfg[CL_ROUTER]
    slack = ccfg[CL_AFFINITY_SLACK]
    snap_us = ccfg[CL_SNAPSHOT_US]
    latency = ccfg[CL_LATENCY_US]
    w_load = ccfg[CL_W_LOAD] / 1000.0
    w_kv = ccfg[CL_W_KV] / 1000.0
    w_prefix = ccfg[CL_W_PREFIX] / 1000.0
    bs = cfg_p[CFG_BLOCK]
    total_p = cfg_p[CFG_BLOCKS]
    total_d = cfg_d[CFG_BLOCKS]
    # transfer: each of the prefill instance's TP GPUs moves its share over its own link
    link_lat_us = ccfg[CL_LINK_LAT_NS] / 1000.0
    us_per_tok = ctf_p[P_KVTOK] / ctf_p[P_TP] / ccfg[CL_LINK_BPS] * 1e6

    ng = gbase.shape[0]
    g_slots = 0
    for r in range(n):
        if rq[r, Q_GROUP] >= 0:
            g_slots = n_slots - gbase[0]
            break
    st_p, blk_p, sb_p, rb_p, ri_p, gb_p = _pools(n_p, total_p, bs, n, rq, n_slots, gbase, g_slots)
    st_d, blk_d, sb_d, rb_d, ri_d, gb_d = _pools(n_d, total_d, bs, n, rq, n_slots, gbase, g_slots)

    init_outputs(out)
    rs = np.empty((N_RS, n), np.int64)
    n_gaps, max_ctx = init_requests_nb(rq, rs)
    cap_run = max(1, min(n, cfg_p[CFG_MAX_RUN]))
    ks = np.zeros((n_inst, N_K), np.int64)
    for i in range(n_inst):
        ks[i, K_STATUS] = STATUS_OK
    sls = np.zeros((n_inst, N_SL, cap_run), np.int64)
    iqs = np.zeros((n_inst, N_IQ, max(n, 1)), np.int64)
    itl = np.empty(max(n_gaps, 1), np.int64)
    for j in range(N_SC):
        sc[j] = 0
    cost_p = new_cost_scratch_nb(ctf_p, cti_p, max_ctx)
    cost_d = new_cost_scratch_nb(ctf_d, cti_d, max_ctx)
    work = new_work_nb(cap_run, max_ctx, bs)
    log = np.zeros((0, N_LOG), np.int64)
    rank = np.empty(n_inst, np.int64)  # order at equal times: decode (2) before prefill (3)
    # (after transfer ends, handoffs and routing)
    for i in range(n_inst):
        rank[i] = 3 if i < n_p else 2
    ev = np.full(n_inst, TIME_MAX, np.int64)

    # links: one FIFO of transfers per prefill instance (ends increase along a FIFO)
    link_free = np.zeros(max(n_p, 1), np.int64)
    link_busy = np.zeros(max(n_p, 1), np.int64)
    lq = np.empty((max(n_p, 1), max(n, 1)), np.int64)
    l_head = np.zeros(max(n_p, 1), np.int64)
    l_tail = np.zeros(max(n_p, 1), np.int64)
    x_end = np.zeros(max(n, 1), np.int64)
    for r in range(n):
        route[0, r] = -1
        route[1, r] = -1
        xfer[r] = -1
    handoffs = np.zeros(n_inst, np.int64)

    # routing to the prefill instances (cluster_nb's routers)
    needs_state = router != ROUTER_ROUND_ROBIN and router != ROUTER_RANDOM
    load = np.zeros(n_p, np.int64)
    kv = np.zeros(n_p, np.int64)
    hits = np.zeros(n_p, np.int64)
    score = np.zeros(n_p)
    home = np.full(max(ng, 1), -1, np.int64)
    rng = np.zeros(1, np.int64)
    rng[0] = ccfg[CL_SEED]
    next_snap = -1
    n_routed = 0
    dload = np.zeros(n_d, np.int64)
    pend = np.zeros(n_d, np.int64)  # requests handed to a decode instance, not yet booked
    # handoffs waiting to be dispatched to a decode instance, by (time, request)
    dq_r = np.empty(max(n, 1), np.int64)
    dq_t = np.empty(max(n, 1), np.int64)
    dq_head = 0
    dq_tail = 0
    lockstep = ccfg[CL_LOCKSTEP] != 0

    while True:
        # ---- route: stateless routers send everything at once; the others in time order ----
        if n_routed < n:
            if not needs_state:
                t_route = -1
            elif snap_us > 0:
                t_route = (rq[n_routed, Q_ARRIVAL] // snap_us) * snap_us
            else:
                t_route = rq[n_routed, Q_ARRIVAL]
        else:
            t_route = TIME_MAX
        # ---- the earliest transfer end, the earliest and second instance event ----
        t_x = TIME_MAX
        x_link = -1
        for p in range(n_p):
            if l_head[p] < l_tail[p]:
                e = x_end[lq[p, l_head[p]]]
                if e < t_x:
                    t_x = e
                    x_link = p
        b = -1
        for i in range(n_inst):
            if ev[i] == TIME_MAX:
                continue
            if b < 0 or ev[i] < ev[b] or (ev[i] == ev[b] and rank[i] < rank[b]):
                b = i
        t_b = ev[b] if b >= 0 else TIME_MAX
        t_disp = dq_t[dq_head] if dq_head < dq_tail else TIME_MAX
        if t_x == TIME_MAX and t_disp == TIME_MAX and t_route == TIME_MAX and t_b == TIME_MAX:
            break

        if t_x <= t_disp and t_x <= t_route and t_x <= t_b:
            # ---- a transfer ends: the prefill instance frees the blocks, the decode
            # instance gets the request as a decode, both at their next boundary ----
            p = x_link
            r = lq[p, l_head[p]]
            l_head[p] += 1
            release_nb(st_p[p], blk_p[p], rb_p, ri_p, r)
            kp = ks[p]
            kp[K_HELD] -= 1
            kp[K_T] = max(kp[K_T], t_x)
            kp[K_STUCK] = 0
            ev[p] = _next_event(kp, iqs[p, IQ_ARR_T])
            d = route[1, r]
            kd = ks[n_p + d]
            rs[RS_KV, r] = KV_READY
            deq_push_front(iqs[n_p + d, IQ_WAIT], kd[K_WQ_HEAD : K_WQ_HEAD + 2], r)
            kd[K_HELD] -= 1
            kd[K_T] = max(kd[K_T], t_x)
            kd[K_STUCK] = 0
            ev[n_p + d] = _next_event(kd, iqs[n_p + d, IQ_ARR_T])
            continue

        if t_disp <= t_route and t_disp <= t_b:
            # ---- a handoff: to the decode instance with the fewest outstanding requests, as
            # the decode instances stand at its time (each at its first step boundary at or
            # after it, like the routers' view of load) ----
            r = dq_r[dq_head]
            t_h = dq_t[dq_head]
            dq_head += 1
            p = route[0, r]
            for q in range(n_d):
                kq = ks[n_p + q]
                dload[q] = kq[K_N_RUN] + kq[K_WQ_N] + kq[K_N_KNOWN] - kq[K_N_ARRIVED] + kq[K_HELD]
            d = _least(dload, n_d, r % n_d)
            route[1, r] = d
            kd = ks[n_p + d]
            handoffs[n_p + d] += 1
            kd[K_ROUTED] += 1
            if (rq[r, Q_PROMPT] + rs[RS_WANT, r] - 1 + bs - 1) // bs > total_d:
                # it can never fit at the decode side: dropped there, its blocks freed
                release_nb(st_p[p], blk_p[p], rb_p, ri_p, r)
                ks[p, K_HELD] -= 1
                kd[K_DROPPED] += 1
                out[r, O_STATE] = STATE_DROPPED
                ks[p, K_T] = max(ks[p, K_T], t_h)
                ks[p, K_STUCK] = 0
                ev[p] = _next_event(ks[p], iqs[p, IQ_ARR_T])
                continue
            rs[RS_KV, r] = KV_REMOTE
            pend[d] += 1
            arr_r = iqs[n_p + d, IQ_ARR_REQ]
            arr_t = iqs[n_p + d, IQ_ARR_T]
            m = kd[K_N_KNOWN]
            arr_r[m] = r  # dispatches come in time order
            arr_t[m] = t_h
            kd[K_N_KNOWN] = m + 1
            ev[n_p + d] = _next_event(kd, arr_t)
            continue

        if t_route <= t_b:
            # ---- route the next request (or all of them) to a prefill instance ----
            while n_routed < n:
                a = n_routed
                t_a = rq[a, Q_ARRIVAL]
                if needs_state:
                    snap_t = t_a if snap_us <= 0 else (t_a // snap_us) * snap_us
                    if snap_t > t_route:
                        break  # its routing time is still to come
                    if snap_us <= 0 or t_a >= next_snap:  # a fresh snapshot of the load
                        next_snap = snap_t + snap_us
                        for i in range(n_p):
                            ki = ks[i]
                            load[i] = ki[K_N_RUN] + ki[K_WQ_N] + ki[K_N_KNOWN] - ki[K_N_ARRIVED]
                            kv[i] = st_p[i, ST_USED]
                c = choose_instance_nb(
                    a, rq, router, n_p, load, kv, hits, score, home, rng, sb_p, gb_p, bs, slack,
                    w_load, w_kv, w_prefix,
                )  # fmt: skip
                route[0, a] = c
                kc = ks[c]
                j = kc[K_N_KNOWN]
                iqs[c, IQ_ARR_REQ, j] = a
                iqs[c, IQ_ARR_T, j] = t_a + latency
                kc[K_N_KNOWN] = j + 1
                kc[K_ROUTED] += 1
                load[c] += 1
                ev[c] = _next_event(kc, iqs[c, IQ_ARR_T])
                n_routed += 1
            continue

        # ---- advance the earliest instance up to the next event that can affect it (it
        # stops at its first step boundary at or after ``until``) ----
        until = t_route  # routers that look at load see every instance at the routing time
        if lockstep:  # reference mode: up to the next event of any kind
            until = min(until, min(t_x, t_disp))
            for i in range(n_inst):
                if i != b and ev[i] < TIME_MAX:
                    first = rank[b] < rank[i] or (rank[b] == rank[i] and b < i)
                    until = min(until, ev[i] + (1 if first else 0))
        elif b < n_p:
            if ks[b, K_HELD] > 0:  # blocks held for transfers: freed when one ends, and
                # transfers are booked by decode instances holding its requests
                until = min(until, t_disp)
                if l_head[b] < l_tail[b]:
                    until = min(until, x_end[lq[b, l_head[b]]])
                for q in range(n_d):
                    if pend[q] > 0:
                        until = min(until, ev[n_p + q])  # decode first at equal times
        else:
            until = min(until, t_disp)
            for i in range(n_p):  # a handoff can come at any prefill step's end
                if ev[i] < TIME_MAX:
                    until = min(until, ev[i] + 1)
            if pend[b - n_p] > 0:  # bookings on a shared link: in time order
                for q in range(n_d):
                    if q != b - n_p and pend[q] > 0:
                        until = min(until, ev[n_p + q] + (1 if n_p + q > b else 0))
            if ks[b, K_HELD] > 0:  # its transfers' ends
                until = min(until, t_x)
        kb = ks[b]
        kb[K_T] = max(kb[K_T], t_b)
        if b < n_p:
            vllm_advance_nb(
                rq, gb_p[b], cfg_p, cost_p, (st_p[b], blk_p[b], sb_p, rb_p, ri_p), rs, out, sc,
                log, itl, kb, sls[b], iqs[b], work, until, False,
            )  # fmt: skip
            # handoffs: dispatched to a decode instance at the first token's time (in the
            # order of (time, request))
            r = kb[K_OUT_HEAD]
            for j in range(kb[K_N_OUT]):
                if j > 0:
                    r = rs[RS_OUT_NEXT, r]
                t_h = rs[RS_LAST_TOK, r]
                m = dq_tail
                while m > dq_head and (
                    dq_t[m - 1] > t_h or (dq_t[m - 1] == t_h and dq_r[m - 1] > r)
                ):
                    dq_r[m] = dq_r[m - 1]
                    dq_t[m] = dq_t[m - 1]
                    m -= 1
                dq_r[m] = r
                dq_t[m] = t_h
                dq_tail += 1
                handoffs[b] += 1
        else:
            q = b - n_p
            vllm_advance_nb(
                rq, gb_d[q], cfg_d, cost_d, (st_d[q], blk_d[q], sb_d, rb_d, ri_d), rs, out, sc,
                log, itl, kb, sls[b], iqs[b], work, until, False,
            )  # fmt: skip
            # bookings: the transfer starts when the prefill instance's link is free
            r = kb[K_OUT_HEAD]
            for j in range(kb[K_N_OUT]):
                if j > 0:
                    r = rs[RS_OUT_NEXT, r]
                p = route[0, r]
                t0 = rs[RS_BOOK_T, r]
                start = max(t0, link_free[p])
                dur = int(link_lat_us + rs[RS_XFER_TOK, r] * us_per_tok + 0.5)  # nearest µs
                end = start + dur
                link_free[p] = end
                link_busy[p] += dur
                x_end[r] = end
                xfer[r] = end - t0
                lq[p, l_tail[p]] = r
                l_tail[p] += 1
                pend[b - n_p] -= 1
        kb[K_N_OUT] = 0
        ev[b] = _next_event(kb, iqs[b, IQ_ARR_T])

    # ---- counters: per instance, and the cluster's ----
    for i in range(n_inst):
        unfinished_tokens_nb(out, rs, sls[i], ks[i, K_N_RUN])
    # requests between the two sides when the run stopped (horizon, stall) hold KV on one or
    # both: running (handed off, or booked and in transfer); queued at a decode instance
    n_running = 0
    n_queued = 0
    for r in range(n):
        if rs[RS_KV, r] != KV_LOCAL and out[r, O_STATE] != STATE_DROPPED:
            if rs[RS_KV, r] == KV_REMOTE and xfer[r] >= 0:
                out[r, O_STATE] = STATE_RUNNING  # booked: its transfer is under way
            out[r, O_TOKENS] = rs[RS_GEN, r]
        if out[r, O_STATE] == STATE_RUNNING:
            n_running += 1
        elif out[r, O_STATE] == STATE_QUEUED:
            n_queued += 1
    busy = 0
    status = STATUS_OK
    clock = 0
    best_frac = -1.0
    for i in range(n_inst):
        ki = ks[i]
        st_i = st_p[i] if i < n_p else st_d[i - n_p]
        instance_counters_nb(inst[i], ki, st_i)
        inst[i, CI_ROLE] = ROLE_PREFILL if i < n_p else ROLE_DECODE
        inst[i, CI_HANDOFFS] = handoffs[i]
        inst[i, CI_LINK_BUSY_US] = link_busy[i] if i < n_p else 0
        clock = max(clock, ki[K_CLOCK])
        sc[SC_COMPLETED] += ki[K_COMPLETED]
        sc[SC_DROPPED] += ki[K_DROPPED]
        if i < n_p:  # a request's prompt is counted where it enters: at its prefill instance
            sc[SC_INPUT_TOK] += ki[K_INPUT_TOK]
        sc[SC_OUTPUT_TOK] += ki[K_OUTPUT_TOK]
        sc[SC_PREEMPT] += ki[K_PREEMPT]
        frac = st_i[ST_PEAK] / st_i[ST_TOTAL]
        if frac > best_frac:
            best_frac = frac
            sc[SC_KV_PEAK] = st_i[ST_PEAK]
        sc[SC_HITS] += inst[i, CI_HITS]
        sc[SC_MISSES] += inst[i, CI_MISSES]
        sc[SC_STEPS] += ki[K_STEPS]
        busy += ki[K_BUSY_US]
        if status == STATUS_OK:
            status = ki[K_STATUS]
    sc[SC_CLOCK] = clock
    sc[SC_QUEUED] = n_queued
    sc[SC_RUNNING] = n_running
    sc[SC_BUSY_US] = busy // n_inst
    sc[SC_STATUS] = status
    n_itl = sc[SC_N_ITL]
    itl_out = itl[:n_itl].copy()
    kv_total = total_p
    for i in range(n_inst):  # the pool of the fullest instance (by fraction)
        st_i = st_p[i] if i < n_p else st_d[i - n_p]
        if st_i[ST_PEAK] == sc[SC_KV_PEAK] and st_i[ST_PEAK] / st_i[ST_TOTAL] == best_frac:
            kv_total = st_i[ST_TOTAL]
            break
    # client-side fields (the API server's, the prefill side's entry); nothing when all 0
    add_request_overheads_nb(rq, out, itl_out, ctf_p)
    summarize_nb(out, sc, itl_out, rq[:, Q_OUTPUT].copy(), False, kv_total, res)
    # transfer metrics (percentiles as every other metric's)
    n_x = 0
    for r in range(n):
        if xfer[r] >= 0:
            n_x += 1
    xs = np.empty(n_x, np.int64)
    j = 0
    for r in range(n):
        if xfer[r] >= 0:
            xs[j] = xfer[r]
            j += 1
    res[M_KV_TRANSFER_MEAN_MS] = _percentiles(
        xs, np.array([99.0]), res, np.array([M_KV_TRANSFER_P99_MS])
    )
    if clock > 0 and n_p > 0:
        tot = 0.0
        for p in range(n_p):
            tot += link_busy[p]
        res[M_KV_LINK_UTILIZATION] = tot / n_p / clock
    return itl_out
