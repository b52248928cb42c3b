"""--blis-preemption: the reference's preemption quirks, and the fallback where they livelock
(request-level equality with the reference port is in tests/parity/test_sched_reference.py)."""

from __future__ import annotations

import numpy as np
import pytest

from infersweep import schema as S
from infersweep.api import simulate
from infersweep.scheduler.driver import LIVELOCK_NOTE, Job, SchedulerConfig, run_jobs
from infersweep.schema import M_BLIS_SAFE_FALLBACK
from infersweep.workload.generate import WorkloadSpec, generate

MODEL = dict(model="llama-3.1-8b-instruct", hardware="H100", tp=1)


@pytest.fixture(scope="module")
def chat():
    """REFERENCE §9 Q3's evidence workload: 300 chatbot requests at 20/s (ours, not its)."""
    return generate(WorkloadSpec(workload="chatbot", rate=20.0, num_requests=300))


def run(wl, blocks, mode="reference"):
    sc = SchedulerConfig(semantics="blis", total_kv_blocks=blocks, blis_preemption=mode)
    return simulate(**MODEL, workload=wl, scheduler=sc), sc


def test_livelock_falls_back_to_safe_mode(chat):
    lit, _ = run(chat, 1000)
    safe, _ = run(chat, 1000, "safe")
    assert lit.raw.scalars[S.SC_LIVELOCK] == 1 and safe.raw.scalars[S.SC_LIVELOCK] == 0
    assert LIVELOCK_NOTE in lit.notes and LIVELOCK_NOTE not in safe.notes
    assert lit.summary["completed_requests"] == 300 and lit.summary["preemption_count"] > 0
    assert lit.summary["blis_safe_fallback"] == 1 and safe.summary["blis_safe_fallback"] == 0
    np.testing.assert_array_equal(lit.raw.out, safe.raw.out)


def test_reference_mode_differs_from_safe_mode_when_it_preempts(chat):
    """Caches just too small for this workload preempt without livelocking; Q3 then changes
    the run (the modes agree when nothing is preempted)."""
    for blocks in (1235, 1240):
        lit, _ = run(chat, blocks)
        safe, _ = run(chat, blocks, "safe")
        assert lit.raw.scalars[S.SC_LIVELOCK] == 0
        assert lit.summary["preemption_count"] > safe.summary["preemption_count"] > 0
        assert lit.summary["completed_requests"] == safe.summary["completed_requests"] == 300
    lit, _ = run(chat, 1250)
    safe, _ = run(chat, 1250, "safe")
    assert lit.summary["preemption_count"] == 0
    np.testing.assert_array_equal(lit.raw.out, safe.raw.out)


@pytest.mark.parametrize("blocks", [1000, 1235, 1400])
def test_batched_kernel_matches_run(chat, blocks):
    """Sweeps (one kernel call for many points) take the same fallback as run."""
    res, sc = run(chat, blocks)
    br = run_jobs([Job(chat, res.cost, sc)], keep_requests=True)
    np.testing.assert_array_equal(br.out_req[br.req_off[0] : br.req_off[1]], res.raw.out)
    assert (
        br.metrics[0, M_BLIS_SAFE_FALLBACK] == res.summary["blis_safe_fallback"] == (blocks == 1000)
    )
