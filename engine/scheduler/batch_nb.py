"""Many simulations in one kernel call: ``prange`` over points, each point writing only its
own output row (and, when asked, its own slice of the per-request outputs)."""

from __future__ import annotations

import numpy as np

from infersweep._jit import jit, pjit, prange
from infersweep.metrics.summary_nb import summarize_nb
from infersweep.scheduler.blis_nb import simulate_blis_nb
from infersweep.scheduler.common_nb import next_itl_room_nb
from infersweep.scheduler.vllm_nb import simulate_vllm_nb
from infersweep.schema import (
    CFG_BLOCK,
    CFG_BLOCKS,
    CFG_LITERAL,
    N_B,
    N_LOG,
    N_O,
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

SEM_VLLM = 0
SEM_BLIS = 1


@jit
def simulate_one_nb(rq, gbase, cfg, blis, n_slots, ctf, cti, out, res):
    """One simulation with its own KV pool; fills per-request ``out`` and summary ``res``.
    Attempts follow ``next_itl_room_nb``, as in ``infersweep.scheduler.driver.run_scheduler``."""
    n = rq.shape[0]
    literal = blis and cfg[CFG_LITERAL] > 0
    total = cfg[CFG_BLOCKS]
    bs = cfg[CFG_BLOCK]
    st = np.zeros(N_ST, np.int64)
    rinfo = np.zeros((n, N_R), np.int64)
    cap_sum = 0
    itl_cap = n + 16
    output_tok = np.empty(n, np.int64)
    for r in range(n):
        o = rq[r, Q_OUTPUT]
        output_tok[r] = o
        itl_cap += o
        rinfo[r, R_OFF] = cap_sum
        c = (rq[r, Q_PROMPT] + (o if o > 1 else 1)) // bs + 2
        cap_sum += 2 * c + 2 if literal else c  # infersweep.scheduler.driver.block_list_capacity
    blk = np.empty((total, N_B), np.int64)
    slot_block = np.empty(max(n_slots, 1), np.int64)
    rb = np.empty(max(cap_sum, 1), np.int64)
    sc = np.zeros(N_SC, np.int64)
    log = np.zeros((0, N_LOG), np.int64)
    itl_cap0 = itl_cap
    run_cfg = cfg.copy()
    while True:
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
        sc[:] = 0
        if blis:
            itl = simulate_blis_nb(
                rq, gbase, run_cfg, ctf, cti, st, blk, slot_block, rb, rinfo, out, sc, log, itl_cap
            )
        else:
            itl = simulate_vllm_nb(
                rq, gbase, run_cfg, ctf, cti, st, blk, slot_block, rb, rinfo, out, sc, log, itl_cap
            )
        itl_cap = next_itl_room_nb(sc, run_cfg, itl_cap, itl_cap0)
        if itl_cap == 0:
            break
    if run_cfg[CFG_LITERAL] != cfg[CFG_LITERAL]:
        sc[SC_LIVELOCK] = 1  # rerun in safe mode (in block lists sized for literal mode)
    summarize_nb(out, sc, itl, output_tok, blis, total, res)


@pjit
def simulate_points_nb(
    rq_all,
    req_off,
    gb_all,
    gb_off,
    cfg_all,
    sem,
    n_slots,
    cm_idx,
    ctf_all,
    ctf_off,
    cti_all,
    cti_off,
    keep,
    out_req,
    out_metrics,
):
    """Simulate every point i: requests rq_all[req_off[i]:req_off[i+1]], config cfg_all[i],
    cost tables number cm_idx[i].  Writes out_metrics[i] (and out_req rows when ``keep``)."""
    for i in prange(cfg_all.shape[0]):
        a = req_off[i]
        b = req_off[i + 1]
        c = cm_idx[i]
        out = np.empty((b - a, N_O), np.int64)
        simulate_one_nb(
            rq_all[a:b],
            gb_all[gb_off[i] : gb_off[i + 1]],
            cfg_all[i],
            sem[i] == SEM_BLIS,
            n_slots[i],
            ctf_all[ctf_off[c] : ctf_off[c + 1]],
            cti_all[cti_off[c] : cti_off[c + 1]],
            out,
            out_metrics[i],
        )
        if keep:
            out_req[a:b] = out
