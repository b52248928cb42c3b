"""The one driver of every simulation: validate the scheduler settings, pack each point's
requests and settings, call the one kernel entry (``simulate_point``) per point, single
or batched over threads, and label the raw results.  ``run``, ``validate``, ``calibrate``,
``sweep`` and the Python API all come through ``run_jobs``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infersweep import limits, schema, settings
from infersweep._jit import max_threads
from infersweep.costmodel.stepcost import CostModel, auto_kv_blocks
from infersweep.errors import ConfigError
from infersweep.scheduler.config import (
    BLIS_DEFAULT_BLOCKS,
    LIVELOCK_NOTE,
    NO_MEMORY_BLOCKS,
    SchedulerConfig,
)
from infersweep.workload.generate import Workload


@dataclass(frozen=True, slots=True, eq=False)
class RawRun:
    """What the kernel returns, unlabelled: per-request arrays, scalars, ITL samples."""

    workload: Workload
    semantics: str
    out: np.ndarray  # int64[n, N_O]: per-request outputs (columns schema.O_*)
    scalars: np.ndarray
    itl_us: np.ndarray
    step_log: np.ndarray
    kv_blocks_total: int
    kv_blocks_note: str
    metrics: np.ndarray | None = None  # float64[N_M]: the summary (summary_nb M_* columns)
    instances: np.ndarray | None = None  # int64[replicas, N_CI]: a cluster's per-instance counters
    route: np.ndarray | None = None  # int64[n]: each request's instance (clusters; P/D: prefill)
    decode_route: np.ndarray | None = None  # int64[n]: P/D: each request's decode instance, -1
    kv_transfer_us: np.ndarray | None = None  # int64[n]: P/D: KV transfer time, -1 = none


def resolve_kv_blocks(cost: CostModel, cfg: SchedulerConfig) -> tuple[int, str]:
    """Total KV blocks and a one-line note on where the number came from."""
    if cfg.total_kv_blocks is not None:
        return int(cfg.total_kv_blocks), ""
    if cfg.semantics == "blis":
        return BLIS_DEFAULT_BLOCKS, ""
    n = auto_kv_blocks(
        cost.model, cost.hardware, cost.tp, cfg.block_size, cfg.gpu_memory_utilization
    )
    if n is None:
        return NO_MEMORY_BLOCKS, (
            f"hardware entry {cost.hardware.name} has no MemoryGiB: "
            f"using {NO_MEMORY_BLOCKS:,} KV blocks"
        )
    if n < 1:
        raise ConfigError(
            f"the weights of {cost.model.name} ({cost.model.weight_bytes / 2**30:.1f} GiB) "
            f"leave no room for a KV cache in {cost.hardware.memory_gib:g} GiB x TP {cost.tp} "
            f"at gpu_memory_utilization {cfg.gpu_memory_utilization:g}",
            field="total_kv_blocks",
            value="auto",
        )
    return n, ""


def _slot_layout(wl: Workload, block: int, semantics: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Prefix-table slots: one per full block of each request's looked-up range, plus one per
    block of each shared-prefix group."""
    if semantics == "blis":
        span = wl.prompt_tok
    else:
        span = np.maximum(wl.prompt_tok + wl.output_tok - 1, wl.prompt_tok)
    per_req = span // block
    base = np.zeros(len(wl), np.int64)
    if len(wl) > 1:
        np.cumsum(per_req[:-1], out=base[1:])
    n_slots = int(per_req.sum())
    ng = wl.n_groups
    gbase = np.zeros(max(ng, 1), np.int64)
    if ng:
        gsize = np.zeros(ng, np.int64)
        np.maximum.at(gsize, wl.group[wl.group >= 0], wl.prefix_tok[wl.group >= 0] // block)
        gbase[:ng] = n_slots + np.concatenate(([0], np.cumsum(gsize)[:-1]))
        n_slots += int(gsize.sum())
    return base, gbase, n_slots


def config_array(cfg: SchedulerConfig, total_blocks: int) -> np.ndarray:
    """The kernel's int64 settings vector (``CFG_*`` slots)."""
    arr = np.zeros(schema.N_CFG, np.int64)
    arr[schema.CFG_BUDGET] = cfg.max_num_scheduled_tokens
    arr[schema.CFG_MAX_RUN] = cfg.max_num_running_reqs
    arr[schema.CFG_THRESHOLD] = cfg.long_prefill_token_threshold
    arr[schema.CFG_BLOCK] = cfg.block_size
    arr[schema.CFG_BLOCKS] = total_blocks
    arr[schema.CFG_MAX_IDLE] = cfg.max_idle_steps
    arr[schema.CFG_PREFIX_CACHE] = 1 if cfg.prefix_caching else 0
    arr[schema.CFG_HORIZON] = int(round(cfg.horizon_s * 1e6))
    arr[schema.CFG_LITERAL] = (
        1 if cfg.semantics == "blis" and cfg.blis_preemption == "reference" else 0
    )
    return arr


def request_array(wl: Workload, slot_base: np.ndarray) -> np.ndarray:
    """The kernel's request table ``rq[n, N_Q]`` (``Q_*`` columns)."""
    rq = np.empty((len(wl), schema.N_Q), np.int64)
    rq[:, schema.Q_ARRIVAL] = wl.arrival_us
    rq[:, schema.Q_PROMPT] = wl.prompt_tok
    rq[:, schema.Q_OUTPUT] = wl.output_tok
    rq[:, schema.Q_GROUP] = wl.group
    rq[:, schema.Q_PREFIX] = wl.prefix_tok
    rq[:, schema.Q_SLOT] = slot_base
    return rq


@dataclass(frozen=True, slots=True, eq=False)
class Job:
    """One point: a workload on a cost model with scheduler settings."""

    workload: Workload
    cost: CostModel
    scheduler: SchedulerConfig
    # prefill/decode disaggregation: the cost models of the prefill and decode instances
    # (None: both ``cost``, which is right only when their TP and GPU are the run's)
    pd_costs: tuple[CostModel, CostModel] | None = None


@dataclass(frozen=True, slots=True, eq=False)
class BatchResult:
    """The points of ``run_jobs``, in job order."""

    metrics: np.ndarray  # float64[n_points, N_M] (summary_nb M_* columns)
    scalars: np.ndarray  # int64[n_points, N_SC] (common_nb SC_* columns)
    req_off: np.ndarray  # int64[n_points + 1]: rows of out_req of each point
    out_req: np.ndarray | None  # int64[total_requests, N_O] when per-request output was kept
    kv_blocks: np.ndarray  # int64[n_points]
    kv_notes: list[str]  # where each point's KV block count came from ("" = as given)
    itl_us: list[np.ndarray] | None  # each point's ITL samples, when per-request output was kept
    step_logs: list[np.ndarray] | None  # each point's step log, when asked for
    instances: list[np.ndarray | None] | None = None  # clusters: per-instance counters (CI_*)
    routes: list[np.ndarray | None] | None = None  # clusters: each request's instance
    # P/D: each request's (prefill instance, decode instance) int64[2, n] and transfer time
    pd_routes: list[np.ndarray | None] | None = None
    kv_transfers: list[np.ndarray | None] | None = None


def cluster_array(cfg: SchedulerConfig) -> np.ndarray:
    """The cluster kernel's int64 settings vector (``CL_*`` slots)."""
    arr = np.zeros(schema.N_CL, np.int64)
    arr[schema.CL_REPLICAS] = cfg.replicas
    arr[schema.CL_ROUTER] = settings.ROUTERS.index(cfg.router)
    arr[schema.CL_AFFINITY_SLACK] = cfg.affinity_slack
    arr[schema.CL_SNAPSHOT_US] = int(round(cfg.snapshot_interval * 1e3))
    arr[schema.CL_LATENCY_US] = int(round(cfg.routing_latency * 1e3))
    arr[schema.CL_SEED] = cfg.router_seed
    w_load, w_kv, w_prefix = cfg.weights()
    arr[schema.CL_W_LOAD] = int(round(w_load * 1000))
    arr[schema.CL_W_KV] = int(round(w_kv * 1000))
    arr[schema.CL_W_PREFIX] = int(round(w_prefix * 1000))
    return arr


def pd_array(cfg: SchedulerConfig) -> np.ndarray:
    """The P/D kernel's settings vector: ``cluster_array`` plus the pools and the link."""
    arr = cluster_array(cfg)
    arr[schema.CL_REPLICAS] = 1
    arr[schema.CL_PREFILL] = cfg.prefill_instances
    arr[schema.CL_DECODE] = cfg.decode_instances
    gbps, latency_us = cfg.link()
    arr[schema.CL_LINK_BPS] = max(1, int(round(gbps * 1e9 / 8)))
    arr[schema.CL_LINK_LAT_NS] = int(round(latency_us * 1e3))
    return arr


def pd_sides(job: Job) -> tuple[CostModel, CostModel]:
    """The (prefill, decode) cost models of a P/D job."""
    if job.pd_costs is not None:
        return job.pd_costs
    cfg = job.scheduler
    own = job.cost.hardware.name.lower()
    for side in ("prefill", "decode"):
        tp = getattr(cfg, f"{side}_tp")
        hw = getattr(cfg, f"{side}_hardware")
        if (tp and tp != job.cost.tp) or (hw and hw.lower() != own):
            raise ConfigError(
                "is not supported by this command (it simulates one cost model); run, sweep "
                "and simulate() take it (a Job needs pd_costs: infersweep.api.pd_cost_models)",
                field=f"{side}_tp" if tp and tp != job.cost.tp else f"{side}_hardware",
                value=tp if tp and tp != job.cost.tp else hw,
            )
    return job.cost, job.cost


def load_imbalance(requests: np.ndarray) -> float:
    """The most requests of one instance over the mean (1 for a single instance)."""
    mean = float(np.mean(requests)) if len(requests) else 0.0
    return float(np.max(requests)) / mean if mean > 0 else 1.0


def new_pool(rq: np.ndarray, cfg: np.ndarray, n_slots: int):
    """The KV pool and per-request tables of one point (``ST_*``, ``B_*``, ``R_*`` layouts):
    ``(st, blk, slot_block, rb, rinfo, itl_cap)``, where ``itl_cap`` is the ITL room of the
    first attempt (one sample per output token, and some).  Allocated by numpy: its large
    allocations get transparent huge pages, which made the kernels 10-20 % faster than on
    arrays allocated inside numba.

    Block-list capacity: in literal blis mode a request evicted and visited again in the same
    pass (Q3) keeps a prefill chunk's blocks while queued and appends its whole prompt after
    them when admitted again, so it may hold about twice as many."""
    total = int(cfg[schema.CFG_BLOCKS])
    bs = int(cfg[schema.CFG_BLOCK])
    output = rq[:, schema.Q_OUTPUT]
    cap = (rq[:, schema.Q_PROMPT] + np.maximum(output, 1)) // bs + 2
    if cfg[schema.CFG_LITERAL] > 0:
        cap = 2 * cap + 2
    rinfo = np.zeros((len(rq), schema.N_R), np.int64)
    if len(rq) > 1:
        np.cumsum(cap[:-1], out=rinfo[1:, schema.R_OFF])
    st = np.zeros(schema.N_ST, np.int64)
    blk = np.empty((total, schema.N_B), np.int64)
    slot_block = np.empty(max(int(n_slots), 1), np.int64)
    rb = np.empty(max(int(cap.sum()), 1), np.int64)
    itl_cap = int(output.sum()) + len(rq) + 16
    return st, blk, slot_block, rb, rinfo, itl_cap


def simulate_point(
    rq, gbase, cfg, n_slots, ctf, cti, out, sc, log, res, blis: bool, summary: bool = True
):
    """Simulate requests ``rq`` (``Q_*`` columns) with settings ``cfg`` (``CFG_*``) on the cost
    tables ``ctf``/``cti``; fills ``out`` (``O_*``), ``sc`` (``SC_*``), the step ``log`` (as
    many rows as it has; zero rows turns logging off and the fast decode loops on) and the
    summary ``res`` (``M_*``; left alone unless ``summary``); returns the ITL samples (µs).

    The one way a point is simulated: pool set-up, the attempts of the retry policy
    (``common_nb.next_itl_room_nb``) and the summary live here only.  Each scheduler kernel
    stays an entry of its own, called from here (linked into a jitted entry, LLVM re-optimises
    it there); only the kernel of the point's semantics is compiled or loaded."""
    from infersweep.metrics.summary_nb import summarize_nb
    from infersweep.scheduler.common_nb import add_request_overheads_nb, next_itl_room_nb
    from infersweep.scheduler.driver_nb import reset_pool_nb

    if blis:
        from infersweep.scheduler.blis_nb import simulate_blis_nb as kernel
    else:
        from infersweep.scheduler.vllm_nb import simulate_vllm_nb as kernel
    total = int(cfg[schema.CFG_BLOCKS])
    bs = int(cfg[schema.CFG_BLOCK])
    st, blk, slot_block, rb, rinfo, itl_cap = new_pool(rq, cfg, n_slots)
    itl_cap0 = itl_cap
    run_cfg = cfg.copy()
    while True:  # the attempts of next_itl_room_nb
        reset_pool_nb(st, slot_block, rinfo, sc, total, bs)
        # the ITL buffers are numpy's too (huge pages: the samples of a 10k-request run are
        # ~20 MB, written once by the kernel and read once by the summary)
        itl_v = np.empty(max(itl_cap, 16), np.int64)
        if blis:
            itl_o = np.empty(itl_v.shape[0], np.int32)
            itl = kernel(rq, gbase, run_cfg, ctf, cti, st, blk, slot_block, rb, rinfo, out, sc,
                         log, itl_v, itl_o)  # fmt: skip
        else:
            itl = kernel(rq, gbase, run_cfg, ctf, cti, st, blk, slot_block, rb, rinfo, out, sc,
                         log, itl_v)  # fmt: skip
        itl_cap = next_itl_room_nb(sc, run_cfg, itl_cap, itl_cap0)
        if itl_cap == 0:
            break
    if run_cfg[schema.CFG_LITERAL] != cfg[schema.CFG_LITERAL]:
        sc[schema.SC_LIVELOCK] = 1  # rerun in safe mode (in block lists sized for literal mode)
    add_request_overheads_nb(rq, out, itl, ctf)  # client-side fields; nothing when all are 0
    if summary:
        summarize_nb(out, sc, itl, rq[:, schema.Q_OUTPUT].copy(), blis, total, res)
    return itl


def run_jobs(
    jobs: list[Job],
    *,
    keep_requests: bool = False,
    log_steps: int = 0,
    threads: int | None = None,
    check_memory: bool = True,
    summary: bool = True,
) -> BatchResult:
    """Simulate every job: the one driver of every simulation, single or batched.

    Points run on ``threads`` threads (default: all cores; the kernel releases the GIL), each
    point one call of ``simulate_point``.  ``keep_requests`` keeps the per-request
    outputs and ITL samples; ``log_steps`` > 0 keeps a step log of up to that many steps per
    point (and turns the kernels' fast decode loops off).  The memory the batch needs is checked
    first (``limits``; ``check_memory=False`` where the caller checked already).
    ``summary=False`` skips the summary metrics (NaN) for callers that score the per-request
    outputs themselves (calibration: a fifth of a small candidate's time)."""
    from infersweep.metrics.summary import mark_empty
    from infersweep.schema import N_M

    n = len(jobs)
    kv_blocks = np.empty(n, np.int64)
    largest_pool = np.empty(n, np.int64)  # for the memory check: a P/D run's larger side
    notes: list[str] = []
    args = []
    req_off = np.zeros(n + 1, np.int64)
    pd_args: list = [None] * n
    for i, job in enumerate(jobs):
        cfg = job.scheduler
        total, note = resolve_kv_blocks(job.cost, cfg)
        if cfg.disaggregated:  # each pool sized from its own GPU and TP
            cost_p, cost_d = pd_sides(job)
            total_p, note_p = resolve_kv_blocks(cost_p, cfg)
            total_d, note_d = resolve_kv_blocks(cost_d, cfg)
            pd_args[i] = (config_array(cfg, total_p), config_array(cfg, total_d), cost_p, cost_d)
            total = total_d
            note = "; ".join(dict.fromkeys(x for x in (note_p, note_d) if x))
        kv_blocks[i] = total
        largest_pool[i] = max(total, total_p) if cfg.disaggregated else total
        notes.append(note)
        base, gbase, n_slots = _slot_layout(job.workload, cfg.block_size, cfg.semantics)
        rq = request_array(job.workload, base)
        req_off[i + 1] = req_off[i] + len(rq)
        args.append(
            (
                rq,
                gbase,
                config_array(cfg, total),
                n_slots,
                job.cost.ctf,
                job.cost.cti,
                cfg.semantics,
            )
        )
    if check_memory:
        _check_batch_memory(jobs, largest_pool, keep_requests, threads)
    out_req = np.empty((int(req_off[-1]) if keep_requests else 0, schema.N_O), np.int64)
    metrics = np.zeros((n, N_M)) if summary else np.full((n, N_M), np.nan)
    scalars = np.zeros((n, schema.N_SC), np.int64)
    itls: list = [None] * n
    logs: list = [None] * n
    instances: list = [None] * n
    routes: list = [None] * n
    pd_routes: list = [None] * n
    kv_transfers: list = [None] * n
    log_rows = max(int(log_steps), 0)

    def one(i: int) -> None:
        rq, gbase, cfg_arr, n_slots, ctf, cti, semantics = args[i]
        if keep_requests:
            out = out_req[req_off[i] : req_off[i + 1]]
        else:
            out = np.empty((len(rq), schema.N_O), np.int64)
        log = np.zeros((log_rows, schema.N_LOG), np.int64)
        sched = jobs[i].scheduler
        if pd_args[i] is not None:  # prefill/decode disaggregation: scheduler/pd_nb.py
            from infersweep.scheduler.pd_nb import simulate_pd_nb

            cfg_p, cfg_d, cost_p, cost_d = pd_args[i]
            cfg_p[schema.CFG_ROLE] = schema.ROLE_PREFILL
            cfg_d[schema.CFG_ROLE] = schema.ROLE_DECODE
            inst = np.zeros((sched.instances, schema.N_CI), np.int64)
            route = np.empty((2, len(rq)), np.int64)
            xfer = np.empty(len(rq), np.int64)
            itl = simulate_pd_nb(
                rq, gbase, cfg_p, cfg_d, n_slots, cost_p.ctf, cost_p.cti, cost_d.ctf, cost_d.cti,
                pd_array(sched), out, scalars[i], metrics[i], inst, route, xfer,
            )  # fmt: skip
            p = sched.prefill_instances
            metrics[i, schema.M_LOAD_IMBALANCE] = load_imbalance(inst[:p, schema.CI_REQUESTS])
            instances[i] = inst
            routes[i] = route[0]
            pd_routes[i] = route
            kv_transfers[i] = xfer
            logs[i] = log[:0]  # no step log for clusters
            if keep_requests:
                itls[i] = itl
            return
        if sched.replicas > 1:  # a cluster: the kernel of scheduler/cluster_nb.py
            from infersweep.scheduler.cluster_nb import simulate_cluster_nb

            inst = np.zeros((sched.replicas, schema.N_CI), np.int64)
            route = np.empty(len(rq), np.int64)
            itl = simulate_cluster_nb(
                rq, gbase, cfg_arr, n_slots, ctf, cti, cluster_array(sched), out, scalars[i],
                metrics[i], inst, route,
            )  # fmt: skip
            metrics[i, schema.M_LOAD_IMBALANCE] = load_imbalance(inst[:, schema.CI_REQUESTS])
            instances[i] = inst
            routes[i] = route
            logs[i] = log[:0]  # no step log for clusters
            if keep_requests:
                itls[i] = itl
            return
        itl = simulate_point(
            rq,
            gbase,
            cfg_arr,
            n_slots,
            ctf,
            cti,
            out,
            scalars[i],
            log,
            metrics[i],
            semantics == "blis",
            summary,
        )
        if keep_requests:
            itls[i] = itl
        if log_rows:
            logs[i] = log[: scalars[i, schema.SC_LOG_N]]

    workers = min(n, max(1, int(threads) if threads else max_threads()))
    if workers <= 1:
        for i in range(n):
            one(i)
    else:  # points differ a lot in cost: each thread takes the next point when it is free
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(one, range(n)):
                pass
    if summary:
        mark_empty(metrics)
    for i in range(n):
        if scalars[i, schema.SC_LIVELOCK]:
            notes[i] = "; ".join(x for x in (notes[i], LIVELOCK_NOTE) if x)
    return BatchResult(
        metrics=metrics,
        scalars=scalars,
        req_off=req_off,
        out_req=out_req if keep_requests else None,
        kv_blocks=kv_blocks,
        kv_notes=notes,
        itl_us=itls if keep_requests else None,
        step_logs=logs if log_rows else None,
        instances=instances,
        routes=routes,
        pd_routes=pd_routes,
        kv_transfers=kv_transfers,
    )


def run_scheduler(
    wl: Workload,
    cost: CostModel,
    cfg: SchedulerConfig,
    *,
    log_steps: int = 0,
    pd_costs: tuple[CostModel, CostModel] | None = None,
) -> RawRun:
    """Simulate ``wl`` on ``cost`` with scheduler settings ``cfg`` (one job of ``run_jobs``)."""
    if len(wl) == 0:
        raise ConfigError("the workload has no requests")
    total_blocks, _ = resolve_kv_blocks(cost, cfg)
    limits.check_run_memory(
        prompt_tok=wl.prompt_tok,
        output_tok=wl.output_tok,
        block_size=int(cfg.block_size),
        kv_blocks=_largest_pool(total_blocks, cfg, pd_costs),
        literal=cfg.semantics == "blis" and cfg.blis_preemption == "reference",
        source=wl.source,
        instances=cfg.instances,
    )
    br = run_jobs(
        [Job(wl, cost, cfg, pd_costs)],
        keep_requests=True,
        log_steps=log_steps,
        threads=1,
        check_memory=False,
    )
    pd_route = br.pd_routes[0]
    return RawRun(
        workload=wl,
        semantics=cfg.semantics,
        out=br.out_req,
        scalars=br.scalars[0],
        itl_us=br.itl_us[0],
        step_log=br.step_logs[0] if br.step_logs else np.zeros((0, schema.N_LOG), np.int64),
        kv_blocks_total=int(br.kv_blocks[0]),
        kv_blocks_note=br.kv_notes[0],
        metrics=br.metrics[0],
        instances=br.instances[0],
        route=br.routes[0],
        decode_route=None if pd_route is None else pd_route[1],
        kv_transfer_us=br.kv_transfers[0],
    )


def _largest_pool(blocks: int, cfg: SchedulerConfig, pd_costs) -> int:
    """The largest KV pool of a run: ``blocks``, or the larger side of a P/D run."""
    if pd_costs is None:
        return blocks
    return max([blocks] + [resolve_kv_blocks(side, cfg)[0] for side in pd_costs])


def _check_batch_memory(
    jobs: list[Job], kv_blocks: np.ndarray, keep_requests: bool, threads: int | None
) -> None:
    """The packed inputs of every point plus the scratch of the points running at once
    (``kv_blocks``: each point's largest pool; a cluster or P/D run has one per instance)."""
    import os

    if not jobs:
        return
    scratch = []
    packed = 0.0
    for job, blocks in zip(jobs, kv_blocks):
        wl = job.workload
        sched = job.scheduler
        scratch.append(
            limits.run_bytes(
                n_requests=len(wl),
                sum_prompt=float(wl.prompt_tok.sum()),
                sum_output=float(wl.output_tok.sum()),
                max_context=float((wl.prompt_tok + wl.output_tok).max()),
                block_size=sched.block_size,
                kv_blocks=int(blocks),
                literal=sched.semantics == "blis" and sched.blis_preemption == "reference",
                instances=sched.instances,
            )
        )
        packed += len(wl) * 8.0 * (schema.N_Q + (schema.N_O if keep_requests else 0))
    at_once = max(1, min(len(jobs), threads or os.cpu_count() or 1))
    worst = sorted(scratch, reverse=True)[:at_once]
    n_max = max(len(j.workload) for j in jobs)
    limits.check_memory(
        f"a batch of {len(jobs)} points (up to {n_max:,} requests each, {at_once} at once)",
        packed + sum(worst),
        field="num_requests",
        value=n_max,
        hint="lower num_requests, --chunk-size or --threads",
    )
