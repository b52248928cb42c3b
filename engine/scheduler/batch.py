"""Many simulations at once: pack the points' requests, configs and cost tables into flat
arrays and run them in parallel (``batch_nb.simulate_points_nb``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infersweep import limits, schema
from infersweep._jit import parallel_settings
from infersweep.costmodel.stepcost import CostModel
from infersweep.scheduler.batch_nb import SEM_BLIS, SEM_VLLM, simulate_points_nb
from infersweep.scheduler.driver import (
    SchedulerConfig,
    _slot_layout,
    config_array,
    request_array,
    resolve_kv_blocks,
)
from infersweep.schema import N_M
from infersweep.workload.generate import Workload


@dataclass(frozen=True, slots=True, eq=False)
class Job:
    """One point: a workload on a cost model with scheduler settings."""

    workload: Workload
    cost: CostModel
    scheduler: SchedulerConfig


@dataclass(frozen=True, slots=True, eq=False)
class BatchResult:
    metrics: np.ndarray  # float64[n_points, N_M] (summary_nb M_* columns)
    req_off: np.ndarray  # int64[n_points + 1]: rows of out_req of each point
    out_req: np.ndarray | None  # int64[total_requests, N_O] when per-request output was kept
    kv_blocks: np.ndarray  # int64[n_points]


def run_jobs(
    jobs: list[Job], *, keep_requests: bool = False, threads: int | None = None
) -> BatchResult:
    """Simulate every job (in parallel over ``threads``); summary rows in job order."""
    n = len(jobs)
    cms: dict[int, int] = {}
    cm_list: list[CostModel] = []
    cm_idx = np.empty(n, np.int64)
    rqs, gbs, cfgs = [], [], []
    sem = np.empty(n, np.int64)
    n_slots = np.empty(n, np.int64)
    kv_blocks = np.empty(n, np.int64)
    for i, job in enumerate(jobs):
        key = id(job.cost)
        if key not in cms:
            cms[key] = len(cm_list)
            cm_list.append(job.cost)
        cm_idx[i] = cms[key]
        total, _ = resolve_kv_blocks(job.cost, job.scheduler)
        kv_blocks[i] = total
        base, gbase, ns = _slot_layout(
            job.workload, job.scheduler.block_size, job.scheduler.semantics
        )
        rqs.append(request_array(job.workload, base))
        gbs.append(gbase)
        n_slots[i] = ns
        cfgs.append(config_array(job.scheduler, total))
        sem[i] = SEM_BLIS if job.scheduler.semantics == "blis" else SEM_VLLM
    _check_batch_memory(jobs, kv_blocks, keep_requests, threads)
    req_off = np.zeros(n + 1, np.int64)
    np.cumsum([len(r) for r in rqs], out=req_off[1:])
    gb_off = np.zeros(n + 1, np.int64)
    np.cumsum([len(g) for g in gbs], out=gb_off[1:])
    ctf_off = np.zeros(len(cm_list) + 1, np.int64)
    np.cumsum([len(c.ctf) for c in cm_list], out=ctf_off[1:])
    cti_off = np.zeros(len(cm_list) + 1, np.int64)
    np.cumsum([len(c.cti) for c in cm_list], out=cti_off[1:])
    rq_all = np.concatenate(rqs) if rqs else np.zeros((0, schema.N_Q), np.int64)
    out_req = np.zeros((int(req_off[-1]) if keep_requests else 0, schema.N_O), np.int64)
    metrics = np.zeros((n, N_M))
    if n:
        with parallel_settings(threads, chunksize=1):  # points differ a lot in cost
            simulate_points_nb(
                rq_all,
                req_off,
                np.concatenate(gbs),
                gb_off,
                np.stack(cfgs),
                sem,
                n_slots,
                cm_idx,
                np.concatenate([c.ctf for c in cm_list]),
                ctf_off,
                np.concatenate([c.cti for c in cm_list]),
                cti_off,
                keep_requests,
                out_req,
                metrics,
            )
    from infersweep.metrics.summary import mark_empty

    mark_empty(metrics)
    return BatchResult(
        metrics=metrics,
        req_off=req_off,
        out_req=out_req if keep_requests else None,
        kv_blocks=kv_blocks,
    )


def _check_batch_memory(
    jobs: list[Job], kv_blocks: np.ndarray, keep_requests: bool, threads: int | None
) -> None:
    """The packed inputs of every point plus the scratch of the points running at once."""
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
