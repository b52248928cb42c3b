"""Calibration of a hardware entry's optional fields against a measured trace.

The loss is the mean of the TTFT and E2E mean absolute percentage errors over the fitted
requests::

    loss = ( mean|ttft_pred - ttft_meas| / ttft_meas + mean|e2e_pred - e2e_meas| / e2e_meas ) / 2

(the two errors a capacity planner reads, weighted equally).  A request the simulation does not
complete counts as a 100 % error on both, so no candidate can win by dropping requests.

Search: a scrambled Sobol sample of the box of allowed values (the starting values included)
is simulated in parallel batches by the sweep kernel (thousands of candidates per second on
short traces); the best candidates are then refined with scipy's bounded Nelder-Mead.  The
result is never worse on the fitted requests than the starting values.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np

from infersweep import schema
from infersweep.config.models import HARDWARE_FIELDS, Hardware, ModelConfig
from infersweep.costmodel import moe
from infersweep.costmodel import stepcost_nb as nb
from infersweep.costmodel.stepcost import CostModel, build_cost_model
from infersweep.errors import ConfigError
from infersweep.scheduler.driver import Job, SchedulerConfig, run_jobs
from infersweep.workload.generate import Workload

#: field -> (lower, upper) bound of the search
BOUNDS: dict[str, tuple[float, float]] = {
    "TOverheadMicros": (0.0, 20_000.0),
    "PrefillOverheadMicros": (0.0, 50_000.0),
    "MixedPrefillOverheadMicros": (0.0, 20_000.0),
    "AllReduceLatency": (0.0, 200.0),
    "bwEfficiencyFactor": (0.3, 1.0),
    "perLayerOverhead": (0.0, 500.0),
    "MoeGemmEfficiency": (0.5, 2.0),  # MoE models only (costmodel/moe.py)
    "MoeBwEfficiency": (0.3, 1.5),
}
FITTABLE = tuple(BOUNDS)
DEFAULT_FIT = ("TOverheadMicros", "bwEfficiencyFactor")


def canonical_fields(names, allowed=None, what: str = "calibration") -> tuple[str, ...]:
    """The canonical names of the fields to fit (any case), each once; ``allowed`` defaults to
    ``FITTABLE``."""
    allowed = FITTABLE if allowed is None else allowed
    low = {k.lower(): k for k in allowed}
    out: list[str] = []
    for n in names:
        k = low.get(str(n).strip().lower())
        if k is None:
            raise ConfigError(
                f"not a field {what} can fit",
                field="fit",
                value=n,
                hint="one of: " + ", ".join(allowed),
            )
        if k not in out:
            out.append(k)
    if not out:
        raise ConfigError("nothing to fit", field="fit")
    return tuple(out)


@dataclass
class Evaluation:
    params: dict[str, float]
    loss: float
    ttft_mape: float
    e2e_mape: float


@dataclass
class CalibrationResult:
    hardware: Hardware  # the fitted entry
    start: Evaluation
    best: Evaluation
    n_candidates: int
    seconds: float
    candidates_per_s: float
    history: list[Evaluation] = field(default_factory=list)


class _Problem:
    """Simulates candidate parameter sets on the fitted requests."""

    def __init__(
        self,
        workload: Workload,
        model: ModelConfig,
        hardware: Hardware,
        tp: int,
        scheduler: SchedulerConfig,
        fields: tuple[str, ...],
        bench_data,
        step_model: str,
        fit_mask: np.ndarray,
        threads: int | None,
    ) -> None:
        self.wl = workload
        self.model = model
        self.hw = hardware
        self.tp = tp
        self.sched = scheduler
        self.fields = fields
        self.bench = bench_data
        self.step_model = step_model
        self.threads = threads
        self.mask = fit_mask
        self.mt = workload.extra["measured_ttft_ms"]
        self.me = workload.extra["measured_e2e_ms"]
        self._base: CostModel | None = None
        self._terms = None
        self.n_evals = 0

    def hardware_for(self, params: dict[str, float]) -> Hardware:
        return self.hw.with_fields(**params)

    def cost_for(self, params: dict[str, float]) -> CostModel:
        hw = self.hardware_for(params)
        if self._base is None:
            self._base = build_cost_model(
                self.model,
                hw,
                self.tp,
                bench_data=self.bench,
                step_model=self.step_model,
                max_tokens=self.sched.max_num_scheduled_tokens,
            )
            self._terms = gemm_terms(self._base)
        return with_hardware(self._base, hw, self._terms)

    def evaluate(self, candidates: list[dict[str, float]]) -> list[Evaluation]:
        out: list[Evaluation] = []
        batch = 256
        for i in range(0, len(candidates), batch):
            part = candidates[i : i + batch]
            jobs = [Job(self.wl, self.cost_for(p), self.sched) for p in part]
            res = run_jobs(jobs, keep_requests=True, threads=self.threads, summary=False)
            for k, p in enumerate(part):
                rows = res.out_req[res.req_off[k] : res.req_off[k + 1]]
                out.append(self._score(p, rows))
        self.n_evals += len(candidates)
        return out

    def _score(self, params: dict[str, float], rows: np.ndarray) -> Evaluation:
        from infersweep import schema as sc

        done = rows[:, sc.O_STATE] == sc.STATE_DONE
        ttft = np.where(done, rows[:, sc.O_TTFT] / 1000.0, np.nan)
        e2e = np.where(done, rows[:, sc.O_E2E] / 1000.0, np.nan)
        m = self.mask
        et = np.abs(ttft[m] - self.mt[m]) / self.mt[m]
        ee = np.abs(e2e[m] - self.me[m]) / self.me[m]
        et = np.where(np.isfinite(et), et, 1.0)
        ee = np.where(np.isfinite(ee), ee, 1.0)
        t = float(np.mean(et)) * 100
        e = float(np.mean(ee)) * 100
        return Evaluation(dict(params), (t + e) / 2, t, e)


def gemm_terms(cm: CostModel) -> tuple[np.ndarray, np.ndarray]:
    """The bandwidth-independent compute terms of the cost model's GEMM tables."""
    n = int(cm.cti[schema.I_GEMM_TAB_N])
    tp = np.zeros((7, n))
    nb.gemm_compute_terms_nb(
        cm.ctf[schema.P_MFU_PREFILL] if cm.step_model == "v1" else 0.0, cm.ctf, cm.cti, tp
    )
    if cm.step_model != "v1":
        return tp, tp
    td = np.zeros((7, n))
    nb.gemm_compute_terms_nb(cm.ctf[schema.P_MFU_DECODE], cm.ctf, cm.cti, td)
    return tp, td


def with_hardware(cm: CostModel, hw: Hardware, terms) -> CostModel:
    """The cost model for another entry of the same GPU that differs in its optional fields
    (overheads, scales, bandwidth efficiency): parameters re-packed, GEMM tables refilled from
    ``terms`` when the bandwidth changed."""
    from infersweep.costmodel.stepcost import _par

    ctf = cm.ctf.copy()
    par = _par(cm.model, hw, cm.tp, cm.step_model == "v1")
    bw_changed = par[schema.P_BW] != ctf[schema.P_BW]
    moe_changed = moe.moe_efficiencies(hw) != moe.moe_efficiencies(cm.hardware)
    if cm.model.extended and (bw_changed or moe_changed):  # rebuild MoE/quant tables
        ctf = build_cost_model(
            cm.model,
            hw,
            cm.tp,
            bench_data=cm.bench_data,
            step_model=cm.step_model,
            max_tokens=int(cm.cti[schema.I_GEMM_TAB_N]) - 1,
        ).ctf.copy()
        return dataclasses.replace(cm, hardware=hw, ctf=ctf)
    ctf[: schema.N_PAR] = par
    if bw_changed:
        nb.fill_from_terms_nb(ctf, cm.cti, terms[0], terms[1])
    return dataclasses.replace(cm, hardware=hw, ctf=ctf)


def _clip(fields, x) -> dict[str, float]:
    out = {}
    for f, v in zip(fields, x):
        lo, hi = BOUNDS[f]
        v = min(max(float(v), lo), hi)
        out[f] = v
    return out


def calibrate(
    workload: Workload,
    *,
    model: ModelConfig,
    hardware: Hardware,
    tp: int,
    scheduler: SchedulerConfig,
    fields=DEFAULT_FIT,
    fit_phase: str | None = None,
    skip_first: int = 1,
    bench_data=None,
    step_model: str = "auto",
    n_candidates: int = 512,
    refine_iter: int = 200,
    seed: int = 0,
    threads: int | None = None,
) -> CalibrationResult:
    """Fit ``fields`` of ``hardware`` to the measured TTFT and E2E of ``workload``."""
    from scipy.optimize import minimize
    from scipy.stats import qmc

    t0 = time.perf_counter()
    fields = canonical_fields(fields)
    for need in ("measured_ttft_ms", "measured_e2e_ms"):
        if need not in workload.extra:
            raise ConfigError(
                "the trace has no measurements",
                field=need,
                hint="calibration needs measured_ttft_ms and measured_e2e_ms",
            )
    mask = fit_mask(workload, fit_phase, skip_first)
    if mask.sum() == 0:
        raise ConfigError(
            "no requests to fit",
            field="fit_phase",
            value=fit_phase,
            hint="phases in the trace: " + ", ".join(phases(workload)),
        )
    if not (
        np.all(workload.extra["measured_ttft_ms"][mask] > 0)
        and np.all(workload.extra["measured_e2e_ms"][mask] > 0)
    ):
        raise ConfigError("measured times must be > 0", field="measured_ttft_ms/measured_e2e_ms")
    sub, sub_mask = relevant_requests(workload, mask)
    prob = _Problem(
        sub, model, hardware, tp, scheduler, fields, bench_data, step_model, sub_mask, threads
    )
    start_params = _clip(
        fields,
        [
            getattr(hardware, HARDWARE_FIELDS[f]) or (1.0 if f == "bwEfficiencyFactor" else 0.0)
            for f in fields
        ],
    )
    start_params_exact = {f: float(getattr(hardware, HARDWARE_FIELDS[f])) for f in fields}
    start = prob.evaluate([start_params_exact])[0]
    lo = np.array([BOUNDS[f][0] for f in fields])
    hi = np.array([BOUNDS[f][1] for f in fields])
    m = max(1, int(math.ceil(math.log2(max(n_candidates, 2)))))
    sample = qmc.Sobol(d=len(fields), scramble=True, seed=seed).random_base2(m)
    cands = [start_params] + [_clip(fields, lo + s * (hi - lo)) for s in sample]
    evals = prob.evaluate(cands)
    history = [start] + evals
    best = min(history, key=lambda e: e.loss)
    # refine the best few with bounded Nelder-Mead
    scale = hi - lo
    for seed_eval in sorted(evals, key=lambda e: e.loss)[:3]:
        x0 = (np.array([seed_eval.params[f] for f in fields]) - lo) / scale

        def fun(x):
            ev = prob.evaluate([_clip(fields, lo + np.clip(x, 0, 1) * scale)])[0]
            history.append(ev)
            return ev.loss

        minimize(
            fun,
            x0,
            method="Nelder-Mead",
            bounds=[(0.0, 1.0)] * len(fields),
            options={
                "maxiter": refine_iter,
                "xatol": 1e-4,
                "fatol": 1e-3,
                "initial_simplex": _simplex(x0),
            },
        )
        best = min(history, key=lambda e: e.loss)
    if best.loss > start.loss:
        best = start
    elapsed = time.perf_counter() - t0
    fitted = hardware.with_fields(**best.params)
    return CalibrationResult(
        hardware=fitted,
        start=start,
        best=best,
        n_candidates=prob.n_evals,
        seconds=elapsed,
        candidates_per_s=prob.n_evals / elapsed if elapsed else 0.0,
        history=history,
    )


def _simplex(x0: np.ndarray) -> np.ndarray:
    d = len(x0)
    s = [x0]
    for i in range(d):
        x = x0.copy()
        x[i] = x[i] + 0.1 if x[i] < 0.9 else x[i] - 0.1
        s.append(x)
    return np.array(s)


def relevant_requests(
    workload: Workload, mask: np.ndarray, slack: float = 3.0
) -> tuple[Workload, np.ndarray]:
    """The requests that can affect the fitted ones: every request that arrives before the last
    fitted request would have finished even at ``slack`` times its measured latency."""
    arr = workload.arrival_us
    end = arr[mask] + slack * workload.extra["measured_e2e_ms"][mask] * 1000.0
    keep = arr <= end.max()
    if keep.all():
        return workload, mask
    extra = {k: np.asarray(v)[keep] for k, v in workload.extra.items()}
    sub = Workload.from_arrays(
        arr[keep],
        workload.prompt_tok[keep],
        workload.output_tok[keep],
        workload.group[keep],
        workload.prefix_tok[keep],
        name=workload.name,
        source=workload.source,
        extra=extra,
        sort=False,
    )
    return sub, mask[keep]


def phases(workload: Workload) -> list[str]:
    ph = workload.extra.get("phase")
    return sorted({str(p) for p in ph}) if ph is not None else []


def fit_mask(workload: Workload, phase: str | None, skip_first: int) -> np.ndarray:
    """Requests used for fitting: in ``phase`` (all when None), not among the first
    ``skip_first`` by arrival (the workload is in arrival order)."""
    n = len(workload)
    mask = np.ones(n, bool)
    mask[: max(0, int(skip_first))] = False
    if phase is not None:
        ph = workload.extra.get("phase")
        if ph is None:
            raise ConfigError("the trace has no phase column", field="fit_phase", value=phase)
        mask &= np.asarray([str(p) == phase for p in ph])
    return mask


def before_after(
    workload: Workload,
    *,
    model: ModelConfig,
    before: Hardware,
    after: Hardware,
    tp: int,
    scheduler: SchedulerConfig,
    fit_phase: str | None,
    skip_first: int,
    bench_data=None,
    step_model: str = "auto",
) -> list[dict]:
    """MAPE of TTFT, E2E and TPOT on the fitted requests and on the rest, with the hardware
    entry before and after calibration: rows {group, label, n, ttft, e2e, tpot}."""
    from infersweep.api import simulate
    from infersweep.fitting.validate import compare

    mask = fit_mask(workload, fit_phase, skip_first)
    rows = []
    for label, hw in (("before", before), ("after", after)):
        sim = simulate(
            model=model,
            hardware=hw,
            tp=tp,
            bench_data=bench_data,
            step_model=step_model,
            workload=workload,
            scheduler=scheduler,
        )
        rep = compare(workload, sim, skip_first=skip_first)
        for group, sel in (("fitted", mask), ("rest", ~mask)):
            stats = rep.stats_for(sel)
            rows.append({"group": group, "label": label, "n": int(sel.sum()), **stats})
    return rows
