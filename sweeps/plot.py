"""Figures (matplotlib, drawn off-screen with the Agg canvas; no display, no pyplot state)."""

from __future__ import annotations

import io
import math
import os

import numpy as np

from infersweep.errors import ConfigError
from infersweep.sweeps.io import atomic_write_bytes

_PHASE_COLOURS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ImportError:
        raise ConfigError(
            "plotting needs matplotlib", field="--plot", hint="pip install 'infersweep[plot]'"
        ) from None
    return Figure, FigureCanvasAgg, Line2D


def _fmt(v: float, spec: str = ".1f") -> str:
    return "-" if v is None or not math.isfinite(v) else format(v, spec)


def plot_validation(report, path: str | os.PathLike) -> None:
    """Predicted vs measured per request (TTFT, E2E, TPOT; log axes, y = x) and TTFT / E2E over
    arrival time (measured: dots, predicted: crosses), coloured by phase; a PNG, written
    atomically.  ``report``: an :class:`infersweep.fitting.validate.Report`."""
    Figure, FigureCanvasAgg, Line2D = _matplotlib()
    from infersweep.fitting.validate import COMPARED, METRIC_LABELS, METRICS

    n = len(report.request_id)
    phase = report.phase if report.phase is not None else np.full(n, "", dtype=object)
    names = list(dict.fromkeys(str(p) for p in phase))
    colour = {nm: _PHASE_COLOURS[i % len(_PHASE_COLOURS)] for i, nm in enumerate(names)}
    ok = np.asarray(report.status == COMPARED, bool)

    fig = Figure(figsize=(15, 10), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 3, height_ratios=(1.0, 0.9))
    o = report.overall
    fig.suptitle(
        f"Simulated vs measured: {os.path.basename(report.source) or 'measured trace'} - "
        f"{o.compared} of {o.requests} requests compared (first {o.skipped} skipped, "
        f"{o.dropped} dropped, {o.not_completed} not completed by the simulation)",
        fontsize=12,
    )

    phase_handles = [
        Line2D([], [], ls="", marker="o", ms=7, color=colour[nm], label=(nm or "(no phase)"))
        for nm in names
    ]
    for col, m in enumerate(METRICS):
        ax = fig.add_subplot(grid[0, col])
        meas = report.measured[m]
        pred = report.predicted[m]
        sel = ok & np.isfinite(meas) & np.isfinite(pred) & (meas > 0) & (pred > 0)
        for nm in names:
            k = sel & (phase == nm)
            if k.any():
                ax.scatter(meas[k], pred[k], s=16, alpha=0.7, color=colour[nm], edgecolors="none")
        st = o.metrics[m]
        ax.set_title(
            f"{METRIC_LABELS[m]} (n = {st.n}): MAPE {_fmt(st.mape_pct)} %, "
            f"mean error {_fmt(st.mean_signed_error_pct, '+.1f')} %",
            fontsize=10,
        )
        ax.set_xlabel(f"measured {METRIC_LABELS[m]} (ms)")
        ax.set_ylabel(f"predicted {METRIC_LABELS[m]} (ms)")
        if sel.any():
            lo = float(min(meas[sel].min(), pred[sel].min()))
            hi = float(max(meas[sel].max(), pred[sel].max()))
            log = hi / lo > 20
            lo, hi = (
                (lo / 1.3, hi * 1.3)
                if log
                else (lo - 0.05 * (hi - lo) - 1e-9, hi + 0.05 * (hi - lo) + 1e-9)
            )
            if log:
                ax.set_xscale("log")
                ax.set_yscale("log")
            ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--")
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            ax.set_aspect("equal", adjustable="box")
        else:
            ax.text(
                0.5, 0.5, "no requests to compare", ha="center", va="center", transform=ax.transAxes
            )
            ax.set_xticks([])
            ax.set_yticks([])
        ax.grid(True, which="major", alpha=0.3)

    sub = grid[1, :].subgridspec(1, 2)
    t = report.arrival_s
    for col, m in enumerate(("ttft", "e2e")):
        ax = fig.add_subplot(sub[0, col])
        meas = report.measured[m]
        pred = report.predicted[m]
        shown = np.isfinite(meas) & (meas > 0)
        for nm in names:
            k = shown & (phase == nm)
            if (k & ok).any():
                ax.scatter(
                    t[k & ok], meas[k & ok], s=14, color=colour[nm], alpha=0.8, edgecolors="none"
                )
            if (k & ~ok).any():  # skipped, dropped, not completed: measured only, hollow
                ax.scatter(
                    t[k & ~ok],
                    meas[k & ~ok],
                    s=22,
                    facecolors="none",
                    edgecolors=colour[nm],
                    linewidths=1.0,
                )
            kp = k & ok & np.isfinite(pred) & (pred > 0)
            if kp.any():
                ax.scatter(
                    t[kp], pred[kp], s=22, color=colour[nm], marker="x", linewidths=0.9, alpha=0.9
                )
        vals = np.concatenate([meas[shown], pred[ok & np.isfinite(pred) & (pred > 0)]])
        if len(vals) and vals.max() / max(vals.min(), 1e-12) > 20:
            ax.set_yscale("log")
        ax.set_title(f"{METRIC_LABELS[m]} over arrival time", fontsize=10)
        ax.set_xlabel("arrival time (s)")
        ax.set_ylabel(f"{METRIC_LABELS[m]} (ms)")
        ax.grid(True, which="major", alpha=0.3)
    marker_handles = [
        Line2D([], [], ls="", marker="o", ms=6, color="0.35", label="measured"),
        Line2D([], [], ls="", marker="x", ms=7, color="0.35", label="predicted"),
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            ms=6,
            color="0.35",
            mfc="none",
            label="measured, not compared",
        ),
    ]
    fig.legend(
        handles=phase_handles + marker_handles,
        loc="outside lower center",
        ncol=min(len(phase_handles) + 3, 6),
        fontsize=10,
        frameon=False,
    )

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
