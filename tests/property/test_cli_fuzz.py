"""Fuzzing the command line and the config files (issue 14): for every generated input the
command exits 0, or exits 2 with a clear ``error:`` line; never a traceback, never "internal
error", always within a time bound, and the process stays within a memory bound.

The size checks are pointed at a 1 GiB budget (``INFERSWEEP_MEMORY_LIMIT``), so that any input
asking for more must be refused before it allocates.
"""

from __future__ import annotations

import io
import json
import os
import resource
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO

MODEL = "llama-3.1-8b-instruct"
SECONDS_PER_EXAMPLE = 30
FUZZ = settings(
    max_examples=int(os.environ.get("INFERSWEEP_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(autouse=True)
def _memory_budget(monkeypatch):
    monkeypatch.setenv("INFERSWEEP_MEMORY_LIMIT", "1G")


def run_cli(*args) -> tuple[int, str, str, float]:
    from infersweep.sweeps.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    t0 = time.perf_counter()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue(), time.perf_counter() - t0


def check_outcome(args, code: int, out: str, err: str, seconds: float) -> None:
    where = f"args {args!r}: exit {code}, stderr {err[-500:]!r}"
    assert "Traceback" not in err and "Traceback" not in out, where
    assert "internal error" not in err, where
    assert code in (0, 2), where
    if code == 2:
        lines = err.strip().splitlines()
        assert lines and lines[-1].startswith("error:"), where
        assert len(lines[-1]) < 2000, where
    assert seconds < SECONDS_PER_EXAMPLE, where


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


NUMBERS = [
    "0",
    "-1",
    "1",
    "2.5",
    "nan",
    "inf",
    "-inf",
    "1e-15",
    "1e-12",
    "1e300",
    "1000000000",
    "99999999999999999999",
    "abc",
    "",
]
RUN_FLAGS = {
    "--rate": ["1", "4", "50", *NUMBERS],
    "--num-requests": ["1", "5", "20", *NUMBERS],
    "--tp": ["1", "2", "3", "8", "1000", "0", "-2", "x"],
    "--workload": ["chatbot", "contentgen", "distribution", "traces", "nope", ""],
    "--hardware": ["H100", "A100-SXM", "h200", "nope", ""],
    "--total-kv-blocks": ["auto", "2", "64", "5000", *NUMBERS],
    "--max-num-scheduled-tokens": ["16", "2048", *NUMBERS],
    "--max-num-running-reqs": ["1", "4", "256", *NUMBERS],
    "--block-size-in-tokens": ["1", "16", "4096", *NUMBERS],
    "--long-prefill-token-threshold": ["0", "64", *NUMBERS],
    "--horizon": ["0", "0.5", "10", *NUMBERS],
    "--arrival": ["constant", "poisson", "gamma", "weird"],
    "--arrival-cv": ["0.5", "2", *NUMBERS],
    "--seed": ["0", "7", "-1", "99999999999999999999999", "x"],
    "--semantics": ["vllm", "blis", "sglang"],
    "--blis-preemption": ["reference", "safe", "x"],
    "--gpu-memory-utilization": ["0.9", "0.5", "1", *NUMBERS],
    "--prefix-tokens": ["0", "16", *NUMBERS],
    "--prompt-tokens": ["64", "512", *NUMBERS],
    "--output-tokens": ["8", "64", *NUMBERS],
    "--output-tokens-max": ["64", "7000", *NUMBERS],
    "--step-model": ["auto", "v1", "v2", "v3"],
    "--log": ["warn", "error", "loud"],
}


@st.composite
def run_args(draw):
    flags = draw(st.lists(st.sampled_from(sorted(RUN_FLAGS)), max_size=6, unique=True))
    args = ["run", "--model", MODEL, "--num-requests", "12"]
    for f in flags:
        args += [f, draw(st.sampled_from(RUN_FLAGS[f]))]
    return args


@FUZZ
@given(args=run_args())
def test_fuzz_run_flags(args):
    code, out, err, seconds = run_cli(*args, "--quiet")
    check_outcome(args, code, out, err, seconds)
    assert maxrss_bytes() < 6 * 2**30


JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(0, 10), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(0, 3), max_size=2),
)
MODEL_KEYS = [
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
    "torch_dtype",
    "text_config",
    "num_kv_heads",
]
HW_KEYS = [
    "TFlopsPeak",
    "BwPeakTBs",
    "TOverheadMicros",
    "MemoryGiB",
    "mfuPrefill",
    "mfuDecode",
    "bwEfficiencyFactor",
    "perLayerOverhead",
    "AllReduceLatency",
    "TOverheadMicro",
    "memory_gib",
    "_comment",
]


def _dump(obj) -> str:
    return json.dumps(obj, allow_nan=True)


@FUZZ
@given(
    changes=st.dictionaries(st.sampled_from(MODEL_KEYS), JSON_VALUES, min_size=1, max_size=3),
    tp=st.sampled_from(["1", "2", "4"]),
)
def test_fuzz_model_config(changes, tp):
    cfg = json.loads((REPO / "data" / "models" / MODEL / "config.json").read_text())
    cfg.update(changes)
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "config.json").write_text(_dump(cfg))
        args = ["run", "--model-config-folder", d, "--num-requests", "8", "--tp", tp, "--quiet"]
        code, out, err, seconds = run_cli(*args)
    check_outcome(args, code, out, err, seconds)


@FUZZ
@given(
    entry=st.dictionaries(st.sampled_from(HW_KEYS), JSON_VALUES, max_size=4),
    base=st.booleans(),
)
def test_fuzz_hardware_config(entry, base):
    full = {"TFlopsPeak": 989.5, "BwPeakTBs": 3.35, "MemoryGiB": 80} if base else {}
    full.update(entry)
    with tempfile.TemporaryDirectory() as d:
        hw = Path(d) / "hw.json"
        hw.write_text(_dump({"_about": "fuzz", "H100": full}))
        args = ["run", "--model", MODEL, "--hardware-config", hw, "--num-requests", "8", "-q"]
        code, out, err, seconds = run_cli(*args)
    check_outcome(args, code, out, err, seconds)


CELLS = st.sampled_from(
    ["0", "1", "10", "0.5", "-1", "nan", "1e300", "1000000000", "x", "", "99999999999", "3.7"]
)


@FUZZ
@given(
    rows=st.lists(st.tuples(CELLS, CELLS, CELLS), min_size=0, max_size=5),
    header=st.sampled_from(
        [
            "arrival_time_s,prompt_tokens,output_tokens",
            "arrival_time_s,prompt_tokens",
            "prompt_tokens,arrival_time_s,output_tokens",
        ]
    ),
)
def test_fuzz_trace(rows, header):
    with tempfile.TemporaryDirectory() as d:
        trace = Path(d) / "t.csv"
        trace.write_text(header + "\n" + "".join(",".join(r) + "\n" for r in rows))
        args = ["run", "--model", MODEL, "--workload", "traces"]
        args += ["--workload-traces-filepath", trace, "-q"]
        code, out, err, seconds = run_cli(*args)
    check_outcome(args, code, out, err, seconds)


SWEEP_VALUES = {
    "num_requests": ["5", "0", "1e9", "x", "20"],
    "rate": ["1", "0", "-1", "1e-15", "nan"],
    "tp": ["1", "3", "0", "1000"],
    "total_kv_blocks": ["auto", "2", "0", "1e12"],
    "horizon": ["0", "1e300", "-1"],
}


@FUZZ
@given(
    axes=st.dictionaries(
        st.sampled_from(sorted(SWEEP_VALUES)),
        st.integers(1, 2),
        max_size=3,
    ),
    data=st.data(),
)
def test_fuzz_sweep_axes(axes, data):
    args = ["sweep", "--model", MODEL, "--workload", "chatbot", "--set", "num_requests=6"]
    for k, n in axes.items():
        vals = data.draw(st.lists(st.sampled_from(SWEEP_VALUES[k]), min_size=n, max_size=n))
        args += ["--axis", f"{k}={','.join(vals)}"]
    with tempfile.TemporaryDirectory() as d:
        args += ["--out", Path(d) / "o", "--no-show", "--quiet"]
        code, out, err, seconds = run_cli(*args)
    check_outcome(args, code, out, err, seconds)
