"""MoE, quantisation and attention variants (config/arch.py, costmodel/moe.py): physics checks
with expected values worked out by hand from the HF configs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from infersweep.config.arch import expected_active_experts
from infersweep.config.models import load_hardware, load_model, parse_model_config
from infersweep.costmodel.stepcost import build_cost_model, step_breakdown
from infersweep.errors import ConfigError
from infersweep.sweeps.cli import main


def plain(gpu: str = "H100"):
    """A catalog entry with MoE efficiencies of 1 (experts read at the full bandwidth)."""
    return load_hardware(gpu).with_fields(MoeGemmEfficiency=1.0, MoeBwEfficiency=1.0)


# -- quantised weights ------------------------------------------------------------------------


def test_fp8_dense_70b_batch1_decode_reads_half_the_weight_bytes():
    bf16 = load_model("llama-3.1-70b-instruct")
    fp8 = bf16.deployed(weight_dtype="fp8")
    hw = plain()
    cm16 = build_cost_model(bf16, hw, 4)
    cm8 = build_cost_model(fp8, hw, 4)
    # 80 layers x (q, k, v, o, gate, up, down) of hidden 8192, 8 KV heads of 128, ffn 28672
    params = 80 * (8192 * 8192 * 2 + 8192 * 1024 * 2 + 3 * 8192 * 28672)
    assert cm16.weight_bytes_read(1) == pytest.approx(params * 2 / 4, rel=1e-12)
    assert cm8.weight_bytes_read(1) == pytest.approx(params * 1 / 4, rel=1e-12)
    assert cm8.weight_bytes_read(1) == pytest.approx(0.5 * cm16.weight_bytes_read(1), rel=1e-12)
    assert cm8.step_time([], [1024])[0] < cm16.step_time([], [1024])[0]
    info = step_breakdown(cm8, [], [1024])
    assert info["deployment"]["gemm_peak_tflops"] == 1979  # FP8 weights and activations


def test_int4_weights_and_fp8_kv_change_bytes_and_capacity():
    from infersweep.costmodel.stepcost import auto_kv_blocks

    m = load_model("llama-3.1-8b-instruct")
    q = m.deployed(weight_dtype="int4", kv_cache_dtype="fp8")
    assert q.weight_bytes == pytest.approx(m.weight_bytes / 2 * (0.5 + 2 / 128), rel=1e-12)
    assert q.kv_bytes_per_token() == m.kv_bytes_per_token() / 2
    hw = load_hardware("H100")
    assert auto_kv_blocks(q, hw, 1, 16, 0.9) > 2 * auto_kv_blocks(m, hw, 1, 16, 0.9)
    info = step_breakdown(build_cost_model(q, hw, 1), [], [512])
    assert info["deployment"]["gemm_peak_tflops"] == 989.5  # weight-only: BF16 GEMMs


def test_default_dtypes_leave_the_model_untouched():
    m = load_model("llama-3.1-8b-instruct")
    assert m.deployed() == m
    assert not m.extended


# -- mixture of experts -----------------------------------------------------------------------


def test_expected_active_experts_uniform_and_skewed():
    n = np.array([0.0, 1.0, 2.0, 28.0, 10_000.0])
    got = expected_active_experts(n, 8, 2)
    want = [0.0, 2.0, 8 * (1 - 0.75**2), 8 * (1 - 0.75**28), 8.0]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-9)
    skewed = expected_active_experts(n, 8, 2, 1.0)
    assert skewed[1] == pytest.approx(2.0)  # one token still picks k experts
    assert np.all(skewed[2:4] < got[2:4])  # popular experts repeat: fewer distinct ones


def test_mixtral_decode_weight_bytes_grow_towards_all_experts():
    m = load_model("mixtral-8x7b-v0.1")
    cm = build_cost_model(m, plain(), 2)
    expert = 3 * 4096 * 14336  # one expert: gate, up, down
    attn = 4096 * 4096 * 2 + 4096 * 1024 * 2
    router = 4096 * 8
    lm_head = 32000 * 4096
    rest = 32 * (attn + router) + lm_head
    # batch 1: the two routed experts of each of the 32 layers, bf16, split over TP 2
    assert cm.weight_bytes_read(1) == pytest.approx((rest + 32 * 2 * expert) * 2 / 2, rel=1e-12)
    all_bytes = (rest + 32 * 8 * expert) * 2 / 2
    reads = [cm.weight_bytes_read(b) for b in (1, 2, 4, 8, 16, 32, 64, 256, 2048, 8192)]
    assert np.all(np.diff(reads) >= 0)
    assert all(r <= all_bytes * (1 + 1e-12) for r in reads)
    assert reads[-1] == pytest.approx(all_bytes, rel=1e-9)
    # the step times follow: batch 32 costs far more than batch 1 (all experts vs two)
    assert cm.step_time([], [512] * 32)[0] > 2.5 * cm.step_time([], [512])[0]


def test_moe_weight_bytes_never_exceed_all_experts_qwen3():
    m = load_model("qwen3-30b-a3b")
    cm = build_cost_model(m, plain("B200"), 4)
    total = m.weight_bytes - 151936 * 2048 * 2  # the input embedding is a lookup, not read
    reads = np.array([cm.weight_bytes_read(b) for b in range(0, 5000, 7)])
    assert np.all(np.diff(reads) >= 0)
    assert np.all(reads <= total / 4 * (1 + 1e-12))


def test_param_counts_of_the_embedded_moe_configs():
    # published totals: DeepSeek-V3 671B (37B active), Qwen3-30B-A3B 30.5B, Mixtral 46.7B
    assert load_model("deepseek-v3").n_params / 1e9 == pytest.approx(671.0, abs=1.0)
    assert load_model("qwen3-30b-a3b").n_params / 1e9 == pytest.approx(30.5, abs=0.1)
    assert load_model("mixtral-8x7b-v0.1").n_params / 1e9 == pytest.approx(46.7, abs=0.1)
    assert load_model("mixtral-8x7b-v0.1").n_active_params / 1e9 == pytest.approx(12.9, abs=0.1)
    assert load_model("gpt-oss-120b").n_params / 1e9 == pytest.approx(116.8, abs=0.2)


def test_expert_parallelism_costs_all_to_all_and_is_checked():
    m = load_model("qwen3-30b-a3b")
    hw = plain()
    tp4 = build_cost_model(m, hw, 4)
    ep4 = build_cost_model(m.deployed(ep=4), hw, 4)
    info = step_breakdown(ep4, [], [2048] * 64)
    assert info["decode_moe"]["all_to_all_us"] > 0
    assert step_breakdown(tp4, [], [2048] * 64)["decode_moe"]["all_to_all_us"] == 0
    # 48 layers x 2 collectives x (64/4 tokens x 8 copies x 2048 x 2 B x 3/4) / 450 GB/s
    sent = 64 / 4 * 8 * 2048 * 2 * 3 / 4
    assert info["decode_moe"]["all_to_all_us"] == pytest.approx(48 * 2 * sent / 450e9 * 1e6)
    assert ep4.step_time([], [2048] * 64)[0] > tp4.step_time([], [2048] * 64)[0]
    with pytest.raises(ConfigError, match="ep must divide tp"):
        build_cost_model(m.deployed(ep=4), hw, 2)
    with pytest.raises(ConfigError, match="needs an MoE model"):
        load_model("llama-3.1-8b-instruct").deployed(ep=2)


# -- attention variants -----------------------------------------------------------------------


def test_mla_kv_bytes_per_token_come_from_the_latent():
    m = load_model("deepseek-v3")
    assert m.kv_bytes_per_token() == 61 * (512 + 64) * 2
    assert m.deployed(kv_cache_dtype="fp8").kv_bytes_per_token() == 61 * (512 + 64)


def test_sliding_window_layers_and_head_dim():
    g = load_model("gemma-3-27b-it")
    assert g.arch.n_sliding_layers == 52 and g.arch.sliding_window == 1024  # 5 local : 1 global
    assert g.head_dim == 128 and g.kv_bytes_per_token() == 2 * 62 * 16 * 128 * 2
    oss = load_model("gpt-oss-20b")
    assert oss.arch.n_sliding_layers == 12 and oss.arch.sliding_window == 128
    # attention past the window costs only in the full layers: a long-context decode step of
    # gpt-oss costs less than the same model with every layer full
    cfg = json.loads((oss_path := _cfg_path("gpt-oss-20b")).read_text())
    cfg["layer_types"] = ["full_attention"] * 24
    full = parse_model_config(cfg, name="full", source=str(oss_path))
    hw = plain()
    t_slide = build_cost_model(oss, hw, 1).step_time([], [32768] * 64)[1]["decode_memory_us"]
    t_full = build_cost_model(full, hw, 1).step_time([], [32768] * 64)[1]["decode_memory_us"]
    assert t_slide < 0.6 * t_full


def _cfg_path(name: str):
    from infersweep.config.catalog import models_dir

    return models_dir() / name / "config.json"


@pytest.mark.parametrize(
    "patch,field",
    [
        ({"layer_types": ["linear_attention"] * 24}, "layer_types"),
        ({"index_topk": 2048}, "index_topk"),
        ({"quantization_config": {"quant_method": "bitnet"}}, "quantization_config.quant_method"),
        ({"num_experts_per_tok": 0}, "num_experts_per_tok"),
    ],
)
def test_unrepresentable_configs_name_the_field(patch, field):
    cfg = json.loads(_cfg_path("gpt-oss-20b").read_text())
    cfg.update(patch)
    with pytest.raises(ConfigError) as exc:
        parse_model_config(cfg, name="x", source="x/config.json")
    assert exc.value.field == field


# -- fit and validity -------------------------------------------------------------------------


def test_deepseek_v3_needs_fp8_and_more_than_one_gpu(tmp_path):
    import infersweep

    ds = infersweep.sweep(
        model=["deepseek-v3"],
        hardware=["H100", "H200"],
        tp=[1, 8],
        weight_dtype=["bf16", "auto"],
        workload="chatbot",
        num_requests=20,
        rate=1.0,
        out=tmp_path / "ds",
    )
    df = pd.read_parquet(tmp_path / "ds" / "result.parquet")
    one_h100 = df[(df.hardware == "H100") & (df.tp == 1) & (df.weight_dtype == "bf16")]
    assert one_h100.status.item() == "invalid" and "do not fit" in one_h100.reason.item()
    h200_fp8 = df[(df.hardware == "H200") & (df.tp == 8) & (df.weight_dtype == "auto")]
    assert h200_fp8.status.item() == "ok" and h200_fp8.completed_requests.item() == 20
    assert ds.model_params_b.values.item() == pytest.approx(671.0, abs=1.0)


@pytest.mark.parametrize("model", ["deepseek-v3", "qwen3-30b-a3b", "gpt-oss-120b"])
def test_step_time_explains_an_moe_step(model, capsys):
    main(
        ["step-time", "--model", model, "--hardware", "B200", "--tp", "8"]
        + ["--decode", "64x2048", "--json"]
    )
    info = json.loads(capsys.readouterr().out)
    moe = info["decode_moe"]
    assert 0 < moe["experts_activated_per_layer"] <= moe["experts"]
    assert 0 < moe["expert_weight_bytes_read"] <= moe["expert_weight_bytes_all"]
    assert moe["all_to_all_us"] == 0.0
    assert info["step_us"] > 0


def test_calibration_rebuilds_moe_tables_when_the_bandwidth_changes():
    from infersweep.fitting.calibrate import gemm_terms, with_hardware

    m = load_model("mixtral-8x7b-v0.1")
    hw = plain()
    cm = build_cost_model(m, hw, 2, max_tokens=2048)
    hw2 = hw.with_fields(bwEfficiencyFactor=0.8, TOverheadMicros=500.0)
    fast = with_hardware(cm, hw2, gemm_terms(cm))
    slow = build_cost_model(m, hw2, 2, max_tokens=2048)
    for step in ([], [512] * 32), ([(0, 2048)], []):
        assert fast.step_time(*step) == slow.step_time(*step)


def test_moe_efficiencies_of_the_shipped_h100_entries():
    from infersweep.costmodel.moe import moe_efficiencies

    assert moe_efficiencies(load_hardware("H100")) == (2.0, 0.807)  # catalog: no overheads
    assert moe_efficiencies(load_hardware("H100", "h100-vllm-0.15")) == (2.0, 0.944)
    assert moe_efficiencies(load_hardware("H100", "minimal")) == (1.0, 0.0)  # unset
    assert moe_efficiencies(load_hardware("B200")) == (1.0, 0.0)  # 0: the entry's bandwidth


def test_attention_data_parallelism_replicates_attention_and_splits_experts():
    from infersweep.costmodel.stepcost import weights_fit

    m = load_model("mixtral-8x7b-v0.1")
    hw = plain()
    tp2 = build_cost_model(m, hw, 2)
    dp2 = build_cost_model(m.deployed(dp=2, ep=2), hw, 1)
    expert = 3 * 4096 * 14336
    rest = 32 * (4096 * 4096 * 2 + 4096 * 1024 * 2 + 4096 * 8) + 32000 * 4096
    # TP 2: everything halved; DP 2 x TP 1: attention whole on each GPU, experts halved
    assert tp2.weight_bytes_read(4096) == pytest.approx((rest + 32 * 8 * expert) * 2 / 2)
    assert dp2.weight_bytes_read(4096) == pytest.approx((rest + 32 * 8 * expert / 2) * 2)
    assert weights_fit(m.deployed(dp=2, ep=2), hw, 1)
    info = step_breakdown(dp2, [], [1024] * 64)
    assert info["decode_moe"]["all_to_all_us"] > 0 and info["deployment"]["dp"] == 2
    with pytest.raises(ConfigError, match="ep must equal tp x dp"):
        build_cost_model(m.deployed(dp=2), hw, 1)
    with pytest.raises(ConfigError, match="MoE models"):
        load_model("llama-3.1-8b-instruct").deployed(dp=2)


def test_calibrate_fits_the_moe_bandwidth_efficiency():
    """A trace simulated with MoeBwEfficiency 0.7 is fitted back (from 1.0) close to 0.7."""
    import dataclasses

    from infersweep import settings
    from infersweep.api import simulate
    from infersweep.fitting.calibrate import calibrate

    m = load_model("mixtral-8x7b-v0.1")
    sched = settings.scheduler_config(settings.resolve({}))
    truth = plain().with_fields(MoeBwEfficiency=0.7)
    sim = simulate(
        model=m,
        hardware=truth,
        tp=2,
        workload="chatbot",
        num_requests=40,
        rate=2.0,
        scheduler=sched,
    )
    extra = dict(sim.workload.extra, measured_ttft_ms=sim.ttft_ms, measured_e2e_ms=sim.e2e_ms)
    measured = dataclasses.replace(sim.workload, extra=extra)
    res = calibrate(
        measured,
        model=m,
        hardware=plain(),
        tp=2,
        scheduler=sched,
        fields=("MoeBwEfficiency",),
        skip_first=0,
        n_candidates=16,
        refine_iter=30,
    )
    assert res.hardware.moe_bw_efficiency == pytest.approx(0.7, abs=0.02)


def test_explicit_bf16_of_a_bf16_dense_model_is_bit_identical():
    m = load_model("llama-3.1-8b-instruct")
    hw = load_hardware("H100")
    a = build_cost_model(m, hw, 2)
    b = build_cost_model(m.deployed(weight_dtype="bf16", kv_cache_dtype="bf16"), hw, 2)
    assert np.array_equal(a.ctf, b.ctf) and np.array_equal(a.cti, b.cti)
    assert a.step_time([(0, 700)], [300] * 17) == b.step_time([(0, 700)], [300] * 17)


def test_moe_bw_efficiency_is_a_fraction_of_the_peak():
    """Experts stream at MoeBwEfficiency x the HBM peak whatever bwEfficiencyFactor says."""
    m = load_model("mixtral-8x7b-v0.1")
    hw = plain().with_fields(MoeBwEfficiency=0.8, MoeGemmEfficiency=2.0)
    a = build_cost_model(m, hw, 2)
    b = build_cost_model(m, hw.with_fields(bwEfficiencyFactor=0.5), 2)
    # decode memory time of 64 decodes at context 1: only the non-expert bytes (weights, and
    # per token activations L·d·2·0.75 plus KV 0.8 + 1 times 2·L·8·128·2) see the factor
    ta = a.step_time([], [1] * 64)[1]["decode_memory_us"]
    tb = b.step_time([], [1] * 64)[1]["decode_memory_us"]
    rest = 32 * (4096 * 4096 * 2 + 4096 * 1024 * 2 + 4096 * 8) + 32000 * 4096
    dyn = 64 * (32 * 4096 * 2 * 0.75 + 2 * 32 * 8 * 128 * 2 * 1.8)
    assert tb - ta == pytest.approx((rest * 2 + dyn) / 2 / 3.35e12 * 1e6 * (1 / 0.5 - 1))


def test_step_cost_scale_scales_moe_steps():
    m = load_model("qwen3-30b-a3b").deployed(ep=2)
    hw = plain()
    a = build_cost_model(m, hw, 2).step_time([(0, 1500)], [700] * 40)[0]
    b = build_cost_model(m, hw.with_fields(StepCostScale=1.5), 2).step_time([(0, 1500)], [700] * 40)
    assert b[0] == pytest.approx(1.5 * a, abs=2)
