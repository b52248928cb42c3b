"""The scheduler wrapper: validate the scheduler settings, pack the requests and the KV pool,
call the kernel of the chosen semantics, and label the raw result."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infersweep import limits, schema
from infersweep.costmodel.stepcost import CostModel, auto_kv_blocks
from infersweep.errors import ConfigError
from infersweep.scheduler import common_nb as sc_nb
from infersweep.scheduler.blis_nb import simulate_blis_nb
from infersweep.scheduler.config import (
    BLIS_DEFAULT_BLOCKS,
    LIVELOCK_NOTE,
    NO_MEMORY_BLOCKS,
    SchedulerConfig,
)
from infersweep.scheduler.kvcache_nb import new_pool
from infersweep.scheduler.vllm_nb import simulate_vllm_nb
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


def block_list_capacity(
    prompt: np.ndarray, output: np.ndarray, block: int, literal: bool
) -> np.ndarray:
    """Blocks each request may hold at once.  In literal blis mode a request evicted and
    visited again in the same pass (Q3) keeps a prefill chunk's blocks while queued and appends
    its whole prompt after them when admitted again, so it may hold about twice as many."""
    cap = (prompt + np.maximum(output, 1)) // block + 2
    return 2 * cap + 2 if literal else cap


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


def run_scheduler(
    wl: Workload, cost: CostModel, cfg: SchedulerConfig, *, log_steps: int = 0
) -> RawRun:
    """Simulate ``wl`` on ``cost`` with scheduler settings ``cfg``."""
    n = len(wl)
    if n == 0:
        raise ConfigError("the workload has no requests")
    block = int(cfg.block_size)
    total_blocks, note = resolve_kv_blocks(cost, cfg)
    limits.check_run_memory(
        prompt_tok=wl.prompt_tok,
        output_tok=wl.output_tok,
        block_size=block,
        kv_blocks=total_blocks,
        literal=cfg.semantics == "blis" and cfg.blis_preemption == "reference",
        source=wl.source,
    )
    base, gbase, n_slots = _slot_layout(wl, block, cfg.semantics)
    rq = request_array(wl, base)
    cfg_arr = config_array(cfg, total_blocks)
    literal = bool(cfg_arr[schema.CFG_LITERAL])
    caps = block_list_capacity(wl.prompt_tok, wl.output_tok, block, literal)
    kv = new_pool(total_blocks, block, n_slots, caps)
    out = np.empty((n, schema.N_O), np.int64)
    scal = np.zeros(schema.N_SC, np.int64)
    log = np.zeros((max(int(log_steps), 0), schema.N_LOG), np.int64)
    itl_cap0 = itl_cap = int(wl.output_tok.sum()) + n + 16
    kernel = simulate_blis_nb if cfg.semantics == "blis" else simulate_vllm_nb
    run_cfg = cfg_arr.copy()
    while True:  # the attempts of sched_common_nb.next_itl_room_nb (as sweeps make them)
        itl = kernel(
            rq,
            gbase,
            run_cfg,
            cost.ctf,
            cost.cti,
            kv.st,
            kv.blk,
            kv.slot_block,
            kv.rb,
            kv.rinfo,
            out,
            scal,
            log,
            itl_cap,
        )
        itl_cap = sc_nb.next_itl_room_nb(scal, run_cfg, itl_cap, itl_cap0)
        if itl_cap == 0:
            break
        kv = new_pool(total_blocks, block, n_slots, caps)
        scal[:] = 0
    if run_cfg[schema.CFG_LITERAL] != cfg_arr[schema.CFG_LITERAL]:  # rerun in safe mode
        scal[schema.SC_LIVELOCK] = 1
        note = "; ".join(x for x in (note, LIVELOCK_NOTE) if x)
    return RawRun(
        workload=wl,
        semantics=cfg.semantics,
        out=out,
        scalars=scal,
        itl_us=itl,
        step_log=log[: scal[schema.SC_LOG_N]],
        kv_blocks_total=total_blocks,
        kv_blocks_note=note,
    )
