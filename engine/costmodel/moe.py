"""Step-cost tables of extended models: mixture-of-experts FFNs, expert parallelism, quantised
weights, MLA and sliding-window attention.

A plain dense bf16 model keeps the reference's formulas (``stepcost_nb``). An extended model
(``ModelConfig.extended``) gets, per step size M (tokens), three tables that the kernel reads
instead (``P_EXT``):

- G(M): the GEMM time of one step. Dense projections (attention, dense FFN layers, shared
  experts, router) as in roofline v2 (max of compute at the table's MFU and the weight-read
  floor, per shape); routed experts as a grouped GEMM: FLOPs of the M·k routed (token, expert)
  pairs at the MFU of a GEMM of m = tokens per active expert, times ``MoeGemmEfficiency``,
  against the read floor of the experts that M tokens activate;
- WB(M): the weight bytes the step reads: everything but the routed experts, plus the
  activated experts (read at ``MoeBwEfficiency`` of the bandwidth);
- C(M): the all-to-all time of expert parallelism (dispatch and combine per MoE layer over
  ``InterconnectGBs``, plus ``AllReduceLatency`` per collective).

Activated experts: the expected number of distinct experts that M tokens route to,
E·(1 − (1 − k/E)^M) for uniform routing (``moe_skew`` 0), a Zipf-skewed sum otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infersweep.config import arch as A
from infersweep.config.models import Hardware, ModelConfig
from infersweep.costmodel.mfu import EPS_MFU, BenchTables, choose_gemm_group
from infersweep.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ExtTables:
    gemm_prefill_s: np.ndarray  # G(M), seconds per step (per GPU)
    gemm_decode_s: np.ndarray
    weight_bytes: np.ndarray  # WB(M), bytes of the whole model (the kernel multiplies by 1/TP)
    comm_s: np.ndarray  # C(M), seconds per step
    gemm_peak_tflops: float
    notes: tuple[str, ...]


def moe_efficiencies(hw: Hardware) -> tuple[float, float]:
    """(MoeGemmEfficiency, MoeBwEfficiency) of an entry: 1.0 and 0.0 when not set (0: the
    experts stream at the entry's own bandwidth, like every other byte)."""
    return hw.moe_gemm_efficiency or 1.0, hw.moe_bw_efficiency


def expert_bw(hw: Hardware, bw: float) -> float:
    """The bandwidth (B/s) routed experts stream at: ``MoeBwEfficiency`` × the HBM peak, or the
    entry's effective bandwidth ``bw`` when it is not set. (A fraction of the peak, not of
    ``bw``, so that a fit survives profiles with another ``bwEfficiencyFactor``.)"""
    b = moe_efficiencies(hw)[1]
    return hw.bw_peak_tbs * 1e12 * b / hw.step_cost_scale if b > 0 else bw


def gemm_peak_tflops(model: ModelConfig, hw: Hardware) -> tuple[float, str]:
    """The peak the GEMMs run at: FP8 where weights (and so activations, as vLLM's FP8 path
    quantises them per token) are FP8 and the GPU has an FP8 peak; else the BF16 peak."""
    fp8 = model.weight_bpp == A.WEIGHT_DTYPES["fp8"]
    if fp8 and hw.tflops_peak_fp8 > 0:
        return hw.tflops_peak_fp8, ""
    if fp8:
        return hw.tflops_peak, (
            f"{hw.name} has no FP8 peak (TFlopsPeakFP8): FP8 weights are costed as weight-only "
            "(BF16 GEMMs, FP8 bytes)"
        )
    return hw.tflops_peak, ""


def _mfu_fn(tables: BenchTables | None, const: float):
    """mfu(m, k, n): linear in m within the table's (K, N) group (clamped at both ends,
    rows below ε skipped); a constant in roofline v1."""
    cache: dict = {}

    def mfu(m: np.ndarray, k: int, n: int) -> np.ndarray:
        if tables is None:
            return np.full(np.shape(m), const)
        grp = choose_gemm_group(tables, k, n)
        if grp not in cache:
            sel = (tables.gemm_k == grp[0]) & (tables.gemm_n == grp[1])
            sel &= tables.gemm_mfu >= EPS_MFU
            ms = tables.gemm_m[sel].astype(np.float64)
            fs = tables.gemm_mfu[sel]
            order = np.argsort(ms, kind="stable")
            cache[grp] = (ms[order], fs[order])
        ms, fs = cache[grp]
        if ms.size == 0:
            return np.full(np.shape(m), EPS_MFU)
        return np.interp(np.asarray(m, np.float64), ms, fs)

    return mfu


def _dense(m, shapes, count, mfu, peak, bw, bpp) -> np.ndarray:
    """count × Σ_shapes max(2mKN / (peak·mfu(m)), K·N·bytes / bw) (roofline v2's G per layer)."""
    out = np.zeros_like(m)
    for k, n in shapes:
        compute = 2.0 * m * k * n / (peak * mfu(m, k, n))
        out += np.maximum(compute, k * n * bpp / bw)
    return out * count


def active_experts(model: ModelConfig, n_tokens) -> np.ndarray:
    a = model.arch
    return A.expected_active_experts(n_tokens, a.n_experts, a.top_k, model.moe_skew)


def build_ext_tables(
    model: ModelConfig,
    hw: Hardware,
    tp: int,
    tables: BenchTables | None,
    *,
    n: int,
    bw: float,
) -> ExtTables:
    """G(M), WB(M) and C(M) for M = 0 .. n-1 (``bw``: the effective bandwidth in B/s)."""
    a = model.arch
    notes: list[str] = []
    peak_tf, note = gemm_peak_tflops(model, hw)
    if note:
        notes.append(note)
    peak = peak_tf * 1e12 / hw.step_cost_scale  # (``bw`` is already scaled)
    m = np.arange(n, dtype=np.float64)
    L = model.n_layers
    d = model.hidden
    wbpp = model.weight_bpp
    gemm = {}
    dp = model.dp
    mr = m / dp  # tokens of one attention data-parallel rank
    for phase, const in (("prefill", hw.mfu_prefill), ("decode", hw.mfu_decode)):
        mfu = _mfu_fn(tables, const)
        g = _dense(mr, A.attention_shapes(model), L, mfu, peak, bw, wbpp)
        if a is None or not a.is_moe:
            g += _dense(mr, A.ffn_shapes(d, model.d_ff), L, mfu, peak, bw, wbpp)
            gemm[phase] = g / float(tp)
        else:
            n_moe = a.n_moe_layers
            g += _dense(mr, A.ffn_shapes(d, model.intermediate), L - n_moe, mfu, peak, bw, wbpp)
            g += _dense(mr, A.ffn_shapes(d, a.shared_intermediate), n_moe, mfu, peak, bw, wbpp)
            g += _dense(mr, [(d, a.n_experts)], n_moe, mfu, peak, bw, wbpp)
            experts = n_moe * _experts(model, hw, m, mfu, peak, bw)  # all tokens, all GPUs
            gemm[phase] = g / float(tp) + experts / float(tp * dp)
    wb = weight_bytes_read(model, m)  # (the kernel divides by tp x dp)
    comm = np.zeros(n)
    if a is not None and a.is_moe:  # the experts stream at expert_bw, the rest at bw
        wb += expert_bytes_read(model, m) * (bw / expert_bw(hw, bw) - 1.0)
        comm = all_to_all_s(model, hw, tp, m)
    return ExtTables(gemm["prefill"], gemm["decode"], wb, comm, peak_tf, tuple(notes))


def expert_bytes_read(model: ModelConfig, m) -> np.ndarray:
    """Bytes of the routed experts that steps of m tokens activate (all GPUs together)."""
    a = model.arch
    m = np.asarray(m, np.float64)
    if a is None or not a.is_moe:
        return np.zeros_like(m)
    one = 3.0 * model.hidden * a.moe_intermediate * A.expert_bpp(model)
    return a.n_moe_layers * active_experts(model, m) * one


def weight_bytes_read(model: ModelConfig, m) -> np.ndarray:
    """Weight bytes a step of m tokens reads (all GPUs together): every weight but the routed
    experts and the input embedding (a lookup), on each attention data-parallel rank, plus the
    activated experts."""
    counts = A.param_counts(model)
    a = model.arch
    linear = counts["total"] - counts["routed_experts"] - counts["embeddings"]
    embed_read = counts["embeddings"] / (1 if a is not None and a.tie_embeddings else 2)
    rest = linear * model.weight_bpp + embed_read * float(model.bytes_per_param)
    return rest * model.dp + expert_bytes_read(model, m)  # dp ranks each read the rest


def weight_memory_bytes(model: ModelConfig) -> float:
    """Weight bytes held by all GPUs: attention data parallelism replicates everything but the
    routed experts on each of its dp ranks."""
    if model.dp == 1:
        return model.weight_bytes
    routed = A.param_counts(model)["routed_experts"] * A.expert_bpp(model)
    return model.weight_bytes + (model.dp - 1) * (model.weight_bytes - routed)


def _experts(model: ModelConfig, hw: Hardware, m, mfu, peak, bw) -> np.ndarray:
    """One MoE layer's routed experts (all GPUs together): grouped GEMM of the M·k (token,
    expert) pairs against the read floor of the activated experts."""
    a = model.arch
    n_act = active_experts(model, m)
    pairs = m * a.top_k
    per_expert = np.where(n_act > 0, pairs / np.maximum(n_act, 1e-300), 0.0)
    geff = moe_efficiencies(hw)[0]
    ebw = expert_bw(hw, bw)
    ebpp = A.expert_bpp(model)
    out = np.zeros_like(m)
    for k, n in A.ffn_shapes(model.hidden, a.moe_intermediate):
        # the scaled MFU never beats the best the table (or the v1 constant) reaches
        top = float(mfu(np.array([2.0**i for i in range(18)]), k, n).max())
        eff = np.minimum(mfu(np.maximum(per_expert, 1.0), k, n) * geff, max(top, EPS_MFU))
        compute = 2.0 * pairs * k * n / (peak * eff)
        out += np.maximum(compute, n_act * k * n * ebpp / ebw)
    return out


def all_to_all_s(model: ModelConfig, hw: Hardware, tp: int, m) -> np.ndarray:
    """Expert-parallel dispatch and combine per step of M tokens: per MoE layer two all-to-alls,
    each GPU sending its M/ep tokens' k copies (activation dtype) to the (ep−1)/ep of the
    experts held elsewhere, over ``InterconnectGBs``, plus ``AllReduceLatency`` each."""
    ep = model.ep
    m = np.asarray(m, np.float64)
    if ep <= 1:
        return np.zeros_like(m)
    if hw.interconnect_gbs <= 0:
        raise ConfigError(
            f"expert parallelism needs the GPU-to-GPU bandwidth of {hw.name}",
            file=hw.source or None,
            field=f"{hw.name}.InterconnectGBs",
        )
    a = model.arch
    sent = (m / ep) * a.top_k * model.hidden * model.bytes_per_param * (ep - 1) / ep
    per_layer = 2.0 * (sent / (hw.interconnect_gbs * 1e9) + hw.allreduce_latency_us * 1e-6)
    per_layer = per_layer * hw.step_cost_scale  # plan's sensitivity band scales every time
    return np.where(m > 0, a.n_moe_layers * per_layer, 0.0)


def check_ep(model: ModelConfig, tp: int) -> None:
    if model.dp > 1 and model.ep != tp * model.dp:
        raise ConfigError(
            f"attention data parallelism splits the experts over all tp x dp = {tp * model.dp} "
            "GPUs: ep must equal tp x dp",
            field="ep",
            value=model.ep,
        )
    if model.dp == 1 and model.ep > 1 and tp % model.ep:
        raise ConfigError(
            f"expert parallelism must split the experts over the TP {tp} GPUs (or, with attention "
            "data parallelism dp, over tp x dp): ep must divide tp",
            field="ep",
            value=model.ep,
        )


def attention_params(model: ModelConfig, tp: int) -> dict[str, float]:
    """Attention values of the kernel's parameter block for an extended model: the head dim of
    the FLOP count (MLA: (q·k + v dims)/2 of the prefill form), the decode/prefill FLOP ratio
    (MLA decode runs in the absorbed form over the latent), the KV bytes per token read per
    step (MLA's latent cache is replicated on every TP rank), the sliding-window layers."""
    a = model.arch
    kv_tok = model.kv_bytes_per_token()
    out = {"hd": float(model.head_dim), "dec": 1.0, "kv_tok": kv_tok, "slide": 0.0, "win": 0.0}
    if a is None:
        return out
    if a.is_mla:
        pf = (a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim) / 2.0
        dec = (a.kv_lora_rank + a.qk_rope_head_dim + a.kv_lora_rank) / 2.0
        out.update(hd=pf, dec=dec / pf, kv_tok=kv_tok * tp)
    if a.n_sliding_layers:
        out.update(slide=a.n_sliding_layers / model.n_layers, win=float(a.sliding_window))
    return out


def explain(model: ModelConfig, hw: Hardware, tp: int, n_tokens: int) -> dict:
    """The MoE facts of a step of n_tokens tokens, for ``step-time``."""
    a = model.arch
    if a is None or not a.is_moe:
        return {}
    n_act = float(active_experts(model, np.array([float(n_tokens)]))[0])
    ebpp = A.expert_bpp(model)
    one = 3.0 * model.hidden * a.moe_intermediate * ebpp
    return {
        "experts": a.n_experts,
        "experts_per_token": a.top_k,
        "moe_layers": a.n_moe_layers,
        "experts_activated_per_layer": n_act,
        "expert_weight_bytes_read": a.n_moe_layers * n_act * one / (tp * model.dp),
        "expert_weight_bytes_all": a.n_moe_layers * a.n_experts * one / (tp * model.dp),
        "ep": model.ep,
        "dp": model.dp,
        "all_to_all_us": float(all_to_all_s(model, hw, tp, [float(n_tokens)])[0]) * 1e6,
        "total_params": model.n_params,
        "active_params": model.n_active_params,
    }
