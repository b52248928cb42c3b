"""Paged KV-cache block pool (numba), shared by both scheduler semantics.

The pool follows the reference's single-tier cache (REFERENCE §6.4): a free list that pops
from the head and takes released blocks at the tail (in reverse order of the request's
blocks), reference counts, and a prefix table from block content to block.

Prefix keys need no token hashing: a full block that ends at position ``e`` of request ``r``'s
sequence is identified by (r, e), or by (group, e) when ``e`` lies inside the request's shared
prefix.  Only keys that can ever be looked up (full-block boundaries inside the looked-up
range) get a slot in ``slot_block``; every other hash of the reference can never match a
lookup, so it is represented by "no slot" (-1).

Blocks ``fresh .. total-1`` form the never-used head of the free list (no per-block
initialisation is needed for them); the explicit doubly-linked list holds released blocks.

The pool is five plain arrays (``st``, ``blk``, ``slot_block``, ``rb``, ``rinfo``; set up in
``driver_nb.simulate``) passed
separately to every function: numba reference-counts each member of a tuple argument on every
call, which would dominate these O(1) operations.
"""

from __future__ import annotations

from infersweep._jit import hjit
from infersweep.schema import (
    B_KNEXT,
    B_NTOK,
    B_NXT,
    B_PREV,
    B_REF,
    B_SLOT,
    R_CNT,
    R_OFF,
    R_ORD,
    R_TOK,
    ST_FRESH,
    ST_HEAD,
    ST_HITS,
    ST_MISSES,
    ST_PEAK,
    ST_TAIL,
    ST_TOTAL,
    ST_USED,
)

# The pool's layouts (ST_*, B_*, R_*) are declared in infersweep.schema.

FROM_FRESH = -2  # rollback marker: the popped block came from the never-used region


@hjit
def free_count_nb(st):
    return st[ST_TOTAL] - st[ST_USED]


@hjit
def append_tail_nb(st, blk, b):
    blk[b, B_NXT] = -1
    t = st[ST_TAIL]
    if t >= 0:
        blk[t, B_NXT] = b
        blk[b, B_PREV] = t
        st[ST_TAIL] = b
    else:
        blk[b, B_PREV] = -1
        st[ST_HEAD] = b
        st[ST_TAIL] = b


@hjit
def remove_nb(st, blk, b):
    """Detach a block of the explicit free list (a cached block being reused)."""
    p = blk[b, B_PREV]
    n = blk[b, B_NXT]
    if p >= 0:
        blk[p, B_NXT] = n
    else:
        st[ST_HEAD] = n
    if n >= 0:
        blk[n, B_PREV] = p
    else:
        st[ST_TAIL] = p
    blk[b, B_PREV] = -1
    blk[b, B_NXT] = -1


@hjit
def prepend_nb(st, blk, b):
    """Put a block back at the head of the explicit free list (rollback of a pop)."""
    h = st[ST_HEAD]
    blk[b, B_PREV] = -1
    blk[b, B_NXT] = h
    if h >= 0:
        blk[h, B_PREV] = b
    st[ST_HEAD] = b
    if st[ST_TAIL] < 0:
        st[ST_TAIL] = b


@hjit
def pop_block_nb(st, blk, slot_block, chained):
    """Pop the head of the free list and erase its prefix key (-1 when none is free).

    ``chained`` (vllm semantics): the key maps to every resident block registered under it, in
    registration order (``register_chained_nb``); the block leaves that chain.  Otherwise the
    table entry is deleted unconditionally, as the reference does."""
    if st[ST_FRESH] < st[ST_TOTAL]:
        b = st[ST_FRESH]
        st[ST_FRESH] += 1
    else:
        b = st[ST_HEAD]
        if b < 0:
            return -1
        remove_nb(st, blk, b)
        s = blk[b, B_SLOT]
        if s >= 0:
            if not chained:
                slot_block[s] = -1
            elif slot_block[s] == b:
                slot_block[s] = blk[b, B_KNEXT]
            else:
                p = slot_block[s]
                while blk[p, B_KNEXT] != b:
                    p = blk[p, B_KNEXT]
                blk[p, B_KNEXT] = blk[b, B_KNEXT]
    blk[b, B_SLOT] = -1
    blk[b, B_NTOK] = 0
    blk[b, B_REF] = 0
    return b


@hjit
def take_block_nb(st, blk, b):
    """Mark a popped block as used by one request."""
    blk[b, B_REF] = 1
    st[ST_USED] += 1
    st[ST_MISSES] += 1
    if st[ST_USED] > st[ST_PEAK]:
        st[ST_PEAK] = st[ST_USED]


@hjit
def attach_cached_nb(st, blk, b):
    """Share a cached block (a prefix-cache hit); returns whether it was in use before."""
    was = blk[b, B_REF] > 0
    blk[b, B_REF] += 1
    if not was:
        st[ST_USED] += 1
        remove_nb(st, blk, b)
        if st[ST_USED] > st[ST_PEAK]:
            st[ST_PEAK] = st[ST_USED]
    st[ST_HITS] += 1
    return was


@hjit
def register_nb(blk, slot_block, b, s):
    """The block's content is now the key in slot s (s < 0: a key nobody can look up)."""
    if s >= 0:
        blk[b, B_SLOT] = s
        slot_block[s] = b


@hjit
def register_chained_nb(blk, slot_block, b, s):
    """vllm: add block b (not yet keyed) to the blocks holding the content of slot s; a lookup
    returns the earliest registered one still resident (vLLM's cached_block_hash_to_block)."""
    blk[b, B_SLOT] = s
    blk[b, B_KNEXT] = -1
    p = slot_block[s]
    if p < 0:
        slot_block[s] = b
    else:
        while blk[p, B_KNEXT] >= 0:
            p = blk[p, B_KNEXT]
        blk[p, B_KNEXT] = b


@hjit
def req_append_nb(rb, rinfo, r, b):
    rb[rinfo[r, R_OFF] + rinfo[r, R_CNT]] = b
    rinfo[r, R_CNT] += 1


@hjit
def req_last_nb(rb, rinfo, r):
    c = rinfo[r, R_CNT]
    if c == 0:
        return -1
    return rb[rinfo[r, R_OFF] + c - 1]


@hjit
def release_nb(st, blk, rb, rinfo, r):
    """Free a request's blocks in reverse order; blocks reaching refcount 0 go to the tail."""
    off = rinfo[r, R_OFF]
    for i in range(rinfo[r, R_CNT] - 1, -1, -1):
        b = rb[off + i]
        blk[b, B_REF] -= 1
        if blk[b, B_REF] == 0:
            st[ST_USED] -= 1
            append_tail_nb(st, blk, b)
    rinfo[r, R_CNT] = 0
    rinfo[r, R_TOK] = 0
    rinfo[r, R_ORD] = 1


@hjit
def head_slot_nb(st, blk):
    """The key slot of the block the next pop would return, or FROM_FRESH (for rollback)."""
    if st[ST_FRESH] < st[ST_TOTAL]:
        return FROM_FRESH
    h = st[ST_HEAD]
    if h < 0:
        return -1
    return blk[h, B_SLOT]


@hjit
def rollback_nb(
    st,
    blk,
    slot_block,
    rinfo,
    r,
    popped,
    popped_slot,
    n_popped,
    cached,
    cached_was,
    n_cached,
    prev_cnt,
    prev_tok,
    prev_ord,
):
    """Undo a failed allocation exactly (REFERENCE §6.4 (vii)); the request keeps the blocks
    it owned before the call."""
    for i in range(n_popped - 1, -1, -1):
        b = popped[i]
        s = blk[b, B_SLOT]
        if s >= 0:
            slot_block[s] = -1
        blk[b, B_REF] = 0
        blk[b, B_NTOK] = 0
        st[ST_USED] -= 1
        st[ST_MISSES] -= 1
        if popped_slot[i] == FROM_FRESH:  # it was the last never-used block popped
            blk[b, B_SLOT] = -1
            st[ST_FRESH] -= 1
        else:
            blk[b, B_SLOT] = popped_slot[i]
            if popped_slot[i] >= 0:
                slot_block[popped_slot[i]] = b
            prepend_nb(st, blk, b)
    for i in range(n_cached - 1, -1, -1):
        b = cached[i]
        blk[b, B_REF] -= 1
        st[ST_HITS] -= 1
        if not cached_was[i] and blk[b, B_REF] == 0:
            st[ST_USED] -= 1
            append_tail_nb(st, blk, b)
    rinfo[r, R_CNT] = prev_cnt
    rinfo[r, R_TOK] = prev_tok
    rinfo[r, R_ORD] = prev_ord
