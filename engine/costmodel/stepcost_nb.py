"""Roofline step-cost kernels (SPEC §1, REFERENCE §4–§5).

Everything that depends only on (model, GPU, TP) is packed once by
``stepcost.build_cost_model`` into two flat arrays, ``ctf`` (float64) and ``cti``
(int64), laid out as described by the ``I_*`` header slots of ``cti``; the kernels here
evaluate one step in O(entries).  (Flat arrays rather than a tuple of arrays: numba reference-
counts every member of a tuple argument on each call, which would dominate a step's cost.)

Floating-point expressions follow the reference's evaluation order exactly, so that the
rounded step time matches it to the microsecond.
"""

from __future__ import annotations

import numpy as np

from infersweep._jit import hjit, ijit, jit
from infersweep.schema import (
    C_DECODE_COMPUTE,
    C_DECODE_MEMORY,
    C_HARDWARE,
    C_OVERHEAD,
    C_PREFILL_COMPUTE,
    C_PREFILL_MEMORY,
    I_BS,
    I_EXT_COMM,
    I_EXT_WB,
    I_GEMM_D,
    I_GEMM_K,
    I_GEMM_M,
    I_GEMM_MFU,
    I_GEMM_N,
    I_GEMM_P,
    I_GEMM_ROWS,
    I_GEMM_TAB_N,
    I_GRID,
    I_GROUP_M,
    I_GROUP_MFU,
    I_GROUP_OFF,
    I_KV,
    I_N_BS,
    I_N_KV,
    I_N_ROWS,
    I_PF_BUCKET,
    I_ROW_BS,
    I_ROW_KV,
    I_ROW_MFU,
    I_SHAPE_K,
    I_SHAPE_N,
    N_COMPONENTS,
    P_ACTTOK,
    P_AR_US_TOK,
    P_BPP,
    P_BW,
    P_DC_SCALE,
    P_DEC_ATTN,
    P_EXT,
    P_H,
    P_HD,
    P_KVTOK,
    P_L,
    P_MFU_DECODE,
    P_MFU_PREFILL,
    P_OVH_ALLREDUCE,
    P_OVH_AR_PEER,
    P_OVH_LAYER,
    P_OVH_LAYER_ALL,
    P_OVH_MIXED,
    P_OVH_PREFILL,
    P_OVH_REQ,
    P_OVH_STEP,
    P_PEAK,
    P_PF_SCALE,
    P_PLAIN,
    P_SLIDE_FRAC,
    P_TAU,
    P_V1,
    P_WB,
    P_WINDOW,
)

# The layouts of ctf (P_*), of cti's header (I_*) and of the step components (C_*) are
# declared in infersweep.schema.

EPS = 1e-4  # REFERENCE §4.2: ε; an MFU below it counts as missing (nearest-row fallback)
N_BUCKETS = 8  # REFERENCE §5.6: prefill buckets 512, 1024, ..., 65536
PF_BUCKET_MIN = 512  # REFERENCE §5.6 step 1: the first bucket's length
PF_BUCKET_MAX = 65536  # ... and the last's (it holds everything above 32768)
ATTN_PREFILL_DIVISOR = 1.8  # REFERENCE §5.6 step 2: attn_b = F_b / 1.8 / (P·mfu_p(b)) · τ
MEMO_SIZE = 8192  # decode-MFU fallback memo of a simulation (power of two)


@hjit
def round_half_away_nb(x):
    """Go's math.Round for x >= 0: trunc, plus one when the fraction is >= 0.5.  Values beyond
    2**62 saturate there (the callers report that as an overflow) instead of wrapping."""
    if not x < 4.611686018427388e18:
        return np.int64(4611686018427387904)
    t = np.floor(x)
    if x - t >= 0.5:
        t += 1.0
    return np.int64(t)


@hjit
def bracket_nb(axis, off, n, x):
    """(lo, hi) indices bracketing x in the sorted axis[off:off+n], clamped at both ends
    (REFERENCE §4.2); indices are relative to ``off``."""
    if n == 0 or x <= axis[off]:
        return 0, 0
    if x >= axis[off + n - 1]:
        return n - 1, n - 1
    lo = 0
    hi = n - 1
    while lo < hi:  # first index with axis >= x
        mid = (lo + hi) // 2
        if axis[off + mid] < x:
            lo = mid + 1
        else:
            hi = mid
    if axis[off + lo] == x:
        return lo, lo
    return lo - 1, lo


@hjit
def lerp_nb(a, b, t):
    return a + (b - a) * t


@hjit
def gemm_mfu_nb(m, j, ctf, cti):
    """mfu_g(m, k_j, n_j): linear in m within the shape's (K, N) group, then the fallback."""
    goff = cti[I_GROUP_OFF]
    o0 = cti[goff + j]
    o1 = cti[goff + j + 1]
    gm = cti[I_GROUP_M]
    gf = cti[I_GROUP_MFU]
    if o1 <= o0:
        mfu = 0.0
    elif m <= cti[gm + o0]:
        mfu = ctf[gf + o0]
    elif m >= cti[gm + o1 - 1]:
        mfu = ctf[gf + o1 - 1]
    else:
        mfu = 0.0
        for i in range(o0, o1 - 1):
            if cti[gm + i] <= m and m < cti[gm + i + 1]:
                t = float(m - cti[gm + i]) / float(cti[gm + i + 1] - cti[gm + i])
                mfu = lerp_nb(ctf[gf + i], ctf[gf + i + 1], t)
                break
    if mfu < EPS:
        k = cti[cti[I_SHAPE_K] + j]
        n = cti[cti[I_SHAPE_N] + j]
        rm = cti[I_GEMM_M]
        rk = cti[I_GEMM_K]
        rn = cti[I_GEMM_N]
        rf = cti[I_GEMM_MFU]
        best = -1.0
        found = False
        for r in range(cti[I_GEMM_ROWS]):
            if ctf[rf + r] >= EPS:
                dm = float(cti[rm + r] - m)
                dk = float(cti[rk + r] - k)
                dn = float(cti[rn + r] - n)
                d = dm * dm + dk * dk + dn * dn
                if not found or d < best:
                    best = d
                    mfu = ctf[rf + r]
                    found = True
        if not found:
            mfu = EPS
    return mfu


@hjit
def gemm_block_nb(m, mfu_const, ctf, cti):
    """G(M): the seven projection GEMMs of one layer, times 1/TP, times L (REFERENCE §5.2).

    ``mfu_const`` > 0 replaces the table lookup (roofline v1)."""
    peak = ctf[P_PEAK]
    bw = ctf[P_BW]
    bpp = ctf[P_BPP]
    sk = cti[I_SHAPE_K]
    sn = cti[I_SHAPE_N]
    s = 0.0
    for j in range(7):
        k = cti[sk + j]
        n = cti[sn + j]
        flops = 2.0 * float(m) * float(k) * float(n)
        mfu = mfu_const if mfu_const > 0.0 else gemm_mfu_nb(m, j, ctf, cti)
        eff = peak * mfu
        if eff <= 0.0:
            eff = 1.0
        compute = flops / eff
        floor = float(k) * float(n) * bpp / bw
        s += compute if compute > floor else floor
    return s * ctf[P_TAU] * ctf[P_L]


@hjit
def fill_gemm_tables_nb(ctf, cti):
    """Tabulate G(M) for M = 0 .. n-1 (prefill and decode tables); G(0) is the weight-read
    floor, which a prefill bucket of wholly prefix-cached entries costs (REFERENCE §5.2)."""
    v1 = ctf[P_V1] > 0.0
    gp = cti[I_GEMM_P]
    gd = cti[I_GEMM_D]
    for m in range(cti[I_GEMM_TAB_N]):
        if v1:
            ctf[gp + m] = gemm_block_nb(m, ctf[P_MFU_PREFILL], ctf, cti)
            ctf[gd + m] = gemm_block_nb(m, ctf[P_MFU_DECODE], ctf, cti)
        else:
            g = gemm_block_nb(m, 0.0, ctf, cti)
            ctf[gp + m] = g
            ctf[gd + m] = g


@hjit
def gemm_compute_terms_nb(mfu_const, ctf, cti, out):
    """out[j, M]: the compute time of GEMM shape j at M tokens (the part of G(M) that does not
    depend on the bandwidth), for M = 0 .. out.shape[1]-1."""
    peak = ctf[P_PEAK]
    sk = cti[I_SHAPE_K]
    sn = cti[I_SHAPE_N]
    for m in range(out.shape[1]):
        for j in range(7):
            flops = 2.0 * float(m) * float(cti[sk + j]) * float(cti[sn + j])
            mfu = mfu_const if mfu_const > 0.0 else gemm_mfu_nb(m, j, ctf, cti)
            eff = peak * mfu
            if eff <= 0.0:
                eff = 1.0
            out[j, m] = flops / eff


@hjit
def fill_from_terms_nb(ctf, cti, terms_p, terms_d):
    """Refill both G(M) tables from precomputed compute terms and the current bandwidth
    (exactly gemm_block_nb's arithmetic)."""
    bw = ctf[P_BW]
    bpp = ctf[P_BPP]
    sk = cti[I_SHAPE_K]
    sn = cti[I_SHAPE_N]
    gp = cti[I_GEMM_P]
    gd = cti[I_GEMM_D]
    for m in range(cti[I_GEMM_TAB_N]):
        sp = 0.0
        sd = 0.0
        for j in range(7):
            floor = float(cti[sk + j]) * float(cti[sn + j]) * bpp / bw
            cp = terms_p[j, m]
            cd = terms_d[j, m]
            sp += cp if cp > floor else floor
            sd += cd if cd > floor else floor
        ctf[gp + m] = sp * ctf[P_TAU] * ctf[P_L]
        ctf[gd + m] = sd * ctf[P_TAU] * ctf[P_L]


@hjit
def gemm_time_nb(m, prefill, ctf, cti):
    """G(M) in seconds: from the table, or computed when M is beyond it."""
    if m < cti[I_GEMM_TAB_N]:
        return ctf[(cti[I_GEMM_P] if prefill else cti[I_GEMM_D]) + m]
    if ctf[P_EXT] > 0.0:  # beyond the extended table: compute-bound, linear in M
        last = cti[I_GEMM_TAB_N] - 1
        return ctf[(cti[I_GEMM_P] if prefill else cti[I_GEMM_D]) + last] * float(m) / float(last)
    mfu_const = 0.0
    if ctf[P_V1] > 0.0:
        mfu_const = ctf[P_MFU_PREFILL] if prefill else ctf[P_MFU_DECODE]
    return gemm_block_nb(m, mfu_const, ctf, cti)


@hjit
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


@hjit
def decode_fallback_nb(bs, kv, ctf, cti):
    """The MFU of the decode row nearest to (bs, kv) in raw units among rows with MFU >= ε
    (file order, strict <); ε when there is none."""
    rb = cti[I_ROW_BS]
    rk = cti[I_ROW_KV]
    rf = cti[I_ROW_MFU]
    mfu = EPS
    found = False
    best = 0.0
    for r in range(cti[I_N_ROWS]):
        if ctf[rf + r] >= EPS:
            dbs = float(cti[rb + r] - bs)
            dkv = float(cti[rk + r] - kv)
            d = np.sqrt(dbs * dbs + dkv * dkv)
            if not found or d < best:
                best = d
                mfu = ctf[rf + r]
                found = True
    return mfu


@hjit
def bilerp_nb(bs, kv, bs0, bs1, kv0, kv1, q00, q10, q01, q11):
    """The bilinear interpolation of REFERENCE §4.4 step 3 (scalars only)."""
    if bs0 == bs1 and kv0 == kv1:
        return q00
    if bs0 == bs1:
        return lerp_nb(q00, q01, float(kv - kv0) / float(kv1 - kv0))
    if kv0 == kv1:
        return lerp_nb(q00, q10, float(bs - bs0) / float(bs1 - bs0))
    tb = float(bs - bs0) / float(bs1 - bs0)
    tk = float(kv - kv0) / float(kv1 - kv0)
    return lerp_nb(lerp_nb(q00, q10, tb), lerp_nb(q01, q11, tb), tk)


@hjit
def memo_slot_nb(bs, kv, size):
    return ((kv * 40503) ^ (bs * 2654435761)) & (size - 1)


@hjit
def decode_mfu_nb(bs, kv, b0, b1, ctf, cti, memo_k, memo_v):
    """mfu_d(bs, kv) for a batch whose bs bracket (b0, b1) is already known (REFERENCE §4.4).
    Fallback results are memoised in (memo_k, memo_v), a direct-mapped table."""
    n_kv = cti[I_N_KV]
    if cti[I_N_BS] == 0 or n_kv == 0:
        return EPS
    ab = cti[I_BS]
    ak = cti[I_KV]
    g = cti[I_GRID]
    k0, k1 = bracket_nb(cti, ak, n_kv, kv)
    mfu = bilerp_nb(
        bs,
        kv,
        cti[ab + b0],
        cti[ab + b1],
        cti[ak + k0],
        cti[ak + k1],
        ctf[g + b0 * n_kv + k0],
        ctf[g + b1 * n_kv + k0],
        ctf[g + b0 * n_kv + k1],
        ctf[g + b1 * n_kv + k1],
    )
    if mfu < EPS:
        key = (bs << 32) | kv
        h = memo_slot_nb(bs, kv, memo_k.shape[0])
        if memo_k[h] == key:
            return memo_v[h]
        mfu = decode_fallback_nb(bs, kv, ctf, cti)
        memo_k[h] = key
        memo_v[h] = mfu
    return mfu


@hjit
def attn_ctx_nb(ctx, frac, window):
    """The context a query attends to, averaged over the layers (sliding-window layers, a
    fraction ``frac`` of them (``P_SLIDE_FRAC``), see at most ``window`` tokens)."""
    c = float(ctx)
    if frac == 0.0:
        return c
    return c * (1.0 - frac) + frac * (c if c < window else window)


@hjit
def ext_wb_nb(m, ctf, cti):
    """Weight bytes read by a step of m tokens: W_b, or WB(m) for an extended model."""
    if ctf[P_EXT] == 0.0:
        return ctf[P_WB]
    n = cti[I_GEMM_TAB_N]
    return ctf[cti[I_EXT_WB] + (m if m < n else n - 1)]


@hjit
def ext_comm_nb(m, ctf, cti):
    """All-to-all seconds of a step of m tokens (0 for models without expert parallelism)."""
    if ctf[P_EXT] == 0.0:
        return 0.0
    n = cti[I_GEMM_TAB_N]
    if m < n:
        return ctf[cti[I_EXT_COMM] + m]
    return ctf[cti[I_EXT_COMM] + n - 1] * float(m) / float(n - 1)


@hjit
def dyn_bytes_nb(seq_f, t, act_tok, kv_tok, wb):
    """Dyn(seq, t) = total - W_b of calculateMemoryAccessBytes (REFERENCE §5.5); ``seq_f`` is
    the attended context, ``attn_ctx_nb(seq, ...)``; ``act_tok``, ``kv_tok``, ``wb`` are
    ctf[P_ACTTOK], ctf[P_KVTOK], ctf[P_WB] (passed in: step_time_nb reads them once per step,
    since its memo stores make LLVM reload every ctf entry inside the loops)."""
    tf = float(t)
    if t == 1:
        act = act_tok * tf * 0.75
        kv_access = kv_tok * seq_f * 0.80
    else:
        act = act_tok * tf * 0.85
        kv_access = kv_tok * seq_f * 0.92
    kv_growth = kv_tok * tf
    total = act + kv_access + kv_growth + wb
    return total - wb


@ijit
def prefill_bucket_nb(seq):
    """REFERENCE §5.6 step 1: the bucket of an entry ending at position seq, as an index
    (b = 512; while b < seq and b < 65536: b <- 2b; index = log2(b / 512))."""
    b = PF_BUCKET_MIN
    bi = 0
    while b < seq and b < PF_BUCKET_MAX:
        b *= 2
        bi += 1
    return bi


@hjit
def attn_flops_nb(q, ctx_f, n_heads, head_dim, n_layers):
    """A(q, c) * L: QK^T plus AV, no softmax (REFERENCE §5.3); ``ctx_f`` is the attended
    context, ``attn_ctx_nb(c, ...)``; the model sizes are ctf[P_H], ctf[P_HD], ctf[P_L]."""
    x = 2.0 * n_heads * float(q) * ctx_f * head_dim
    return (x + x) * n_layers


@ijit
def _decode_entry_nb(c, c_f, n_dc, grid, sizes, ctf, cti, memo_k, memo_v):
    """One decode entry of a step at context c (attended context c_f): its attention FLOPs,
    their MFU-weighted share and its memory bytes (x tau).  Written once, inlined into the two
    loops of step_time_nb (contexts as they are, or through a sliding window): one loop with
    a per-entry window branch ran 6-8 % slower.  ``grid`` is the step's MFU-grid bracket,
    ``sizes`` the model sizes and byte constants, both read once per step by step_time_nb."""
    have_grid, v1, ak, n_kv, kv_first, kv_last, r0, r1, bs0, bs1, tb, msize = grid
    n_heads, head_dim, n_layers, dec_attn, act_tok, kv_tok, w_b, tau = sizes
    f = attn_flops_nb(1, c_f, n_heads, head_dim, n_layers) * dec_attn
    w = 0.0
    if have_grid:
        # the lookup of decode_mfu_nb (REFERENCE §4.4) with the step's bracket on the batch
        # axis (calling decode_mfu_nb per entry made decode steps ~10 % slower)
        # bracket(kv axis, c), scanning up from the short contexts that dominate
        if c <= kv_first:
            k0 = 0
            k1 = 0
        elif c >= kv_last:
            k0 = n_kv - 1
            k1 = n_kv - 1
        else:
            k1 = 1
            while cti[ak + k1] < c:
                k1 += 1
            k0 = k1 if cti[ak + k1] == c else k1 - 1
        kv0 = cti[ak + k0]
        kv1 = cti[ak + k1]
        q00 = ctf[r0 + k0]
        if bs0 == bs1 and kv0 == kv1:
            mfu = q00
        elif bs0 == bs1:
            mfu = lerp_nb(q00, ctf[r0 + k1], float(c - kv0) / float(kv1 - kv0))
        elif kv0 == kv1:
            mfu = lerp_nb(q00, ctf[r1 + k0], tb)
        else:
            tk = float(c - kv0) / float(kv1 - kv0)
            mfu = lerp_nb(
                lerp_nb(q00, ctf[r1 + k0], tb), lerp_nb(ctf[r0 + k1], ctf[r1 + k1], tb), tk
            )
        if mfu < EPS:
            key = (n_dc << 32) | c
            h = memo_slot_nb(n_dc, c, msize)
            if memo_k[h] == key:
                mfu = memo_v[h]
            else:
                mfu = decode_fallback_nb(n_dc, c, ctf, cti)
                memo_k[h] = key
                memo_v[h] = mfu
        w = f * mfu
    elif not v1:
        w = f * EPS
    return f, w, dyn_bytes_nb(c_f, 1, act_tok, kv_tok, w_b) * tau


@hjit
def step_time_nb(pf_pi, pf_n, n_pf, dc_pi, n_dc, ctf, cti, memo_k, memo_v, out):
    """Step time in µs (int64) of a step with n_pf prefill entries (progress index, new
    tokens) and n_dc decode entries (progress index); writes the components (µs) to ``out``.
    (memo_k, memo_v) is the decode-MFU fallback memo."""
    peak = ctf[P_PEAK]
    bw = ctf[P_BW]
    tau = ctf[P_TAU]
    v1 = ctf[P_V1] > 0.0
    pc = 0.0
    pm = 0.0
    dcomp = 0.0
    dmem = 0.0
    pf_tok = 0
    # read once per step (the loops below store to the memo, so LLVM reloads ctf entries)
    slide = ctf[P_SLIDE_FRAC]
    window = ctf[P_WINDOW]
    n_heads = ctf[P_H]
    head_dim = ctf[P_HD]
    n_layers = ctf[P_L]
    act_tok = ctf[P_ACTTOK]
    kv_tok = ctf[P_KVTOK]
    w_b = ctf[P_WB]
    if n_dc > 0:
        dec_attn = ctf[P_DEC_ATTN]
        if n_dc < cti[I_GEMM_TAB_N]:
            g = ctf[cti[I_GEMM_D] + n_dc]
        else:
            g = gemm_time_nb(n_dc, False, ctf, cti)
        flops = 0.0
        wsum = 0.0
        dyn = 0.0
        n_kv = cti[I_N_KV]
        have_grid = not v1 and cti[I_N_BS] > 0 and n_kv > 0
        b0 = 0
        b1 = 0
        bs0 = 0
        bs1 = 0
        ab = cti[I_BS]
        ak = cti[I_KV]
        gr = cti[I_GRID]
        tb = 0.0
        kv_first = 0
        kv_last = 0
        if have_grid:
            b0, b1 = bracket_nb(cti, ab, cti[I_N_BS], n_dc)
            bs0 = cti[ab + b0]
            bs1 = cti[ab + b1]
            if bs0 != bs1:  # the same for every request of the step
                tb = float(n_dc - bs0) / float(bs1 - bs0)
            kv_first = cti[ak]
            kv_last = cti[ak + n_kv - 1]
        r0 = gr + b0 * n_kv
        r1 = gr + b1 * n_kv
        msize = memo_k.shape[0]
        grid = (have_grid, v1, ak, n_kv, kv_first, kv_last, r0, r1, bs0, bs1, tb, msize)
        sizes = (n_heads, head_dim, n_layers, dec_attn, act_tok, kv_tok, w_b, tau)
        # two loops, one entry helper: see _decode_entry_nb
        if slide == 0.0:
            for i in range(n_dc):
                c = dc_pi[i]
                f, w, d = _decode_entry_nb(c, float(c), n_dc, grid, sizes, ctf, cti, memo_k, memo_v)
                flops += f
                wsum += w
                dyn += d
        else:
            for i in range(n_dc):
                c = dc_pi[i]
                c_f = attn_ctx_nb(c, slide, window)
                f, w, d = _decode_entry_nb(c, c_f, n_dc, grid, sizes, ctf, cti, memo_k, memo_v)
                flops += f
                wsum += w
                dyn += d
        attn = 0.0
        if flops > 0.0:
            eff = ctf[P_MFU_DECODE] if v1 else wsum / flops
            if eff > 0.0:
                attn = flops / (peak * eff) * tau
        dcomp = g + attn
        dmem = (ext_wb_nb(n_dc, ctf, cti) * tau + dyn) / bw
    if n_pf > 0:
        # REFERENCE §5.6: bucket the entries by sequence length (prefill_bucket_nb); then per
        # bucket, in ascending order, the GEMMs of its total new tokens T_b plus its attention
        # F_b at the bucket's MFU.  T_b and F_b of the N_BUCKETS (8) buckets are sixteen
        # scalars on purpose: sums in a scratch array made a prefill step ~10 ns (16 %) slower,
        # since its stores force every ctf parameter to be reloaded for the next entry.
        tok0 = tok1 = tok2 = tok3 = tok4 = tok5 = tok6 = tok7 = 0
        fl0 = fl1 = fl2 = fl3 = fl4 = fl5 = fl6 = fl7 = 0.0
        used = 0
        dyn = 0.0
        for i in range(n_pf):
            pf_tok += pf_n[i]
            s = pf_pi[i] + pf_n[i]
            bi = prefill_bucket_nb(s)
            f = attn_flops_nb(pf_n[i], attn_ctx_nb(s, slide, window), n_heads, head_dim, n_layers)
            used |= 1 << bi
            if bi == 0:
                tok0 += pf_n[i]
                fl0 += f
            elif bi == 1:
                tok1 += pf_n[i]
                fl1 += f
            elif bi == 2:
                tok2 += pf_n[i]
                fl2 += f
            elif bi == 3:
                tok3 += pf_n[i]
                fl3 += f
            elif bi == 4:
                tok4 += pf_n[i]
                fl4 += f
            elif bi == 5:
                tok5 += pf_n[i]
                fl5 += f
            elif bi == 6:
                tok6 += pf_n[i]
                fl6 += f
            else:
                tok7 += pf_n[i]
                fl7 += f
            ctx_f = attn_ctx_nb(pf_pi[i], slide, window)
            dyn += dyn_bytes_nb(ctx_f, pf_n[i], act_tok, kv_tok, w_b) * tau
        pb = cti[I_PF_BUCKET]
        for bi in range(N_BUCKETS):
            if used & (1 << bi):
                if bi == 0:
                    tok, fl = tok0, fl0
                elif bi == 1:
                    tok, fl = tok1, fl1
                elif bi == 2:
                    tok, fl = tok2, fl2
                elif bi == 3:
                    tok, fl = tok3, fl3
                elif bi == 4:
                    tok, fl = tok4, fl4
                elif bi == 5:
                    tok, fl = tok5, fl5
                elif bi == 6:
                    tok, fl = tok6, fl6
                else:
                    tok, fl = tok7, fl7
                mfu = ctf[P_MFU_PREFILL] if v1 else ctf[pb + bi]
                if tok < cti[I_GEMM_TAB_N]:
                    gp = ctf[cti[I_GEMM_P] + tok]
                else:
                    gp = gemm_time_nb(tok, True, ctf, cti)
                pc += gp + fl / ATTN_PREFILL_DIVISOR / (peak * mfu) * tau
        pm = (ext_wb_nb(pf_tok, ctf, cti) * tau + dyn) / bw
    plain = ctf[P_PLAIN] > 0.0  # the terms below at their neutral values: skipped (exact)
    if not plain:
        pc *= ctf[P_PF_SCALE]
        dcomp *= ctf[P_DC_SCALE]
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
    if not plain and ctf[P_EXT] > 0.0 and n_pf + n_dc > 0:
        hw += ext_comm_nb(n_dc + pf_tok, ctf, cti)
    ovh = ctf[P_OVH_LAYER]
    if n_pf + n_dc > 0:
        ovh += ctf[P_OVH_STEP]
        ovh += ctf[P_OVH_ALLREDUCE]
        if not plain:
            ovh += ctf[P_OVH_REQ] * (n_pf + n_dc)
            ovh += ctf[P_OVH_LAYER_ALL]
            ovh += ctf[P_OVH_AR_PEER]
            if ctf[P_AR_US_TOK] > 0.0:
                n_tok = n_dc
                for i in range(n_pf):
                    n_tok += pf_n[i]
                ovh += ctf[P_AR_US_TOK] * n_tok
        if n_pf > 0 and n_dc == 0:
            ovh += ctf[P_OVH_PREFILL] * n_pf
        elif n_pf > 0:
            ovh += ctf[P_OVH_MIXED] * n_pf
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
def step_times_nb(pf_off, pf_pi, pf_n, dc_off, dc_pi, ctf, cti, out_us, out_comp):
    """Many independent steps: step i has prefill entries pf_*[pf_off[i]:pf_off[i+1]] and
    decode entries dc_pi[dc_off[i]:dc_off[i+1]]."""
    memo_k = np.full(MEMO_SIZE, -1, np.int64)
    memo_v = np.zeros(MEMO_SIZE)
    comp = np.zeros(N_COMPONENTS)
    for i in range(out_us.shape[0]):
        a = pf_off[i]
        b = pf_off[i + 1]
        c = dc_off[i]
        d = dc_off[i + 1]
        out_us[i] = step_time_nb(
            pf_pi[a:b],
            pf_n[a:b],
            b - a,
            dc_pi[c:d],
            d - c,
            ctf,
            cti,
            memo_k,
            memo_v,
            comp,
        )
        for j in range(N_COMPONENTS):
            out_comp[i, j] = comp[j]
