"""Pieces shared by both scheduler kernels: request/config layouts, queues, prefix keys."""

from __future__ import annotations

from infersweep._jit import hjit
from infersweep.costmodel.stepcost_nb import round_half_away_nb
from infersweep.schema import (
    CFG_LITERAL,
    LOG_KV_USED,
    LOG_N_DECODE,
    LOG_N_PREFILL,
    LOG_PREFILL_TOK,
    LOG_RUNNING,
    LOG_STEP_US,
    LOG_TIME,
    LOG_TOKENS,
    LOG_WAITING,
    O_DONE,
    O_E2E,
    O_PREEMPT,
    O_SCHED,
    O_STATE,
    O_TOKENS,
    O_TTFT,
    P_REQ_FIXED,
    P_REQ_OUTPUT,
    P_REQ_PROMPT,
    P_REQ_STEPS,
    Q_GROUP,
    Q_OUTPUT,
    Q_PREFIX,
    Q_PROMPT,
    Q_SLOT,
    SC_BUSY_US,
    SC_CLOCK,
    SC_COMPLETED,
    SC_DROPPED,
    SC_HITS,
    SC_INPUT_TOK,
    SC_KV_FAIL,
    SC_KV_PEAK,
    SC_LIVELOCK,
    SC_LOG_N,
    SC_MISSES,
    SC_N_ITL,
    SC_OUTPUT_TOK,
    SC_PREEMPT,
    SC_QUEUED,
    SC_RUNNING,
    SC_STATUS,
    SC_STEPS,
    STATE_PENDING,
    STATUS_ITL_FULL,
)

# The layouts (Q_*, O_*, CFG_*, SC_*, LOG_*) and codes (STATE_*, STATUS_*) are declared in
# infersweep.schema.

# a deque's meta array: ring-buffer head and length
DEQ_HEAD = 0
DEQ_N = 1


@hjit
def deq_push_back(q, meta, r):
    cap = q.shape[0]
    q[(meta[DEQ_HEAD] + meta[DEQ_N]) % cap] = r
    meta[DEQ_N] += 1


@hjit
def deq_push_front(q, meta, r):
    cap = q.shape[0]
    meta[DEQ_HEAD] = (meta[DEQ_HEAD] - 1) % cap
    q[meta[DEQ_HEAD]] = r
    meta[DEQ_N] += 1


@hjit
def deq_front(q, meta):
    return q[meta[DEQ_HEAD]]


@hjit
def deq_pop_front(q, meta):
    cap = q.shape[0]
    r = q[meta[DEQ_HEAD]]
    meta[DEQ_HEAD] = (meta[DEQ_HEAD] + 1) % cap
    meta[DEQ_N] -= 1
    return r


@hjit
def key_slot(rq, gbase, r, end_tok, block):
    """Prefix-table slot of the full block that ends at token ``end_tok`` of request r."""
    g = rq[r, Q_GROUP]
    if g >= 0 and end_tok <= rq[r, Q_PREFIX]:
        return gbase[g] + end_tok // block - 1
    return rq[r, Q_SLOT] + end_tok // block - 1


@hjit
def leading_hits_nb(slot_block, rq, gbase, r, n_blocks, block, out):
    """The leading blocks of request r whose prefix key is in the table (the prefix-cache
    hits): their ids go to out; returns how many."""
    c = 0
    for j in range(n_blocks):
        b = slot_block[key_slot(rq, gbase, r, (j + 1) * block, block)]
        if b < 0:
            break
        out[c] = b
        c += 1
    return c


@hjit
def init_outputs(out):
    for i in range(out.shape[0]):
        out[i, O_TTFT] = -1
        out[i, O_E2E] = -1
        out[i, O_SCHED] = -1
        out[i, O_DONE] = -1
        out[i, O_STATE] = STATE_PENDING
        out[i, O_PREEMPT] = 0
        out[i, O_TOKENS] = 0


@hjit
def log_step(log, sc, now, step_us, n_pf, n_dc, tokens, running, waiting, kv_used, pf_tok):
    i = sc[SC_LOG_N]
    if i < log.shape[0]:
        log[i, LOG_TIME] = now
        log[i, LOG_STEP_US] = step_us
        log[i, LOG_N_PREFILL] = n_pf
        log[i, LOG_N_DECODE] = n_dc
        log[i, LOG_TOKENS] = tokens
        log[i, LOG_RUNNING] = running
        log[i, LOG_WAITING] = waiting
        log[i, LOG_KV_USED] = kv_used
        log[i, LOG_PREFILL_TOK] = pf_tok
        sc[SC_LOG_N] = i + 1


@hjit
def store_scalars(
    sc,
    clock,
    completed,
    queued,
    running,
    dropped,
    total_in,
    total_out,
    preempts,
    kv_peak,
    hits,
    misses,
    kv_fail,
    steps,
    status,
    n_itl,
    busy,
):
    """Fill a run's counters (``SC_*``) at its end."""
    sc[SC_CLOCK] = clock
    sc[SC_COMPLETED] = completed
    sc[SC_QUEUED] = queued
    sc[SC_RUNNING] = running
    sc[SC_DROPPED] = dropped
    sc[SC_INPUT_TOK] = total_in
    sc[SC_OUTPUT_TOK] = total_out
    sc[SC_PREEMPT] = preempts
    sc[SC_KV_PEAK] = kv_peak
    sc[SC_HITS] = hits
    sc[SC_MISSES] = misses
    sc[SC_KV_FAIL] = kv_fail
    sc[SC_STEPS] = steps
    sc[SC_STATUS] = status
    sc[SC_N_ITL] = n_itl
    sc[SC_BUSY_US] = busy


ITL_LIVELOCK_FACTOR = 64  # literal blis: needing 64x the first ITL estimate means a livelock


@hjit
def next_itl_room_nb(sc, cfg, itl_cap, itl_cap0):
    """The retry policy of one point, after an attempt with ITL room ``itl_cap`` (the first
    had ``itl_cap0``): 0 when the attempt is the result, else the room of the next attempt,
    which runs with ``cfg``.  A run whose ITL buffer filled (preemptions recomputed many
    tokens) gets four times the room; a literal blis run the reference would never finish
    (SC_LIVELOCK, or an ITL need beyond ITL_LIVELOCK_FACTOR times the first estimate) is
    switched to safe mode (cfg[CFG_LITERAL] = 0) and restarts with the first room."""
    literal = cfg[CFG_LITERAL] > 0
    if sc[SC_STATUS] == STATUS_ITL_FULL:
        if not literal or 4 * itl_cap <= ITL_LIVELOCK_FACTOR * itl_cap0:
            return 4 * itl_cap
    elif not (literal and sc[SC_LIVELOCK] > 0):
        return 0
    cfg[CFG_LITERAL] = 0
    return itl_cap0


@hjit
def add_request_overheads_nb(rq, out, itl, ctf):
    """Client-side latency outside the engine step (hardware fields RequestOverheadMicros,
    PromptTokenOverheadMicros, FirstTokenDelaySteps, OutputTokenOverheadMicros): each request's
    TTFT and E2E grow by ``fixed + per_prompt_token * prompt + steps * its mean inter-token
    time`` (rounded to µs), its E2E (and completion time) by
    ``per_output_token * (output - 1)`` more, and every inter-token gap by ``per_output_token``.
    Nothing changes when all four are 0 (the default)."""
    fixed = ctf[P_REQ_FIXED]
    per_p = ctf[P_REQ_PROMPT]
    per_o = ctf[P_REQ_OUTPUT]
    steps = ctf[P_REQ_STEPS]
    if fixed == 0.0 and per_p == 0.0 and per_o == 0.0 and steps == 0.0:
        return
    for r in range(out.shape[0]):
        if out[r, O_TTFT] >= 0:
            x = fixed + per_p * float(rq[r, Q_PROMPT])
            if steps > 0.0 and out[r, O_E2E] >= 0 and rq[r, Q_OUTPUT] > 1:
                x += steps * float(out[r, O_E2E] - out[r, O_TTFT]) / float(rq[r, Q_OUTPUT] - 1)
            pre = round_half_away_nb(x)
            out[r, O_TTFT] += pre
            if out[r, O_E2E] >= 0:
                n_after = rq[r, Q_OUTPUT] - 1
                post = round_half_away_nb(per_o * float(n_after if n_after > 0 else 0))
                out[r, O_E2E] += pre + post
                out[r, O_DONE] += pre + post
    gap = round_half_away_nb(per_o)
    if gap > 0:
        for i in range(itl.shape[0]):
            itl[i] += gap
