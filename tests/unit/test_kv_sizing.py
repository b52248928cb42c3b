"""Automatic KV-cache sizing (SPEC §2) and --gpu-memory-utilization:
blocks = floor((MemoryGiB·2^30·TP·u − weight bytes) / (block · 2·L·KV·hd·B)).
The expected numbers are worked out by hand below from the model's config."""

from __future__ import annotations

import math

import pytest

from infersweep.api import cost_model_for, simulate
from infersweep.config.models import load_hardware, load_model
from infersweep.errors import ConfigError
from infersweep.scheduler.driver import (
    BLIS_DEFAULT_BLOCKS,
    NO_MEMORY_BLOCKS,
    SchedulerConfig,
    resolve_kv_blocks,
)

LLAMA = "llama-3.1-8b-instruct"
# llama-3.1-8b: hidden 4096, 32 heads (head dim 128), 8 KV heads, d_ff 14336, 32 layers, bf16.
# weights (the reference's W_b): 32 layers x (4096·(4096 + 2·1024) + 4096² + 3·4096·14336)
# parameters x 2 bytes
WEIGHTS = 32 * (4096 * (4096 + 2 * 1024) + 4096 * 4096 + 3 * 4096 * 14336) * 2
KV_PER_TOKEN = 2 * 32 * 8 * 128 * 2  # K and V, all layers, bf16: 131,072 bytes


def expected_blocks(gib: float, tp: int, u: float, block: int) -> int:
    return math.floor((gib * 2**30 * tp * u - WEIGHTS) / (block * KV_PER_TOKEN))


def cost(tp: int = 1, gib: float = 80.0):
    hw = load_hardware("H100", "minimal").with_fields(MemoryGiB=gib)
    return cost_model_for(load_model(LLAMA), hw, tp)


def test_hand_worked_numbers():
    assert WEIGHTS == 13_958_643_712
    assert expected_blocks(80, 1, 0.9, 16) == 30_208  # (77,309,411,328 − W) / 2,097,152


@pytest.mark.parametrize(
    "tp,u,block,gib",
    [(1, 0.9, 16, 80), (1, 0.5, 16, 80), (2, 0.9, 16, 80), (1, 1.0, 32, 80), (4, 0.3, 8, 24)],
)
def test_auto_blocks_follow_the_formula(tp, u, block, gib):
    cfg = SchedulerConfig(gpu_memory_utilization=u, block_size=block)
    n, note = resolve_kv_blocks(cost(tp, gib), cfg)
    assert n == expected_blocks(gib, tp, u, block)
    assert note == ""


def test_auto_is_the_default_and_the_string_auto():
    assert SchedulerConfig().total_kv_blocks is None
    assert SchedulerConfig(total_kv_blocks="auto").total_kv_blocks is None
    assert SchedulerConfig(total_kv_blocks=" AUTO ").total_kv_blocks is None


def test_utilization_changes_the_simulated_cache():
    kw = dict(model=LLAMA, hardware=cost().hardware, workload="chatbot", num_requests=20)
    for u in (0.9, 0.35):
        res = simulate(gpu_memory_utilization=u, **kw)
        assert res.summary["kv_blocks_total"] == expected_blocks(80, 1, u, 16)
        assert res.raw.kv_blocks_total == expected_blocks(80, 1, u, 16)


def test_explicit_blocks_win_over_auto_and_utilization():
    cfg = SchedulerConfig(total_kv_blocks=1234, gpu_memory_utilization=0.2)
    assert resolve_kv_blocks(cost(), cfg) == (1234, "")


def test_blis_default_is_a_million_blocks():
    assert BLIS_DEFAULT_BLOCKS == 1_000_000
    cfg = SchedulerConfig(semantics="blis", gpu_memory_utilization=0.5)
    assert resolve_kv_blocks(cost(), cfg) == (1_000_000, "")


def test_hardware_without_memory_uses_a_million_blocks_with_a_note():
    cm = cost_model_for(load_model(LLAMA), load_hardware("H100", "minimal"), 1)
    assert not cm.hardware.memory_gib
    n, note = resolve_kv_blocks(cm, SchedulerConfig())
    assert n == NO_MEMORY_BLOCKS == 1_000_000
    assert "no MemoryGiB" in note


@pytest.mark.parametrize("gib,u", [(14, 0.9), (80, 0.16)])
def test_weights_that_leave_no_room_are_an_error(gib, u):
    # 14 GiB x 0.9 = 12.6 GiB and 80 GiB x 0.16 = 12.8 GiB: below the 13.0 GiB of weights
    assert gib * 2**30 * u < WEIGHTS
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        resolve_kv_blocks(cost(1, gib), SchedulerConfig(gpu_memory_utilization=u))


@pytest.mark.parametrize("u", [0, -0.1, 1.01, float("nan"), float("inf")])
def test_bad_utilization_is_an_error(u):
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        SchedulerConfig(gpu_memory_utilization=u)


@pytest.mark.parametrize("blocks", [0, -5, 2.5, True, "many"])
def test_bad_block_count_is_an_error(blocks):
    with pytest.raises(ConfigError, match="total_kv_blocks"):
        SchedulerConfig(total_kv_blocks=blocks)
