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

from ._jit import jit
from .kvcache_nb import (ST_BS, ST_FRESH, ST_HEAD, ST_HITS, ST_MISSES, ST_PEAK, ST_TOTAL,
                         ST_USED, _remove, free_count_nb, release_nb, req_append_nb,
                         take_block_nb)
from .sched_common_nb import (CFG_BLOCKS, CFG_BUDGET, CFG_HORIZON, CFG_MAX_IDLE, CFG_MAX_RUN,
                              CFG_PREFIX_CACHE, CFG_THRESHOLD, SC_BUSY_US, SC_CLOCK,
                              SC_COMPLETED, SC_DROPPED, SC_HITS, SC_INPUT_TOK, SC_KV_FAIL,
                              SC_KV_PEAK, SC_MISSES, SC_N_ITL, SC_OUTPUT_TOK, SC_PREEMPT,
                              SC_QUEUED, SC_RUNNING, SC_STATUS, SC_STEPS, STATE_DONE,
                              STATE_DROPPED, STATE_QUEUED, STATE_RUNNING, STATUS_HORIZON,
                              STATUS_OK, STATUS_STALLED, deq_front, deq_pop_front,
                              deq_push_back, deq_push_front, key_slot, log_step)
from .stepcost_nb import N_COMPONENTS, step_time_nb


@jit
def _pop_evict(kv):
    """Pop the free-list head; its cached key is evicted if the table still points to it."""
    st = kv.st
    if st[ST_FRESH] < st[ST_TOTAL]:  # never-used region
        b = st[ST_FRESH]
        st[ST_FRESH] += 1
        kv.slot[b] = -1
    else:
        b = st[ST_HEAD]
        if b < 0:
            return -1
        _remove(kv, b)
        s = kv.slot[b]
        if s >= 0:
            if kv.slot_block[s] == b:
                kv.slot_block[s] = -1
            kv.slot[b] = -1
    kv.ntok[b] = 0
    kv.ref[b] = 0
    return b


@jit
def _hits(kv, rq, r, n_tok, use_cache, out):
    """Leading resident full blocks of r's first n_tok - 1 tokens (at least one token is
    always computed, as in vLLM)."""
    if not use_cache:
        return 0
    bs = kv.st[ST_BS]
    n = (n_tok - 1) // bs
    c = 0
    for j in range(n):
        b = kv.slot_block[key_slot(rq, r, (j + 1) * bs, bs)]
        if b < 0:
            break
        out[c] = b
        c += 1
    return c


@jit
def _alloc(kv, rq, r, total_tok, cached, n_cached, use_cache):
    """allocate_slots: blocks for the first total_tok tokens of r (attaching n_cached cached
    blocks first when r holds none); False, with nothing changed, when they do not fit."""
    bs = kv.st[ST_BS]
    have = kv.rb_cnt[r]
    need = (total_tok + bs - 1) // bs - have - n_cached
    n_free_cached = 0
    for i in range(n_cached):
        if kv.ref[cached[i]] == 0:
            n_free_cached += 1
    if need > free_count_nb(kv) - n_free_cached:
        return False
    st = kv.st
    for i in range(n_cached):
        b = cached[i]
        if kv.ref[b] == 0:
            st[ST_USED] += 1
            _remove(kv, b)
            if st[ST_USED] > st[ST_PEAK]:
                st[ST_PEAK] = st[ST_USED]
        kv.ref[b] += 1
        st[ST_HITS] += 1
        req_append_nb(kv, r, b)
    if n_cached > 0:
        kv.rtok[r] = n_cached * bs
    for _ in range(need):
        b = _pop_evict(kv)
        take_block_nb(kv, b)
        req_append_nb(kv, r, b)
    # cache the blocks that are now full
    if use_cache:
        full_before = kv.rtok[r] // bs
        full_after = total_tok // bs
        off = kv.rb_off[r]
        for j in range(full_before, full_after):
            s = key_slot(rq, r, (j + 1) * bs, bs)
            b = kv.rb[off + j]
            if kv.slot[b] < 0 and kv.slot_block[s] < 0:
                kv.slot[b] = s
                kv.slot_block[s] = b
    if total_tok > kv.rtok[r]:
        kv.rtok[r] = total_tok
    return True


@jit
def simulate_vllm_nb(rq, cfg, ct, kv, out, sc, log, itl_cap):
    """Run the whole simulation; returns the ITL samples (gaps between consecutive tokens of a
    request, µs) of completed requests."""
    n_req = rq.arrival_us.shape[0]
    budget_max = cfg[CFG_BUDGET]
    max_run = cfg[CFG_MAX_RUN]
    thr = cfg[CFG_THRESHOLD]
    total_blocks = cfg[CFG_BLOCKS]
    max_idle = cfg[CFG_MAX_IDLE]
    use_cache = cfg[CFG_PREFIX_CACHE] != 0
    horizon = cfg[CFG_HORIZON]
    bs = kv.st[ST_BS]
    plen = rq.prompt_tok
    olen = rq.output_tok
    arr = rq.arrival_us

    ncomp = np.zeros(n_req, np.int64)  # tokens whose KV is computed
    gen = np.zeros(n_req, np.int64)  # output tokens generated so far
    last_tok = np.zeros(n_req, np.int64)  # time of the latest token
    sched_n = np.zeros(n_req, np.int64)
    out.ttft_us[:] = -1
    out.e2e_us[:] = -1
    out.sched_delay_us[:] = -1
    out.done_us[:] = -1
    out.state[:] = 0
    out.n_preempt[:] = 0
    out.n_tokens[:] = 0

    wq = np.empty(max(n_req, 1), np.int64)
    wmeta = np.zeros(2, np.int64)
    cap_run = max(1, min(n_req, max_run))
    run = np.empty(cap_run, np.int64)
    n_run = 0

    max_tok = 1
    for r in range(n_req):
        t = plen[r] + olen[r]
        if t > max_tok:
            max_tok = t
    cached = np.empty(max_tok // bs + 2, np.int64)
    pf_pi = np.empty(cap_run, np.int64)
    pf_n = np.empty(cap_run, np.int64)
    dc_pi = np.empty(cap_run, np.int64)
    comps = np.zeros(N_COMPONENTS)

    itl = np.empty(max(itl_cap, 16), np.int64)
    n_itl = 0

    t = 0
    na = 0
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
        while na < n_req and arr[na] <= t:
            r = na
            na += 1
            seq = plen[r] + olen[r] - 1
            if seq < plen[r]:
                seq = plen[r]
            if (seq + bs - 1) // bs > total_blocks:
                dropped += 1
                out.state[r] = STATE_DROPPED
                continue
            deq_push_back(wq, wmeta, r)
            out.state[r] = STATE_QUEUED
            total_in += plen[r]
        if n_run == 0 and wmeta[1] == 0:
            if na >= n_req:
                break
            t = arr[na]
            continue
        if horizon > 0 and t > horizon:
            status = STATUS_HORIZON
            break
        steps += 1
        budget = budget_max
        preempted = False
        # ---- running requests, in order, within the budget ----
        i = 0
        while i < n_run and budget > 0:
            r = run[i]
            n = plen[r] + gen[r] - ncomp[r]
            if 0 < thr < n:
                n = thr
            if budget < n:
                n = budget
            ok = True
            while not _alloc(kv, rq, r, ncomp[r] + n, cached, 0, use_cache):
                v = run[n_run - 1]
                n_run -= 1
                release_nb(kv, v)
                ncomp[v] = 0
                deq_push_front(wq, wmeta, v)
                out.state[v] = STATE_QUEUED
                out.n_preempt[v] += 1
                preempts += 1
                preempted = True
                if v == r:
                    ok = False
                    break
            if not ok:
                break
            sched_n[r] = n
            budget -= n
            i += 1
        n_sched = i
        # ---- admit waiting requests ----
        if not preempted:
            while wmeta[1] > 0 and budget > 0 and n_run < max_run:
                r = deq_front(wq, wmeta)
                n_tok = plen[r] + gen[r]
                c = _hits(kv, rq, r, n_tok, use_cache, cached)
                n = n_tok - c * bs
                if 0 < thr < n:
                    n = thr
                if budget < n:
                    n = budget
                if not _alloc(kv, rq, r, c * bs + n, cached, c, use_cache):
                    break
                deq_pop_front(wq, wmeta)
                run[n_run] = r
                n_run += 1
                out.state[r] = STATE_RUNNING
                ncomp[r] = c * bs
                sched_n[r] = n
                budget -= n
                if out.sched_delay_us[r] < 0:
                    out.sched_delay_us[r] = t - arr[r]
                n_sched = n_run
        # ---- step cost ----
        n_pf = 0
        n_dc = 0
        pf_tok = 0
        for k in range(n_sched):
            r = run[k]
            if gen[r] > 0 and ncomp[r] == plen[r] + gen[r] - 1:
                dc_pi[n_dc] = ncomp[r]
                n_dc += 1
            else:
                pf_pi[n_pf] = ncomp[r]
                pf_n[n_pf] = sched_n[r]
                pf_tok += sched_n[r]
                n_pf += 1
        if n_sched == 0:
            idle += 1
            if idle > max_idle:
                status = STATUS_STALLED
                break
        else:
            idle = 0
        step_us = step_time_nb(pf_pi, pf_n, n_pf, dc_pi, n_dc, ct, comps)
        log_step(log, sc, t, step_us, n_pf, n_dc, budget_max - budget, n_run, wmeta[1],
                 kv.st[ST_USED], pf_tok)
        t_end = t + step_us
        if n_sched > 0:
            busy += step_us
        # ---- advance the scheduled requests ----
        k = 0
        w = 0
        for k in range(n_run):
            r = run[k]
            finished = False
            if k < n_sched:
                ncomp[r] += sched_n[r]
                if ncomp[r] == plen[r] + gen[r]:
                    gen[r] += 1
                    total_out += 1
                    out.n_tokens[r] = gen[r]
                    if gen[r] == 1:
                        out.ttft_us[r] = t_end - arr[r]
                    else:
                        if n_itl >= itl.shape[0]:
                            itl2 = np.empty(2 * itl.shape[0] + 16, np.int64)
                            itl2[: itl.shape[0]] = itl
                            itl = itl2
                        itl[n_itl] = t_end - last_tok[r]
                        n_itl += 1
                    last_tok[r] = t_end
                    if gen[r] >= olen[r]:
                        finished = True
            if finished:
                release_nb(kv, r)
                out.e2e_us[r] = t_end - arr[r]
                out.done_us[r] = t_end
                out.state[r] = STATE_DONE
                completed += 1
            else:
                run[w] = r
                w += 1
        n_run = w
        t = t_end
        clock = t_end

    sc[SC_CLOCK] = clock
    sc[SC_COMPLETED] = completed
    sc[SC_QUEUED] = wmeta[1]
    sc[SC_RUNNING] = n_run
    sc[SC_DROPPED] = dropped
    sc[SC_INPUT_TOK] = total_in
    sc[SC_OUTPUT_TOK] = total_out
    sc[SC_PREEMPT] = preempts
    sc[SC_KV_PEAK] = kv.st[ST_PEAK]
    sc[SC_HITS] = kv.st[ST_HITS]
    sc[SC_MISSES] = kv.st[ST_MISSES]
    sc[SC_KV_FAIL] = 0
    sc[SC_STEPS] = steps
    sc[SC_STATUS] = status
    sc[SC_N_ITL] = n_itl
    sc[SC_BUSY_US] = busy
    return itl[:n_itl].copy()
