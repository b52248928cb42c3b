"""Scheduler kernels against the slow pure-Python port in ``tests/reference_sched.py``, in both
semantics, on seeded random small traces and a few directed cases: every per-request value and
every counter identical, ITL samples equal as multisets.

The step cost comes from ``CostModel.step_time`` (tested on its own in test_step_cases.py).  A
step with a prefill entry of 0 new tokens (a blis admission whose whole prompt is prefix-cached),
which that API rejects, is priced by the pure-Python port of REFERENCE §5 in
``tests/reference_stepcost.py`` (such a bucket costs G(0), the weight-read floor).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pytest

from infersweep import schema as S
from infersweep.api import cost_model_for
from infersweep.config.models import load_hardware, load_model
from infersweep.scheduler.driver import SchedulerConfig, run_scheduler
from infersweep.workload.generate import Workload
from tests.reference_sched import GoHeap, RefConfig, Req, simulate_reference
from tests.reference_stepcost import ref_cost

MODEL = "llama-3.1-8b-instruct"
N_VLLM = 120
N_BLIS = 90
N_LITERAL = 25  # random preempting cases in literal blis mode
LIVELOCK_SEEDS = [3, 7, 38]  # random blis cases whose literal run livelocks (found by search)

STATE_NAMES = {
    S.STATE_PENDING: "pending",
    S.STATE_QUEUED: "queued",
    S.STATE_RUNNING: "running",
    S.STATE_DONE: "done",
    S.STATE_DROPPED: "dropped",
}
STATUS_NAMES = {S.STATUS_OK: "ok", S.STATUS_HORIZON: "horizon", S.STATUS_STALLED: "stalled"}


class Oracle:
    """Memoised step cost: ``CostModel.step_time``, or the pure-Python port of REFERENCE §5 for
    a step with a 0-token prefill entry."""

    def __init__(self):
        self.cm = cost_model_for(load_model(MODEL), load_hardware("H100", "minimal"), 1)
        self.slow = ref_cost(MODEL, "minimal", 1)
        self.memo: dict = {}
        self.zero_token_calls = 0

    def __call__(self, prefills, decodes) -> int:
        zero = any(n == 0 for _, n in prefills)
        self.zero_token_calls += zero
        key = (tuple(prefills), tuple(decodes))
        v = self.memo.get(key)
        if v is None:
            v = (
                self.slow.step_us(prefills, decodes)
                if zero
                else self.cm.step_time(prefills, decodes)[0]
            )
            self.memo[key] = v
        return v


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    return Oracle()


@dataclass
class Case:
    arrival: list
    prompt: list
    output: list
    group: list
    prefix: list
    sched: dict = field(default_factory=dict)  # SchedulerConfig / RefConfig settings
    horizon_us: int = 0

    def requests(self) -> list[Req]:
        return [
            Req(a, p, o, g, x)
            for a, p, o, g, x in zip(
                self.arrival, self.prompt, self.output, self.group, self.prefix
            )
        ]


def run_kernel(case: Case, semantics: str, oracle: Oracle, literal: bool = False):
    """The kernel's run of a case; blis: SPEC §2's safe preemption rules unless ``literal``."""
    wl = Workload.from_arrays(case.arrival, case.prompt, case.output, case.group, case.prefix)
    assert "trace_row" not in wl.extra  # the case is already in arrival order
    cfg = SchedulerConfig(
        semantics=semantics,
        horizon_s=case.horizon_us / 1e6,
        blis_preemption="reference" if literal else "safe",
        **case.sched,
    )
    return run_scheduler(wl, oracle.cm, cfg)


def run_both(
    case: Case, semantics: str, oracle: Oracle, literal: bool = False, max_steps: int = 5_000_000
):
    raw = run_kernel(case, semantics, oracle, literal)
    ref = simulate_reference(
        case.requests(),
        RefConfig(
            semantics=semantics,
            horizon_us=case.horizon_us,
            literal=literal,
            max_steps=max_steps,
            **case.sched,
        ),
        oracle,
    )
    return raw, ref


def assert_same(raw, ref, case: Case, semantics: str) -> None:
    o = raw.out
    bad = []
    for i in range(len(case.arrival)):
        got = {
            "ttft": int(o[i, S.O_TTFT]),
            "e2e": int(o[i, S.O_E2E]),
            "sched": int(o[i, S.O_SCHED]),
            "state": STATE_NAMES[int(o[i, S.O_STATE])],
            "preempt": int(o[i, S.O_PREEMPT]),
            "tokens": int(o[i, S.O_TOKENS]),
        }
        want = {
            "ttft": ref.ttft_us[i],
            "e2e": ref.e2e_us[i],
            "sched": ref.sched_us[i],
            "state": ref.state[i],
            "preempt": ref.preemptions[i],
            "tokens": ref.tokens[i],
        }
        if semantics == "vllm":  # blis's O_DONE is arrival + E2E (phantom step included)
            got["done"] = int(o[i, S.O_DONE])
            want["done"] = ref.done_us[i]
        if got != want:
            bad.append(f"request {i}: kernel {got}\n{' ' * (10 + len(str(i)))}ref    {want}")
    s = raw.scalars
    got_sc = {
        "clock": s[S.SC_CLOCK],
        "completed": s[S.SC_COMPLETED],
        "queued": s[S.SC_QUEUED],
        "running": s[S.SC_RUNNING],
        "dropped": s[S.SC_DROPPED],
        "input_tok": s[S.SC_INPUT_TOK],
        "output_tok": s[S.SC_OUTPUT_TOK],
        "preemptions": s[S.SC_PREEMPT],
        "kv_peak": s[S.SC_KV_PEAK],
        "hits": s[S.SC_HITS],
        "misses": s[S.SC_MISSES],
        "kv_fail": s[S.SC_KV_FAIL],
        "steps": s[S.SC_STEPS],
        "busy_us": s[S.SC_BUSY_US],
        "n_itl": s[S.SC_N_ITL],
    }
    got_sc = {k: int(v) for k, v in got_sc.items()}
    got_sc["status"] = STATUS_NAMES[int(s[S.SC_STATUS])]
    want_sc = {
        "clock": ref.clock_us,
        "completed": ref.completed,
        "queued": ref.still_queued,
        "running": ref.still_running,
        "dropped": ref.dropped,
        "input_tok": ref.input_tokens,
        "output_tok": ref.output_tokens,
        "preemptions": ref.preemption_count,
        "kv_peak": ref.kv_peak,
        "hits": ref.hits,
        "misses": ref.misses,
        "kv_fail": ref.kv_allocation_failures,
        "steps": ref.steps,
        "busy_us": ref.busy_us,
        "n_itl": len(ref.itl_us),
        "status": ref.status,
    }
    for k in want_sc:
        if got_sc[k] != want_sc[k]:
            bad.append(f"{k}: kernel {got_sc[k]}, ref {want_sc[k]}")
    if sorted(raw.itl_us.tolist()) != sorted(ref.itl_us):
        bad.append("ITL samples differ (as multisets)")
    assert not bad, f"{semantics}: {len(bad)} difference(s) for {case}\n" + "\n".join(bad[:12])


# ---------------------------------------------------------------------------------------------
# random cases
# ---------------------------------------------------------------------------------------------


def random_case(seed: int, semantics: str) -> Case:
    rng = np.random.default_rng([seed, 0 if semantics == "vllm" else 1])
    n = int(rng.integers(1, 41))
    mode = int(rng.integers(0, 4))
    if mode == 0:  # spread out
        arrival = np.sort(rng.integers(0, 300_000, n))
    elif mode == 1:  # exact ties on a few instants
        arrival = np.sort(rng.choice([0, 1, 4_000, 20_000, 150_000], n))
    elif mode == 2:  # bursts: runs of equal arrivals
        arrival = np.cumsum(rng.integers(0, 3, n) * rng.integers(1_000, 40_000, n))
    else:  # everything at once
        arrival = np.full(n, int(rng.integers(0, 10_000)))
    prompt = rng.integers(1, 601, n)
    output = rng.integers(1, 301, n)
    if rng.random() < 0.3:  # shorter requests: more of them overlap
        output = rng.integers(1, 40, n)
    bs = int(rng.choice([4, 16]))
    group = np.full(n, -1)
    prefix = np.zeros(n, np.int64)
    n_groups = int(rng.integers(0, 4))
    for g in range(n_groups):
        glen = int(rng.integers(1, 400))
        for i in np.flatnonzero(rng.random(n) < 0.5):
            if group[i] >= 0:
                continue
            group[i] = g
            u = rng.random()
            if u < 0.2:  # the whole prompt is the shared prefix, in full blocks
                prompt[i] = prefix[i] = max(bs, glen // bs * bs)
            elif u < 0.8:
                prefix[i] = min(int(prompt[i]), glen)
            else:
                prefix[i] = int(rng.integers(0, prompt[i] + 1))
    need = -(-(prompt + output - 1) // bs)
    kv_mode = int(rng.integers(0, 3))
    if kv_mode == 0:  # plenty: no preemption
        blocks = int(need.sum()) + 8
    elif kv_mode == 1:  # tight: preemption likely
        blocks = int(rng.integers(need.max(), 3 * need.max() + 1))
    else:  # tiny: heavy preemption, and (vllm) drops
        blocks = int(rng.integers(max(1, int(need.min()) // 2), need.max() + 2))
    if semantics == "blis":
        # blis semantics can preempt forever (test_sched_properties.py, the blis livelock
        # tests): keep one block more than every admitted request's whole sequence needs, so
        # that the oldest running request always progresses; longer prompts are dropped
        blocks = max(blocks, 2)
        fits = -(-prompt // bs) <= blocks
        prompt = np.where(fits, np.minimum(prompt, (blocks - 1) * bs), prompt)
        prefix = np.minimum(prefix, prompt)
        output = np.where(fits, np.minimum(output, (blocks - 1) * bs - prompt + 1), output)
    budget = (
        int(rng.integers(16, 513))
        if rng.random() < 0.5
        else int(rng.choice([16, 32, 64, 256, 512]))
    )
    thr = 0 if rng.random() < 0.5 else int(rng.choice([int(rng.integers(1, 300)), 8, 256]))
    sched = {
        "max_num_scheduled_tokens": budget,
        "max_num_running_reqs": int(rng.integers(1, 9)),
        "long_prefill_token_threshold": thr,
        "block_size": bs,
        "total_kv_blocks": blocks,
    }
    if semantics == "vllm" and rng.random() < 0.2:
        sched["prefix_caching"] = False
    horizon = int(rng.integers(1_000, 400_000)) if rng.random() < 0.1 else 0
    return Case(
        [int(v) for v in arrival],
        [int(v) for v in prompt],
        [int(v) for v in output],
        [int(v) for v in group],
        [int(v) for v in prefix],
        sched,
        horizon,
    )


def at_step_boundaries(case: Case, semantics: str, oracle: Oracle, seed: int) -> Case:
    """Move the next 1-3 arrivals after a step start of the reference run to exactly that
    step start (the run before it is unchanged, so it stays a step boundary)."""
    ref = simulate_reference(case.requests(), RefConfig(semantics=semantics, **case.sched), oracle)
    rng = np.random.default_rng(seed)
    starts = sorted({t for t, *_ in ref.step_log})
    arrival = list(case.arrival)
    for t in rng.permutation(starts)[:3]:
        later = [i for i, a in enumerate(arrival) if a > t]
        for i in later[: int(rng.integers(1, 4))]:
            arrival[i] = int(t)
    assert arrival == sorted(arrival)
    return replace(case, arrival=arrival)


@pytest.mark.parametrize("seed", range(N_VLLM))
def test_vllm_matches_reference(seed, oracle):
    case = random_case(seed, "vllm")
    if seed % 3 == 0:
        case = at_step_boundaries(case, "vllm", oracle, seed)
    raw, ref = run_both(case, "vllm", oracle)
    assert_same(raw, ref, case, "vllm")


@pytest.mark.parametrize("seed", range(N_BLIS))
def test_blis_matches_reference(seed, oracle):
    case = random_case(seed, "blis")
    if seed % 3 == 0:
        case = at_step_boundaries(case, "blis", oracle, seed)
    raw, ref = run_both(case, "blis", oracle)
    assert_same(raw, ref, case, "blis")


def preempting_seeds(n: int, oracle: Oracle) -> list[int]:
    """Seeds of random blis cases whose literal run preempts and terminates (the kernel does
    not flag a livelock), the first n of them."""
    seeds = []
    for seed in range(10_000):
        raw = run_kernel(random_case(seed, "blis"), "blis", oracle, literal=True)
        if raw.scalars[S.SC_PREEMPT] > 0 and not raw.scalars[S.SC_LIVELOCK]:
            seeds.append(seed)
            if len(seeds) == n:
                break
    return seeds


def test_blis_literal_preemption_matches_reference(oracle):
    """--blis-preemption reference (the default): runs that preempt reproduce the reference's
    own quirks (Q3 visits of requests evicted earlier in the pass, rollbacks deleting the
    requester's block list), request by request."""
    seeds = preempting_seeds(N_LITERAL, oracle)
    assert len(seeds) == N_LITERAL
    for seed in seeds:
        case = random_case(seed, "blis")
        raw, ref = run_both(case, "blis", oracle, literal=True)
        assert raw.scalars[S.SC_LIVELOCK] == 0
        assert_same(raw, ref, case, "blis")


@pytest.mark.parametrize("seed", LIVELOCK_SEEDS)
def test_blis_literal_livelock_falls_back_to_safe(seed, oracle):
    """Where the reference's quirks never terminate (the literal port is still stepping after
    many steps), the kernel flags the livelock and returns the safe-mode run."""
    case = random_case(seed, "blis")
    with pytest.raises(RuntimeError, match="too many steps"):
        simulate_reference(
            case.requests(),
            RefConfig(
                semantics="blis",
                horizon_us=case.horizon_us,
                literal=True,
                max_steps=20_000,
                **case.sched,
            ),
            oracle,
        )
    lit = run_kernel(case, "blis", oracle, literal=True)
    safe = run_kernel(case, "blis", oracle, literal=False)
    assert lit.scalars[S.SC_LIVELOCK] == 1 and safe.scalars[S.SC_LIVELOCK] == 0
    np.testing.assert_array_equal(lit.out, safe.out)
    keep = [i for i in range(S.N_SC) if i != S.SC_LIVELOCK]
    np.testing.assert_array_equal(lit.scalars[keep], safe.scalars[keep])
    assert "would not terminate" in lit.kv_blocks_note


# ---------------------------------------------------------------------------------------------
# directed cases
# ---------------------------------------------------------------------------------------------


def test_go_heap_tie_order():
    """Go's container/heap with Less = time <: equal times do not pop in push order."""
    h = GoHeap()
    for name in "ABC":
        h.push((5, name, 0))
    # pop: swap a[0]=A with a[2]=C, C does not sift below B (5 < 5 is false), return A; then
    # [C, B] -> swap -> return C; then B
    assert [h.pop()[1] for _ in range(3)] == ["A", "C", "B"]
    for t, name in [(7, "x"), (3, "y"), (7, "z"), (3, "w")]:
        h.push((t, name, 0))
    # array after pushes: [y(3), w(3), x(7), z(7)]
    assert [h.pop()[1] for _ in range(4)] == ["y", "w", "z", "x"]


def test_blis_simultaneous_arrivals_start_two_step_chains(oracle):
    """Q6: three requests at the same µs at an idle instance; each QueuedEvent sees stepEvent
    nil, so two StepEvents (and two step chains) exist at that µs."""
    t0 = 1_000_000
    case = Case(
        [t0, t0, t0], [200, 120, 300], [20, 30, 10], [-1] * 3, [0] * 3, {"total_kv_blocks": 1_000}
    )
    raw, ref = run_both(case, "blis", oracle)
    assert_same(raw, ref, case, "blis")
    starts = [t for t, *_ in ref.step_log]
    assert len(starts) > len(set(starts))  # some steps overlap in simulated time


def test_blis_whole_prompt_cached_admits_with_zero_new_tokens(oracle):
    """A prompt that is entirely a resident shared prefix (64 tokens = 4 full blocks) is
    admitted with 0 new tokens: the step prices a 0-token prefill entry."""
    case = Case(
        [0, 30_000, 30_000],
        [64, 64, 100],
        [50, 5, 5],
        [0, 0, 0],
        [64, 64, 64],
        {"block_size": 16, "total_kv_blocks": 100},
    )
    before = oracle.zero_token_calls
    raw, ref = run_both(case, "blis", oracle)
    assert_same(raw, ref, case, "blis")
    assert oracle.zero_token_calls > before


def test_vllm_prefix_hit_on_any_resident_copy(oracle):
    """SPEC §2: a full shared-prefix block hits while *any* block with the same (group, block
    index) is resident, not only the first one registered (a regression case: the kernel used
    to keep one block per key and lose the key when that block was evicted)."""
    # request 1 is admitted while request 0 is still prefilling the shared 64-token prefix in
    # 6-token chunks: both then compute group block 3, request 1 first.  Request 1 is
    # preempted, its copy of block 3 is evicted, and at its re-admission request 0's copy
    # (resident, in the free list after request 0 finished) hits.
    case = Case(
        [115_956, 150_238],
        [337, 199],
        [1, 1],
        [0, 0],
        [64, 64],
        {
            "max_num_scheduled_tokens": 12,
            "max_num_running_reqs": 2,
            "long_prefill_token_threshold": 6,
            "block_size": 16,
            "total_kv_blocks": 22,
        },
    )
    raw, ref = run_both(case, "vllm", oracle)
    assert ref.preemptions[1] == 1 and ref.hits == 7
    assert_same(raw, ref, case, "vllm")


def test_blis_zero_token_chunk_in_its_own_bucket(oracle):
    """A 0-token prefill entry alone in its bucket costs G(0), the weight-read floor (REFERENCE
    §5.2, §5.6), not 0 (a regression case: the kernel's GEMM table used to hold 0 at M = 0)."""
    # request 2's 32-token prompt is the resident shared prefix: it is admitted with 0 new
    # tokens (bucket 512) while request 1 prefills past token 512 (bucket 1024)
    case = Case(
        [5_114] * 4,
        [1, 520, 32, 42],
        [1, 1, 1, 1],
        [-1, -1, 0, 0],
        [0, 0, 32, 32],
        {
            "max_num_scheduled_tokens": 2,
            "max_num_running_reqs": 2,
            "block_size": 16,
            "total_kv_blocks": 35,
        },
    )
    before = oracle.zero_token_calls
    raw, ref = run_both(case, "blis", oracle)
    assert oracle.zero_token_calls > before
    assert_same(raw, ref, case, "blis")
