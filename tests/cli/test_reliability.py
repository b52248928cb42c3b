"""Issue 14: no bad input crashes, exhausts memory or passes silently; no result is stale or
mixed.

Each bad input must give exactly one ``error:`` line naming the file, field and value, exit 2,
and no traceback, before any work.  The expected texts are written here by hand from the issue;
nothing is computed by the code under test.  The fault scenarios (a changed input, two writers,
a killed run) compare against a clean run of the current inputs in another folder.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.cli.test_sweep import assert_tables_identical, run_metrics, write_spec
from tests.conftest import REPO, assert_one_error_line

MODEL = "llama-3.1-8b-instruct"
B = ["run", "--model", MODEL, "--hardware", "H100", "--workload", "chatbot"]


def model_dir(tmp_path: Path, name: str, raw: str | None = None, **changes) -> Path:
    """A copy of the embedded llama-3.1-8b config.json with some keys changed (None: removed),
    or with its text ``raw``."""
    cfg = json.loads((REPO / "data" / "models" / MODEL / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(raw if raw is not None else json.dumps(cfg))
    return d


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# bad inputs: one error line each
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "needles"),
    [
        ({"hidden_size": 4100}, ("hidden_size", "4100", "divisible by num_attention_heads")),
        ({"num_key_value_heads": 5}, ("num_key_value_heads", "5", "must divide")),
        ({"num_key_value_heads": 64}, ("num_key_value_heads", "64", "must not exceed")),
        ({"num_key_value_heads": 0}, ("num_key_value_heads", "0", "positive")),
        ({"intermediate_size": "big"}, ("intermediate_size", "'big'", "whole number")),
        ({"num_hidden_layers": 31.5}, ("num_hidden_layers", "31.5", "whole number")),
        ({"num_attention_heads": True}, ("num_attention_heads", "True")),
        ({"hidden_size": None}, ("hidden_size", "missing")),
        ({"vocab_size": -3}, ("vocab_size", "-3")),
    ],
)
def test_model_config_fields(cli, tmp_path, changes, needles):
    d = model_dir(tmp_path, "m", **changes)
    res = cli(*B, "--model-config-folder", d, "--num-requests", "5")
    assert_one_error_line(res, str(d / "config.json"), *needles)


def test_model_config_nan_intermediate(cli, tmp_path):
    text = (REPO / "data" / "models" / MODEL / "config.json").read_text()
    raw = text.replace('"intermediate_size": 14336', '"intermediate_size": NaN')
    assert raw != text
    d = model_dir(tmp_path, "m", raw=raw)
    res = cli(*B, "--model-config-folder", d, "--num-requests", "5")
    assert_one_error_line(res, "config.json", "intermediate_size", "nan")


def test_hardware_unknown_field_suggests(cli, tmp_path):
    hw = write(
        tmp_path / "hw.json",
        json.dumps(
            {
                "_about": "comments are fine",
                "H100": {"TFlopsPeak": 989.5, "BwPeakTBs": 3.35, "TOverheadMicro": 500},
            }
        ),
    )
    res = cli(*B, "--hardware-config", hw, "--num-requests", "5")
    assert_one_error_line(
        res, str(hw), "H100.TOverheadMicro", "500", "did you mean TOverheadMicros"
    )


def test_hardware_comment_keys_accepted(cli, tmp_path):
    hw = write(
        tmp_path / "hw.json",
        json.dumps(
            {
                "_about": "x",
                "H100": {"_note": "y", "TFlopsPeak": 989.5, "BwPeakTBs": 3.35, "MemoryGiB": 80},
            }
        ),
    )
    res = cli(*B, "--hardware-config", hw, "--num-requests", "5")
    assert res.code == 0, res.err
    assert run_metrics(res.out)["status"] == "ok"


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--tp", "3"], ("--tp", "3", "does not divide", "32 attention heads")),
        (["--tp", "1000"], ("--tp", "1000", "does not divide")),
        (["--tp", "0"], ("--tp", "0")),
        (["--rate", "1e-15", "--num-requests", "20"], ("--rate", "1e-15")),
        (["--rate", "1e-12", "--num-requests", "20"], ("--rate", "1e-12")),
        (["--rate", "1e-8", "--num-requests", "20"], ("--rate", "1e-08", "clock")),
        (["--rate", "2e6"], ("--rate",)),
        (["--horizon", "1e300"], ("--horizon", "1e+300")),
        (["--num-requests", "1000000000"], ("--num-requests", "1000000000", "memory", "GiB")),
        (["--num-requests", "0"], ("--num-requests", "0")),
        (["--max-num-scheduled-tokens", "1000000000000"], ("--max-num-scheduled-tokens",)),
        (["--total-kv-blocks", "100000000000"], ("--total-kv-blocks", "memory", "GiB")),
        (
            ["--workload", "distribution", "--prompt-tokens", "1000000000000"],
            ("--prompt-tokens",),
        ),
        (
            ["--workload", "distribution", "--output-tokens-max", "99999999999"],
            ("--output-tokens-max",),
        ),
        (["--arrival", "gamma", "--arrival-cv", "1e-300"], ("--arrival-cv",)),
        (["--log", "loud"], ("--log", "loud")),
    ],
)
def test_run_bad_settings(cli, monkeypatch, args, needles):
    monkeypatch.setenv("INFERSWEEP_MEMORY_LIMIT", "2G")
    t0 = time.perf_counter()
    res = cli(*B, *args)
    assert_one_error_line(res, *needles)
    assert time.perf_counter() - t0 < 30


def test_tp_blis_is_a_warning(cli):
    res = cli(*B, "--tp", "3", "--num-requests", "5", "--semantics", "blis")
    assert res.code == 0, res.err
    assert "warning: TP 3 does not divide" in res.err


@pytest.mark.parametrize(
    ("rows", "needles"),
    [
        ("0,10,5\n1,10,0\n", ("line 3 output_tokens", "0", ">= 1")),
        ("0,10,1000000000\n", ("line 2 output_tokens", "1000000000")),
        ("1e300,10,5\n", ("line 2 arrival_time_s", "1e+300")),
        ("0,99999999999,5\n", ("line 2 prompt_tokens",)),
    ],
)
def test_trace_rows(cli, tmp_path, rows, needles):
    trace = write(tmp_path / "t.csv", "arrival_time_s,prompt_tokens,output_tokens\n" + rows)
    res = cli("run", "--model", MODEL, "--workload", "traces", "--workload-traces-filepath", trace)
    assert_one_error_line(res, str(trace), *needles)


def test_empty_bench_data_needs_v1(cli, tmp_path):
    empty = tmp_path / "bench"
    empty.mkdir()
    res = cli(*B, "--bench-data-path", empty, "--num-requests", "5")
    assert_one_error_line(res, str(empty), "--bench-data-path", "no MFU tables", "--step-model v1")
    res = cli(*B, "--bench-data-path", empty, "--num-requests", "5", "--step-model", "v1")
    assert res.code == 0, res.err


def test_step_time_huge_step(cli):
    t0 = time.perf_counter()
    res = cli("step-time", "--model", MODEL, "--decode", "1000000000x1000000")
    assert_one_error_line(res, "--decode", "1000000000x1000000", "limit")
    assert time.perf_counter() - t0 < 10


def test_step_time_empty_cases(cli, tmp_path):
    cases = write(tmp_path / "c.jsonl", "\n\n")
    res = cli("step-time", "--cases", cases)
    assert_one_error_line(res, str(cases), "no case")


def test_calibrate_empty_fit(cli, tmp_path):
    measured = write(
        tmp_path / "m.csv",
        "arrival_time_s,prompt_tokens,output_tokens,measured_ttft_ms,measured_e2e_ms\n"
        "0.1,10,5,20,80\n0.2,10,5,20,80\n",
    )
    res = cli("calibrate", measured, "--out", tmp_path / "c.json", "--fit", "", "--model", MODEL)
    assert_one_error_line(res, "--fit", "names no field")
    assert not (tmp_path / "c.json").exists()


# ---------------------------------------------------------------------------------------------
# output paths are checked before any simulation runs
# ---------------------------------------------------------------------------------------------


def _no_simulation(monkeypatch):
    import infersweep.api

    def boom(*a, **k):
        raise AssertionError("a simulation ran before the output path was checked")

    monkeypatch.setattr(infersweep.api, "simulate", boom)
    monkeypatch.setattr("infersweep.sweeps.runner.compute_chunk", boom)


def test_run_results_path_checked_first(cli, tmp_path, monkeypatch):
    _no_simulation(monkeypatch)
    blocker = write(tmp_path / "file", "x")
    res = cli(*B, "--results-path", blocker / "r.json")
    assert_one_error_line(res, str(blocker), "--results-path")
    res = cli(*B, "--results-path", tmp_path)  # a folder
    assert_one_error_line(res, str(tmp_path), "--results-path", "folder")


def test_sweep_out_checked_first(cli, tmp_path, monkeypatch):
    _no_simulation(monkeypatch)
    blocker = write(tmp_path / "file", "x")
    res = cli("sweep", "--model", MODEL, "--rate", "1,2", "--out", blocker, "--no-show")
    assert_one_error_line(res, str(blocker), "--out")


def test_calibrate_out_checked_first(cli, tmp_path, monkeypatch):
    _no_simulation(monkeypatch)
    measured = write(
        tmp_path / "m.csv",
        "arrival_time_s,prompt_tokens,output_tokens,measured_ttft_ms,measured_e2e_ms\n"
        "0.1,10,5,20,80\n",
    )
    res = cli("calibrate", measured, "--out", tmp_path, "--model", MODEL)
    assert_one_error_line(res, "--out", "folder")


# ---------------------------------------------------------------------------------------------
# sizes
# ---------------------------------------------------------------------------------------------


def test_huge_grid_needs_yes(cli, tmp_path, monkeypatch):
    _no_simulation(monkeypatch)
    seeds = ",".join(str(i) for i in range(1000))
    rates = ",".join(str(i) for i in range(1, 101))
    nreq = ",".join(str(i) for i in range(1, 101))
    args = ["sweep", "--model", MODEL, "--seed", seeds, "--rate", rates, "--num-requests", nreq]
    res = cli(*args, "--out", tmp_path / "o", "--no-show")
    line = assert_one_error_line(res, "10,000,000 points", "chunk files", "--yes", "1,000,000")
    assert "about" in line  # a time estimate
    assert not (tmp_path / "o").exists()
    small = ["sweep", "--model", MODEL, "--rate", "1,2,3", "--max-points", "2"]
    res = cli(*small, "--out", tmp_path / "o")
    assert_one_error_line(res, "3 points", "limit of 2 points")


def test_sweep_huge_num_requests(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("INFERSWEEP_MEMORY_LIMIT", "2G")
    spec = write_spec(
        tmp_path / "s.toml", "s", {"model": MODEL, "num_requests": 1_000_000_000}, {"rate": [1, 2]}
    )
    res = cli("sweep", spec, "--out", tmp_path / "o", "--no-show")
    assert_one_error_line(res, str(spec), "sweep.num_requests", "1000000000", "memory", "GiB")


def test_memory_error_is_clear(cli, monkeypatch):
    import infersweep.api

    def oom(*a, **k):
        raise MemoryError("Unable to allocate 7.45 GiB")

    monkeypatch.setattr(infersweep.api, "simulate", oom)
    res = cli(*B)
    line = assert_one_error_line(res, "out of memory", "7.45 GiB")
    assert "internal error" not in line


LIMITED = [  # (args, needles): run in a fresh process under a 6 GB address-space limit
    (B + ["--num-requests", "1000000000"], ("--num-requests", "memory")),
    (B + ["--num-requests", "20", "--rate", "1e-15"], ("--rate",)),
    (["step-time", "--model", MODEL, "--decode", "1000000000x1000000"], ("--decode",)),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "needles"), LIMITED)
def test_under_address_space_limit(args, needles):
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (6_000_000 * 1024, 6_000_000 * 1024))

    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "infersweep.sweeps.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
        cwd=REPO,
    )
    assert time.perf_counter() - t0 < 60
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


# ---------------------------------------------------------------------------------------------
# honest empty results
# ---------------------------------------------------------------------------------------------


def test_run_all_dropped_is_unservable(cli, tmp_path):
    out = tmp_path / "r.json"
    res = cli(*B, "--num-requests", "5", "--total-kv-blocks", "2", "--results-path", out)
    assert res.code == 0, res.err
    m = run_metrics(res.out)
    assert m["status"] == "unservable"
    assert m["completed_requests"] == 0 and m["dropped_unservable"] == 5
    for k in ("ttft_p99_ms", "e2e_mean_ms", "itl_p99_ms", "tpot_mean_ms"):
        assert m[k] is None, k
    assert "no request completed" in res.err
    saved = json.loads(out.read_text())
    assert saved["status"] == "unservable" and saved["ttft_p99_ms"] is None


def test_sweep_unservable_point_never_ranked_best(cli, tmp_path):
    spec = write_spec(
        tmp_path / "s.toml",
        "s",
        {"model": MODEL, "workload": "chatbot", "num_requests": 10},
        {"total_kv_blocks": [2, 5000]},
    )
    res = cli("sweep", spec, "--out", tmp_path / "o", "--no-show", "--quiet")
    assert res.code == 0, res.err
    rows = pq.read_table(tmp_path / "o" / "result.parquet").to_pylist()
    assert [r["status"] for r in rows] == ["unservable", "ok"]
    assert rows[0]["ttft_p99_ms"] is None and rows[0]["e2e_mean_ms"] is None
    assert "dropped" in rows[0]["reason"]
    res = cli("show", tmp_path / "o", "--by", "ttft_p99_ms")
    assert res.code == 0, res.err
    assert "unservable 1" in res.out
    best = res.out.split("best", 1)[1]
    assert "5000" in best and "│ 2 " not in best


# ---------------------------------------------------------------------------------------------
# resume only what is valid
# ---------------------------------------------------------------------------------------------

HW = {"H100": {"TFlopsPeak": 989.5, "BwPeakTBs": 3.35, "MemoryGiB": 80}}


def _spec_with_hw(tmp_path: Path, hw_files: list[Path]) -> Path:
    return write_spec(
        tmp_path / "s.toml",
        "s",
        {"model": MODEL, "workload": "chatbot", "num_requests": 40, "step_model": "v2"},
        {"hardware_config": [str(p) for p in hw_files], "rate": [2.0, 8.0, 32.0]},
    )


def _table(path: Path):
    return pq.read_table(path / "result.parquet").replace_schema_metadata(None)


def test_changed_input_recomputes_only_its_chunks(cli, tmp_path):
    a = write(tmp_path / "a.json", json.dumps(HW))
    b = write(tmp_path / "b.json", json.dumps(HW))
    spec = _spec_with_hw(tmp_path, [a, b])
    out = tmp_path / "o"
    res = cli("sweep", spec, "--out", out, "--chunk-size", "3", "--no-show", "--quiet")
    assert res.code == 0, res.err
    before = _table(out)
    changed = {"H100": {**HW["H100"], "TOverheadMicros": 4000}}
    b.write_text(json.dumps(changed))
    res = cli("sweep", spec, "--out", out, "--chunk-size", "3", "--no-show")
    assert res.code == 0, res.err
    assert "b.json" in res.err and "recomputing 1 of 2 chunk(s)" in res.err
    assert "3 simulated, 3 reused" in res.err
    after = _table(out)
    clean = tmp_path / "clean"
    res = cli("sweep", spec, "--out", clean, "--chunk-size", "3", "--no-show", "--quiet")
    assert res.code == 0, res.err
    assert_tables_identical(after, _table(clean), "resumed vs clean")
    # the rows of a.json were kept, the rows of b.json changed
    assert before.slice(0, 3).equals(after.slice(0, 3))
    assert before.column("ttft_p99_ms")[3:] != after.column("ttft_p99_ms")[3:]
    # unchanged inputs: everything reused
    res = cli("sweep", spec, "--out", out, "--chunk-size", "3", "--no-show")
    assert "0 simulated, 6 reused" in res.err


def _sweep_proc(spec: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "infersweep.sweeps.cli", "sweep", str(spec), "--out", str(out)]
        + ["--no-show", "--quiet", "--threads", "1", *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(pred, timeout: float = 120) -> None:
    t0 = time.time()
    while not pred():
        if time.time() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.05)


def _slow_spec(tmp_path: Path, hw: Path, name: str = "slow", n: int = 10000) -> Path:
    """24 points of about 0.2 s each (n requests)."""
    return write_spec(
        tmp_path / f"{name}.toml",
        name,
        {"model": MODEL, "workload": "chatbot", "num_requests": n, "hardware_config": str(hw)},
        {"rate": [float(r) for r in range(1, 25)]},
    )


@pytest.mark.slow
def test_kill_and_resume_with_changed_input(cli, tmp_path):
    hw = write(tmp_path / "hw.json", json.dumps(HW))
    spec = _slow_spec(tmp_path, hw)
    out = tmp_path / "o"
    proc = _sweep_proc(spec, out, "--chunk-size", "2")
    _wait_for(lambda: len(list((out / "chunks").glob("chunk-*.parquet"))) >= 2)
    proc.kill()
    proc.communicate()
    assert not (out / "result.parquet").exists()
    hw.write_text(json.dumps({"H100": {**HW["H100"], "TOverheadMicros": 2500}}))
    res = cli("sweep", spec, "--out", out, "--chunk-size", "2", "--no-show")
    assert res.code == 0, res.err
    assert "hw.json" in res.err
    clean = tmp_path / "clean"
    res = cli("sweep", spec, "--out", clean, "--chunk-size", "2", "--no-show", "--quiet")
    assert_tables_identical(_table(out), _table(clean), "killed, changed, resumed vs clean")


# ---------------------------------------------------------------------------------------------
# one writer per result folder
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_second_writer_refused_and_first_result_clean(cli, tmp_path):
    hw = write(tmp_path / "hw.json", json.dumps(HW))
    spec = _slow_spec(tmp_path, hw)
    other = write_spec(
        tmp_path / "other.toml", "other", {"model": MODEL, "num_requests": 20}, {"rate": [1, 2]}
    )
    out = tmp_path / "o"
    proc = _sweep_proc(spec, out, "--chunk-size", "2")
    _wait_for(lambda: (out / "chunks").is_dir())
    for args in ([other, "--force"], [spec], [spec, "--force"]):
        res = cli("sweep", *args, "--out", out, "--no-show")
        assert_one_error_line(res, str(out), "in use by another sweep", "process")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    clean = tmp_path / "clean"
    res = cli("sweep", spec, "--out", clean, "--chunk-size", "2", "--no-show", "--quiet")
    assert_tables_identical(_table(out), _table(clean), "first writer vs clean")
    meta = json.loads(pq.read_schema(out / "result.parquet").metadata[b"infersweep"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert meta["attrs"]["spec_digest"] == manifest["spec_digest"]


def test_stray_temporary_files_cleaned(cli, tmp_path):
    """A run killed in the final merge or while writing a chunk leaves temporary files; the next
    run (holding the lock, so they cannot be another writer's) removes them."""
    spec = write_spec(tmp_path / "s.toml", "s", {"model": MODEL, "num_requests": 20}, {"rate": [1]})
    out = tmp_path / "o"
    res = cli("sweep", spec, "--out", out, "--no-show", "--quiet")
    assert res.code == 0, res.err
    (out / "chunks").mkdir()
    strays = [
        out / ".result.parquet.tmp-12345",
        out / ".write-test",
        out / "chunks" / ".chunk-0000000.parquet.x1y2.tmp",
    ]
    for p in strays:
        p.write_bytes(b"half")
    res = cli("sweep", spec, "--out", out, "--no-show", "--quiet")
    assert res.code == 0, res.err
    assert not any(p.exists() for p in strays)
    assert not (out / "chunks").exists()  # left by a kill between the rename and the clean-up
    res = cli("sweep", spec, "--out", out, "--no-show", "--quiet", "--force")
    assert res.code == 0, res.err
    assert sorted(p.name for p in out.iterdir()) == [".lock", "manifest.json", "result.parquet"]


# ---------------------------------------------------------------------------------------------
# a real Dask cluster on localhost: separate scheduler and worker processes
# ---------------------------------------------------------------------------------------------


def _dask_cli(*args: str) -> list[str]:
    exe = Path(sys.executable).parent / "dask"
    return (
        [str(exe), *args]
        if exe.exists()
        else [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]]
    )


@pytest.mark.slow
def test_dask_cluster_processes_and_a_killed_worker(cli, tmp_path):
    pytest.importorskip("distributed")
    sched_file = tmp_path / "scheduler.json"
    env = dict(os.environ)
    procs = []
    try:
        procs.append(
            subprocess.Popen(
                _dask_cli(
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--no-dashboard",
                    "--scheduler-file",
                    str(sched_file),
                ),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait_for(lambda: sched_file.exists() and sched_file.stat().st_size > 0, 60)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        workers = []
        for _ in range(2):
            w = subprocess.Popen(
                _dask_cli(
                    "worker",
                    address,
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--no-dashboard",
                    "--no-nanny",
                ),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            workers.append(w)
            procs.append(w)
        from distributed import Client

        with Client(address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=60)

        hw = write(tmp_path / "hw.json", json.dumps(HW))
        spec = _slow_spec(tmp_path, hw, "dask", n=20000)
        # 1. the same bytes as a local run
        res = cli("sweep", spec, "--out", tmp_path / "d1", "--dask-scheduler", address)
        assert res.code == 0, res.err
        res = cli("sweep", spec, "--out", tmp_path / "local", "--threads", "1", "--no-show", "-q")
        assert res.code == 0, res.err
        local = _table(tmp_path / "local")
        assert_tables_identical(_table(tmp_path / "d1"), local, "dask cluster vs local")
        # 2. one worker killed mid-sweep: the scheduler reruns its chunks on the other
        out = tmp_path / "d2"
        proc = subprocess.Popen(
            [sys.executable, "-m", "infersweep.sweeps.cli", "sweep", str(spec), "--out", str(out)]
            + ["--no-show", "--quiet", "--chunk-size", "1", "--dask-scheduler", address],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_for(lambda: len(list((out / "chunks").glob("chunk-*.parquet"))) >= 2, 120)
        workers[0].kill()
        workers[0].wait()
        assert not (out / "result.parquet").exists()  # the kill came mid-sweep
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert_tables_identical(_table(out), local, "dask with a killed worker vs local")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)


def test_damaged_result_and_chunk_files_recomputed(cli, tmp_path):
    spec = write_spec(
        tmp_path / "s.toml", "s", {"model": MODEL, "num_requests": 20}, {"rate": [1, 2, 4, 8]}
    )
    clean = tmp_path / "clean"
    res = cli("sweep", spec, "--out", clean, "--chunk-size", "2", "--no-show", "--quiet")
    assert res.code == 0, res.err
    out = tmp_path / "o"
    shutil.copytree(clean, out)
    (out / "result.parquet").write_bytes(b"garbage")
    res = cli("sweep", spec, "--out", out, "--chunk-size", "2", "--no-show")
    assert res.code == 0, res.err
    assert "unreadable" in res.err
    assert_tables_identical(_table(out), _table(clean), "damaged result recomputed")
    (out / "result.parquet").unlink()
    (out / "chunks").mkdir()
    (out / "chunks" / "chunk-0000001.parquet").write_bytes(b"PAR1 truncated")
    res = cli("sweep", spec, "--out", out, "--chunk-size", "2", "--no-show")
    assert res.code == 0, res.err
    assert "chunk-0000001.parquet was unreadable" in res.err
    assert_tables_identical(_table(out), _table(clean), "damaged chunk recomputed")


@pytest.mark.parametrize(
    "cluster",
    [["--replicas", "64"], ["--prefill-instances", "32", "--decode-instances", "32"]],
    ids=["replicas", "pd"],
)
def test_cluster_pools_are_counted_per_instance(cli, monkeypatch, cluster):
    """One pool of 2,000,000 blocks (48 B each, about 92 MiB) fits a 1 GiB budget; 64 of
    them (about 5.7 GiB) do not, and the error says so before any work starts."""
    monkeypatch.setenv("INFERSWEEP_MEMORY_LIMIT", "1G")
    common = (*B, "--num-requests", "50", "--total-kv-blocks", "2000000")
    assert cli(*common).code == 0
    t0 = time.perf_counter()
    res = cli(*common, *cluster)
    assert_one_error_line(res, "--total-kv-blocks", "64 instances", "memory")
    assert time.perf_counter() - t0 < 30
