"""Roofline step cost: build the per-(model, GPU, TP) tables and evaluate steps.

``build_cost_model`` validates and packs everything into ``CostTables`` (see
``stepcost_nb``); ``CostModel.step_time`` and ``CostModel.step_times`` call the kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import stepcost_nb as nb
from .catalog import resolve_bench_dir
from .config import Hardware, ModelConfig, check_tp
from .errors import ConfigError
from .mfu import (BenchTables, choose_attention_key, choose_decode_table, choose_gemm_group,
                  load_bench_tables)

STEP_MODELS = ("auto", "v2", "v1")
SHAPE_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
BUCKETS = tuple(512 * 2 ** i for i in range(nb.N_BUCKETS))
DEFAULT_GEMM_TABLE = 8192


@dataclass(frozen=True, slots=True, kw_only=True)
class CostModel:
    """Everything the kernels need for one (model, hardware, TP, step model)."""

    model: ModelConfig
    hardware: Hardware
    tp: int
    step_model: str  # "v2" or "v1"
    tables: tuple  # nb.CostTables
    attention_key: str | None = None  # the MFU table key used (possibly substituted)
    decode_table: str | None = None
    gemm_groups: tuple[tuple[int, int], ...] = ()
    notes: tuple[str, ...] = field(default=())

    # -- evaluation -----------------------------------------------------------------------
    def step_time(self, prefills=(), decodes=()) -> tuple[int, dict[str, float]]:
        """Step time in µs and its components for one step.

        ``prefills``: (progress_index, new_tokens) pairs; ``decodes``: progress indices."""
        pf = np.asarray(list(prefills), dtype=np.int64).reshape(-1, 2)
        dc = np.ascontiguousarray(np.asarray(list(decodes), dtype=np.int64).reshape(-1))
        _check_entries(pf, dc)
        comp = np.zeros(nb.N_COMPONENTS)
        us = nb.step_time_nb(np.ascontiguousarray(pf[:, 0]), np.ascontiguousarray(pf[:, 1]),
                             pf.shape[0], dc, dc.shape[0], self.tables, comp)
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
        pf = np.asarray(pf_rows, dtype=np.int64).reshape(-1, 2)
        dc = np.asarray(dc_rows, dtype=np.int64)
        _check_entries(pf, dc)
        n = len(pf_off) - 1
        out_us = np.zeros(n, np.int64)
        out_comp = np.zeros((n, nb.N_COMPONENTS))
        nb.step_times_nb(np.asarray(pf_off, np.int64), np.ascontiguousarray(pf[:, 0]),
                         np.ascontiguousarray(pf[:, 1]), np.asarray(dc_off, np.int64), dc,
                         self.tables, out_us, out_comp)
        return out_us, out_comp

    # -- explanation (for `step-time` and users) --------------------------------------------
    def gemm_mfus(self, m: int) -> dict[str, float]:
        if self.step_model == "v1":
            return {}
        return {name: float(nb.gemm_mfu_nb(int(m), j, self.tables))
                for j, name in enumerate(SHAPE_NAMES)}

    def decode_mfu(self, batch_size: int, kv_len: int) -> float:
        if self.step_model == "v1":
            return self.hardware.mfu_decode
        b0, b1 = nb.bracket_nb(self.tables.decode_bs, int(batch_size))
        return float(nb.decode_mfu_nb(int(batch_size), int(kv_len), b0, b1, self.tables))

    def prefill_mfu(self, seq_len: int) -> float:
        if self.step_model == "v1":
            return self.hardware.mfu_prefill
        b = 512
        i = 0
        while b < seq_len and b < 65536:
            b *= 2
            i += 1
        return float(self.tables.prefill_bucket_mfu[i])

    def gemm_time_us(self, m: int, prefill: bool = True) -> float:
        tab = self.tables.gemm_prefill if prefill else self.tables.gemm_decode
        if m < tab.shape[0]:
            return float(tab[m]) * 1e6
        const = 0.0
        if self.step_model == "v1":
            const = self.hardware.mfu_prefill if prefill else self.hardware.mfu_decode
        return float(nb.gemm_block_nb(int(m), const, self.tables)) * 1e6


def components_dict(comp: np.ndarray) -> dict[str, float]:
    return {
        "prefill_compute_us": float(comp[nb.C_PREFILL_COMPUTE]),
        "prefill_memory_us": float(comp[nb.C_PREFILL_MEMORY]),
        "decode_compute_us": float(comp[nb.C_DECODE_COMPUTE]),
        "decode_memory_us": float(comp[nb.C_DECODE_MEMORY]),
        "overhead_us": float(comp[nb.C_OVERHEAD]),
        "hardware_us": float(comp[nb.C_HARDWARE]),
    }


def _check_entries(pf: np.ndarray, dc: np.ndarray) -> None:
    if pf.size and (pf[:, 0].min() < 0 or pf[:, 1].min() < 1):
        raise ConfigError("prefill entries need progress_index >= 0 and new_tokens >= 1",
                          field="prefills")
    if dc.size and dc.min() < 0:
        raise ConfigError("decode entries need a context length >= 0", field="decodes")


def _par(model: ModelConfig, hw: Hardware, tp: int, v1: bool) -> np.ndarray:
    par = np.zeros(nb.N_PAR)
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
    par[nb.P_PEAK] = hw.tflops_peak * 1e12
    par[nb.P_BW] = bw
    par[nb.P_TAU] = 1.0 / float(tp)
    par[nb.P_TP] = float(tp)
    par[nb.P_L] = L
    par[nb.P_H] = H
    par[nb.P_HD] = float(model.head_dim)
    par[nb.P_BPP] = bpp
    par[nb.P_WB] = model.weight_bytes
    par[nb.P_KVTOK] = 2 * L * float(model.n_kv_heads) * dh * bpp
    par[nb.P_ACTTOK] = L * d * bpp
    par[nb.P_OVH_LAYER] = hw.per_layer_overhead_us * L / float(tp)
    par[nb.P_OVH_STEP] = hw.t_overhead_us
    par[nb.P_OVH_PREFILL] = hw.prefill_overhead_us
    par[nb.P_OVH_MIXED] = hw.mixed_prefill_overhead_us
    par[nb.P_OVH_ALLREDUCE] = hw.allreduce_latency_us * 2.0 * L if tp > 1 else 0.0
    par[nb.P_V1] = 1.0 if v1 else 0.0
    par[nb.P_MFU_PREFILL] = hw.mfu_prefill
    par[nb.P_MFU_DECODE] = hw.mfu_decode
    return par


def _shapes(model: ModelConfig) -> tuple[list[int], list[int]]:
    d = model.hidden
    d_kv = model.n_kv_heads * model.head_dim
    d_ff = model.d_ff
    ks = [d, d, d, d, d, d, d_ff]
    ns = [d, d_kv, d_kv, d, d_ff, d_ff, d]
    return ks, ns


def _empty_i() -> np.ndarray:
    return np.zeros(0, np.int64)


def _empty_f() -> np.ndarray:
    return np.zeros(0, np.float64)


def build_cost_model(model: ModelConfig, hardware: Hardware, tp: int, *,
                     bench_data: str | Path | None = None, step_model: str = "auto",
                     max_tokens: int = DEFAULT_GEMM_TABLE) -> CostModel:
    """Validate and pack the cost tables for one (model, hardware, TP, step model).

    ``bench_data``: the MFU table folder (default: the embedded H100 tables).
    ``step_model``: ``auto`` (v2 when tables exist for the GPU, else v1), ``v2`` or ``v1``.
    ``max_tokens``: G(M) is tabulated for M up to this (larger M is computed on demand).
    """
    tp = check_tp(tp)
    if step_model not in STEP_MODELS:
        raise ConfigError("unknown step model", field="--step-model", value=step_model,
                          hint="one of: " + ", ".join(STEP_MODELS))
    root = resolve_bench_dir(bench_data)
    tables: BenchTables | None = None
    if step_model in ("auto", "v2"):
        tables = load_bench_tables(str(root), hardware.name)
        if tables is None and step_model == "v2":
            raise ConfigError(f"no MFU tables for GPU {hardware.name!r}", file=root,
                              field="--step-model", value="v2",
                              hint="roofline v2 needs bench_data/{gemm,mha/prefill,mha/decode}/"
                                   f"{hardware.name.lower()}/; use --step-model v1 with "
                                   "mfuPrefill and mfuDecode in the hardware entry")
    v1 = tables is None
    if v1 and not hardware.has_v1_efficiencies:
        raise ConfigError(
            f"neither MFU tables nor roofline-v1 efficiencies for GPU {hardware.name!r}",
            file=hardware.source or None, field=f"{hardware.name}.mfuPrefill/mfuDecode",
            hint=f"add bench_data tables for {hardware.name} under {root}, or set mfuPrefill "
                 "and mfuDecode (and optionally BwEffConstant) in the hardware entry")
    ks, ns = _shapes(model)
    notes: list[str] = []
    if v1:
        empty = dict(group_off=np.zeros(8, np.int64), group_m=_empty_i(), group_mfu=_empty_f(),
                     gemm_m=_empty_i(), gemm_k=_empty_i(), gemm_n=_empty_i(),
                     gemm_mfu=_empty_f(), prefill_bucket_mfu=np.full(nb.N_BUCKETS,
                                                                     hardware.mfu_prefill),
                     decode_bs=_empty_i(), decode_kv=_empty_i(),
                     decode_grid=np.zeros((0, 0)), row_bs=_empty_i(), row_kv=_empty_i(),
                     row_mfu=_empty_f())
        attn_key = dec_name = None
        groups: list[tuple[int, int]] = []
    else:
        assert tables is not None
        attn_key = choose_attention_key(tables, model.n_heads, model.n_kv_heads, model.head_dim)
        if attn_key != model.attention_key:
            notes.append(f"attention config {model.attention_key} has no MFU table; "
                         f"using the nearest, {attn_key}")
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
        pre = tables.prefill[attn_key]
        order = np.argsort(pre.seq_len, kind="stable")
        seq_sorted = np.ascontiguousarray(pre.seq_len[order])
        mfu_sorted = np.ascontiguousarray(pre.mfu[order])
        bucket_mfu = np.array([nb.prefill_mfu_nb(seq_sorted, mfu_sorted, pre.seq_len, pre.mfu, b)
                               for b in BUCKETS], np.float64)
        axb = np.unique(dec.batch_size)
        axk = np.unique(dec.kv_len)
        grid = np.zeros((len(axb), len(axk)))
        bi = np.searchsorted(axb, dec.batch_size)
        ki = np.searchsorted(axk, dec.kv_len)
        for r in range(len(dec.mfu)):  # file order: a repeated cell keeps the last value
            grid[bi[r], ki[r]] = dec.mfu[r]
        empty = dict(group_off=np.asarray(off, np.int64), group_m=np.concatenate(gm),
                     group_mfu=np.concatenate(gf), gemm_m=tables.gemm_m, gemm_k=tables.gemm_k,
                     gemm_n=tables.gemm_n, gemm_mfu=tables.gemm_mfu,
                     prefill_bucket_mfu=bucket_mfu, decode_bs=axb.astype(np.int64),
                     decode_kv=axk.astype(np.int64), decode_grid=grid,
                     row_bs=dec.batch_size, row_kv=dec.kv_len, row_mfu=dec.mfu)
    if not model.tp_divides_heads(tp):
        notes.append(f"TP {tp} does not divide the attention heads ({model.n_heads}) and KV "
                     f"heads ({model.n_kv_heads}) of {model.name}")
    par = _par(model, hardware, tp, v1)
    size = max(int(max_tokens), 1) + 1
    g_pre = np.zeros(size)
    proto = nb.CostTables(par=par, gemm_prefill=g_pre, gemm_decode=g_pre,
                          shape_k=np.asarray(ks, np.int64), shape_n=np.asarray(ns, np.int64),
                          **{k: np.ascontiguousarray(v) for k, v in empty.items()})
    if v1:
        g_dec = np.zeros(size)
        nb.fill_gemm_table_nb(g_pre, hardware.mfu_prefill, proto)
        nb.fill_gemm_table_nb(g_dec, hardware.mfu_decode, proto)
        proto = proto._replace(gemm_decode=g_dec)
    else:
        nb.fill_gemm_table_nb(g_pre, 0.0, proto)
    return CostModel(model=model, hardware=hardware, tp=tp, step_model="v1" if v1 else "v2",
                     tables=proto, attention_key=attn_key, decode_table=dec_name,
                     gemm_groups=tuple(groups), notes=tuple(notes))


def weights_fit(model: ModelConfig, hardware: Hardware, tp: int) -> bool | None:
    """Whether the weights fit in MemoryGiB * TP (None when MemoryGiB is unknown)."""
    if not hardware.memory_gib:
        return None
    return model.weight_bytes <= hardware.memory_gib * 2 ** 30 * tp


def auto_kv_blocks(model: ModelConfig, hardware: Hardware, tp: int, block_size: int,
                   gpu_memory_utilization: float) -> int | None:
    """SPEC §2: floor((MemoryGiB·2^30·TP·u − weight bytes) / (block · 2·L·KV·hd·B))."""
    if not hardware.memory_gib:
        return None
    free = hardware.memory_gib * 2 ** 30 * tp * gpu_memory_utilization - model.weight_bytes
    per_block = block_size * model.kv_bytes_per_token()
    return max(int(math.floor(free / per_block)), 0)


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
        "model": cm.model.name, "hardware": cm.hardware.name, "tp": cm.tp,
        "step_model": cm.step_model, "step_us": us, "bound_by": bound, **comp,
        "n_prefill": len(prefills), "n_decode": len(decodes),
        "prefill_tokens": int(sum(n for _, n in prefills)),
        "attention_table": cm.attention_key, "decode_table": cm.decode_table,
        "notes": list(cm.notes),
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
            b = 512
            while b < pi + n and b < 65536:
                b *= 2
            buckets.setdefault(b, []).append(n)
        info["prefill_buckets"] = {
            str(b): {"tokens": sum(ns), "attention_mfu": cm.prefill_mfu(b),
                     "gemm_us": cm.gemm_time_us(sum(ns)), "gemm_mfu": cm.gemm_mfus(sum(ns))}
            for b, ns in sorted(buckets.items())}
    return info
