"""Clusters: replicas behind a router (scheduler/cluster_nb.py, issue 12)."""

from __future__ import annotations

import numpy as np
import pytest

import infersweep
from infersweep import schema
from infersweep.errors import ConfigError
from infersweep.workload.generate import Workload

MODEL = dict(model="llama-3.1-8b-instruct", hardware="H100", tp=1)
ROUTERS = (
    "round-robin",
    "random",
    "least-outstanding",
    "least-kv",
    "prefix-affinity",
    "weighted",
)


def _same_run(a, b) -> None:
    assert a.summary == b.summary
    np.testing.assert_array_equal(a.raw.out, b.raw.out)
    np.testing.assert_array_equal(a.raw.itl_us, b.raw.itl_us)
    np.testing.assert_array_equal(a.raw.scalars, b.raw.scalars)


@pytest.mark.parametrize("semantics", ["vllm", "blis"])
@pytest.mark.parametrize("router", ["round-robin", "prefix-affinity"])
def test_one_replica_is_the_single_instance(semantics, router):
    kw = dict(MODEL, workload="chatbot", num_requests=300, rate=5.0, semantics=semantics)
    plain = infersweep.simulate(**kw)
    one = infersweep.simulate(
        **kw, replicas=1, router=router, snapshot_interval=5.0, routing_latency=1.0
    )
    _same_run(plain, one)
    assert "instances" not in one.summary
    assert one.summary["load_imbalance"] == 1.0


def test_blis_clusters_are_an_error():
    with pytest.raises(ConfigError) as e:
        infersweep.simulate(**MODEL, workload="chatbot", num_requests=10, semantics="blis",
                            replicas=2)  # fmt: skip
    assert e.value.field == "replicas"


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("horizon", [0.0, 20.0])
def test_every_request_is_routed_once_and_accounted_for(router, horizon):
    n, reps = 1200, 4
    res = infersweep.simulate(
        **MODEL, workload="chatbot", num_requests=n, rate=24.0, replicas=reps, router=router,
        snapshot_interval=10.0, routing_latency=0.5, horizon=horizon,
    )  # fmt: skip
    route = res.raw.route
    assert route.shape == (n,)
    assert route.min() >= 0 and route.max() < reps
    inst = res.summary["instances"]
    assert len(inst) == reps
    counts = np.bincount(route, minlength=reps)
    assert [i["requests"] for i in inst] == counts.tolist()
    assert sum(i["requests"] for i in inst) == n
    state = res.raw.out[:, schema.O_STATE]
    done = int((state == schema.STATE_DONE).sum())
    queued = int((state == schema.STATE_QUEUED).sum())
    running = int((state == schema.STATE_RUNNING).sum())
    dropped = int((state == schema.STATE_DROPPED).sum())
    pending = int((state == schema.STATE_PENDING).sum())  # routed, not yet at its instance
    assert done + queued + running + dropped + pending == n
    s = res.summary
    assert s["completed_requests"] == done == sum(i["completed_requests"] for i in inst)
    assert s["still_queued"] == queued and s["still_running"] == running
    for i in range(reps):  # each instance completed only requests routed to it
        mine = route == i
        assert inst[i]["completed_requests"] == int((state[mine] == schema.STATE_DONE).sum())
    if horizon == 0:
        assert done == n
        assert s["status"] == "ok"
    else:
        assert done < n
    assert s["load_imbalance"] == pytest.approx(counts.max() / counts.mean())


def test_round_robin_identical_requests_match_one_instance_exactly():
    """Identical requests at even spacing: round-robin over N instances at N times the rate
    gives each instance the single instance's arrival pattern (shifted by i / (N rate)), so
    each instance's latencies equal the single instance's exactly."""
    n, reps, rate = 200, 4, 4.0  # gaps of 250,000 and 62,500 us: exact in integer us
    kw = dict(MODEL, workload="distribution", prompt_tokens=300, prompt_tokens_stdev=0,
              output_tokens=80, output_tokens_stdev=0)  # fmt: skip
    one = infersweep.simulate(**kw, num_requests=n, rate=rate)
    many = infersweep.simulate(**kw, num_requests=n * reps, rate=rate * reps, replicas=reps)
    for i in range(reps):
        mine = many.raw.route == i
        assert mine.sum() == n
        np.testing.assert_array_equal(
            many.raw.out[mine, schema.O_TTFT], one.raw.out[:, schema.O_TTFT]
        )
        np.testing.assert_array_equal(
            many.raw.out[mine, schema.O_E2E], one.raw.out[:, schema.O_E2E]
        )


def test_round_robin_chatbot_instances_close_to_one_instance():
    """Chatbot lengths: each instance serves a different sample of the same length
    distribution with the single instance's arrival spacing.  Its mean E2E differs from the
    single instance's by sampling noise only: the difference of two independent means of n
    draws has standard error sd * sqrt(2 / n); allow 5 of them (a false failure about once in
    three million)."""
    n, reps, rate = 1000, 4, 2.0
    kw = dict(MODEL, workload="chatbot")
    one = infersweep.simulate(**kw, num_requests=n, rate=rate)
    many = infersweep.simulate(**kw, num_requests=n * reps, rate=rate * reps, replicas=reps)
    e1 = one.e2e_ms
    tol = 5 * np.std(e1) * np.sqrt(2 / n)
    for i in range(reps):
        ei = many.e2e_ms[many.raw.route == i]
        assert abs(np.mean(ei) - np.mean(e1)) < tol
    assert many.summary["completed_requests"] == n * reps
    assert many.summary["load_imbalance"] == 1.0


def _shared_prefix_workload(n=1600, groups=16, rate=40.0, seed=3) -> Workload:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, groups, n)
    prefix = np.full(n, 1024, np.int64)
    prompt = prefix + rng.integers(20, 200, n)
    output = rng.integers(20, 120, n)
    arrival = (np.arange(n) * (1e6 / rate)).astype(np.int64)
    return Workload.from_arrays(arrival, prompt, output, group, prefix, name="shared-prefix")


def test_prefix_affinity_beats_round_robin_on_cache_hits():
    wl = _shared_prefix_workload()
    rr = infersweep.simulate(**MODEL, workload=wl, replicas=4, router="round-robin")
    pa = infersweep.simulate(**MODEL, workload=wl, replicas=4, router="prefix-affinity")
    assert pa.summary["completed_requests"] == rr.summary["completed_requests"] == len(wl)
    assert pa.summary["cache_hit_rate"] > rr.summary["cache_hit_rate"]
    # each group's prefix is computed on one instance instead of on every instance
    per_group = [set(pa.raw.route[wl.group == g]) for g in range(16)]
    assert np.mean([len(s) for s in per_group]) < 2


def test_random_router_is_seeded():
    kw = dict(MODEL, workload="chatbot", num_requests=400, rate=8.0, replicas=3, router="random")
    a = infersweep.simulate(**kw, router_seed=1)
    b = infersweep.simulate(**kw, router_seed=1)
    c = infersweep.simulate(**kw, router_seed=2)
    np.testing.assert_array_equal(a.raw.route, b.raw.route)
    assert (a.raw.route != c.raw.route).any()


def test_least_outstanding_balances_better_than_random_under_load():
    kw = dict(MODEL, workload="chatbot", num_requests=3000, rate=60.0, replicas=4)
    rnd = infersweep.simulate(**kw, router="random")
    lo = infersweep.simulate(**kw, router="least-outstanding")
    assert lo.summary["e2e_mean_ms"] < rnd.summary["e2e_mean_ms"]


def test_routing_latency_delays_every_request():
    kw = dict(MODEL, workload="chatbot", num_requests=200, rate=4.0, replicas=2)
    fast = infersweep.simulate(**kw)
    slow = infersweep.simulate(**kw, routing_latency=7.0)
    # identical requests spread identically: only shifted by 7 ms
    np.testing.assert_array_equal(
        slow.raw.out[:, schema.O_TTFT], fast.raw.out[:, schema.O_TTFT] + 7000
    )


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("snapshot_ms", [0.0, 37.0])
@pytest.mark.parametrize("workload", ["chatbot", "multidoc"])
def test_paused_and_resumed_instance_is_bit_identical(router, snapshot_ms, workload):
    """The cluster kernel with one instance: routers that look at load pause the instance at
    every routing time (or snapshot) and resume it, which must not change anything."""
    from infersweep.scheduler import driver
    from infersweep.scheduler.cluster_nb import simulate_cluster_nb

    single = infersweep.simulate(**MODEL, workload=workload, num_requests=200, rate=6.0)
    wl, cost = single.workload, single.cost
    cfg = driver.SchedulerConfig(router=router, snapshot_interval=snapshot_ms)
    total, _ = driver.resolve_kv_blocks(cost, cfg)
    base, gbase, n_slots = driver._slot_layout(wl, cfg.block_size, "vllm")
    rq = driver.request_array(wl, base)
    ccfg = driver.cluster_array(cfg)  # replicas 1, run through the cluster kernel anyway
    out = np.empty((len(wl), schema.N_O), np.int64)
    sc = np.zeros(schema.N_SC, np.int64)
    res = np.zeros(schema.N_M)
    inst = np.zeros((1, schema.N_CI), np.int64)
    route = np.empty(len(wl), np.int64)
    itl = simulate_cluster_nb(
        rq, gbase, driver.config_array(cfg, total), n_slots, cost.ctf, cost.cti, ccfg, out, sc,
        res, inst, route,
    )  # fmt: skip
    np.testing.assert_array_equal(out, single.raw.out)
    np.testing.assert_array_equal(itl, single.raw.itl_us)
    same = [schema.SC_CLOCK, schema.SC_COMPLETED, schema.SC_OUTPUT_TOK, schema.SC_STEPS,
            schema.SC_HITS, schema.SC_MISSES, schema.SC_KV_PEAK, schema.SC_BUSY_US]  # fmt: skip
    np.testing.assert_array_equal(sc[same], single.raw.scalars[same])
    assert (route == 0).all()


def test_weighted_router_weights():
    wl = _shared_prefix_workload()
    kw = dict(MODEL, workload=wl, replicas=4, router="weighted")
    load_only = infersweep.simulate(**kw, router_weights="1:0:0")
    prefix_heavy = infersweep.simulate(**kw, router_weights="0.2:0:1")
    assert prefix_heavy.summary["cache_hit_rate"] > load_only.summary["cache_hit_rate"]
    assert load_only.summary["load_imbalance"] < prefix_heavy.summary["load_imbalance"]


@pytest.mark.parametrize("bad", ["1:1", "a:b:c", "1:-1:1", "1,1,1", ""])
def test_bad_router_weights_name_the_setting(bad):
    with pytest.raises(ConfigError) as e:
        infersweep.simulate(**MODEL, workload="chatbot", num_requests=10, router_weights=bad)
    assert e.value.field == "router_weights"
