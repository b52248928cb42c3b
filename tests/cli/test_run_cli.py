"""`run` through the console entry point: the seed command, outputs, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import SEED_FLAGS, make_seed_dir, need_reference, run_subprocess


def metrics_of(stdout: str) -> dict:
    """The JSON object after the `=== Simulation Metrics ===` line."""
    lines = stdout.splitlines()
    start = lines.index("=== Simulation Metrics ===") + 1
    end = lines.index("}", start)
    return json.loads("\n".join(lines[start : end + 1]))


@pytest.fixture
def seed_dir(tmp_path: Path, monkeypatch) -> Path:
    """A folder laid out like the seed document's working directory."""
    make_seed_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_seed_command_verbatim(seed_dir, cli):
    res = cli("run", *SEED_FLAGS)
    assert res.code == 0, res.err
    m = metrics_of(res.out)
    keys = list(m)
    # the reference's keys first, in its order
    assert keys[:5] == [
        "instance_id",
        "completed_requests",
        "still_queued",
        "still_running",
        "injected_requests",
    ]
    assert (
        keys.index("scheduling_delay_p99_ms")
        < keys.index("preemption_count")
        < keys.index("dropped_unservable")
        < keys.index("ttft_p50_ms")
    )
    assert m["completed_requests"] == 100 and m["injected_requests"] == 100
    assert 0 < m["ttft_mean_ms"] < m["e2e_mean_ms"]
    assert m["ttft_p50_ms"] <= m["ttft_p90_ms"] <= m["ttft_p95_ms"] <= m["ttft_p99_ms"]


def test_seed_command_as_simulation_worker_process(seed_dir):
    exe = Path(__import__("sys").executable).parent / "simulation_worker"
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    import subprocess

    proc = subprocess.run(
        [str(exe), "run", *SEED_FLAGS], capture_output=True, text=True, cwd=seed_dir, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert metrics_of(proc.stdout)["completed_requests"] == 100


def test_embedded_data_needs_no_files(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    res = cli(
        "run",
        "--model",
        "llama-3.1-8b-instruct",
        "--hardware",
        "H100",
        "--tp",
        "1",
        "--workload",
        "chatbot",
        "--num-requests",
        "20",
    )
    assert res.code == 0, res.err
    assert metrics_of(res.out)["completed_requests"] == 20


def test_results_path_json_and_parquet(tmp_path, cli):
    js = tmp_path / "out" / "r.json"
    res = cli(
        "run",
        "--model",
        "llama-3.1-8b-instruct",
        "--workload",
        "chatbot",
        "--num-requests",
        "30",
        "--rate",
        "5",
        "--results-path",
        js,
    )
    assert res.code == 0, res.err
    doc = json.loads(js.read_text())
    assert doc["completed_requests"] == 30 and len(doc["requests"]) == 30
    rec = doc["requests"][0]
    assert list(rec) == [
        "arrived_at",
        "requestID",
        "num_prefill_tokens",
        "num_decode_tokens",
        "ttft_ms",
        "itl_ms",
        "e2e_ms",
        "scheduling_delay_ms",
        "handled_by",
    ]
    arrivals = [r["arrived_at"] for r in doc["requests"]]
    assert arrivals == sorted(arrivals)
    # the stdout metrics equal the file's
    printed = metrics_of(res.out)
    for k, v in printed.items():
        assert doc[k] == v
    pq_path = tmp_path / "r.parquet"
    res = cli(
        "run",
        "--model",
        "llama-3.1-8b-instruct",
        "--workload",
        "chatbot",
        "--num-requests",
        "30",
        "--rate",
        "5",
        "--results-path",
        pq_path,
    )
    assert res.code == 0, res.err
    tbl = pq.read_table(pq_path)
    assert tbl.num_rows == 30
    assert {"request_id", "arrival_s", "ttft_ms", "e2e_ms"} <= set(tbl.column_names)
    assert [round(x, 3) for x in tbl.column("ttft_ms").to_pylist()] == [
        round(r["ttft_ms"], 3) for r in doc["requests"]
    ]


@pytest.mark.parametrize("scenario", ["chatbot_tp1_seedlike", "chunked_prefill_lpt256_rate20"])
def test_reference_replay_stdout_lines(scenario, cli):
    """The metrics block printed by `run --semantics blis` on a recorded trace carries the
    reference's lines, in order, verbatim."""
    d = need_reference("e2e", scenario)
    flags = []
    cmd = (d / "cmd.txt").read_text()
    if "--long-prefill-token-threshold 256" in cmd:
        flags = ["--long-prefill-token-threshold", "256"]
    res = cli(
        "run",
        "--model",
        "meta-llama/llama-3.1-8b-instruct",
        "--hardware-config",
        "minimal",
        "--hardware",
        "H100",
        "--tp",
        "1",
        "--semantics",
        "blis",
        "--workload",
        "traces",
        "--workload-traces-filepath",
        d / "trace.csv",
        *flags,
    )
    assert res.code == 0, res.err
    ref = (d / "stdout.txt").read_text().splitlines()
    mine = res.out.splitlines()
    # every line of the reference up to its last key, then our additional keys
    assert [x.rstrip(",") for x in mine[: len(ref) - 1]] == [x.rstrip(",") for x in ref[:-1]]


def test_prompt_longer_than_cache_is_dropped_and_counted(tmp_path, cli):
    trace = tmp_path / "t.csv"
    trace.write_text(
        "arrival_time_s,prompt_tokens,output_tokens\n0.1,100,10\n0.2,5000,10\n0.3,100,10\n"
    )
    for sem in ("vllm", "blis"):
        res = cli(
            "run",
            "--model",
            "llama-3.1-8b-instruct",
            "--workload",
            "traces",
            "--workload-traces-filepath",
            trace,
            "--total-kv-blocks",
            "64",
            "--semantics",
            sem,
        )
        assert res.code == 0, res.err
        m = metrics_of(res.out)
        assert m["dropped_unservable"] == 1
        assert m["completed_requests"] == 2
        assert m["injected_requests"] == 3
        assert "Dropped Unservable: 1" in res.out


def _one_error_line(res):
    assert res.code != 0
    assert "Traceback" not in res.err
    lines = [x for x in res.err.splitlines() if x.strip()]
    assert len(lines) == 1, res.err
    assert lines[0].startswith("error:")
    return lines[0]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--workload", "nosuch"], "nosuch"),
        (["--rate", "-1"], "--rate"),
        (["--rate", "nan"], "--rate"),
        (["--num-requests", "0"], "--num-requests"),
        (
            ["--workload", "distribution", "--prompt-tokens-min", "600", "--prompt-tokens", "500"],
            "--prompt-tokens-min",
        ),
        (
            ["--workload", "distribution", "--output-tokens-max", "10", "--output-tokens", "500"],
            "--output-tokens-max",
        ),
        (["--tp", "0"], "--tp"),
        (["--hardware", "Z9000"], "Z9000"),
        (["--semantics", "sglang"], "sglang"),
        (["--total-kv-blocks", "lots"], "--total-kv-blocks"),
        (["--max-num-scheduled-tokens", "0"], "--max-num-scheduled-tokens"),
        (["--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
        (["--model", "no-such-model"], "no-such-model"),
        (["--log", "loud"], "--log"),
    ],
)
def test_bad_inputs(args, needle, cli):
    base = {"--model": "llama-3.1-8b-instruct", "--workload": "chatbot"}
    flags = []
    given = set(args[::2])
    for k, v in base.items():
        if k not in given:
            flags += [k, v]
    res = cli("run", *flags, *args)
    line = _one_error_line(res)
    assert needle in line


@pytest.mark.parametrize(
    "content, needle",
    [
        ("", "empty"),
        ("arrival_time_s,prompt_tokens,output_tokens\n", "no requests"),
        ("arrival_time_s,prompt_tokens\n0.1,5\n", "output_tokens"),
        ("arrival_time_s,prompt_tokens,output_tokens\n0.1,abc,5\n", "abc"),
        ("arrival_time_s,prompt_tokens,output_tokens\n-0.1,5,5\n", "arrival_time_s"),
        ("arrival_time_s,prompt_tokens,output_tokens\n0.1,0,5\n", "prompt_tokens"),
    ],
)
def test_bad_traces(tmp_path, content, needle, cli):
    trace = tmp_path / "trace.csv"
    trace.write_text(content)
    res = cli(
        "run",
        "--model",
        "llama-3.1-8b-instruct",
        "--workload",
        "traces",
        "--workload-traces-filepath",
        trace,
    )
    line = _one_error_line(res)
    assert needle in line and "trace.csv" in line


def test_missing_trace_file(tmp_path, cli):
    res = cli(
        "run",
        "--model",
        "llama-3.1-8b-instruct",
        "--workload",
        "traces",
        "--workload-traces-filepath",
        tmp_path / "none.csv",
    )
    assert "none.csv" in _one_error_line(res)


def test_traces_without_a_path(cli):
    res = cli("run", "--model", "llama-3.1-8b-instruct", "--workload", "traces")
    assert "--workload-traces-filepath" in _one_error_line(res)


def test_unknown_option_is_one_line(cli):
    res = cli("run", "--model", "llama-3.1-8b-instruct", "--no-such-flag", "3")
    assert "--no-such-flag" in _one_error_line(res)


def test_verbose_shows_the_traceback():
    proc = run_subprocess("run", "--model", "llama-3.1-8b-instruct", "--rate", "-1", "--verbose")
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def test_help_is_fast_and_lists_run():
    proc = run_subprocess("--help", timeout=60)
    assert proc.returncode == 0
    assert "run" in proc.stdout and "sweep" in proc.stdout and "step-time" in proc.stdout


def test_cluster_run_json_has_instances(tmp_path, cli):
    js = tmp_path / "r.json"
    res = cli(
        "run", "--model", "llama-3.1-8b-instruct", "--workload", "chatbot", "--num-requests",
        "60", "--rate", "12", "--replicas", "3", "--router", "least-outstanding",
        "--snapshot-interval", "20", "--results-path", js,
    )  # fmt: skip
    assert res.code == 0, res.err
    m = metrics_of(res.out)
    assert [i["instance_id"] for i in m["instances"]] == ["instance_0", "instance_1", "instance_2"]
    assert sum(i["requests"] for i in m["instances"]) == 60
    assert m["load_imbalance"] >= 1.0
    doc = json.loads(js.read_text())
    handled = {r["handled_by"] for r in doc["requests"]}
    assert handled == {"instance_0", "instance_1", "instance_2"}
    assert len(doc["instances"]) == 3


def test_cluster_with_blis_is_one_error_line(cli):
    res = cli("run", "--model", "llama-3.1-8b-instruct", "--workload", "chatbot",
              "--semantics", "blis", "--replicas", "2")  # fmt: skip
    assert "--replicas" in _one_error_line(res)


def test_sweep_over_replicas_and_routers(tmp_path, cli):
    out = tmp_path / "sw"
    res = cli(
        "sweep", "--model", "llama-3.1-8b-instruct", "--workload", "chatbot", "--num-requests",
        "200", "--rate", "16", "--replicas", "1,2,4", "--router", "round-robin,random",
        "--out", out, "--yes", "--no-show",
    )  # fmt: skip
    assert res.code == 0, res.err
    rows = pq.read_table(out / "result.parquet").to_pylist()
    assert len(rows) == 6
    for r in rows:
        assert r["completed_requests"] == 200
        if r["replicas"] == 1 or r["router"] == "round-robin":
            assert r["load_imbalance"] == 1.0
        else:
            assert r["load_imbalance"] > 1.0
