"""Joint calibration benchmarks (issue 10): the default joint fit over every shared dense H100
trace (target: under 5 minutes) and over one 16,800-request trace (target: under a minute).

    INFERSWEEP_REFERENCE=../shared/reference python -m pytest benchmarks/test_bench_joint.py \
        --benchmark-only -s
"""

from __future__ import annotations

import dataclasses

import numpy as np

from infersweep.config.models import load_hardware
from infersweep.fitting.build_profiles import DENSE_H100
from infersweep.fitting.joint import joint_calibrate, load_trace
from infersweep.workload.generate import Workload
from tests.conftest import need_reference


def _traces():
    root = need_reference("vllm_h100")
    return [load_trace(root / name) for names in DENSE_H100.values() for name in names]


def test_joint_all_shared_h100(benchmark):
    traces = _traces()
    hw = load_hardware("H100")
    joint_calibrate(traces[:1], hw, n_candidates=2, refine_iter=2, max_requests=200)  # warm JIT
    res = benchmark.pedantic(
        joint_calibrate, args=(traces, hw), kwargs={"n_candidates": 32}, rounds=1, iterations=1
    )
    assert res.best.loss < res.start.loss
    assert benchmark.stats["mean"] < 300
    benchmark.extra_info.update(
        traces=len(traces), candidates=res.n_candidates, simulations=res.n_simulations
    )


def _tiled(trace, n: int):
    """The trace repeated back to back (arrivals shifted by its span) up to n requests."""
    wl = trace.workload
    reps = -(-n // len(wl))
    span = int(wl.arrival_us[-1]) + 1_000_000
    idx = np.tile(np.arange(len(wl)), reps)[:n]
    shift = np.repeat(np.arange(reps) * span, len(wl))[:n]
    extra = {k: np.asarray(v)[idx] for k, v in wl.extra.items()}
    tiled = Workload.from_arrays(
        wl.arrival_us[idx] + shift,
        wl.prompt_tok[idx],
        wl.output_tok[idx],
        wl.group[idx],
        wl.prefix_tok[idx],
        extra=extra,
        sort=False,
    )
    return dataclasses.replace(trace, workload=tiled, name=f"{trace.name}x{reps}")


def test_joint_single_16800_request_trace(benchmark):
    root = need_reference("vllm_h100")
    trace = _tiled(load_trace(root / "istrain-llama-2-7b-tp1-codegen"), 16_800)
    assert len(trace.workload) == 16_800
    hw = load_hardware("H100")
    res = benchmark.pedantic(joint_calibrate, args=([trace], hw), rounds=1, iterations=1)
    assert res.best.loss < res.start.loss
    assert benchmark.stats["mean"] < 60
    benchmark.extra_info.update(candidates=res.n_candidates, simulations=res.n_simulations)
