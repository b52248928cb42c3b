"""``infersweep sweep`` and ``infersweep show`` end to end (SPEC_inputs_outputs §6, issue item 7).

The oracle for sweep values is the ``run`` command: a sweep point must equal the same
configuration simulated alone, metric for metric, with exact float equality (same kernels, same
inputs; ``run`` prints shortest round-trip floats).  Resume, determinism and the Dask path are
checked against an uninterrupted local sweep in another folder, column by column, bit for bit.
Nothing here computes an expected value with the sweep code itself.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, CliResult, assert_one_error_line

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

#: SPEC_inputs_outputs §5: the reference simulator's metric keys (instance_id excluded) and the
#: documented additions; each must be a metric column of a sweep result.
REFERENCE_METRICS = (
    "completed_requests",
    "still_queued",
    "still_running",
    "injected_requests",
    "total_input_tokens",
    "total_output_tokens",
    "vllm_estimated_duration_s",
    "responses_per_sec",
    "tokens_per_sec",
    "e2e_mean_ms",
    "e2e_p90_ms",
    "e2e_p95_ms",
    "e2e_p99_ms",
    "ttft_mean_ms",
    "ttft_p90_ms",
    "ttft_p95_ms",
    "ttft_p99_ms",
    "itl_mean_ms",
    "itl_p90_ms",
    "itl_p95_ms",
    "itl_p99_ms",
    "scheduling_delay_p99_ms",
    "preemption_count",
    "dropped_unservable",
)
DOCUMENTED_EXTRAS = (
    "ttft_p50_ms",
    "e2e_p50_ms",
    "itl_p50_ms",
    "tpot_mean_ms",
    "tpot_p99_ms",
    "kv_blocks_total",
    "kv_peak_blocks",
)
#: keys of the ``run`` metrics object that are not numeric metrics
NON_METRIC_KEYS = {"instance_id", "semantics", "status"}


def main_in_process(*args) -> CliResult:
    """``infersweep ARGS`` in this process, for module-scoped fixtures (no capsys there)."""
    from infersweep.sweeps.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())


def write_spec(path: Path, name: str, fixed: dict, grid: dict) -> Path:
    """A TOML sweep spec, axes in the given order."""

    def lit(v):
        return json.dumps(v)  # TOML and JSON agree on strings, ints, floats and booleans here

    lines = ["[sweep]", f"name = {lit(name)}"]
    lines += [f"{k} = {lit(v)}" for k, v in fixed.items()]
    lines += ["", "[grid]"]
    lines += [f"{k} = [{', '.join(lit(x) for x in v)}]" for k, v in grid.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_metrics(stdout: str) -> dict:
    """The JSON object printed by ``run`` after ``=== Simulation Metrics ===``."""
    head = "=== Simulation Metrics ===\n"
    assert stdout.startswith(head), stdout[:200]
    obj, _ = json.JSONDecoder().raw_decode(stdout[len(head) :])
    return obj


def float_bits(col) -> bytes:
    """The exact bits of a float column (NaN payloads and -0.0 included)."""
    arr = col.to_numpy(zero_copy_only=False) if hasattr(col, "to_numpy") else np.asarray(col)
    return np.ascontiguousarray(arr, dtype=np.float64).view(np.uint64).tobytes()


def assert_tables_identical(a: pa.Table, b: pa.Table, what: str) -> None:
    """Same columns, same types, same values bit for bit (floats compared as bits)."""
    assert a.column_names == b.column_names, what
    assert a.schema.types == b.schema.types, what
    assert a.num_rows == b.num_rows, what
    for name in a.column_names:
        ca, cb = a.column(name), b.column(name)
        if pa.types.is_floating(ca.type):
            assert float_bits(ca) == float_bits(cb), f"{what}: column {name} differs"
        else:
            assert ca.to_pylist() == cb.to_pylist(), f"{what}: column {name} differs"


def meta_of(path: Path) -> dict:
    return json.loads(pq.read_schema(path).metadata[b"infersweep"])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under a folder (relative path -> bytes)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def point_index(grid: dict, labels: dict) -> int:
    """Index of a point in the C-order product of the axes (last axis fastest)."""
    i = 0
    for k, vals in grid.items():
        i = i * len(vals) + vals.index(labels[k])
    return i


# ---------------------------------------------------------------------------------------------
# module sweeps
# ---------------------------------------------------------------------------------------------

# The oracle sweep: two GPUs (H100 with MFU tables, A100-SXM on roofline v1), two models, TP 1/2,
# light and heavy load, both scheduler semantics.  The axes are deliberately in an order that is
# neither alphabetical nor the CLI's.
ORACLE_FIXED = {"workload": "chatbot", "num_requests": 150, "seed": 7}
ORACLE_GRID = {
    "semantics": ["vllm", "blis"],
    "tp": [1, 2],
    "model": ["llama-3.1-8b-instruct", "qwen2.5-7b-instruct"],
    "rate": [3.0, 40.0],
    "hardware": ["H100", "A100-SXM"],
}
ORACLE_POINTS = list(itertools.product(*ORACLE_GRID.values()))

# A sweep with invalid points: qwen2.5-7b (28 heads, 4 KV heads) at TP 8, llama-2-70b
# (~128 GiB of fp16 weights) at TP 1 on an 80 GiB H100.
MIXED_FIXED = {"workload": "chatbot", "num_requests": 60, "seed": 11, "hardware": "H100"}
MIXED_GRID = {
    "tp": [1, 8],
    "model": ["qwen2.5-7b-instruct", "llama-2-70b-hf", "llama-3.1-8b-instruct"],
    "rate": [5.0],
}
MIXED_INVALID = {
    (8, "qwen2.5-7b-instruct", 5.0): ("tp 8", "divide", "28", "4"),
    (1, "llama-2-70b-hf", 5.0): ("fit", "80"),
}


@pytest.fixture(scope="module")
def oracle_spec(tmp_path_factory) -> Path:
    return write_spec(
        tmp_path_factory.mktemp("spec") / "oracle.toml", "oracle", ORACLE_FIXED, ORACLE_GRID
    )


@pytest.fixture(scope="module")
def oracle_result(oracle_spec, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("oracle") / "out"
    res = main_in_process("sweep", oracle_spec, "--out", out, "--no-show", "--quiet")
    assert res.code == 0, res.err
    return out


@pytest.fixture(scope="module")
def mixed_spec(tmp_path_factory) -> Path:
    return write_spec(
        tmp_path_factory.mktemp("spec") / "mixed.toml", "mixed", MIXED_FIXED, MIXED_GRID
    )


@pytest.fixture(scope="module")
def mixed_result(mixed_spec, tmp_path_factory) -> Path:
    """The mixed sweep, with --per-request."""
    out = tmp_path_factory.mktemp("mixed") / "out"
    res = main_in_process(
        "sweep", mixed_spec, "--out", out, "--per-request", "--no-show", "--quiet"
    )
    assert res.code == 0, res.err
    return out


@pytest.fixture
def good_copy(mixed_result, tmp_path) -> Path:
    """A private copy of a folder holding a good, finished sweep."""
    dst = tmp_path / "good"
    shutil.copytree(mixed_result, dst)
    return dst


# ---------------------------------------------------------------------------------------------
# every point equals the same configuration run alone
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oracle_rows(oracle_result):
    return pq.read_table(oracle_result / "result.parquet").to_pylist()


@pytest.mark.parametrize(
    "labels", ORACLE_POINTS, ids=["-".join(map(str, p)) for p in ORACLE_POINTS]
)
def test_point_equals_run_alone(cli, oracle_rows, labels):
    point = dict(zip(ORACLE_GRID, labels))
    rows = [r for r in oracle_rows if all(r[k] == v for k, v in point.items())]
    assert len(rows) == 1, (point, len(rows))
    row = rows[0]
    res = cli(
        "run",
        "--model",
        point["model"],
        "--hardware",
        point["hardware"],
        "--tp",
        point["tp"],
        "--workload",
        ORACLE_FIXED["workload"],
        "--rate",
        point["rate"],
        "--num-requests",
        ORACLE_FIXED["num_requests"],
        "--seed",
        ORACLE_FIXED["seed"],
        "--semantics",
        point["semantics"],
        "--quiet",
    )
    assert res.code == 0, res.err
    alone = run_metrics(res.out)
    assert row["status"] == alone["status"] == "ok"
    assert row["reason"] == ""
    assert alone["semantics"] == point["semantics"]
    mismatches = {}
    for key, value in alone.items():
        if key in NON_METRIC_KEYS:
            continue
        assert key in row, f"run metric {key} is not a column of the sweep result"
        want = float("nan") if value is None else float(value)
        got = row[key]
        if not (got == want or (np.isnan(got) and np.isnan(want))):
            mismatches[key] = (got, want)
    assert not mismatches, f"sweep point != run alone (got, want): {mismatches}"
    # the only metric run may leave out is kv_allocation_failures (omitted when 0)
    ncols = list(row)
    metric_cols = ncols[len(ORACLE_GRID) : ncols.index("status")]
    missing = [m for m in metric_cols if m not in alone]
    assert missing in ([], ["kv_allocation_failures"]), missing
    if missing:
        assert row["kv_allocation_failures"] == 0.0


def test_oracle_rows_are_in_point_order(oracle_result):
    """Row i is point i of the C-order product of the axes (per-request partitions use it)."""
    tbl = pq.read_table(oracle_result / "result.parquet")
    got = list(zip(*(tbl.column(k).to_pylist() for k in ORACLE_GRID)))
    assert got == ORACLE_POINTS
    check_columns(tbl.column_names, list(ORACLE_GRID))
    assert "hardware_tflops_peak" in tbl.column_names and "model_weight_gib" in tbl.column_names


# ---------------------------------------------------------------------------------------------
# determinism, threads, chunk size
# ---------------------------------------------------------------------------------------------


def test_same_spec_twice_is_bit_identical(cli, oracle_spec, oracle_result, tmp_path):
    """Another run of the same spec (1 thread, another chunk size) gives identical columns."""
    out = tmp_path / "again"
    res = cli(
        "sweep",
        oracle_spec,
        "--out",
        out,
        "--threads",
        "1",
        "--chunk-size",
        "5",
        "--no-show",
        "--quiet",
    )
    assert res.code == 0, res.err
    a = pq.read_table(oracle_result / "result.parquet")
    b = pq.read_table(out / "result.parquet")
    assert_tables_identical(a, b, "second run")
    ma, mb = meta_of(oracle_result / "result.parquet"), meta_of(out / "result.parquet")
    ma["attrs"].pop("created")
    mb["attrs"].pop("created")
    assert ma == mb


def test_rerun_of_finished_sweep_reuses_everything(cli, good_copy, mixed_spec):
    before = snapshot(good_copy)
    res = cli("sweep", mixed_spec, "--out", good_copy, "--no-show")
    assert res.code == 0, res.err
    n = int(np.prod([len(v) for v in MIXED_GRID.values()]))
    assert re.search(rf"\b{n} points \(0 simulated, {n} reused\)", res.err), res.err
    assert snapshot(good_copy) == before


# ---------------------------------------------------------------------------------------------
# resume after kill -9
# ---------------------------------------------------------------------------------------------

RESUME_FIXED = {"workload": "chatbot", "num_requests": 4000, "seed": 3}
RESUME_GRID = {
    "model": ["llama-3.1-8b-instruct", "qwen2.5-7b-instruct"],
    "rate": [30.0, 120.0, 400.0],
    "semantics": ["vllm", "blis"],
}
RESUME_POINTS = list(itertools.product(*RESUME_GRID.values()))


@pytest.mark.slow
def test_resume_after_kill(cli, tmp_path):
    spec = write_spec(tmp_path / "resume.toml", "resume", RESUME_FIXED, RESUME_GRID)
    n = len(RESUME_POINTS)
    n_chunks = n // 2
    out = tmp_path / "killed"
    chunks = out / "chunks"
    log = (tmp_path / "stdout.txt").open("w"), (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infersweep.sweeps.cli",
            "sweep",
            str(spec),
            "--out",
            str(out),
            "--chunk-size",
            "2",
            "--threads",
            "1",
            "--no-show",
            "--quiet",
        ],
        cwd=REPO,
        stdout=log[0],
        stderr=log[1],
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if chunks.is_dir() and any(chunks.glob("chunk-*.parquet")):
                break
            time.sleep(0.001)
        finished_early = proc.poll() is not None
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        log[0].close()
        log[1].close()
    assert not finished_early, (
        "the sweep ended before the first chunk could be seen "
        f"(rc {proc.returncode}): " + (tmp_path / "stderr.txt").read_text()
    )
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "result.parquet").exists()
    done = sorted(chunks.glob("chunk-*.parquet"))
    assert 1 <= len(done) < n_chunks, [p.name for p in done]

    # the rerun asks for another chunk size and thread count: the folder's chunk size (2, in
    # manifest.json) must win, or the finished chunks would not line up with the new ones
    res = cli("sweep", spec, "--out", out, "--chunk-size", "5", "--threads", "2", "--no-show")
    assert res.code == 0, res.err
    reused = 2 * len(done)
    assert re.search(rf"\b{n} points \({n - reused} simulated, {reused} reused\)", res.err), res.err
    assert not chunks.exists(), "chunk files should be removed once the result is written"
    resumed = pq.read_table(out / "result.parquet")
    keys = list(zip(*(resumed.column(k).to_pylist() for k in RESUME_GRID)))
    assert sorted(keys) == sorted(RESUME_POINTS), "missing or duplicate points"
    assert keys == RESUME_POINTS

    res = cli("sweep", spec, "--out", tmp_path / "whole", "--no-show", "--quiet")
    assert res.code == 0, res.err
    whole = pq.read_table(tmp_path / "whole" / "result.parquet")
    assert_tables_identical(resumed, whole, "resumed vs uninterrupted")
    assert set(resumed.column("status").to_pylist()) == {"ok"}


# ---------------------------------------------------------------------------------------------
# bad specs: one error line, nothing written
# ---------------------------------------------------------------------------------------------

HEAD = '[sweep]\nname = "bad"\nnum_requests = 20\nmodel = "qwen2.5-7b-instruct"\n'
BAD_SPECS = {  # id: (TOML text, text the error line must contain)
    "unknown-axis": (HEAD + "[grid]\nfoo = [1, 2]\n", ("foo", "unknown setting")),
    "empty-axis": (HEAD + "[grid]\nrate = []\n", ("rate", "at least one value")),
    "tp-two": (HEAD + '[grid]\ntp = ["two"]\n', ("tp", "two", "integer")),
    "tp-two-fixed": (HEAD + 'tp = "two"\n[grid]\nrate = [1]\n', ("tp", "two", "integer")),
    "axis-not-a-list": (HEAD + '[grid]\ntp = "two"\n', ("tp", "list")),
    "rate-true": (HEAD + "[grid]\nrate = [true]\n", ("rate", "true", "number")),
    "rate-word": (HEAD + '[grid]\nrate = [1, "fast"]\n', ("rate", "fast")),
    "rate-negative": (HEAD + "[grid]\nrate = [1, -2]\n", ("rate", "-2")),
    "tp-zero": (HEAD + "[grid]\ntp = [0, 1]\n", ("tp", "0")),
    "duplicate-label": (HEAD + "[grid]\nrate = [1, 1.0]\n", ("rate", "twice")),
    "unknown-gpu": (HEAD + '[grid]\nhardware = ["H100", "Z900"]\n', ("Z900", "H100")),
    "unknown-model": (
        HEAD + '[grid]\nmodel = ["qwen2.5-7b-instruct", "no-such-model"]\n',
        ("no-such-model", "unknown model"),
    ),
    "unknown-semantics": (HEAD + '[grid]\nsemantics = ["vllm", "sglang"]\n', ("sglang",)),
    "unknown-workload": (HEAD + '[grid]\nworkload = ["chatbot", "nope"]\n', ("nope",)),
    "unknown-table": (HEAD + "[grids]\nrate = [1]\n", ("grids",)),
    "malformed-toml": (HEAD + '[grid]\nmodel = ["qwen2.5-7b-instruct"\n', ("TOML",)),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec(cli, tmp_path, good_copy, case):
    text, needles = BAD_SPECS[case]
    spec = tmp_path / f"{case}.toml"
    spec.write_text(text)
    fresh = tmp_path / "fresh"
    assert_one_error_line(cli("sweep", spec, "--out", fresh, "--no-show"), *needles)
    assert not fresh.exists(), "a failed sweep must not create its output folder"
    before = snapshot(good_copy)
    assert_one_error_line(cli("sweep", spec, "--out", good_copy, "--no-show"), *needles)
    assert snapshot(good_copy) == before, "a failed sweep changed an earlier good result"


BAD_FLAGS = {
    "axis-unknown": (["--model", "qwen2.5-7b-instruct", "--axis", "foo=1,2"], ("foo",)),
    "axis-empty": (["--model", "qwen2.5-7b-instruct", "--axis", "rate="], ("rate",)),
    "axis-no-equals": (["--model", "qwen2.5-7b-instruct", "--axis", "rate"], ("--axis",)),
    "tp-word": (["--model", "qwen2.5-7b-instruct", "--tp", "1,two"], ("tp", "two")),
    "rate-word": (["--model", "qwen2.5-7b-instruct", "--rate", "1,abc"], ("rate", "abc")),
    "set-list": (["--model", "qwen2.5-7b-instruct", "--set", "tp=1,2"], ("tp", "1,2")),
    "unknown-gpu": (["--model", "qwen2.5-7b-instruct", "--hardware", "H100,Z900"], ("Z900",)),
    "unknown-model": (["--model", "nope-7b"], ("nope-7b",)),
    "threads-zero": (["--model", "qwen2.5-7b-instruct", "--threads", "0"], ("--threads",)),
    "chunk-zero": (["--model", "qwen2.5-7b-instruct", "--chunk-size", "0"], ("--chunk-size",)),
}


@pytest.mark.parametrize("case", list(BAD_FLAGS))
def test_bad_cli_axes(cli, tmp_path, case):
    flags, needles = BAD_FLAGS[case]
    fresh = tmp_path / "fresh"
    assert_one_error_line(
        cli("sweep", *flags, "--set", "num_requests=10", "--out", fresh, "--no-show"), *needles
    )
    assert not fresh.exists()


def test_missing_spec_file(cli, tmp_path):
    assert_one_error_line(
        cli("sweep", tmp_path / "nope.toml", "--out", tmp_path / "o"), "nope.toml", "not found"
    )


def test_out_under_a_regular_file(cli, tmp_path, mixed_spec):
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me\n")
    assert_one_error_line(
        cli("sweep", mixed_spec, "--out", blocker / "sub", "--no-show"),
        str(blocker / "sub"),
        "cannot write",
    )
    assert_one_error_line(
        cli("sweep", mixed_spec, "--out", blocker, "--no-show"), str(blocker), "cannot write"
    )
    assert blocker.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores directory permissions"
)
def test_out_in_read_only_folder(cli, tmp_path, mixed_spec):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert_one_error_line(cli("sweep", mixed_spec, "--out", ro / "out", "--no-show"), "cannot")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def test_different_spec_needs_force(cli, tmp_path, good_copy):
    other = write_spec(
        tmp_path / "other.toml",
        "other",
        {"num_requests": 20},
        {"model": ["qwen2.5-1.5b-instruct"], "rate": [2.0, 7.0]},
    )
    before = snapshot(good_copy)
    assert_one_error_line(
        cli("sweep", other, "--out", good_copy, "--no-show"),
        str(good_copy),
        "different sweep",
        "--force",
    )
    assert snapshot(good_copy) == before
    res = cli("sweep", other, "--out", good_copy, "--no-show", "--quiet", "--force")
    assert res.code == 0, res.err
    tbl = pq.read_table(good_copy / "result.parquet")
    assert tbl.column_names[:2] == ["model", "rate"]
    assert tbl.column("rate").to_pylist() == [2.0, 7.0]
    assert not (good_copy / "per_request").exists(), "--force left the old per-request data"


def test_result_without_manifest_is_not_reused_for_another_spec(cli, tmp_path, good_copy):
    (good_copy / "manifest.json").unlink()
    old = (good_copy / "result.parquet").read_bytes()
    other = write_spec(
        tmp_path / "other.toml",
        "other",
        {"num_requests": 20},
        {"model": ["qwen2.5-1.5b-instruct"], "rate": [2.0, 7.0]},
    )
    res = cli("sweep", other, "--out", good_copy, "--no-show", "--quiet")
    if res.code == 0:  # acceptable: the new sweep computed and written
        tbl = pq.read_table(good_copy / "result.parquet")
        assert tbl.column_names[:2] == ["model", "rate"], tbl.column_names[:3]
        assert tbl.column("rate").to_pylist() == [2.0, 7.0]
    else:  # acceptable: a clear error, the old result untouched
        assert_one_error_line(res)
        assert (good_copy / "result.parquet").read_bytes() == old


# ---------------------------------------------------------------------------------------------
# invalid points stay in the result
# ---------------------------------------------------------------------------------------------


def test_invalid_points_are_kept_with_a_reason(mixed_result):
    tbl = pq.read_table(mixed_result / "result.parquet")
    n = int(np.prod([len(v) for v in MIXED_GRID.values()]))
    assert tbl.num_rows == n
    for row in tbl.to_pylist():
        key = tuple(row[k] for k in MIXED_GRID)
        if key in MIXED_INVALID:
            assert row["status"] == "invalid", row
            for needle in MIXED_INVALID[key]:
                assert needle.lower() in row["reason"].lower(), (needle, row["reason"])
            for m in REFERENCE_METRICS:  # null in Parquet (NaN in the Dataset)
                assert row[m] is None, (key, m, row[m])
        else:
            assert row["status"] == "ok", row
            assert row["reason"] == ""
            assert row["completed_requests"] == MIXED_FIXED["num_requests"]


def test_missing_mfu_data_is_an_invalid_point(cli, tmp_path):
    """A100-SXM in the 2-field minimal hardware file has neither MFU tables nor v1
    efficiencies: the point is kept as invalid, H100 (with tables) runs."""
    out = tmp_path / "out"
    res = cli(
        "sweep",
        "--set",
        "hardware_config=minimal",
        "--hardware",
        "H100,A100-SXM",
        "--model",
        "qwen2.5-7b-instruct",
        "--set",
        "num_requests=20",
        "--out",
        out,
        "--no-show",
        "--quiet",
    )
    assert res.code == 0, res.err
    rows = pq.read_table(out / "result.parquet").to_pylist()
    assert [(r["hardware"], r["status"]) for r in rows] == [("H100", "ok"), ("A100-SXM", "invalid")]
    assert "A100-SXM" in rows[1]["reason"] and "mfu" in rows[1]["reason"].lower()
    assert rows[1]["ttft_p99_ms"] is None  # null in Parquet


# ---------------------------------------------------------------------------------------------
# Dask
# ---------------------------------------------------------------------------------------------

DASK_FIXED = {"workload": "chatbot", "num_requests": 50, "seed": 5}
DASK_GRID = {
    "model": ["llama-3.1-8b-instruct", "qwen2.5-7b-instruct"],
    "tp": [1, 8],
    "rate": [4.0, 40.0],
}


@pytest.mark.slow
def test_dask_local_equals_local(cli, tmp_path):
    spec = write_spec(tmp_path / "dask.toml", "dask", DASK_FIXED, DASK_GRID)
    res = cli(
        "sweep",
        spec,
        "--out",
        tmp_path / "dask",
        "--dask",
        "local",
        "--chunk-size",
        "2",
        "--no-show",
    )
    assert res.code == 0, res.err
    assert re.search(r"\b8 points \(8 simulated, 0 reused\)", res.err), res.err
    res = cli("sweep", spec, "--out", tmp_path / "local", "--threads", "1", "--no-show", "--quiet")
    assert res.code == 0, res.err
    a = pq.read_table(tmp_path / "dask" / "result.parquet")
    b = pq.read_table(tmp_path / "local" / "result.parquet")
    assert_tables_identical(a, b, "dask vs local")
    assert a.column("status").to_pylist().count("invalid") == 2  # qwen2.5-7b at TP 8


# ---------------------------------------------------------------------------------------------
# the Parquet result in DuckDB, polars and pandas
# ---------------------------------------------------------------------------------------------


def check_columns(cols: list[str], axes: list[str]) -> None:
    """Axis columns first in spec order, then metrics, then status and reason, then facts."""
    assert cols[: len(axes)] == axes, cols[: len(axes) + 2]
    i = cols.index("status")
    assert cols[i + 1] == "reason"
    metrics = cols[len(axes) : i]
    for m in REFERENCE_METRICS + DOCUMENTED_EXTRAS:
        assert m in metrics, f"documented metric {m} missing"
    facts = cols[i + 2 :]
    assert all(any(f.startswith(a + "_") for a in axes) for f in facts), facts


def test_parquet_opens_in_duckdb(mixed_result):
    import duckdb

    path = mixed_result / "result.parquet"
    con = duckdb.connect()
    rel = con.sql(f"SELECT * FROM '{path}'")
    check_columns(rel.columns, list(MIXED_GRID))
    types = dict(zip(rel.columns, map(str, rel.types)))
    assert types["tp"] == "BIGINT" and types["model"] == "VARCHAR" and types["rate"] == "DOUBLE"
    assert types["ttft_p99_ms"] == "DOUBLE" and types["status"] == "VARCHAR"
    counts = dict(con.sql(f"SELECT status, count(*) FROM '{path}' GROUP BY status").fetchall())
    assert counts == {"ok": 4, "invalid": 2}
    # invalid points have null metrics, which SQL filters natively
    invalid = con.sql(
        f"SELECT tp, model, ttft_p99_ms FROM '{path}' WHERE ttft_p99_ms IS NULL ORDER BY tp"
    ).fetchall()
    assert [(tp, m) for tp, m, _ in invalid] == [(1, "llama-2-70b-hf"), (8, "qwen2.5-7b-instruct")]
    assert all(v is None for _, _, v in invalid)
    ok = con.sql(f"SELECT completed_requests FROM '{path}' WHERE status = 'ok'").fetchall()
    assert ok == [(60.0,)] * 4


def test_parquet_opens_in_polars(mixed_result):
    import polars as pl

    df = pl.read_parquet(mixed_result / "result.parquet")
    check_columns(df.columns, list(MIXED_GRID))
    assert df.schema["tp"] == pl.Int64 and df.schema["model"] == pl.String
    assert df.schema["rate"] == pl.Float64 and df.schema["completed_requests"] == pl.Float64
    assert df.height == 6
    ok = df.filter(pl.col("status") == "ok")
    assert ok["completed_requests"].to_list() == [60.0] * 4


def test_parquet_opens_in_pandas(mixed_result):
    import pandas as pd

    df = pd.read_parquet(mixed_result / "result.parquet")
    check_columns(list(df.columns), list(MIXED_GRID))
    assert str(df["tp"].dtype) == "int64" and str(df["rate"].dtype) == "float64"
    assert len(df) == 6
    assert sorted(df["status"].value_counts().items()) == [("invalid", 2), ("ok", 4)]
    assert df.loc[df["status"] == "invalid", "ttft_p99_ms"].isna().all()


# ---------------------------------------------------------------------------------------------
# the Dataset read back
# ---------------------------------------------------------------------------------------------


def test_result_reads_back_as_dataset(mixed_result, tmp_path):
    import xarray as xr

    from infersweep.sweeps.results import read_dataset, write_parquet

    ds = read_dataset(mixed_result / "result.parquet")
    assert list(ds.dims) == list(MIXED_GRID)
    for k, vals in MIXED_GRID.items():
        assert ds[k].values.tolist() == vals
    for name in ds.data_vars:
        for attr in ("units", "long_name", "description"):
            assert attr in ds[name].attrs, (name, attr)
    assert {"infersweep_version", "spec", "created"} <= set(ds.attrs)
    assert json.loads(ds.attrs["spec"])["grid"] == MIXED_GRID
    # every row of the table is at its labels in the Dataset
    for row in pq.read_table(mixed_result / "result.parquet").to_pylist():
        at = ds.sel({k: row[k] for k in MIXED_GRID})
        assert str(at["status"].values) == row["status"]
        assert str(at["reason"].values) == row["reason"]
        for m in REFERENCE_METRICS:
            a, b = float(at[m].values), row[m]
            assert a == b or (np.isnan(a) and b is None), (m, a, b)
    assert float(ds["model_weight_gib"].sel(model="llama-2-70b-hf")) > 80
    # Dataset -> Parquet -> Dataset
    write_parquet(ds, tmp_path / "again.parquet")
    xr.testing.assert_identical(read_dataset(tmp_path / "again.parquet"), ds)


def test_oracle_result_round_trips(oracle_result, tmp_path):
    import xarray as xr

    from infersweep.sweeps.results import dataset_to_table, read_dataset, write_parquet

    path = oracle_result / "result.parquet"
    ds = read_dataset(path)
    assert dict(ds.sizes) == {k: len(v) for k, v in ORACLE_GRID.items()}
    write_parquet(ds, tmp_path / "rt.parquet")
    xr.testing.assert_identical(read_dataset(tmp_path / "rt.parquet"), ds)
    # and the table written from the Dataset is the sweep's own table
    assert_tables_identical(dataset_to_table(ds), pq.read_table(path), "table of the Dataset")


# ---------------------------------------------------------------------------------------------
# --per-request
# ---------------------------------------------------------------------------------------------


def test_per_request_dataset(mixed_result):
    import pyarrow.dataset as pads

    from infersweep.api import simulate

    root = mixed_result / "per_request"
    dataset = pads.dataset(root, format="parquet", partitioning="hive")
    assert "point" in dataset.schema.names
    tbl = dataset.to_table()
    valid = {
        point_index(MIXED_GRID, dict(zip(MIXED_GRID, p)))
        for p in itertools.product(*MIXED_GRID.values())
        if p not in MIXED_INVALID
    }
    assert set(tbl.column("point").to_pylist()) == valid
    for p in itertools.product(*MIXED_GRID.values()):
        if p in MIXED_INVALID:
            continue
        labels = dict(zip(MIXED_GRID, p))
        idx = point_index(MIXED_GRID, labels)
        part = dataset.to_table(filter=pads.field("point") == idx)
        assert part.num_rows == MIXED_FIXED["num_requests"]
        assert part.column("request_id").to_pylist() == list(range(part.num_rows))
        alone = simulate(
            model=labels["model"],
            hardware=MIXED_FIXED["hardware"],
            tp=labels["tp"],
            workload=MIXED_FIXED["workload"],
            rate=labels["rate"],
            num_requests=MIXED_FIXED["num_requests"],
            seed=MIXED_FIXED["seed"],
        )
        for col, want in (
            ("ttft_ms", alone.ttft_ms),
            ("e2e_ms", alone.e2e_ms),
            ("scheduling_delay_ms", alone.scheduling_delay_ms),
            ("arrival_s", alone.workload.arrival_us / 1e6),
        ):
            assert float_bits(part.column(col)) == float_bits(want), (labels, col)
        assert part.column("prompt_tokens").to_pylist() == alone.workload.prompt_tok.tolist()
        assert part.column("completed").to_pylist() == alone.completed.tolist()


def test_no_per_request_data_without_the_flag(oracle_result):
    assert not (oracle_result / "per_request").exists()


def test_per_request_on_a_finished_sweep(cli, tmp_path):
    spec = write_spec(
        tmp_path / "s.toml",
        "s",
        {"num_requests": 10, "workload": "chatbot"},
        {"model": ["qwen2.5-1.5b-instruct"], "rate": [2.0, 9.0]},
    )
    out = tmp_path / "out"
    assert cli("sweep", spec, "--out", out, "--no-show", "--quiet").code == 0
    res = cli("sweep", spec, "--out", out, "--per-request", "--no-show", "--quiet")
    if res.code == 0:
        parts = sorted(p.name for p in (out / "per_request").glob("point=*"))
        assert parts == ["point=0", "point=1"]
    else:
        assert_one_error_line(res, "--per-request")


# ---------------------------------------------------------------------------------------------
# show
# ---------------------------------------------------------------------------------------------


def table_rows(text: str) -> list[list[str]]:
    """Body rows of a rich table (lines starting with the vertical bar)."""
    return [
        [c.strip() for c in ln.strip().strip("│").split("│")]
        for ln in text.splitlines()
        if ln.startswith("│")
    ]


def test_show_counts_and_table(cli, monkeypatch, mixed_result):
    monkeypatch.setenv("COLUMNS", "250")
    res = cli("show", mixed_result)
    assert res.code == 0, res.err
    assert "status: ok 4, invalid 2" in res.out or "status: invalid 2, ok 4" in res.out, res.out
    assert "best 4 by ttft_p99_ms (asc)" in res.out
    rows = table_rows(res.out)
    assert len(rows) == 4
    assert "does not divide" in res.out and "do not fit" in res.out.replace("\n", " ")


def test_show_sorts_by_metric(cli, monkeypatch, oracle_result):
    import pandas as pd

    monkeypatch.setenv("COLUMNS", "250")
    res = cli("show", oracle_result / "result.parquet", "--by", "tokens_per_sec", "--top", "3")
    assert res.code == 0, res.err
    assert "status: ok 32" in res.out
    assert "best 3 by tokens_per_sec (desc)" in res.out
    df = pd.read_parquet(oracle_result / "result.parquet")
    best = df.sort_values("tokens_per_sec", ascending=False).head(3)
    want = [
        [str(r[k]) if k != "rate" else f"{r[k]:,.3f}" for k in ORACLE_GRID]
        for _, r in best.iterrows()
    ]
    got = [row[: len(ORACLE_GRID)] for row in table_rows(res.out)]
    assert got == want
    res = cli("show", oracle_result, "--by", "ttft_p99_ms", "--top", "2", "--desc")
    assert res.code == 0, res.err
    assert "best 2 by ttft_p99_ms (desc)" in res.out
    worst = df.sort_values("ttft_p99_ms", ascending=False).head(2)
    got = [row[: len(ORACLE_GRID)] for row in table_rows(res.out)]
    assert got == [
        [str(r[k]) if k != "rate" else f"{r[k]:,.3f}" for k in ORACLE_GRID]
        for _, r in worst.iterrows()
    ]


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--by", "no_such_metric"], ("--by", "no_such_metric", "unknown metric")),
        (["--by", "rate"], ("--by", "rate")),
        (["--by", "status"], ("--by", "status")),
        (["--top", "0"], ("--top",)),
    ],
)
def test_show_bad_options(cli, mixed_result, args, needles):
    assert_one_error_line(cli("show", mixed_result, *args), *needles)


def test_show_not_a_result(cli, tmp_path, mixed_spec):
    assert_one_error_line(cli("show", tmp_path / "nothing"), "not found")
    assert_one_error_line(cli("show", mixed_spec), str(mixed_spec), "parquet")
