"""Capacity planning: for every configuration of a grid, the highest arrival rate that meets an
SLO, what it costs, how sure that is, and the ``vllm serve`` settings that realise it.

A plan spec is a sweep spec without a ``rate`` (the rate is what is searched) plus an ``[slo]``
table of result-metric upper bounds and an optional ``[plan]`` table::

    [sweep]
    workload = "chatbot"
    num_requests = 2000

    [grid]
    model = ["qwen2.5-7b-instruct", "llama-3.1-8b-instruct"]
    hardware = ["H100", "A100-SXM"]
    tp = [1, 2]

    [slo]
    ttft_p99_ms = 500
    itl_p99_ms = 50

    [plan]
    target_rate = 100          # req/s to serve: replicas, GPUs and cost per hour
    cost_uncertainty = 0.05    # ±δ on every step cost (default: the profile's CV error, or 5 %)
    price = { H100 = 3.1 }     # USD per GPU-hour (default: the catalog's PricePerGPUHour)

A point *meets the SLO* when its status is ``ok``, every injected request completed and every
named metric is at most its bound.  ``max_rate`` is a rate that was simulated and met the SLO,
whose point at ``1.03 × max_rate`` was simulated and did not, and which is within 1 % of the
lowest failing rate above it that was simulated.  Every point is simulated exactly as ``sweep``
simulates the same settings (same workload generation, seed and cost tables), so a sweep at
``rate = max_rate`` reproduces the planned point bit for bit.

The search runs every configuration together: each round is one batched kernel call
(``scheduler.driver.run_jobs``) holding the next probe of every unfinished search.  A search
starts from an analytic capacity estimate (the cost model's step time at the largest batch the
KV cache holds), brackets the boundary, and narrows it by safeguarded regula falsi on the SLO
margin (the largest metric/bound ratio), falling back to bisection when it stalls.  The ±δ
searches (every step cost scaled by 1 ± δ through the hardware field ``StepCostScale``) start
from the nominal search's points: scaling every step time by s is, up to µs rounding, the same
run slowed down by s, so the boundary moves to where the nominal margin is 1/s, divided by s.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from infersweep import schema
from infersweep.errors import ConfigError
from infersweep.sweeps.grid import SweepSpec, canonical
from infersweep.workload.generate import constant_gap_us

#: a point at ``STEP_ABOVE × max_rate`` must fail the SLO (and was simulated)
STEP_ABOVE = 1.03
#: the bracket [meets, fails] is narrowed until hi / lo <= 1 + TOLERANCE
TOLERANCE = 0.01
#: a configuration is infeasible when it fails at this fraction of its capacity estimate
FLOOR_FRACTION = 1e-3
#: rates are searched up to this (requests per second)
RATE_CAP = 1e5
#: the sensitivity band is "fragile" when it is wider than this either side of max_rate
FRAGILE = 0.15
DEFAULT_UNCERTAINTY = 0.05
#: a search gives up (status "unconverged") after this many probes
MAX_PROBES = 40
#: configurations (highest max_rate first) drawn in colour in knees.png
KNEE_CONFIGS = 10
#: the replica check gives up (replicas_check "unmet") above this many times the estimate
#: (and at least REPLICA_SLACK more)
REPLICA_FACTOR = 4
REPLICA_SLACK = 8
#: the replica check's steps away from the estimate (x this, at least 1 replica)
REPLICA_STEP = 1.25
#: the replica check simulates a cluster of more instances than this as a slice of this many
#: at the same rate per instance (conservative: see ReplicaCheck)
CHECK_MAX_INSTANCES = 16

#: vLLM's KV-transfer setting of a disaggregated deployment (each side runs it)
PD_KV_TRANSFER = """'{"kv_connector":"NixlConnector","kv_role":"kv_both"}'"""

#: Hugging Face ids of the embedded models (for ``vllm serve``)
HF_IDS = {
    "codellama-34b-instruct-hf": "codellama/CodeLlama-34b-Instruct-hf",
    "llama-2-70b-hf": "meta-llama/Llama-2-70b-hf",
    "llama-2-7b-hf": "meta-llama/Llama-2-7b-hf",
    "llama-3.1-8b-instruct": "meta-llama/Llama-3.1-8B-Instruct",
    "qwen2.5-1.5b-instruct": "Qwen/Qwen2.5-1.5B-Instruct",
    "qwen2.5-3b-instruct": "Qwen/Qwen2.5-3B-Instruct",
    "qwen2.5-7b-instruct": "Qwen/Qwen2.5-7B-Instruct",
    "qwen3-14b": "Qwen/Qwen3-14B",
}

#: summary-vector slot of every metric (and of the status code)
_M = {name: i for i, name in enumerate(schema.SUMMARY.names)}
#: the numeric result metrics, in sweep column order, and their declarations
SWEEP_METRICS = tuple(m.name for m in schema.METRIC_COLUMNS)
METRICS = {m.name: m for m in schema.METRIC_COLUMNS}
_STATUS_OK = schema.RUN_STATUS.index("ok")


# --------------------------------------------------------------------------------------------
# inputs: SLO, prices, options
# --------------------------------------------------------------------------------------------


def check_slo(
    slo: Mapping[str, Any] | None, where: str | None = None, prefix: str = "slo."
) -> dict[str, float]:
    """The SLO as {metric: upper bound}; one clear error for an unknown metric or a bound that
    is not a positive number (its field named ``prefix`` + metric: ``slo.`` in a spec file,
    ``--slo `` on the command line)."""
    if slo is None or not isinstance(slo, Mapping) or not slo:
        raise ConfigError(
            "a plan needs an SLO: at least one metric and its upper bound",
            file=where,
            field="slo",
            hint="e.g. [slo] ttft_p99_ms = 500 in the spec, or --slo ttft_p99_ms=500",
        )
    out: dict[str, float] = {}
    for key, bound in slo.items():
        name = str(key).strip()
        if name not in METRICS:
            close = [m for m in SWEEP_METRICS if name.split("_")[0] in m][:8]
            raise ConfigError(
                "unknown metric in the SLO",
                file=where,
                field=f"{prefix}{name}",
                hint="SLO keys are result metrics, e.g. "
                + ", ".join(close or ["ttft_p99_ms", "itl_p99_ms", "e2e_p99_ms"]),
            )
        if isinstance(bound, str):
            try:
                bound = float(bound)
            except ValueError:
                raise ConfigError(
                    "an SLO bound must be a number",
                    file=where,
                    field=f"{prefix}{name}",
                    value=bound,
                ) from None
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise ConfigError(
                "an SLO bound must be a number", file=where, field=f"{prefix}{name}", value=bound
            )
        if not math.isfinite(bound) or bound <= 0:
            raise ConfigError(
                "an SLO bound must be a finite number > 0 (it is an upper bound)",
                file=where,
                field=f"{prefix}{name}",
                value=bound,
            )
        out[name] = float(bound)
    return out


def parse_pairs(items: list[str], flag: str) -> dict[str, str]:
    """``KEY=VALUE`` items (repeatable, comma lists) as a dict."""
    out: dict[str, str] = {}
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise ConfigError("expected KEY=VALUE", field=flag, value=part)
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _number(value: Any, field_name: str, where: str | None, *, lo: float, lo_ok: bool) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(
                "must be a number", file=where, field=field_name, value=value
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError("must be a finite number", file=where, field=field_name, value=value)
    if value < lo or (value == lo and not lo_ok):
        raise ConfigError(
            f"must be {'>=' if lo_ok else '>'} {lo:g}", file=where, field=field_name, value=value
        )
    return float(value)


@dataclass(frozen=True)
class PlanOptions:
    """What a plan needs besides the grid."""

    slo: dict[str, float]
    target_rate: float | None = None
    prices: dict[str, float] = field(default_factory=dict)  # GPU (as given) -> USD / GPU-hour
    cost_uncertainty: float | None = None  # relative; None = per-GPU default
    sensitivity: bool = True
    check_replicas: bool = True  # with target_rate: simulate the cluster the estimate names


def plan_options(
    table: Mapping | None,
    *,
    slo: Mapping | None = None,
    target_rate: float | None = None,
    prices: Mapping | None = None,
    cost_uncertainty: float | None = None,
    check_replicas: bool | None = None,
    where: str | None = None,
) -> PlanOptions:
    """Merge a spec's [plan] table with explicit options (explicit wins) and check them."""
    table = dict(table or {})
    unknown = set(table) - {"target_rate", "cost_uncertainty", "price", "check_replicas"}
    if unknown:
        raise ConfigError(
            "unknown key(s) in [plan]: " + ", ".join(sorted(unknown)),
            file=where,
            hint="[plan] takes target_rate, cost_uncertainty, price (a table GPU = USD/hour) "
            "and check_replicas",
        )
    check = check_replicas if check_replicas is not None else table.get("check_replicas", True)
    if not isinstance(check, bool):
        raise ConfigError(
            "must be true or false", file=where, field="plan.check_replicas", value=check
        )
    tr = target_rate if target_rate is not None else table.get("target_rate")
    if tr is not None:
        tr = _number(tr, "target_rate", where, lo=0.0, lo_ok=False)
    cu = cost_uncertainty if cost_uncertainty is not None else table.get("cost_uncertainty")
    if cu is not None:
        cu = _number(cu, "cost_uncertainty", where, lo=0.0, lo_ok=True)
        if cu >= 1:
            raise ConfigError(
                "must be below 1 (a relative error: 0.05 = ±5 %)",
                file=where,
                field="cost_uncertainty",
                value=cu,
            )
    spec_prices = table.get("price", {})
    if not isinstance(spec_prices, Mapping):
        raise ConfigError(
            "must be a table of GPU = USD per GPU-hour",
            file=where,
            field="plan.price",
            value=spec_prices,
        )
    merged = {str(k): v for k, v in spec_prices.items()}
    merged.update({str(k): v for k, v in (prices or {}).items()})
    checked = {k: _number(v, f"price {k}", where, lo=0.0, lo_ok=False) for k, v in merged.items()}
    return PlanOptions(
        slo=check_slo(slo if slo is not None else None, where),
        target_rate=tr,
        prices=checked,
        cost_uncertainty=cu,
        check_replicas=check,
    )


def check_plan_spec(spec: SweepSpec) -> None:
    """A plan searches the rate: no rate axis or fixed rate, and generated workloads only."""
    if "rate" in spec.axes or "rate" in spec.fixed:
        raise ConfigError(
            "a plan searches the arrival rate: remove the rate "
            + ("axis" if "rate" in spec.axes else "setting"),
            file=spec.source or None,
            field=("grid" if "rate" in spec.axes else "sweep") + ".rate",
            hint="plan finds the highest rate that meets the [slo] for every configuration",
        )
    wls = spec.axes.get("workload", [spec.point(0)["workload"]])
    if "traces" in wls:
        raise ConfigError(
            "a plan needs generated workloads (a trace's arrival times do not follow a rate)",
            file=spec.source or None,
            field="workload",
            value="traces",
        )


def check_prices(prices: Mapping[str, float], spec: SweepSpec) -> dict[str, float]:
    """Price overrides keyed by the GPU names of the hardware config(s); an unknown GPU is an
    error naming the known ones."""
    from infersweep.config.catalog import resolve_hardware_file
    from infersweep.config.models import hardware_names

    if not prices:
        return {}
    base = spec.point(0)
    files = spec.axes.get("hardware_config", [base["hardware_config"]])
    known: dict[str, str] = {}
    for f in files:
        for name in hardware_names(resolve_hardware_file(f)):
            known[name.lower()] = name
    out = {}
    for gpu, price in prices.items():
        name = known.get(gpu.strip().lower())
        if name is None:
            raise ConfigError(
                "unknown GPU in the price list",
                field="--price",
                value=gpu,
                hint="GPUs of the hardware config: " + ", ".join(sorted(known.values())),
            )
        out[name.lower()] = price
    return out


# --------------------------------------------------------------------------------------------
# the search
# --------------------------------------------------------------------------------------------


def snap_rate(rate: float, arrival: str) -> float:
    """A canonical rate for a search probe.  Constant arrivals are spaced int(1e6 / rate) µs
    apart, so every rate with the same spacing gives the same run: probes use the middle of
    that spacing's rate interval (robust to any float rounding of the rate).  Other arrival
    processes scale continuously: probes are rounded to 6 significant digits."""
    if arrival == "constant":
        g = max(constant_gap_us(rate), 1)
        r = 1e6 / (g + 0.5)
        if constant_gap_us(r) != g:  # cannot happen for g >= 1; kept as a guard
            r = 1e6 / g
        return r
    return float(f"{rate:.6g}")


def _same_run(a: float, b: float, arrival: str) -> bool:
    return arrival == "constant" and constant_gap_us(a) == constant_gap_us(b)


@dataclass
class Point:
    rate: float
    meets: bool
    ratio: float  # largest metric / bound (inf when the point is not ok or incomplete)
    row: np.ndarray
    arrival_span_s: float


def meets_slo(row: np.ndarray, slo: dict[str, float]) -> tuple[bool, float]:
    """(meets, margin ratio) of one summary row."""
    ok = (
        int(row[_M["status"]]) == _STATUS_OK
        and row[_M["completed_requests"]] == row[_M["injected_requests"]]
    )
    ratio = 0.0
    meets = ok
    for m, bound in slo.items():
        v = row[_M[m]]
        if not (v <= bound):  # NaN fails
            meets = False
        r = v / bound if math.isfinite(v) else math.inf
        ratio = max(ratio, r)
    if not ok:
        ratio = math.inf
    return meets, ratio


class Search:
    """The search for the highest rate meeting the SLO of one configuration at one step-cost
    scale.  ``probes()`` says what to simulate next; ``observe()`` takes the results.

    ``first``: the first probes (default: the capacity estimate); ``steps``: the factors by
    which a one-sided search moves away from its known points; ``verify``: whether the point
    at STEP_ABOVE × max_rate must be simulated (the nominal search; the ±δ band does not)."""

    def __init__(
        self,
        cfg: int,
        scale: float,
        estimate: float,
        arrival: str,
        first=(),
        *,
        up=(1.05, 1.15, 1.5, 2.0, 4.0, 8.0),
        down=(1.02, 1.2, 2.0, 4.0, 16.0, 1e9),
        verify: bool = True,
    ):
        self.cfg = cfg
        self.scale = scale
        self.arrival = arrival
        self.estimate = min(max(estimate, 1e-6), RATE_CAP)
        self.floor = self.estimate * FLOOR_FRACTION
        self.points: dict[float, Point] = {}
        self.lo: Point | None = None
        self.hi: Point | None = None
        self.above: Point | None = None  # the verified failing point at STEP_ABOVE × lo
        self.state = "search"  # search, verify, done, infeasible, unbounded, unconverged
        # the estimate tends to sit a little above the SLO boundary
        self.first = [snap_rate(r, arrival) for r in first] or [
            snap_rate(self.estimate / 1.02, arrival)
        ]
        self.up_steps = up
        self.down_steps = down
        self.verify = verify
        self.n_up = 0
        self.n_down = 0
        self.n_probes = 0
        self.last_side = ""
        self.same_side = 0

    # -- decisions ---------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.state in ("search", "verify")

    def probes(self) -> list[float]:
        out = self._probes()
        self.n_probes += len(out)
        if self.n_probes > MAX_PROBES and self.active:
            self.state = "unconverged"
            return []
        return out

    def _probes(self) -> list[float]:
        if self.first:
            out, self.first = self.first, []
            return sorted(set(out))
        if self.state == "verify":
            return [self.lo.rate * STEP_ABOVE]
        lo, hi = self.lo, self.hi
        if lo is None:
            if hi.rate <= self.floor * 1.0000001:
                self.state = "infeasible"
                return []
            x = self._secant(None)
            if x is not None and hi.rate / 4 < x < hi.rate:
                pair = {snap_rate(x / 1.004, self.arrival), snap_rate(x * 1.004, self.arrival)}
                pair = [r for r in pair if r < hi.rate and r not in self.points]
                if pair:
                    return sorted(pair)
            step = self.down_steps[min(self.n_down, len(self.down_steps) - 1)]
            self.n_down += 1
            if math.isfinite(hi.ratio) and hi.ratio > 8:  # far above the bound: a longer step
                step = max(step, min(math.sqrt(hi.ratio), 16.0))
            x = snap_rate(max(hi.rate / step, self.floor), self.arrival)
            if x >= hi.rate or x in self.points:  # at the floor
                self.state = "infeasible"
                return []
            return [x]
        if hi is None:
            if lo.rate >= RATE_CAP:
                self.state = "unbounded"
                return []
            step = self.up_steps[min(self.n_up, len(self.up_steps) - 1)]
            self.n_up += 1
            x = snap_rate(min(lo.rate * step, RATE_CAP), self.arrival)
            if x <= lo.rate or x in self.points:  # at the cap
                self.state = "unbounded"
                return []
            return [x]
        return self._refine(lo, hi)

    def _inside(self, x: float, lo: Point, hi: Point) -> float | None:
        x = snap_rate(x, self.arrival)
        if x <= lo.rate or x >= hi.rate or x in self.points:
            return None
        if _same_run(x, lo.rate, self.arrival) or _same_run(x, hi.rate, self.arrival):
            return None
        return x

    def _refine(self, lo: Point, hi: Point) -> list[float]:
        width = hi.rate / lo.rate
        if width <= 1 + TOLERANCE:
            return self._converged()
        pred, sure = self._predict(lo, hi)
        if width <= (1 + TOLERANCE) ** 2 or pred is None or self.same_side >= 3:
            x, sure = math.sqrt(lo.rate * hi.rate), False
            self.same_side = 0
        else:
            x = pred
        if sure and width > 1.03:
            # a confident prediction: bracket it tightly in one round
            pair = [self._inside(x / 1.004, lo, hi), self._inside(x * 1.004, lo, hi)]
            pair = [p for p in pair if p is not None]
            if pair:
                return sorted(set(pair))
        # snap to the tolerance: a probe within 1 % of an end either ends the search or moves
        # that end by the full 1 %
        if x < lo.rate * (1 + TOLERANCE):
            x = lo.rate * (1 + TOLERANCE) * 0.999
        elif x > hi.rate / (1 + TOLERANCE):
            x = hi.rate / (1 + TOLERANCE) * 1.001
        y = self._inside(x, lo, hi)
        if y is None:
            y = self._inside(math.sqrt(lo.rate * hi.rate), lo, hi)
        if y is None:
            return self._converged()  # no distinct run between the two ends
        return [y]

    def _predict(self, lo: Point, hi: Point) -> tuple[float | None, bool]:
        """Where the margin ratio crosses 1, and whether the guess is a confident one: the
        secant through the two lowest failing points when both lie on the slope above lo
        (confident); the service rate of an overloaded failing point (confident); regula
        falsi on log ratios between lo and hi when lo is near the slope; else None."""
        x = self._secant(lo)
        if x is not None and lo.rate < x < hi.rate:
            return x, True
        if math.isfinite(hi.ratio) and hi.ratio > 1 and 0.3 < lo.ratio < 1:
            la, lb = math.log(lo.ratio), math.log(hi.ratio)
            t = -la / (lb - la)
            return lo.rate * (hi.rate / lo.rate) ** t, False
        return None, False

    def _secant(self, lo: Point | None) -> float | None:
        """The secant root through the two lowest failing points above lo, when both have a
        finite margin ratio above 1 that grows with the rate (the slope past the knee)."""
        fails = sorted(
            (p for p in self.points.values() if not p.meets and (lo is None or p.rate > lo.rate)),
            key=lambda p: p.rate,
        )
        f = [p for p in fails[:2] if math.isfinite(p.ratio) and p.ratio > 1]
        if len(f) == 2 and f[1].ratio > f[0].ratio * 1.01:
            a, b = f
            return a.rate - (a.ratio - 1) * (b.rate - a.rate) / (b.ratio - a.ratio)
        return None

    def _converged(self) -> list[float]:
        if not self.verify:
            self.state = "done"
            return []
        self.state = "verify"
        return [self.lo.rate * STEP_ABOVE]

    # -- observations -------------------------------------------------------------------
    def observe(self, p: Point) -> None:
        self.points[p.rate] = p
        if self.state == "verify" and p.rate == self.lo.rate * STEP_ABOVE:
            if p.meets:  # meets above a failing point: keep searching from the higher rate
                self.lo, self.hi, self.n_up = p, None, 0
                self.state = "search"
            else:
                self.above = p
                self.state = "done"
            return
        lo, hi = self.lo, self.hi
        if p.meets:
            if lo is None or p.rate > lo.rate:
                if hi is not None and p.rate >= hi.rate:
                    self.hi = None  # met above a failure: the higher rate wins
                self.lo = p
                self._side("lo")
        elif (lo is None or p.rate > lo.rate) and (hi is None or p.rate < hi.rate):
            self.hi = p
            self._side("hi")

    def _side(self, side: str) -> None:
        self.same_side = self.same_side + 1 if side == self.last_side else 1
        self.last_side = side


def _overload_capacity(p: Point) -> float | None:
    """The service rate a failing point shows when its queue grew through the run: completed
    requests over the time the engine needed beyond the arrivals' span."""
    row = p.row
    if int(row[_M["status"]]) != _STATUS_OK:
        return None
    dur = row[_M["vllm_estimated_duration_s"]]
    if not (dur > 0) or not (p.arrival_span_s > 0):
        return None
    if dur < p.arrival_span_s * 1.2:
        return None
    return row[_M["completed_requests"]] / dur


def capacity_estimate(job) -> float:
    """Requests per second at the largest batch the scheduler and KV cache allow: one step
    decodes every running request and prefills the prompts of the requests that replace the
    finishing ones (the cost model's step time for that step)."""
    wl = job.workload
    sched = job.scheduler
    cost = job.cost
    p_mean = max(float(np.mean(wl.prompt_tok)), 1.0)
    o_mean = max(float(np.mean(wl.output_tok)), 1.0)
    from infersweep.scheduler.driver import resolve_kv_blocks

    try:
        blocks, _ = resolve_kv_blocks(cost, sched)
    except ConfigError:
        return 1.0
    kv_tok = float(blocks) * sched.block_size
    ctx = p_mean + o_mean / 2
    batch = int(max(1, min(sched.max_num_running_reqs, kv_tok / (p_mean + o_mean), 4096)))
    prefill = int(min(max(p_mean * batch / o_mean, 1), sched.max_num_scheduled_tokens))
    try:
        us, _ = cost.step_time([(0, prefill)], [int(ctx)] * batch)
    except ConfigError:
        return 1.0
    step_s = max(us, 1) / 1e6
    per_step = min(batch / o_mean, sched.max_num_scheduled_tokens / p_mean)
    if getattr(sched, "disaggregated", False):  # a start only: between P and D instances
        return per_step / step_s * (sched.prefill_instances + sched.decode_instances) / 2
    return per_step / step_s * instances_of({"replicas": getattr(sched, "replicas", 1)})


def predicted_boundary(nominal: Search, scale: float) -> float | None:
    """Where the search at step-cost ``scale`` should end, from the nominal points: scaling
    every step by s is (up to µs rounding) the nominal run slowed down by s, so the SLO holds
    at rate r when the nominal margin at r·s is at most 1/s."""
    if nominal.lo is None:
        return None
    level = 1.0 / scale
    pts = sorted(
        (p for p in nominal.points.values() if math.isfinite(p.ratio) and p.ratio > 0),
        key=lambda p: p.rate,
    )
    for a, b in itertools.pairwise(pts):
        if a.ratio <= level < b.ratio:
            t = (math.log(level) - math.log(a.ratio)) / (math.log(b.ratio) - math.log(a.ratio))
            return a.rate * (b.rate / a.rate) ** t / scale
    ref = nominal.lo.rate if scale > 1 else (nominal.hi or nominal.lo).rate
    return ref / scale


def instances_of(s: Mapping) -> int:
    """Instances one simulated configuration runs (``replicas``, or the P + D instances of a
    prefill/decode split)."""
    if is_pd(s):
        return int(s["prefill_instances"]) + int(s["decode_instances"])
    return max(int(s.get("replicas", 1) or 1), 1)


def is_pd(s: Mapping) -> bool:
    """A prefill/decode split (both instance counts set)."""
    return bool(s.get("prefill_instances")) and bool(s.get("decode_instances"))


def units_of(s: Mapping) -> int:
    """What a plan counts of one simulated configuration: its instances (``replicas``), or 1
    for a P/D split (its P + D instances are one unit, deployed and counted whole)."""
    return 1 if is_pd(s) else instances_of(s)


def pd_sides(s: Mapping) -> list[tuple[int, int, str]]:
    """(instances, TP, GPU) of each side of a P/D split; [(1, tp, hardware)] otherwise (one
    counted replica)."""
    if not is_pd(s):
        return [(1, int(s["tp"]), str(s["hardware"]))]
    return [
        (
            int(s[f"{side}_instances"]),
            int(s.get(f"{side}_tp") or s["tp"]),
            str(s.get(f"{side}_hardware") or s["hardware"]),
        )
        for side in ("prefill", "decode")
    ]


def gpus_per_unit(s: Mapping) -> int:
    """GPUs of one counted replica: TP, or every GPU of a P/D unit."""
    return sum(n * tp for n, tp, _ in pd_sides(s))


@dataclass
class CheckPoint:
    meets: bool
    ratio: float
    row: np.ndarray
    n_requests: int


class ReplicaCheck:
    """The check of the replica estimate of one configuration: clusters of ``n`` instances
    (the configuration's router and settings) simulated at the target rate, from the estimate
    up (x REPLICA_STEP, at least +1) while they fail, down while they meet, then bisected,
    until ``needed`` meets the SLO and ``needed - 1`` was simulated and failed (or
    ``needed`` is 1).  No count up to ``limit`` meeting it: state ``unmet``.

    A cluster of n > CHECK_MAX_INSTANCES (k) instances is simulated as k instances at the
    target rate times k/n: the same rate per instance, with the configuration's router.  In
    distribution that slice is never better balanced than the whole: each random-routed
    instance sees the same Poisson stream either way, round-robin gives each instance every
    k-th arrival (an Erlang-k gap, burstier than Erlang-n), and load-aware routers balance
    better over more instances.  A single run is one draw, though: near the boundary its
    answer can differ from the whole cluster's by a replica either way.  The cost is bounded
    by k instances (the example plan: 31 s with whole clusters up to 161 instances, 9 s with
    slices)."""

    def __init__(self, cfg: int, estimate: int):
        self.cfg = cfg
        self.estimate = max(int(estimate), 1)
        self.limit = max(REPLICA_FACTOR * self.estimate, self.estimate + REPLICA_SLACK)
        self.points: dict[int, CheckPoint] = {}
        self.state = "search"  # search, done, unmet, unchecked
        self.reason = ""

    @property
    def active(self) -> bool:
        return self.state == "search"

    @property
    def needed(self) -> int | None:
        ok = [n for n, p in self.points.items() if p.meets]
        return min(ok) if ok and self.state == "done" else None

    def next_count(self) -> int | None:
        """The next cluster size to simulate (None: the check is over)."""
        if not self.active:
            return None
        if not self.points:
            return self.estimate
        ok = [n for n, p in self.points.items() if p.meets]
        if not ok:
            top = max(self.points)
            if top >= self.limit:
                self.state = "unmet"
                return None
            return min(self.limit, max(top + 1, math.ceil(top * REPLICA_STEP)))
        hi = min(ok)
        fails = [n for n, p in self.points.items() if not p.meets and n < hi]
        if hi == 1 or (fails and max(fails) == hi - 1):
            self.state = "done"
            return None
        if not fails:
            return max(1, min(hi - 1, math.floor(hi / REPLICA_STEP)))
        return (max(fails) + hi) // 2

    def observe(self, n: int, point: CheckPoint) -> None:
        self.points[n] = point

    def shown(self) -> CheckPoint | None:
        """The run at ``needed`` (or, unmet, at the largest count tried)."""
        n = self.needed
        if n is None and self.points:
            n = max(self.points)
        return self.points.get(n) if n is not None else None


# --------------------------------------------------------------------------------------------
# the planner
# --------------------------------------------------------------------------------------------


@dataclass
class Config:
    index: int
    settings: dict
    reason: str  # why the configuration cannot run ("" when it can)
    jobs: dict = field(default_factory=dict)  # scale -> (cost model, scheduler)
    estimate: float = 1.0
    delta: float = DEFAULT_UNCERTAINTY


@dataclass
class PlanRun:
    """What the search found, before it becomes a Dataset."""

    spec: SweepSpec
    options: PlanOptions
    configs: list[Config]
    nominal: list[Search | None]
    low: list[Search | None]
    high: list[Search | None]
    checks: list[ReplicaCheck | None]
    facts: dict
    kernel_calls: int
    points: int
    seconds: float
    prices: dict[str, float]
    catalog_prices: dict[str, float]


class Planner:
    def __init__(self, spec: SweepSpec, options: PlanOptions, threads: int | None = None):
        from infersweep.sweeps.runner import Preparer

        self.spec = spec
        self.options = options
        self.threads = threads
        self.prep = Preparer()
        self.kernel_calls = 0
        self.n_points = 0

    def _config(self, i: int) -> Config:
        from infersweep.scheduler.driver import Job

        s = dict(self.spec.point(i))
        s["rate"] = 1.0
        p = self.prep.prepare(i, s)
        c = Config(i, s, p.reason)
        if p.job is not None:
            c.jobs[1.0] = (p.job.cost, p.job.scheduler, p.job.pd_costs)
            c.estimate = capacity_estimate(Job(p.job.workload, p.job.cost, p.job.scheduler))
            hw = p.job.cost.hardware
            cu = self.options.cost_uncertainty
            c.delta = cu if cu is not None else (hw.cross_validated_error or DEFAULT_UNCERTAINTY)
        return c

    def _scaled(self, c: Config, scale: float):
        if scale not in c.jobs:
            from infersweep.api import cost_model_for

            cost, sched, pd_costs = c.jobs[1.0]
            s = c.settings

            def scaled(cm):
                hw = cm.hardware.with_fields(StepCostScale=cm.hardware.step_cost_scale * scale)
                return cost_model_for(
                    cm.model,
                    hw,
                    cm.tp,
                    bench_data=s["bench_data"],
                    step_model=s["step_model"],
                    max_tokens=int(cm.cti[schema.I_GEMM_TAB_N]) - 1,  # as the nominal tables
                )

            sides = None if pd_costs is None else (scaled(pd_costs[0]), scaled(pd_costs[1]))
            c.jobs[scale] = (scaled(cost), sched, sides)
        return c.jobs[scale]

    def run_round(self, configs: list[Config], searches: list[Search]) -> None:
        """One batched kernel call: the next probes of every active search."""
        from infersweep.scheduler.driver import Job, run_jobs

        todo: list[tuple[Search, float]] = []
        for srch in searches:
            if srch.active:
                for r in srch.probes():
                    todo.append((srch, r))
        if not todo:
            return
        jobs = []
        spans = []
        for srch, r in todo:
            c = configs[srch.cfg]
            cost, sched, pd_costs = self._scaled(c, srch.scale)
            wl = self.prep.workload({**c.settings, "rate": r})
            jobs.append(Job(wl, cost, sched, pd_costs))
            spans.append(float(wl.arrival_us[-1]) / 1e6 if len(wl) else 0.0)
        br = run_jobs(jobs, threads=self.threads)
        self.kernel_calls += 1
        self.n_points += len(jobs)
        for k, (srch, r) in enumerate(todo):
            row = br.metrics[k]
            meets, ratio = meets_slo(row, self.options.slo)
            srch.observe(Point(r, meets, ratio, row.copy(), spans[k]))

    def check_settings(self, c: Config, n: int) -> dict:
        """The settings of configuration ``c`` as a cluster of ``n`` instances at the target
        rate, each instance given as many requests as the search's runs gave one (above
        CHECK_MAX_INSTANCES instances, a slice of that many at the same rate per instance)."""
        s = dict(c.settings)
        per_unit = s["num_requests"] / units_of(s)
        if is_pd(s):  # n units of P + D instances: k P/D units, as one split of kP + kD
            k = min(n, max(CHECK_MAX_INSTANCES // instances_of(s), 1))
            s["prefill_instances"] = k * int(s["prefill_instances"])
            s["decode_instances"] = k * int(s["decode_instances"])
        else:
            k = min(n, CHECK_MAX_INSTANCES)  # a slice of k instances at the same load each
            s["replicas"] = k
        s["rate"] = self.options.target_rate * k / n
        s["num_requests"] = max(math.ceil(per_unit * k), 1)
        return s

    def check_round(self, configs: list[Config], checks: list[ReplicaCheck]) -> None:
        """One batched kernel call: the next cluster size of every active replica check."""
        from infersweep.scheduler.driver import run_jobs

        todo = []
        for chk in checks:
            n = chk.next_count()
            if n is None:
                continue
            c = configs[chk.cfg]
            try:
                p = self.prep.prepare(c.index, self.check_settings(c, n))
            except ConfigError as exc:
                p = None
                chk.reason = exc.message
            if p is None or p.job is None:
                chk.state = "unchecked"
                chk.reason = chk.reason or p.reason
                continue
            todo.append((chk, n, p.job))
        if not todo:
            return
        try:
            br = run_jobs([j for _, _, j in todo], threads=self.threads)
        except ConfigError as exc:  # e.g. the clusters do not fit in memory
            for chk, _, _ in todo:
                chk.state, chk.reason = "unchecked", exc.message
            return
        self.kernel_calls += 1
        self.n_points += len(todo)
        for k, (chk, n, job) in enumerate(todo):
            row = br.metrics[k]
            meets, ratio = meets_slo(row, self.options.slo)
            chk.observe(n, CheckPoint(meets, ratio, row.copy(), len(job.workload)))

    def search_all(self, configs: list[Config], searches: list[Search], progress=None) -> None:
        while any(s.active for s in searches):
            self.run_round(configs, searches)
            if progress is not None:
                progress(sum(not s.active for s in searches), len(searches))


def run_plan(
    spec: SweepSpec,
    options: PlanOptions,
    *,
    threads: int | None = None,
    progress=None,
    curve_points: bool = True,
) -> PlanRun:
    """Search every configuration of the grid (nominal, then the ±δ band); with
    ``curve_points``, four more points (0.25 ... 0.9 × max_rate) of the configurations drawn
    in colour in the knee figure."""
    from infersweep.sweeps.runner import check_spec, label_facts

    t0 = time.perf_counter()
    check_plan_spec(spec)
    spec_rate = SweepSpec(name=spec.name, axes=dict(spec.axes), fixed=dict(spec.fixed))
    spec_rate.source = spec.source
    spec_rate.fixed["rate"] = 1.0
    prep0 = check_spec(spec_rate)
    prices = check_prices(options.prices, spec)
    planner = Planner(spec, options, threads)
    planner.prep = prep0
    configs = [planner._config(i) for i in range(spec.n_points)]
    nominal: list[Search | None] = [
        Search(c.index, 1.0, c.estimate, c.settings["arrival"]) if not c.reason else None
        for c in configs
    ]

    def stage(name: str):
        if progress is None:
            return None
        return lambda done, total: progress(name, done, total)

    planner.search_all(configs, [s for s in nominal if s is not None], stage("max_rate"))
    low: list[Search | None] = [None] * len(configs)
    high: list[Search | None] = [None] * len(configs)
    if options.sensitivity:
        band = []
        for c, s in zip(configs, nominal):
            if s is None or s.state != "done" or c.delta <= 0:
                continue
            for scale, dest in ((1 + c.delta, low), (1 - c.delta, high)):
                pred = predicted_boundary(s, scale)
                first = (pred / 1.004, pred * 1.004) if pred else ()
                srch = Search(
                    c.index,
                    scale,
                    s.lo.rate / scale,
                    c.settings["arrival"],
                    first,
                    up=(1.02, 1.05, 1.1, 1.25, 1.5, 2.0),
                    down=(1.02, 1.05, 1.1, 1.25, 1.5, 2.0, 4.0),
                    verify=False,
                )
                srch.floor = min(srch.floor, s.floor)
                dest[c.index] = srch
                band.append(srch)
        planner.search_all(configs, band, stage("band"))
    if curve_points:  # a few points below the knee of the best configurations, for the figure
        curve = sorted(
            (s for s in nominal if s is not None and s.state == "done"), key=lambda s: -s.lo.rate
        )[:KNEE_CONFIGS]
        extra = []
        for s in curve:
            srch = Search(s.cfg, 1.0, s.estimate, s.arrival)
            srch.first = [snap_rate(s.lo.rate * f, s.arrival) for f in (0.25, 0.5, 0.75, 0.9)]
            srch.state = "search"
            extra.append((s, srch))
        planner.run_round(configs, [e for _, e in extra])
        for s, e in extra:
            for r, p in e.points.items():
                s.points.setdefault(r, p)
    checks: list[ReplicaCheck | None] = [None] * len(configs)
    if options.target_rate is not None:
        for c, s in zip(configs, nominal):
            if s is None or s.state != "done":
                continue
            est = replica_estimate(options.target_rate, s.lo.rate, units_of(c.settings))
            chk = checks[c.index] = ReplicaCheck(c.index, est)
            if not options.check_replicas:
                chk.state, chk.reason = "unchecked", ""
        active = [k for k in checks if k is not None and k.active]
        total = len(active)
        while any(k.active for k in active):
            planner.check_round(configs, active)
            if progress is not None:
                progress("replicas", sum(not k.active for k in active), total)
    catalog = {}
    for c in configs:
        if 1.0 in c.jobs:
            cost, _, pd_costs = c.jobs[1.0]
            for cm in (cost, *(pd_costs or ())):
                catalog.setdefault(cm.hardware.name.lower(), cm.hardware.price_per_gpu_hour)
    return PlanRun(
        spec=spec,
        options=options,
        configs=configs,
        nominal=nominal,
        low=low,
        high=high,
        checks=checks,
        facts=label_facts(spec, prep0),
        kernel_calls=planner.kernel_calls,
        points=planner.n_points,
        seconds=time.perf_counter() - t0,
        prices=prices,
        catalog_prices=catalog,
    )


# --------------------------------------------------------------------------------------------
# the plan table
# --------------------------------------------------------------------------------------------

#: plan columns after the axes: name -> (units, long name, description)
PLAN_COLUMNS: dict[str, tuple[str, str, str]] = {
    "max_rate": (
        "1/s",
        "highest arrival rate meeting the SLO",
        "A simulated rate whose point meets the SLO, with the point at 1.03 x max_rate "
        "simulated and failing, and a failing simulated rate within 1 % above it.",
    ),
    "max_rate_low": (
        "1/s",
        "max_rate with every step cost x (1 + delta)",
        "The same search with every engine step slower by cost_uncertainty.",
    ),
    "max_rate_high": (
        "1/s",
        "max_rate with every step cost x (1 - delta)",
        "The same search with every engine step faster by cost_uncertainty.",
    ),
    "cost_uncertainty": (
        "1",
        "relative step-cost uncertainty (delta)",
        "--cost-uncertainty, else the hardware profile's CrossValidatedError, else 0.05.",
    ),
    "fragile": (
        "1",
        "sensitivity band wider than ±15 %",
        "True when max_rate_low < 0.85 x max_rate or max_rate_high > 1.15 x max_rate.",
    ),
    "goodput_req_s": (
        "1/s",
        "goodput (requests)",
        "Requests per second served within the SLO at max_rate (= max_rate).",
    ),
    "goodput_tok_s": (
        "tokens/s",
        "goodput (output tokens)",
        "max_rate x mean output tokens per completed request at max_rate.",
    ),
    "goodput_tok_s_per_gpu": (
        "tokens/s",
        "goodput per GPU",
        "goodput_tok_s / (tp x replicas) (the GPUs of the simulated configuration).",
    ),
    "tok_s_per_user": (
        "tokens/s",
        "output speed seen by one user",
        "1000 / itl_mean_ms at max_rate.",
    ),
    "saturation": (
        "1",
        "what happens above max_rate",
        "From the point at 1.03 x max_rate, with step = busy time / engine steps: overloaded "
        "(status not ok, requests left unfinished, the run ending later than the last arrival "
        "+ median E2E + 20 % of the arrival span, or a median scheduling delay above 5 steps: "
        "the typical request queues, arrivals outpace the engine); backlogged (p99 scheduling "
        "delay above 5 steps: the tail queues); stable (neither: the SLO fails on per-token "
        "latency, not on queueing).",
    ),
}
COST_COLUMNS: dict[str, tuple[str, str, str]] = {
    "price_per_gpu_hour": (
        "USD/h",
        "price of one GPU-hour",
        "--price, else the spec's [plan] price, else the catalog's PricePerGPUHour.",
    ),
    "replica_cost_per_hour": (
        "USD/h",
        "cost of one replica per hour",
        "tp x price_per_gpu_hour.",
    ),
    "replicas_estimate": (
        "1",
        "replicas for the target rate, assuming perfect balance",
        "ceil(target_rate x instances / max_rate), instances = the configuration's replicas "
        "setting (null without --target-rate).",
    ),
    "replicas_needed": (
        "1",
        "replicas for the target rate, checked by simulation",
        "The fewest instances whose cluster (the configuration's router and settings, at "
        "target_rate) was simulated and met the SLO, with one fewer simulated and failing (or "
        "1); = replicas_estimate when unchecked; null when unmet or without --target-rate.",
    ),
    "replicas_check": (
        "1",
        "outcome of the replica check",
        "met (the estimate is the count needed), raised (more needed), lowered (fewer "
        "suffice), unmet (no cluster up to max(4 x estimate, estimate + 8) meets the SLO; see "
        "reason), unchecked (--no-check-replicas, or the cluster cannot be simulated: see "
        "reason; replicas_needed is then the estimate, or null when the estimate was simulated "
        "and missed the SLO); empty without --target-rate.",
    ),
    "replicas_check_margin": (
        "1",
        "SLO margin of the checked cluster",
        "The largest SLO metric / bound of the cluster simulated at replicas_needed (unmet: at "
        "the largest count tried); <= 1 meets.",
    ),
    "replicas_check_requests": (
        "1",
        "requests of the checked cluster's run",
        "num_requests x replicas_needed / instances: each instance gets as many requests as "
        "the max_rate search gave one.",
    ),
    "gpus": (
        "1",
        "GPUs for the target rate",
        "replicas_needed x tp (null without --target-rate).",
    ),
    "cost_per_hour": (
        "USD/h",
        "cost of the fleet per hour",
        "gpus x price_per_gpu_hour (null without --target-rate or replicas_needed).",
    ),
    "cost_per_mtok": (
        "USD",
        "cost per million output tokens",
        "With --target-rate: cost_per_hour / (target_rate x mean output tokens x 3600) x 1e6; "
        "without: instances x replica_cost_per_hour / (goodput_tok_s x 3600) x 1e6 (the "
        "configuration at max_rate).",
    ),
    "rank": (
        "1",
        "rank of the configuration",
        "1 = best among the configurations meeting the SLO (with --target-rate: and with a "
        "replicas_needed): cheapest cost_per_hour (with --target-rate) or cost_per_mtok "
        "(without), by max_rate per GPU when a price is missing; null for the others.",
    ),
    "pareto": (
        "1",
        "on the throughput/interactivity frontier",
        "No other configuration has both more goodput_tok_s_per_gpu and more tok_s_per_user.",
    ),
    "pareto_cost": (
        "1",
        "on the cost/latency frontier",
        "No other configuration has both a lower cost_per_mtok and a lower e2e_p99_ms.",
    ),
}
SERVE_COLUMNS: dict[str, tuple[str, str, str]] = {
    "vllm_tensor_parallel_size": ("1", "vllm serve --tensor-parallel-size", "= tp."),
    "vllm_max_num_batched_tokens": (
        "tokens",
        "vllm serve --max-num-batched-tokens",
        "= max_num_scheduled_tokens.",
    ),
    "vllm_max_num_seqs": ("1", "vllm serve --max-num-seqs", "= max_num_running_reqs."),
    "vllm_gpu_memory_utilization": (
        "1",
        "vllm serve --gpu-memory-utilization",
        "= gpu_memory_utilization.",
    ),
    "vllm_block_size": ("tokens", "vllm serve --block-size", "= block_size."),
    "vllm_enable_prefix_caching": (
        "1",
        "vllm serve --enable-prefix-caching",
        "= prefix_caching.",
    ),
    "vllm_long_prefill_token_threshold": (
        "tokens",
        "vllm serve --long-prefill-token-threshold",
        "= long_prefill_token_threshold (0 = off).",
    ),
    "serve_command": (
        "1",
        "the vllm serve command line",
        "A ready command line for one replica (plus the replica count with --target-rate).",
    ),
}
END_COLUMNS: dict[str, tuple[str, str, str]] = {
    "status": (
        "1",
        "plan status",
        "ok (max_rate found); infeasible (the SLO fails even at 1/1000 of the capacity "
        "estimate, see reason); invalid (the configuration cannot run, see reason); "
        "unbounded (meets the SLO up to 1e5 req/s); unconverged (the search hit its probe "
        "limit).",
    ),
    "reason": (
        "1",
        "why there is no max_rate (or replica count)",
        "Empty when status is ok, except when replicas_check is unmet or unchecked for a "
        "reason: then why.",
    ),
}
INT_COLUMNS = {
    "replicas_estimate",
    "replicas_needed",
    "replicas_check_requests",
    "gpus",
    "rank",
    "vllm_tensor_parallel_size",
    "vllm_max_num_batched_tokens",
    "vllm_max_num_seqs",
    "vllm_block_size",
    "vllm_long_prefill_token_threshold",
}
BOOL_COLUMNS = {"fragile", "pareto", "pareto_cost", "vllm_enable_prefix_caching"}
STR_COLUMNS = {"saturation", "replicas_check", "serve_command", "status", "reason"}


def saturation_verdict(p: Point | None) -> str:
    if p is None:
        return ""
    row = p.row
    if (
        int(row[_M["status"]]) != _STATUS_OK
        or row[_M["completed_requests"]] != row[_M["injected_requests"]]
    ):
        return "overloaded"
    dur = row[_M["vllm_estimated_duration_s"]]
    tail = dur - p.arrival_span_s - row[_M["e2e_p50_ms"]] / 1000.0
    if p.arrival_span_s > 0 and tail > 0.2 * p.arrival_span_s:
        return "overloaded"
    steps = row[_M["steps"]]
    step_ms = row[_M["utilization"]] * dur * 1000.0 / steps if steps > 0 else 0.0
    if row[_M["scheduling_delay_p50_ms"]] > 5 * step_ms:
        return "overloaded"
    if row[_M["scheduling_delay_p99_ms"]] > 5 * step_ms:
        return "backlogged"
    return "stable"


def _pareto(x: np.ndarray, y: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Rows not dominated (both coordinates maximised) among ok rows."""
    out = np.zeros(len(x), bool)
    idx = np.flatnonzero(ok & np.isfinite(x) & np.isfinite(y))
    for i in idx:
        dominated = np.any(
            (x[idx] >= x[i]) & (y[idx] >= y[i]) & ((x[idx] > x[i]) | (y[idx] > y[i]))
        )
        out[i] = not dominated
    return out


def replica_estimate(target_rate: float, max_rate: float, instances: int) -> int:
    """Instances for ``target_rate`` assuming perfect balance: ``instances`` serve
    ``max_rate``, so one serves max_rate / instances."""
    return max(math.ceil(target_rate * instances / max_rate), 1)


def serve_command(s: dict, replicas: float | None) -> str:
    model = HF_IDS.get(str(s["model"]).lower(), s["model"])
    parts = [
        f"vllm serve {model}",
        f"--tensor-parallel-size {s['tp']}",
        f"--max-num-batched-tokens {s['max_num_scheduled_tokens']}",
        f"--max-num-seqs {s['max_num_running_reqs']}",
        f"--gpu-memory-utilization {s['gpu_memory_utilization']:g}",
        f"--block-size {s['block_size']}",
        "--enable-prefix-caching" if s["prefix_caching"] else "--no-enable-prefix-caching",
    ]
    if s["long_prefill_token_threshold"]:
        parts.append(f"--long-prefill-token-threshold {s['long_prefill_token_threshold']}")
    if s["max_num_scheduled_tokens"] < 8192 or s["long_prefill_token_threshold"]:
        parts.append("--enable-chunked-prefill")
    if is_pd(s):  # one command per side: the TP differs, the rest is shared
        (p_n, p_tp, p_hw), (d_n, d_tp, d_hw) = pd_sides(s)
        parts = [x for x in parts if not x.startswith("--tensor-parallel-size")]
        parts.append("--kv-transfer-config " + PD_KV_TRANSFER)
        link = s.get("kv_link") or "link"
        unit = (
            f"{p_n} prefill (--tensor-parallel-size {p_tp} on {p_hw}) + {d_n} decode "
            f"(--tensor-parallel-size {d_tp} on {d_hw}) instances, KV over {link}"
        )
        n = int(replicas) if replicas is not None and math.isfinite(replicas) else 1
        return " ".join(parts) + f"  # {n} unit{'s' if n != 1 else ''} of {unit}"
    cmd = " ".join(parts)
    gpus = f"{s['tp']} x {s['hardware']}"
    if replicas is not None and math.isfinite(replicas):
        n = int(replicas)
        behind = f" behind a {s['router']} router" if n > 1 and s.get("router") else ""
        return cmd + f"  # {n} replica{'s' if n != 1 else ''} of {gpus}{behind}"
    n = instances_of(s)
    if n > 1:
        return cmd + f"  # {n} replicas of {gpus} behind a {s.get('router')} router"
    return cmd + f"  # one replica on {gpus}"


def plan_columns(run: PlanRun) -> dict[str, np.ndarray]:
    """The plan table (one row per configuration, point order) after the axis columns."""
    n = len(run.configs)
    nan = np.full(n, np.nan)
    col: dict[str, Any] = {k: nan.copy() for k in ("max_rate", "max_rate_low", "max_rate_high")}
    col["cost_uncertainty"] = nan.copy()
    col["fragile"] = np.zeros(n, bool)
    for k in ("goodput_req_s", "goodput_tok_s", "goodput_tok_s_per_gpu", "tok_s_per_user"):
        col[k] = nan.copy()
    col["saturation"] = np.array([""] * n, dtype=object)
    metrics = np.full((n, len(SWEEP_METRICS)), np.nan)
    status = np.array(["ok"] * n, dtype=object)
    reason = np.array([""] * n, dtype=object)
    tp = np.array([c.settings["tp"] for c in run.configs], np.float64)
    # GPUs of one counted replica (TP, or a whole P/D unit) and of one simulated configuration
    # (replicas > 1: a cluster of tp-GPU instances)
    per_count = np.array([gpus_per_unit(c.settings) for c in run.configs], np.float64)
    unit = per_count * np.array([units_of(c.settings) for c in run.configs], np.float64)
    for i, (c, s) in enumerate(zip(run.configs, run.nominal)):
        if c.reason:
            status[i], reason[i] = "invalid", c.reason
            continue
        assert s is not None
        if s.state != "done":
            status[i] = s.state
            reason[i] = _no_rate_reason(s, run.options.slo)
            continue
        row = s.lo.row
        r = s.lo.rate
        col["max_rate"][i] = r
        col["cost_uncertainty"][i] = c.delta if run.options.sensitivity else np.nan
        for dest, band in (("max_rate_low", run.low[i]), ("max_rate_high", run.high[i])):
            if band is not None and band.lo is not None and band.state == "done":
                col[dest][i] = band.lo.rate
        lo_b, hi_b = col["max_rate_low"][i], col["max_rate_high"][i]
        col["fragile"][i] = bool(
            (math.isfinite(lo_b) and lo_b < (1 - FRAGILE) * r)
            or (math.isfinite(hi_b) and hi_b > (1 + FRAGILE) * r)
        )
        out_per_req = row[_M["total_output_tokens"]] / max(row[_M["completed_requests"]], 1)
        col["goodput_req_s"][i] = r
        col["goodput_tok_s"][i] = r * out_per_req
        col["goodput_tok_s_per_gpu"][i] = r * out_per_req / unit[i]
        itl = row[_M["itl_mean_ms"]]
        col["tok_s_per_user"][i] = 1000.0 / itl if itl > 0 else np.nan
        col["saturation"][i] = saturation_verdict(s.above)
        metrics[i] = [row[_M[m]] for m in SWEEP_METRICS]
    for j, m in enumerate(SWEEP_METRICS):
        col[m] = metrics[:, j]
    ok = status == "ok"
    # costs
    # the cost of one counted replica: TP GPUs, or every GPU of a P/D unit (its sides may be
    # different GPUs); price_per_gpu_hour is that cost over its GPUs
    count_cost = nan.copy()
    for i, c in enumerate(run.configs):
        total = 0.0
        for n_inst, side_tp, gpu in pd_sides(c.settings):
            gpu = gpu.lower()
            p = run.prices.get(gpu) or run.catalog_prices.get(gpu, 0.0)
            if not p and 1.0 in c.jobs and gpu == str(c.settings["hardware"]).lower():
                p = c.jobs[1.0][0].hardware.price_per_gpu_hour
            total += n_inst * side_tp * (p if p else np.nan)
        count_cost[i] = total
    price = count_cost / per_count
    col["price_per_gpu_hour"] = price
    col["replica_cost_per_hour"] = count_cost
    target = run.options.target_rate
    mr = col["max_rate"]
    out_per_req = col["goodput_tok_s"] / np.where(mr > 0, mr, np.nan)
    col["replicas_estimate"] = nan.copy()
    col["replicas_needed"] = nan.copy()
    col["replicas_check"] = np.array([""] * n, dtype=object)
    col["replicas_check_margin"] = nan.copy()
    col["replicas_check_requests"] = nan.copy()
    if target is not None:
        for i, chk in enumerate(run.checks):
            if chk is None or not ok[i]:
                continue
            col["replicas_estimate"][i] = chk.estimate
            shown = chk.shown()
            if shown is not None:
                col["replicas_check_margin"][i] = shown.ratio
                col["replicas_check_requests"][i] = shown.n_requests
            if chk.state == "unchecked":
                col["replicas_check"][i] = "unchecked"
                at_est = chk.points.get(chk.estimate)
                if at_est is None or at_est.meets:
                    col["replicas_needed"][i] = chk.estimate
                if chk.reason:
                    reason[i] = f"replicas not checked: {chk.reason}" + (
                        f" (the estimate, {chk.estimate}, was simulated and missed the SLO)"
                        if at_est is not None and not at_est.meets
                        else ""
                    )
            elif chk.state == "unmet":
                col["replicas_check"][i] = "unmet"
                reason[i] = _unmet_reason(chk, run.options)
            else:
                need = chk.needed
                col["replicas_needed"][i] = need
                col["replicas_check"][i] = (
                    "met"
                    if need == chk.estimate
                    else "raised"
                    if need > chk.estimate
                    else "lowered"
                )
        need = col["replicas_needed"]
        col["gpus"] = need * per_count
        col["cost_per_hour"] = need * count_cost
        col["cost_per_mtok"] = col["cost_per_hour"] / (target * out_per_req * 3600) * 1e6
    else:
        col["gpus"] = nan.copy()
        col["cost_per_hour"] = nan.copy()
        col["cost_per_mtok"] = unit * price / (col["goodput_tok_s"] * 3600) * 1e6
    # rank: cheapest first; configurations without a price after, by max_rate per GPU; with a
    # target rate, only those whose replica count is known
    key_cost = col["cost_per_hour"] if target is not None else col["cost_per_mtok"]
    per_gpu = mr / unit
    rankable = ok & (np.isfinite(col["replicas_needed"]) if target is not None else True)
    order = sorted(
        np.flatnonzero(rankable),
        key=lambda i: (
            0 if math.isfinite(key_cost[i]) else 1,
            key_cost[i] if math.isfinite(key_cost[i]) else 0.0,
            -per_gpu[i],
            i,
        ),
    )
    rank = nan.copy()
    for k, i in enumerate(order):
        rank[i] = k + 1
    col["rank"] = rank
    col["pareto"] = _pareto(col["goodput_tok_s_per_gpu"], col["tok_s_per_user"], ok)
    col["pareto_cost"] = _pareto(-col["cost_per_mtok"], -col["e2e_p99_ms"], ok)
    # deployable settings
    sets = [c.settings for c in run.configs]
    col["vllm_tensor_parallel_size"] = tp.copy()
    col["vllm_max_num_batched_tokens"] = np.array(
        [s["max_num_scheduled_tokens"] for s in sets], np.float64
    )
    col["vllm_max_num_seqs"] = np.array([s["max_num_running_reqs"] for s in sets], np.float64)
    col["vllm_gpu_memory_utilization"] = np.array(
        [s["gpu_memory_utilization"] for s in sets], np.float64
    )
    col["vllm_block_size"] = np.array([s["block_size"] for s in sets], np.float64)
    col["vllm_enable_prefix_caching"] = np.array([bool(s["prefix_caching"]) for s in sets])
    col["vllm_long_prefill_token_threshold"] = np.array(
        [s["long_prefill_token_threshold"] for s in sets], np.float64
    )
    col["serve_command"] = np.array(
        [
            serve_command(s, col["replicas_needed"][i] if target is not None else None)
            if ok[i]
            else ""
            for i, s in enumerate(sets)
        ],
        dtype=object,
    )
    col["status"] = status
    col["reason"] = reason
    return col


def _unmet_reason(chk: ReplicaCheck, options: PlanOptions) -> str:
    top = max(chk.points)
    row = chk.points[top].row
    if int(row[_M["status"]]) != _STATUS_OK or (
        row[_M["completed_requests"]] != row[_M["injected_requests"]]
    ):
        why = "requests left unfinished"
    else:
        why = ", ".join(
            f"{m} = {row[_M[m]]:.4g} > {b:g}"
            for m, b in options.slo.items()
            if not (row[_M[m]] <= b)
        )
    return (
        f"no cluster of {chk.estimate} to {top} replicas meets the SLO at "
        f"{options.target_rate:g} req/s (at {top}: {why})"
    )


def _no_rate_reason(s: Search, slo: dict[str, float]) -> str:
    if s.state == "infeasible":
        p = s.hi
        row = p.row
        if int(row[_M["status"]]) != _STATUS_OK:
            return f"the run does not finish even at {p.rate:.4g} req/s"
        if row[_M["completed_requests"]] != row[_M["injected_requests"]]:
            dropped = int(row[_M["dropped_unservable"]])
            left = int(row[_M["injected_requests"]] - row[_M["completed_requests"]])
            return f"{left} requests never complete even at {p.rate:.4g} req/s" + (
                f" ({dropped} cannot fit in the KV cache)" if dropped else ""
            )
        over = [f"{m} = {row[_M[m]]:.4g} > {b:g}" for m, b in slo.items() if not (row[_M[m]] <= b)]
        return f"fails the SLO even at {p.rate:.4g} req/s: " + ", ".join(over)
    if s.state == "unbounded":
        return f"meets the SLO up to {RATE_CAP:g} req/s"
    return f"the search did not converge in {MAX_PROBES} probes"


def column_attrs(name: str) -> dict[str, str]:
    for table in (PLAN_COLUMNS, COST_COLUMNS, SERVE_COLUMNS, END_COLUMNS):
        if name in table:
            units, long_name, desc = table[name]
            return {"units": units, "long_name": long_name, "description": desc}
    info = METRICS[name]
    return {
        "units": info.units,
        "long_name": f"{info.long_name} at max_rate",
        "description": info.description,
    }


def column_order() -> list[str]:
    return [
        *PLAN_COLUMNS,
        *SWEEP_METRICS,
        *COST_COLUMNS,
        *SERVE_COLUMNS,
        *END_COLUMNS,
    ]


def plan_dataset(run: PlanRun):
    """The plan as an xarray Dataset (dims: the grid axes), like a sweep result."""
    from infersweep.sweeps.results import build_variables_dataset, dataset_attrs

    cols = plan_columns(run)
    variables = {}
    for name in column_order():
        vals = cols[name]
        attrs = column_attrs(name)
        if name in INT_COLUMNS:
            attrs["value_type"] = "integer"
        if name in STR_COLUMNS:
            vals = np.asarray(vals, dtype=str)
        elif name in BOOL_COLUMNS:
            vals = np.asarray(vals, dtype=bool)
        else:
            vals = np.asarray(vals, dtype=np.float64)
        variables[name] = (vals, attrs)
    attrs = dataset_attrs(run.spec)
    attrs["title"] = f"infersweep plan {run.spec.name}"
    attrs["kind"] = "plan"
    attrs["slo"] = _json(run.options.slo)
    attrs["target_rate"] = run.options.target_rate if run.options.target_rate else 0.0
    attrs["check_replicas"] = int(bool(run.options.check_replicas))
    attrs["kernel_calls"] = run.kernel_calls
    attrs["simulated_points"] = run.points
    return build_variables_dataset(run.spec.axes, variables, run.facts, attrs)


def _json(d) -> str:
    import json

    return json.dumps(d)


# --------------------------------------------------------------------------------------------
# the search trace (for the knee plot)
# --------------------------------------------------------------------------------------------


def knee_curves(run: PlanRun) -> list[dict]:
    """Per configuration with a max_rate: the nominal points (rate, SLO metric values)."""
    out = []
    for c, s in zip(run.configs, run.nominal):
        if s is None or not s.points:
            continue
        pts = sorted(s.points.values(), key=lambda p: p.rate)
        out.append(
            {
                "label": config_label(run.spec, c.settings),
                "rates": np.array([p.rate for p in pts]),
                "metrics": {m: np.array([p.row[_M[m]] for p in pts]) for m in run.options.slo},
                "max_rate": s.lo.rate if s.state == "done" else None,
                "at_max": {m: s.lo.row[_M[m]] for m in run.options.slo}
                if s.state == "done"
                else {},
            }
        )
    return out


def config_label(spec: SweepSpec, s: dict) -> str:
    if not spec.axes:
        return f"{s['model']} {s['hardware']} tp{s['tp']}"
    return " ".join(f"{'tp' if k == 'tp' else ''}{s[k]}" for k in spec.axes)


def grid_names(spec: SweepSpec) -> list[str]:
    return [canonical(k) for k in spec.axes]


# --------------------------------------------------------------------------------------------
# entry points: files and the Python API
# --------------------------------------------------------------------------------------------

PLAN_FILE = "plan.parquet"


def load_plan_spec(path) -> tuple[SweepSpec, dict, dict]:
    """A plan spec file: (sweep spec, [slo] table, [plan] table)."""
    from infersweep.sweeps.grid import PLAN_TABLES, load_spec_tables

    spec, tables = load_spec_tables(path, extra_tables=PLAN_TABLES)
    for t in ("slo", "plan"):
        if t in tables and not isinstance(tables[t], Mapping):
            raise ConfigError(f"[{t}] must be a table", file=spec.source or None, field=t)
    return spec, dict(tables.get("slo", {})), dict(tables.get("plan", {}))


def check_out_dir(out) -> None:
    from pathlib import Path

    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ConfigError(
            "cannot write to the output folder: it is a file", file=p, hint="--out takes a folder"
        )


def write_plan(run: PlanRun, out, *, plots: bool = True):
    """Write ``OUT/plan.parquet`` (and ``pareto.png``, ``knees.png``); returns the Dataset."""
    from pathlib import Path

    from infersweep.sweeps.results import write_parquet

    out = Path(out)
    check_out_dir(out)
    ds = plan_dataset(run)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write to the output folder ({exc.strerror})", file=out) from None
    write_parquet(ds, out / PLAN_FILE)
    if plots:
        from infersweep.sweeps.plot import plot_knees, plot_pareto

        plot_pareto(ds, out / "pareto.png")
        plot_knees(knee_curves(run), run.options.slo, out / "knees.png")
    return ds


def plan(
    spec,
    *,
    slo: Mapping[str, float] | None = None,
    target_rate: float | None = None,
    prices: Mapping[str, float] | None = None,
    cost_uncertainty: float | None = None,
    sensitivity: bool = True,
    check_replicas: bool | None = None,
    out=None,
    threads: int | None = None,
):
    """Plan capacity for every configuration of a grid; returns the plan ``xarray.Dataset``
    (and writes ``out/plan.parquet`` and the two figures when ``out`` is given).

    ``spec``: a plan spec file (TOML with [sweep], [grid], [slo], [plan]), a ``SweepSpec``, or
    a dict ``{"sweep": {...}, "grid": {...}}``.  Explicit ``slo``, ``target_rate``, ``prices``
    (GPU -> USD per GPU-hour), ``cost_uncertainty`` and ``check_replicas`` win over the
    file's tables."""
    import os

    slo_table: dict = {}
    plan_table: dict = {}
    if isinstance(spec, SweepSpec):
        sweep_spec = spec
    elif isinstance(spec, Mapping):
        from infersweep.sweeps.grid import spec_from_dict

        sweep_spec = spec_from_dict(dict(spec), extra_tables=("slo", "plan"))
        slo_table = dict(spec.get("slo", {}))
        plan_table = dict(spec.get("plan", {}))
    elif isinstance(spec, (str, os.PathLike)):
        sweep_spec, slo_table, plan_table = load_plan_spec(spec)
    else:
        raise ConfigError("spec must be a file, a SweepSpec or a dict", value=type(spec).__name__)
    where = sweep_spec.source or None
    options = plan_options(
        plan_table,
        slo=slo if slo is not None else slo_table,
        target_rate=target_rate,
        prices=prices,
        cost_uncertainty=cost_uncertainty,
        check_replicas=check_replicas,
        where=where,
    )
    options = PlanOptions(
        slo=options.slo,
        target_rate=options.target_rate,
        prices=options.prices,
        cost_uncertainty=options.cost_uncertainty,
        sensitivity=sensitivity,
        check_replicas=options.check_replicas,
    )
    if out is not None:
        check_out_dir(out)
    run = run_plan(sweep_spec, options, threads=threads)
    if out is not None:
        return write_plan(run, out)
    return plan_dataset(run)
