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
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ._jit import jit

ST_FRESH = 0  # first never-used block
ST_HEAD = 1  # head of the explicit free list (-1 = empty)
ST_TAIL = 2  # tail of the explicit free list
ST_USED = 3  # blocks with refcount > 0
ST_HITS = 4  # cached blocks attached (prefix-cache hits, in blocks)
ST_MISSES = 5  # blocks allocated fresh
ST_TOTAL = 6  # total blocks
ST_BS = 7  # block size in tokens
ST_PEAK = 8  # peak used blocks
N_ST = 9

FROM_FRESH = -2  # rollback marker: the popped block came from the never-used region

KVPool = namedtuple("KVPool", [
    "st",  # int64[N_ST]
    "ref", "prev", "nxt", "ntok",  # int32[total]
    "slot",  # int64[total]: prefix-table slot of the block's key, -1 = none
    "slot_block",  # int64[n_slots]: block registered for a key slot, -1 = none
    "rb_off",  # int64[n_req]: start of the request's block list in rb
    "rb_cnt",  # int64[n_req]: blocks in the request's list
    "rb",  # int32[sum of capacities]
    "rtok",  # int64[n_req]: tokens held in the request's blocks
])


def new_pool(total_blocks: int, block_size: int, n_slots: int,
             capacities: np.ndarray) -> KVPool:
    """A pool of ``total_blocks`` blocks; request i may hold up to capacities[i] blocks."""
    total = int(total_blocks)
    st = np.zeros(N_ST, np.int64)
    st[ST_HEAD] = -1
    st[ST_TAIL] = -1
    st[ST_TOTAL] = total
    st[ST_BS] = int(block_size)
    cap = np.asarray(capacities, np.int64)
    off = np.zeros(len(cap), np.int64)
    if len(cap) > 1:
        np.cumsum(cap[:-1], out=off[1:])
    return KVPool(st=st, ref=np.empty(total, np.int32), prev=np.empty(total, np.int32),
                  nxt=np.empty(total, np.int32), ntok=np.empty(total, np.int32),
                  slot=np.empty(total, np.int64), slot_block=np.full(max(int(n_slots), 1), -1,
                                                                       np.int64),
                  rb_off=off, rb_cnt=np.zeros(len(cap), np.int64),
                  rb=np.empty(max(int(cap.sum()), 1), np.int32),
                  rtok=np.zeros(len(cap), np.int64))


@jit
def pool_reset_nb(kv):
    st = kv.st
    st[ST_FRESH] = 0
    st[ST_HEAD] = -1
    st[ST_TAIL] = -1
    st[ST_USED] = 0
    st[ST_HITS] = 0
    st[ST_MISSES] = 0
    st[ST_PEAK] = 0
    kv.slot_block[:] = -1
    kv.rb_cnt[:] = 0
    kv.rtok[:] = 0


@jit
def free_count_nb(kv):
    return kv.st[ST_TOTAL] - kv.st[ST_USED]


@jit
def _append_tail(kv, b):
    st = kv.st
    kv.nxt[b] = -1
    t = st[ST_TAIL]
    if t >= 0:
        kv.nxt[t] = b
        kv.prev[b] = t
        st[ST_TAIL] = b
    else:
        kv.prev[b] = -1
        st[ST_HEAD] = b
        st[ST_TAIL] = b


@jit
def _remove(kv, b):
    """Detach a block of the explicit free list (a cached block being reused)."""
    st = kv.st
    p = kv.prev[b]
    n = kv.nxt[b]
    if p >= 0:
        kv.nxt[p] = n
    else:
        st[ST_HEAD] = n
    if n >= 0:
        kv.prev[n] = p
    else:
        st[ST_TAIL] = p
    kv.prev[b] = -1
    kv.nxt[b] = -1


@jit
def _prepend(kv, b):
    """Put a block back at the head of the explicit free list (rollback of a pop)."""
    st = kv.st
    h = st[ST_HEAD]
    kv.prev[b] = -1
    kv.nxt[b] = h
    if h >= 0:
        kv.prev[h] = b
    st[ST_HEAD] = b
    if st[ST_TAIL] < 0:
        st[ST_TAIL] = b


@jit
def pop_block_nb(kv):
    """Pop the head of the free list, erasing its prefix key (-1 when none is free)."""
    st = kv.st
    if st[ST_FRESH] < st[ST_TOTAL]:
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
            kv.slot_block[s] = -1  # the reference deletes the table entry unconditionally
            kv.slot[b] = -1
    kv.ntok[b] = 0
    kv.ref[b] = 0
    return b


@jit
def take_block_nb(kv, b):
    """Mark a popped block as used by one request."""
    st = kv.st
    kv.ref[b] = 1
    st[ST_USED] += 1
    st[ST_MISSES] += 1
    if st[ST_USED] > st[ST_PEAK]:
        st[ST_PEAK] = st[ST_USED]


@jit
def attach_cached_nb(kv, b):
    """Share a cached block (a prefix-cache hit); returns whether it was in use before."""
    st = kv.st
    was = kv.ref[b] > 0
    kv.ref[b] += 1
    if not was:
        st[ST_USED] += 1
        _remove(kv, b)
        if st[ST_USED] > st[ST_PEAK]:
            st[ST_PEAK] = st[ST_USED]
    st[ST_HITS] += 1
    return was


@jit
def register_nb(kv, b, s):
    """The block's content is now the key in slot s (s < 0: a key nobody can look up)."""
    if s >= 0:
        kv.slot[b] = s
        kv.slot_block[s] = b


@jit
def req_append_nb(kv, r, b):
    i = kv.rb_off[r] + kv.rb_cnt[r]
    kv.rb[i] = b
    kv.rb_cnt[r] += 1


@jit
def req_last_nb(kv, r):
    c = kv.rb_cnt[r]
    if c == 0:
        return -1
    return kv.rb[kv.rb_off[r] + c - 1]


@jit
def release_nb(kv, r):
    """Free a request's blocks in reverse order; blocks reaching refcount 0 go to the tail."""
    st = kv.st
    off = kv.rb_off[r]
    for i in range(kv.rb_cnt[r] - 1, -1, -1):
        b = kv.rb[off + i]
        kv.ref[b] -= 1
        if kv.ref[b] == 0:
            st[ST_USED] -= 1
            _append_tail(kv, b)
    kv.rb_cnt[r] = 0
    kv.rtok[r] = 0


@jit
def rollback_nb(kv, r, popped, popped_slot, n_popped, cached, cached_was, n_cached, prev_cnt,
                prev_tok):
    """Undo a failed allocation exactly (REFERENCE §6.4 (vii)); the request keeps the blocks
    it owned before the call."""
    st = kv.st
    for i in range(n_popped - 1, -1, -1):
        b = popped[i]
        s = kv.slot[b]
        if s >= 0:
            kv.slot_block[s] = -1
        kv.ref[b] = 0
        kv.ntok[b] = 0
        st[ST_USED] -= 1
        st[ST_MISSES] -= 1
        if popped_slot[i] == FROM_FRESH:  # it was the last never-used block popped
            kv.slot[b] = -1
            st[ST_FRESH] -= 1
        else:
            kv.slot[b] = popped_slot[i]
            if popped_slot[i] >= 0:
                kv.slot_block[popped_slot[i]] = b
            _prepend(kv, b)
    for i in range(n_cached - 1, -1, -1):
        b = cached[i]
        kv.ref[b] -= 1
        st[ST_HITS] -= 1
        if not cached_was[i] and kv.ref[b] == 0:
            st[ST_USED] -= 1
            _append_tail(kv, b)
    kv.rb_cnt[r] = prev_cnt
    kv.rtok[r] = prev_tok


@jit
def head_slot_nb(kv):
    """The key slot of the block the next pop would return, or FROM_FRESH (for rollback)."""
    st = kv.st
    if st[ST_FRESH] < st[ST_TOTAL]:
        return FROM_FRESH
    h = st[ST_HEAD]
    if h < 0:
        return -1
    return kv.slot[h]
