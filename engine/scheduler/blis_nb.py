"""Scheduler kernel, ``--semantics blis``: the reference simulator's event loop (REFERENCE §6).

A literal port: Go's ``container/heap`` ordered by timestamp only (its tie order included),
the cluster's arrival injection, QueuedEvent / StepEvent (with quirk Q6, duplicate step
chains), vLLM-like batch formation with Q8 (budget-skipped requests still execute), the KV
block bookkeeping of REFERENCE §6.4, phantom ITL entries (Q1), the first token not counted
(Q2) and preempted requests keeping their ITL history (Q9).

Preemption (``CFG_LITERAL``): literal mode copies the reference's quirks too (Q3: a request
evicted earlier in the same phase-1 pass is visited again; a failed allocation's rollback
deletes the requester's block list) and reports a livelock in ``SC_LIVELOCK``, on which the
wrappers rerun in safe mode (SPEC §2): evicted requests are skipped for the rest of the pass and
a failed allocation leaves the requester's block list intact.  Runs without preemption are the
same in both modes and identical to the reference.
"""

from __future__ import annotations

import numpy as np

from infersweep._jit import hjit, jit
from infersweep.costmodel.stepcost_nb import (
    MEMO_SIZE,
    step_time_nb,
)
from infersweep.scheduler.common_nb import (
    DEQ_N,
    deq_front,
    deq_pop_front,
    deq_push_back,
    deq_push_front,
    init_outputs,
    key_slot,
    leading_hits_nb,
    log_step,
    store_scalars,
)
from infersweep.scheduler.kvcache_nb import (
    attach_cached_nb,
    free_count_nb,
    head_slot_nb,
    pop_block_nb,
    register_nb,
    release_nb,
    req_append_nb,
    req_last_nb,
    rollback_nb,
    take_block_nb,
)
from infersweep.schema import (
    B_NTOK,
    BQ_COMPUTED,
    BQ_EVICTED_AT,
    BQ_ITL_SUM,
    BQ_LONE_BEST,
    BQ_NUM_NEW,
    BQ_PROGRESS,
    CFG_BLOCKS,
    CFG_BUDGET,
    CFG_HORIZON,
    CFG_LITERAL,
    CFG_MAX_IDLE,
    CFG_MAX_RUN,
    CFG_THRESHOLD,
    N_BQ,
    N_COMPONENTS,
    O_DONE,
    O_E2E,
    O_PREEMPT,
    O_SCHED,
    O_STATE,
    O_TOKENS,
    O_TTFT,
    Q_ARRIVAL,
    Q_OUTPUT,
    Q_PROMPT,
    R_CNT,
    R_ORD,
    R_TOK,
    SC_LIVELOCK,
    ST_BS,
    ST_HITS,
    ST_MISSES,
    ST_PEAK,
    ST_USED,
    STATE_DONE,
    STATE_DROPPED,
    STATE_QUEUED,
    STATE_RUNNING,
    STATUS_HORIZON,
    STATUS_ITL_FULL,
    STATUS_OK,
    STATUS_STALLED,
)

# event kinds of the instance heap (REFERENCE §6.1)
EV_ARRIVAL = 0
EV_QUEUED = 1
EV_STEP = 2
EV_SCHEDULED = 3
EV_PREEMPTION = 4
EV_LEFT = 5

# Literal mode's step guard: a run that needs more steps than this (per token of work, plus a
# constant) keeps "progressing" in a livelock the reference never leaves (REFERENCE §9 Q3).
LIVELOCK_STEPS_PER_TOKEN = 16
LIVELOCK_STEPS_SLACK = 1_000_000
# Heap room per request: at most one arrival/queued, one step chain, one left, one scheduled and
# one preemption event per request are pending at once (REFERENCE §6.1-§6.2), plus one spare.
HEAP_EVENTS_PER_REQUEST = 6


@hjit
def heap_push(ht, hk, hr, n, t, k, r):
    """Go container/heap Push with Less = timestamp <."""
    j = n
    ht[j] = t
    hk[j] = k
    hr[j] = r
    while j > 0:
        i = (j - 1) // 2
        if not ht[j] < ht[i]:
            break
        ht[i], ht[j] = ht[j], ht[i]
        hk[i], hk[j] = hk[j], hk[i]
        hr[i], hr[j] = hr[j], hr[i]
        j = i
    return n + 1


@hjit
def heap_pop(ht, hk, hr, n):
    """Go container/heap Pop: swap root and last, sift down; the popped event is at index n-1."""
    n -= 1
    ht[0], ht[n] = ht[n], ht[0]
    hk[0], hk[n] = hk[n], hk[0]
    hr[0], hr[n] = hr[n], hr[0]
    i = 0
    while True:
        j1 = 2 * i + 1
        if j1 >= n:
            break
        j = j1
        j2 = j1 + 1
        if j2 < n and ht[j2] < ht[j1]:
            j = j2
        if not ht[j] < ht[i]:
            break
        ht[i], ht[j] = ht[j], ht[i]
        hk[i], hk[j] = hk[j], hk[i]
        hr[i], hr[j] = hr[j], hr[i]
        i = j
    return n


@hjit
def cached_blocks_nb(st, slot_block, rq, gbase, r, out):
    """GetCachedBlocks: leading full blocks of r's prompt whose key is in the table."""
    return leading_hits_nb(slot_block, rq, gbase, r, rq[r, Q_PROMPT] // st[ST_BS], st[ST_BS], out)


@hjit
def blis_alloc_nb(
    st,
    blk,
    slot_block,
    rb,
    rinfo,
    rq,
    gbase,
    r,
    start,
    end,
    prefill,
    cached,
    n_cached,
    scr_b,
    scr_s,
    scr_was,
    drop,
):
    """AllocateKVBlocks(req, start, end, cachedBlocks) of REFERENCE §6.4; False on failure
    (everything rolled back).  ``drop``: the reference's rollback also deletes the request's
    block list, so blocks it owned before the call stay in use and are never freed (leak)."""
    bs = st[ST_BS]
    if prefill:
        n_new = end - start
        if (n_new + bs - 1) // bs > free_count_nb(st):
            return False
    else:
        n_new = 1
    prev_cnt = rinfo[r, R_CNT]
    prev_tok = rinfo[r, R_TOK]
    prev_ord = rinfo[r, R_ORD]
    n_pop = 0
    n_cach = 0
    prog = 0
    p_len = rq[r, Q_PROMPT]
    while prog < n_new:
        new_blocks = True
        if rinfo[r, R_CNT] > 0:
            last = req_last_nb(rb, rinfo, r)
            lt = blk[last, B_NTOK]
            if lt > 0 and lt < bs:
                new_blocks = False
                take = bs - lt
                if n_new - prog < take:
                    take = n_new - prog
                if start + prog != rinfo[r, R_TOK]:
                    rinfo[r, R_ORD] = 0
                blk[last, B_NTOK] = lt + take
                rinfo[r, R_TOK] += take
                prog += take
                if lt + take == bs:
                    x = rinfo[r, R_TOK]
                    if rinfo[r, R_ORD] == 1 and x <= p_len and x % bs == 0:
                        register_nb(blk, slot_block, last, key_slot(rq, gbase, r, x, bs))
        else:
            for i in range(n_cached):
                b = cached[i]
                scr_was[n_cach] = attach_cached_nb(st, blk, b)
                n_cach += 1
                req_append_nb(rb, rinfo, r, b)
                rinfo[r, R_TOK] += bs
        if new_blocks:
            remaining = n_new - prog
            if remaining <= 0:
                break
            nb = (remaining + bs - 1) // bs
            for _ in range(nb):
                orig = head_slot_nb(st, blk)
                b = pop_block_nb(st, blk, slot_block, False)
                if b < 0:
                    rollback_nb(
                        st,
                        blk,
                        slot_block,
                        rinfo,
                        r,
                        scr_b,
                        scr_s,
                        n_pop,
                        cached,
                        scr_was,
                        n_cach,
                        prev_cnt,
                        prev_tok,
                        prev_ord,
                    )
                    if drop:
                        rinfo[r, R_CNT] = 0
                        rinfo[r, R_TOK] = 0
                        rinfo[r, R_ORD] = 1
                    return False
                scr_b[n_pop] = b
                scr_s[n_pop] = orig
                n_pop += 1
                e_rel = prog + bs
                if e_rel > n_new:
                    e_rel = n_new
                cnt = e_rel - prog
                blk[b, B_NTOK] = cnt
                take_block_nb(st, blk, b)
                if cnt == bs and prefill:
                    abs_end = start + e_rel
                    if abs_end % bs == 0 and abs_end <= p_len:
                        register_nb(blk, slot_block, b, key_slot(rq, gbase, r, abs_end, bs))
                req_append_nb(rb, rinfo, r, b)
                if start + prog != rinfo[r, R_TOK]:
                    rinfo[r, R_ORD] = 0
                rinfo[r, R_TOK] += cnt
                prog = e_rel
    return True


@hjit
def _evict_tail(run, n_run, pool, bq, wq, wmeta, out, step_count):
    """Preempt the last request of the running batch; returns it."""
    st, blk, _, rb, rinfo = pool
    v = run[n_run - 1]
    bq[BQ_PROGRESS, v] = 0
    release_nb(st, blk, rb, rinfo, v)
    bq[BQ_COMPUTED, v] = 0
    deq_push_front(wq, wmeta, v)
    out[v, O_STATE] = STATE_QUEUED
    out[v, O_PREEMPT] += 1
    bq[BQ_EVICTED_AT, v] = step_count
    return v


@hjit
def _alloc_preempting(
    pool, scratch, rq, gbase, bq, out, q, start, end, prefill, batch, wq, wmeta, step_count, literal
):
    """preemptForTokens: allocate [start, end) for q, evicting the batch tail until it fits.
    ``pool`` is the KV pool (st, blk, slot_block, rb, rinfo), ``scratch`` the allocation
    scratch (cached, scr_b, scr_s, scr_was), ``batch`` (run, n_run, pre_list, n_pre) the
    running batch and this step's preempted requests.  Returns (allocated, n_run, n_pre);
    fails when the batch is empty or q itself was evicted.

    Livelock guard (a deviation from the reference, which loops forever here): when q evicts
    itself while it is the only running request, the whole cache cannot hold it up to ``end``;
    if an earlier lone self-eviction already reached ``end``, the next cycle repeats this one,
    so q is dropped (it leaves the wait queue and is marked STATE_DROPPED)."""
    st, blk, slot_block, rb, rinfo = pool
    cached, scr_b, scr_s, scr_was = scratch
    run, n_run, pre_list, n_pre = batch
    while not blis_alloc_nb(
        st,
        blk,
        slot_block,
        rb,
        rinfo,
        rq,
        gbase,
        q,
        start,
        end,
        prefill,
        cached,
        0,
        scr_b,
        scr_s,
        scr_was,
        literal,
    ):
        if n_run == 0:
            return False, n_run, n_pre
        v = _evict_tail(run, n_run, pool, bq, wq, wmeta, out, step_count)
        n_run -= 1
        pre_list[n_pre] = v
        n_pre += 1
        if v == q:
            if n_run == 0:
                if end <= bq[BQ_LONE_BEST, q]:
                    deq_pop_front(wq, wmeta)
                    out[q, O_STATE] = STATE_DROPPED
                else:
                    bq[BQ_LONE_BEST, q] = end
            return False, n_run, n_pre
    return True, n_run, n_pre


@hjit
def _plain_entry(
    run, n_run, rq, progress, rb, rinfo, blk, dec_pi, dec_end, dec_last, dec_fill, dec_ahead
):
    """Load the running batch into the decode loop's slot arrays; False when a request is not
    decoding into a partly filled last block past its prompt (then the general step runs)."""
    for i in range(n_run):
        q = run[i]
        p_len = rq[q, Q_PROMPT]
        o = rq[q, Q_OUTPUT]
        if o <= 0 or progress[q] < p_len or rinfo[q, R_TOK] + 1 <= p_len:
            return False
        last = req_last_nb(rb, rinfo, q)
        if last < 0:
            return False
        lt = blk[last, B_NTOK]
        if lt <= 0:
            return False
        dec_pi[i] = progress[q]
        dec_end[i] = p_len + o - 1
        dec_last[i] = last
        dec_fill[i] = lt
        dec_ahead[i] = rinfo[q, R_TOK] - progress[q]
    return True


@hjit
def _plain_next(n_run, dec_pi, dec_end, dec_fill, bs, st, itl_room):
    """Whether the next step of the loaded batch is a plain decode step: no request completes
    in it, the blocks its requests need are free, and the ITL buffer has room."""
    if n_run * 2 + 2 > itl_room:
        return False
    need = 0
    for i in range(n_run):
        if dec_pi[i] + 1 >= dec_end[i]:
            return False
        if dec_fill[i] >= bs:
            need += 1
    return need <= free_count_nb(st)


@hjit
def _plain_store(
    run,
    n_run,
    progress,
    computed,
    num_new_tok,
    rinfo,
    blk,
    out,
    itl_sum,
    dec_pi,
    dec_last,
    dec_fill,
    dec_ahead,
    seg_sum,
):
    """Write the decode loop's slot state back to the request arrays; returns the steps run."""
    k = 0
    for i in range(n_run):
        q = run[i]
        k = dec_pi[i] - progress[q]
        rinfo[q, R_TOK] = dec_pi[i] + dec_ahead[i]
        blk[dec_last[i], B_NTOK] = dec_fill[i]
        progress[q] = dec_pi[i]
        computed[q] += k
        num_new_tok[q] = 1
        out[q, O_TOKENS] += k
        itl_sum[q] += seg_sum
    return k


@jit
def simulate_blis_nb(
    rq, gbase, cfg, ctf, cti, st, blk, slot_block, rb, rinfo, out, sc, log, itl_v, itl_o
):
    """Run the whole simulation; returns the ITL samples of completed requests (µs), the
    front of ``itl_v``.  ``itl_v``/``itl_o`` (ITL entries: value, owner) are the caller's
    buffers; their length is the ITL room of this attempt (when it runs out the run stops with
    STATUS_ITL_FULL and the driver retries with more, ``common_nb.next_itl_room_nb``)."""
    n_req = rq.shape[0]
    budget_max = cfg[CFG_BUDGET]
    max_run = cfg[CFG_MAX_RUN]
    thr = cfg[CFG_THRESHOLD]
    total_blocks = cfg[CFG_BLOCKS]
    max_idle = cfg[CFG_MAX_IDLE]
    horizon = cfg[CFG_HORIZON]
    literal = cfg[CFG_LITERAL] > 0
    bs = st[ST_BS]
    init_outputs(out)

    # request state (REFERENCE §6.2-§6.3 names)
    bq = np.zeros((N_BQ, n_req), np.int64)  # rows BQ_* of infersweep.schema
    bq[BQ_EVICTED_AT] = -1
    bq[BQ_LONE_BEST] = -1
    progress = bq[BQ_PROGRESS]  # ProgressIndex (PI): tokens processed
    computed = bq[BQ_COMPUTED]  # computed[id]: PI after this step's tokens
    num_new_tok = bq[BQ_NUM_NEW]  # NumNewTokens of the latest scheduling
    itl_sum = bq[BQ_ITL_SUM]  # Σ ITL entries (E2E = TTFT + Σ ITL)
    evicted_at = bq[BQ_EVICTED_AT]  # step of its latest eviction (safe mode, Q3)
    lone_best = bq[BQ_LONE_BEST]  # livelock guard (_alloc_preempting)

    # queues
    wq = np.empty(max(n_req, 1), np.int64)  # wait queue (a ring deque; wmeta[DEQ_N] long)
    wmeta = np.zeros(2, np.int64)
    cap_run = max(1, min(n_req, max_run))
    run = np.empty(cap_run, np.int64)
    n_run = 0
    snap = np.empty(cap_run, np.int64)
    pre_list = np.empty(cap_run, np.int64)
    sch_list = np.empty(cap_run, np.int64)

    # scratch for allocation and step cost
    max_p = 1
    for r in range(n_req):
        if rq[r, Q_PROMPT] > max_p:
            max_p = rq[r, Q_PROMPT]
    scr_n = max_p // bs + budget_max // bs + 4
    cached = np.empty(scr_n, np.int64)
    scr_b = np.empty(scr_n, np.int64)
    scr_s = np.empty(scr_n, np.int64)
    scr_was = np.empty(scr_n, np.bool_)
    scratch = (cached, scr_b, scr_s, scr_was)
    pool = (st, blk, slot_block, rb, rinfo)
    pf_pi = np.empty(cap_run, np.int64)
    pf_n = np.empty(cap_run, np.int64)
    dc_pi = np.empty(cap_run, np.int64)
    # slot arrays of the plain decode loop (dc_pi holds the progress indices)
    dec_end = np.empty(cap_run, np.int64)  # the progress index of the completing step
    dec_last = np.empty(cap_run, np.int64)  # the last block of its list
    dec_fill = np.empty(cap_run, np.int64)  # tokens in that block
    dec_ahead = np.empty(cap_run, np.int64)  # tokens its blocks hold beyond its progress
    comps = np.zeros(N_COMPONENTS)
    memo_k = np.full(MEMO_SIZE, -1, np.int64)
    memo_v = np.zeros(MEMO_SIZE)
    max_ctx = 0
    for r in range(n_req):
        if rq[r, Q_PROMPT] + rq[r, Q_OUTPUT] > max_ctx:
            max_ctx = rq[r, Q_PROMPT] + rq[r, Q_OUTPUT]
    dec1 = np.full(max_ctx + 2, -1, np.int64)
    max_steps = 0  # literal mode: more steps than this means a livelock that keeps "progressing"
    if literal:
        for r in range(n_req):
            max_steps += LIVELOCK_STEPS_PER_TOKEN * (rq[r, Q_PROMPT] + max(rq[r, Q_OUTPUT], 1))
        max_steps += LIVELOCK_STEPS_SLACK

    # event heap: at most one arrival/queued, one step chain, one left event and a scheduled and
    # a preemption event per request are ever pending at once
    hcap = HEAP_EVENTS_PER_REQUEST * n_req + 64
    ht = np.empty(hcap, np.int64)
    hk = np.empty(hcap, np.int8)
    hr = np.empty(hcap, np.int64)
    hn = 0

    n_itl = 0  # ITL entries (value, owner) in itl_v, itl_o

    step_pending = False
    step_count = 0
    clock = 0
    n_arrived = 0
    idle_steps = 0
    status = STATUS_OK
    total_in = 0
    total_out = 0
    completed = 0
    dropped = 0
    preempts = 0
    kv_fail = 0
    busy = 0

    while True:
        # cluster events (arrivals) run first when not later than the next instance event
        if n_arrived < n_req and (hn == 0 or rq[n_arrived, Q_ARRIVAL] <= ht[0]):
            hn = heap_push(ht, hk, hr, hn, rq[n_arrived, Q_ARRIVAL], EV_ARRIVAL, n_arrived)
            n_arrived += 1
            continue
        if hn == 0:
            break
        if horizon > 0 and ht[0] > horizon:
            status = STATUS_HORIZON
            break
        hn = heap_pop(ht, hk, hr, hn)
        now = ht[hn]
        kind = hk[hn]
        r = hr[hn]
        clock = now
        if kind == EV_ARRIVAL:
            hn = heap_push(ht, hk, hr, hn, now, EV_QUEUED, r)
        elif kind == EV_QUEUED:
            if (rq[r, Q_PROMPT] + bs - 1) // bs > total_blocks:
                dropped += 1
                out[r, O_STATE] = STATE_DROPPED
            else:
                deq_push_back(wq, wmeta, r)
                out[r, O_STATE] = STATE_QUEUED
                total_in += rq[r, Q_PROMPT]
            if not step_pending:
                hn = heap_push(ht, hk, hr, hn, now, EV_STEP, -1)
        elif kind == EV_STEP:
            if (
                hn == 0
                and log.shape[0] == 0
                and wmeta[DEQ_N] == 0
                and 0 < n_run <= budget_max
                and _plain_entry(
                    run,
                    n_run,
                    rq,
                    progress,
                    rb,
                    rinfo,
                    blk,
                    dc_pi,
                    dec_end,
                    dec_last,
                    dec_fill,
                    dec_ahead,
                )
                and _plain_next(n_run, dc_pi, dec_end, dec_fill, bs, st, itl_v.shape[0] - n_itl)
            ):
                # plain decode steps with nothing else pending: every running request decodes
                # one token and none completes, so the general step below reduces to this loop
                # over slot arrays (dc_pi holds the made_progress indices).  Its block appends and
                # allocations are the general path's, in batch order; it stops before a step
                # that is not plain, when an arrival is due first, or past the horizon, and
                # leaves the next step event in the heap as the general path does.
                for i in range(n_run):
                    if dc_pi[i] != rinfo[run[i], R_TOK]:
                        rinfo[run[i], R_ORD] = 0
                seg_sum = 0
                while True:
                    if n_run == 1 and dc_pi[0] < dec1.shape[0]:
                        adv = dec1[dc_pi[0]]
                        if adv < 0:
                            adv = step_time_nb(
                                pf_pi,
                                pf_n,
                                0,
                                dc_pi,
                                1,
                                ctf,
                                cti,
                                memo_k,
                                memo_v,
                                comps,
                            )
                            dec1[dc_pi[0]] = adv
                    else:
                        adv = step_time_nb(
                            pf_pi,
                            pf_n,
                            0,
                            dc_pi,
                            n_run,
                            ctf,
                            cti,
                            memo_k,
                            memo_v,
                            comps,
                        )
                    step_count += 1
                    for i in range(n_run):
                        q = run[i]
                        if dec_fill[i] >= bs:
                            # the last block is full: the general path's allocation of a new
                            # one (it cannot fail, _plain_next counted the free blocks)
                            rinfo[q, R_TOK] = dc_pi[i] + dec_ahead[i]
                            blk[dec_last[i], B_NTOK] = dec_fill[i]
                            blis_alloc_nb(
                                st,
                                blk,
                                slot_block,
                                rb,
                                rinfo,
                                rq,
                                gbase,
                                q,
                                dc_pi[i],
                                dc_pi[i] + 1,
                                False,
                                cached,
                                0,
                                scr_b,
                                scr_s,
                                scr_was,
                                literal,
                            )
                            dec_last[i] = req_last_nb(rb, rinfo, q)
                            dec_fill[i] = blk[dec_last[i], B_NTOK]
                        else:
                            dec_fill[i] += 1
                        dc_pi[i] += 1
                        itl_v[n_itl] = adv
                        itl_o[n_itl] = q
                        n_itl += 1
                    seg_sum += adv
                    nxt = now + adv
                    if (
                        (n_arrived < n_req and rq[n_arrived, Q_ARRIVAL] <= nxt)
                        or (horizon > 0 and nxt > horizon)
                        or not _plain_next(
                            n_run, dc_pi, dec_end, dec_fill, bs, st, itl_v.shape[0] - n_itl
                        )
                    ):
                        break
                    now = nxt
                    clock = nxt
                k = _plain_store(
                    run,
                    n_run,
                    progress,
                    computed,
                    num_new_tok,
                    rinfo,
                    blk,
                    out,
                    itl_sum,
                    dc_pi,
                    dec_last,
                    dec_fill,
                    dec_ahead,
                    seg_sum,
                )
                total_out += k * n_run
                busy += seg_sum
                idle_steps = 0
                hn = heap_push(ht, hk, hr, hn, nxt, EV_STEP, -1)
                step_pending = True
                continue
            step_count += 1
            if 0 < max_steps < step_count:
                status = STATUS_STALLED
                break
            budget = budget_max
            n_pre = 0
            n_sch = 0
            preempted = False
            made_progress = False
            # ---- schedule the running batch (REFERENCE §6.3 phase 1), over the batch as it
            # was at entry ----
            n_entry = n_run
            for i in range(n_entry):
                snap[i] = run[i]
            for idx in range(n_entry):
                q = snap[idx]
                if evicted_at[q] == step_count and not literal:
                    continue  # evicted earlier in this pass (safe mode: Q3 not copied)
                if budget <= 0:
                    break
                p_len = rq[q, Q_PROMPT]
                num_new = p_len - progress[q]
                if num_new > 0:
                    if 0 < thr < num_new:
                        num_new = thr
                    if budget < num_new:
                        num_new = budget
                    ok, n_run, n_pre2 = _alloc_preempting(
                        pool,
                        scratch,
                        rq,
                        gbase,
                        bq,
                        out,
                        q,
                        progress[q],
                        progress[q] + num_new,
                        True,
                        (run, n_run, pre_list, n_pre),
                        wq,
                        wmeta,
                        step_count,
                        literal,
                    )
                    preempted = preempted or n_pre2 > n_pre
                    n_pre = n_pre2
                    if not ok:
                        break
                    budget -= num_new
                    num_new_tok[q] = num_new
                    computed[q] += num_new
                if progress[q] >= p_len and rq[q, Q_OUTPUT] > 0:
                    # decode: the common case appends to a partly filled last block
                    last = req_last_nb(rb, rinfo, q)
                    fast = False
                    if last >= 0 and rinfo[q, R_TOK] + 1 > p_len:
                        lt = blk[last, B_NTOK]
                        if lt > 0 and lt < bs - 1:
                            if progress[q] != rinfo[q, R_TOK]:
                                rinfo[q, R_ORD] = 0
                            blk[last, B_NTOK] = lt + 1
                            rinfo[q, R_TOK] += 1
                            fast = True
                    if not fast:
                        ok, n_run, n_pre2 = _alloc_preempting(
                            pool,
                            scratch,
                            rq,
                            gbase,
                            bq,
                            out,
                            q,
                            progress[q],
                            progress[q] + 1,
                            False,
                            (run, n_run, pre_list, n_pre),
                            wq,
                            wmeta,
                            step_count,
                            literal,
                        )
                        preempted = preempted or n_pre2 > n_pre
                        n_pre = n_pre2
                        if not ok:
                            break
                    budget -= 1
                    num_new_tok[q] = 1
                    computed[q] += 1
            # ---- admit from the wait queue (REFERENCE §6.3 phase 2) ----
            while n_run < max_run and wmeta[DEQ_N] > 0 and budget > 0 and not preempted:
                q = deq_front(wq, wmeta)
                c = cached_blocks_nb(st, slot_block, rq, gbase, q, cached)
                num_new = rq[q, Q_PROMPT] - c * bs
                if 0 < thr < num_new:
                    num_new = thr
                if budget < num_new:
                    num_new = budget
                start = c * bs
                if not blis_alloc_nb(
                    st,
                    blk,
                    slot_block,
                    rb,
                    rinfo,
                    rq,
                    gbase,
                    q,
                    start,
                    start + num_new,
                    progress[q] < rq[q, Q_PROMPT],
                    cached,
                    c,
                    scr_b,
                    scr_s,
                    scr_was,
                    literal,
                ):
                    break
                deq_pop_front(wq, wmeta)
                run[n_run] = q
                n_run += 1
                out[q, O_STATE] = STATE_RUNNING
                sch_list[n_sch] = q
                n_sch += 1
                budget -= num_new
                num_new_tok[q] = num_new
                computed[q] = num_new + c * bs
                made_progress = True
            for i in range(n_pre):
                hn = heap_push(ht, hk, hr, hn, now, EV_PREEMPTION, pre_list[i])
                preempts += 1
            for i in range(n_sch):
                q = sch_list[i]
                hn = heap_push(ht, hk, hr, hn, now, EV_SCHEDULED, q)
                out[q, O_SCHED] = now - rq[q, Q_ARRIVAL]
            # ---- step time of the running batch (REFERENCE §6.2 step 3, §5) ----
            n_pf = 0
            n_dc = 0
            pf_tok = 0
            for i in range(n_run):
                q = run[i]
                if progress[q] < rq[q, Q_PROMPT]:
                    pf_pi[n_pf] = progress[q]
                    pf_n[n_pf] = num_new_tok[q]
                    pf_tok += num_new_tok[q]
                    n_pf += 1
                elif rq[q, Q_OUTPUT] > 0:
                    dc_pi[n_dc] = progress[q]
                    n_dc += 1
            if n_pf == 0 and n_dc == 1 and dc_pi[0] < dec1.shape[0]:
                adv = dec1[dc_pi[0]]  # single-request decode steps, memoised by context
                if adv < 0:
                    adv = step_time_nb(
                        pf_pi,
                        pf_n,
                        n_pf,
                        dc_pi,
                        n_dc,
                        ctf,
                        cti,
                        memo_k,
                        memo_v,
                        comps,
                    )
                    dec1[dc_pi[0]] = adv
            else:
                adv = step_time_nb(
                    pf_pi,
                    pf_n,
                    n_pf,
                    dc_pi,
                    n_dc,
                    ctf,
                    cti,
                    memo_k,
                    memo_v,
                    comps,
                )
            if n_run > 0:
                busy += adv
            # ---- advance: execute the step (REFERENCE §6.2 step 4) ----
            if n_itl + n_run * 2 + 2 > itl_v.shape[0]:
                status = STATUS_ITL_FULL  # the wrapper reruns with a larger buffer
                break
            for i in range(n_run):
                q = run[i]
                p_len = rq[q, Q_PROMPT]
                if progress[q] < p_len:
                    if computed[q] != progress[q]:
                        made_progress = True
                    progress[q] = computed[q]
                else:
                    progress[q] += 1
                    total_out += 1
                    out[q, O_TOKENS] += 1
                    itl_v[n_itl] = adv
                    itl_o[n_itl] = q
                    n_itl += 1
                    itl_sum[q] += adv
                    made_progress = True
                if progress[q] == p_len:
                    out[q, O_TTFT] = now + adv - rq[q, Q_ARRIVAL]
            if log.shape[0] > 0:
                log_step(
                    log,
                    sc,
                    now,
                    adv,
                    n_pf,
                    n_dc,
                    budget_max - budget,
                    n_run,
                    wmeta[DEQ_N],
                    st[ST_USED],
                    pf_tok,
                )
            # ---- complete (REFERENCE §6.2 steps 6-7) ----
            n_rem = 0
            for i in range(n_run):
                q = run[i]
                o = rq[q, Q_OUTPUT]
                if progress[q] == rq[q, Q_PROMPT] + (o if o > 1 else 1) - 1:
                    if o > 0:
                        itl_v[n_itl] = adv
                        itl_o[n_itl] = q
                        n_itl += 1
                        itl_sum[q] += adv
                        if not blis_alloc_nb(
                            st,
                            blk,
                            slot_block,
                            rb,
                            rinfo,
                            rq,
                            gbase,
                            q,
                            progress[q],
                            progress[q] + 1,
                            False,
                            cached,
                            0,
                            scr_b,
                            scr_s,
                            scr_was,
                            literal,
                        ):
                            kv_fail += 1
                    release_nb(st, blk, rb, rinfo, q)
                    hn = heap_push(ht, hk, hr, hn, now + adv, EV_LEFT, q)
                    out[q, O_E2E] = out[q, O_TTFT] + itl_sum[q]
                    out[q, O_DONE] = rq[q, Q_ARRIVAL] + out[q, O_E2E]
                    out[q, O_STATE] = STATE_DONE
                    completed += 1
                    made_progress = True
                else:
                    run[n_rem] = q
                    n_rem += 1
            n_run = n_rem
            if n_run > 0:
                hn = heap_push(ht, hk, hr, hn, now + adv, EV_STEP, -1)
                step_pending = True
            else:
                step_pending = False
                if wmeta[DEQ_N] > 0:
                    hn = heap_push(ht, hk, hr, hn, now + adv, EV_STEP, -1)
                    step_pending = True
            if made_progress:
                idle_steps = 0
            else:
                idle_steps += 1
                if idle_steps > max_idle:
                    status = STATUS_STALLED
                    break
        # EV_SCHEDULED, EV_PREEMPTION, EV_LEFT: no-ops (they only set the clock)

    guard_drops = 0
    for r in range(n_req):
        if out[r, O_STATE] == STATE_DROPPED and lone_best[r] >= 0:
            # dropped by the livelock guard: like an unservable request, it brought no tokens
            dropped += 1
            guard_drops += 1
            total_in -= rq[r, Q_PROMPT]
            total_out -= out[r, O_TOKENS]
    # keep the ITL entries of completed requests only (REFERENCE §6.5)
    m = 0
    for i in range(n_itl):
        if out[itl_o[i], O_STATE] == STATE_DONE:
            itl_v[m] = itl_v[i]
            m += 1
    store_scalars(
        sc,
        clock,
        completed,
        wmeta[DEQ_N],
        n_run,
        dropped,
        total_in,
        total_out,
        preempts,
        st[ST_PEAK],
        st[ST_HITS],
        st[ST_MISSES],
        kv_fail,
        step_count,
        status,
        m,
        busy,
    )
    # literal mode: the reference loops forever where this run stalled or dropped a request
    # by the guard; the wrappers then rerun the point in safe mode
    sc[SC_LIVELOCK] = 1 if literal and (status == STATUS_STALLED or guard_drops > 0) else 0
    return itl_v[:m]
