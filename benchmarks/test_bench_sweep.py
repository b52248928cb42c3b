"""Sweep throughput benchmarks (pytest-benchmark). Run with

    .venv/bin/python -m pytest benchmarks/test_bench_sweep.py --benchmark-only

Points per second of chatbot sweeps of 1,000 requests per point, from light load to overload,
with 1 and 2 worker threads:

- ``test_sweep_grid[1050-...]``: 5 models x TP 1/2/4 x 10 rates x 7 seeds = 1,050 points through
  ``sweeps.runner.run_sweep`` (validation, batched kernel, chunk files, the final Parquet), one
  round each: the big grid takes tens of seconds per thread count.
- ``test_sweep_grid[100-...]``: 5 models x TP 1/2 x 10 rates = 100 points, three rounds.
- ``test_run_jobs_100``: the same 100 points straight through ``scheduler.driver.run_jobs`` (the
  batched kernel alone, jobs prepared beforehand).

The JIT is warmed first (kernels come from the on-disk cache); every point is checked after
timing: status ok and all 1,000 requests completed.  ``extra_info["points_per_s"]`` holds the
figure to compare.
"""

from __future__ import annotations

import numba
import numpy as np
import pyarrow.parquet as pq
import pytest

from infersweep.sweeps.grid import SweepSpec
from infersweep.sweeps.runner import run_sweep

MODELS = [
    "qwen2.5-7b-instruct",
    "llama-2-7b-hf",
    "llama-3.1-8b-instruct",
    "codellama-34b-instruct-hf",
    "qwen3-14b",
]
RATES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]  # requests/s: idle H100 to far past saturation
NUM_REQUESTS = 1000
GRIDS = {
    1050: {"model": MODELS, "tp": [1, 2, 4], "rate": RATES, "seed": [1, 2, 3, 4, 5, 6, 7]},
    100: {"model": MODELS, "tp": [1, 2], "rate": RATES},
}
ROUNDS = {1050: 1, 100: 3}
THREADS = [1, 2]


def make_spec(n: int) -> SweepSpec:
    spec = SweepSpec(name=f"bench-{n}")
    spec.set_fixed("workload", "chatbot")
    spec.set_fixed("num_requests", NUM_REQUESTS)
    spec.set_fixed("hardware", "H100")
    for axis, values in GRIDS[n].items():
        spec.add_axis(axis, values)
    assert spec.n_points == n
    return spec


def need_threads(threads: int) -> None:
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"numba has {numba.config.NUMBA_NUM_THREADS} threads here")


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """Load every kernel the sweeps use (numba's disk cache) before any timing."""
    spec = SweepSpec(name="warm")
    spec.set_fixed("workload", "chatbot")
    spec.set_fixed("num_requests", 20)
    spec.add_axis("model", MODELS)
    spec.add_axis("tp", [1, 4])
    for threads in THREADS:
        if threads <= numba.config.NUMBA_NUM_THREADS:
            run_sweep(spec, tmp_path_factory.mktemp("warm") / "out", threads=threads)


def check_result(path, n: int) -> None:
    tbl = pq.read_table(path)
    assert tbl.num_rows == n
    assert set(tbl.column("status").to_pylist()) == {"ok"}
    assert tbl.column("completed_requests").to_pylist() == [float(NUM_REQUESTS)] * n
    assert tbl.column("injected_requests").to_pylist() == [float(NUM_REQUESTS)] * n
    # light load to overload: p99 TTFT spans orders of magnitude across the rates
    ttft = np.asarray(tbl.column("ttft_p99_ms").to_numpy())
    assert np.isfinite(ttft).all() and ttft.max() > 100 * ttft.min()


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("n", sorted(GRIDS))
def test_sweep_grid(benchmark, warm, tmp_path_factory, n, threads):
    need_threads(threads)
    spec = make_spec(n)

    def setup():  # a fresh, empty output folder per round (a finished folder is reused)
        return (spec, tmp_path_factory.mktemp(f"sweep{n}") / "out"), {"threads": threads}

    benchmark.group = f"sweep {n} points x {NUM_REQUESTS} requests (run_sweep)"
    outcome = benchmark.pedantic(run_sweep, setup=setup, rounds=ROUNDS[n], iterations=1)
    assert outcome.n_points == n and outcome.computed == n and outcome.skipped == 0
    check_result(outcome.path, n)
    benchmark.extra_info["points"] = n
    benchmark.extra_info["threads"] = threads
    benchmark.extra_info["points_per_s"] = round(n / benchmark.stats.stats.mean, 1)


@pytest.fixture(scope="module")
def jobs_100():
    from infersweep.sweeps.runner import Preparer

    spec = make_spec(100)
    prep = Preparer()
    points = [prep.prepare(i, s) for i, s in enumerate(spec.points())]
    assert all(p.job is not None for p in points), [p.reason for p in points if p.reason]
    return [p.job for p in points]


@pytest.mark.parametrize("threads", THREADS)
def test_run_jobs_100(benchmark, warm, jobs_100, threads):
    from infersweep.scheduler.driver import run_jobs
    from infersweep.schema import M_COMPLETED_REQUESTS

    need_threads(threads)
    benchmark.group = f"run_jobs 100 points x {NUM_REQUESTS} requests (kernel only)"
    result = benchmark.pedantic(
        run_jobs, args=(jobs_100,), kwargs={"threads": threads}, rounds=3, iterations=1
    )
    completed = result.metrics[:, M_COMPLETED_REQUESTS]
    assert completed.tolist() == [float(NUM_REQUESTS)] * len(jobs_100)
    benchmark.extra_info["points"] = len(jobs_100)
    benchmark.extra_info["threads"] = threads
    benchmark.extra_info["points_per_s"] = round(len(jobs_100) / benchmark.stats.stats.mean, 1)
