"""Capacity-planning benchmark (pytest-benchmark). Run with

    .venv/bin/python -m pytest benchmarks/test_bench_plan.py --benchmark-only

or directly (prints the figures): ``.venv/bin/python benchmarks/test_bench_plan.py``.

A plan over 200 chatbot configurations of 2,000 requests each: 5 models x 5 GPUs x TP 1/2 x
4 seeds (a few are invalid: weights that do not fit), SLO TTFT p99 <= 500 ms and ITL p99 <=
50 ms, with the ±5 % sensitivity band, through ``sweeps.plan.run_plan`` on all cores (the
target rate's replica check is off: it simulates whole clusters, and this measures the search).  The
JIT is warmed first; ``extra_info`` holds the kernel calls and simulated points.  After timing,
every configuration with a max_rate is checked to have met the SLO there and failed at
1.03 x max_rate in the search's own points.
"""

from __future__ import annotations

import time

import pytest

from infersweep.sweeps.grid import SweepSpec
from infersweep.sweeps.plan import STEP_ABOVE, plan_options, run_plan

MODELS = [
    "qwen2.5-1.5b-instruct",
    "qwen2.5-7b-instruct",
    "llama-3.1-8b-instruct",
    "qwen3-14b",
    "codellama-34b-instruct-hf",
]
GPUS = ["H100", "H200", "A100-SXM", "L40S", "MI300X"]
SLO = {"ttft_p99_ms": 500, "itl_p99_ms": 50}


def make_spec(num_requests: int = 2000) -> SweepSpec:
    spec = SweepSpec(name="bench-plan")
    spec.set_fixed("workload", "chatbot")
    spec.set_fixed("num_requests", num_requests)
    spec.add_axis("model", MODELS)
    spec.add_axis("hardware", GPUS)
    spec.add_axis("tp", [1, 2])
    spec.add_axis("seed", [1, 2, 3, 4])
    assert spec.n_points == 200
    return spec


def check(run) -> int:
    found = 0
    for s in run.nominal:
        if s is None or s.state != "done":
            continue
        found += 1
        assert s.lo.meets and not s.above.meets
        assert s.above.rate == s.lo.rate * STEP_ABOVE
    return found


@pytest.fixture(scope="module")
def warm():
    spec = SweepSpec(name="warm")
    spec.set_fixed("num_requests", 50)
    spec.add_axis("model", MODELS[:2])
    run_plan(spec, plan_options(None, slo=SLO))


def test_plan_200_configs(benchmark, warm):
    spec = make_spec()
    opts = plan_options(None, slo=SLO, target_rate=100, check_replicas=False)
    run = benchmark.pedantic(lambda: run_plan(spec, opts), rounds=1, iterations=1)
    benchmark.extra_info.update(
        kernel_calls=run.kernel_calls, points=run.points, configurations=len(run.configs)
    )
    assert check(run) > 150


if __name__ == "__main__":
    run_plan(make_spec(50), plan_options(None, slo=SLO))  # warm the JIT
    t = time.perf_counter()
    run = run_plan(make_spec(), plan_options(None, slo=SLO, target_rate=100, check_replicas=False))
    dt = time.perf_counter() - t
    searches = [s for s in run.nominal if s is not None]
    band = [s for s in run.low + run.high if s is not None]
    print(
        f"{len(run.configs)} configurations ({len(searches)} runnable, {check(run)} with a "
        f"max_rate) in {dt:.1f} s: {run.kernel_calls} kernel calls, {run.points} points "
        f"({sum(len(s.points) for s in searches)} nominal incl. up to 40 for the knee figure, "
        f"{sum(len(s.points) for s in band)} band)"
    )
