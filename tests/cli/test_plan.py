"""``infersweep plan`` and ``infersweep plot`` end to end: the planned max_rate reproduced by
``sweep`` (meets the SLO at max_rate, fails at 1.03 x max_rate), the outputs, the figures and
one clear error (with nothing written) for each bad input."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from infersweep.sweeps.grid import SweepSpec
from infersweep.sweeps.runner import run_sweep
from tests.conftest import assert_one_error_line

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SLO = {"ttft_p99_ms": 200.0, "itl_p99_ms": 40.0}
SPEC = """
[sweep]
name = "tiny"
num_requests = 300
seed = 7

[grid]
model = ["qwen2.5-1.5b-instruct", "llama-3.1-8b-instruct"]
hardware = ["H100", "A100-SXM"]
tp = [1, 2]
workload = ["chatbot", "summarization"]

[slo]
ttft_p99_ms = 200
itl_p99_ms = 40

[plan]
target_rate = 50
"""


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """One plan of the tiny spec, run through the CLI once for the module."""
    from infersweep.sweeps.cli import main

    d = tmp_path_factory.mktemp("plan")
    spec = d / "plan.toml"
    spec.write_text(SPEC)
    out = d / "out"
    try:
        main(["plan", str(spec), "--out", str(out), "-q"])
    except SystemExit as exc:
        assert not exc.code, exc.code
    return d, out


def meets(row: dict) -> bool:
    """The SLO as the issue defines it, written out independently of the planner."""
    if row["status"] != "ok" or row["completed_requests"] != row["injected_requests"]:
        return False
    return all(row[m] is not None and row[m] <= bound for m, bound in SLO.items())


def test_max_rate_is_reproduced_by_sweep(planned, tmp_path):
    _, out = planned
    plan = pq.read_table(out / "plan.parquet").to_pylist()
    assert len(plan) == 16
    found = [r for r in plan if r["max_rate"] is not None]
    assert len(found) >= 8, [(r["status"], r["reason"]) for r in plan]
    for k, r in enumerate(found):
        spec = SweepSpec(name=f"check{k}")
        spec.set_fixed("num_requests", 300)
        spec.set_fixed("seed", 7)
        for axis in ("model", "hardware", "tp", "workload"):
            spec.set_fixed(axis, r[axis])
        spec.add_axis("rate", [r["max_rate"], 1.03 * r["max_rate"]])
        res = run_sweep(spec, tmp_path / f"s{k}")
        at, above = pq.read_table(res.path).to_pylist()
        assert at["rate"] == r["max_rate"]
        assert meets(at), (r, at)
        assert not meets(above), (r, above)
        assert r["max_rate_low"] is None or r["max_rate_low"] <= r["max_rate"] * 1.02
        assert r["max_rate_high"] is None or r["max_rate_high"] >= r["max_rate"] / 1.02


def test_plan_columns_and_dataset(planned):
    from infersweep.sweeps.results import read_dataset

    _, out = planned
    tbl = pq.read_table(out / "plan.parquet")
    names = tbl.column_names
    assert names[:7] == [
        "model",
        "hardware",
        "tp",
        "workload",
        "max_rate",
        "max_rate_low",
        "max_rate_high",
    ]
    for c in (
        "ttft_p99_ms",
        "cost_per_hour",
        "replicas_estimate",
        "replicas_needed",
        "replicas_check",
        "gpus",
        "pareto",
        "status",
        "reason",
    ):
        assert c in names
    assert names.index("ttft_p99_ms") < names.index("cost_per_hour") < names.index("status")
    ds = read_dataset(out)
    assert list(ds.dims) == ["model", "hardware", "tp", "workload"]
    assert ds["max_rate"].attrs["units"] == "1/s"
    assert ds["pareto"].dtype == bool
    rows = tbl.to_pylist()
    for r in rows:
        if r["status"] == "ok":
            # the estimate: ceil(50 / max_rate) replicas of tp GPUs; the fleet: the checked
            # count, at the H100/A100 list price
            assert r["replicas_estimate"] == math.ceil(50 / r["max_rate"])
            assert r["replicas_check"] in ("met", "raised", "lowered"), r["reason"]
            assert r["gpus"] == r["replicas_needed"] * r["tp"]
            assert r["cost_per_hour"] == pytest.approx(r["gpus"] * r["price_per_gpu_hour"])
            assert r["serve_command"].startswith("vllm serve ")
            assert f"--tensor-parallel-size {r['tp']}" in r["serve_command"]
            assert r["saturation"] in ("stable", "backlogged", "overloaded")
        else:
            assert r["max_rate"] is None and r["reason"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert sorted(r["rank"] for r in ok) == list(range(1, len(ok) + 1))
    assert any(r["pareto"] for r in ok)


def test_figures_are_written(planned):
    _, out = planned
    for name in ("pareto.png", "knees.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_plot_command(planned, cli, tmp_path):
    _, out = planned
    fig = tmp_path / "f.png"
    res = cli(
        "plot",
        out,
        "--x",
        "max_rate",
        "--y",
        "ttft_p99_ms",
        "--hue",
        "model",
        "--col",
        "tp",
        "--row",
        "hardware",
        "--out",
        fig,
    )
    assert res.code == 0, res.err
    assert fig.read_bytes().startswith(PNG_MAGIC)
    bad = tmp_path / "g.png"
    res = cli("plot", out, "--x", "max_rate", "--y", "no_such_metric", "--out", bad)
    assert_one_error_line(res, "unknown column", "no_such_metric")
    assert not bad.exists()
    res = cli("plot", out, "--x", "rate", "--y", "ttft_p99_ms", "--out", bad)
    assert_one_error_line(res, "unknown column", "--x")


def test_plot_sweep_result(cli, tmp_path):
    spec = SweepSpec(name="s")
    spec.set_fixed("num_requests", 30)
    spec.add_axis("tp", [1, 2])
    spec.add_axis("rate", [1.0, 4.0])
    spec.set_fixed("model", "qwen2.5-1.5b-instruct")
    res = run_sweep(spec, tmp_path / "s")
    fig = tmp_path / "s.png"
    r = cli("plot", res.path, "--x", "rate", "--y", "ttft_p99_ms", "--hue", "tp", "--out", fig)
    assert r.code == 0, r.err
    assert fig.stat().st_size > 5_000


@pytest.mark.parametrize(
    ("extra", "toml_slo", "needles"),
    [
        ([], "ttft_p99 = 500", ("unknown metric", "slo.ttft_p99")),
        ([], "ttft_p99_ms = 0", ("slo.ttft_p99_ms", "> 0")),
        ([], "ttft_p99_ms = -5", ("slo.ttft_p99_ms", "> 0")),
        (["--axis", "rate=1,2"], "ttft_p99_ms = 500", ("rate",)),
        (["--price", "H999=3"], "ttft_p99_ms = 500", ("unknown GPU", "H999")),
        (["--slo", "itl_p99_ms=abc"], "ttft_p99_ms = 500", ("itl_p99_ms", "number")),
    ],
)
def test_bad_input_one_error_nothing_written(cli, tmp_path, extra, toml_slo, needles):
    spec = tmp_path / "p.toml"
    spec.write_text(
        '[sweep]\nmodel = "qwen2.5-1.5b-instruct"\nnum_requests = 20\n'
        f"[grid]\ntp = [1]\n[slo]\n{toml_slo}\n"
    )
    out = tmp_path / "out"
    res = cli("plan", spec, "--out", out, *extra)
    assert_one_error_line(res, *needles)
    assert not out.exists()


@pytest.mark.parametrize(
    ("slo", "needles"),
    [
        ("ttft_p99=500", ("--slo ttft_p99", "unknown metric")),
        ("itl_p99_ms=-1", ("--slo itl_p99_ms", "> 0")),
    ],
)
def test_bad_slo_flag_is_named_as_the_flag_not_the_spec_file(cli, tmp_path, slo, needles):
    spec = tmp_path / "p.toml"
    spec.write_text(
        '[sweep]\nmodel = "qwen2.5-1.5b-instruct"\nnum_requests = 20\n'
        "[grid]\ntp = [1]\n[slo]\nttft_p99_ms = 500\n"
    )
    res = cli("plan", spec, "--slo", slo, "--out", tmp_path / "out")
    assert_one_error_line(res, *needles)
    assert "p.toml" not in res.err


def test_rate_axis_in_spec_is_rejected(cli, tmp_path):
    spec = tmp_path / "p.toml"
    spec.write_text(
        '[sweep]\nmodel = "qwen2.5-1.5b-instruct"\n[grid]\nrate = [1, 2]\n'
        "[slo]\nttft_p99_ms = 500\n"
    )
    out = tmp_path / "out"
    res = cli("plan", spec, "--out", out)
    assert_one_error_line(res, "grid.rate", "remove the rate")
    assert not out.exists()


def test_python_api_returns_dataset():
    import infersweep

    ds = infersweep.plan(
        {"sweep": {"model": "qwen2.5-1.5b-instruct", "num_requests": 400}, "grid": {"tp": [1, 2]}},
        slo={"ttft_p99_ms": 100},
        target_rate=40,
        prices={"H100": 3.1},
        sensitivity=False,
    )
    assert list(ds.dims) == ["tp"]
    assert (ds["price_per_gpu_hour"].values == 3.1).all()
    mr = ds["max_rate"].values
    assert np.isfinite(mr).all()
    assert np.isnan(ds["max_rate_low"].values).all()
    assert (ds["replicas_estimate"].values == np.ceil(40 / mr)).all()


def test_sweep_reads_a_plan_spec(planned, cli, tmp_path):
    """``sweep PLAN.toml --rate R`` simulates the plan's grid at R ([slo], [plan] ignored)."""
    d, _ = planned
    res = cli(
        "sweep", d / "plan.toml", "--rate", "3.5", "--out", tmp_path / "sw", "--no-show", "-q"
    )
    assert res.code == 0, res.err
    rows = pq.read_table(tmp_path / "sw" / "result.parquet").to_pylist()
    assert len(rows) == 16 and {r["rate"] for r in rows} == {3.5}
