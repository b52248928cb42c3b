"""Clusters in sweeps and plans (issue 12, items 4 and 5): the per-instance table
``instances.parquet`` (one row per instance of every simulated point, atomic, resumable
without duplicates) and ``plan --target-rate`` checking its replica estimate by simulating the
cluster, each checked against independent runs of ``infersweep.simulate``."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest

import infersweep
from infersweep.sweeps.grid import SweepSpec
from infersweep.sweeps.runner import run_sweep

MODEL = "llama-3.1-8b-instruct"
N_REQ = 60


def cluster_spec(name: str = "cl") -> SweepSpec:
    spec = SweepSpec(name=name)
    spec.set_fixed("model", MODEL)
    spec.set_fixed("workload", "chatbot")
    spec.set_fixed("num_requests", N_REQ)
    spec.add_axis("rate", [5.0, 40.0])
    spec.add_axis("replicas", [1, 3, 4])
    spec.add_axis("router", ["round-robin", "least-outstanding"])
    return spec


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("cl") / "out"
    run_sweep(cluster_spec(), out, chunk_size=5)
    return out


# --------------------------------------------------------------------------------------------
# instances.parquet
# --------------------------------------------------------------------------------------------


def test_one_row_per_instance_of_every_point(swept):
    inst = pq.read_table(swept / "instances.parquet").to_pylist()
    res = pq.read_table(swept / "result.parquet").to_pylist()
    assert len(res) == 12
    assert len(inst) == sum(r["replicas"] for r in res) == 2 * 2 * (1 + 3 + 4)
    keys = [(r["point"], r["instance"]) for r in inst]
    assert keys == sorted(set(keys))  # no duplicates, in point and instance order
    for p, r in enumerate(res):
        rows = [x for x in inst if x["point"] == p]
        assert [x["instance"] for x in rows] == list(range(r["replicas"]))
        for x in rows:  # keyed by the point's coordinates
            assert (x["rate"], x["replicas"], x["router"]) == (
                r["rate"],
                r["replicas"],
                r["router"],
            )
        reqs = [x["requests"] for x in rows]
        assert sum(reqs) == N_REQ
        assert sum(x["completed_requests"] for x in rows) == r["completed_requests"]
        assert sum(x["total_output_tokens"] for x in rows) == r["total_output_tokens"]
        assert max(x["kv_peak_blocks"] for x in rows) == r["kv_peak_blocks"]
        assert r["load_imbalance"] == pytest.approx(max(reqs) / (N_REQ / r["replicas"]))
        if r["router"] == "round-robin":  # request i goes to instance i mod N
            assert reqs == [len(range(i, N_REQ, r["replicas"])) for i in range(r["replicas"])]
        for x in rows:
            assert 0 <= x["utilization"] <= 1 and 0 <= x["cache_hit_rate"] <= 1
            assert x["kv_peak_fraction"] == pytest.approx(
                x["kv_peak_blocks"] / r["kv_blocks_total"]
            )


def test_instances_match_simulate(swept):
    """A cluster point's rows equal ``simulate``'s per-instance metrics of the same settings."""
    inst = pq.read_table(swept / "instances.parquet").to_pylist()
    rows = [x for x in inst if x["rate"] == 40.0 and x["replicas"] == 3]
    rows = [x for x in rows if x["router"] == "least-outstanding"]
    res = infersweep.simulate(
        model=MODEL,
        workload="chatbot",
        num_requests=N_REQ,
        rate=40.0,
        replicas=3,
        router="least-outstanding",
    )
    ref = res.summary["instances"]
    assert len(rows) == len(ref) == 3
    for x, y in zip(rows, ref):
        for k in ("requests", "completed_requests", "preemption_count", "kv_peak_blocks", "steps"):
            assert x[k] == y[k]
        assert x["utilization"] == pytest.approx(y["utilization"], rel=1e-12)
        assert x["cache_hit_rate"] == pytest.approx(y["cache_hit_rate"], rel=1e-12)


def test_read_instances_dataset(swept):
    from infersweep.sweeps.results import read_instances

    ds = read_instances(swept)
    assert list(ds.dims) == ["rate", "replicas", "router", "instance"]
    assert ds.sizes["instance"] == 4
    req = ds["requests"]
    assert np.isnan(req.sel(replicas=1, instance=[1, 2, 3])).all()  # one instance
    assert (req.sel(replicas=4).sum("instance") == N_REQ).all()
    assert ds["utilization"].attrs["units"] == "1"


def test_resume_writes_no_duplicates(tmp_path, monkeypatch):
    """Killed after two chunks, the rerun computes the rest; instances.parquet is the same as
    a run in one go (no row twice).  A missing instances.parquet is recomputed."""
    import infersweep.sweeps.runner as runner

    fresh = tmp_path / "fresh"
    run_sweep(cluster_spec(), fresh, chunk_size=2)
    want = pq.read_table(fresh / "instances.parquet").to_pylist()

    real = runner.compute_chunk
    calls = []

    def dies_on_third(*a, **k):
        calls.append(a[1])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    out = tmp_path / "resumed"
    monkeypatch.setattr(runner, "compute_chunk", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cluster_spec(), out, chunk_size=2)
    assert not (out / "instances.parquet").exists()
    assert len(list((out / "chunks").glob("inst-*.parquet"))) == 2
    monkeypatch.setattr(runner, "compute_chunk", real)
    done = run_sweep(cluster_spec(), out, chunk_size=2)
    assert done.skipped == 4 and done.computed == 8
    assert pq.read_table(out / "instances.parquet").to_pylist() == want
    assert not (out / "chunks").exists()

    (out / "instances.parquet").unlink()
    notes: list[str] = []
    run_sweep(cluster_spec(), out, chunk_size=2, notes=notes)
    assert any("instances.parquet" in n for n in notes)
    assert pq.read_table(out / "instances.parquet").to_pylist() == want


def test_changed_input_keeps_the_other_chunks_instances(tmp_path):
    """A hardware file changed: its chunk is recomputed, the other chunk's per-instance rows
    are split out of instances.parquet and kept; the merged file equals a clean run's."""
    import json

    hw = {"H100": {"TFlopsPeak": 989.5, "BwPeakTBs": 3.35, "MemoryGiB": 80}}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(hw))
    b.write_text(json.dumps(hw))

    def spec() -> SweepSpec:
        sp = SweepSpec(name="hw")
        for k, v in (("model", MODEL), ("num_requests", 30), ("step_model", "v2")):
            sp.set_fixed(k, v)
        sp.add_axis("hardware_config", [str(a), str(b)])
        sp.add_axis("replicas", [1, 2])
        sp.add_axis("rate", [30.0])
        return sp

    out = tmp_path / "o"
    run_sweep(spec(), out, chunk_size=2)
    before = pq.read_table(out / "instances.parquet").to_pylist()
    b.write_text(json.dumps({"H100": {**hw["H100"], "TOverheadMicros": 4000}}))
    done = run_sweep(spec(), out, chunk_size=2)
    assert done.computed == 2 and done.skipped == 2
    after = pq.read_table(out / "instances.parquet").to_pylist()
    run_sweep(spec(), tmp_path / "clean", chunk_size=2)
    assert after == pq.read_table(tmp_path / "clean" / "instances.parquet").to_pylist()
    assert len(after) == 6
    assert [r for r in after if r["point"] < 2] == [r for r in before if r["point"] < 2]
    assert [r for r in after if r["point"] >= 2] != [r for r in before if r["point"] >= 2]


def test_no_instances_file_without_clusters(tmp_path):
    spec = SweepSpec(name="single")
    spec.set_fixed("model", MODEL)
    spec.set_fixed("num_requests", 20)
    spec.add_axis("rate", [1.0, 2.0])
    spec.add_axis("replicas", [1])
    run_sweep(spec, tmp_path / "s")
    assert (tmp_path / "s" / "result.parquet").exists()
    assert not (tmp_path / "s" / "instances.parquet").exists()


def test_show_lists_instances(swept, cli):
    res = cli("show", swept, "--top", "2", "--instances")
    assert res.code == 0, res.err
    assert "load_imbalance" in res.out and "per instance" in res.out


# --------------------------------------------------------------------------------------------
# plan: the replica count for a target rate, checked by simulation
# --------------------------------------------------------------------------------------------

PLAN_SETTINGS = {
    "model": MODEL,
    "workload": "chatbot",
    "prefix_tokens": 1024,  # every request shares a 1,024-token prefix
    "num_requests": 200,
    "seed": 3,
}
TARGET = 300.0
SLO = {"ttft_p99_ms": 200.0}


def meets(summary: dict, slo: dict) -> bool:
    """The SLO written out independently of the planner."""
    if summary["status"] != "ok" or summary["completed_requests"] != summary["injected_requests"]:
        return False
    return all(summary[m] is not None and summary[m] <= b for m, b in slo.items())


def sim(router: str, replicas: int, n_requests: int) -> dict:
    s = dict(PLAN_SETTINGS, num_requests=n_requests)
    return infersweep.simulate(**s, rate=TARGET, replicas=replicas, router=router).summary


@pytest.fixture(scope="module")
def planned_clusters():
    return infersweep.plan(
        {"sweep": PLAN_SETTINGS, "grid": {"router": ["round-robin", "random", "prefix-affinity"]}},
        slo=SLO,
        target_rate=TARGET,
        sensitivity=False,
    )


def test_checked_replicas_meet_the_slo_and_one_fewer_does_not(planned_clusters):
    ds = planned_clusters
    outcomes = []
    for k, router in enumerate(ds["router"].values.tolist()):
        mr = float(ds["max_rate"].values[k])
        est = int(ds["replicas_estimate"].values[k])
        need = int(ds["replicas_needed"].values[k])
        assert est == math.ceil(TARGET / mr)  # perfect balance of single instances
        outcomes.append(str(ds["replicas_check"].values[k]))
        assert outcomes[-1] == ("met" if need == est else "raised" if need > est else "lowered")
        # each instance gets as many requests as the max_rate search's runs had
        n_req = int(ds["replicas_check_requests"].values[k])
        assert n_req == PLAN_SETTINGS["num_requests"] * need
        checked = sim(router, need, n_req)
        assert meets(checked, SLO), router
        margin = float(ds["replicas_check_margin"].values[k])
        assert margin == checked["ttft_p99_ms"] / SLO["ttft_p99_ms"]  # the same run, bit for bit
        if need > 1:
            fewer = need - 1
            assert not meets(sim(router, fewer, PLAN_SETTINGS["num_requests"] * fewer), SLO)
        assert ds["gpus"].values[k] == need
        assert f"# {need} replica" in str(ds["serve_command"].values[k])
    # random routing leaves one instance busier than perfect balance assumes
    assert outcomes[1] == "raised", outcomes


def test_a_cluster_that_never_meets_the_slo_says_so():
    """A single instance has load imbalance 1; random routing over 2+ instances never does, so
    no cluster size meets ``load_imbalance <= 1``: unmet, with no replica count, cost or rank."""
    ds = infersweep.plan(
        {"sweep": dict(PLAN_SETTINGS, router="random"), "grid": {"tp": [1]}},
        slo={"ttft_p99_ms": 200.0, "load_imbalance": 1.0},
        target_rate=TARGET,
        sensitivity=False,
    )
    assert str(ds["status"].values[0]) == "ok"  # max_rate exists (one instance)
    est = int(ds["replicas_estimate"].values[0])
    assert est >= 2
    assert str(ds["replicas_check"].values[0]) == "unmet"
    for c in ("replicas_needed", "gpus", "cost_per_hour", "rank"):
        assert np.isnan(ds[c].values[0]), c
    assert ds["replicas_check_margin"].values[0] > 1
    reason = str(ds["reason"].values[0])
    assert "no cluster of" in reason and "load_imbalance" in reason
    top = int(reason.split(" to ")[1].split()[0])
    assert top == max(4 * est, est + 8)


def test_large_clusters_are_checked_as_a_slice_at_the_same_rate_per_instance(monkeypatch):
    """Above CHECK_MAX_INSTANCES instances the check simulates that many at the target rate
    times k/n; the stored margin is that slice's run, reproduced here with simulate()."""
    from infersweep.sweeps import plan as plan_mod

    monkeypatch.setattr(plan_mod, "CHECK_MAX_INSTANCES", 2)
    ds = infersweep.plan(
        {"sweep": dict(PLAN_SETTINGS, router="round-robin"), "grid": {"tp": [1]}},
        slo=SLO,
        target_rate=3 * TARGET,
        sensitivity=False,
    )
    need = int(ds["replicas_needed"].values[0])
    assert need > 2  # the check ran on slices
    n_req = int(ds["replicas_check_requests"].values[0])
    assert n_req == PLAN_SETTINGS["num_requests"] * 2
    s = dict(PLAN_SETTINGS, num_requests=n_req, router="round-robin")
    slice_run = infersweep.simulate(**s, rate=3 * TARGET * 2 / need, replicas=2).summary
    assert meets(slice_run, SLO)
    margin = float(ds["replicas_check_margin"].values[0])
    assert margin == slice_run["ttft_p99_ms"] / SLO["ttft_p99_ms"]
    fewer = infersweep.simulate(**s, rate=3 * TARGET * 2 / (need - 1), replicas=2).summary
    assert not meets(fewer, SLO)


def test_no_check_keeps_the_estimate():
    ds = infersweep.plan(
        {"sweep": PLAN_SETTINGS, "grid": {"router": ["random"]}},
        slo=SLO,
        target_rate=TARGET,
        sensitivity=False,
        check_replicas=False,
    )
    assert str(ds["replicas_check"].values[0]) == "unchecked"
    assert ds["replicas_needed"].values[0] == ds["replicas_estimate"].values[0]
    assert np.isnan(ds["replicas_check_requests"].values[0])


def test_replicas_and_router_as_plan_axes(cli, tmp_path):
    """A cluster configuration is searched as a whole: its max_rate is the cluster's, the
    estimate counts its instances, goodput per GPU divides by all its GPUs."""
    out = tmp_path / "p"
    res = cli(
        "plan",
        "--set",
        f"model={MODEL}",
        "--set",
        "workload=chatbot",
        "--set",
        "num_requests=200",
        "--axis",
        "replicas=1,2",
        "--axis",
        "router=round-robin,least-outstanding",
        "--slo",
        "ttft_p99_ms=200",
        "--target-rate",
        "300",
        "--no-band",
        "--no-plots",
        "--out",
        out,
        "-q",
    )
    assert res.code == 0, res.err
    rows = pq.read_table(out / "plan.parquet").to_pylist()
    assert [(r["replicas"], r["router"]) for r in rows] == [
        (1, "round-robin"),
        (1, "least-outstanding"),
        (2, "round-robin"),
        (2, "least-outstanding"),
    ]
    for r in rows:
        assert r["status"] == "ok", r["reason"]
        assert r["replicas_estimate"] == math.ceil(300 * r["replicas"] / r["max_rate"])
        per_req = r["total_output_tokens"] / r["completed_requests"]
        assert r["goodput_tok_s_per_gpu"] == pytest.approx(r["max_rate"] * per_req / r["replicas"])
        # the cluster's max_rate is what simulating that cluster says
        for rate, ok in ((r["max_rate"], True), (r["max_rate"] * 1.03, False)):
            s = infersweep.simulate(
                model=MODEL,
                workload="chatbot",
                num_requests=200,
                rate=rate,
                replicas=r["replicas"],
                router=r["router"],
            ).summary
            assert meets(s, {"ttft_p99_ms": 200.0}) is ok


def test_blis_clusters_are_unchecked_with_the_reason():
    """blis semantics cannot run clusters: the estimate stands, marked unchecked, and the
    reason says why."""
    ds = infersweep.plan(
        {"sweep": dict(PLAN_SETTINGS, semantics="blis"), "grid": {"tp": [1]}},
        slo=SLO,
        target_rate=TARGET * 3,
        sensitivity=False,
    )
    est = ds["replicas_estimate"].values[0]
    assert est >= 2
    assert str(ds["replicas_check"].values[0]) == "unchecked"
    assert ds["replicas_needed"].values[0] == est
    assert "semantics vllm" in str(ds["reason"].values[0])
