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
    CFG_ROLE,
    CFG_THRESHOLD,
    IQ_ARR_REQ,
    IQ_ARR_T,
    IQ_WAIT,
    K_BUSY_US,
    K_CLOCK,
    K_COMPLETED,
    K_DROPPED,
    K_ENDED,
    K_HELD,
    K_IDLE,
    K_INPUT_TOK,
    K_N_ARRIVED,
    K_N_KNOWN,
    K_N_OUT,
    K_N_RUN,
    K_OUT_HEAD,
    K_OUT_TAIL,
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
    N_COMPONENTS,
    N_IQ,
    N_K,
    N_RS,
    N_SL,
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
    ROLE_DECODE,
    ROLE_PREFILL,
    RS_BOOK_T,
    RS_GEN,
    RS_KV,
    RS_LAST_TOK,
    RS_OUT_NEXT,
    RS_WANT,
    RS_XFER_TOK,
    SC_N_ITL,
    SL_COMPUTED,
    SL_FULL_AT,
    SL_GEN,
    SL_KV_CAP,
    SL_LAST_TOK,
    SL_NEW,
    SL_PROMPT,
    SL_REQ,
    SL_WANT,
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

TIME_MAX = np.iinfo(np.int64).max  # "never": no pause, no further arrival


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


@hjit
def _to_outbox(rs, k, r):
    """P/D: request r was handed off or booked: append it to the instance's outbox (a list
    linked through ``rs[RS_OUT_NEXT]``), which the caller empties at the pause that follows;
    it holds blocks outside the batch until its transfer ends."""
    if k[K_N_OUT] == 0:
        k[K_OUT_HEAD] = r
    else:
        rs[RS_OUT_NEXT, k[K_OUT_TAIL]] = r
    k[K_OUT_TAIL] = r
    rs[RS_OUT_NEXT, r] = -1
    k[K_N_OUT] += 1
    k[K_HELD] += 1


@hjit
def _book(rq, rs, rinfo, k, r, cached_tok, t):
    """P/D decode instance: request r's blocks are allocated at time t; its transfer (of the
    prompt tokens it does not hold cached) goes to the outbox."""
    rinfo[r, R_TOK] = cached_tok  # its full blocks are registered in the cache once filled
    rs[RS_XFER_TOK, r] = rq[r, Q_PROMPT] - cached_tok
    rs[RS_BOOK_T, r] = t
    _to_outbox(rs, k, r)


@hjit
def init_requests_nb(rq, rs):
    """Per-request state at the start of a run; returns (ITL samples the run yields, longest
    sequence in tokens)."""
    n_gaps = 0  # a request yields exactly (outputs - 1) gaps, preempted or not
    max_ctx = 1
    for r in range(rq.shape[0]):
        want = rq[r, Q_OUTPUT] if rq[r, Q_OUTPUT] > 1 else 1
        rs[RS_GEN, r] = 0
        rs[RS_LAST_TOK, r] = 0
        rs[RS_WANT, r] = want
        rs[RS_KV, r] = KV_LOCAL
        n_gaps += want - 1
        if rq[r, Q_PROMPT] + want > max_ctx:
            max_ctx = rq[r, Q_PROMPT] + want
    return n_gaps, max_ctx


@jit
def new_cost_scratch_nb(ctf, cti, max_ctx):
    """The step-cost arguments with their memo tables: (ctf, cti, memo keys, memo values,
    components, single-request decode step times by context)."""
    return (
        ctf,
        cti,
        np.full(MEMO_SIZE, -1, np.int64),
        np.zeros(MEMO_SIZE),
        np.zeros(N_COMPONENTS),
        np.full(max_ctx + 2, -1, np.int64),
    )


@jit
def new_work_nb(cap_run, max_ctx, bs):
    """Scratch of one step: (prefill progress, prefill tokens, decode progress, cached
    blocks)."""
    return (
        np.empty(cap_run, np.int64),
        np.empty(cap_run, np.int64),
        np.empty(cap_run, np.int64),
        np.empty(max_ctx // bs + 2, np.int64),
    )


@jit
def new_instance_nb(n_list, cap_run):
    """The state of one instance, empty: (scalars k, running slots sl, request lists iq)."""
    k = np.zeros(N_K, np.int64)
    k[K_STATUS] = STATUS_OK
    sl = np.zeros((N_SL, max(cap_run, 1)), np.int64)
    iq = np.zeros((N_IQ, max(n_list, 1)), np.int64)
    return k, sl, iq


@jit
def vllm_advance_nb(
    rq, gbase, cfg, cost, pool, rs, out, sc, log, itl, k, sl, iq, work, until, final
):
    """Run one instance's step loop (SPEC §2) from the state it was left in.  The whole state
    lives in the arrays given: the KV pool (``pool``), per-request state ``rs``, the instance's
    scalars ``k`` (``K_*``), running slots ``sl`` (``SL_*``) and request lists ``iq``
    (``IQ_*``).  Unless ``final``, it pauses at the first step boundary at or after ``until``
    (before admitting anything there), or once it has nothing to do; ``final`` runs it to the
    end.  ITL samples go to ``itl`` from ``sc[SC_N_ITL]`` on.

    Roles (``cfg[CFG_ROLE]``, prefill/decode disaggregation; ``pd_nb.py``): a prefill instance
    hands a request off once its first token is produced (it leaves the batch keeping its
    blocks and goes to the outbox, ``k[K_OUT_HEAD]`` linked by ``rs[RS_OUT_NEXT]``; the
    instance pauses there); a decode instance admits a request whose KV is remote by
    allocating its blocks (the booking goes to the outbox; it pauses at the next boundary) and,
    once the KV is ready, admits it as a decode.  Either pauses (``k[K_STUCK]``) when nothing
    can run until a transfer ends."""
    ctf, cti, memo_k, memo_v, comps, dec1 = cost
    st, blk, slot_block, rb, rinfo = pool
    pf_pi, pf_n, dc_pi, cached = work
    budget_max = cfg[CFG_BUDGET]
    max_run = cfg[CFG_MAX_RUN]
    thr = cfg[CFG_THRESHOLD]
    total_blocks = cfg[CFG_BLOCKS]
    max_idle = cfg[CFG_MAX_IDLE]
    use_cache = cfg[CFG_PREFIX_CACHE] != 0
    horizon = cfg[CFG_HORIZON]
    role = cfg[CFG_ROLE]
    logging = log.shape[0] > 0
    bs = st[ST_BS]

    gen = rs[RS_GEN]  # output tokens generated so far
    last_tok = rs[RS_LAST_TOK]  # time of the latest token
    want = rs[RS_WANT]  # output tokens to generate
    # the running batch, one slot per request, in admission order (rows of sl)
    s_req = sl[SL_REQ]
    s_computed = sl[SL_COMPUTED]
    s_gen = sl[SL_GEN]
    s_prompt = sl[SL_PROMPT]
    s_want = sl[SL_WANT]
    s_last_tok = sl[SL_LAST_TOK]
    s_kv_cap = sl[SL_KV_CAP]
    s_full_at = sl[SL_FULL_AT]
    s_new = sl[SL_NEW]
    wq = iq[IQ_WAIT]  # wait queue (a ring deque; wmeta[DEQ_N] long)
    wmeta = k[K_WQ_HEAD : K_WQ_HEAD + 2]
    arr_req = iq[IQ_ARR_REQ]
    arr_t = iq[IQ_ARR_T]

    t = k[K_T]
    clock = k[K_CLOCK]
    n_arrived = k[K_N_ARRIVED]
    n_known = k[K_N_KNOWN]
    n_run = k[K_N_RUN]
    steps = k[K_STEPS]
    idle = k[K_IDLE]
    status = k[K_STATUS]
    total_in = k[K_INPUT_TOK]
    total_out = k[K_OUTPUT_TOK]
    completed = k[K_COMPLETED]
    dropped = k[K_DROPPED]
    preempts = k[K_PREEMPT]
    busy = k[K_BUSY_US]
    n_itl = sc[SC_N_ITL]
    # the time that ends a run of lone decode steps: the next arrival, or the pause
    stop_at = until if not final else TIME_MAX
    t_next = stop_at
    if n_arrived < n_known and arr_t[n_arrived] < t_next:
        t_next = arr_t[n_arrived]
    if k[K_ENDED] != 0:  # an ended instance does nothing
        stop_at = t
    if role != 0:
        k[K_STUCK] = 0

    while True:
        if t >= stop_at:
            break
        # ---- arrivals due by now join the wait queue (or are dropped: never fit) ----
        while n_arrived < n_known and arr_t[n_arrived] <= t:
            r = arr_req[n_arrived]
            n_arrived += 1
            t_next = stop_at  # the next arrival ends a run of lone decode steps
            if n_arrived < n_known and arr_t[n_arrived] < t_next:
                t_next = arr_t[n_arrived]
            p_len = rq[r, Q_PROMPT]
            if (p_len + want[r] - 1 + bs - 1) // bs > total_blocks:
                dropped += 1
                out[r, O_STATE] = STATE_DROPPED
                continue
            deq_push_back(wq, wmeta, r)
            out[r, O_STATE] = STATE_QUEUED
            total_in += p_len
        if n_run == 0 and wmeta[DEQ_N] == 0:
            if n_arrived >= n_known:
                if final:
                    k[K_ENDED] = 1
                break
            t = arr_t[n_arrived]
            continue
        if horizon > 0 and t > horizon:
            status = STATUS_HORIZON
            k[K_ENDED] = 1
            break
        if (
            n_run == 1
            and wmeta[DEQ_N] == 0
            and not logging
            and s_gen[0] > 0
            and s_computed[0] == s_prompt[0] + s_gen[0] - 1
        ):
            # a lone request decoding: the general step below reduces to this loop, which
            # runs until a step needs a new block, an arrival (or the pause) is due, the
            # request completes or the horizon passes (then the general path takes over)
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
                if t >= t_next or (horizon > 0 and t > horizon):
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
        k_s = 0
        while k_s < n_run and budget > 0:
            n = s_prompt[k_s] + s_gen[k_s] - s_computed[k_s]
            if 0 < thr < n:
                n = thr
            if budget < n:
                n = budget
            total = s_computed[k_s] + n
            if total > s_kv_cap[k_s] or (use_cache and total >= s_full_at[k_s]):
                r = s_req[k_s]
                rinfo[r, R_TOK] = s_computed[k_s]
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
                    if v == k_s:
                        ok = False
                        break
                if not ok:
                    break
                s_kv_cap[k_s] = rinfo[r, R_CNT] * bs
                s_full_at[k_s] = (total // bs + 1) * bs
            s_new[k_s] = n
            budget -= n
            if s_gen[k_s] > 0 and n == 1 and s_computed[k_s] == s_prompt[k_s] + s_gen[k_s] - 1:
                dc_pi[n_dc] = s_computed[k_s]
                n_dc += 1
            else:
                pf_pi[n_pf] = s_computed[k_s]
                pf_n[n_pf] = n
                pf_tok += n
                n_pf += 1
            k_s += 1
        n_sched = k_s
        # ---- admit waiting requests (SPEC §2: only when nothing was preempted) and
        # ---- allocate their blocks (prefix-cache hits first) ----
        if not preempted:
            n_before = n_run
            while wmeta[DEQ_N] > 0 and budget > 0 and n_run < max_run:
                r = deq_front(wq, wmeta)
                n_tok = rq[r, Q_PROMPT] + gen[r]
                kv_at = KV_LOCAL if role != ROLE_DECODE else rs[RS_KV, r]
                if kv_at == KV_READY:  # P/D: its KV has arrived: admitted as a decode
                    c = 0
                    start = n_tok - 1
                    n = 1
                else:  # (P/D: a remote KV is booked: blocks for its prompt + first token)
                    c = _hits(st, slot_block, rq, gbase, r, n_tok, cached) if use_cache else 0
                    start = c * bs
                    n = n_tok - start
                    if kv_at == KV_LOCAL:
                        if 0 < thr < n:
                            n = thr
                        if budget < n:
                            n = budget
                if not _alloc(
                    st, blk, slot_block, rb, rinfo, rq, gbase, r, start + n, cached, c,
                    use_cache and kv_at != KV_REMOTE,
                ):  # fmt: skip
                    break
                if kv_at != KV_LOCAL:
                    if kv_at == KV_REMOTE:
                        _book(rq, rs, rinfo, k, r, c * bs, t)
                        stop_at = t + 1  # pause at the next boundary: the transfer is booked
                        deq_pop_front(wq, wmeta)
                        continue
                    rs[RS_KV, r] = KV_LOCAL
                deq_pop_front(wq, wmeta)
                k_s = n_run
                n_run += 1
                s_req[k_s] = r
                s_computed[k_s] = start
                s_gen[k_s] = gen[r]
                s_prompt[k_s] = rq[r, Q_PROMPT]
                s_want[k_s] = want[r]
                s_last_tok[k_s] = last_tok[r]
                s_kv_cap[k_s] = rinfo[r, R_CNT] * bs
                s_full_at[k_s] = ((start + n) // bs + 1) * bs
                s_new[k_s] = n
                out[r, O_STATE] = STATE_RUNNING
                budget -= n
                if out[r, O_SCHED] < 0:
                    out[r, O_SCHED] = t - rq[r, Q_ARRIVAL]
                if gen[r] > 0 and n == 1 and start == n_tok - 1:
                    dc_pi[n_dc] = start
                    n_dc += 1
                else:
                    pf_pi[n_pf] = start
                    pf_n[n_pf] = n
                    pf_tok += n
                    n_pf += 1
            if n_run > n_before:  # admission only happens once every running request is in
                n_sched = n_run
        # ---- step cost ----
        if n_sched == 0:
            if role != 0 and k[K_HELD] > 0:  # P/D: nothing runs until a transfer ends
                steps -= 1
                k[K_STUCK] = 1
                break
            idle += 1
            if idle > max_idle:
                status = STATUS_STALLED
                k[K_ENDED] = 1
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
        for k_s in range(n_run):
            if k_s < n_sched:
                nc = s_computed[k_s] + s_new[k_s]
                s_computed[k_s] = nc
                if nc == s_prompt[k_s] + s_gen[k_s]:
                    g = s_gen[k_s] + 1
                    s_gen[k_s] = g
                    total_out += 1
                    if g == 1:
                        out[s_req[k_s], O_TTFT] = t_end - rq[s_req[k_s], Q_ARRIVAL]
                        if role == ROLE_PREFILL and g < s_want[k_s]:
                            # hand off: it leaves the batch keeping its blocks (P/D)
                            r = s_req[k_s]
                            gen[r] = 1
                            last_tok[r] = t_end
                            _to_outbox(rs, k, r)
                            stop_at = t_end  # pause at this boundary
                            continue
                    else:
                        itl[n_itl] = t_end - s_last_tok[k_s]
                        n_itl += 1
                    s_last_tok[k_s] = t_end
                    if g >= s_want[k_s]:
                        _complete(st, blk, rb, rinfo, rq, out, s_req[k_s], g, t_end)
                        completed += 1
                        continue
            if w != k_s:
                s_req[w] = s_req[k_s]
                s_computed[w] = s_computed[k_s]
                s_gen[w] = s_gen[k_s]
                s_prompt[w] = s_prompt[k_s]
                s_want[w] = s_want[k_s]
                s_last_tok[w] = s_last_tok[k_s]
                s_kv_cap[w] = s_kv_cap[k_s]
                s_full_at[w] = s_full_at[k_s]
            w += 1
        n_run = w
        t = t_end
        clock = t_end

    k[K_T] = t
    k[K_CLOCK] = clock
    k[K_N_ARRIVED] = n_arrived
    k[K_N_RUN] = n_run
    k[K_STEPS] = steps
    k[K_IDLE] = idle
    k[K_STATUS] = status
    k[K_INPUT_TOK] = total_in
    k[K_OUTPUT_TOK] = total_out
    k[K_COMPLETED] = completed
    k[K_DROPPED] = dropped
    k[K_PREEMPT] = preempts
    k[K_BUSY_US] = busy
    sc[SC_N_ITL] = n_itl


@hjit
def unfinished_tokens_nb(out, rs, sl, n_run):
    """Output tokens of the requests still running (slots) or queued when the run stopped."""
    for j in range(n_run):
        out[sl[SL_REQ, j], O_TOKENS] = sl[SL_GEN, j]
    for r in range(out.shape[0]):
        if out[r, O_STATE] == STATE_QUEUED:
            out[r, O_TOKENS] = rs[RS_GEN, r]


@jit
def simulate_vllm_nb(rq, gbase, cfg, ctf, cti, st, blk, slot_block, rb, rinfo, out, sc, log, itl):
    """Run the whole simulation of one instance; returns the ITL samples (gaps between
    consecutive tokens of a request, µs), the front of the caller's buffer ``itl`` (a new one
    when it is too short)."""
    n_req = rq.shape[0]
    init_outputs(out)
    rs = np.empty((N_RS, n_req), np.int64)
    n_gaps, max_ctx = init_requests_nb(rq, rs)
    cap_run = max(1, min(n_req, cfg[CFG_MAX_RUN]))
    k, sl, iq = new_instance_nb(n_req, cap_run)
    for r in range(n_req):  # every request arrives at this instance, when it is sent
        iq[IQ_ARR_REQ, r] = r
        iq[IQ_ARR_T, r] = rq[r, Q_ARRIVAL]
    k[K_N_KNOWN] = n_req
    k[K_ROUTED] = n_req
    if itl.shape[0] < n_gaps:
        itl = np.empty(n_gaps, np.int64)
    sc[SC_N_ITL] = 0
    # two call sites of the step loop, so that LLVM keeps it a function of its own instead
    # of inlining it here (as in driver_nb.simulate_nb)
    if n_req > 0:
        vllm_advance_nb(
            rq,
            gbase,
            cfg,
            new_cost_scratch_nb(ctf, cti, max_ctx),
            (st, blk, slot_block, rb, rinfo),
            rs,
            out,
            sc,
            log,
            itl,
            k,
            sl,
            iq,
            new_work_nb(cap_run, max_ctx, st[ST_BS]),
            TIME_MAX,
            True,
        )
    else:
        vllm_advance_nb(
            rq,
            gbase,
            cfg,
            new_cost_scratch_nb(ctf, cti, max_ctx),
            (st, blk, slot_block, rb, rinfo),
            rs,
            out,
            sc,
            log,
            itl,
            k,
            sl,
            iq,
            new_work_nb(cap_run, max_ctx, st[ST_BS]),
            TIME_MAX,
            True,
        )
    unfinished_tokens_nb(out, rs, sl, k[K_N_RUN])
    n_itl = sc[SC_N_ITL]
    store_scalars(
        sc,
        k[K_CLOCK],
        k[K_COMPLETED],
        k[K_WQ_N],
        k[K_N_RUN],
        k[K_DROPPED],
        k[K_INPUT_TOK],
        k[K_OUTPUT_TOK],
        k[K_PREEMPT],
        st[ST_PEAK],
        st[ST_HITS],
        st[ST_MISSES],
        0,
        k[K_STEPS],
        k[K_STATUS],
        n_itl,
        k[K_BUSY_US],
    )
    return itl[:n_itl]
