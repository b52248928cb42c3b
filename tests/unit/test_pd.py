"""Prefill/decode disaggregation (scheduler/pd_nb.py, issue 12 item 3).

Expected values come from the single-instance cost model (``CostModel.step_time``) and from
single-instance runs, never from the P/D kernel itself."""

from __future__ import annotations

import numpy as np
import pytest

import infersweep
from infersweep import schema
from infersweep.errors import ConfigError
from infersweep.workload.generate import Workload

MODEL = dict(model="llama-3.1-8b-instruct", hardware="H100", tp=1)
FAST_LINK = dict(kv_link_gbps=1e9, kv_link_latency_us=0.0)  # moves any prompt in < 0.5 µs


def _light_workload(n: int = 40, gap_s: float = 3.0, seed: int = 3) -> Workload:
    """Requests that never overlap: each finishes well before the next arrives (the longest,
    6,000 prompt + 200 output tokens, takes about 1.2 s on one H100)."""
    rng = np.random.default_rng(seed)
    prompt = rng.integers(500, 6000, n)
    output = rng.integers(20, 200, n)
    arrival = (np.arange(n) * gap_s * 1e6).astype(np.int64)
    return Workload.from_arrays(arrival, prompt, output, name="light")


def _prefill_us(cost, prompt: int, budget: int = 2048) -> int:
    """A lone request's prefill on one instance: chunks of the token budget, one step each."""
    t = done = 0
    while done < prompt:
        c = min(budget, prompt - done)
        t += cost.step_time([(done, c)])[0]
        done += c
    return t


def test_light_load_ttft_is_the_prefill_time_and_itl_the_single_instance_one():
    wl = _light_workload()
    pd = infersweep.simulate(**MODEL, workload=wl, prefill_instances=1, decode_instances=1,
                             **FAST_LINK)  # fmt: skip
    one = infersweep.simulate(**MODEL, workload=wl)
    expected = np.array([_prefill_us(pd.cost, int(p)) for p in wl.prompt_tok])
    # nothing else runs: the first token comes exactly one prefill after arrival
    np.testing.assert_array_equal(pd.raw.out[:, schema.O_TTFT], expected)
    # an instantly moved KV and an idle decode instance: every gap is the decode step the
    # single instance takes (same GPU, TP and cost tables), so the samples are identical
    np.testing.assert_array_equal(np.sort(pd.raw.itl_us), np.sort(one.raw.itl_us))
    np.testing.assert_array_equal(pd.raw.out[:, schema.O_E2E], one.raw.out[:, schema.O_E2E])
    assert pd.summary["kv_transfer_mean_ms"] == 0.0


@pytest.mark.parametrize("router", ["round-robin", "least-outstanding", "prefix-affinity"])
def test_fast_link_ttft_never_below_the_prefill_time(router):
    n = 600
    pd = infersweep.simulate(**MODEL, workload="chatbot", num_requests=n, rate=150.0,
                             arrival="poisson", prefill_instances=2, decode_instances=2,
                             router=router, **FAST_LINK)  # fmt: skip
    prompt = pd.workload.prompt_tok
    floor = np.array([_prefill_us(pd.cost, int(p)) for p in prompt])
    ttft = pd.raw.out[:, schema.O_TTFT]
    assert (ttft >= floor).all()
    assert (ttft > floor).any()  # under load some requests queue or share steps


def test_slower_link_raises_e2e_and_itl_but_not_ttft():
    kw = dict(MODEL, workload="chatbot", num_requests=400, rate=8.0, prefill_instances=1,
              decode_instances=1)  # fmt: skip
    fast = infersweep.simulate(**kw, kv_link="nvlink")
    slow = infersweep.simulate(**kw, kv_link="ethernet", kv_link_gbps=5.0)
    # the prefill pool (auto-sized: tens of thousands of blocks) never runs short of blocks,
    # so the later freeing of the transferred blocks changes nothing on the prefill side
    np.testing.assert_array_equal(fast.raw.out[:, schema.O_TTFT], slow.raw.out[:, schema.O_TTFT])
    for metric in ("e2e_mean_ms", "itl_mean_ms", "itl_p99_ms", "kv_transfer_mean_ms"):
        assert slow.summary[metric] > fast.summary[metric], metric
    # 5 Gbit/s: a 128 KiB-per-token KV takes ~0.2 ms per token of prompt to move
    kv_tok = 2 * 32 * 8 * 128 * 2
    prompt = slow.workload.prompt_tok
    assert slow.summary["kv_transfer_mean_ms"] >= np.mean(prompt * kv_tok / 5e9 * 1e3) * 0.999
    assert 0 < slow.summary["kv_link_utilization"] <= 1


def test_one_prefill_one_decode_at_light_load_matches_single_instance_itl():
    """Chatbot at 1 request/s: requests overlap a little.  A single instance mixes prefill
    chunks into decode steps, P/D does not, so P/D's typical gap is at most the single
    instance's; its mean includes one transfer (< 1 ms on InfiniBand) per request.  Tolerance:
    p50 within 2 % and mean within 5 % (the single instance's mixed steps make up a few per
    cent of its gaps)."""
    kw = dict(MODEL, workload="chatbot", num_requests=300, rate=1.0)
    one = infersweep.simulate(**kw).summary
    pd = infersweep.simulate(**kw, prefill_instances=1, decode_instances=1).summary
    assert pd["itl_p50_ms"] <= one["itl_p50_ms"] * 1.02
    assert pd["itl_p50_ms"] >= one["itl_p50_ms"] * 0.98
    assert abs(pd["itl_mean_ms"] - one["itl_mean_ms"]) <= 0.05 * one["itl_mean_ms"]


@pytest.mark.parametrize("horizon", [0.0, 15.0])
@pytest.mark.parametrize("router", ["round-robin", "random", "least-kv", "weighted"])
def test_every_request_is_accounted_for(router, horizon):
    n = 900
    res = infersweep.simulate(**MODEL, workload="chatbot", num_requests=n, rate=30.0,
                              prefill_instances=3, decode_instances=2, router=router,
                              snapshot_interval=5.0, horizon=horizon)  # fmt: skip
    s = res.summary
    state = res.raw.out[:, schema.O_STATE]
    counts = np.bincount(state, minlength=5)
    assert counts[schema.STATE_DONE] == s["completed_requests"]
    assert counts[schema.STATE_QUEUED] == s["still_queued"]
    assert counts[schema.STATE_RUNNING] == s["still_running"]
    assert counts[schema.STATE_DROPPED] == s["dropped_unservable"]
    assert counts.sum() == n
    inst = res.raw.instances
    role = inst[:, schema.CI_ROLE]
    assert list(role) == [schema.ROLE_PREFILL] * 3 + [schema.ROLE_DECODE] * 2
    route = res.raw.route
    assert ((route >= 0) & (route < 3)).all()  # routed exactly once, to a prefill instance
    np.testing.assert_array_equal(np.bincount(route, minlength=3), inst[:3, schema.CI_REQUESTS])
    dec = res.raw.decode_route
    handed = dec >= 0
    assert inst[3:, schema.CI_REQUESTS].sum() == handed.sum()
    assert inst[:3, schema.CI_HANDOFFS].sum() == handed.sum() == inst[3:, schema.CI_HANDOFFS].sum()
    assert (res.workload.output_tok[handed] > 1).all()
    if horizon == 0:
        assert s["status"] == "ok"
        assert counts[schema.STATE_DONE] == n
        # every request with more than one output token was decoded by a decode instance
        np.testing.assert_array_equal(handed, res.workload.output_tok > 1)
        assert s["total_output_tokens"] == int(res.workload.output_tok.sum())
        assert s["total_input_tokens"] == int(res.workload.prompt_tok.sum())
        xfer = res.raw.kv_transfer_us
        assert ((xfer >= 0) == handed).all()
    else:
        assert s["status"] == "horizon"


def test_output_one_requests_finish_on_the_prefill_side():
    n = 50
    wl = Workload.from_arrays(np.arange(n) * 20_000, np.full(n, 700), np.ones(n, np.int64))
    res = infersweep.simulate(**MODEL, workload=wl, prefill_instances=2, decode_instances=1)
    inst = res.raw.instances
    assert inst[:2, schema.CI_COMPLETED].sum() == n
    assert inst[2, schema.CI_REQUESTS] == 0
    assert (res.raw.decode_route == -1).all()
    assert res.summary["kv_transfer_mean_ms"] == 0.0


def test_decode_kv_exhaustion_queues_requests():
    """The decode pool holds about four requests (1,000 + 600 tokens each in 400 blocks of
    16), the rest wait: in the decode queue, and upstream in the prefill pool, which keeps
    their blocks until the decode side takes them."""
    kw = dict(MODEL, workload="distribution", num_requests=120, rate=20.0, prompt_tokens=1000,
              prompt_tokens_stdev=0, output_tokens=600, output_tokens_stdev=0,
              total_kv_blocks=400, prefill_instances=1, decode_instances=1)  # fmt: skip
    res = infersweep.simulate(**kw)
    s = res.summary
    assert s["status"] == "ok"
    assert s["completed_requests"] == 120 and s["dropped_unservable"] == 0
    dec = s["instances"][1]
    assert dec["role"] == "decode" and dec["kv_peak_blocks"] == 400
    # some waited at the decode side after their first token: a gap of seconds, where a
    # decode step takes milliseconds (with the pool auto-sized the largest gap is ~3x the
    # median)
    itl = res.raw.itl_us
    assert itl.max() > 50 * np.median(itl)
    # and the prefill side ran short of blocks too (held until the decode side took them)
    assert s["instances"][0]["preemption_count"] > 0
    assert s["ttft_p99_ms"] * 1000 > 10 * _prefill_us(res.cost, 1000)


def test_each_side_has_its_own_tp_and_gpu():
    kw = dict(MODEL, workload="chatbot", num_requests=200, rate=2.0, prefill_instances=1,
              decode_instances=1)  # fmt: skip
    base = infersweep.simulate(**kw).summary
    wide = infersweep.simulate(**kw, decode_tp=2).summary
    assert wide["itl_mean_ms"] < base["itl_mean_ms"]  # decode steps on 2 GPUs
    assert wide["ttft_mean_ms"] == base["ttft_mean_ms"]  # the prefill side is unchanged
    slow_gpu = infersweep.simulate(**kw, prefill_hardware="A100-SXM").summary
    assert slow_gpu["ttft_mean_ms"] > base["ttft_mean_ms"]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        (dict(prefill_instances=2), "decode_instances"),
        (dict(decode_instances=2), "prefill_instances"),
        (dict(prefill_instances=1, decode_instances=1, semantics="blis"), "prefill_instances"),
        (dict(prefill_instances=1, decode_instances=1, replicas=2), "replicas"),
        (dict(prefill_instances=1, decode_instances=1, prefill_tp=3), "prefill_tp"),
        (dict(prefill_instances=1, decode_instances=1, decode_hardware="nope"), "decode_hardware"),
        (dict(prefill_instances=1, decode_instances=1, kv_link="pigeon"), "kv_link"),
        (dict(prefill_instances=1, decode_instances=1, kv_link_gbps=0), "kv_link_gbps"),
        (
            dict(prefill_instances=1, decode_instances=1, kv_link_latency_us=-1),
            "kv_link_latency_us",
        ),
        (dict(prefill_instances=-1, decode_instances=1), "prefill_instances"),
        (dict(decode_tp=2), "decode_tp"),  # a P/D setting while P/D is off
    ],
)
def test_bad_settings_name_the_setting(kw, field):
    with pytest.raises(ConfigError) as e:
        infersweep.simulate(**MODEL, workload="chatbot", num_requests=10, **kw)
    assert e.value.field == field


def test_run_cli_and_sweep_axis(cli, tmp_path):
    out = tmp_path / "r.json"
    r = cli("run", "--model", "llama-3.1-8b-instruct", "--workload", "chatbot",
            "--num-requests", "60", "--rate", "4", "--prefill-instances", "1",
            "--decode-instances", "2", "--kv-link", "ethernet", "--decode-tp", "2",
            "--results-path", str(out))  # fmt: skip
    assert r.code == 0, r.err
    import json

    data = json.loads(out.read_text())
    roles = [i["role"] for i in data["instances"]]
    assert roles == ["prefill", "decode", "decode"]
    assert data["kv_transfer_mean_ms"] > 0
    assert {rec["decoded_by"] for rec in data["requests"]} <= {"instance_1", "instance_2"}

    from infersweep.sweeps.results import read_dataset

    r = cli("sweep", "--model", "llama-3.1-8b-instruct", "--workload", "chatbot",
            "--set", "num_requests=80", "--set", "prefill_instances=1",
            "--decode-instances", "1,2", "--kv-link-gbps", "10,400",
            "--out", str(tmp_path / "sw"), "--quiet")  # fmt: skip
    assert r.code == 0, r.err
    ds = read_dataset(tmp_path / "sw")
    xfer = ds["kv_transfer_mean_ms"]
    assert xfer.sizes["decode_instances"] == 2 and xfer.sizes["kv_link_gbps"] == 2
    assert (xfer.sel(kv_link_gbps=10.0) > xfer.sel(kv_link_gbps=400.0)).all()
    # per-instance rows: P + D per point, prefill instances first, each with its role
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "sw" / "instances.parquet").to_pandas()
    for _, g in rows.groupby("point"):
        d = int(g["decode_instances"].iloc[0])
        assert list(g["role"]) == [schema.ROLE_PREFILL] + [schema.ROLE_DECODE] * d
        assert g["requests"].iloc[0] == 80  # every request is routed to the one prefill
        assert g["requests"].iloc[1:].sum() == g["completed_requests"].iloc[1:].sum()


@pytest.mark.parametrize(
    "kw",
    [
        dict(prefill_instances=2, decode_instances=2, router="least-outstanding", rate=30.0),
        dict(prefill_instances=4, decode_instances=4, rate=16.0),
        dict(prefill_instances=3, decode_instances=2, router="prefix-affinity", rate=30.0,
             horizon=10.0, snapshot_interval=5.0, prefix_tokens=512),
        dict(prefill_instances=1, decode_instances=1, rate=20.0, total_kv_blocks=400,
             workload="distribution", prompt_tokens=1000, output_tokens=600),
        dict(prefill_instances=2, decode_instances=3, rate=50.0, total_kv_blocks=2000,
             router="random", kv_link="ethernet", kv_link_gbps=2.0),
        dict(prefill_instances=3, decode_instances=2, rate=80.0, total_kv_blocks=1500,
             router="weighted", arrival="poisson", kv_link_gbps=20.0, routing_latency=2.0),
    ],
)  # fmt: skip
def test_lookahead_equals_the_lockstep_reference(kw, monkeypatch):
    """The kernel lets each instance run up to the next event that can affect it; its
    reference mode (``CL_LOCKSTEP``) stops every instance at the next event of any kind.  Same
    results, request by request, with preemption on both sides, a congested link, a horizon,
    snapshots and routing latency."""
    from infersweep.scheduler import driver

    kw = dict(MODEL, workload="chatbot", num_requests=1500) | kw
    fast = infersweep.simulate(**kw)
    plain = driver.pd_array

    def lockstep(cfg):
        arr = plain(cfg)
        arr[schema.CL_LOCKSTEP] = 1
        return arr

    monkeypatch.setattr(driver, "pd_array", lockstep)
    ref = infersweep.simulate(**kw)
    assert fast.summary == ref.summary
    np.testing.assert_array_equal(fast.raw.out, ref.raw.out)
    np.testing.assert_array_equal(np.sort(fast.raw.itl_us), np.sort(ref.raw.itl_us))
    np.testing.assert_array_equal(fast.raw.instances, ref.raw.instances)
    np.testing.assert_array_equal(fast.raw.decode_route, ref.raw.decode_route)
    np.testing.assert_array_equal(fast.raw.kv_transfer_us, ref.raw.kv_transfer_us)


def test_a_request_too_long_for_the_decode_pool_is_dropped_at_the_handoff():
    """120,000 + 49 tokens fit an H100's pool (auto: ~30,000 blocks of 16) but not an L4's
    (~4,400): those two are prefilled, then dropped at the handoff, their prefill blocks freed
    (the others still complete)."""
    n = 30
    prompt = np.full(n, 2000)
    prompt[[5, 17]] = 120_000
    wl = Workload.from_arrays(np.arange(n) * 200_000, prompt, np.full(n, 50))
    res = infersweep.simulate(**MODEL, workload=wl, prefill_instances=1, decode_instances=1,
                              decode_hardware="L4")  # fmt: skip
    s = res.summary
    state = res.raw.out[:, schema.O_STATE]
    assert list(np.flatnonzero(state == schema.STATE_DROPPED)) == [5, 17]
    assert s["completed_requests"] == n - 2 and s["dropped_unservable"] == 2
    assert s["instances"][1]["dropped_unservable"] == 2
    pools = res.raw.instances[:, schema.CI_KV_BLOCKS]
    assert pools[0] * 16 > 120_049 > pools[1] * 16
