"""The Python API: one simulation from names or objects to per-request arrays and a summary.

>>> from infersweep.api import simulate
>>> res = simulate(model="llama-3.1-8b-instruct", hardware="H100", tp=1,
...                workload="chatbot", rate=4.0, num_requests=200)
>>> res.summary["ttft_p99_ms"], res.ttft_ms[:3]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from infersweep.config.models import Hardware, ModelConfig, load_hardware, load_model
from infersweep.costmodel.stepcost import CostModel, build_cost_model
from infersweep.errors import ConfigError
from infersweep.metrics.summary import request_ids, request_records, summarize
from infersweep.scheduler import common_nb as sc_nb
from infersweep.scheduler.driver import RawRun, SchedulerConfig, run_scheduler
from infersweep.workload.generate import Workload, WorkloadSpec, generate

_COST_CACHE: dict = {}


@dataclass(frozen=True, slots=True, eq=False)
class SimResult:
    """One simulation: the summary, per-request arrays (arrival order) and the raw kernel
    output."""

    summary: dict
    raw: RawRun
    cost: CostModel
    notes: tuple[str, ...] = field(default=())

    @property
    def workload(self) -> Workload:
        return self.raw.workload

    @property
    def request_id(self) -> np.ndarray:
        return request_ids(self.raw)

    def _ms(self, col: int) -> np.ndarray:
        v = self.raw.out[:, col]
        return np.where(v >= 0, v / 1000.0, np.nan)

    @property
    def ttft_ms(self) -> np.ndarray:
        return self._ms(sc_nb.O_TTFT)

    @property
    def e2e_ms(self) -> np.ndarray:
        return self._ms(sc_nb.O_E2E)

    @property
    def scheduling_delay_ms(self) -> np.ndarray:
        return self._ms(sc_nb.O_SCHED)

    @property
    def completed(self) -> np.ndarray:
        return self.raw.out[:, sc_nb.O_STATE] == sc_nb.STATE_DONE

    @property
    def dropped(self) -> np.ndarray:
        return self.raw.out[:, sc_nb.O_STATE] == sc_nb.STATE_DROPPED

    def records(self) -> list[dict]:
        """The per-request records of ``--results-path``."""
        return request_records(self.raw)

    def requests_table(self) -> dict[str, np.ndarray]:
        """Per-request columns (arrival order), ready for pandas/pyarrow."""
        wl = self.workload
        return {
            "request_id": self.request_id.astype(np.int64),
            "arrival_s": wl.arrival_us / 1e6,
            "prompt_tokens": wl.prompt_tok,
            "output_tokens": wl.output_tok,
            "prefix_group": wl.group,
            "prefix_tokens": wl.prefix_tok,
            "ttft_ms": self.ttft_ms,
            "e2e_ms": self.e2e_ms,
            "scheduling_delay_ms": self.scheduling_delay_ms,
            "preemptions": self.raw.out[:, sc_nb.O_PREEMPT].copy(),
            "completed": self.completed,
            "dropped": self.dropped,
        }


def cost_model_for(
    model: ModelConfig,
    hardware: Hardware,
    tp: int,
    *,
    bench_data: str | os.PathLike | None = None,
    step_model: str = "auto",
    max_tokens: int = 8192,
) -> CostModel:
    """Build (or reuse) the cost tables for one (model, hardware, TP, step model)."""
    key = (model, hardware, int(tp), str(bench_data) if bench_data else None, step_model)
    cm = _COST_CACHE.get(key)
    if cm is None or cm.gemm_table_size <= max_tokens:
        cm = build_cost_model(
            model,
            hardware,
            tp,
            bench_data=bench_data,
            step_model=step_model,
            max_tokens=max(max_tokens, 8192),
        )
        if len(_COST_CACHE) > 256:
            _COST_CACHE.clear()
        _COST_CACHE[key] = cm
    return cm


def simulate(
    *,
    model: str | ModelConfig | None = None,
    model_config_folder: str | os.PathLike | None = None,
    hardware: str | Hardware = "H100",
    hardware_config: str | os.PathLike | None = None,
    tp: int = 1,
    bench_data: str | os.PathLike | None = None,
    step_model: str = "auto",
    workload: str | Workload | WorkloadSpec = "chatbot",
    scheduler: SchedulerConfig | None = None,
    log_steps: int = 0,
    **options,
) -> SimResult:
    """Run one simulation.

    ``workload``: a preset name (``chatbot``, ``contentgen``, ``summarization``, ``multidoc``),
    ``distribution``, ``traces`` (with ``trace=PATH``), a ``WorkloadSpec`` or a ``Workload``.
    Remaining keyword options go to ``WorkloadSpec`` (rate, num_requests, seed, arrival, ...) or
    ``SchedulerConfig`` (semantics, max_num_scheduled_tokens, total_kv_blocks, ...).
    """
    sched_fields = set(SchedulerConfig.__dataclass_fields__)
    wl_fields = set(WorkloadSpec.__dataclass_fields__) - {"workload"}
    sched_kw = {k: v for k, v in options.items() if k in sched_fields}
    wl_kw = {k: v for k, v in options.items() if k in wl_fields}
    unknown = set(options) - sched_fields - wl_fields
    if unknown:
        raise ConfigError("unknown option(s): " + ", ".join(sorted(unknown)))
    if scheduler is None:
        scheduler = SchedulerConfig(**sched_kw)
    elif sched_kw:
        raise ConfigError("give scheduler options either in scheduler= or as keywords")
    m = model if isinstance(model, ModelConfig) else load_model(model, model_config_folder)
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware, hardware_config)
    if isinstance(workload, Workload):
        wl = workload
    elif isinstance(workload, WorkloadSpec):
        wl = generate(workload)
    else:
        wl = generate(WorkloadSpec(workload=workload, **wl_kw))
    cm = cost_model_for(
        m,
        hw,
        tp,
        bench_data=bench_data,
        step_model=step_model,
        max_tokens=scheduler.max_num_scheduled_tokens,
    )
    raw = run_scheduler(wl, cm, scheduler, log_steps=log_steps)
    notes = tuple(cm.notes) + ((raw.kv_blocks_note,) if raw.kv_blocks_note else ())
    return SimResult(summary=summarize(raw), raw=raw, cost=cm, notes=notes)
