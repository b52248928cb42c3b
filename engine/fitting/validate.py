"""Fidelity against measurements: simulated vs measured TTFT, E2E and TPOT per request.

:func:`compare` matches each request of a measured trace (:func:`.otlp.read_measured`)
with the same request of a simulation of that trace (by trace row: ``SimResult.request_id``),
leaves out the first ``skip_first`` requests by arrival (warm-up), and the requests the
simulation dropped or did not complete (counted, never mixed in), and computes per request::

    TPOT = (E2E - TTFT) / (output_tokens - 1)      (requests with more than one output token)

and per metric (overall, and per ``phase`` when the trace has that column)::

    MAPE                    = mean(|pred - meas| / meas) · 100        (requests with meas > 0)
    mean signed error (ms)  = mean(pred - meas)                       (positive: over-predicts)
    mean signed error (%)   = mean((pred - meas) / meas) · 100        (requests with meas > 0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from infersweep.errors import ConfigError

METRICS = ("ttft", "e2e", "tpot")
METRIC_LABELS = {"ttft": "TTFT", "e2e": "E2E", "tpot": "TPOT"}

#: per-request status
COMPARED = "compared"
SKIPPED = "skipped"  # among the first skip_first requests by arrival
DROPPED = "dropped"  # dropped by the simulation
NOT_COMPLETED = "not-completed"  # still queued / running / not arrived when the simulation ended
STATUSES = (COMPARED, SKIPPED, DROPPED, NOT_COMPLETED)


def _num(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


@dataclass(frozen=True, slots=True)
class MetricStats:
    """Errors of one metric over one group of requests."""

    n: int  # requests with the metric (TPOT: more than one output token)
    n_pct: int  # of those, with a measured value > 0 (the % errors)
    mape_pct: float  # NaN when n_pct == 0
    mean_signed_error_ms: float  # NaN when n == 0
    mean_signed_error_pct: float
    mean_measured_ms: float
    mean_predicted_ms: float

    @classmethod
    def of(cls, meas: np.ndarray, pred: np.ndarray) -> MetricStats:
        meas = np.asarray(meas, float)
        pred = np.asarray(pred, float)
        n = len(meas)
        pos = meas > 0
        npct = int(pos.sum())
        nan = float("nan")
        if n == 0:
            return cls(0, 0, nan, nan, nan, nan, nan)
        err = pred - meas
        rel = err[pos] / meas[pos]
        return cls(
            n=n,
            n_pct=npct,
            mape_pct=float(np.mean(np.abs(rel)) * 100.0) if npct else nan,
            mean_signed_error_ms=float(np.mean(err)),
            mean_signed_error_pct=float(np.mean(rel) * 100.0) if npct else nan,
            mean_measured_ms=float(np.mean(meas)),
            mean_predicted_ms=float(np.mean(pred)),
        )

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "n_pct": self.n_pct,
            "mape_pct": _num(self.mape_pct),
            "mean_signed_error_ms": _num(self.mean_signed_error_ms),
            "mean_signed_error_pct": _num(self.mean_signed_error_pct),
            "mean_measured_ms": _num(self.mean_measured_ms),
            "mean_predicted_ms": _num(self.mean_predicted_ms),
        }


@dataclass(frozen=True, slots=True)
class GroupStats:
    """Counts and errors of one group of requests (all of them, or one phase)."""

    name: str
    requests: int
    skipped: int
    dropped: int
    not_completed: int
    compared: int
    metrics: dict[str, MetricStats]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "counts": {
                "requests": self.requests,
                "skipped": self.skipped,
                "dropped": self.dropped,
                "not_completed": self.not_completed,
                "compared": self.compared,
            },
            **{m: self.metrics[m].to_dict() for m in METRICS},
        }


@dataclass(frozen=True, slots=True, eq=False)
class Report:
    """The comparison: overall and per-phase statistics, and the per-request arrays (arrival
    order; predictions are NaN where the request was not compared)."""

    source: str
    skip_first: int
    overall: GroupStats
    phases: list[GroupStats]
    request_id: np.ndarray  # trace row
    arrival_s: np.ndarray
    phase: np.ndarray | None  # object array of phase names; None without a phase column
    output_tokens: np.ndarray
    status: np.ndarray  # object array of STATUSES
    measured: dict[str, np.ndarray] = field(default_factory=dict)  # ms, per METRICS
    predicted: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def compared(self) -> np.ndarray:
        return self.status == COMPARED

    def stats_for(self, mask: np.ndarray) -> dict[str, float]:
        """MAPE (%) of each metric over the compared requests selected by ``mask`` (arrival
        order)."""
        sel = self.compared & np.asarray(mask, bool)
        out = {}
        for m in METRICS:
            meas = self.measured[m][sel]
            pred = self.predicted[m][sel]
            ok = np.isfinite(meas) & np.isfinite(pred)
            out[m] = MetricStats.of(meas[ok], pred[ok]).mape_pct
        return out

    def to_dict(self, requests: bool = True) -> dict:
        out = {
            "source": self.source,
            "skip_first": self.skip_first,
            "definitions": {
                "tpot_ms": "(e2e_ms - ttft_ms) / (output_tokens - 1), output_tokens > 1",
                "mape_pct": "mean(|pred - meas| / meas) * 100 over requests with meas > 0",
                "mean_signed_error_ms": "mean(pred - meas)",
                "mean_signed_error_pct": "mean((pred - meas) / meas) * 100, meas > 0",
            },
            "overall": self.overall.to_dict(),
            "phases": [g.to_dict() for g in self.phases],
        }
        if requests:
            rows = []
            for i in range(len(self.request_id)):
                r = {
                    "request_id": int(self.request_id[i]),
                    "arrival_s": float(self.arrival_s[i]),
                    "phase": None if self.phase is None else str(self.phase[i]),
                    "output_tokens": int(self.output_tokens[i]),
                    "status": str(self.status[i]),
                }
                for m in METRICS:
                    r[f"measured_{m}_ms"] = _num(self.measured[m][i])
                    r[f"predicted_{m}_ms"] = _num(self.predicted[m][i])
                rows.append(r)
            out["requests"] = rows
        return out


def _group(name: str, mask: np.ndarray, status: np.ndarray, meas: dict, pred: dict) -> GroupStats:
    ok = mask & (status == COMPARED)
    metrics = {}
    for m in METRICS:
        sel = ok & np.isfinite(meas[m]) & np.isfinite(pred[m])
        metrics[m] = MetricStats.of(meas[m][sel], pred[m][sel])
    return GroupStats(
        name=name,
        requests=int(mask.sum()),
        skipped=int((mask & (status == SKIPPED)).sum()),
        dropped=int((mask & (status == DROPPED)).sum()),
        not_completed=int((mask & (status == NOT_COMPLETED)).sum()),
        compared=int(ok.sum()),
        metrics=metrics,
    )


def _tpot(e2e: np.ndarray, ttft: np.ndarray, out: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(out > 1, (e2e - ttft) / np.maximum(out - 1, 1), np.nan)


def compare(measured_workload, sim_result, skip_first: int = 1) -> Report:
    """Compare a simulation of a measured trace with the measurements (see the module doc).

    ``measured_workload``: a :class:`~infersweep.workload.Workload` with ``measured_ttft_ms`` and
    ``measured_e2e_ms`` in ``extra`` (optionally ``phase``); ``sim_result``: a
    :class:`~infersweep.api.SimResult` of that workload (anything with ``request_id``,
    ``ttft_ms``, ``e2e_ms``, ``completed``, ``dropped`` and ``workload``).
    """
    wl = measured_workload
    src = getattr(wl, "source", "") or None
    if (
        isinstance(skip_first, bool)
        or not isinstance(skip_first, (int, np.integer))
        or skip_first < 0
    ):
        raise ConfigError("must be an integer >= 0", field="skip_first", value=skip_first)
    skip_first = int(skip_first)
    for c in ("measured_ttft_ms", "measured_e2e_ms"):
        if c not in wl.extra:
            raise ConfigError(
                f"the workload has no {c} (not a measured trace)",
                file=src,
                field=c,
                hint="read it with infersweep.fitting.otlp.read_measured",
            )
    n = len(wl)
    if skip_first >= n:
        raise ConfigError(
            f"skipping the first {skip_first} request(s) leaves none of the {n} to compare",
            field="skip_first",
            value=skip_first,
        )
    ids = np.asarray(wl.extra.get("trace_row", np.arange(n)), np.int64)
    sim_ids = np.asarray(sim_result.request_id, np.int64)
    pos = {int(r): k for k, r in enumerate(sim_ids)}
    missing = [int(r) for r in ids if int(r) not in pos]
    if len(sim_ids) != n or len(pos) != n or missing:
        raise ConfigError(
            f"the simulation has {len(sim_ids)} request(s), the measured trace "
            f"{n}: not a simulation of this trace",
            file=src,
            value=f"request {missing[0]}" if missing else ...,
            hint="simulate the workload read from the measured trace",
        )
    idx = np.array([pos[int(r)] for r in ids], np.int64)
    swl = sim_result.workload
    if not (
        np.array_equal(np.asarray(swl.prompt_tok)[idx], wl.prompt_tok)
        and np.array_equal(np.asarray(swl.output_tok)[idx], wl.output_tok)
    ):
        k = int(
            np.argmax(
                (np.asarray(swl.prompt_tok)[idx] != wl.prompt_tok)
                | (np.asarray(swl.output_tok)[idx] != wl.output_tok)
            )
        )
        raise ConfigError(
            "the simulated requests have other token counts than the measured "
            "trace: not a simulation of this trace",
            file=src,
            field=f"request {int(ids[k])}",
            hint="simulate the workload read from the measured trace",
        )
    completed = np.asarray(sim_result.completed, bool)[idx]
    dropped = np.asarray(sim_result.dropped, bool)[idx]
    p_ttft = np.asarray(sim_result.ttft_ms, float)[idx]
    p_e2e = np.asarray(sim_result.e2e_ms, float)[idx]
    completed &= np.isfinite(p_ttft) & np.isfinite(p_e2e)

    status = np.full(n, COMPARED, dtype=object)
    status[~completed] = NOT_COMPLETED
    status[dropped] = DROPPED
    status[:skip_first] = SKIPPED  # wl is in arrival order

    out = np.asarray(wl.output_tok, np.int64)
    m_ttft = np.asarray(wl.extra["measured_ttft_ms"], float)
    m_e2e = np.asarray(wl.extra["measured_e2e_ms"], float)
    meas = {"ttft": m_ttft, "e2e": m_e2e, "tpot": _tpot(m_e2e, m_ttft, out)}
    keep = status == COMPARED
    nan = np.full(n, np.nan)
    pred = {"ttft": np.where(keep, p_ttft, nan), "e2e": np.where(keep, p_e2e, nan)}
    pred["tpot"] = _tpot(pred["e2e"], pred["ttft"], out)

    everyone = np.ones(n, bool)
    overall = _group("all", everyone, status, meas, pred)
    phases: list[GroupStats] = []
    phase = wl.extra.get("phase")
    if phase is not None:
        phase = np.asarray(phase, dtype=object)
        names = list(dict.fromkeys(str(p) for p in phase))
        phases = [_group(name, phase == name, status, meas, pred) for name in names]
    return Report(
        source=str(getattr(wl, "source", "") or ""),
        skip_first=skip_first,
        overall=overall,
        phases=phases,
        request_id=ids,
        arrival_s=np.asarray(wl.arrival_us, np.int64) / 1e6,
        phase=phase,
        output_tokens=out,
        status=status,
        measured=meas,
        predicted=pred,
    )


def pooled_summary(reports: list[Report]) -> dict:
    """Figures over several traces: per-request MAPE pooled over all compared requests, and the
    median (and mean) over traces of the absolute error of the mean, per metric (%)."""
    out: dict = {"traces": len(reports)}
    for m in METRICS:
        meas = []
        pred = []
        mean_errs = []
        for r in reports:
            sel = r.compared & np.isfinite(r.measured[m]) & np.isfinite(r.predicted[m])
            sel &= r.measured[m] > 0
            meas.append(r.measured[m][sel])
            pred.append(r.predicted[m][sel])
            s = r.overall.metrics[m]
            if s.n and s.mean_measured_ms > 0:
                mean_errs.append((s.mean_predicted_ms - s.mean_measured_ms) / s.mean_measured_ms)
        mm = np.concatenate(meas) if meas else np.zeros(0)
        pp = np.concatenate(pred) if pred else np.zeros(0)
        nan = float("nan")
        out[m] = {
            "n": int(len(mm)),
            "mape_pct": _num(float(np.mean(np.abs(pp - mm) / mm) * 100) if len(mm) else nan),
            "median_abs_mean_error_pct": _num(
                float(np.median(np.abs(mean_errs)) * 100) if mean_errs else nan
            ),
            "mean_abs_mean_error_pct": _num(
                float(np.mean(np.abs(mean_errs)) * 100) if mean_errs else nan
            ),
        }
    return out
