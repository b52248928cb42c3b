"""Pieces shared by both scheduler kernels: request/config layouts, queues, prefix keys."""

from __future__ import annotations

from infersweep._jit import hjit

# Requests: rq[i, :] (int64), sorted by arrival ------------------------------------------
Q_ARRIVAL = 0  # arrival time (µs)
Q_PROMPT = 1  # prompt tokens
Q_OUTPUT = 2  # output tokens
Q_GROUP = 3  # shared-prefix group, -1 = none
Q_PREFIX = 4  # tokens of the group's prefix this request starts with
Q_SLOT = 5  # first prefix-table slot of the request's own keys
N_Q = 6

# Per-request outputs: out[i, :] (int64) ----------------------------------------------------
O_TTFT = 0  # time to first token (µs, -1 = none)
O_E2E = 1  # end-to-end latency (µs, -1 = not completed)
O_SCHED = 2  # scheduling delay (µs, -1 = never scheduled)
O_DONE = 3  # completion time (absolute µs, -1 = not completed)
O_STATE = 4  # STATE_*
O_PREEMPT = 5  # times preempted
O_TOKENS = 6  # output tokens generated (counted per the semantics)
N_O = 7

STATE_PENDING = 0  # not yet arrived when the run ended
STATE_QUEUED = 1
STATE_RUNNING = 2
STATE_DONE = 3
STATE_DROPPED = 4

# Config (int64 array) ---------------------------------------------------------------------
CFG_BUDGET = 0  # --max-num-scheduled-tokens
CFG_MAX_RUN = 1  # --max-num-running-reqs
CFG_THRESHOLD = 2  # --long-prefill-token-threshold (0 = off)
CFG_BLOCK = 3  # --block-size-in-tokens
CFG_BLOCKS = 4  # total KV blocks
CFG_MAX_IDLE = 5  # consecutive steps without progress before stopping (stall guard)
CFG_PREFIX_CACHE = 6  # 1 = prefix caching on (vllm semantics)
CFG_HORIZON = 7  # stop once the clock passes this (µs); <= 0 = no horizon
CFG_LITERAL = 8  # blis: 1 = the reference's preemption quirks (Q3, rollback drops the list)
N_CFG = 9

# Scalar results (int64 array) ---------------------------------------------------------------
SC_CLOCK = 0  # time of the last event (µs)
SC_COMPLETED = 1
SC_QUEUED = 2
SC_RUNNING = 3
SC_DROPPED = 4
SC_INPUT_TOK = 5
SC_OUTPUT_TOK = 6
SC_PREEMPT = 7
SC_KV_PEAK = 8
SC_HITS = 9
SC_MISSES = 10
SC_KV_FAIL = 11
SC_STEPS = 12
SC_STATUS = 13
SC_N_ITL = 14
SC_LOG_N = 15
SC_BUSY_US = 16  # time with a non-empty step running
SC_LIVELOCK = 17  # blis literal mode: 1 = the reference would not have terminated (see batch_nb)
N_SC = 18

STATUS_OK = 0
STATUS_STALLED = 1  # no progress possible; stopped
STATUS_HORIZON = 2  # stopped at the horizon
STATUS_ITL_FULL = 3  # internal: the ITL buffer was too small (the wrapper retries)
STATUS_UNSERVABLE = 4  # set after the kernel: it ended, but no request completed

# Step log columns (optional; int64[cap, N_LOG]) -------------------------------------------
LOG_TIME = 0
LOG_STEP_US = 1
LOG_N_PREFILL = 2
LOG_N_DECODE = 3
LOG_TOKENS = 4  # tokens scheduled by batch formation (the budget used)
LOG_RUNNING = 5
LOG_WAITING = 6
LOG_KV_USED = 7
LOG_PREFILL_TOK = 8
N_LOG = 9

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
