"""Joint calibration: one hardware profile fitted to several measured traces at once.

A *trace* is a folder holding ``measured.csv`` (the measured-trace format of ``validate``) and
``manifest.json`` (the server settings; ``gpu``, ``vllm_version``, model, TP, token budget, KV
blocks), or a measured CSV with a manifest next to it.  Every trace is simulated with its own
model, TP and scheduler settings on the same candidate hardware entry.

Loss (robust, scaled by the targets a capacity planner cares about)::

    per trace: ( MAPE_ttft / 15 + MAPE_e2e / 8 + |mean error TTFT| / 8 + |mean error E2E| / 5 ) / 4
               (a trace with several phases, e.g. load stages: the mean of this over its phases)
    loss     = mean over traces

with every per-request relative error capped at 100 % (a request the simulation does not
complete counts as 100 %), so a few runaway requests cannot dominate and each trace weighs the
same whatever its length.  The request-level fields (``RequestOverheadMicros``,
``PromptTokenOverheadMicros``, ``OutputTokenOverheadMicros``) do not change the engine, so for
each candidate of the step fields they are solved for by a cheap inner fit on the simulated
per-request times; the step fields are searched with a scrambled Sobol sample and refined with
bounded Nelder-Mead (as :mod:`.calibrate`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infersweep import schema as sc
from infersweep.config.models import (
    HARDWARE_FIELDS,
    REQUEST_FIELDS,
    Hardware,
    ModelConfig,
    load_model,
    read_json,
)
from infersweep.costmodel.stepcost import CostModel, build_cost_model
from infersweep.errors import ConfigError
from infersweep.scheduler.driver import Job, SchedulerConfig, run_jobs
from infersweep.workload.generate import Workload

#: step fields the joint fit may search -> (lower, upper) bound
STEP_BOUNDS: dict[str, tuple[float, float]] = {
    "PrefillComputeScale": (0.3, 2.0),
    "DecodeComputeScale": (0.3, 2.0),
    "bwEfficiencyFactor": (0.5, 1.0),
    "TOverheadMicros": (0.0, 8000.0),
    "StepRequestOverheadMicros": (0.0, 100.0),
    "LayerOverheadMicros": (0.0, 200.0),
    "perLayerOverhead": (0.0, 100.0),
    "AllReduceLatency": (0.0, 50.0),
    "AllReducePeerLatencyMicros": (0.0, 30.0),
    "AllReduceBwGBs": (20.0, 900.0),
    "PrefillOverheadMicros": (0.0, 20000.0),
    "MixedPrefillOverheadMicros": (0.0, 5000.0),
}
#: request fields (solved by the inner fit) -> bounds
REQUEST_BOUNDS: dict[str, tuple[float, float]] = {
    "RequestOverheadMicros": (0.0, 200_000.0),
    "PromptTokenOverheadMicros": (0.0, 100.0),
    "FirstTokenDelaySteps": (0.0, 6.0),
    "OutputTokenOverheadMicros": (0.0, 5000.0),
}
JOINT_FITTABLE = tuple(STEP_BOUNDS) + tuple(REQUEST_BOUNDS)
#: The default field set (chosen by leave-one-trace-out cross-validation; README, "Fidelity").
DEFAULT_JOINT_FIT = (
    "PrefillComputeScale",
    "DecodeComputeScale",
    "bwEfficiencyFactor",
    "TOverheadMicros",
    "StepRequestOverheadMicros",
    "AllReducePeerLatencyMicros",
    "RequestOverheadMicros",
    "FirstTokenDelaySteps",
)
#: fields that only act when TP > 1 (left out of a fit whose traces are all TP 1)
TP_FIELDS = ("AllReduceLatency", "AllReducePeerLatencyMicros", "AllReduceBwGBs")
#: target per-request MAPE / error of the mean (%) that scale the loss terms
TARGETS = {"ttft_mape": 15.0, "e2e_mape": 8.0, "ttft_mean": 8.0, "e2e_mean": 5.0}


# --------------------------------------------------------------------------------------------
# traces
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Trace:
    """One measured run: its requests and measurements, deployment and scoring settings."""

    name: str
    csv: Path
    manifest_path: Path | None
    manifest: dict
    workload: Workload
    model: ModelConfig
    tp: int
    scheduler: SchedulerConfig
    skip_first: int
    gpu: str
    vllm_version: str
    only: np.ndarray | None = None  # score only these requests (e.g. one phase)

    @property
    def mask(self) -> np.ndarray:
        m = np.ones(len(self.workload), bool)
        m[: self.skip_first] = False
        if self.only is not None:
            m &= self.only
        return m


def _trace_error(name: str, exc: Exception) -> ConfigError:
    return ConfigError(f"trace {name!r}: {exc}")


def recommended_skip_first(manifest: dict) -> int:
    v = manifest.get("recommended_skip_first")
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    return 1


def find_manifest(csv_path: Path) -> Path | None:
    for cand in (csv_path.parent / "manifest.json", csv_path.with_suffix(".manifest.json")):
        if cand.is_file():
            return cand
    return None


def load_trace(
    path: str | Path,
    manifest: str | Path | None = None,
    *,
    skip_first: int | None = None,
    model_config_folder: str | Path | None = None,
) -> Trace:
    """A trace from a folder (``measured.csv`` + ``manifest.json``) or a CSV (manifest next to
    it, or given).  Any problem is a ConfigError naming the trace."""
    from infersweep.fitting.otlp import read_manifest, read_measured

    p = Path(path)
    name = p.name if p.is_dir() else (p.parent.name if p.name == "measured.csv" else p.stem)
    try:
        if p.is_dir():
            csv_path = p / "measured.csv"
            if not csv_path.is_file():
                raise ConfigError("no measured.csv in the folder", file=p)
        else:
            csv_path = p
        man_path = Path(manifest) if manifest is not None else find_manifest(csv_path)
        raw = read_json(man_path) if man_path is not None else {}
        if not isinstance(raw, dict):
            raise ConfigError("must be a JSON object", file=man_path)
        man = read_manifest(man_path) if man_path is not None else {}
        wl = read_measured(csv_path)
        if "model" not in man and model_config_folder is None:
            raise ConfigError(
                "no model: the manifest names none", file=man_path or csv_path, field="model"
            )
        model = load_model(man.get("model"), model_config_folder)
        tp = int(man.get("tp", 1))
        sched = SchedulerConfig(
            semantics="vllm",
            max_num_scheduled_tokens=man.get("budget", 2048),
            max_num_running_reqs=man.get("max_run", 256),
            block_size=man.get("block", 16),
            total_kv_blocks=man.get("blocks"),
            prefix_caching=man.get("prefix_caching", True),
        )
        skip = recommended_skip_first(raw) if skip_first is None else int(skip_first)
        if skip >= len(wl):
            raise ConfigError(
                f"skipping the first {skip} request(s) leaves none of the {len(wl)}",
                field="recommended_skip_first",
            )
        mt = wl.extra["measured_ttft_ms"][skip:]
        me = wl.extra["measured_e2e_ms"][skip:]
        if not (np.all(np.isfinite(mt)) and np.all(np.isfinite(me))):
            raise ConfigError("measured TTFT/E2E must be finite numbers", file=csv_path)
        if not (np.all(mt > 0) and np.all(me > 0)):
            raise ConfigError("measured TTFT and E2E must be > 0", file=csv_path)
    except ConfigError as exc:
        raise _trace_error(name, exc) from None
    return Trace(
        name=name,
        csv=csv_path,
        manifest_path=man_path,
        manifest=raw,
        workload=wl,
        model=model,
        tp=tp,
        scheduler=sched,
        skip_first=skip,
        gpu=str(raw.get("gpu") or "H100"),
        vllm_version=str(raw.get("vllm_version") or ""),
    )


def trace_paths(paths) -> list[Path]:
    """Expand the given paths: a folder with measured.csv is one trace; another folder stands
    for its sub-folders that hold one (sorted by name)."""
    out: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir() and not (p / "measured.csv").is_file():
            subs = sorted(q for q in p.iterdir() if (q / "measured.csv").is_file())
            if not subs:
                raise ConfigError("no traces in the folder (no */measured.csv)", file=p)
            out.extend(subs)
        elif p.exists():
            out.append(p)
        else:
            raise ConfigError("trace not found", file=p)
    return out


def load_traces(paths, **kw) -> list[Trace]:
    traces = [load_trace(p, **kw) for p in trace_paths(paths)]
    names = [t.name for t in traces]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError("the same trace name twice", value=", ".join(dup))
    return traces


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------


@dataclass
class TraceScore:
    """Errors (%) of one trace: per-request MAPE and error of the mean, TTFT / E2E / TPOT."""

    name: str
    n: int
    ttft_mape: float
    e2e_mape: float
    tpot_mape: float
    ttft_mean_err: float  # (mean pred - mean meas) / mean meas * 100
    e2e_mean_err: float
    tpot_mean_err: float
    not_completed: int = 0

    def loss(self) -> float:
        return (
            self.ttft_mape / TARGETS["ttft_mape"]
            + self.e2e_mape / TARGETS["e2e_mape"]
            + abs(self.ttft_mean_err) / TARGETS["ttft_mean"]
            + abs(self.e2e_mean_err) / TARGETS["e2e_mean"]
        ) / 4.0

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in vars(self).items()}


def _rel(pred, meas, cap=1.0):
    r = (pred - meas) / meas
    return np.where(np.isfinite(r), np.clip(r, -cap, cap), cap)


def score_arrays(name, ttft_p, e2e_p, ttft_m, e2e_m, out_tok) -> TraceScore:
    """Scores of predicted vs measured per-request arrays (ms; NaN = not completed)."""
    done = np.isfinite(ttft_p) & np.isfinite(e2e_p)
    rt = np.abs(_rel(ttft_p, ttft_m))
    re_ = np.abs(_rel(e2e_p, e2e_m))
    k = out_tok > 1
    with np.errstate(invalid="ignore", divide="ignore"):
        tp_p = (e2e_p - ttft_p) / np.maximum(out_tok - 1, 1)
        tp_m = (e2e_m - ttft_m) / np.maximum(out_tok - 1, 1)
    rtp = np.abs(_rel(tp_p[k], tp_m[k])) if k.any() else np.zeros(1)

    def mean_err(p, m):
        ok = np.isfinite(p) & np.isfinite(m)
        p = p[ok]
        m = m[ok]
        if len(m) == 0 or m.mean() <= 0:
            return 100.0
        return float((p.mean() - m.mean()) / m.mean() * 100.0)

    kd = k & done
    return TraceScore(
        name=name,
        n=int(len(ttft_m)),
        ttft_mape=float(rt.mean() * 100),
        e2e_mape=float(re_.mean() * 100),
        tpot_mape=float(rtp.mean() * 100),
        ttft_mean_err=mean_err(ttft_p, ttft_m),
        e2e_mean_err=mean_err(e2e_p, e2e_m),
        tpot_mean_err=mean_err(tp_p[kd], tp_m[kd]) if kd.any() else 0.0,
        not_completed=int((~done).sum()),
    )


# --------------------------------------------------------------------------------------------
# the problem: traces x candidate step fields
# --------------------------------------------------------------------------------------------


@dataclass
class _Sim:
    """Engine-only predictions (no request overheads) of one trace, on its scored requests."""

    ttft0: np.ndarray  # ms, NaN = not completed
    e2e0: np.ndarray
    prompt: np.ndarray
    out_m1: np.ndarray  # output tokens - 1
    mt: np.ndarray
    me: np.ndarray
    out_tok: np.ndarray
    phase: np.ndarray | None = None  # int phase code per scored request (None: one phase)


class JointProblem:
    """Simulates candidate hardware entries on every trace (one batch of jobs per call)."""

    def __init__(
        self,
        traces: list[Trace],
        hardware: Hardware,
        *,
        bench_data=None,
        step_model: str = "auto",
        threads: int | None = None,
        max_requests: int | None = None,
    ) -> None:
        from infersweep.fitting.calibrate import gemm_terms

        self.traces = traces
        self.hw = hardware
        self.threads = threads
        self.n_sims = 0
        self._base: dict[tuple, tuple[CostModel, tuple]] = {}
        self.cost_keys = []
        self.workloads = []
        self.masks = []
        for t in traces:
            key = (t.model.name, t.tp, t.scheduler.max_num_scheduled_tokens)
            if key not in self._base:
                cm = build_cost_model(
                    t.model,
                    hardware,
                    t.tp,
                    bench_data=bench_data,
                    step_model=step_model,
                    max_tokens=max(t.scheduler.max_num_scheduled_tokens, 8192),
                )
                self._base[key] = (cm, gemm_terms(cm))
            self.cost_keys.append(key)
            wl, mask = t.workload, t.mask
            if max_requests is not None and len(wl) > max_requests + t.skip_first:
                wl, mask = (
                    _head(wl, t.skip_first + max_requests),
                    mask[: t.skip_first + max_requests],
                )
            self.workloads.append(wl)
            self.masks.append(mask)

    def hardware_for(self, params: dict[str, float]) -> Hardware:
        return self.hw.with_fields(**params)

    def simulate(self, params_list: list[dict[str, float]]) -> list[list[_Sim]]:
        """Engine predictions of every trace for every candidate (request fields forced 0)."""
        from infersweep.fitting.calibrate import with_hardware

        zero = dict.fromkeys(REQUEST_FIELDS, 0.0)
        jobs = []
        for params in params_list:
            hw = self.hw.with_fields(**{**params, **zero})
            cms = {k: with_hardware(cm, hw, terms) for k, (cm, terms) in self._base.items()}
            for t, key, wl in zip(self.traces, self.cost_keys, self.workloads):
                jobs.append(Job(wl, cms[key], t.scheduler))
        res = run_jobs(jobs, keep_requests=True, threads=self.threads, summary=False)
        self.n_sims += len(jobs)
        out: list[list[_Sim]] = []
        j = 0
        for _ in params_list:
            row = []
            for wl, mask in zip(self.workloads, self.masks):
                rows = res.out_req[res.req_off[j] : res.req_off[j + 1]]
                j += 1
                done = rows[:, sc.O_STATE] == sc.STATE_DONE
                ttft = np.where(done, rows[:, sc.O_TTFT] / 1000.0, np.nan)[mask]
                e2e = np.where(done, rows[:, sc.O_E2E] / 1000.0, np.nan)[mask]
                row.append(
                    _Sim(
                        ttft0=ttft,
                        e2e0=e2e,
                        prompt=wl.prompt_tok[mask].astype(float),
                        out_m1=np.maximum(wl.output_tok[mask] - 1, 0).astype(float),
                        mt=wl.extra["measured_ttft_ms"][mask],
                        me=wl.extra["measured_e2e_ms"][mask],
                        out_tok=wl.output_tok[mask],
                        phase=_phase_codes(wl, mask),
                    )
                )
            out.append(row)
        return out


def _head(wl: Workload, n: int) -> Workload:
    extra = {k: np.asarray(v)[:n] for k, v in wl.extra.items()}
    return Workload.from_arrays(
        wl.arrival_us[:n],
        wl.prompt_tok[:n],
        wl.output_tok[:n],
        wl.group[:n],
        wl.prefix_tok[:n],
        name=wl.name,
        source=wl.source,
        extra=extra,
        sort=False,
    )


def apply_request_fields(s: _Sim, req: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Predicted TTFT and E2E (ms) of a simulation with the request-level fields added (the
    kernel's add_request_overheads_nb, in ms and without its rounding to µs)."""
    pre = (
        req.get("RequestOverheadMicros", 0.0) + req.get("PromptTokenOverheadMicros", 0.0) * s.prompt
    ) / 1000.0
    steps = req.get("FirstTokenDelaySteps", 0.0)
    if steps:
        with np.errstate(invalid="ignore", divide="ignore"):
            itl = np.where(s.out_m1 > 0, (s.e2e0 - s.ttft0) / np.maximum(s.out_m1, 1), 0.0)
        pre = pre + steps * itl
    post = req.get("OutputTokenOverheadMicros", 0.0) * s.out_m1 / 1000.0
    return s.ttft0 + pre, s.e2e0 + pre + post


def _phase_codes(wl: Workload, mask: np.ndarray) -> np.ndarray | None:
    ph = wl.extra.get("phase")
    if ph is None:
        return None
    _, codes = np.unique(np.asarray([str(p) for p in ph])[mask], return_inverse=True)
    return codes if codes.max(initial=0) > 0 else None


def sims_loss(sims: list[_Sim], req: dict[str, float]) -> float:
    """The loss: mean over traces of the trace loss; a trace with several phases (load stages)
    scores each phase and averages them, so the fit sees how latency grows with load."""
    out = []
    for s in sims:
        tp, ep = apply_request_fields(s, req)
        if s.phase is None:
            out.append(score_arrays("", tp, ep, s.mt, s.me, s.out_tok).loss())
            continue
        parts = []
        for c in range(int(s.phase.max()) + 1):
            k = s.phase == c
            parts.append(score_arrays("", tp[k], ep[k], s.mt[k], s.me[k], s.out_tok[k]).loss())
        out.append(float(np.mean(parts)))
    return float(np.mean(out))


def score_sims(names, sims: list[_Sim], req: dict[str, float]) -> list[TraceScore]:
    out = []
    for name, s in zip(names, sims):
        tp, ep = apply_request_fields(s, req)
        out.append(score_arrays(name, tp, ep, s.mt, s.me, s.out_tok))
    return out


def fit_request_fields(
    names, sims: list[_Sim], fields: tuple[str, ...], start: dict[str, float]
) -> tuple[dict[str, float], float]:
    """The request-level fields (those in ``fields``; others kept at ``start``) that minimise
    the loss on these simulations (bounded Nelder-Mead from ``start``, then from zero)."""
    from scipy.optimize import minimize

    free = [f for f in REQUEST_FIELDS if f in fields]
    base = {f: float(start.get(f, 0.0)) for f in REQUEST_FIELDS}
    if not free:
        return base, sims_loss(sims, base)
    lo = np.array([REQUEST_BOUNDS[f][0] for f in free])
    hi = np.array([REQUEST_BOUNDS[f][1] for f in free])
    # natural scales: 10 ms, 10 µs per prompt token, 1 ms per output token
    scale = np.array(
        [
            {
                "RequestOverheadMicros": 10_000.0,
                "PromptTokenOverheadMicros": 10.0,
                "FirstTokenDelaySteps": 1.0,
                "OutputTokenOverheadMicros": 1000.0,
            }[f]
            for f in free
        ]
    )

    def params(x):
        p = dict(base)
        for f, v, a, b in zip(free, np.asarray(x) * scale, lo, hi):
            p[f] = float(min(max(v, a), b))
        return p

    def loss(x):
        return sims_loss(sims, params(x))

    x0 = np.array([base[f] for f in free]) / scale
    d = len(free)
    simplex = np.array([x0] + [x0 + np.eye(d)[i] * 0.5 for i in range(d)])
    r = minimize(
        loss,
        x0,
        method="Nelder-Mead",
        options={
            "maxiter": 40 * d,
            "xatol": 1e-3,
            "fatol": 1e-4,
            "initial_simplex": simplex,
        },
    )
    return params(r.x), float(r.fun)


@dataclass
class JointEvaluation:
    params: dict[str, float]  # step and request fields
    loss: float
    scores: list[TraceScore]


@dataclass
class JointResult:
    hardware: Hardware
    fields: tuple[str, ...]
    start: JointEvaluation
    best: JointEvaluation
    n_candidates: int
    n_simulations: int
    seconds: float
    history: list[JointEvaluation] = field(default_factory=list)


def canonical_joint_fields(names) -> tuple[str, ...]:
    from infersweep.fitting.calibrate import canonical_fields

    return canonical_fields(names, JOINT_FITTABLE, "joint calibration")


def _start_value(hw: Hardware, f: str) -> float:
    v = float(getattr(hw, HARDWARE_FIELDS[f]))
    if v == 0.0 and f in ("PrefillComputeScale", "DecodeComputeScale", "bwEfficiencyFactor"):
        return 1.0
    if v == 0.0 and f == "AllReduceBwGBs":
        return STEP_BOUNDS[f][1]
    return v


def joint_calibrate(
    traces: list[Trace],
    hardware: Hardware,
    *,
    fields=DEFAULT_JOINT_FIT,
    bench_data=None,
    step_model: str = "auto",
    n_candidates: int = 32,
    refine_iter: int = 60,
    seed: int = 0,
    threads: int | None = None,
    max_requests: int | None = None,
    progress=None,
) -> JointResult:
    """Fit ``fields`` of ``hardware`` to all ``traces`` at once (see the module doc)."""
    from scipy.optimize import minimize
    from scipy.stats import qmc

    t0 = time.perf_counter()
    if not traces:
        raise ConfigError("no traces to fit")
    fields = canonical_joint_fields(fields)
    if all(t.tp == 1 for t in traces):
        fields = tuple(f for f in fields if f not in TP_FIELDS) or fields
    step_fields = tuple(f for f in fields if f in STEP_BOUNDS)
    req_fields = tuple(f for f in fields if f in REQUEST_BOUNDS)
    prob = JointProblem(
        traces,
        hardware,
        bench_data=bench_data,
        step_model=step_model,
        threads=threads,
        max_requests=max_requests,
    )
    names = [t.name for t in traces]
    req_start = {f: float(getattr(hardware, HARDWARE_FIELDS[f])) for f in REQUEST_FIELDS}
    history: list[JointEvaluation] = []
    state = {"req": dict(req_start)}

    def evaluate(cands: list[dict[str, float]]) -> list[JointEvaluation]:
        sims_all = prob.simulate(cands)
        evs = []
        for params, sims in zip(cands, sims_all):
            req, loss = fit_request_fields(names, sims, req_fields, state["req"])
            scores = score_sims(names, sims, req)
            evs.append(JointEvaluation({**params, **req}, loss, scores))
        history.extend(evs)
        if progress is not None:
            progress(len(history), min(e.loss for e in history))
        return evs

    start_step = {f: float(getattr(hardware, HARDWARE_FIELDS[f])) for f in step_fields}
    sims0 = prob.simulate([start_step])[0]
    start = JointEvaluation(
        {**start_step, **req_start},
        sims_loss(sims0, req_start),
        score_sims(names, sims0, req_start),
    )
    if step_fields:
        lo = np.array([STEP_BOUNDS[f][0] for f in step_fields])
        hi = np.array([STEP_BOUNDS[f][1] for f in step_fields])
        x_start = np.clip([_start_value(hardware, f) for f in step_fields], lo, hi)

        def to_params(u) -> dict[str, float]:
            x = lo + np.clip(u, 0.0, 1.0) * (hi - lo)
            return {f: float(v) for f, v in zip(step_fields, x)}

        m = max(1, int(math.ceil(math.log2(max(n_candidates, 2)))))
        sample = qmc.Sobol(d=len(step_fields), scramble=True, seed=seed).random_base2(m)
        u_start = (x_start - lo) / (hi - lo)
        cands = [to_params(u_start)] + [to_params(u) for u in sample]
        evs = evaluate(cands)
        best = min(evs, key=lambda e: e.loss)
        state["req"] = {f: best.params.get(f, 0.0) for f in REQUEST_FIELDS}
        u0 = (np.array([best.params[f] for f in step_fields]) - lo) / (hi - lo)

        def fun(u):
            return evaluate([to_params(u)])[0].loss

        d = len(step_fields)
        simplex = [u0] + [u0 + np.eye(d)[i] * (0.08 if u0[i] < 0.9 else -0.08) for i in range(d)]
        minimize(
            fun,
            u0,
            method="Nelder-Mead",
            options={
                "maxiter": refine_iter,
                "xatol": 2e-3,
                "fatol": 1e-4,
                "initial_simplex": np.array(simplex),
            },
        )
        best = min(history, key=lambda e: e.loss)
    else:
        req, loss = fit_request_fields(names, sims0, req_fields, req_start)
        best = JointEvaluation(dict(req), loss, score_sims(names, sims0, req))
        history.append(best)
    if best.loss > start.loss:
        best = start
    fitted = hardware.with_fields(**_rounded(best.params))
    return JointResult(
        hardware=fitted,
        fields=fields,
        start=start,
        best=best,
        n_candidates=len(history),
        n_simulations=prob.n_sims,
        seconds=time.perf_counter() - t0,
        history=history,
    )


def _rounded(params: dict[str, float]) -> dict[str, float]:
    """Fitted values to 4 significant digits (a readable profile; far below the noise)."""
    return {k: float(f"{v:.4g}") for k, v in params.items()}


def score_hardware(
    traces: list[Trace], hardware: Hardware, *, bench_data=None, step_model: str = "auto"
) -> list[TraceScore]:
    """Scores of each trace simulated with ``hardware`` as it is (request fields included)."""
    prob = JointProblem(traces, hardware, bench_data=bench_data, step_model=step_model)
    sims = prob.simulate([{}])[0]
    req = {f: float(getattr(hardware, HARDWARE_FIELDS[f])) for f in REQUEST_FIELDS}
    return score_sims([t.name for t in traces], sims, req)


def cross_validate(
    traces: list[Trace], hardware: Hardware, *, group_of=None, **kw
) -> dict[str, TraceScore]:
    """Leave-one-out: for each group of traces (``group_of(trace)``; default each trace alone)
    fit on the others and score the left-out traces. Returns held-out scores by trace name."""
    groups: dict[str, list[Trace]] = {}
    for t in traces:
        groups.setdefault(group_of(t) if group_of else t.name, []).append(t)
    out: dict[str, TraceScore] = {}
    for held in groups.values():
        train = [t for t in traces if t not in held]
        if not train:
            continue
        res = joint_calibrate(train, hardware, **kw)
        for s in score_hardware(held, res.hardware, bench_data=kw.get("bench_data")):
            out[s.name] = s
    return out


def pooled(scores: list[TraceScore]) -> dict[str, float]:
    """Median over traces of the errors of the means, mean of the MAPEs (request-weighted)."""
    n = np.array([s.n for s in scores], float)

    def wmean(vals):
        return float(np.sum(np.array(vals) * n) / n.sum())

    return {
        "ttft_mape_pooled": wmean([s.ttft_mape for s in scores]),
        "e2e_mape_pooled": wmean([s.e2e_mape for s in scores]),
        "tpot_mape_pooled": wmean([s.tpot_mape for s in scores]),
        "ttft_mean_err_median": float(np.median([abs(s.ttft_mean_err) for s in scores])),
        "e2e_mean_err_median": float(np.median([abs(s.e2e_mean_err) for s in scores])),
        "tpot_mean_err_median": float(np.median([abs(s.tpot_mean_err) for s in scores])),
    }


def score_hardware_phases(
    traces: list[Trace], hardware: Hardware, *, bench_data=None, step_model: str = "auto"
) -> list[tuple[str, str, TraceScore]]:
    """(trace, phase, scores) for each phase of each trace ("all" first) with ``hardware``."""
    prob = JointProblem(traces, hardware, bench_data=bench_data, step_model=step_model)
    sims = prob.simulate([{}])[0]
    req = {f: float(getattr(hardware, HARDWARE_FIELDS[f])) for f in REQUEST_FIELDS}
    out = []
    for t, s, wl, mask in zip(traces, sims, prob.workloads, prob.masks):
        tp, ep = apply_request_fields(s, req)
        out.append((t.name, "all", score_arrays(t.name, tp, ep, s.mt, s.me, s.out_tok)))
        ph = wl.extra.get("phase")
        if ph is None:
            continue
        ph = np.asarray([str(p) for p in ph])[mask]
        names = list(dict.fromkeys(ph.tolist()))
        if len(names) < 2:
            continue
        for name in names:
            k = ph == name
            out.append(
                (t.name, name, score_arrays(t.name, tp[k], ep[k], s.mt[k], s.me[k], s.out_tok[k]))
            )
    return out
