"""The one kernel entry: a simulation of one point, from packed requests to per-request
outputs, counters and summary metrics.  ``infersweep.scheduler.driver.run_jobs`` calls it for
every simulation (``run``, ``validate``, ``calibrate``, ``sweep``, the Python API).

Here, and only here: the KV pool's set-up, each request's block-list capacity, the size of the
ITL buffer and the attempts of the retry policy (``common_nb.next_itl_room_nb``).
"""

from __future__ import annotations

import numpy as np
from numba.core import types
from numba.extending import overload

from infersweep._jit import jit
from infersweep.metrics.summary_nb import summarize_nb
from infersweep.scheduler.blis_nb import simulate_blis_nb
from infersweep.scheduler.common_nb import next_itl_room_nb
from infersweep.scheduler.vllm_nb import simulate_vllm_nb
from infersweep.schema import (
    CFG_BLOCK,
    CFG_BLOCKS,
    CFG_LITERAL,
    N_B,
    N_R,
    N_SC,
    N_ST,
    Q_OUTPUT,
    Q_PROMPT,
    R_CNT,
    R_OFF,
    R_ORD,
    R_TOK,
    SC_LIVELOCK,
    ST_BS,
    ST_HEAD,
    ST_TAIL,
    ST_TOTAL,
)


def _kernel(blis, rq, gbase, cfg, ctf, cti, st, blk, slot_block, rb, rinfo, out, sc, log, itl_cap):
    """The scheduler kernel of the semantics ``blis`` selects (jitted code only)."""
    raise NotImplementedError("called from jitted code only")


@overload(_kernel)
def _kernel_for(blis, *args):
    """Chosen at typing time, from the type of ``blis``: only that kernel is typed and compiled
    (an ``if`` on the value would compile both)."""
    if isinstance(blis, types.NoneType):
        return lambda blis, *args: simulate_vllm_nb(*args)
    return lambda blis, *args: simulate_blis_nb(*args)


@jit
def simulate_nb(rq, gbase, cfg, n_slots, ctf, cti, out, sc, log, res, blis):
    """Simulate requests ``rq`` (``Q_*`` columns) with settings ``cfg`` (``CFG_*``) on the cost
    tables ``ctf``/``cti``; fills ``out`` (``O_*``), ``sc`` (``SC_*``), the step ``log`` (as
    many rows as it has; zero rows turns logging off and the fast decode loops on) and the
    summary ``res`` (``M_*``); returns the ITL samples (µs).

    ``blis`` selects the semantics: ``None`` for vllm, ``True`` for blis.  It is a type, not a
    value, to numba (see ``_kernel``): each semantics is a specialisation of its own that
    compiles (and loads from the cache) only its own kernel."""
    n = rq.shape[0]
    literal = cfg[CFG_LITERAL] > 0
    total = cfg[CFG_BLOCKS]
    bs = cfg[CFG_BLOCK]
    # block-list capacity: in literal blis mode a request evicted and visited again in the
    # same pass (Q3) keeps a prefill chunk's blocks while queued and appends its whole prompt
    # after them when admitted again, so it may hold about twice as many
    st = np.zeros(N_ST, np.int64)
    rinfo = np.zeros((n, N_R), np.int64)
    cap_sum = 0
    itl_cap = n + 16  # ITL room of the first attempt: one sample per output token, and some
    output_tok = np.empty(n, np.int64)
    for r in range(n):
        o = rq[r, Q_OUTPUT]
        output_tok[r] = o
        itl_cap += o
        rinfo[r, R_OFF] = cap_sum
        c = (rq[r, Q_PROMPT] + (o if o > 1 else 1)) // bs + 2
        cap_sum += 2 * c + 2 if literal else c
    blk = np.empty((total, N_B), np.int64)
    slot_block = np.empty(max(n_slots, 1), np.int64)
    rb = np.empty(max(cap_sum, 1), np.int64)
    itl_cap0 = itl_cap
    run_cfg = cfg.copy()
    while True:  # the attempts of next_itl_room_nb
        st[:] = 0
        st[ST_HEAD] = -1
        st[ST_TAIL] = -1
        st[ST_TOTAL] = total
        st[ST_BS] = bs
        slot_block[:] = -1
        for r in range(n):
            rinfo[r, R_CNT] = 0
            rinfo[r, R_TOK] = 0
            rinfo[r, R_ORD] = 1
        for i in range(N_SC):
            sc[i] = 0
        # two call sites of the kernel (the first attempt and the retries), so that LLVM keeps
        # it a function of its own instead of inlining it here, which made it up to 13 % slower
        if itl_cap == itl_cap0:
            itl = _kernel(
                blis, rq, gbase, run_cfg, ctf, cti, st, blk, slot_block, rb, rinfo, out, sc, log,
                itl_cap,
            )  # fmt: skip
        else:
            itl = _kernel(
                blis, rq, gbase, run_cfg, ctf, cti, st, blk, slot_block, rb, rinfo, out, sc, log,
                itl_cap,
            )  # fmt: skip
        itl_cap = next_itl_room_nb(sc, run_cfg, itl_cap, itl_cap0)
        if itl_cap == 0:
            break
    if run_cfg[CFG_LITERAL] != cfg[CFG_LITERAL]:
        sc[SC_LIVELOCK] = 1  # rerun in safe mode (in block lists sized for literal mode)
    summarize_nb(out, sc, itl, output_tok, blis is not None, total, res)
    return itl
