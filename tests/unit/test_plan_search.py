"""The capacity search on synthetic SLO curves (no kernel): it ends on a simulated meeting
rate with a failing rate within 1 % above it and a failing point at 1.03 x that rate, also when
the curve is not monotone; and the StepCostScale field (default 1.0 changes nothing)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infersweep import schema
from infersweep.config.models import load_hardware, load_model, parse_hardware_entry
from infersweep.costmodel.stepcost import build_cost_model
from infersweep.errors import ConfigError
from infersweep.sweeps.plan import STEP_ABOVE, Point, Search, check_slo, snap_rate
from infersweep.workload.generate import constant_gap_us


def run_search(ratio_of, estimate: float, arrival: str = "poisson") -> Search:
    s = Search(0, 1.0, estimate, arrival)
    while s.active:
        for r in s.probes():
            ratio = ratio_of(r)
            row = np.zeros(len(schema.SUMMARY.fields))
            s.observe(Point(r, ratio <= 1.0, ratio, row, 10.0))
    return s


@pytest.mark.parametrize("estimate", [0.3, 9.0, 37.0, 40.0, 500.0])
@pytest.mark.parametrize("arrival", ["poisson", "constant"])
def test_knee_found_within_tolerance(estimate, arrival):
    knee = 37.3

    def ratio_of(r):  # flat below the knee, a steep rise after it
        return 0.2 if r <= knee else 0.2 + (r - knee) * 0.9

    s = run_search(ratio_of, estimate, arrival)
    assert s.state == "done"
    lo = s.lo.rate
    assert ratio_of(lo) <= 1 and lo in s.points
    assert s.hi.rate <= lo * 1.01 and s.hi.rate in s.points
    assert s.above.rate == lo * STEP_ABOVE and not s.above.meets
    assert 0.97 * knee < lo <= knee + 0.8 / 0.9 + 1e-9
    assert len(s.points) <= 16


def test_non_monotone_curve_keeps_searching_upward():
    # fails in a narrow band (20, 21), meets again up to 50
    def ratio_of(r):
        return 2.0 if 20 < r < 21 or r > 50 else 0.5

    s = run_search(ratio_of, 20.5)
    assert s.state == "done"
    assert ratio_of(s.lo.rate) <= 1 and ratio_of(s.lo.rate * STEP_ABOVE) > 1


def test_infeasible_when_even_a_tiny_rate_fails():
    s = run_search(lambda r: 3.0, 10.0)
    assert s.state == "infeasible"
    assert s.hi.rate <= 10.0 * 1e-3 * 1.0001


def test_snapped_constant_rates_keep_their_spacing():
    for r in np.geomspace(0.01, 5e4, 2000):
        g = constant_gap_us(r)
        s = snap_rate(r, "constant")
        assert constant_gap_us(s) == g
        assert math.isclose(1e6 / s, g + 0.5)


def test_slo_checks():
    assert check_slo({"ttft_p99_ms": 500, "itl_p99_ms": "50"}) == {
        "ttft_p99_ms": 500.0,
        "itl_p99_ms": 50.0,
    }
    for bad in ({"ttft_p99": 1}, {"ttft_p99_ms": 0}, {"ttft_p99_ms": -1}, {}, {"x": True}):
        with pytest.raises(ConfigError):
            check_slo(bad)


def test_step_cost_scale_default_and_effect():
    hw = load_hardware("H100")
    assert hw.step_cost_scale == 1.0
    assert "StepCostScale" not in hw.to_entry()
    assert hw.price_per_gpu_hour > 0  # the catalog's list price
    m = load_model("qwen2.5-7b-instruct")
    base = build_cost_model(m, hw, 1)
    same = build_cost_model(m, hw.with_fields(StepCostScale=1.0), 1)
    slow = build_cost_model(m, hw.with_fields(StepCostScale=1.1), 1)
    assert np.array_equal(base.ctf, same.ctf) and np.array_equal(base.cti, same.cti)
    for pf, dc in (((), [300] * 32), ([(0, 2048)], ()), ([(0, 700)], [900] * 8)):
        a, _ = base.step_time(pf, dc)
        b, _ = slow.step_time(pf, dc)
        assert abs(b - 1.1 * a) <= 1.0  # every step 10 % slower, up to µs rounding
    with pytest.raises(ConfigError, match="StepCostScale"):
        parse_hardware_entry("X", {"TFlopsPeak": 1, "BwPeakTBs": 1, "StepCostScale": 0})
    with pytest.raises(ConfigError, match="PricePerGPUHour"):
        parse_hardware_entry("X", {"TFlopsPeak": 1, "BwPeakTBs": 1, "PricePerGPUHour": -2})
