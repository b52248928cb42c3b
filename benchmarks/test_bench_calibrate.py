"""Calibration benchmarks: candidate evaluations per second (the batch search) and the wall
time of a full `calibrate` on the example vLLM trace (target: under a minute)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from infersweep.config.models import load_hardware, load_model
from infersweep.fitting.calibrate import _Problem, calibrate, fit_mask, relevant_requests
from infersweep.fitting.otlp import read_measured
from infersweep.scheduler.driver import SchedulerConfig
from tests.conftest import need_reference

SCHED = SchedulerConfig(
    max_num_scheduled_tokens=4096, max_num_running_reqs=256, total_kv_blocks=7438
)


def _example():
    d = need_reference("vllm", "jan21-llama7b-train-1")
    return d, read_measured(d / "measured.csv")


def test_candidates_per_second(benchmark):
    _, wl = _example()
    hw = load_hardware("H100", "minimal")
    mask = fit_mask(wl, "synchronous", 1)
    sub, sub_mask = relevant_requests(wl, mask)
    prob = _Problem(
        sub,
        load_model("llama-2-7b-hf"),
        hw,
        1,
        SCHED,
        ("TOverheadMicros", "bwEfficiencyFactor"),
        None,
        "auto",
        sub_mask,
        None,
    )
    rng = np.random.default_rng(0)
    cands = [
        {"TOverheadMicros": float(a), "bwEfficiencyFactor": float(b)}
        for a, b in zip(rng.uniform(0, 3000, 256), rng.uniform(0.5, 1.0, 256))
    ]
    prob.evaluate(cands[:4])  # warm
    evals = benchmark.pedantic(prob.evaluate, args=(cands,), rounds=3, iterations=1)
    assert len(evals) == 256 and all(np.isfinite(e.loss) for e in evals)
    benchmark.extra_info["candidates"] = len(cands)
    benchmark.extra_info["candidates_per_s"] = round(len(cands) / benchmark.stats["mean"], 1)


def test_full_calibrate_in_process(benchmark):
    _, wl = _example()
    kw = dict(
        model=load_model("llama-2-7b-hf"),
        hardware=load_hardware("H100", "minimal"),
        tp=1,
        scheduler=SCHED,
        fit_phase="synchronous",
    )
    res = benchmark.pedantic(calibrate, args=(wl,), kwargs=kw, rounds=1, iterations=1)
    assert res.best.loss < res.start.loss
    benchmark.extra_info["candidates_per_s"] = round(res.candidates_per_s, 1)


def test_full_calibrate_cli(benchmark, tmp_path):
    d, _ = _example()
    exe = Path(sys.executable).parent / "infersweep"
    cmd = [
        str(exe),
        "calibrate",
        str(d / "measured.csv"),
        "--manifest",
        str(d / "manifest.json"),
        "--hardware-config",
        "minimal",
        "--fit-phase",
        "synchronous",
        "--out",
        str(tmp_path / "cal.json"),
    ]

    def once():
        return subprocess.run(cmd, capture_output=True, text=True)

    proc = benchmark.pedantic(once, rounds=1, iterations=1)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cal.json").exists()
