"""A slow, literal pure-Python port of both scheduler semantics, written from the documents for
the tests (no ``engine`` imports; plain lists, dicts and real token tuples).

* ``semantics="blis"``: REFERENCE_SEMANTICS §6 line by line: the cluster heap ordered by
  (time, priority, push number), the instance heap as Go's ``container/heap`` ordered by time only
  (its sift-up / sift-down tie order and the push order of §6.2 included), QueuedEvent with quirk
  Q6, ``Step`` with batch formation (§6.3), the single-tier KV cache of §6.4 with token-content
  hashes (a block's hash is the tuple of token identities of the whole prefix; the reference used
  SHA-256 of the same string, only equality matters) and the metrics of §6.5, with quirks Q1, Q2,
  Q8 and Q9.  As SPEC §2 says, Q3 is *not* copied (a request evicted earlier in the same phase-1
  pass is skipped for the rest of that pass), and a failed allocation rolls back exactly (§6.4):
  the requester's block list, and the hash *and tokens* of every block it popped, which go back
  to the head of the free list in their old order.  Cached blocks it had attached go back to the
  *tail* (in reverse order of attachment), as the reference's ``rollbackAllocation`` does; §6.4
  (vii)'s "exactly the previous free-list order" is only true of the popped blocks.  The
  allocation loop runs while new tokens remain, so an admission with 0 new tokens (the whole
  prompt cached) attaches nothing.
* ``semantics="vllm"``: SPEC §2 and the module docstring of ``engine/sched_vllm_nb.py``: a step
  loop that sees every request that has arrived by the step's start, schedules running requests
  in admission order within the token budget, preempts the most recently admitted request when
  blocks run out, admits waiting requests (only in steps without a preemption) with chunked
  prefill and prefix-cache hits, and records one token whenever a request's computed tokens reach
  its prompt plus the tokens it has generated.  A request is dropped on arrival when its prompt
  plus outputs - 1 tokens need more blocks than exist (it could never finish); its scheduling
  delay is that of its first admission.  The prefix cache maps a block's content to *every*
  resident block holding that content (vLLM's ``cached_block_hash_to_block``), so a full block of
  a shared prefix hits whenever any block with that content is resident (SPEC §2); a lookup
  takes the earliest registered one.

Token identities: position i of request r is ``"g<group>:<i>"`` when i lies in its shared
prefix, else ``"r<r>:<i>"`` (output tokens included), so equal content means equal tuples.

``simulate_reference(requests, cfg, step_cost)`` returns a ``RefResult``; ``step_cost(prefills,
decodes)`` gives the µs of one step (``prefills``: (progress index, new tokens) pairs, ``decodes``:
context lengths), e.g. ``lambda p, d: cost_model.step_time(p, d)[0]``.
"""

from __future__ import annotations

import heapq
import sys
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

StepCost = Callable[[list, list], int]


@dataclass(frozen=True)
class Req:
    arrival_us: int
    prompt: int
    output: int
    group: int = -1
    prefix: int = 0


@dataclass(frozen=True)
class RefConfig:
    semantics: str  # "blis" or "vllm"
    max_num_scheduled_tokens: int = 2048
    max_num_running_reqs: int = 256
    long_prefill_token_threshold: int = 0
    block_size: int = 16
    total_kv_blocks: int = 1_000_000
    prefix_caching: bool = True  # vllm only; blis always has the reference's prefix cache
    horizon_us: int = 0  # 0 = none
    max_steps: int = 5_000_000  # safety net for the tests: a run longer than this raises
    # blis: the reference's preemption quirks (Q3, and a failed allocation's rollback deleting
    # the request's block list) instead of SPEC §2's safe rules; such runs can livelock, which
    # the max_steps net turns into a RuntimeError
    literal: bool = False


@dataclass
class RefResult:
    # per request, in the order given (-1 = none)
    ttft_us: list
    e2e_us: list
    sched_us: list
    done_us: list  # vllm: time of the last token; blis: time of the RequestLeftEvent
    state: list  # "pending", "queued", "running", "done", "dropped"
    preemptions: list
    tokens: list  # output tokens counted for the request (blis: decode increments, Q2/Q9)
    itl_us: list  # ITL samples of completed requests (unordered)
    # counters
    clock_us: int = 0
    completed: int = 0
    still_queued: int = 0
    still_running: int = 0
    dropped: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    preemption_count: int = 0
    kv_peak: int = 0
    hits: int = 0
    misses: int = 0
    kv_allocation_failures: int = 0
    steps: int = 0
    busy_us: int = 0
    status: str = "ok"  # "ok" or "horizon"
    step_log: list = field(default_factory=list)  # (time, step_us, running, waiting, kv_used)


def token(req: Req, r: int, i: int) -> str:
    """The identity of token i of request r's sequence (prompt, then outputs); interned
    strings, so that the long prefix tuples hash quickly."""
    if req.group >= 0 and i < req.prefix:
        return sys.intern(f"g{req.group}:{i}")
    return sys.intern(f"r{r}:{i}")


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _new_result(n: int) -> RefResult:
    return RefResult(
        ttft_us=[-1] * n,
        e2e_us=[-1] * n,
        sched_us=[-1] * n,
        done_us=[-1] * n,
        state=["pending"] * n,
        preemptions=[0] * n,
        tokens=[0] * n,
        itl_us=[],
    )


def simulate_reference(requests: list[Req], cfg: RefConfig, step_cost: StepCost) -> RefResult:
    arrivals = [q.arrival_us for q in requests]
    if arrivals != sorted(arrivals):
        raise ValueError("requests must be sorted by arrival")
    if cfg.semantics == "blis":
        return _Blis(requests, cfg, step_cost).run()
    if cfg.semantics == "vllm":
        return _Vllm(requests, cfg, step_cost).run()
    raise ValueError(cfg.semantics)


# =============================================================================================
# blis: REFERENCE §6
# =============================================================================================


class _Block:
    __slots__ = ("hash", "id", "in_use", "ref", "tokens")

    def __init__(self, i: int):
        self.id = i
        self.ref = 0
        self.in_use = False
        self.hash = None
        self.tokens: list = []


class BlisKV:
    """REFERENCE §6.4: free list (pop at the head, release to the tail), reference counts,
    hash -> block table, per-request block lists, hits/misses in blocks."""

    def __init__(self, total: int, bs: int, literal: bool = False):
        self.total = total
        self.bs = bs
        self.literal = literal
        self.blocks = [_Block(i) for i in range(total)]
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(total))
        self.hash_to_block: dict = {}
        self.request_map: dict[int, list[int]] = {}
        self.used = 0
        self.peak = 0
        self.hits = 0
        self.misses = 0

    def _use(self) -> None:
        self.used += 1
        self.peak = max(self.peak, self.used)

    def free_count(self) -> int:
        return self.total - self.used

    def pop_free(self):
        if not self.free:
            return None
        b, _ = self.free.popitem(last=False)
        blk = self.blocks[b]
        if blk.hash is not None:  # (v): erased, and its table entry deleted unconditionally
            self.hash_to_block.pop(blk.hash, None)
            blk.hash = None
        blk.tokens = []
        return blk

    def get_cached_blocks(self, prefix_keys: list) -> list[int]:
        """Leading full blocks of a prompt whose hash is in the table; prefix_keys[i] is the
        tuple of the prompt's first (i + 1) * block_size tokens."""
        out = []
        for h in prefix_keys:
            if h not in self.hash_to_block:
                break
            out.append(self.hash_to_block[h])
        return out

    def allocate(
        self,
        r: int,
        seq: list,
        prompt_len: int,
        start: int,
        end: int,
        cached: list[int],
        prefill: bool,
    ) -> bool:
        """AllocateKVBlocks(req, start, end, cachedBlocks): KV for tokens [start, end) of
        ``seq`` (the request's token identities); False with everything rolled back."""
        bs = self.bs
        if prefill:
            if end > prompt_len:
                raise AssertionError("a prefill allocation past the prompt")
            new_tokens = seq[start:end]
            if ceil_div(len(new_tokens), bs) > self.free_count():
                return False
        else:
            new_tokens = [seq[start]]
        before = list(self.request_map[r]) if r in self.request_map else None
        cached_mut = []  # (block, was in use)
        new_alloc = []  # (block, (hash, tokens) it had before the pop)
        prog = 0
        while prog < len(new_tokens):
            latest = None
            if r in self.request_map:
                latest = self.blocks[self.request_map[r][-1]]
            else:
                for b in cached:
                    blk = self.blocks[b]
                    was = blk.in_use
                    blk.ref += 1
                    if not blk.in_use:
                        blk.in_use = True
                        self._use()
                        del self.free[b]
                    cached_mut.append((blk, was))
                    self.hits += 1
                    self.request_map.setdefault(r, []).append(b)
            if latest is not None and 0 < len(latest.tokens) < bs:
                take = new_tokens[prog : prog + bs - len(latest.tokens)]
                latest.tokens = latest.tokens + take
                prog += len(take)
                if len(latest.tokens) == bs:  # (i): the concatenation of all its blocks
                    h = tuple(t for b in self.request_map[r] for t in self.blocks[b].tokens)
                    latest.hash = h
                    self.hash_to_block[h] = latest.id
            else:
                remaining = len(new_tokens) - prog
                if remaining <= 0:
                    break
                for _ in range(ceil_div(remaining, bs)):
                    head = self.blocks[next(iter(self.free))] if self.free else None
                    orig = (head.hash, head.tokens) if head is not None else None
                    blk = self.pop_free()
                    if blk is None:
                        self._rollback(r, before, cached_mut, new_alloc)
                        return False
                    s = prog
                    e = min(prog + bs, len(new_tokens))
                    blk.tokens = list(new_tokens[s:e])
                    blk.ref = 1
                    blk.in_use = True
                    self._use()
                    self.misses += 1
                    if len(blk.tokens) == bs and prefill:  # (ii)
                        h = tuple(seq[: start + e])  # input[: absolute end]
                        blk.hash = h
                        self.hash_to_block[h] = blk.id
                    new_alloc.append((blk, orig))
                    self.request_map.setdefault(r, []).append(blk.id)
                    prog = e
        return True

    def _rollback(self, r, before, cached_mut, new_alloc) -> None:
        for blk, (orig_hash, orig_tokens) in reversed(new_alloc):
            if blk.hash is not None:
                self.hash_to_block.pop(blk.hash, None)
            blk.hash = orig_hash
            if orig_hash is not None:
                self.hash_to_block[orig_hash] = blk.id
            blk.in_use = False
            blk.ref = 0
            blk.tokens = orig_tokens  # "failures roll back exactly" (§6.4)
            self.used -= 1
            self.misses -= 1
            self.free[blk.id] = None
            self.free.move_to_end(blk.id, last=False)  # back at the head
        for blk, was in reversed(cached_mut):
            blk.ref -= 1
            self.hits -= 1
            if not was and blk.ref == 0:
                blk.in_use = False
                self.used -= 1
                self.free[blk.id] = None  # tail
        if before is None or self.literal:  # the reference deletes the whole list (a leak)
            self.request_map.pop(r, None)
        else:
            self.request_map[r] = before

    def release(self, r: int) -> None:
        ids = self.request_map.pop(r, [])
        for b in reversed(ids):
            blk = self.blocks[b]
            blk.ref -= 1
            if blk.ref == 0:
                blk.in_use = False
                self.used -= 1
                self.free[b] = None  # tail; the block keeps its hash until popped


class GoHeap:
    """Go container/heap with Less = timestamp <, exactly as REFERENCE §6.1 describes."""

    def __init__(self):
        self.a: list = []  # (time, kind, request)

    def __len__(self) -> int:
        return len(self.a)

    def top_time(self) -> int:
        return self.a[0][0]

    def push(self, ev) -> None:
        a = self.a
        a.append(ev)
        j = len(a) - 1
        while j > 0:
            p = (j - 1) // 2
            if not a[j][0] < a[p][0]:
                break
            a[j], a[p] = a[p], a[j]
            j = p

    def pop(self):
        a = self.a
        n = len(a) - 1
        a[0], a[n] = a[n], a[0]
        i = 0
        while True:
            left = 2 * i + 1
            if left >= n:
                break
            j = left
            right = left + 1
            if right < n and a[right][0] < a[left][0]:
                j = right
            if not a[j][0] < a[i][0]:
                break
            a[i], a[j] = a[j], a[i]
            i = j
        return a.pop()


class _Blis:
    def __init__(self, requests: list[Req], cfg: RefConfig, step_cost: StepCost):
        self.reqs = requests
        self.cfg = cfg
        self.cost = step_cost
        self.bs = cfg.block_size
        self.kv = BlisKV(cfg.total_kv_blocks, cfg.block_size, cfg.literal)
        n = len(requests)
        self.res = _new_result(n)
        self.seq = [
            [token(q, r, i) for i in range(q.prompt + max(q.output, 1))]
            for r, q in enumerate(requests)
        ]
        self.prompt_keys: dict[int, list] = {}
        self.pi = [0] * n  # ProgressIndex
        self.num_new = [0] * n  # NumNewTokens
        self.computed: dict[int, int] = {}
        self.itl: list[list[int]] = [[] for _ in range(n)]
        self.wait: deque[int] = deque()
        self.running: list[int] = []
        self.heap = GoHeap()
        self.step_event = False
        self.step_count = 0
        self.clock = 0

    # ---- event loop (§6.1) ----
    def run(self) -> RefResult:
        cfg = self.cfg
        res = self.res
        cluster: list = []
        seq_id = 0
        for r, q in enumerate(self.reqs):
            heapq.heappush(cluster, (q.arrival_us, 0, seq_id, r))  # ClusterArrivalEvent
            seq_id += 1
        while cluster or len(self.heap):
            if cluster and (not len(self.heap) or cluster[0][0] <= self.heap.top_time()):
                t, prio, _, r = cluster[0]
                if cfg.horizon_us > 0 and t > cfg.horizon_us:
                    res.status = "horizon"
                    break
                heapq.heappop(cluster)
                if prio < 2:  # Arrival -> Admission -> Routing, each at t + 0
                    heapq.heappush(cluster, (t, prio + 1, seq_id, r))
                    seq_id += 1
                else:
                    self.heap.push((t, "arrival", r))
                continue
            if cfg.horizon_us > 0 and self.heap.top_time() > cfg.horizon_us:
                res.status = "horizon"
                break
            t, kind, r = self.heap.pop()
            self.clock = t
            if kind == "arrival":
                self.heap.push((t, "queued", r))
            elif kind == "queued":
                self.queued(t, r)
            elif kind == "step":
                self.step(t)
                if self.step_count > cfg.max_steps:
                    raise RuntimeError("reference: too many steps")
            # "scheduled", "preemption", "left": no-ops that only set the clock
        res.clock_us = self.clock
        res.still_queued = len(self.wait)
        res.still_running = len(self.running)
        res.steps = self.step_count
        kv = self.kv
        res.kv_peak, res.hits, res.misses = kv.peak, kv.hits, kv.misses
        res.itl_us = [
            x for r in range(len(self.reqs)) if res.state[r] == "done" for x in self.itl[r]
        ]
        return res

    def queued(self, t: int, r: int) -> None:
        res = self.res
        q = self.reqs[r]
        if ceil_div(q.prompt, self.bs) > self.cfg.total_kv_blocks:
            res.dropped += 1
            res.state[r] = "dropped"
        else:
            self.wait.append(r)
            res.state[r] = "queued"
            res.input_tokens += q.prompt
        if not self.step_event:
            self.heap.push((t, "step", -1))  # Q6: stepEvent is not set here

    # ---- Step(now) (§6.2, §6.3) ----
    def step(self, now: int) -> None:
        cfg = self.cfg
        res = self.res
        kv = self.kv
        bs = self.bs
        thr = cfg.long_prefill_token_threshold
        self.step_count += 1
        budget = cfg.max_num_scheduled_tokens
        preempted: list[int] = []
        scheduled: list[int] = []
        evicted: set[int] = set()

        def alloc_or_preempt(q: int, start: int, end: int, prefill: bool) -> bool:
            while not kv.allocate(q, self.seq[q], self.reqs[q].prompt, start, end, [], prefill):
                if not self.running:
                    return False
                v = self.running.pop()
                preempted.append(v)
                evicted.add(v)
                self.pi[v] = 0
                kv.release(v)
                self.computed.pop(v, None)
                self.wait.appendleft(v)
                res.state[v] = "queued"
                res.preemptions[v] += 1
                if v == q:
                    return False
            return True

        # phase 1, over the running batch as it was at entry
        for q in list(self.running):
            if q in evicted and not cfg.literal:
                continue  # SPEC §2: Q3 not copied (literal: the reference visits it again)
            if budget <= 0:
                break
            p_len = self.reqs[q].prompt
            rem = p_len - self.pi[q]
            if rem > 0:
                n = rem
                if 0 < thr < n:
                    n = thr
                n = min(n, budget)
                if not alloc_or_preempt(q, self.pi[q], self.pi[q] + n, True):
                    break
                budget -= n
                self.num_new[q] = n
                self.computed[q] = self.computed.get(q, 0) + n
            if self.pi[q] >= p_len and self.reqs[q].output > 0:
                if not alloc_or_preempt(q, self.pi[q], self.pi[q] + 1, False):
                    break
                budget -= 1
                self.num_new[q] = 1
                self.computed[q] += 1

        # phase 2
        while (
            len(self.running) < cfg.max_num_running_reqs
            and self.wait
            and budget > 0
            and not preempted
        ):
            q = self.wait[0]
            p_len = self.reqs[q].prompt
            if q not in self.prompt_keys:
                self.prompt_keys[q] = [
                    tuple(self.seq[q][: (i + 1) * bs]) for i in range(p_len // bs)
                ]
            cached = kv.get_cached_blocks(self.prompt_keys[q])
            c = len(cached)
            n = p_len - bs * c
            if 0 < thr < n:
                n = thr
            n = min(n, budget)
            if not kv.allocate(q, self.seq[q], p_len, bs * c, bs * c + n, cached, True):
                break
            self.wait.popleft()
            self.running.append(q)
            res.state[q] = "running"
            self.num_new[q] = n
            self.computed[q] = n + bs * c
            budget -= n
            scheduled.append(q)

        for v in preempted:
            self.heap.push((now, "preemption", v))
            res.preemption_count += 1
        for q in scheduled:
            self.heap.push((now, "scheduled", q))
            res.sched_us[q] = now - self.reqs[q].arrival_us

        # step time (§5.1), with PI before the step
        prefills = []
        decodes = []
        for q in self.running:
            if self.pi[q] < self.reqs[q].prompt:
                prefills.append((self.pi[q], self.num_new[q]))
            elif self.reqs[q].output > 0:
                decodes.append(self.pi[q])
        adv = int(self.cost(prefills, decodes))
        if self.running:
            res.busy_us += adv

        # execute (step 4), Q8: budget-skipped requests included
        for q in self.running:
            p_len = self.reqs[q].prompt
            if self.pi[q] < p_len:
                self.pi[q] = self.computed[q]
            else:
                self.pi[q] += 1
                res.output_tokens += 1
                res.tokens[q] += 1
                self.itl[q].append(adv)
            if self.pi[q] == p_len:
                res.ttft_us[q] = now + adv - self.reqs[q].arrival_us
        res.step_log.append((now, adv, len(self.running), len(self.wait), kv.used))

        # completions (step 6)
        remaining = []
        for q in self.running:
            m = self.reqs[q].output
            if self.pi[q] == self.reqs[q].prompt + max(m, 1) - 1:
                if m > 0:
                    self.itl[q].append(adv)  # Q1: phantom entry
                    if not kv.allocate(
                        q, self.seq[q], self.reqs[q].prompt, self.pi[q], self.pi[q] + 1, [], False
                    ):
                        res.kv_allocation_failures += 1
                kv.release(q)
                self.heap.push((now + adv, "left", q))
                res.e2e_us[q] = res.ttft_us[q] + sum(self.itl[q])
                res.done_us[q] = now + adv
                res.state[q] = "done"
                res.completed += 1
            else:
                remaining.append(q)
        self.running = remaining

        # step 7
        if self.running:
            self.heap.push((now + adv, "step", -1))
            self.step_event = True
        else:
            self.step_event = False
            if self.wait:
                self.heap.push((now + adv, "step", -1))
                self.step_event = True


# =============================================================================================
# vllm: SPEC §2 and engine/sched_vllm_nb.py's docstring
# =============================================================================================


class VllmKV:
    """Paged blocks with a vLLM-style prefix cache: content key -> resident blocks."""

    def __init__(self, total: int, bs: int, caching: bool):
        self.total = total
        self.bs = bs
        self.caching = caching
        self.ref = [0] * total
        self.key: list = [None] * total
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(total))
        self.index: dict = {}  # key -> OrderedDict of block ids holding that content
        self.owned: dict[int, list[int]] = {}
        self.used = 0
        self.peak = 0
        self.hits = 0
        self.misses = 0

    def _use(self) -> None:
        self.used += 1
        self.peak = max(self.peak, self.used)

    def lookup(self, keys: list) -> list[int]:
        out = []
        for k in keys:
            holders = self.index.get(k)
            if not holders:
                break
            out.append(next(iter(holders)))
        return out

    def allocate(self, r: int, n_before: int, n_tok: int, keys: list, cached: list[int]) -> bool:
        """Blocks for the first n_tok tokens of r (keys[j] = content key of its block j; the
        first n_before tokens were already held), attaching ``cached`` first; False, with
        nothing changed, when they do not fit."""
        blocks = self.owned.setdefault(r, [])
        need = ceil_div(n_tok, self.bs) - len(blocks) - len(cached)
        free_cached = sum(1 for b in cached if self.ref[b] == 0)
        if need > len(self.free) - free_cached:
            if not blocks:
                del self.owned[r]
            return False
        for b in cached:
            if self.ref[b] == 0:
                del self.free[b]
                self._use()
            self.ref[b] += 1
            self.hits += 1
            blocks.append(b)
        for _ in range(max(need, 0)):
            b, _ = self.free.popitem(last=False)
            if self.key[b] is not None:  # evict its cached content
                holders = self.index[self.key[b]]
                del holders[b]
                if not holders:
                    del self.index[self.key[b]]
                self.key[b] = None
            self.ref[b] = 1
            self._use()
            self.misses += 1
            blocks.append(b)
        if self.caching:  # blocks that became full now
            for j in range(n_before // self.bs, n_tok // self.bs):
                b = blocks[j]
                if self.key[b] is None:  # (blocks attached as hits already have a key)
                    self.key[b] = keys[j]
                    self.index.setdefault(keys[j], OrderedDict())[b] = None
        if not blocks:
            del self.owned[r]
        return True

    def release(self, r: int) -> None:
        for b in reversed(self.owned.pop(r, [])):
            self.ref[b] -= 1
            if self.ref[b] == 0:
                self.used -= 1
                self.free[b] = None  # tail, keeping its cached content


class _Slot:
    __slots__ = ("n", "nc", "r")

    def __init__(self, r: int, nc: int):
        self.r = r
        self.nc = nc  # tokens whose KV is computed
        self.n = 0  # tokens scheduled this step


class _Vllm:
    def __init__(self, requests: list[Req], cfg: RefConfig, step_cost: StepCost):
        self.reqs = requests
        self.cfg = cfg
        self.cost = step_cost
        self.bs = cfg.block_size
        n = len(requests)
        self.res = _new_result(n)
        self.want = [max(q.output, 1) for q in requests]
        self.gen = [0] * n  # output tokens generated (kept over a preemption)
        self.last = [0] * n  # time of the latest token
        self.kv = VllmKV(cfg.total_kv_blocks, cfg.block_size, cfg.prefix_caching)
        self._keys: dict[int, list] = {}

    def keys(self, r: int) -> list:
        """Content key of each full block of r's whole sequence (the tuple of its prefix)."""
        if r not in self._keys:
            q = self.reqs[r]
            seq = [token(q, r, i) for i in range(q.prompt + self.want[r])]
            self._keys[r] = [tuple(seq[: (j + 1) * self.bs]) for j in range(len(seq) // self.bs)]
        return self._keys[r]

    def run(self) -> RefResult:
        cfg = self.cfg
        res = self.res
        kv = self.kv
        bs = self.bs
        thr = cfg.long_prefill_token_threshold
        reqs = self.reqs
        wait: deque[int] = deque()
        running: list[_Slot] = []
        t = 0
        nxt = 0
        idle = 0
        while True:
            while nxt < len(reqs) and reqs[nxt].arrival_us <= t:
                r = nxt
                nxt += 1
                q = reqs[r]
                if ceil_div(q.prompt + self.want[r] - 1, bs) > cfg.total_kv_blocks:
                    res.dropped += 1
                    res.state[r] = "dropped"
                    continue
                wait.append(r)
                res.state[r] = "queued"
                res.input_tokens += q.prompt
            if not running and not wait:
                if nxt >= len(reqs):
                    break
                t = reqs[nxt].arrival_us
                continue
            if cfg.horizon_us > 0 and t > cfg.horizon_us:
                res.status = "horizon"
                break
            res.steps += 1
            if res.steps > cfg.max_steps:
                raise RuntimeError("reference: too many steps")
            budget = cfg.max_num_scheduled_tokens
            preempted = False
            scheduled: list[_Slot] = []
            # running requests, in admission order, within the budget
            k = 0
            while k < len(running) and budget > 0:  # victims leave from the end
                s = running[k]
                r = s.r
                n = reqs[r].prompt + self.gen[r] - s.nc
                if 0 < thr < n:
                    n = thr
                n = min(n, budget)
                ok = True
                while not kv.allocate(r, s.nc, s.nc + n, self.keys(r), []):
                    v = running.pop()  # the most recently admitted
                    kv.release(v.r)
                    wait.appendleft(v.r)
                    res.state[v.r] = "queued"
                    res.preemptions[v.r] += 1
                    res.preemption_count += 1
                    preempted = True
                    if v is s:
                        ok = False
                        break
                if not ok:
                    break
                s.n = n
                budget -= n
                scheduled.append(s)
                k += 1
            # admission, only in a step without preemption
            if not preempted:
                while wait and budget > 0 and len(running) < cfg.max_num_running_reqs:
                    r = wait[0]
                    n_tok = reqs[r].prompt + self.gen[r]
                    cached = []
                    if cfg.prefix_caching:  # at least one token is always computed
                        cached = kv.lookup(self.keys(r)[: (n_tok - 1) // bs])
                    c = len(cached)
                    n = n_tok - c * bs
                    if 0 < thr < n:
                        n = thr
                    n = min(n, budget)
                    if not kv.allocate(r, c * bs, c * bs + n, self.keys(r), cached):
                        break
                    wait.popleft()
                    s = _Slot(r, c * bs)
                    s.n = n
                    running.append(s)
                    res.state[r] = "running"
                    budget -= n
                    if res.sched_us[r] < 0:
                        res.sched_us[r] = t - reqs[r].arrival_us
                    scheduled.append(s)
            if not scheduled:
                idle += 1
            else:
                idle = 0
            prefills = []
            decodes = []
            for s in scheduled:
                g = self.gen[s.r]
                if g > 0 and s.n == 1 and s.nc == reqs[s.r].prompt + g - 1:
                    decodes.append(s.nc)
                else:
                    prefills.append((s.nc, s.n))
            step_us = int(self.cost(prefills, decodes))
            res.step_log.append((t, step_us, len(running), len(wait), kv.used))
            t_end = t + step_us
            if scheduled:
                res.busy_us += step_us
            for s in scheduled:
                r = s.r
                s.nc += s.n
                if s.nc == reqs[r].prompt + self.gen[r]:
                    self.gen[r] += 1
                    res.output_tokens += 1
                    if self.gen[r] == 1:
                        res.ttft_us[r] = t_end - reqs[r].arrival_us
                    else:
                        res.itl_us.append(t_end - self.last[r])
                    self.last[r] = t_end
                    if self.gen[r] >= self.want[r]:
                        kv.release(r)
                        running.remove(s)
                        res.e2e_us[r] = t_end - reqs[r].arrival_us
                        res.done_us[r] = t_end
                        res.state[r] = "done"
                        res.completed += 1
            t = t_end
            res.clock_us = t_end
        res.still_queued = len(wait)
        res.still_running = len(running)
        res.tokens = list(self.gen)
        res.kv_peak, res.hits, res.misses = kv.peak, kv.hits, kv.misses
        return res
