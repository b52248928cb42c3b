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

from infersweep import schema, settings
from infersweep.config.models import (
    Hardware,
    ModelConfig,
    check_tp,
    load_hardware,
    load_model,
)
from infersweep.costmodel.stepcost import CostModel, build_cost_model
from infersweep.errors import ConfigError
from infersweep.metrics.summary import (
    request_columns,
    request_ids,
    request_records,
    summarize,
)
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
        return self._ms(schema.O_TTFT)

    @property
    def e2e_ms(self) -> np.ndarray:
        return self._ms(schema.O_E2E)

    @property
    def scheduling_delay_ms(self) -> np.ndarray:
        return self._ms(schema.O_SCHED)

    @property
    def completed(self) -> np.ndarray:
        return self.raw.out[:, schema.O_STATE] == schema.STATE_DONE

    @property
    def dropped(self) -> np.ndarray:
        return self.raw.out[:, schema.O_STATE] == schema.STATE_DROPPED

    def records(self) -> list[dict]:
        """The per-request records of ``--results-path``."""
        return request_records(self.raw)

    def requests_table(self) -> dict[str, np.ndarray]:
        """Per-request columns (arrival order; ``metrics.summary.REQUEST_COLUMNS``), ready for
        pandas/pyarrow."""
        return request_columns(self.workload, self.raw.out)


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


def pd_cost_models(
    model: ModelConfig,
    hardware: Hardware,
    tp: int,
    scheduler: SchedulerConfig,
    *,
    hardware_config: str | os.PathLike | None = None,
    bench_data: str | os.PathLike | None = None,
    step_model: str = "auto",
) -> tuple[CostModel, CostModel] | None:
    """The (prefill, decode) cost models of a disaggregated run (None when it is not): each
    side's TP (``prefill_tp``/``decode_tp``, 0 = ``tp``) and GPU (``prefill_hardware``/
    ``decode_hardware`` from the same hardware config; default: ``hardware``, with its field
    overrides)."""
    if not scheduler.disaggregated:
        return None
    sides = []
    for side in ("prefill", "decode"):
        side_tp = getattr(scheduler, f"{side}_tp") or tp
        name = getattr(scheduler, f"{side}_hardware")
        hw = hardware
        if name is not None and name.lower() != hardware.name.lower():
            try:
                hw = load_hardware(name, hardware_config)
            except ConfigError as exc:
                raise ConfigError(
                    exc.message, field=f"{side}_hardware", value=name, hint=exc.hint
                ) from None
        try:
            check_tp_for(model, side_tp, scheduler.semantics)
        except ConfigError as exc:
            raise ConfigError(exc.message, field=f"{side}_tp", value=side_tp) from None
        sides.append(
            cost_model_for(
                model,
                hw,
                side_tp,
                bench_data=bench_data,
                step_model=step_model,
                max_tokens=scheduler.max_num_scheduled_tokens,
            )
        )
    return sides[0], sides[1]


def check_tp_for(model: ModelConfig, tp: int, semantics: str) -> None:
    """TP must divide the attention and KV heads (as a sweep marks such a point invalid);
    blis semantics accepts it, as the reference does (the cost model notes it)."""
    tp = check_tp(settings.check("tp", tp))
    if semantics != "blis" and not model.tp_divides_heads(tp):
        raise ConfigError(
            f"does not divide the {model.n_heads} attention heads and {model.n_kv_heads} KV "
            f"heads of {model.name}",
            field="tp",
            value=tp,
            hint="blis semantics accepts it with a warning, as the reference does",
        )


def simulate(
    *,
    model: str | ModelConfig | None = None,
    model_config_folder: str | os.PathLike | None = None,
    hardware: str | Hardware = settings.default("hardware"),
    hardware_config: str | os.PathLike | None = None,
    tp: int = settings.default("tp"),
    bench_data: str | os.PathLike | None = None,
    step_model: str = settings.default("step_model"),
    weight_dtype: str = settings.default("weight_dtype"),
    kv_cache_dtype: str = settings.default("kv_cache_dtype"),
    ep: int = settings.default("ep"),
    dp: int = settings.default("dp"),
    moe_skew: float = settings.default("moe_skew"),
    workload: str | Workload | WorkloadSpec = settings.default("workload"),
    scheduler: SchedulerConfig | None = None,
    log_steps: int = 0,
    **options,
) -> SimResult:
    """Run one simulation.

    ``workload``: a preset name (``chatbot``, ``contentgen``, ``summarization``, ``multidoc``),
    ``distribution``, ``traces`` (with ``trace=PATH``), a ``WorkloadSpec`` or a ``Workload``.
    Remaining keyword options are settings of the registry (:mod:`infersweep.settings`): the
    workload group (rate, num_requests, seed, arrival, prompt_tokens, ...) and the scheduler
    group (semantics, max_num_scheduled_tokens, total_kv_blocks, ...); defaults as everywhere.
    """
    given = {settings.canonical(k): v for k, v in options.items()}
    groups = {k: settings.SETTINGS[k].group if k in settings.SETTINGS else "hw" for k in given}
    misplaced = sorted(k for k, g in groups.items() if g == "deployment")
    if misplaced:
        raise ConfigError(
            "not an option of simulate()",
            field=", ".join(misplaced),
            hint="model, hardware, tp, bench_data, step_model, weight_dtype, kv_cache_dtype, "
            "ep, dp and moe_skew are named arguments",
        )
    sched_kw = {k: v for k, v in given.items() if groups[k] == "scheduler"}
    hw_kw = {k: settings.check(k, v) for k, v in given.items() if groups[k] == "hw"}  # fields
    wl_kw = {k: v for k, v in given.items() if groups[k] == "workload"}
    if scheduler is None:
        scheduler = settings.scheduler_config(settings.resolve(sched_kw))
    elif sched_kw:
        raise ConfigError("give scheduler options either in scheduler= or as keywords")
    m = model if isinstance(model, ModelConfig) else load_model(model, model_config_folder)
    quant = dict(
        weight_dtype=weight_dtype, kv_cache_dtype=kv_cache_dtype, ep=ep, dp=dp, moe_skew=moe_skew
    )
    m = settings.deploy(m, {k: settings.check(k, v) for k, v in quant.items()})
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware, hardware_config)
    if hw_kw:
        hw = hw.with_fields(**hw_kw)
    if isinstance(workload, (Workload, WorkloadSpec)) and wl_kw:
        raise ConfigError(
            "workload options need a workload name, not a Workload or WorkloadSpec",
            field=", ".join(sorted(wl_kw)),
        )
    check_tp_for(m, tp, scheduler.semantics)
    if isinstance(workload, Workload):
        wl = workload
    elif isinstance(workload, WorkloadSpec):
        wl = generate(workload)
    else:
        wl = generate(settings.workload_spec(settings.resolve({**wl_kw, "workload": workload})))
    cm = cost_model_for(
        m,
        hw,
        tp,
        bench_data=bench_data,
        step_model=step_model,
        max_tokens=scheduler.max_num_scheduled_tokens,
    )
    pd_costs = pd_cost_models(
        m,
        hw,
        tp,
        scheduler,
        hardware_config=hardware_config,
        bench_data=bench_data,
        step_model=step_model,
    )
    raw = run_scheduler(wl, cm, scheduler, log_steps=log_steps, pd_costs=pd_costs)
    notes = tuple(cm.notes) + ((raw.kv_blocks_note,) if raw.kv_blocks_note else ())
    return SimResult(summary=summarize(raw), raw=raw, cost=cm, notes=notes)
