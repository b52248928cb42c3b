"""Benchmarks of `run` (issue: the scheduler kernel and `run`).

In-process, JIT warm: the 100-request seed run, 10,000 chatbot requests at rate 1 and rate 10,
1,000 summarization requests, 100 multidoc requests; plus the whole `run` CLI process with a
warm numba cache.  Run with::

    .venv/bin/python -m pytest benchmarks/test_bench_run.py --benchmark-only

Targets (1 % of the reference simulator on a 2-core machine): 10,000 chatbot < 160-240 ms,
1,000 summarization < 920 ms, 100 multidoc < 400 ms; the seed command's process < 1.5 s.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infersweep.api import simulate
from tests.conftest import SEED_FLAGS, make_seed_dir

CASES = {
    "seed_100_chatbot": dict(workload="chatbot", num_requests=100, rate=1.0),
    "chatbot_10k_rate1": dict(workload="chatbot", num_requests=10_000, rate=1.0),
    "chatbot_10k_rate10": dict(workload="chatbot", num_requests=10_000, rate=10.0),
    "summarization_1k": dict(workload="summarization", num_requests=1_000, rate=1.0),
    "multidoc_100": dict(workload="multidoc", num_requests=100, rate=1.0),
}


@pytest.mark.parametrize("semantics", ["vllm", "blis"])
@pytest.mark.parametrize("case", list(CASES))
def test_run_in_process(benchmark, case, semantics):
    kw = dict(
        model="llama-3.1-8b-instruct", hardware="H100", tp=1, semantics=semantics, **CASES[case]
    )
    simulate(**{**kw, "num_requests": 20})  # JIT warm
    res = benchmark.pedantic(simulate, kwargs=kw, rounds=5, iterations=1, warmup_rounds=1)
    assert res.summary["completed_requests"] == kw["num_requests"]
    assert res.summary["status"] == "ok"


def test_seed_command_process(benchmark, tmp_path):
    exe = Path(sys.executable).parent / "simulation_worker"
    cmd = [str(exe), "run", *SEED_FLAGS]
    cwd = make_seed_dir(tmp_path)
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)  # the numba cache is warm

    def once():
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)

    proc = benchmark.pedantic(once, rounds=5, iterations=1)
    assert proc.returncode == 0, proc.stderr
    assert '"completed_requests": 100' in proc.stdout
