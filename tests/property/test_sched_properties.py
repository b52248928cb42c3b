"""Hypothesis invariants of both scheduler kernels (SPEC §2, REFERENCE §6): every request is
accounted for, output tokens are conserved, TTFT <= E2E, the KV cache is never over-committed,
the clock never runs backwards, every step respects the token budget and the running cap,
preemption terminates, and a prompt that can never fit is dropped and counted."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infersweep import schema as S
from infersweep.api import cost_model_for
from infersweep.config.models import load_hardware, load_model
from infersweep.scheduler.driver import SchedulerConfig, run_scheduler
from infersweep.workload.generate import Workload

PROPS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LOG_CAP = 200_000
SEMANTICS = ["vllm", "blis"]


def cost():
    return cost_model_for(load_model("llama-3.1-8b-instruct"), load_hardware("H100", "minimal"), 1)


def ceil_div(a, b):
    return -(-a // b)


@st.composite
def scenarios(draw, semantics: str, kv: str = "any", horizon: bool = False):
    """(workload arrays, SchedulerConfig kwargs).  kv: "any", "tiny" (preemption likely)."""
    n = draw(st.integers(1, 24))
    arrival = sorted(
        draw(
            st.lists(
                st.sampled_from([0, 1, 2_000, 7_000, 30_000, 90_000]) | st.integers(0, 250_000),
                min_size=n,
                max_size=n,
            )
        )
    )
    prompt = draw(st.lists(st.integers(1, 600), min_size=n, max_size=n))
    output = draw(st.lists(st.integers(1, 300), min_size=n, max_size=n))
    group = draw(st.lists(st.integers(-1, 2), min_size=n, max_size=n))
    prefix = [draw(st.integers(0, p)) if g >= 0 else 0 for g, p in zip(group, prompt)]
    bs = draw(st.sampled_from([4, 16]))
    need = [ceil_div(p + o - 1, bs) for p, o in zip(prompt, output)]
    if kv == "tiny":
        blocks = draw(st.integers(max(need), max(need) + max(need) // 2 + 1))
    else:
        blocks = draw(st.sampled_from([max(need), 2 * max(need), sum(need) + 1, 100_000]))
    if semantics == "blis":
        # blis semantics can preempt forever (the blis livelock tests below) unless the cache
        # holds every whole sequence with one block to spare: then the oldest running request
        # always progresses
        blocks = max(blocks, max(need) + 1)
    cfg = {
        "semantics": semantics,
        "max_num_scheduled_tokens": draw(st.integers(16, 512)),
        "max_num_running_reqs": draw(st.integers(1, 8)),
        "long_prefill_token_threshold": draw(st.sampled_from([0, 0, 8, 100, 256])),
        "block_size": bs,
        "total_kv_blocks": blocks,
    }
    if horizon:
        cfg["horizon_s"] = draw(st.integers(1, 400_000)) / 1e6
    return (arrival, prompt, output, group, prefix), cfg


def run(arrays, cfg, logged: bool = True):
    """One run; with a step log (the general step only) or without (the fast decode loops on,
    as in every run that does not ask for a log)."""
    wl = Workload.from_arrays(*arrays)
    raw = run_scheduler(wl, cost(), SchedulerConfig(**cfg), log_steps=LOG_CAP if logged else 0)
    if logged:
        assert raw.scalars[S.SC_LOG_N] < LOG_CAP, "step log too small for this example"
    else:
        assert len(raw.step_log) == 0
    return wl, raw


def check_invariants(wl, raw, settings_: dict) -> None:
    cfg = SchedulerConfig(**settings_)
    o = raw.out
    s = raw.scalars
    n = len(wl)
    state = o[:, S.O_STATE]
    status = int(s[S.SC_STATUS])
    done = state == S.STATE_DONE
    # every request is accounted for
    counts = {
        k: int((state == k).sum())
        for k in (S.STATE_PENDING, S.STATE_QUEUED, S.STATE_RUNNING, S.STATE_DONE, S.STATE_DROPPED)
    }
    assert sum(counts.values()) == n
    assert counts[S.STATE_DONE] == s[S.SC_COMPLETED]
    assert counts[S.STATE_DROPPED] == s[S.SC_DROPPED]
    assert counts[S.STATE_QUEUED] == s[S.SC_QUEUED]
    assert counts[S.STATE_RUNNING] == s[S.SC_RUNNING]
    if status == S.STATUS_OK:
        assert counts[S.STATE_DONE] + counts[S.STATE_DROPPED] == n
    else:
        assert status in (S.STATUS_HORIZON, S.STATUS_STALLED)
        assert status == S.STATUS_HORIZON or cfg.horizon_s == 0
    # a request is dropped only if its prompt (blis) or whole sequence (vllm) cannot fit
    bs = cfg.block_size
    blocks = raw.kv_blocks_total
    kept_tok = (
        wl.prompt_tok
        if raw.semantics == "blis"
        else wl.prompt_tok + np.maximum(wl.output_tok, 1) - 1
    )
    too_big = ceil_div(kept_tok, bs) > blocks
    arrived = state != S.STATE_PENDING
    assert ((state == S.STATE_DROPPED) == (too_big & arrived)).all()
    assert s[S.SC_INPUT_TOK] == wl.prompt_tok[arrived & ~too_big].sum()
    # latencies of completed requests
    ttft = o[done, S.O_TTFT]
    e2e = o[done, S.O_E2E]
    sched = o[done, S.O_SCHED]
    assert (ttft > 0).all() and (ttft <= e2e).all()
    assert (sched >= 0).all() and (sched < ttft).all()
    # output tokens
    out_tok = wl.output_tok
    if raw.semantics == "vllm":
        assert s[S.SC_OUTPUT_TOK] == o[:, S.O_TOKENS].sum()
        assert (o[done, S.O_TOKENS] == out_tok[done]).all()
        if status == S.STATUS_OK:
            assert s[S.SC_OUTPUT_TOK] == out_tok[done].sum()
            assert s[S.SC_N_ITL] == (out_tok[done] - 1).sum()  # one gap per later token
            assert (o[done, S.O_DONE] == wl.arrival_us[done] + e2e).all()
    else:
        if s[S.SC_PREEMPT] == 0 and status == S.STATUS_OK:
            assert s[S.SC_OUTPUT_TOK] == (out_tok[done] - 1).sum()  # Q2
            assert s[S.SC_N_ITL] == out_tok[done].sum()  # M - 1 decode steps + phantom (Q1)
        assert s[S.SC_OUTPUT_TOK] >= (out_tok[done] - 1).sum()
    assert len(raw.itl_us) == s[S.SC_N_ITL] and (raw.itl_us >= 1).all()
    assert 0 <= s[S.SC_KV_PEAK] <= raw.kv_blocks_total
    assert s[S.SC_STEPS] >= 0 and s[S.SC_CLOCK] >= 0
    if s[S.SC_LOG_N] == 0:  # no step log: the fast decode loops ran
        return
    # step log: KV never above the total, clock monotone, budget and running cap respected
    log = raw.step_log
    if status != S.STATUS_STALLED:  # (a stalled vllm run stops before logging its last step)
        assert len(log) == int(s[S.SC_STEPS])
    assert (log[:, S.LOG_KV_USED] >= 0).all()
    assert (log[:, S.LOG_KV_USED] <= raw.kv_blocks_total).all()
    assert s[S.SC_KV_PEAK] <= raw.kv_blocks_total
    assert (np.diff(log[:, S.LOG_TIME]) >= 0).all()
    assert (log[:, S.LOG_STEP_US] >= 1).all()
    assert (log[:, S.LOG_TOKENS] >= 0).all()
    assert (log[:, S.LOG_TOKENS] <= cfg.max_num_scheduled_tokens).all()
    assert (log[:, S.LOG_RUNNING] <= cfg.max_num_running_reqs).all()
    if len(log):
        assert s[S.SC_CLOCK] >= log[-1, S.LOG_TIME]


@pytest.mark.parametrize("logged", [True, False], ids=["step-log", "fast-loops"])
@pytest.mark.parametrize("semantics", SEMANTICS)
@PROPS
@given(data=st.data())
def test_invariants(semantics, logged, data):
    arrays, cfg = data.draw(scenarios(semantics))
    wl, raw = run(arrays, cfg, logged)
    check_invariants(wl, raw, cfg)
    assert raw.scalars[S.SC_STATUS] == S.STATUS_OK


@pytest.mark.parametrize("semantics", SEMANTICS)
@settings(PROPS, max_examples=30)
@given(data=st.data())
def test_step_log_does_not_change_the_run(semantics, data):
    """Both kernels run stretches of plain decode steps in fast loops (vllm: a lone request;
    blis: the whole batch, new blocks included) that a step log turns off; with and without the
    log the run is the same, request by request."""
    arrays, cfg = data.draw(scenarios(semantics, horizon=data.draw(st.booleans())))
    wl, logged = run(arrays, cfg)
    plain = run_scheduler(wl, cost(), SchedulerConfig(**cfg))
    np.testing.assert_array_equal(plain.out, logged.out)
    keep = [i for i in range(S.N_SC) if i != S.SC_LOG_N]
    np.testing.assert_array_equal(plain.scalars[keep], logged.scalars[keep])
    np.testing.assert_array_equal(np.sort(plain.itl_us), np.sort(logged.itl_us))


@pytest.mark.parametrize("semantics", SEMANTICS)
@pytest.mark.parametrize("blocks,block_size", [(300, 1), (300, 7), (300, 16), (800, 16)])
def test_fast_loops_under_kv_pressure(semantics, blocks, block_size):
    """Long decode stretches of large batches that fill blocks and preempt: the fast decode
    loops (off with a step log) give the same run as the general step."""
    from infersweep.api import simulate

    kw = dict(
        model="llama-3.1-8b-instruct",
        hardware="H100",
        tp=1,
        semantics=semantics,
        workload="chatbot",
        num_requests=400,
        rate=20.0,
        total_kv_blocks=blocks,
        block_size=block_size,
        max_num_running_reqs=64,
    )
    fast = simulate(**kw).raw
    logged = simulate(**kw, log_steps=2_000_000).raw
    assert fast.scalars[S.SC_STATUS] == S.STATUS_OK
    assert (block_size == 16 and blocks == 800) or fast.scalars[S.SC_PREEMPT] > 0
    np.testing.assert_array_equal(fast.out, logged.out)
    keep = [i for i in range(S.N_SC) if i != S.SC_LOG_N]
    np.testing.assert_array_equal(fast.scalars[keep], logged.scalars[keep])
    np.testing.assert_array_equal(fast.itl_us, logged.itl_us)


@pytest.mark.parametrize("logged", [True, False], ids=["step-log", "fast-loops"])
@pytest.mark.parametrize("semantics", SEMANTICS)
@settings(PROPS, max_examples=25)
@given(data=st.data())
def test_invariants_with_horizon(semantics, logged, data):
    arrays, cfg = data.draw(scenarios(semantics, horizon=True))
    wl, raw = run(arrays, cfg, logged)
    check_invariants(wl, raw, cfg)
    s = raw.scalars
    if s[S.SC_STATUS] == S.STATUS_OK:
        return
    assert s[S.SC_STATUS] == S.STATUS_HORIZON
    horizon_us = round(cfg["horizon_s"] * 1e6)
    # no step starts after the horizon; every request that arrived by then was seen
    assert (raw.step_log[:, S.LOG_TIME] <= horizon_us).all()
    pending = raw.out[:, S.O_STATE] == S.STATE_PENDING
    assert not pending[wl.arrival_us <= horizon_us].any()
    if semantics == "blis":  # events after the horizon never run (REFERENCE §6.1)
        assert pending[wl.arrival_us > horizon_us].all()


@pytest.mark.parametrize("logged", [True, False], ids=["step-log", "fast-loops"])
@pytest.mark.parametrize("semantics", SEMANTICS)
@settings(PROPS, max_examples=30)
@given(data=st.data())
def test_preemption_under_tiny_kv_cache_terminates(semantics, logged, data):
    arrays, cfg = data.draw(scenarios(semantics, kv="tiny"))
    wl, raw = run(arrays, cfg, logged)
    check_invariants(wl, raw, cfg)
    s = raw.scalars
    assert s[S.SC_STATUS] == S.STATUS_OK
    assert s[S.SC_COMPLETED] == len(wl)  # every sequence fits, so nothing is dropped


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_tiny_kv_cache_does_preempt(semantics):
    """A directed case that must preempt: 8 requests at once, room for about 1.5 of them."""
    n = 8
    arrays = ([0] * n, [100] * n, [200] * n, [-1] * n, [0] * n)
    cfg = {
        "semantics": semantics,
        "block_size": 16,
        "total_kv_blocks": 28,
        "max_num_running_reqs": 8,
    }
    wl, raw = run(arrays, cfg)
    check_invariants(wl, raw, cfg)
    s = raw.scalars
    assert s[S.SC_PREEMPT] > 0
    assert s[S.SC_STATUS] == S.STATUS_OK and s[S.SC_COMPLETED] == n


@pytest.mark.parametrize("semantics", SEMANTICS)
@settings(PROPS, max_examples=30)
@given(data=st.data())
def test_prompt_longer_than_kv_cache_is_dropped(semantics, data):
    arrays, cfg = data.draw(scenarios(semantics))
    arrival, prompt, output, group, prefix = (list(a) for a in arrays)
    bs = cfg["block_size"]
    cfg["total_kv_blocks"] = min(cfg["total_kv_blocks"], 10_000)
    # one more request whose prompt alone needs more blocks than exist
    k = data.draw(st.integers(0, len(arrival)))
    at = data.draw(
        st.integers(arrival[k - 1] if k else 0, arrival[k] if k < len(arrival) else 300_000)
    )
    big = cfg["total_kv_blocks"] * bs + data.draw(st.integers(1, 40))
    for lst, v in (
        (arrival, at),
        (prompt, big),
        (output, data.draw(st.integers(1, 50))),
        (group, -1),
        (prefix, 0),
    ):
        lst.insert(k, v)
    wl, raw = run((arrival, prompt, output, group, prefix), cfg)
    check_invariants(wl, raw, cfg)
    s = raw.scalars
    assert s[S.SC_STATUS] == S.STATUS_OK
    assert raw.out[k, S.O_STATE] == S.STATE_DROPPED
    assert s[S.SC_DROPPED] == 1
    assert s[S.SC_COMPLETED] == len(wl) - 1
    assert s[S.SC_INPUT_TOK] == sum(prompt) - big


# blis semantics can preempt forever where the reference does (SPEC §2 says a blis run cannot
# livelock): a request alone in the batch that cannot get its next tokens evicts itself, is
# re-admitted and repeats.  The horizon only keeps a failing run finite.
LIVELOCKS = {
    # 10-token prompt (1 block of 16) + 100 outputs need 7 blocks; 2 exist
    "sequence_longer_than_cache": ([10], [100], {"total_kv_blocks": 2}),
    # 25 tokens fit in 2 blocks, but prefill feasibility ignores the room in the partly filled
    # last block (REFERENCE §6.4): the 8-token chunks [0,8) [8,16) [16,24) take both blocks,
    # [24,25) asks for 1 free block, and the prefix-cache hit on block 0 at re-admission
    # replays the same chunks
    "prefill_feasibility_ignores_partial_block": (
        [25],
        [1],
        {"total_kv_blocks": 2, "long_prefill_token_threshold": 8},
    ),
}


@pytest.mark.parametrize("name", sorted(LIVELOCKS))
def test_blis_unfinishable_request_terminates(name):
    prompt, output, extra = LIVELOCKS[name]
    # a normal request arrives later and must still complete
    arrays = ([0, 500_000], prompt + [10], output + [3], [-1, -1], [0, 0])
    cfg = {"semantics": "blis", "block_size": 16, "horizon_s": 30.0, **extra}
    _wl, raw = run(arrays, cfg)
    s = raw.scalars
    state = raw.out[:, S.O_STATE]
    assert s[S.SC_STATUS] == S.STATUS_OK, (
        f"{name}: still running at the horizon after {int(s[S.SC_PREEMPT])} preemptions"
    )
    assert state[1] == S.STATE_DONE
    assert state[0] in (S.STATE_DONE, S.STATE_DROPPED)
    assert s[S.SC_COMPLETED] + s[S.SC_DROPPED] == 2
    assert s[S.SC_DROPPED] == (state == S.STATE_DROPPED).sum()
