"""plan over prefill/decode splits: a P/D unit (P prefill + D decode instances) is what the
plan counts, prices and checks; the numbers here are recomputed from the settings and from
independent simulate() runs, not from the planner."""

from __future__ import annotations

import math

import numpy as np
import pytest

import infersweep
from infersweep.config.models import load_hardware

SETTINGS = {"model": "llama-3.1-8b-instruct", "workload": "chatbot", "num_requests": 600, "seed": 1}
SLO = {"ttft_p99_ms": 1000.0, "itl_p99_ms": 40.0}
TARGET = 300.0


def meets(summary: dict) -> bool:
    if summary["status"] != "ok" or summary["completed_requests"] != summary["injected_requests"]:
        return False
    return all(summary[m] is not None and summary[m] <= b for m, b in SLO.items())


@pytest.fixture(scope="module")
def pd_plan():
    return (
        infersweep.plan(
            {
                "sweep": dict(SETTINGS, prefill_instances=1, decode_instances=1),
                "grid": {"decode_tp": [1, 2], "prefill_hardware": ["H100", "A100-SXM"]},
            },
            slo=SLO,
            target_rate=TARGET,
            sensitivity=False,
        )
        .to_dataframe()
        .reset_index()
    )


def test_a_pd_unit_is_counted_priced_and_checked_whole(pd_plan):
    h100 = load_hardware("H100").price_per_gpu_hour
    a100 = load_hardware("A100-SXM").price_per_gpu_hour
    assert h100 > 0 and a100 > 0 and h100 != a100
    for _, r in pd_plan.iterrows():
        assert r["status"] == "ok", r["reason"]
        need = int(r["replicas_needed"])
        assert int(r["replicas_estimate"]) == math.ceil(TARGET / r["max_rate"])  # whole units
        p_price = h100 if r["prefill_hardware"] == "H100" else a100
        unit_gpus = 1 + int(r["decode_tp"])  # 1 prefill GPU + decode_tp decode GPUs
        assert r["gpus"] == need * unit_gpus
        assert r["cost_per_hour"] == pytest.approx(need * (p_price + int(r["decode_tp"]) * h100))
        assert r["price_per_gpu_hour"] == pytest.approx(r["cost_per_hour"] / r["gpus"])
        assert f"# {need} unit" in r["serve_command"] and "NixlConnector" in r["serve_command"]
        # the check: `need` units as one split of need prefill + need decode instances
        n_req = int(r["replicas_check_requests"])
        assert n_req == SETTINGS["num_requests"] * need
        s = dict(
            SETTINGS,
            num_requests=n_req,
            decode_tp=int(r["decode_tp"]),
            prefill_hardware=r["prefill_hardware"],
        )
        run = infersweep.simulate(
            **s, rate=TARGET, prefill_instances=need, decode_instances=need
        ).summary
        assert meets(run)
        worst = max(run[m] / b for m, b in SLO.items())
        assert r["replicas_check_margin"] == worst  # the same run, bit for bit
        if need > 1:
            fewer = need - 1
            s["num_requests"] = SETTINGS["num_requests"] * fewer
            run = infersweep.simulate(
                **s, rate=TARGET, prefill_instances=fewer, decode_instances=fewer
            ).summary
            assert not meets(run)
    assert (pd_plan["replicas_needed"] > 1).any()  # the check compared unit counts


def test_large_pd_deployments_are_checked_as_a_slice_of_whole_units(monkeypatch):
    from infersweep.sweeps import plan as plan_mod

    monkeypatch.setattr(plan_mod, "CHECK_MAX_INSTANCES", 2)  # one 1P1D unit per slice
    ds = infersweep.plan(
        {"sweep": dict(SETTINGS, prefill_instances=1, decode_instances=1), "grid": {"tp": [1]}},
        slo=SLO,
        target_rate=TARGET,
        sensitivity=False,
    )
    need = int(ds["replicas_needed"].values[0])
    assert need >= 2
    assert int(ds["replicas_check_requests"].values[0]) == SETTINGS["num_requests"]
    run = infersweep.simulate(
        **SETTINGS, rate=TARGET / need, prefill_instances=1, decode_instances=1
    ).summary
    assert float(ds["replicas_check_margin"].values[0]) == max(run[m] / b for m, b in SLO.items())
    assert np.isfinite(ds["cost_per_hour"].values[0])


def test_a_grid_over_the_pools_compares_colocated_and_split_serving(tmp_path):
    """prefill_instances x decode_instances as axes: the points that are no split (one pool
    only) are invalid rows with the reason; (0, 0) is the colocated instance and (1, 1) the
    split, each equal to simulate() with the same settings."""
    import pyarrow.parquet as pq

    from infersweep.sweeps.grid import SweepSpec
    from infersweep.sweeps.runner import run_sweep

    spec = SweepSpec(name="pd-grid")
    for k, v in {**SETTINGS, "num_requests": 200, "rate": 20.0}.items():
        spec.set_fixed(k, v)
    spec.add_axis("prefill_instances", [0, 1])
    spec.add_axis("decode_instances", [0, 1])
    run_sweep(spec, tmp_path / "out")
    rows = {
        (r["prefill_instances"], r["decode_instances"]): r
        for r in pq.read_table(tmp_path / "out" / "result.parquet").to_pylist()
    }
    assert len(rows) == 4
    for pair in ((0, 1), (1, 0)):
        assert rows[pair]["status"] == "invalid"
        assert "needs both pools" in rows[pair]["reason"]
    for p, d in ((0, 0), (1, 1)):
        assert rows[(p, d)]["status"] == "ok"
        s = dict(SETTINGS, num_requests=200, rate=20.0)
        want = infersweep.simulate(**s, prefill_instances=p, decode_instances=d).summary
        for m in ("ttft_p99_ms", "itl_p99_ms", "e2e_mean_ms", "completed_requests"):
            assert rows[(p, d)][m] == want[m], m


def test_one_pool_without_axes_is_still_an_error():
    from infersweep.errors import ConfigError

    with pytest.raises(ConfigError, match="decode_instances"):
        infersweep.plan(
            {"sweep": dict(SETTINGS, prefill_instances=1), "grid": {"tp": [1]}},
            slo=SLO,
            sensitivity=False,
        )
