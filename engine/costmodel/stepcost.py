"""Roofline step cost: build the per-(model, GPU, TP) tables and evaluate steps.

``build_cost_model`` validates and packs everything into ``CostTables`` (see
``stepcost_nb``); ``CostModel.step_time`` and ``CostModel.step_times`` call the kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infersweep import schema
from infersweep.config.catalog import resolve_bench_dir
from infersweep.config.models import Hardware, ModelConfig, check_tp
from infersweep.costmodel import moe
from infersweep.costmodel import stepcost_nb as nb
from infersweep.costmodel.mfu import (
    BenchTables,
    choose_attention_key,
    choose_decode_table,
    choose_gemm_group,
    load_bench_tables,
)
from infersweep.errors import ConfigError

STEP_MODELS = ("auto", "v2", "v1")
MAX_ENTRY_TOKENS = 1 << 32  # a bound on one entry's context or chunk (keeps int64 math exact)
MAX_STEP_US = 1 << 62  # step times at or above this are reported as an overflow
SHAPE_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
BUCKETS = tuple(nb.PF_BUCKET_MIN * 2**i for i in range(nb.N_BUCKETS))  # prefill bucket lengths
DEFAULT_GEMM_TABLE = 8192


@dataclass(frozen=True, slots=True, kw_only=True)
class CostModel:
    """Everything the kernels need for one (model, hardware, TP, step model)."""

    model: ModelConfig
    hardware: Hardware
    tp: int
    step_model: str  # "v2" or "v1"
    ctf: np.ndarray  # float64 tables (layout: stepcost_nb I_* / P_* constants)
    cti: np.ndarray  # int64 tables and header
    attention_key: str | None = None  # the MFU table key used (possibly substituted)
    decode_table: str | None = None
    gemm_groups: tuple[tuple[int, int], ...] = ()
    notes: tuple[str, ...] = field(default=())
    bench_data: str | None = None  # the MFU table folder it was built from (None: embedded)

    @property
    def gemm_table_size(self) -> int:
        return int(self.cti[schema.I_GEMM_TAB_N])

    # -- evaluation -----------------------------------------------------------------------
    def step_time(self, prefills=(), decodes=()) -> tuple[int, dict[str, float]]:
        """Step time in µs and its components for one step.

        ``prefills``: (progress_index, new_tokens) pairs; ``decodes``: progress indices."""
        pf = _as_entries(prefills, "prefills", 2)
        dc = np.ascontiguousarray(_as_entries(decodes, "decodes", 1))
        _check_entries(pf, dc)
        comp = np.zeros(schema.N_COMPONENTS)
        memo_k, memo_v = new_memo(1)
        us = nb.step_time_nb(
            np.ascontiguousarray(pf[:, 0]),
            np.ascontiguousarray(pf[:, 1]),
            pf.shape[0],
            dc,
            dc.shape[0],
            self.ctf,
            self.cti,
            memo_k,
            memo_v,
            comp,
        )
        _check_overflow(int(us), comp)
        return int(us), components_dict(comp)

    def step_times(self, steps) -> tuple[np.ndarray, np.ndarray]:
        """Many steps at once: ``steps`` is a sequence of (prefills, decodes)."""
        pf_off = [0]
        dc_off = [0]
        pf_rows: list[tuple[int, int]] = []
        dc_rows: list[int] = []
        for prefills, decodes in steps:
            pf_rows.extend((int(a), int(b)) for a, b in prefills)
            dc_rows.extend(int(c) for c in decodes)
            pf_off.append(len(pf_rows))
            dc_off.append(len(dc_rows))
        pf = _as_entries(pf_rows, "prefills", 2)
        dc = _as_entries(dc_rows, "decodes", 1)
        _check_entries(pf, dc)
        n = len(pf_off) - 1
        out_us = np.zeros(n, np.int64)
        out_comp = np.zeros((n, schema.N_COMPONENTS))
        nb.step_times_nb(
            np.asarray(pf_off, np.int64),
            np.ascontiguousarray(pf[:, 0]),
            np.ascontiguousarray(pf[:, 1]),
            np.asarray(dc_off, np.int64),
            dc,
            self.ctf,
            self.cti,
            out_us,
            out_comp,
        )
        if out_us.size and out_us.max() >= MAX_STEP_US:
            _check_overflow(int(out_us.max()), None)
        return out_us, out_comp

    # -- explanation (for `step-time` and users) --------------------------------------------
    def gemm_mfus(self, m: int) -> dict[str, float]:
        if self.step_model == "v1":
            return {}
        return {
            name: float(nb.gemm_mfu_nb(int(m), j, self.ctf, self.cti))
            for j, name in enumerate(SHAPE_NAMES)
        }

    def decode_mfu(self, batch_size: int, kv_len: int) -> float:
        if self.step_model == "v1":
            return self.hardware.mfu_decode
        b0, b1 = nb.bracket_nb(
            self.cti, int(self.cti[schema.I_BS]), int(self.cti[schema.I_N_BS]), int(batch_size)
        )
        memo_k, memo_v = new_memo(1)
        return float(
            nb.decode_mfu_nb(
                int(batch_size), int(kv_len), b0, b1, self.ctf, self.cti, memo_k, memo_v
            )
        )

    def prefill_mfu(self, seq_len: int) -> float:
        if self.step_model == "v1":
            return self.hardware.mfu_prefill
        i = nb.prefill_bucket_nb(int(seq_len))
        return float(self.ctf[self.cti[schema.I_PF_BUCKET] + i])

    def weight_bytes_read(self, m: int) -> float:
        """Weight bytes one GPU reads in a step of m tokens (MoE: the activated experts)."""
        if not self.model.extended:
            return float(self.ctf[schema.P_WB]) * float(self.ctf[schema.P_TAU])
        return float(moe.weight_bytes_read(self.model, float(m))) / (self.tp * self.model.dp)

    def gemm_time_us(self, m: int, prefill: bool = True) -> float:
        return float(nb.gemm_time_nb(int(m), prefill, self.ctf, self.cti)) * 1e6


def new_memo(size: int = nb.MEMO_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """An empty decode-MFU fallback memo (size must be a power of two)."""
    return np.full(size, -1, np.int64), np.zeros(size)


def components_dict(comp: np.ndarray) -> dict[str, float]:
    return {
        "prefill_compute_us": float(comp[schema.C_PREFILL_COMPUTE]),
        "prefill_memory_us": float(comp[schema.C_PREFILL_MEMORY]),
        "decode_compute_us": float(comp[schema.C_DECODE_COMPUTE]),
        "decode_memory_us": float(comp[schema.C_DECODE_MEMORY]),
        "overhead_us": float(comp[schema.C_OVERHEAD]),
        "hardware_us": float(comp[schema.C_HARDWARE]),
    }


def _as_entries(values, name: str, width: int) -> np.ndarray:
    """Integer entries as int64, with one clear error for anything else or out of range."""
    try:
        arr = (
            np.asarray(list(values), dtype=object).reshape(-1, width)
            if width > 1
            else np.asarray(list(values), dtype=object).reshape(-1)
        )
    except (TypeError, ValueError):
        raise ConfigError("malformed entries", field=name, value=list(values)) from None
    for v in arr.ravel().tolist():
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, np.integer))
            or not (0 <= v < MAX_ENTRY_TOKENS)
        ):
            raise ConfigError(
                f"entries must be integers in [0, {MAX_ENTRY_TOKENS})", field=name, value=v
            )
    return arr.astype(np.int64)


def _check_entries(pf: np.ndarray, dc: np.ndarray) -> None:
    if pf.size and (pf[:, 0].min() < 0 or pf[:, 1].min() < 1):
        raise ConfigError(
            "prefill entries need progress_index >= 0 and new_tokens >= 1", field="prefills"
        )
    if dc.size and dc.min() < 0:
        raise ConfigError("decode entries need a context length >= 0", field="decodes")


def _check_overflow(us: int, comp) -> None:
    if us >= MAX_STEP_US:
        raise ConfigError(
            "the step time overflows (more than 2**62 µs): the step is unrealistically large",
            field="prefills/decodes",
        )


def _par(model: ModelConfig, hw: Hardware, tp: int, v1: bool) -> np.ndarray:
    par = np.zeros(schema.N_PAR)
    L = float(model.n_layers)
    d = float(model.hidden)
    H = float(model.n_heads)
    dh = d / H
    bpp = float(model.bytes_per_param)
    bw = hw.bw_peak_tbs * 1e12
    if v1 and hw.bw_eff_constant > 0:
        bw *= hw.bw_eff_constant
    elif hw.bw_efficiency_factor != 0:
        bw *= hw.bw_efficiency_factor
    par[schema.P_PEAK] = hw.tflops_peak * 1e12
    par[schema.P_BW] = bw
    par[schema.P_TAU] = 1.0 / float(tp)
    par[schema.P_TP] = float(tp)
    par[schema.P_L] = L
    par[schema.P_H] = H
    par[schema.P_HD] = float(model.head_dim)
    par[schema.P_BPP] = bpp
    par[schema.P_WB] = model.weight_bytes
    par[schema.P_KVTOK] = 2 * L * float(model.n_kv_heads) * dh * bpp
    par[schema.P_ACTTOK] = L * d * bpp
    par[schema.P_OVH_LAYER] = hw.per_layer_overhead_us * L / float(tp)
    par[schema.P_OVH_STEP] = hw.t_overhead_us
    par[schema.P_OVH_PREFILL] = hw.prefill_overhead_us
    par[schema.P_OVH_MIXED] = hw.mixed_prefill_overhead_us
    par[schema.P_OVH_ALLREDUCE] = hw.allreduce_latency_us * 2.0 * L if tp > 1 else 0.0
    par[schema.P_V1] = 1.0 if v1 else 0.0
    par[schema.P_MFU_PREFILL] = hw.mfu_prefill
    par[schema.P_MFU_DECODE] = hw.mfu_decode
    par[schema.P_PF_SCALE] = hw.prefill_compute_scale or 1.0
    par[schema.P_DC_SCALE] = hw.decode_compute_scale or 1.0
    par[schema.P_OVH_REQ] = hw.step_request_overhead_us
    if tp > 1 and hw.allreduce_bw_gbs > 0:
        # ring all-reduce of the hidden state, twice per layer: 2(TP-1)/TP of the bytes each
        bytes_tok = 2.0 * L * d * bpp * 2.0 * (tp - 1) / float(tp)
        par[schema.P_AR_US_TOK] = bytes_tok / (hw.allreduce_bw_gbs * 1e9) * 1e6
    par[schema.P_REQ_FIXED] = hw.request_overhead_us
    par[schema.P_REQ_PROMPT] = hw.prompt_token_overhead_us
    par[schema.P_REQ_OUTPUT] = hw.output_token_overhead_us
    par[schema.P_OVH_LAYER_ALL] = hw.layer_overhead_us * L
    par[schema.P_REQ_STEPS] = hw.first_token_delay_steps
    par[schema.P_OVH_AR_PEER] = hw.allreduce_peer_latency_us * 2.0 * L * float(tp - 1)
    par[schema.P_DEC_ATTN] = 1.0
    if model.arch is not None or model.kv_cache_dtype != "auto":
        at = moe.attention_params(model, tp)
        par[schema.P_HD] = at["hd"]
        par[schema.P_DEC_ATTN] = at["dec"]
        par[schema.P_KVTOK] = at["kv_tok"]
        par[schema.P_SLIDE_FRAC] = at["slide"]
        par[schema.P_WINDOW] = at["win"]
    par[schema.P_EXT] = 1.0 if model.extended else 0.0
    if model.dp > 1:  # attention data parallelism: each GPU serves 1/dp of the batch
        par[schema.P_TAU] = 1.0 / float(tp * model.dp)
    par[schema.P_PLAIN] = float(
        par[schema.P_PF_SCALE] == 1.0
        and par[schema.P_DC_SCALE] == 1.0
        and par[schema.P_OVH_REQ] == 0.0
        and par[schema.P_OVH_LAYER_ALL] == 0.0
        and par[schema.P_OVH_AR_PEER] == 0.0
        and par[schema.P_AR_US_TOK] == 0.0
        and par[schema.P_EXT] == 0.0
    )  # (x 1.0 and + 0.0 are exact: skipping them leaves every step time as it is)
    scale = hw.step_cost_scale
    if scale != 1.0:  # every step time x scale: rates / scale, per-step overheads x scale
        par[schema.P_PEAK] /= scale
        par[schema.P_BW] /= scale
        for slot in (
            schema.P_OVH_LAYER,
            schema.P_OVH_STEP,
            schema.P_OVH_PREFILL,
            schema.P_OVH_MIXED,
            schema.P_OVH_ALLREDUCE,
            schema.P_OVH_REQ,
            schema.P_OVH_LAYER_ALL,
            schema.P_OVH_AR_PEER,
            schema.P_AR_US_TOK,
        ):
            par[slot] *= scale
    return par


def _shapes(model: ModelConfig) -> tuple[list[int], list[int]]:
    d = model.hidden
    d_kv = model.n_kv_heads * model.head_dim
    d_ff = model.d_ff
    ks = [d, d, d, d, d, d, d_ff]
    ns = [d, d_kv, d_kv, d, d_ff, d_ff, d]
    return ks, ns


def build_cost_model(
    model: ModelConfig,
    hardware: Hardware,
    tp: int,
    *,
    bench_data: str | Path | None = None,
    step_model: str = "auto",
    max_tokens: int = DEFAULT_GEMM_TABLE,
) -> CostModel:
    """Validate and pack the cost tables for one (model, hardware, TP, step model).

    ``bench_data``: the MFU table folder (default: the embedded H100 tables).
    ``step_model``: ``auto`` (v2 when tables exist for the GPU, else v1), ``v2`` or ``v1``.
    ``max_tokens``: G(M) is tabulated for M up to this (larger M is computed on demand).
    """
    tp = check_tp(tp)
    if step_model not in STEP_MODELS:
        raise ConfigError(
            "unknown step model",
            field="step_model",
            value=step_model,
            hint="one of: " + ", ".join(STEP_MODELS),
        )
    root = resolve_bench_dir(bench_data)
    tables: BenchTables | None = None
    if step_model in ("auto", "v2"):
        tables = load_bench_tables(str(root), hardware.name)
        if tables is None and step_model == "v2":
            raise ConfigError(
                f"no MFU tables for GPU {hardware.name!r}",
                file=root,
                field="step_model",
                value="v2",
                hint="roofline v2 needs bench_data/{gemm,mha/prefill,mha/decode}/"
                f"{hardware.name.lower()}/; use step_model v1 with "
                "mfuPrefill and mfuDecode in the hardware entry",
            )
        if tables is None and bench_data is not None and str(bench_data) != "":
            raise ConfigError(
                f"no MFU tables for GPU {hardware.name!r} in this folder",
                field="bench_data",
                value=str(root),
                hint=f"it needs gemm/, mha/prefill/ and mha/decode/ tables for "
                f"{hardware.name.lower()}; or give --step-model v1 (step_model = 'v1') to use "
                "the hardware entry's roofline-v1 efficiencies",
            )
    v1 = tables is None
    if v1 and not hardware.has_v1_efficiencies:
        raise ConfigError(
            f"neither MFU tables nor roofline-v1 efficiencies for GPU {hardware.name!r}",
            file=hardware.source or None,
            field=f"{hardware.name}.mfuPrefill/mfuDecode",
            hint=f"add bench_data tables for {hardware.name} under {root}, or set mfuPrefill "
            "and mfuDecode (and optionally BwEffConstant) in the hardware entry",
        )
    ks, ns = _shapes(model)
    notes: list[str] = []
    fparts: list[np.ndarray] = []
    iparts: list[np.ndarray] = []
    head = np.zeros(schema.N_HEAD, np.int64)
    sizes = {"f": schema.N_PAR, "i": schema.N_HEAD}

    def put_f(slot: int, arr) -> None:
        a = np.ascontiguousarray(arr, dtype=np.float64).ravel()
        head[slot] = sizes["f"]
        sizes["f"] += len(a)
        fparts.append(a)

    def put_i(slot: int, arr) -> None:
        a = np.ascontiguousarray(arr, dtype=np.int64).ravel()
        head[slot] = sizes["i"]
        sizes["i"] += len(a)
        iparts.append(a)

    table_n = max(int(max_tokens), 1) + 1
    head[schema.I_GEMM_TAB_N] = table_n
    put_f(schema.I_GEMM_P, np.zeros(table_n))
    put_f(schema.I_GEMM_D, np.zeros(table_n))
    put_i(schema.I_SHAPE_K, ks)
    put_i(schema.I_SHAPE_N, ns)
    attn_key = dec_name = None
    groups: list[tuple[int, int]] = []
    if v1:
        put_i(schema.I_GROUP_OFF, np.zeros(8))
        put_i(schema.I_GROUP_M, [])
        put_f(schema.I_GROUP_MFU, [])
        head[schema.I_GEMM_ROWS] = 0
        for slot in (
            schema.I_GEMM_M,
            schema.I_GEMM_K,
            schema.I_GEMM_N,
            schema.I_BS,
            schema.I_KV,
            schema.I_ROW_BS,
            schema.I_ROW_KV,
        ):
            put_i(slot, [])
        for slot in (schema.I_GEMM_MFU, schema.I_GRID, schema.I_ROW_MFU):
            put_f(slot, [])
        put_f(schema.I_PF_BUCKET, np.full(nb.N_BUCKETS, hardware.mfu_prefill))
    else:
        assert tables is not None
        attn_key = choose_attention_key(tables, model.n_heads, model.n_kv_heads, model.head_dim)
        if attn_key != model.attention_key:
            notes.append(
                f"attention config {model.attention_key} has no MFU table; "
                f"using the nearest, {attn_key}"
            )
        dec = choose_decode_table(tables, attn_key, tp)
        dec_name = dec.key
        if dec.key != f"{attn_key}-tp{tp}":
            notes.append(f"no decode MFU table for TP {tp}; using {dec.key}")
        groups = [choose_gemm_group(tables, k, n) for k, n in zip(ks, ns)]
        off = [0]
        gm: list[np.ndarray] = []
        gf: list[np.ndarray] = []
        for kk, nn in groups:
            sel = (tables.gemm_k == kk) & (tables.gemm_n == nn)
            ms = tables.gemm_m[sel]
            mf = tables.gemm_mfu[sel]
            order = np.argsort(ms, kind="stable")
            gm.append(ms[order])
            gf.append(mf[order])
            off.append(off[-1] + len(ms))
        put_i(schema.I_GROUP_OFF, off)
        put_i(schema.I_GROUP_M, np.concatenate(gm))
        put_f(schema.I_GROUP_MFU, np.concatenate(gf))
        head[schema.I_GEMM_ROWS] = len(tables.gemm_m)
        put_i(schema.I_GEMM_M, tables.gemm_m)
        put_i(schema.I_GEMM_K, tables.gemm_k)
        put_i(schema.I_GEMM_N, tables.gemm_n)
        put_f(schema.I_GEMM_MFU, tables.gemm_mfu)
        pre = tables.prefill[attn_key]
        order = np.argsort(pre.seq_len, kind="stable")
        seq_sorted = np.ascontiguousarray(pre.seq_len[order])
        mfu_sorted = np.ascontiguousarray(pre.mfu[order])
        put_f(
            schema.I_PF_BUCKET,
            [nb.prefill_mfu_nb(seq_sorted, mfu_sorted, pre.seq_len, pre.mfu, b) for b in BUCKETS],
        )
        axb = np.unique(dec.batch_size)
        axk = np.unique(dec.kv_len)
        grid = np.zeros((len(axb), len(axk)))
        bi = np.searchsorted(axb, dec.batch_size)
        ki = np.searchsorted(axk, dec.kv_len)
        for r in range(len(dec.mfu)):  # file order: a repeated cell keeps the last value
            grid[bi[r], ki[r]] = dec.mfu[r]
        head[schema.I_N_BS] = len(axb)
        put_i(schema.I_BS, axb)
        head[schema.I_N_KV] = len(axk)
        put_i(schema.I_KV, axk)
        put_f(schema.I_GRID, grid)
        head[schema.I_N_ROWS] = len(dec.mfu)
        put_i(schema.I_ROW_BS, dec.batch_size)
        put_i(schema.I_ROW_KV, dec.kv_len)
        put_f(schema.I_ROW_MFU, dec.mfu)
    moe.check_ep(model, tp)
    par = _par(model, hardware, tp, v1)
    ext = None
    if model.extended:
        ext = moe.build_ext_tables(model, hardware, tp, tables, n=table_n, bw=par[schema.P_BW])
        notes.extend(ext.notes)
    put_f(schema.I_EXT_WB, ext.weight_bytes if ext else [])
    put_f(schema.I_EXT_COMM, ext.comm_s if ext else [])
    if not model.tp_divides_heads(tp):
        notes.append(
            f"TP {tp} does not divide the attention heads ({model.n_heads}) and KV "
            f"heads ({model.n_kv_heads}) of {model.name}"
        )
    ctf = np.concatenate([par] + fparts)
    cti = np.concatenate([head] + iparts)
    nb.fill_gemm_tables_nb(ctf, cti)
    if ext is not None:
        ctf[cti[schema.I_GEMM_P] : cti[schema.I_GEMM_P] + table_n] = ext.gemm_prefill_s
        ctf[cti[schema.I_GEMM_D] : cti[schema.I_GEMM_D] + table_n] = ext.gemm_decode_s
    return CostModel(
        model=model,
        hardware=hardware,
        tp=tp,
        step_model="v1" if v1 else "v2",
        ctf=ctf,
        cti=cti,
        attention_key=attn_key,
        decode_table=dec_name,
        gemm_groups=tuple(groups),
        notes=tuple(notes),
        bench_data=None if bench_data is None else str(bench_data),
    )


def weights_fit(model: ModelConfig, hardware: Hardware, tp: int) -> bool | None:
    """Whether the weights fit in MemoryGiB * TP (None when MemoryGiB is unknown)."""
    if not hardware.memory_gib:
        return None
    return moe.weight_memory_bytes(model) <= hardware.memory_gib * 2**30 * tp * model.dp


def auto_kv_blocks(
    model: ModelConfig, hardware: Hardware, tp: int, block_size: int, gpu_memory_utilization: float
) -> int | None:
    """SPEC §2: floor((MemoryGiB·2^30·TP·u − weight bytes) / (block · 2·L·KV·hd·B))."""
    if not hardware.memory_gib:
        return None
    n_gpu = tp * model.dp
    free = hardware.memory_gib * 2**30 * n_gpu * gpu_memory_utilization
    free -= moe.weight_memory_bytes(model)
    per_block = block_size * model.kv_bytes_per_token()
    if model.arch is not None and model.arch.is_mla:
        per_block *= tp  # every TP rank holds the whole latent cache
    return max(int(math.floor(free / per_block)), 0)


def moe_breakdown(cm: CostModel, prefill_tokens: int, n_decode: int) -> dict:
    """The deployment (dtypes, GEMM peak, weight bytes read) and, for an MoE model, the expert
    facts of the step's decode batch and prefill tokens."""
    m = cm.model
    if not m.extended and m.kv_cache_dtype == "auto":
        return {}
    out: dict = {
        "deployment": {
            "weight_dtype": m.weight_dtype,
            "weight_bytes_per_param": m.weight_bpp,
            "expert_bytes_per_param": moe.A.expert_bpp(m),
            "kv_cache_dtype": m.kv_cache_dtype,
            "kv_bytes_per_token": m.kv_bytes_per_token(),
            "gemm_peak_tflops": moe.gemm_peak_tflops(m, cm.hardware)[0],
            "ep": m.ep,
            "dp": m.dp,
            "total_params": m.n_params,
            "active_params": m.n_active_params,
        }
    }
    if m.arch is not None and (m.arch.is_mla or m.arch.n_sliding_layers):
        a = m.arch
        out["attention"] = {
            "mla": a.is_mla,
            "kv_lora_rank": a.kv_lora_rank,
            "sliding_layers": a.n_sliding_layers,
            "sliding_window": a.sliding_window,
        }
    for label, n in (("decode", n_decode), ("prefill", prefill_tokens)):
        if n:
            out[f"{label}_weight_bytes_read"] = cm.weight_bytes_read(n)
            facts = moe.explain(m, cm.hardware, cm.tp, n)
            if facts:
                out[f"{label}_moe"] = facts
    return out


def step_breakdown(cm: CostModel, prefills, decodes) -> dict:
    """A readable account of one step: time, components, bounding term, MFUs used."""
    us, comp = cm.step_time(prefills, decodes)
    prefills = [tuple(p) for p in prefills]
    decodes = list(decodes)
    terms = {}
    if prefills:
        terms["prefill compute"] = comp["prefill_compute_us"]
        terms["prefill memory"] = comp["prefill_memory_us"]
    if decodes:
        terms["decode compute"] = comp["decode_compute_us"]
        terms["decode memory"] = comp["decode_memory_us"]
    bound = max(terms, key=terms.get) if terms else "overhead only (empty step)"
    info: dict = {
        "model": cm.model.name,
        "hardware": cm.hardware.name,
        "tp": cm.tp,
        "step_model": cm.step_model,
        "step_us": us,
        "bound_by": bound,
        **comp,
        "n_prefill": len(prefills),
        "n_decode": len(decodes),
        "prefill_tokens": int(sum(n for _, n in prefills)),
        "attention_table": cm.attention_key,
        "decode_table": cm.decode_table,
        "notes": list(cm.notes),
        **moe_breakdown(cm, sum(n for _, n in prefills), len(decodes)),
    }
    if decodes:
        bs = len(decodes)
        mfus = [cm.decode_mfu(bs, c) for c in decodes]
        info["decode_gemm_mfu"] = cm.gemm_mfus(bs)
        info["decode_attention_mfu"] = {"min": min(mfus), "max": max(mfus)}
        info["decode_gemm_us"] = cm.gemm_time_us(bs, prefill=False)
    if prefills:
        buckets: dict[int, list[int]] = {}
        for pi, n in prefills:
            b = BUCKETS[nb.prefill_bucket_nb(int(pi + n))]
            buckets.setdefault(b, []).append(n)
        info["prefill_buckets"] = {
            str(b): {
                "tokens": sum(ns),
                "attention_mfu": cm.prefill_mfu(b),
                "gemm_us": cm.gemm_time_us(sum(ns)),
                "gemm_mfu": cm.gemm_mfus(sum(ns)),
            }
            for b, ns in sorted(buckets.items())
        }
    return info
