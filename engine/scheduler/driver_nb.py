"""Jitted pieces of the driver (``infersweep.scheduler.driver.simulate_point``, the one way a
point is simulated): the reset of the KV pool before each attempt.

Here, and only here: the KV pool's set-up, each request's block-list capacity, the size of the
ITL buffer and the attempts of the retry policy (``common_nb.next_itl_room_nb``).
"""

from __future__ import annotations

from infersweep._jit import hjit
from infersweep.schema import (
    R_CNT,
    R_ORD,
    R_TOK,
    ST_BS,
    ST_HEAD,
    ST_TAIL,
    ST_TOTAL,
)


@hjit
def reset_pool_nb(st, slot_block, rinfo, sc, total, bs):
    """An empty pool and zero counters before an attempt."""
    for i in range(st.shape[0]):
        st[i] = 0
    st[ST_HEAD] = -1
    st[ST_TAIL] = -1
    st[ST_TOTAL] = total
    st[ST_BS] = bs
    for i in range(slot_block.shape[0]):
        slot_block[i] = -1
    for r in range(rinfo.shape[0]):
        rinfo[r, R_CNT] = 0
        rinfo[r, R_TOK] = 0
        rinfo[r, R_ORD] = 1
    for i in range(sc.shape[0]):
        sc[i] = 0
