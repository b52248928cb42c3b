"""Roofline step-cost kernels (SPEC §1, REFERENCE §4–§5).

Everything that depends only on (model, GPU, TP) is packed once into a ``CostTables`` tuple by
``engine.stepcost.build_cost_model``; the kernels here evaluate one step in O(entries).
Floating-point expressions follow the reference's evaluation order exactly, so that the
rounded step time matches it to the microsecond.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ._jit import jit

# Indices into CostTables.par ---------------------------------------------------------------
P_PEAK = 0  # peak FLOP/s = TFlopsPeak * 1e12
P_BW = 1  # effective bandwidth B/s (BwPeakTBs * 1e12 * efficiency)
P_TAU = 2  # 1 / TP
P_TP = 3  # TP as float
P_L = 4  # layers
P_H = 5  # attention heads
P_HD = 6  # d div H as float
P_BPP = 7  # bytes per parameter
P_WB = 8  # weight bytes W_b
P_KVTOK = 9  # 2 * L * KV * (d/H) * B
P_ACTTOK = 10  # L * d * B
P_OVH_LAYER = 11  # perLayerOverhead * L / TP   (µs)
P_OVH_STEP = 12  # TOverheadMicros             (µs, non-empty steps)
P_OVH_PREFILL = 13  # PrefillOverheadMicros     (µs per prefill entry, prefill-only steps)
P_OVH_MIXED = 14  # MixedPrefillOverheadMicros  (µs per prefill entry, mixed steps)
P_OVH_ALLREDUCE = 15  # AllReduceLatency * 2 * L when TP > 1 (µs, non-empty steps)
P_V1 = 16  # 1.0 for roofline v1 (constant efficiencies)
P_MFU_PREFILL = 17
P_MFU_DECODE = 18
N_PAR = 19

EPS = 1e-4
N_BUCKETS = 8  # prefill buckets 512, 1024, ..., 65536

# Indices into the components array written by step_time_nb (all µs)
C_PREFILL_COMPUTE = 0
C_PREFILL_MEMORY = 1
C_DECODE_COMPUTE = 2
C_DECODE_MEMORY = 3
C_OVERHEAD = 4
C_HARDWARE = 5
N_COMPONENTS = 6

CostTables = namedtuple("CostTables", [
    "par",  # float64[N_PAR]
    "gemm_prefill",  # float64[M+1]: G(M) for prefill GEMMs, M = 0..M_max
    "gemm_decode",  # float64[M+1]: G(M) for decode GEMMs (same array as prefill in v2)
    "shape_k", "shape_n",  # int64[7]: Q, K, V, O, gate, up, down
    "group_off",  # int64[8]: points of shape j are group_m[group_off[j]:group_off[j+1]]
    "group_m", "group_mfu",  # sorted by m
    "gemm_m", "gemm_k", "gemm_n", "gemm_mfu",  # every GEMM row, file order (fallback)
    "prefill_bucket_mfu",  # float64[8]: mfu_p at each bucket length
    "decode_bs", "decode_kv",  # int64: sorted unique axes of the decode grid
    "decode_grid",  # float64[n_bs, n_kv]: MFU, 0.0 where the grid has no row
    "row_bs", "row_kv", "row_mfu",  # decode rows in file order (fallback)
])


@jit
def round_half_away_nb(x):
    """Go's math.Round for x >= 0: trunc, plus one when the fraction is >= 0.5."""
    t = np.floor(x)
    if x - t >= 0.5:
        t += 1.0
    return np.int64(t)


@jit
def bracket_nb(axis, x):
    """(lo, hi) indices bracketing x in a sorted axis, clamped at both ends (REFERENCE §4.2)."""
    n = axis.shape[0]
    if n == 0 or x <= axis[0]:
        return 0, 0
    if x >= axis[n - 1]:
        return n - 1, n - 1
    lo = 0
    hi = n - 1
    while lo < hi:  # first index with axis[i] >= x
        mid = (lo + hi) // 2
        if axis[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    if axis[lo] == x:
        return lo, lo
    return lo - 1, lo


@jit
def lerp_nb(a, b, t):
    return a + (b - a) * t


@jit
def gemm_mfu_nb(m, j, ct):
    """mfu_g(m, k_j, n_j): linear in m within the shape's (K, N) group, then the fallback."""
    o0 = ct.group_off[j]
    o1 = ct.group_off[j + 1]
    ms = ct.group_m
    mf = ct.group_mfu
    if o1 <= o0:
        mfu = 0.0
    elif m <= ms[o0]:
        mfu = mf[o0]
    elif m >= ms[o1 - 1]:
        mfu = mf[o1 - 1]
    else:
        mfu = 0.0
        for i in range(o0, o1 - 1):
            if ms[i] <= m and m < ms[i + 1]:
                t = float(m - ms[i]) / float(ms[i + 1] - ms[i])
                mfu = lerp_nb(mf[i], mf[i + 1], t)
                break
    if mfu < EPS:
        k = ct.shape_k[j]
        n = ct.shape_n[j]
        best = -1.0
        found = False
        for r in range(ct.gemm_mfu.shape[0]):
            if ct.gemm_mfu[r] >= EPS:
                dm = float(ct.gemm_m[r] - m)
                dk = float(ct.gemm_k[r] - k)
                dn = float(ct.gemm_n[r] - n)
                d = dm * dm + dk * dk + dn * dn
                if not found or d < best:
                    best = d
                    mfu = ct.gemm_mfu[r]
                    found = True
        if not found:
            mfu = EPS
    return mfu


@jit
def gemm_block_nb(m, mfu_const, ct):
    """G(M): the seven projection GEMMs of one layer, times 1/TP, times L (REFERENCE §5.2).

    ``mfu_const`` > 0 replaces the table lookup (roofline v1)."""
    par = ct.par
    peak = par[P_PEAK]
    bw = par[P_BW]
    bpp = par[P_BPP]
    s = 0.0
    for j in range(7):
        k = ct.shape_k[j]
        n = ct.shape_n[j]
        flops = 2.0 * float(m) * float(k) * float(n)
        mfu = mfu_const if mfu_const > 0.0 else gemm_mfu_nb(m, j, ct)
        eff = peak * mfu
        if eff <= 0.0:
            eff = 1.0
        compute = flops / eff
        floor = float(k) * float(n) * bpp / bw
        s += compute if compute > floor else floor
    return s * par[P_TAU] * par[P_L]


@jit
def fill_gemm_table_nb(out, mfu_const, ct):
    """out[M] = G(M) for every M of the table (M = 0 is unused and left 0)."""
    for m in range(1, out.shape[0]):
        out[m] = gemm_block_nb(m, mfu_const, ct)


@jit
def _gemm(m, prefill, ct):
    tab = ct.gemm_prefill if prefill else ct.gemm_decode
    if m < tab.shape[0]:
        return tab[m]
    mfu_const = 0.0
    if ct.par[P_V1] > 0.0:
        mfu_const = ct.par[P_MFU_PREFILL] if prefill else ct.par[P_MFU_DECODE]
    return gemm_block_nb(m, mfu_const, ct)


@jit
def prefill_mfu_nb(seq_sorted, mfu_sorted, seq_file, mfu_file, s):
    """mfu_p(S) (REFERENCE §4.3): linear in seq_len, then the nearest non-zero row."""
    n = seq_sorted.shape[0]
    if n == 0:
        return EPS
    if s <= seq_sorted[0]:
        mfu = mfu_sorted[0]
    elif s >= seq_sorted[n - 1]:
        mfu = mfu_sorted[n - 1]
    else:
        mfu = 0.0
        for i in range(n - 1):
            if seq_sorted[i] <= s and s < seq_sorted[i + 1]:
                t = float(s - seq_sorted[i]) / float(seq_sorted[i + 1] - seq_sorted[i])
                mfu = lerp_nb(mfu_sorted[i], mfu_sorted[i + 1], t)
                break
    if mfu < EPS:
        found = False
        best = 0.0
        for r in range(seq_file.shape[0]):
            if mfu_file[r] >= EPS:
                d = abs(float(seq_file[r] - s))
                if not found or d < best:
                    best = d
                    mfu = mfu_file[r]
                    found = True
        if not found:
            mfu = EPS
    return mfu


@jit
def decode_mfu_nb(bs, kv, b0, b1, ct):
    """mfu_d(bs, kv) for a batch whose bs bracket (b0, b1) is already known (REFERENCE §4.4)."""
    axb = ct.decode_bs
    axk = ct.decode_kv
    if axb.shape[0] == 0 or axk.shape[0] == 0:
        return EPS
    k0, k1 = bracket_nb(axk, kv)
    bs0 = axb[b0]
    bs1 = axb[b1]
    kv0 = axk[k0]
    kv1 = axk[k1]
    g = ct.decode_grid
    q00 = g[b0, k0]
    if bs0 == bs1 and kv0 == kv1:
        mfu = q00
    elif bs0 == bs1:
        mfu = lerp_nb(q00, g[b0, k1], float(kv - kv0) / float(kv1 - kv0))
    elif kv0 == kv1:
        mfu = lerp_nb(q00, g[b1, k0], float(bs - bs0) / float(bs1 - bs0))
    else:
        tb = float(bs - bs0) / float(bs1 - bs0)
        tk = float(kv - kv0) / float(kv1 - kv0)
        top = lerp_nb(q00, g[b1, k0], tb)
        bot = lerp_nb(g[b0, k1], g[b1, k1], tb)
        mfu = lerp_nb(top, bot, tk)
    if mfu < EPS:
        found = False
        best = 0.0
        for r in range(ct.row_mfu.shape[0]):
            if ct.row_mfu[r] >= EPS:
                dbs = float(ct.row_bs[r] - bs)
                dkv = float(ct.row_kv[r] - kv)
                d = np.sqrt(dbs * dbs + dkv * dkv)
                if not found or d < best:
                    best = d
                    mfu = ct.row_mfu[r]
                    found = True
        if not found:
            mfu = EPS
    return mfu


@jit
def dyn_bytes_nb(seq, t, par):
    """Dyn(seq, t) = total - W_b of calculateMemoryAccessBytes (REFERENCE §5.5)."""
    tf = float(t)
    if t == 1:
        act = par[P_ACTTOK] * tf * 0.75
        kv_access = par[P_KVTOK] * float(seq) * 0.80
    else:
        act = par[P_ACTTOK] * tf * 0.85
        kv_access = par[P_KVTOK] * float(seq) * 0.92
    kv_growth = par[P_KVTOK] * tf
    wb = par[P_WB]
    total = act + kv_access + kv_growth + wb
    return total - wb


@jit
def attn_flops_nb(q, ctx, par):
    """A(q, c) * L: QK^T plus AV, no softmax (REFERENCE §5.3)."""
    x = 2.0 * par[P_H] * float(q) * float(ctx) * par[P_HD]
    return (x + x) * par[P_L]


@jit
def step_time_nb(pf_pi, pf_n, n_pf, dc_pi, n_dc, ct, out):
    """Step time in µs (int64) of a step with n_pf prefill entries (progress index, new
    tokens) and n_dc decode entries (progress index); writes the components (µs) to ``out``."""
    par = ct.par
    peak = par[P_PEAK]
    bw = par[P_BW]
    tau = par[P_TAU]
    v1 = par[P_V1] > 0.0
    pc = 0.0
    pm = 0.0
    dcomp = 0.0
    dmem = 0.0
    if n_dc > 0:
        g = _gemm(n_dc, False, ct)
        flops = 0.0
        wsum = 0.0
        b0 = 0
        b1 = 0
        if not v1:
            b0, b1 = bracket_nb(ct.decode_bs, n_dc)
        for i in range(n_dc):
            f = attn_flops_nb(1, dc_pi[i], par)
            flops += f
            if not v1:
                wsum += f * decode_mfu_nb(n_dc, dc_pi[i], b0, b1, ct)
        attn = 0.0
        if flops > 0.0:
            eff = par[P_MFU_DECODE] if v1 else wsum / flops
            if eff > 0.0:
                attn = flops / (peak * eff) * tau
        dcomp = g + attn
        dyn = 0.0
        for i in range(n_dc):
            dyn += dyn_bytes_nb(dc_pi[i], 1, par) * tau
        dmem = (par[P_WB] * tau + dyn) / bw
    if n_pf > 0:
        tok = np.zeros(N_BUCKETS, np.int64)
        fl = np.zeros(N_BUCKETS)
        used = np.zeros(N_BUCKETS, np.bool_)
        for i in range(n_pf):
            s = pf_pi[i] + pf_n[i]
            b = 512
            bi = 0
            while b < s and b < 65536:
                b *= 2
                bi += 1
            tok[bi] += pf_n[i]
            fl[bi] += attn_flops_nb(pf_n[i], s, par)
            used[bi] = True
        for bi in range(N_BUCKETS):
            if used[bi]:
                mfu = par[P_MFU_PREFILL] if v1 else ct.prefill_bucket_mfu[bi]
                pc += _gemm(tok[bi], True, ct) + fl[bi] / 1.8 / (peak * mfu) * tau
        dyn = 0.0
        for i in range(n_pf):
            dyn += dyn_bytes_nb(pf_pi[i], pf_n[i], par) * tau
        pm = (par[P_WB] * tau + dyn) / bw
    pt = pc if pc > pm else pm
    dt = dcomp if dcomp > dmem else dmem
    if n_pf > 0 and n_dc > 0:
        hw = pt if pt > dt else dt
    elif n_pf > 0:
        hw = pt
    elif n_dc > 0:
        hw = dt
    else:
        hw = 0.0
    ovh = par[P_OVH_LAYER]
    if n_pf + n_dc > 0:
        ovh += par[P_OVH_STEP]
        ovh += par[P_OVH_ALLREDUCE]
        if n_pf > 0 and n_dc == 0:
            ovh += par[P_OVH_PREFILL] * n_pf
        elif n_pf > 0:
            ovh += par[P_OVH_MIXED] * n_pf
    total_us = (hw + ovh / 1e6) * 1e6
    if total_us < 1.0:
        total_us = 1.0
    out[C_PREFILL_COMPUTE] = pc * 1e6
    out[C_PREFILL_MEMORY] = pm * 1e6
    out[C_DECODE_COMPUTE] = dcomp * 1e6
    out[C_DECODE_MEMORY] = dmem * 1e6
    out[C_OVERHEAD] = ovh
    out[C_HARDWARE] = hw * 1e6
    return round_half_away_nb(total_us)


@jit
def step_times_nb(pf_off, pf_pi, pf_n, dc_off, dc_pi, ct, out_us, out_comp):
    """Many independent steps: step i has prefill entries pf_*[pf_off[i]:pf_off[i+1]] and
    decode entries dc_pi[dc_off[i]:dc_off[i+1]]."""
    for i in range(out_us.shape[0]):
        a = pf_off[i]
        b = pf_off[i + 1]
        c = dc_off[i]
        d = dc_off[i + 1]
        out_us[i] = step_time_nb(pf_pi[a:b], pf_n[a:b], b - a, dc_pi[c:d], d - c, ct, out_comp[i])
