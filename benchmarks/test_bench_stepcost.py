"""Step-cost benchmarks (pytest-benchmark). Run with

    .venv/bin/python -m pytest benchmarks --benchmark-only

The kernel benchmarks call ``costmodel.stepcost_nb.step_time_nb`` directly with preallocated
arrays (JIT warmed first), so they measure the kernel; the ``api`` variants go through
``CostModel.step_time`` (list -> array conversion and checks included) for reference. Results
are checked after timing against the slow pure-Python port in ``tests/reference_stepcost.py``.
The cold-start benchmarks time a fresh ``infersweep step-time`` process, with the numba cache
already built (and, separately, with an empty cache).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # for tests.reference_stepcost
    sys.path.insert(0, str(REPO))

from infersweep import schema  # noqa: E402
from infersweep.config.models import load_hardware, load_model  # noqa: E402
from infersweep.costmodel import stepcost_nb as nb  # noqa: E402
from infersweep.costmodel.stepcost import build_cost_model  # noqa: E402
from tests.reference_stepcost import ref_cost, ref_model  # noqa: E402

LLAMA = "llama-3.1-8b-instruct"


@pytest.fixture(scope="module")
def cm():
    return build_cost_model(load_model(LLAMA), load_hardware("H100", "minimal"), 1)


@pytest.fixture(scope="module")
def ref():
    return ref_cost(LLAMA, "minimal", 1)


def decode_contexts(n: int) -> np.ndarray:
    return np.random.default_rng(20240611).integers(512, 4097, n).astype(np.int64)


def table_args(cm) -> tuple:
    """The kernels' table arguments: the packed ``(ctf, cti)`` arrays (current layout) or the
    ``CostTables`` tuple of the first layout."""
    if hasattr(cm, "ctf"):
        return cm.ctf, cm.cti
    return (cm.tables,)


def kernel_args(cm, prefills, decodes) -> tuple:
    """Preallocated arguments of ``step_time_nb`` for one step; the last one is ``out``."""
    pf = np.asarray(prefills, dtype=np.int64).reshape(-1, 2)
    dc = np.ascontiguousarray(np.asarray(decodes, dtype=np.int64))
    out = np.zeros(schema.N_COMPONENTS)
    memo = ()
    if hasattr(cm, "ctf"):  # the decode-MFU fallback memo of the packed layout
        from infersweep.costmodel.stepcost import new_memo

        memo = new_memo()
    return (
        np.ascontiguousarray(pf[:, 0]),
        np.ascontiguousarray(pf[:, 1]),
        pf.shape[0],
        dc,
        dc.shape[0],
        *table_args(cm),
        *memo,
        out,
    )


STEPS = {
    "decode-32": ([], 32),
    "decode-256": ([], 256),
    "decode-512": ([], 512),
    "mixed-2pf-64dc": ([(0, 512), (1024, 256)], 64),
}


@pytest.mark.parametrize("name", list(STEPS))
def test_kernel_step_time(benchmark, cm, ref, name):
    prefills, n_dc = STEPS[name]
    decodes = decode_contexts(n_dc)
    args = kernel_args(cm, prefills, decodes)
    nb.step_time_nb(*args)  # warm (the JIT is cached on disk; this loads it)
    benchmark.group = "step-cost kernel"
    benchmark.extra_info["entries"] = len(prefills) + n_dc
    us = benchmark(nb.step_time_nb, *args)
    expected = ref.step_us(prefills, decodes.tolist())
    assert us == expected
    assert args[-1][schema.C_HARDWARE] > 0


@pytest.mark.parametrize("name", ["decode-256", "mixed-2pf-64dc"])
def test_api_step_time(benchmark, cm, ref, name):
    prefills, n_dc = STEPS[name]
    decodes = decode_contexts(n_dc).tolist()
    cm.step_time(prefills, decodes)
    benchmark.group = "step-cost CostModel.step_time"
    us, comp = benchmark(cm.step_time, prefills, decodes)
    assert us == ref.step_us(prefills, decodes)
    assert comp["hardware_us"] > 0


def test_kernel_many_steps(benchmark, cm, ref):
    """``step_times_nb`` over 1,000 decode steps of 1..256 requests (one call)."""
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 257, 1000)
    dc_off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    dc = rng.integers(1, 8192, int(dc_off[-1])).astype(np.int64)
    pf_off = np.zeros(1001, np.int64)
    empty = np.zeros(0, np.int64)
    out_us = np.zeros(1000, np.int64)
    out_comp = np.zeros((1000, schema.N_COMPONENTS))
    args = (pf_off, empty, empty, dc_off, dc, *table_args(cm), out_us, out_comp)
    nb.step_times_nb(*args)
    benchmark.group = "step-cost kernel (batched)"
    benchmark(nb.step_times_nb, *args)
    for i in rng.choice(1000, 20, replace=False):
        assert out_us[i] == ref.step_us([], dc[dc_off[i] : dc_off[i + 1]].tolist())


# ---------------------------------------------------------------------------------------------
# cold start: a fresh `infersweep step-time` process
# ---------------------------------------------------------------------------------------------

COLD_ARGS = ("step-time", "--model", LLAMA, "--decode", "256x1024")


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "infersweep.sweeps.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=full_env,
        timeout=600,
    )


def expected_cold_step_us() -> int:
    """The default hardware config's H100 entry, through the pure-Python port."""
    from tests.reference_stepcost import RefStepCost, RefTables, normalise_hw

    catalog = json.loads((REPO / "data" / "hardware" / "hardware.json").read_text())
    return RefStepCost(ref_model(LLAMA), normalise_hw(catalog["H100"]), 1, RefTables()).step_us(
        [], [1024] * 256
    )


def test_cold_start_cached(benchmark):
    first = run_cli(*COLD_ARGS)  # builds the numba cache if needed
    assert first.returncode == 0, first.stderr
    benchmark.group = "cold start"
    result = benchmark.pedantic(run_cli, args=COLD_ARGS, rounds=3, iterations=1)
    assert result.returncode == 0, result.stderr
    assert f"{expected_cold_step_us()} µs" in result.stdout

    # and that process compiled nothing: every engine kernel came from the cache
    dbg = run_cli(*COLD_ARGS, env={"NUMBA_DEBUG_CACHE": "1"})
    assert dbg.returncode == 0, dbg.stderr
    log = dbg.stdout + dbg.stderr
    assert "data saved" not in log and "index saved" not in log, log
    loaded = [line for line in log.splitlines() if "data loaded" in line]
    assert any("stepcost_nb.step_time_nb-" in line for line in loaded), log
    for line in log.splitlines():  # every engine kernel the process touched came from disk
        if "[cache]" in line and "engine" in line:
            assert "loaded" in line, line


def test_cold_start_empty_cache(benchmark, tmp_path_factory):
    """A fresh process with an empty numba cache (INFERSWEEP_CACHE_DIR pointed at a new folder):
    the whole JIT compile is inside the measurement."""

    def setup():  # a new, empty cache folder for every round
        cache = tmp_path_factory.mktemp("numba_cache")
        return (), {"env": {"INFERSWEEP_CACHE_DIR": str(cache), "NUMBA_DEBUG_CACHE": "1"}}

    def run(env):
        return run_cli(*COLD_ARGS, env=env)

    benchmark.group = "cold start"
    result = benchmark.pedantic(run, setup=setup, rounds=1, iterations=1)
    assert result.returncode == 0, result.stderr
    assert "data saved" in result.stdout + result.stderr  # it did compile
    assert f"{expected_cold_step_us()} µs" in result.stdout
