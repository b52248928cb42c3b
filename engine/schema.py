"""Every array layout and every metric of infersweep, declared once (STYLE: declared once).

A *layout* names the columns of one int64/float64 array that the kernels share: the request
table ``Q_*``, the per-request outputs ``O_*``, the config vector ``CFG_*``, the run counters
``SC_*``, the step log ``LOG_*``, the KV pool's ``ST_*``/``B_*``/``R_*``, an instance's state
``K_*``/``RS_*``/``SL_*``/``IQ_*`` (vllm) and ``BQ_*`` (blis), clusters' ``CL_*``/``CI_*``,
the cost model's ``P_*``/``I_*`` and the step-cost components ``C_*``.  A *code* list names the
values of one int field (request states ``STATE_*``, run statuses ``STATUS_*``, routers
``ROUTER_*``).  The summary metrics ``M_*``
are a layout too: the slots of the vector that ``metrics/summary_nb.py`` fills, in output order.

Each declaration is a tuple of :class:`Field` (name, units, long name, description).  The
module then exports, for numba, one plain ``int`` per field: ``PREFIX + NAME.upper()`` is its
index (or code) and ``N_<...>`` the layout's width, e.g. ``Q_ARRIVAL = 0`` ... ``N_Q = 6``.
Kernels import those ints (numba freezes module-level ints as compile-time constants, so a named
index costs nothing); Python code uses the declarations (``METRICS``, ``metric_table_markdown``).

To add a column, append a field to its declaration (appending keeps every other index); to add a
metric, append a :class:`Metric` to ``METRICS`` and compute it in ``summarize_nb``.  Everything
else (the summary dict of ``run``, sweep result columns, Dataset attributes, the README table)
follows.  ``engine/_jit.py`` hashes this file into the kernel cache's name, so a changed index
never meets stale machine code.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Field:
    """One column of a layout (or one value of a code list)."""

    name: str  # lower-case; the exported constant is PREFIX + name.upper()
    units: str
    long_name: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class Metric(Field):
    """One summary metric: a slot of the summary vector and, if ``column``, a result column."""

    integer: bool = False  # a count: printed as an int by ``run``
    column: bool = True  # False: a code (status) decoded by name, not a numeric column


@dataclass(frozen=True, slots=True)
class Layout:
    """The named columns of one array: ``fields[i]`` lives at index i."""

    prefix: str  # e.g. "Q_": the constants are Q_ARRIVAL, ...
    width_name: str  # e.g. "N_Q": the number of columns
    title: str
    fields: tuple[Field, ...]
    _names: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    _pos: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # names and positions once (run reads them per metric)
        object.__setattr__(self, "_names", tuple(f.name for f in self.fields))
        object.__setattr__(self, "_pos", {n: i for i, n in enumerate(self._names)})

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def index(self, name: str) -> int:
        try:
            return self._pos[name]
        except KeyError:
            raise ValueError(f"{name!r} is not a field of {self.title}") from None

    def constant(self, name: str) -> str:
        return self.prefix + name.upper()

    def constants(self) -> dict[str, int]:
        consts = {self.constant(f.name): i for i, f in enumerate(self.fields)}
        if self.width_name:
            consts[self.width_name] = len(self.fields)
        if len(consts) != len(self.fields) + bool(self.width_name):
            raise ValueError(f"duplicate field in layout {self.title!r}")
        return consts


def _f(name: str, units: str, long_name: str, description: str = "") -> Field:
    return Field(name, units, long_name, description)


def _code(name: str, description: str) -> Field:
    return Field(name, "1", name, description)


# --------------------------------------------------------------------------------------------
# scheduler kernels (scheduler/*_nb.py): inputs, outputs, counters, step log
# --------------------------------------------------------------------------------------------

REQUEST = Layout(
    "Q_",
    "N_Q",
    "request table rq[i, :] (int64, sorted by arrival)",
    (
        _f("arrival", "us", "arrival time"),
        _f("prompt", "tokens", "prompt tokens"),
        _f("output", "tokens", "output tokens"),
        _f("group", "1", "shared-prefix group", "-1 = none"),
        _f("prefix", "tokens", "shared prefix", "tokens of the group's prefix it starts with"),
        _f("slot", "1", "first prefix slot", "first prefix-table slot of its own block keys"),
    ),
)

OUTPUT = Layout(
    "O_",
    "N_O",
    "per-request outputs out[i, :] (int64)",
    (
        _f("ttft", "us", "time to first token", "-1 = none"),
        _f("e2e", "us", "end-to-end latency", "-1 = not completed"),
        _f("sched", "us", "scheduling delay", "arrival to first scheduling; -1 = never"),
        _f("done", "us", "completion time", "absolute; -1 = not completed"),
        _f("state", "1", "request state", "a STATE_* code"),
        _f("preempt", "1", "times preempted"),
        _f("tokens", "tokens", "output tokens generated", "counted per the semantics"),
    ),
)

REQUEST_STATES = Layout(
    "STATE_",
    "",
    "request states (out[i, O_STATE])",
    (
        _code("pending", "not yet arrived when the run ended"),
        _code("queued", "in the wait queue"),
        _code("running", "in the running batch"),
        _code("done", "completed"),
        _code("dropped", "can never fit in the KV cache (or dropped by blis' livelock guard)"),
    ),
)

CONFIG = Layout(
    "CFG_",
    "N_CFG",
    "scheduler config vector cfg (int64)",
    (
        _f("budget", "tokens", "token budget per step", "--max-num-scheduled-tokens"),
        _f("max_run", "1", "running-batch cap", "--max-num-running-reqs"),
        _f("threshold", "tokens", "long-prefill threshold", "0 = off"),
        _f("block", "tokens", "KV block size", "--block-size-in-tokens"),
        _f("blocks", "blocks", "total KV blocks"),
        _f("max_idle", "1", "stall guard", "steps without progress before stopping"),
        _f("prefix_cache", "1", "prefix caching", "1 = on (vllm semantics)"),
        _f("horizon", "us", "horizon", "stop once the clock passes it; <= 0 = none"),
        _f("literal", "1", "literal blis preemption", "1 = copy the reference's quirks"),
        _f("role", "1", "instance role", "a ROLE_* code; 0 = a whole instance"),
    ),
)

SCALARS = Layout(
    "SC_",
    "N_SC",
    "run counters sc (int64), filled at the end of a run",
    (
        _f("clock", "us", "time of the last event"),
        _f("completed", "1", "completed requests"),
        _f("queued", "1", "requests still queued"),
        _f("running", "1", "requests still running"),
        _f("dropped", "1", "dropped requests"),
        _f("input_tok", "tokens", "input tokens"),
        _f("output_tok", "tokens", "output tokens"),
        _f("preempt", "1", "preemptions"),
        _f("kv_peak", "blocks", "peak KV blocks used"),
        _f("hits", "blocks", "prefix-cache hits"),
        _f("misses", "blocks", "blocks allocated fresh"),
        _f("kv_fail", "1", "KV allocation failures", "blis final-token allocations"),
        _f("steps", "1", "engine steps"),
        _f("status", "1", "run status", "a STATUS_* code"),
        _f("n_itl", "1", "ITL samples"),
        _f("log_n", "1", "step-log rows written"),
        _f("busy_us", "us", "busy time", "time with a non-empty step running"),
        _f("livelock", "1", "livelock", "literal blis: the reference would not terminate"),
    ),
)

RUN_STATUS = Layout(
    "STATUS_",
    "",
    "run status codes (sc[SC_STATUS])",
    (
        _code("ok", "every request that arrived was handled"),
        _code("stalled", "no progress possible; stopped"),
        _code("horizon", "stopped at --horizon"),
        _code("itl_full", "internal: the ITL buffer was too small (the driver retries)"),
        _code("unservable", "set after the kernel: it ended, but no request completed"),
    ),
)

STEP_LOG = Layout(
    "LOG_",
    "N_LOG",
    "optional step log log[step, :] (int64)",
    (
        _f("time", "us", "step start"),
        _f("step_us", "us", "step time"),
        _f("n_prefill", "1", "prefill entries"),
        _f("n_decode", "1", "decode entries"),
        _f("tokens", "tokens", "tokens scheduled", "the budget used by batch formation"),
        _f("running", "1", "running requests"),
        _f("waiting", "1", "waiting requests"),
        _f("kv_used", "blocks", "KV blocks in use"),
        _f("prefill_tok", "tokens", "prefill tokens"),
    ),
)

# --------------------------------------------------------------------------------------------
# the state of one scheduler instance (vllm_nb.py), all in caller-allocated arrays so that a run
# can pause at a step boundary and resume (a cluster advances its instances this way)
# --------------------------------------------------------------------------------------------

INSTANCE = Layout(
    "K_",
    "N_K",
    "instance scalars k (int64): clock, arrival cursor, wait-queue ring and counters",
    (
        _f("t", "us", "clock", "the next step boundary"),
        _f("clock", "us", "time of the last event"),
        _f("wq_head", "1", "wait-queue ring head", "k[K_WQ_HEAD:K_WQ_HEAD + 2] is the deque meta"),
        _f("wq_n", "1", "waiting requests"),
        _f("n_arrived", "1", "arrivals seen", "cursor into the instance's arrival list"),
        _f("n_known", "1", "arrivals routed", "length of the instance's arrival list"),
        _f("n_run", "1", "running requests"),
        _f("steps", "1", "engine steps"),
        _f("idle", "1", "steps in a row without progress"),
        _f("status", "1", "run status", "a STATUS_* code"),
        _f("ended", "1", "ended", "1 once the instance stopped (stall or horizon)"),
        _f("input_tok", "tokens", "input tokens"),
        _f("output_tok", "tokens", "output tokens"),
        _f("completed", "1", "completed requests"),
        _f("dropped", "1", "dropped requests"),
        _f("preempt", "1", "preemptions"),
        _f("busy_us", "us", "busy time"),
        _f("routed", "1", "requests routed to the instance"),
        # prefill/decode disaggregation (scheduler/pd_nb.py); 0 for whole instances
        _f("held", "1", "requests holding blocks outside the batch", "P/D: awaiting transfer"),
        _f("stuck", "1", "waiting for transfers", "1: paused, nothing runs until one ends"),
        _f("n_out", "1", "outbox length", "P/D: handoffs or bookings since the last pause"),
        _f("out_head", "1", "outbox head", "P/D: first request of the outbox"),
        _f("out_tail", "1", "outbox tail", "P/D: last request of the outbox"),
    ),
)

REQUEST_STATE = Layout(
    "RS_",
    "N_RS",
    "per-request scheduler state rs[RS_*, r] (int64 rows; survives a preemption)",
    (
        _f("gen", "tokens", "output tokens generated so far"),
        _f("last_tok", "us", "time of its latest token"),
        _f("want", "tokens", "output tokens to generate", "at least 1"),
        # prefill/decode disaggregation (scheduler/pd_nb.py)
        _f("kv", "1", "where its KV comes from", "a KV_* code"),
        _f("xfer_tok", "tokens", "tokens to transfer", "prompt tokens not cached at the decode"),
        _f("book_t", "us", "transfer booked", "when the decode instance allocated its blocks"),
        _f("out_next", "1", "next in the outbox", "P/D: the request pushed after it"),
    ),
)

BLIS_REQUEST_STATE = Layout(
    "BQ_",
    "N_BQ",
    "per-request blis scheduler state bq[BQ_*, r] (int64 rows; REFERENCE §6.2-§6.3 names)",
    (
        _f("progress", "tokens", "ProgressIndex (PI)", "tokens processed"),
        _f("computed", "tokens", "computed[id]", "PI after this step's tokens"),
        _f("num_new", "tokens", "NumNewTokens", "of the latest scheduling"),
        _f("itl_sum", "us", "sum of ITL entries", "E2E = TTFT + sum of ITL"),
        _f("evicted_at", "1", "step of its latest eviction", "safe mode, Q3; -1 = never"),
        _f("lone_best", "tokens", "livelock guard", "furthest lone self-eviction; -1 = none"),
    ),
)

INSTANCE_QUEUES = Layout(
    "IQ_",
    "N_IQ",
    "an instance's request lists iq[IQ_*, :] (int64 rows)",
    (
        _f("wait", "1", "wait queue", "a ring deque; head and length in k[K_WQ_HEAD:]"),
        _f("arr_req", "1", "arrival list", "requests routed to the instance, in arrival order"),
        _f("arr_t", "us", "arrival at the instance", "client arrival + routing latency"),
    ),
)

SLOTS = Layout(
    "SL_",
    "N_SL",
    "the running batch sl[SL_*, k] (int64 rows; slot k in admission order)",
    (
        _f("req", "1", "request"),
        _f("computed", "tokens", "tokens whose KV is computed"),
        _f("gen", "tokens", "output tokens generated"),
        _f("prompt", "tokens", "prompt tokens"),
        _f("want", "tokens", "output tokens to generate"),
        _f("last_tok", "us", "time of its latest token"),
        _f("kv_cap", "tokens", "tokens its KV blocks can hold"),
        _f("full_at", "tokens", "token count that completes its next block"),
        _f("new", "tokens", "tokens scheduled this step"),
    ),
)

# --------------------------------------------------------------------------------------------
# clusters: replicas behind a router (scheduler/cluster_nb.py)
# --------------------------------------------------------------------------------------------

CLUSTER = Layout(
    "CL_",
    "N_CL",
    "cluster config vector ccfg (int64)",
    (
        _f("replicas", "1", "instances", "identical instances on one clock"),
        _f("router", "1", "router", "a ROUTER_* code"),
        _f("affinity_slack", "requests", "affinity slack", "prefix-affinity's load bound"),
        _f("snapshot_us", "us", "snapshot interval", "0 = the router sees current load"),
        _f("latency_us", "us", "routing latency", "added to each request's arrival"),
        _f("seed", "1", "router seed", "random router"),
        _f("w_load", "1/1000", "weighted: load weight", "in thousandths"),
        _f("w_kv", "1/1000", "weighted: KV weight", "in thousandths"),
        _f("w_prefix", "1/1000", "weighted: prefix weight", "in thousandths"),
        # prefill/decode disaggregation (scheduler/pd_nb.py)
        _f("prefill", "1", "prefill instances", "0 = not disaggregated"),
        _f("decode", "1", "decode instances", "0 = not disaggregated"),
        _f("link_bps", "B/s", "KV link bandwidth", "bytes per second, per GPU"),
        _f("link_lat_ns", "ns", "KV link latency", "per transfer"),
        _f("lockstep", "1", "P/D reference mode", "1: advance to the next event of any kind"),
    ),
)

ROLES = Layout(
    "ROLE_",
    "",
    "instance roles (cfg[CFG_ROLE], inst[i, CI_ROLE])",
    (
        _code("whole", "a whole instance: prefills and decodes its requests"),
        _code("prefill", "P/D: prefills, hands each request off after its first token"),
        _code("decode", "P/D: takes requests whose prompt KV is transferred, decodes them"),
    ),
)

KV_SOURCES = Layout(
    "KV_",
    "",
    "where a request's KV comes from (rs[RS_KV, r])",
    (
        _code("local", "computed by the instance itself"),
        _code("remote", "P/D: at a decode instance, to be transferred; needs its blocks"),
        _code("ready", "P/D: transferred; the request is admitted as a decode"),
    ),
)

ROUTERS = Layout(
    "ROUTER_",
    "",
    "router codes (ccfg[CL_ROUTER]); names as the router setting with _ for -",
    (
        _code("round_robin", "instance (i mod replicas) for the i-th request"),
        _code("random", "uniformly random instance (seeded)"),
        _code("least_outstanding", "fewest requests queued, running or in flight to it"),
        _code("least_kv", "lowest KV blocks in use"),
        _code("prefix_affinity", "the instance holding the request's prefix, within a slack"),
        _code("weighted", "lowest load + KV - prefix score"),
    ),
)

INSTANCE_METRICS = Layout(
    "CI_",
    "N_CI",
    "per-instance counters inst[i, :] of a cluster run (int64)",
    (
        _f("requests", "1", "requests routed to it"),
        _f("completed", "1", "completed requests"),
        _f("dropped", "1", "dropped requests"),
        _f("preempt", "1", "preemptions"),
        _f("kv_peak", "blocks", "peak KV blocks used"),
        _f("hits", "blocks", "prefix-cache hits"),
        _f("misses", "blocks", "blocks allocated fresh"),
        _f("busy_us", "us", "busy time"),
        _f("clock", "us", "time of its last event"),
        _f("steps", "1", "engine steps"),
        _f("output_tok", "tokens", "output tokens"),
        _f("role", "1", "role", "a ROLE_* code"),
        _f("handoffs", "1", "handoffs", "P/D: requests sent on (prefill) or taken over (decode)"),
        _f("link_busy_us", "us", "KV link busy time", "P/D prefill instances: transfers"),
        _f("kv_blocks", "blocks", "its KV blocks", "the size of its pool"),
    ),
)

# --------------------------------------------------------------------------------------------
# KV block pool (scheduler/kvcache_nb.py, REFERENCE §6.4)
# --------------------------------------------------------------------------------------------

POOL = Layout(
    "ST_",
    "N_ST",
    "KV pool scalars st (int64)",
    (
        _f("fresh", "1", "first never-used block"),
        _f("head", "1", "free-list head", "-1 = empty"),
        _f("tail", "1", "free-list tail"),
        _f("used", "blocks", "blocks with refcount > 0"),
        _f("hits", "blocks", "cached blocks attached", "prefix-cache hits"),
        _f("misses", "blocks", "blocks allocated fresh"),
        _f("total", "blocks", "total blocks"),
        _f("bs", "tokens", "block size"),
        _f("peak", "blocks", "peak used blocks"),
    ),
)

BLOCK = Layout(
    "B_",
    "N_B",
    "per-block fields blk[b, :] (int64)",
    (
        _f("ref", "1", "reference count"),
        _f("prev", "1", "previous free block"),
        _f("nxt", "1", "next free block"),
        _f("ntok", "tokens", "tokens in the block"),
        _f("slot", "1", "prefix-table slot of its key", "-1 = none"),
        _f("knext", "1", "next block under the same key", "vllm; -1 = last"),
    ),
)

REQUEST_BLOCKS = Layout(
    "R_",
    "N_R",
    "per-request block-list fields rinfo[r, :] (int64)",
    (
        _f("off", "1", "start of the block list in rb"),
        _f("cnt", "blocks", "blocks in the list"),
        _f("tok", "tokens", "tokens held in the blocks"),
        _f("ord", "1", "in order", "1 while the blocks hold the sequence in order from 0"),
    ),
)

# --------------------------------------------------------------------------------------------
# cost model (costmodel/stepcost_nb.py, REFERENCE §4-§5)
# --------------------------------------------------------------------------------------------

COST_PARAMS = Layout(
    "P_",
    "N_PAR",
    "cost-model parameters ctf[0:N_PAR] (float64)",
    (
        _f("peak", "FLOP/s", "peak FLOP/s", "TFlopsPeak * 1e12"),
        _f("bw", "B/s", "effective bandwidth", "BwPeakTBs * 1e12 * efficiency"),
        _f("tau", "1", "1 / TP"),
        _f("tp", "1", "TP"),
        _f("l", "1", "layers"),
        _f("h", "1", "attention heads"),
        _f("hd", "1", "head dimension", "d div H"),
        _f("bpp", "bytes", "bytes per parameter"),
        _f("wb", "bytes", "weight bytes W_b"),
        _f("kvtok", "bytes", "KV bytes per token", "2 * L * KV * (d/H) * B"),
        _f("acttok", "bytes", "activation bytes per token", "L * d * B"),
        _f("ovh_layer", "us", "per-layer overhead", "perLayerOverhead * L / TP"),
        _f("ovh_step", "us", "step overhead", "TOverheadMicros, non-empty steps"),
        _f("ovh_prefill", "us", "prefill overhead", "per prefill entry, prefill-only steps"),
        _f("ovh_mixed", "us", "mixed prefill overhead", "per prefill entry, mixed steps"),
        _f("ovh_allreduce", "us", "all-reduce overhead", "AllReduceLatency * 2 * L if TP > 1"),
        _f("v1", "1", "roofline v1", "1.0 = constant efficiencies"),
        _f("mfu_prefill", "1", "v1 prefill MFU"),
        _f("mfu_decode", "1", "v1 decode MFU"),
        _f("pf_scale", "1", "prefill compute scale", "PrefillComputeScale (1.0 when not set)"),
        _f("dc_scale", "1", "decode compute scale", "DecodeComputeScale (1.0 when not set)"),
        _f("ovh_req", "us", "per-request step overhead", "StepRequestOverheadMicros, per entry"),
        _f("ar_us_tok", "us", "all-reduce time per token", "from AllReduceBwGBs; 0 = off"),
        _f("req_fixed", "us", "request overhead", "RequestOverheadMicros: TTFT and E2E"),
        _f("req_prompt", "us", "per-prompt-token overhead", "PromptTokenOverheadMicros"),
        _f("req_output", "us", "per-output-token overhead", "OutputTokenOverheadMicros: E2E"),
        _f("ovh_layer_all", "us", "per-layer overhead", "LayerOverheadMicros * L, not / TP"),
        _f("req_steps", "1", "first-token delay", "FirstTokenDelaySteps (mean ITLs)"),
        _f("ovh_ar_peer", "us", "all-reduce peer latency", "peer latency * 2 * L * (TP - 1)"),
        # extended models (MoE, MLA, sliding window, quantised weights; costmodel/moe.py): the
        # defaults (0, 1, 0, 0) leave every dense bf16 step bit-identical
        _f("ext", "1", "extended model", "1.0: G(M), WB(M) and all-to-all C(M) from tables"),
        _f("dec_attn", "1", "decode / prefill attention FLOPs", "per (query, key); MLA"),
        _f("slide_frac", "1", "sliding-window layers", "fraction of the layers"),
        _f("window", "tokens", "sliding window"),
        _f(
            "plain",
            "1",
            "plain step",
            "1.0: the fitted and extended step terms are neutral (scales 1, ovh_req, "
            "ovh_layer_all, ovh_ar_peer, ar_us_tok 0, ext 0); the kernel skips them",
        ),
    ),
)

COST_HEADER = Layout(
    "I_",
    "N_HEAD",
    "cost-model header cti[0:N_HEAD] (int64): sizes, and offsets into ctf (float data) or cti",
    (
        _f("gemm_tab_n", "1", "length of each G(M) table", "M = 0 .. n-1"),
        _f("gemm_p", "1", "ctf: G(M) of prefill GEMMs"),
        _f("gemm_d", "1", "ctf: G(M) of decode GEMMs"),
        _f("shape_k", "1", "cti[7]: inner size of Q, K, V, O, gate, up, down"),
        _f("shape_n", "1", "cti[7]: output size"),
        _f("group_off", "1", "cti[8]: group entries of shape j"),
        _f("group_m", "1", "cti: m of each group entry", "sorted within a shape"),
        _f("group_mfu", "1", "ctf: mfu of each group entry"),
        _f("gemm_rows", "1", "GEMM rows", "fallback search"),
        _f("gemm_m", "1", "cti: GEMM row m"),
        _f("gemm_k", "1", "cti: GEMM row k"),
        _f("gemm_n", "1", "cti: GEMM row n"),
        _f("gemm_mfu", "1", "ctf: GEMM row mfu"),
        _f("pf_bucket", "1", "ctf[N_BUCKETS]: mfu_p at each prefill bucket length"),
        _f("n_bs", "1", "decode grid: batch-size axis length"),
        _f("bs", "1", "cti: decode grid batch-size axis"),
        _f("n_kv", "1", "decode grid: kv axis length"),
        _f("kv", "1", "cti: decode grid kv axis"),
        _f("grid", "1", "ctf[n_bs * n_kv]: decode MFU", "0.0 where the grid has no row"),
        _f("n_rows", "1", "decode rows", "fallback search"),
        _f("row_bs", "1", "cti: decode row batch size"),
        _f("row_kv", "1", "cti: decode row kv"),
        _f("row_mfu", "1", "ctf: decode row mfu"),
        _f("ext_wb", "1", "ctf[gemm_tab_n]: weight bytes WB(M)", "extended models"),
        _f("ext_comm", "1", "ctf[gemm_tab_n]: all-to-all seconds C(M)", "extended models"),
    ),
)

STEP_COMPONENTS = Layout(
    "C_",
    "N_COMPONENTS",
    "components of one step time, written by step_time_nb (float64)",
    (
        _f("prefill_compute", "us", "prefill compute time"),
        _f("prefill_memory", "us", "prefill memory time"),
        _f("decode_compute", "us", "decode compute time"),
        _f("decode_memory", "us", "decode memory time"),
        _f("overhead", "us", "overheads"),
        _f("hardware", "us", "hardware time", "max of the roofline phases"),
    ),
)

# --------------------------------------------------------------------------------------------
# summary metrics (metrics/summary_nb.py): one slot each, in the order ``run`` prints them
# (the reference simulator's keys in its order, then ours)
# --------------------------------------------------------------------------------------------


def _count(name: str, units: str, long_name: str, description: str) -> Metric:
    return Metric(name, units, long_name, description, integer=True)


def _real(name: str, units: str, long_name: str, description: str) -> Metric:
    return Metric(name, units, long_name, description)


def _pct(stem: str, p: str, what: str, description: str) -> Metric:
    long = {"mean": "mean", "p50": "median"}.get(p, p)
    return _real(f"{stem}_{p}_ms", "ms", f"{long} {what}", description)


METRICS: tuple[Metric, ...] = (
    # the reference simulator's keys (after its "instance_id"), in its order
    _count("completed_requests", "1", "completed requests", "Requests that finished."),
    _count("still_queued", "1", "requests still queued", "Requests waiting when the run ended."),
    _count(
        "still_running",
        "1",
        "requests still running",
        "Requests in the running batch when the run ended.",
    ),
    _count(
        "injected_requests",
        "1",
        "injected requests",
        "completed + still queued + still running + dropped.",
    ),
    _count(
        "total_input_tokens",
        "tokens",
        "total input tokens",
        "Prompt tokens of the requests that entered the queue.",
    ),
    _count(
        "total_output_tokens",
        "tokens",
        "total output tokens",
        "Output tokens produced (blis semantics: decode-step tokens only, "
        "as the reference counts them).",
    ),
    _real(
        "vllm_estimated_duration_s", "s", "simulated duration", "Time of the last simulated event."
    ),
    _real(
        "responses_per_sec",
        "1/s",
        "completed requests per second",
        "completed_requests / duration.",
    ),
    _real(
        "tokens_per_sec", "tokens/s", "output tokens per second", "total_output_tokens / duration."
    ),
    _pct("e2e", "mean", "end-to-end latency", "Mean of arrival-to-last-token time."),
    _pct("e2e", "p90", "end-to-end latency", "90th percentile of E2E latency."),
    _pct("e2e", "p95", "end-to-end latency", "95th percentile of E2E latency."),
    _pct("e2e", "p99", "end-to-end latency", "99th percentile of E2E latency."),
    _pct("ttft", "mean", "time to first token", "Mean of arrival-to-first-token time."),
    _pct("ttft", "p90", "time to first token", "90th percentile of TTFT."),
    _pct("ttft", "p95", "time to first token", "95th percentile of TTFT."),
    _pct("ttft", "p99", "time to first token", "99th percentile of TTFT."),
    _pct(
        "itl",
        "mean",
        "inter-token latency",
        "Mean over all inter-token gaps of completed requests.",
    ),
    _pct("itl", "p90", "inter-token latency", "90th percentile of the ITL samples."),
    _pct("itl", "p95", "inter-token latency", "95th percentile of the ITL samples."),
    _pct("itl", "p99", "inter-token latency", "99th percentile of the ITL samples."),
    _pct(
        "scheduling_delay",
        "p99",
        "scheduling delay",
        "99th percentile of arrival-to-first-scheduling time.",
    ),
    _count(
        "kv_allocation_failures",
        "1",
        "KV allocation failures",
        "Final-token KV allocations that failed (blis semantics).",
    ),
    _count("preemption_count", "1", "preemptions", "Requests evicted from the running batch."),
    _count(
        "dropped_unservable",
        "1",
        "dropped requests",
        "Requests that can never fit in the KV cache.",
    ),
    # ours
    _pct("ttft", "p50", "time to first token", "50th percentile of TTFT."),
    _pct("e2e", "p50", "end-to-end latency", "50th percentile of E2E latency."),
    _pct("itl", "p50", "inter-token latency", "50th percentile of the ITL samples."),
    _pct(
        "tpot",
        "mean",
        "time per output token",
        "Mean over requests of (E2E - TTFT) / (outputs - 1).",
    ),
    _pct("tpot", "p50", "time per output token", "50th percentile of TPOT."),
    _pct("tpot", "p90", "time per output token", "90th percentile of TPOT."),
    _pct("tpot", "p99", "time per output token", "99th percentile of TPOT."),
    _pct(
        "scheduling_delay", "mean", "scheduling delay", "Mean of arrival-to-first-scheduling time."
    ),
    _pct("scheduling_delay", "p50", "scheduling delay", "50th percentile of the scheduling delay."),
    _count("kv_blocks_total", "blocks", "KV blocks", "KV-cache blocks available."),
    _count("kv_peak_blocks", "blocks", "peak KV blocks used", "Most KV blocks in use at once."),
    _real("kv_peak_fraction", "1", "peak KV utilisation", "kv_peak_blocks / kv_blocks_total."),
    _real(
        "cache_hit_rate",
        "1",
        "prefix-cache hit rate",
        "Cached blocks reused / (reused + newly allocated).",
    ),
    _real(
        "preemption_rate",
        "1",
        "preemptions per completed request",
        "preemption_count / completed_requests.",
    ),
    _count("steps", "1", "engine steps", "Scheduler steps simulated."),
    _real(
        "utilization",
        "1",
        "engine busy fraction",
        "Time spent in non-empty steps / simulated duration.",
    ),
    _count(
        "blis_safe_fallback",
        "1",
        "rerun in safe preemption mode",
        "blis semantics: 1 when the reference's preemption rules would never terminate, "
        "so the run used blis_preemption safe.",
    ),
    _real(
        "load_imbalance",
        "1",
        "load imbalance",
        "Clusters (replicas > 1): the most requests routed to one instance / the mean; 1 for "
        "a single instance.",
    ),
    # the run's STATUS_* code: reported by name (``status``), not as a numeric column
    Metric("status", "1", "run status", "A STATUS_* code.", integer=True, column=False),
    # prefill/decode disaggregation (after status, so that every earlier slot keeps its index)
    _pct(
        "kv_transfer",
        "mean",
        "KV transfer time",
        "P/D: decode allocation to KV arrival (link queueing + latency + bytes / bandwidth), "
        "mean over transferred requests; 0 without disaggregation.",
    ),
    _pct("kv_transfer", "p99", "KV transfer time", "P/D: 99th percentile of the transfer time."),
    _real(
        "kv_link_utilization",
        "1",
        "KV link utilisation",
        "P/D: the prefill instances' links' mean busy fraction of the run; 0 without "
        "disaggregation.",
    ),
)

SUMMARY = Layout("M_", "N_M", "summary vector (float64) of one run", METRICS)

#: the numeric result columns of a sweep, in output order
METRIC_COLUMNS: tuple[Metric, ...] = tuple(m for m in METRICS if m.column)

#: run status code -> name
STATUS_NAMES: dict[int, str] = dict(enumerate(RUN_STATUS.names))

# the sweep result's non-metric variables (sweeps/results.py)
STATUS_VARIABLE = Field(
    "status",
    "1",
    "point status",
    "ok; invalid (see reason); stalled (no progress possible); horizon (stopped at --horizon)",
)
REASON_VARIABLE = Field("reason", "1", "why a point is invalid", "Empty for valid points.")


def attrs(f: Field) -> dict[str, str]:
    """The xarray/CF attributes of a field: units, long_name, description."""
    return {"units": f.units, "long_name": f.long_name, "description": f.description}


def metric_table_markdown() -> str:
    """The README's table of result columns (metrics, then status and reason)."""
    rows = ["| column | units | long name | meaning |", "|---|---|---|---|"]
    for f in (*METRIC_COLUMNS, STATUS_VARIABLE, REASON_VARIABLE):
        rows.append(f"| `{f.name}` | {f.units} | {f.long_name} | {f.description} |")
    return "\n".join(rows) + "\n"


LAYOUTS: tuple[Layout, ...] = (
    REQUEST,
    OUTPUT,
    REQUEST_STATES,
    CONFIG,
    SCALARS,
    RUN_STATUS,
    STEP_LOG,
    POOL,
    BLOCK,
    REQUEST_BLOCKS,
    INSTANCE,
    REQUEST_STATE,
    BLIS_REQUEST_STATE,
    INSTANCE_QUEUES,
    SLOTS,
    CLUSTER,
    ROUTERS,
    ROLES,
    KV_SOURCES,
    INSTANCE_METRICS,
    COST_PARAMS,
    COST_HEADER,
    STEP_COMPONENTS,
    SUMMARY,
)


def _export() -> dict[str, int]:
    consts: dict[str, int] = {}
    for layout in LAYOUTS:
        for k, v in layout.constants().items():
            if k in consts:
                raise ValueError(f"constant {k} declared twice")
            consts[k] = v
    return consts


#: every exported constant (name -> int)
CONSTANTS: dict[str, int] = _export()
globals().update(CONSTANTS)
