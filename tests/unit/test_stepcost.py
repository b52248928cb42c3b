"""Hand-computed step costs (REFERENCE §4–§5, SPEC §1).

Expected values are the numbers written in REFERENCE_SEMANTICS.md (worked example §5.8, MFU
examples §4.3–§4.5), recorded reference outputs, or arithmetic done here from literal inputs.
None is computed by ``engine``.
"""

from __future__ import annotations

import json
import math
from functools import cache

import pytest

from infersweep.config.models import Hardware, load_hardware, load_model, parse_hardware_entry
from infersweep.costmodel.stepcost import build_cost_model
from infersweep.errors import ConfigError

LLAMA = "llama-3.1-8b-instruct"
P_H100 = 989.5e12  # FLOP/s
W_MIN = 3.35e12  # B/s (minimal config)
WB_LLAMA = 13_958_643_712  # REFERENCE §3 table

DEC32 = ([], [1024] * 32)
PRE512 = ([(0, 512)], [])
MIXED = ([(0, 512)], [1024] * 32)
EMPTY = ([], [])


@cache
def cost(model: str = LLAMA, hw_config: str = "minimal", tp: int = 1):
    return build_cost_model(load_model(model), load_hardware("H100", hw_config), tp)


def step(cm, s) -> int:
    return cm.step_time(*s)[0]


# ---------------------------------------------------------------------------------------------
# REFERENCE §5.8: the worked example, llama-3.1-8b-instruct, H100, TP 1
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "s", "expected"),
    [
        ("a: decode bs 32 @1024", DEC32, 8628),
        ("b: prefill 512", PRE512, 13_694),
        ("c: mixed (a)+(b)", MIXED, 13_694),
    ],
)
def test_worked_example_minimal(name, s, expected):
    assert step(cost(), s) == expected, name


@pytest.mark.parametrize(
    ("name", "s", "expected"),
    [
        ("decode-32 + 3200", DEC32, 11_828),
        ("prefill-512 + 3200", PRE512, 16_894),
        ("mixed + 3200", MIXED, 16_894),
        ("empty step = overhead", EMPTY, 3200),
    ],
)
def test_worked_example_full_config(name, s, expected):
    assert step(cost(hw_config="full_487017bc"), s) == expected, name


def test_empty_step_minimal_is_one_microsecond():
    us, comp = cost().step_time([], [])
    assert us == 1
    assert comp["hardware_us"] == 0.0
    assert comp["overhead_us"] == 0.0


@pytest.mark.parametrize(
    ("tp", "s", "expected"),
    [
        (1, ([], [1024]), 4235),  # mfu_d fallback 0.008; G(1) = full weight read
        (1, ([(0, 2048)], []), 51_811),  # mfu_p 0.3646667
        (1, ([(512, 512)], []), 14_032),  # bucket 1024
        (2, DEC32, 4686),
        (4, DEC32, 2446),
        (8, DEC32, 1223),
        (2, PRE512, 6847),
        (4, PRE512, 3423),
        (8, PRE512, 1712),
        (1, ([], [1126]), 4241),  # Q7: fallback still applies
        (1, ([], [1127]), 10_103),  # Q7: tiny MFU just above epsilon, no fallback
        (1, ([], [2000]), 5279),  # Q7 evidence
        (1, ([], [4096]), 4890),  # Q7 evidence
    ],
)
def test_worked_example_more_values(tp, s, expected):
    assert step(cost(tp=tp), s) == expected


# ---------------------------------------------------------------------------------------------
# Intermediate quantities of §5.8, computed here from the literal inputs
# ---------------------------------------------------------------------------------------------


def _gemm_s(m, k, n, mfu, w=W_MIN, b=2):
    return max(2.0 * m * k * n / (P_H100 * mfu), k * n * b / w)


def _llama_G_us(m, mfu_qkvo, mfu_ffn, w=W_MIN):
    d, dkv, dff = 4096, 1024, 14336
    per_layer = (
        _gemm_s(m, d, d, mfu_qkvo, w)
        + 2 * _gemm_s(m, d, dkv, mfu_qkvo, w)
        + _gemm_s(m, d, d, mfu_qkvo, w)
        + 2 * _gemm_s(m, d, dff, mfu_ffn, w)
        + _gemm_s(m, dff, d, mfu_ffn, w)
    )
    return per_layer * 32 * 1e6


def test_weight_bytes_llama():
    assert load_model(LLAMA).weight_bytes == WB_LLAMA


def test_decode_memory_term():
    # Dyn(1024, 1) = 0.75·32·4096·2 + 0.8·2·32·8·128·2·1024 + 2·32·8·128·2 = 107,701,862.4 B
    dyn = 0.75 * 32 * 4096 * 2 + 0.8 * 2 * 32 * 8 * 128 * 2 * 1024 + 2 * 32 * 8 * 128 * 2
    assert dyn == pytest.approx(107_701_862.4, rel=1e-15)
    expected_us = (WB_LLAMA + 32 * dyn) / W_MIN * 1e6
    _, comp = cost().step_time(*DEC32)
    assert expected_us == pytest.approx(5195.553, abs=5e-4)
    assert comp["decode_memory_us"] == pytest.approx(expected_us, rel=1e-12)


def test_decode_compute_terms():
    cm = cost()
    g32 = _llama_G_us(32, 0.054, 0.069)
    assert g32 == pytest.approx(6891.748, abs=5e-4)
    assert cm.gemm_time_us(32) == pytest.approx(g32, rel=1e-12)
    assert cm.gemm_time_us(32, prefill=False) == pytest.approx(g32, rel=1e-12)
    attn = 4 * 32 * 1024 * 128 * 32 * 32 / (P_H100 * 0.010) * 1e6
    assert attn == pytest.approx(1736.217, abs=5e-4)
    _, comp = cm.step_time(*DEC32)
    assert comp["decode_compute_us"] == pytest.approx(g32 + attn, rel=1e-12)
    assert comp["decode_compute_us"] == pytest.approx(8627.965, abs=5e-4)
    assert comp["hardware_us"] == comp["decode_compute_us"]
    assert comp["prefill_compute_us"] == comp["prefill_memory_us"] == 0.0


def test_prefill_terms():
    cm = cost()
    g512 = _llama_G_us(512, 0.495, 0.553)
    assert g512 == pytest.approx(13_355.175, abs=5e-4)
    assert cm.gemm_time_us(512) == pytest.approx(g512, rel=1e-12)
    attn = 4 * 32 * 512 * 512 * 128 * 32 / 1.8 / (P_H100 * 0.228) * 1e6
    assert attn == pytest.approx(338.444, abs=5e-4)
    dyn = 0.85 * 32 * 4096 * 2 * 512 + 0 + 2 * 32 * 8 * 128 * 2 * 512
    assert dyn == pytest.approx(181_193_932.8, rel=1e-15)
    mem = (WB_LLAMA + dyn) / W_MIN * 1e6
    assert mem == pytest.approx(4220.847, abs=5e-4)
    _, comp = cm.step_time(*PRE512)
    assert comp["prefill_compute_us"] == pytest.approx(g512 + attn, rel=1e-12)
    assert comp["prefill_memory_us"] == pytest.approx(mem, rel=1e-12)
    assert comp["hardware_us"] == comp["prefill_compute_us"]


def test_mixed_is_max_of_phases_not_sum():
    _, comp = cost().step_time(*MIXED)
    assert comp["hardware_us"] == pytest.approx(13_693.619, abs=5e-4)
    assert comp["decode_compute_us"] == pytest.approx(8627.965, abs=5e-4)


def test_G1_is_full_weight_read():
    # M = 1: every GEMM is at its weight-read floor, so G(1) = projection bytes / W.
    d, dkv, dff = 4096, 1024, 14336
    proj_bytes = (2 * d * d + 2 * d * dkv + 3 * d * dff) * 2 * 32
    assert cost().gemm_time_us(1) == pytest.approx(proj_bytes / W_MIN * 1e6, rel=1e-12)
    assert proj_bytes / W_MIN * 1e6 == pytest.approx(4166.759, abs=5e-4)


def test_full_config_bandwidth_factor_applies_to_memory_and_floor():
    cm = cost(hw_config="full_487017bc")
    w = W_MIN * 0.82
    _, comp = cm.step_time(*DEC32)
    dyn = 0.75 * 32 * 4096 * 2 + 0.8 * 2 * 32 * 8 * 128 * 2 * 1024 + 2 * 32 * 8 * 128 * 2
    assert comp["decode_memory_us"] == pytest.approx((WB_LLAMA + 32 * dyn) / w * 1e6, rel=1e-12)
    assert comp["overhead_us"] == 3200.0
    d, dkv, dff = 4096, 1024, 14336
    proj_bytes = (2 * d * d + 2 * d * dkv + 3 * d * dff) * 2 * 32
    assert cm.gemm_time_us(1) == pytest.approx(proj_bytes / w * 1e6, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# MFU lookups (REFERENCE §4.3–§4.5)
# ---------------------------------------------------------------------------------------------

QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")
FFN = ("gate_proj", "up_proj", "down_proj")


@pytest.mark.parametrize(
    ("m", "qkvo", "ffn"),
    [
        (32, 0.054, 0.069),
        (512, 0.495, 0.553),
        (100, 0.108 + (0.176 - 0.108) * 36 / 64, 0.138 + (0.265 - 0.138) * 36 / 64),
        (64, 0.108, 0.138),
    ],
)
def test_gemm_mfu_llama(m, qkvo, ffn):
    mfus = cost().gemm_mfus(m)
    assert set(mfus) == set(QKVO + FFN)
    for name in QKVO:
        assert mfus[name] == pytest.approx(qkvo, rel=1e-12), name
    for name in FFN:
        assert mfus[name] == pytest.approx(ffn, rel=1e-12), name


def test_gemm_mfu_example_value():
    assert cost().gemm_mfus(100)["q_proj"] == pytest.approx(0.14625, rel=1e-12)


@pytest.mark.parametrize(
    ("model", "groups"),
    [
        (LLAMA, [(4096, 6144)] * 4 + [(8192, 11008)] * 3),
        ("qwen2.5-7b-instruct", [(3584, 6144)] * 4 + [(8192, 11008)] * 3),
        ("llama-2-7b-hf", [(4096, 6144)] * 4 + [(4096, 11008)] * 2 + [(8192, 11008)]),
        (
            "codellama-34b-instruct-hf",
            [(8192, 11008), (8192, 6144), (8192, 6144), (8192, 11008)] + [(8192, 11008)] * 3,
        ),
        ("qwen3-14b", [(8192, 6144)] * 4 + [(8192, 11008)] * 3),
    ],
)
def test_gemm_group_mapping(model, groups):
    assert list(cost(model).gemm_groups) == groups


@pytest.mark.parametrize(
    ("tp", "bs", "kv", "expected", "rel"),
    [
        (1, 32, 1024, 0.010, 1e-12),
        (1, 1, 1024, 0.008, 1e-12),  # 0.0 cell -> nearest non-zero row (16, 1024)
        (1, 1, 2000, 0.003 * 976 / 3072, 1e-12),  # tiny, no fallback (Q7)
        (1, 1, 2000, 0.000953, 1e-3),
        (1, 200, 40000, 0.0056875, 1e-12),  # two missing corners read as 0
        (1, 300, 40000, 0.013, 1e-12),  # all corners missing -> fallback (128, 32768)
        (8, 32, 1024, 0.006, 1e-12),  # TP 8 -> tp4 file
        (1, 1, 1126, 0.008, 1e-12),
        (1, 1, 1127, 0.003 * 103 / 3072, 1e-12),
    ],
)
def test_decode_mfu(tp, bs, kv, expected, rel):
    assert cost(tp=tp).decode_mfu(bs, kv) == pytest.approx(expected, rel=rel)


def test_decode_table_choice_tp8():
    cm = cost(tp=8)
    assert cm.decode_table == "32-8-128-tp4"
    assert cost(tp=2).decode_table == "32-8-128-tp2"
    assert cost(model="qwen2.5-7b-instruct", tp=3).decode_table == "28-4-128-tp2"
    assert cost(model="qwen2.5-7b-instruct", tp=6).decode_table == "28-4-128-tp4"


def test_attention_key_substitution_qwen3():
    cm = cost("qwen3-14b")
    assert load_model("qwen3-14b").attention_key == "40-8-128"
    assert cm.attention_key == "32-8-128"
    assert cm.decode_table == "32-8-128-tp1"


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        (2048, 0.228 + (0.638 - 0.228) / 3),  # not a bucket value: bucket of S = 2048 is 2048
        (512, 0.228),  # clamped to seq_len 1024
        (1, 0.228),
        (1024, 0.228),
        (4096, 0.638),
        (32768, 0.72),
        (65536, 0.72),  # clamped to the last row
    ],
)
def test_prefill_mfu_at_bucket(s, expected):
    assert cost().prefill_mfu(s) == pytest.approx(expected, rel=1e-12)


def test_prefill_mfu_2048_value():
    assert cost().prefill_mfu(2048) == pytest.approx(0.3646667, abs=1e-7)


# ---------------------------------------------------------------------------------------------
# Rounding and the 1 µs minimum (REFERENCE §5.7)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("per_layer", "expected"),
    [
        (0.078125, 3),  # 32 layers -> 2.5 µs exactly -> half away from zero -> 3
        (1.5 / 32, 2),  # 1.5 -> 2
        (0.5 / 32, 1),  # 0.5 -> minimum 1
        (0.01, 1),  # 0.32 -> minimum 1
        (0.05, 2),  # 1.6 -> 2
        (100.0, 3200),
    ],
)
def test_empty_step_overhead_rounding(per_layer, expected):
    hw = load_hardware("H100", "minimal").with_fields(perLayerOverhead=per_layer)
    cm = build_cost_model(load_model(LLAMA), hw, 1)
    us, comp = cm.step_time([], [])
    assert us == expected
    assert comp["overhead_us"] == pytest.approx(per_layer * 32, rel=1e-12)


def test_round_half_away_kernel():
    from infersweep.costmodel.stepcost_nb import round_half_away_nb

    assert round_half_away_nb(2.5) == 3
    assert round_half_away_nb(8627.5) == 8628
    assert round_half_away_nb(8627.499999) == 8627
    assert round_half_away_nb(1.0) == 1
    # 0.5 - 1/2 ulp: floor(x + 0.5) would give 1; Go's math.Round gives 0.
    assert round_half_away_nb(0.49999999999999994) == 0


# ---------------------------------------------------------------------------------------------
# Overhead fields, each on its own (SPEC §1.1). Bases: REFERENCE §5.8 and recorded cases.
# ---------------------------------------------------------------------------------------------


def _with(tp=1, **fields):
    hw = load_hardware("H100", "minimal").with_fields(**fields)
    return build_cost_model(load_model(LLAMA), hw, tp)


MULTI_PF = ([(0, 87), (0, 1)], [])  # recorded: 7200 (minimal, TP 1)
MIXED_TP4 = ([(94, 42), (0, 44), (104, 1331)], [6088] * 3)  # recorded: 10212 (TP 4)
MULTI_PF_TP2 = ([(0, 593), (1144, 1519), (0, 1374)], [])  # recorded: 44362 (TP 2)


@pytest.mark.parametrize(
    ("tp", "s", "base", "added"),
    [
        (1, DEC32, 8628, 50),
        (1, PRE512, 13_694, 50),
        (1, MIXED, 13_694, 50),
        (1, EMPTY, 1, 0),
        (2, DEC32, 4686, 50),
    ],
)
def test_t_overhead(tp, s, base, added):
    us, comp = _with(tp, TOverheadMicros=50).step_time(*s)
    assert us == base + added
    assert comp["overhead_us"] == added


@pytest.mark.parametrize(
    ("tp", "s", "base", "added"),
    [
        (1, PRE512, 13_694, 100),
        (1, MULTI_PF, 7200, 200),
        (2, MULTI_PF_TP2, 44_362, 300),
        (1, DEC32, 8628, 0),
        (1, MIXED, 13_694, 0),
        (1, EMPTY, 1, 0),
        (4, MIXED_TP4, 10_212, 0),
    ],
)
def test_prefill_overhead(tp, s, base, added):
    us, comp = _with(tp, PrefillOverheadMicros=100).step_time(*s)
    assert us == base + added
    assert comp["overhead_us"] == added


@pytest.mark.parametrize(
    ("tp", "s", "base", "added"),
    [
        (1, MIXED, 13_694, 50),
        (4, MIXED_TP4, 10_212, 150),
        (1, PRE512, 13_694, 0),
        (1, MULTI_PF, 7200, 0),
        (1, DEC32, 8628, 0),
        (1, EMPTY, 1, 0),
    ],
)
def test_mixed_prefill_overhead(tp, s, base, added):
    us, comp = _with(tp, MixedPrefillOverheadMicros=50).step_time(*s)
    assert us == base + added
    assert comp["overhead_us"] == added


@pytest.mark.parametrize(
    ("tp", "s", "base", "added"),
    [
        (1, DEC32, 8628, 0),  # TP 1: no all-reduce
        (1, PRE512, 13_694, 0),
        (2, DEC32, 4686, 20 * 2 * 32),
        (4, DEC32, 2446, 1280),
        (8, PRE512, 1712, 1280),
        (4, MIXED_TP4, 10_212, 1280),
        (2, EMPTY, 1, 0),  # empty steps carry no all-reduce
    ],
)
def test_allreduce_latency(tp, s, base, added):
    us, comp = _with(tp, AllReduceLatency=20).step_time(*s)
    assert us == base + added
    assert comp["overhead_us"] == added


@pytest.mark.parametrize(
    ("tp", "s", "base", "added"),
    [
        (1, DEC32, 8628, 3200),
        (2, DEC32, 4686, 1600),
        (4, DEC32, 2446, 800),
        (8, DEC32, 1223, 400),
        (2, PRE512, 6847, 1600),
        (8, EMPTY, 0, 400),
        (1, EMPTY, 0, 3200),
    ],
)
def test_per_layer_overhead(tp, s, base, added):
    us, comp = _with(tp, perLayerOverhead=100).step_time(*s)
    assert us == base + added
    assert comp["overhead_us"] == added


def test_overheads_add_before_rounding():
    # 8627.965 + 0.52 = 8628.485 -> 8628; rounding first would give 8628 + 0.52 -> 8629.
    assert step(_with(TOverheadMicros=0.52), DEC32) == 8628
    # 8627.965 + 0.54 = 8628.505 -> 8629
    assert step(_with(TOverheadMicros=0.54), DEC32) == 8629
    # 13693.619 + 0.4 -> 13694; + 0.9 -> 13695 (PrefillOverhead on a prefill-only step)
    assert step(_with(PrefillOverheadMicros=0.4), PRE512) == 13_694
    assert step(_with(PrefillOverheadMicros=0.9), PRE512) == 13_695


def test_v2_hardware_config_file():
    """hardware_config_v2.json: H100 overheads 50/100/50/20 µs (SPEC_inputs_outputs §1)."""
    cm1 = cost(hw_config="v2", tp=1)
    assert step(cm1, DEC32) == 8628 + 50
    assert step(cm1, PRE512) == 13_694 + 50 + 100
    assert step(cm1, MIXED) == 13_694 + 50 + 50
    assert step(cm1, EMPTY) == 1
    cm2 = cost(hw_config="v2", tp=2)
    assert step(cm2, DEC32) == 4686 + 50 + 1280
    assert step(cm2, PRE512) == 6847 + 50 + 1280 + 100
    assert step(cm2, EMPTY) == 1


def test_all_overheads_together():
    cm = _with(
        4,
        TOverheadMicros=7,
        PrefillOverheadMicros=11,
        MixedPrefillOverheadMicros=13,
        AllReduceLatency=3,
        perLayerOverhead=5,
    )
    # mixed step, 3 prefill entries, TP 4: 5·32/4 + 7 + 3·2·32 + 13·3
    us, comp = cm.step_time(*MIXED_TP4)
    assert comp["overhead_us"] == 40 + 7 + 192 + 39
    assert us == 10_212 + 278
    assert cm.step_time([], [])[0] == 40


# ---------------------------------------------------------------------------------------------
# Roofline v1 (SPEC §1.2) on a tiny synthetic model, checked against hand arithmetic
# ---------------------------------------------------------------------------------------------

TOY_CFG = {
    "num_hidden_layers": 2,
    "hidden_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "intermediate_size": 512,
    "torch_dtype": "bfloat16",
}
TOY_HW = {
    "TFlopsPeak": 100,
    "BwPeakTBs": 2,
    "mfuPrefill": 0.5,
    "mfuDecode": 0.25,
    "BwEffConstant": 0.8,
}


@pytest.fixture
def toy_model(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TOY_CFG))
    return load_model(None, folder)


def toy_v1_step_us(
    prefills,
    decodes,
    *,
    tp=1,
    peak_tflops=100.0,
    bw_tbs=2.0,
    bw_eff=0.8,
    bw_factor=0.0,
    mfu_p=0.5,
    mfu_d=0.25,
    t_ovh=0.0,
    pf_ovh=0.0,
    mix_ovh=0.0,
    ar=0.0,
    per_layer=0.0,
):
    """SPEC §1.2 for the toy model (L 2, d 256, H 4, KV 4, d_ff 512, 2 B/param), from scratch."""
    L, d, H, KV, dff, B = 2, 256, 4, 4, 512, 2
    hd = d // H
    P = peak_tflops * 1e12
    W = bw_tbs * 1e12 * (bw_eff if bw_eff > 0 else (bw_factor if bw_factor else 1.0))
    tau = 1 / tp
    shapes = [(d, d), (d, KV * hd), (d, KV * hd), (d, d), (d, dff), (d, dff), (dff, d)]

    def G(M, mfu):
        return sum(max(2.0 * M * k * n / (P * mfu), k * n * B / W) for k, n in shapes) * tau * L

    def A(q, c):
        return 4.0 * H * q * c * hd * L

    wb = (d * (d + 2 * KV * hd) + d * d + 3 * d * dff) * L * B

    def dyn(seq, t):
        f, g = (0.80, 0.75) if t == 1 else (0.92, 0.85)
        return L * d * B * t * g + 2 * L * KV * hd * B * seq * f + 2 * L * KV * hd * B * t

    phases = []
    if prefills:
        buckets = {}
        for pi, n in prefills:
            b = 512
            while b < pi + n and b < 65536:
                b *= 2
            buckets.setdefault(b, []).append((pi, n))
        comp = sum(
            G(sum(n for _, n in es), mfu_p)
            + sum(A(n, pi + n) for pi, n in es) / 1.8 / (P * mfu_p) * tau
            for es in buckets.values()
        )
        mem = (wb + sum(dyn(pi, n) for pi, n in prefills)) * tau / W
        phases.append(max(comp, mem))
    if decodes:
        F = sum(A(1, c) for c in decodes)
        comp = G(len(decodes), mfu_d) + F / (P * mfu_d) * tau
        mem = (wb + sum(dyn(c, 1) for c in decodes)) * tau / W
        phases.append(max(comp, mem))
    ovh = per_layer * L / tp
    if prefills or decodes:
        ovh += t_ovh + (ar * 2 * L if tp > 1 else 0)
        ovh += (mix_ovh if decodes else pf_ovh) * len(prefills)
    total = max((max(phases) if phases else 0.0) * 1e6 + ovh, 1.0)
    return int(total) + (1 if total - int(total) >= 0.5 else 0), total


def _toy_cm(toy_model, tp=1, **hw_fields):
    entry = dict(TOY_HW)
    entry.update(hw_fields)
    return build_cost_model(toy_model, parse_hardware_entry("TOY", entry), tp)


def test_v1_toy_prefill_hand_values(toy_model):
    cm = _toy_cm(toy_model)
    assert cm.step_model == "v1"
    us, comp = cm.step_time([(0, 512)], [])
    # G(512): per layer 4·(2·512·256·256)/5e13 + 3·(2·512·256·512)/5e13 = 13.4217728 µs, ×2
    # attention: 4·4·512·512·64·2 = 536,870,912 FLOP / 1.8 / 5e13 = 5.96523235556 µs
    assert comp["prefill_compute_us"] == pytest.approx(26.8435456 + 5.965232355555556, rel=1e-12)
    # W_b = 655,360·2·2 = 2,621,440 B; Dyn(0, 512) = 445,644.8 + 1,048,576; W = 1.6e12
    assert comp["prefill_memory_us"] == pytest.approx(2.572288, rel=1e-12)
    assert us == 33


def test_v1_toy_decode_hand_values(toy_model):
    cm = _toy_cm(toy_model)
    us, comp = cm.step_time([], [100] * 8)
    # G(8) at the weight floors: (4·131,072 + 3·262,144) B / 1.6e12 × 2 layers = 1.6384 µs
    # attention: 8·(4·4·100·64·2) = 1,638,400 FLOP / (1e14·0.25) = 0.065536 µs
    assert comp["decode_compute_us"] == pytest.approx(1.703936, rel=1e-12)
    # Dyn(100, 1) = 768 + 163,840 + 2,048 = 166,656 B; (2,621,440 + 8·166,656) / 1.6e12
    assert comp["decode_memory_us"] == pytest.approx(2.47168, rel=1e-12)
    assert us == 2
    us, comp = cm.step_time([], [2000] * 512)
    # G(512) with mfuDecode 0.25: 53.6870912 µs; attention 512·4,096,000 / 2.5e13 = 83.88608 µs
    assert comp["decode_compute_us"] == pytest.approx(53.6870912 + 83.88608, rel=1e-12)
    # (2,621,440 + 512·3,279,616) / 1.6e12 = 1051.11552 µs
    assert comp["decode_memory_us"] == pytest.approx(1051.11552, rel=1e-12)
    assert us == 1051


V1_STEPS = [
    ([(0, 512)], []),
    ([], [100] * 8),
    ([], [2000] * 512),
    ([(0, 1)], []),
    ([(7, 1)], [5]),
    ([(0, 300), (100, 700), (5000, 20000)], []),
    ([(0, 9000)], []),  # M above the G(M) table
    ([(0, 256), (256, 256)], [1, 2, 3, 4096, 70000]),
    ([], [0]),
    ([], []),
    ([(40000, 40000)], [10] * 300),
]
V1_HW = [
    {},
    {"TFlopsPeak": 1, "BwPeakTBs": 50},  # compute-bound
    {"BwEffConstant": 0, "bwEfficiencyFactor": 0.5},  # v1 falls back to bwEfficiencyFactor
    {"BwEffConstant": 0},
    {"BwEffConstant": 0.7, "bwEfficiencyFactor": 0.5},  # BwEffConstant wins in v1
    {"mfuPrefill": 0.9, "mfuDecode": 0.05, "TFlopsPeak": 0.5},
    {
        "TOverheadMicros": 3.3,
        "PrefillOverheadMicros": 1.7,
        "MixedPrefillOverheadMicros": 0.4,
        "AllReduceLatency": 0.25,
        "perLayerOverhead": 0.6,
    },
]
HW_KW = {
    "TFlopsPeak": "peak_tflops",
    "BwPeakTBs": "bw_tbs",
    "BwEffConstant": "bw_eff",
    "bwEfficiencyFactor": "bw_factor",
    "mfuPrefill": "mfu_p",
    "mfuDecode": "mfu_d",
    "TOverheadMicros": "t_ovh",
    "PrefillOverheadMicros": "pf_ovh",
    "MixedPrefillOverheadMicros": "mix_ovh",
    "AllReduceLatency": "ar",
    "perLayerOverhead": "per_layer",
}


@pytest.mark.parametrize("tp", [1, 2, 4])
@pytest.mark.parametrize("hw_fields", V1_HW, ids=lambda f: ",".join(f) or "base")
def test_v1_toy_against_hand_formula(toy_model, tp, hw_fields):
    cm = _toy_cm(toy_model, tp, **hw_fields)
    kw = {HW_KW[k]: float(v) for k, v in hw_fields.items()}
    for prefills, decodes in V1_STEPS:
        expected, total = toy_v1_step_us(prefills, decodes, tp=tp, **kw)
        us, comp = cm.step_time(prefills, decodes)
        frac = total - int(total)
        if abs(frac - 0.5) > 1e-6:  # a tie within float noise could round either way
            assert us == expected, (prefills, decodes, total)
        assert (
            comp["hardware_us"] + comp["overhead_us"] == pytest.approx(total, rel=1e-12)
            or total == 1.0
        )


def test_v1_forced_on_h100_llama():
    hw = load_hardware("H100", "minimal").with_fields(mfuPrefill=0.4, mfuDecode=0.2)
    cm = build_cost_model(load_model(LLAMA), hw, 1, step_model="v1")
    assert cm.step_model == "v1"
    assert cm.gemm_mfus(32) == {}
    assert cm.decode_mfu(32, 1024) == 0.2
    assert cm.prefill_mfu(2048) == 0.4
    # prefill 512: G(512) at constant 0.4 + attention at 0.4; memory as §5.8 (b)
    g = _llama_G_us(512, 0.4, 0.4)
    attn = 4 * 32 * 512 * 512 * 128 * 32 / 1.8 / (P_H100 * 0.4) * 1e6
    us, comp = cm.step_time(*PRE512)
    assert comp["prefill_compute_us"] == pytest.approx(g + attn, rel=1e-12)
    assert comp["prefill_memory_us"] == pytest.approx(4220.847, abs=5e-4)
    assert us == round(g + attn)
    # decode 32 @1024: decode GEMMs use mfuDecode, attention too
    g = _llama_G_us(32, 0.2, 0.2)
    attn = 4 * 32 * 1024 * 128 * 32 * 32 / (P_H100 * 0.2) * 1e6
    us, comp = cm.step_time(*DEC32)
    assert comp["decode_compute_us"] == pytest.approx(g + attn, rel=1e-12)
    dyn = 0.75 * 32 * 4096 * 2 + 0.8 * 2 * 32 * 8 * 128 * 2 * 1024 + 2 * 32 * 8 * 128 * 2
    mem = (WB_LLAMA + 32 * dyn) / W_MIN * 1e6
    assert comp["decode_memory_us"] == pytest.approx(mem, rel=1e-12)
    assert us == round(max(g + attn, mem))


def test_auto_uses_v2_when_tables_exist():
    hw = load_hardware("H100", "minimal").with_fields(mfuPrefill=0.4, mfuDecode=0.2)
    cm = build_cost_model(load_model(LLAMA), hw, 1)
    assert cm.step_model == "v2"
    assert step(cm, DEC32) == 8628


def test_v1_without_efficiencies_is_a_clear_error(toy_model):
    with pytest.raises(ConfigError) as info:
        build_cost_model(
            toy_model, parse_hardware_entry("TOY", {"TFlopsPeak": 1, "BwPeakTBs": 1}), 1
        )
    msg = str(info.value)
    assert "mfuPrefill" in msg and "mfuDecode" in msg and "TOY" in msg


def test_v2_forced_without_tables_is_an_error(toy_model):
    with pytest.raises(ConfigError, match="no MFU tables"):
        build_cost_model(toy_model, parse_hardware_entry("TOY", TOY_HW), 1, step_model="v2")


def test_unknown_step_model():
    with pytest.raises(ConfigError, match="step model"):
        build_cost_model(load_model(LLAMA), load_hardware("H100", "minimal"), 1, step_model="v3")


# ---------------------------------------------------------------------------------------------
# API details
# ---------------------------------------------------------------------------------------------


def test_components_keys():
    _, comp = cost().step_time(*MIXED)
    assert set(comp) == {
        "prefill_compute_us",
        "prefill_memory_us",
        "decode_compute_us",
        "decode_memory_us",
        "overhead_us",
        "hardware_us",
    }


@pytest.mark.parametrize(
    ("prefills", "decodes"),
    [
        ([(-1, 5)], []),
        ([(0, 0)], []),
        ([], [-3]),
    ],
)
def test_bad_entries_rejected(prefills, decodes):
    with pytest.raises(ConfigError):
        cost().step_time(prefills, decodes)


@pytest.mark.parametrize("tp", [0, -1, 1.5, True])
def test_bad_tp_rejected(tp):
    with pytest.raises(ConfigError, match="tp"):
        build_cost_model(load_model(LLAMA), load_hardware("H100", "minimal"), tp)


def test_absurd_step_is_an_error():
    """A step beyond what the tables can index is refused, and so is a step whose time
    passes 2**62 µs (here 4e9 prefill tokens on the slowest GPU the limits allow); neither
    wraps around or is clipped."""
    with pytest.raises(ConfigError, match=r"entries must be integers in \[0, 4294967296\)"):
        cost().step_time([(0, 9_000_000_000_000)], [])
    hw = load_hardware("H100", "minimal").with_fields(TFlopsPeak=0.1, BwPeakTBs=0.001)
    slow = build_cost_model(load_model(LLAMA), hw, 1)
    us, _ = slow.step_time([(0, 100_000_000)], [])
    assert 2**50 < us < 2**62  # about 4e16 µs, still a number
    with pytest.raises(ConfigError, match="overflows"):
        slow.step_time([(0, 4_000_000_000)], [])
    with pytest.raises(ConfigError, match="overflows"):
        slow.step_times([([(0, 4_000_000_000)], [])])


def test_huge_step_below_the_limit_is_finite_and_grows():
    """Below the overflow limit a huge step is an ordinary, positive time that grows with the
    tokens: a billion prefill tokens take at least a thousand times as long as a million."""
    small, _ = cost().step_time([(0, 1_000_000)], [])
    huge, comp = cost().step_time([(0, 1_000_000_000)], [])
    assert 1 <= small < huge < 2**62
    assert huge >= 1000 * small * 0.99
    assert all(math.isfinite(v) and v >= 0 for v in comp.values())


def test_step_times_batch_matches_single_steps():
    steps = [DEC32, PRE512, MIXED, EMPTY, ([], [1127])]
    us, comp = cost().step_times(steps)
    assert us.tolist() == [8628, 13_694, 13_694, 1, 10_103]
    assert comp.shape == (5, 6)


def test_hardware_with_fields():
    hw = load_hardware("H100", "minimal")
    hw2 = hw.with_fields(TOverheadMicros=50, allreducelatency=20)
    assert isinstance(hw2, Hardware)
    assert hw2.t_overhead_us == 50 and hw2.allreduce_latency_us == 20
    assert hw.t_overhead_us == 0  # the original is unchanged
    with pytest.raises(ConfigError):
        hw.with_fields(NoSuchField=1)
    with pytest.raises(ConfigError, match="TOverheadMicros"):
        hw.with_fields(TOverheadMicros=-1)


def test_hardware_keys_case_insensitive():
    hw = parse_hardware_entry(
        "X", {"tflopspeak": 10, "BWPEAKTBS": 1, "toverheadmicros": 4, "_comment": "kept"}
    )
    assert (hw.tflops_peak, hw.bw_peak_tbs, hw.t_overhead_us) == (10, 1, 4)
    # unknown fields are errors (issue 14), with the closest known name suggested
    with pytest.raises(ConfigError, match="did you mean TOverheadMicros"):
        parse_hardware_entry("X", {"TFlopsPeak": 10, "BwPeakTBs": 1, "TOverheadMicro": 4})
    assert load_hardware("h100", "minimal").name == "H100"


def test_the_plain_step_shortcut_is_exact():
    """P_PLAIN (set when the fitted and extended step terms are neutral) only skips them: with
    the flag cleared, so that every term is applied, each step time is the same.  A
    hardware entry with a fitted term is not plain."""
    import dataclasses

    import numpy as np

    from infersweep import schema

    cm = cost()
    assert cm.ctf[schema.P_PLAIN] == 1.0
    full = dataclasses.replace(cm, ctf=cm.ctf.copy())
    full.ctf[schema.P_PLAIN] = 0.0
    rng = np.random.default_rng(3)
    steps = [DEC32, PRE512, MIXED, EMPTY]
    steps += [([(0, int(n))], rng.integers(1, 8000, int(b)).tolist()) for n, b in
              zip(rng.integers(1, 4096, 30), rng.integers(0, 300, 30))]  # fmt: skip
    for s in steps:
        assert cm.step_time(*s) == full.step_time(*s), s
    fitted = load_hardware("H100", "minimal").with_fields(StepRequestOverheadMicros=3.0)
    assert build_cost_model(load_model(LLAMA), fitted, 1).ctf[schema.P_PLAIN] == 0.0
