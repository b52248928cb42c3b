"""Scheduler kernel, ``--semantics vllm`` (the default): a continuous-batching engine like
vLLM v1's scheduler (SPEC §2).

Every step: running requests in order get their next tokens within the token budget (a request
the budget does not reach does not advance); when KV blocks run out the most recently admitted
running request is preempted (its blocks freed, it goes to the front of the wait queue and is
later re-prefilled over its prompt plus the tokens it already generated); then, if nothing was
preempted, waiting requests are admitted while the budget, the running cap and the KV cache
allow, with chunked prefill.  Prefix caching reuses resident full blocks of a shared prefix
(and a preempted request's own blocks).  Requests that arrive during a step are seen at the
next step boundary.  A request whose whole sequence can never fit in the cache is dropped.
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
    free_count_nb,
    pop_block_nb,
    register_chained_nb,
    release_nb,
    remove_nb,
    req_append_nb,
    take_block_nb,
)
from infersweep.schema import (
    B_REF,
    B_SLOT,
    CFG_BLOCKS,
    CFG_BUDGET,
    CFG_HORIZON,
    CFG_MAX_IDLE,
    CFG_MAX_RUN,
    CFG_PREFIX_CACHE,
    CFG_THRESHOLD,
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
    R_OFF,
    R_TOK,
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
    STATUS_OK,
    STATUS_STALLED,
)


@hjit
def _complete(st, blk, rb, rinfo, rq, out, r, tokens, t):
    """Request r produced its last token (its ``tokens``-th) at time t: free its blocks and
    record it."""
    release_nb(st, blk, rb, rinfo, r)
    out[r, O_TOKENS] = tokens
    out[r, O_E2E] = t - rq[r, Q_ARRIVAL]
    out[r, O_DONE] = t
    out[r, O_STATE] = STATE_DONE


@hjit
def _hits(st, slot_block, rq, gbase, r, n_tok, out):
    """Leading resident full blocks of r's first n_tok - 1 tokens (at least one token is
    always computed, as in vLLM)."""
    return leading_hits_nb(slot_block, rq, gbase, r, (n_tok - 1) // st[ST_BS], st[ST_BS], out)


@hjit
def _alloc(st, blk, slot_block, rb, rinfo, rq, gbase, r, total_tok, cached, n_cached, use_cache):
    """allocate_slots: blocks for the first total_tok tokens of r (attaching n_cached cached
    blocks first, when r holds none); False, with nothing changed, when they do not fit."""
    bs = st[ST_BS]
    need = (total_tok + bs - 1) // bs - rinfo[r, R_CNT] - n_cached
    n_free_cached = 0
    for i in range(n_cached):
        if blk[cached[i], B_REF] == 0:
            n_free_cached += 1
    if need > free_count_nb(st) - n_free_cached:
        return False
    for i in range(n_cached):
        b = cached[i]
        if blk[b, B_REF] == 0:
            st[ST_USED] += 1
            remove_nb(st, blk, b)
            if st[ST_USED] > st[ST_PEAK]:
                st[ST_PEAK] = st[ST_USED]
        blk[b, B_REF] += 1
        st[ST_HITS] += 1
        req_append_nb(rb, rinfo, r, b)
    if n_cached > 0:
        rinfo[r, R_TOK] = n_cached * bs
    for _ in range(need):
        b = pop_block_nb(st, blk, slot_block, True)
        take_block_nb(st, blk, b)
        req_append_nb(rb, rinfo, r, b)
    if use_cache:  # blocks that are now full become cached
        full_before = rinfo[r, R_TOK] // bs
        off = rinfo[r, R_OFF]
        for j in range(full_before, total_tok // bs):
            s = key_slot(rq, gbase, r, (j + 1) * bs, bs)
            b = rb[off + j]
            if blk[b, B_SLOT] < 0:
                register_chained_nb(blk, slot_block, b, s)
    if total_tok > rinfo[r, R_TOK]:
        rinfo[r, R_TOK] = total_tok
    return True


@jit
def simulate_vllm_nb(
    rq, gbase, cfg, ctf, cti, st, blk, slot_block, rb, rinfo, out, sc, log, itl_cap
):
    """Run the whole simulation; returns the ITL samples (gaps between consecutive tokens of a
    request, µs)."""
    n_req = rq.shape[0]
    budget_max = cfg[CFG_BUDGET]
    max_run = cfg[CFG_MAX_RUN]
    thr = cfg[CFG_THRESHOLD]
    total_blocks = cfg[CFG_BLOCKS]
    max_idle = cfg[CFG_MAX_IDLE]
    use_cache = cfg[CFG_PREFIX_CACHE] != 0
    horizon = cfg[CFG_HORIZON]
    logging = log.shape[0] > 0
    bs = st[ST_BS]
    init_outputs(out)

    # per-request state kept while a request waits (it survives a preemption)
    gen = np.zeros(n_req, np.int64)  # output tokens generated so far
    last_tok = np.zeros(n_req, np.int64)  # time of the latest token
    want = np.empty(n_req, np.int64)  # output tokens to generate (at least 1)
    n_gaps = 0  # a request yields exactly (outputs - 1) gaps, preempted or not
    max_ctx = 1
    for r in range(n_req):
        want[r] = rq[r, Q_OUTPUT] if rq[r, Q_OUTPUT] > 1 else 1
        n_gaps += want[r] - 1
        if rq[r, Q_PROMPT] + want[r] > max_ctx:
            max_ctx = rq[r, Q_PROMPT] + want[r]

    # the running batch, one slot per request, in admission order (structure of arrays)
    cap_run = max(1, min(n_req, max_run))
    s_req = np.empty(cap_run, np.int64)  # request
    s_computed = np.empty(cap_run, np.int64)  # tokens whose KV is computed
    s_gen = np.empty(cap_run, np.int64)  # output tokens generated
    s_prompt = np.empty(cap_run, np.int64)  # prompt tokens
    s_want = np.empty(cap_run, np.int64)  # output tokens to generate
    s_last_tok = np.empty(cap_run, np.int64)  # time of its latest token
    s_kv_cap = np.empty(cap_run, np.int64)  # tokens its KV blocks can hold
    s_full_at = np.empty(cap_run, np.int64)  # token count that completes its next block
    s_new = np.empty(cap_run, np.int64)  # tokens scheduled this step
    n_run = 0

    wq = np.empty(max(n_req, 1), np.int64)  # wait queue (a ring deque; wmeta[DEQ_N] long)
    wmeta = np.zeros(2, np.int64)
    cached = np.empty(max_ctx // bs + 2, np.int64)
    pf_pi = np.empty(cap_run, np.int64)
    pf_n = np.empty(cap_run, np.int64)
    dc_pi = np.empty(cap_run, np.int64)
    comps = np.zeros(N_COMPONENTS)
    memo_k = np.full(MEMO_SIZE, -1, np.int64)
    memo_v = np.zeros(MEMO_SIZE)
    dec1 = np.full(max_ctx + 2, -1, np.int64)  # single-request decode step times by context
    itl = np.empty(max(n_gaps, 1), np.int64)
    n_itl = 0

    t = 0
    n_arrived = 0
    steps = 0
    idle = 0
    status = STATUS_OK
    total_in = 0
    total_out = 0
    completed = 0
    dropped = 0
    preempts = 0
    busy = 0
    clock = 0

    while True:
        while n_arrived < n_req and rq[n_arrived, Q_ARRIVAL] <= t:
            r = n_arrived
            n_arrived += 1
            p_len = rq[r, Q_PROMPT]
            if (p_len + want[r] - 1 + bs - 1) // bs > total_blocks:
                dropped += 1
                out[r, O_STATE] = STATE_DROPPED
                continue
            deq_push_back(wq, wmeta, r)
            out[r, O_STATE] = STATE_QUEUED
            total_in += p_len
        if n_run == 0 and wmeta[DEQ_N] == 0:
            if n_arrived >= n_req:
                break
            t = rq[n_arrived, Q_ARRIVAL]
            continue
        if horizon > 0 and t > horizon:
            status = STATUS_HORIZON
            break
        if (
            n_run == 1
            and wmeta[DEQ_N] == 0
            and not logging
            and s_gen[0] > 0
            and s_computed[0] == s_prompt[0] + s_gen[0] - 1
        ):
            # a lone request decoding: the general step below reduces to this loop, which
            # runs until a step needs a new block, an arrival is due, the request completes
            # or the horizon passes (then the general path takes over)
            fast = 0
            while True:
                nc = s_computed[0]
                if (
                    nc + 1 > s_kv_cap[0]
                    or (use_cache and nc + 1 >= s_full_at[0])
                    or nc >= dec1.shape[0]
                ):
                    break
                step_us = dec1[nc]
                if step_us < 0:
                    dc_pi[0] = nc
                    step_us = step_time_nb(
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
                    dec1[nc] = step_us
                fast += 1
                steps += 1
                idle = 0
                busy += step_us
                t += step_us
                clock = t
                s_computed[0] = nc + 1
                g = s_gen[0] + 1
                s_gen[0] = g
                total_out += 1
                itl[n_itl] = t - s_last_tok[0]
                n_itl += 1
                s_last_tok[0] = t
                if g >= s_want[0]:
                    _complete(st, blk, rb, rinfo, rq, out, s_req[0], g, t)
                    completed += 1
                    n_run = 0
                    break
                if (n_arrived < n_req and rq[n_arrived, Q_ARRIVAL] <= t) or (
                    horizon > 0 and t > horizon
                ):
                    break
            if fast > 0:
                continue
        steps += 1
        budget = budget_max
        preempted = False
        n_pf = 0
        n_dc = 0
        pf_tok = 0
        # ---- schedule the running batch: in order, within the budget (SPEC §2) ----
        k = 0
        while k < n_run and budget > 0:
            n = s_prompt[k] + s_gen[k] - s_computed[k]
            if 0 < thr < n:
                n = thr
            if budget < n:
                n = budget
            total = s_computed[k] + n
            if total > s_kv_cap[k] or (use_cache and total >= s_full_at[k]):
                r = s_req[k]
                rinfo[r, R_TOK] = s_computed[k]
                ok = True
                while not _alloc(
                    st, blk, slot_block, rb, rinfo, rq, gbase, r, total, cached, 0, use_cache
                ):
                    v = n_run - 1  # preempt the most recently admitted request
                    q = s_req[v]
                    gen[q] = s_gen[v]
                    last_tok[q] = s_last_tok[v]
                    release_nb(st, blk, rb, rinfo, q)
                    deq_push_front(wq, wmeta, q)
                    out[q, O_STATE] = STATE_QUEUED
                    out[q, O_PREEMPT] += 1
                    n_run -= 1
                    preempts += 1
                    preempted = True
                    if v == k:
                        ok = False
                        break
                if not ok:
                    break
                s_kv_cap[k] = rinfo[r, R_CNT] * bs
                s_full_at[k] = (total // bs + 1) * bs
            s_new[k] = n
            budget -= n
            if s_gen[k] > 0 and n == 1 and s_computed[k] == s_prompt[k] + s_gen[k] - 1:
                dc_pi[n_dc] = s_computed[k]
                n_dc += 1
            else:
                pf_pi[n_pf] = s_computed[k]
                pf_n[n_pf] = n
                pf_tok += n
                n_pf += 1
            k += 1
        n_sched = k
        # ---- admit waiting requests (SPEC §2: only when nothing was preempted) ----
        if not preempted:
            n_before = n_run
            while wmeta[DEQ_N] > 0 and budget > 0 and n_run < max_run:
                r = deq_front(wq, wmeta)
                n_tok = rq[r, Q_PROMPT] + gen[r]
                c = _hits(st, slot_block, rq, gbase, r, n_tok, cached) if use_cache else 0
                n = n_tok - c * bs
                if 0 < thr < n:
                    n = thr
                if budget < n:
                    n = budget
                if not _alloc(
                    st, blk, slot_block, rb, rinfo, rq, gbase, r, c * bs + n, cached, c, use_cache
                ):
                    break
                deq_pop_front(wq, wmeta)
                k = n_run
                n_run += 1
                s_req[k] = r
                s_computed[k] = c * bs
                s_gen[k] = gen[r]
                s_prompt[k] = rq[r, Q_PROMPT]
                s_want[k] = want[r]
                s_last_tok[k] = last_tok[r]
                s_kv_cap[k] = rinfo[r, R_CNT] * bs
                s_full_at[k] = ((c * bs + n) // bs + 1) * bs
                s_new[k] = n
                out[r, O_STATE] = STATE_RUNNING
                budget -= n
                if out[r, O_SCHED] < 0:
                    out[r, O_SCHED] = t - rq[r, Q_ARRIVAL]
                if gen[r] > 0 and n == 1 and c * bs == n_tok - 1:
                    dc_pi[n_dc] = c * bs
                    n_dc += 1
                else:
                    pf_pi[n_pf] = c * bs
                    pf_n[n_pf] = n
                    pf_tok += n
                    n_pf += 1
            if n_run > n_before:  # admission only happens once every running request is in
                n_sched = n_run
        # ---- step cost ----
        if n_sched == 0:
            idle += 1
            if idle > max_idle:
                status = STATUS_STALLED
                break
        else:
            idle = 0
        if n_pf == 0 and n_dc == 1 and dc_pi[0] < dec1.shape[0]:
            step_us = dec1[dc_pi[0]]
            if step_us < 0:
                step_us = step_time_nb(
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
                dec1[dc_pi[0]] = step_us
        else:
            step_us = step_time_nb(
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
        if logging:
            log_step(
                log,
                sc,
                t,
                step_us,
                n_pf,
                n_dc,
                budget_max - budget,
                n_run,
                wmeta[DEQ_N],
                st[ST_USED],
                pf_tok,
            )
        t_end = t + step_us
        if n_sched > 0:
            busy += step_us
        # ---- advance the scheduled requests; complete: finished ones leave the batch ----
        w = 0
        for k in range(n_run):
            if k < n_sched:
                nc = s_computed[k] + s_new[k]
                s_computed[k] = nc
                if nc == s_prompt[k] + s_gen[k]:
                    g = s_gen[k] + 1
                    s_gen[k] = g
                    total_out += 1
                    if g == 1:
                        out[s_req[k], O_TTFT] = t_end - rq[s_req[k], Q_ARRIVAL]
                    else:
                        itl[n_itl] = t_end - s_last_tok[k]
                        n_itl += 1
                    s_last_tok[k] = t_end
                    if g >= s_want[k]:
                        _complete(st, blk, rb, rinfo, rq, out, s_req[k], g, t_end)
                        completed += 1
                        continue
            if w != k:
                s_req[w] = s_req[k]
                s_computed[w] = s_computed[k]
                s_gen[w] = s_gen[k]
                s_prompt[w] = s_prompt[k]
                s_want[w] = s_want[k]
                s_last_tok[w] = s_last_tok[k]
                s_kv_cap[w] = s_kv_cap[k]
                s_full_at[w] = s_full_at[k]
            w += 1
        n_run = w
        t = t_end
        clock = t_end

    for k in range(n_run):  # requests still running when the run stopped
        out[s_req[k], O_TOKENS] = s_gen[k]
    for r in range(n_req):
        if out[r, O_STATE] == STATE_QUEUED:
            out[r, O_TOKENS] = gen[r]
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
        0,
        steps,
        status,
        n_itl,
        busy,
    )
    return itl[:n_itl].copy()
