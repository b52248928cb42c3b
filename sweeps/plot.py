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


# --------------------------------------------------------------------------------------------
# results (sweep or plan) and the plan's figures
# --------------------------------------------------------------------------------------------


def _save(fig, path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


def _label(name: str, units: str | None) -> str:
    return f"{name} ({units})" if units and units != "1" else name


def plot_result(
    result,
    *,
    x: str,
    y: str,
    hue: str | None = None,
    col: str | None = None,
    row: str | None = None,
    out,
) -> None:
    """Draw column ``y`` against column ``x`` of a sweep or plan result: one line per
    combination of the other axes, coloured by ``hue``, in a grid of panels by ``row`` and
    ``col``; units from the result's metadata; an unknown column is one clear error."""
    from infersweep.sweeps.results import read_result_columns

    data, meta, p = read_result_columns(result)
    names = [c for c in data if c != "reason"]
    for flag, name in (("--x", x), ("--y", y), ("--hue", hue), ("--col", col), ("--row", row)):
        if name is not None and name not in names:
            raise ConfigError(
                f"unknown column in {p.name}",
                field=flag,
                value=name,
                hint="columns: " + ", ".join(names),
            )
    Figure, FigureCanvasAgg, Line2D = _matplotlib()
    units = {k: v.get("units") for k, v in meta.get("variables", {}).items()}
    units.update({k: v.get("attrs", {}).get("units") for k, v in meta.get("facts", {}).items()})
    if "rate" in meta.get("dims", []):
        units.setdefault("rate", "1/s")
    xs, ys = data[x], data[y]
    if ys.dtype == object:
        raise ConfigError("--y must be a numeric column", field="--y", value=y)
    ys = ys.astype(float)
    dims = [d for d in meta.get("dims", []) if d not in (x, hue, col, row)]
    keys = {k: data[k] for k in dims}
    rows = list(dict.fromkeys(data[row].tolist())) if row else [None]
    cols = list(dict.fromkeys(data[col].tolist())) if col else [None]
    hues = list(dict.fromkeys(data[hue].tolist())) if hue else [None]
    colour = {h: _PHASE_COLOURS[i % len(_PHASE_COLOURS)] for i, h in enumerate(hues)}
    fig = Figure(
        figsize=(4.2 * len(cols) + 1.5, 3.4 * len(rows) + 0.8), dpi=110, layout="constrained"
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), len(cols), squeeze=False, sharex=True, sharey=True)
    rv = data[row] if row else None
    cv = data[col] if col else None
    hv = data[hue] if hue else None
    numeric_x = xs.dtype != object
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i][j]
            sel = np.ones(len(xs), bool)
            if row:
                sel &= rv == r
            if col:
                sel &= cv == c
            groups: dict = {}
            for k in np.flatnonzero(sel):
                key = (hv[k] if hue else None, *(keys[d][k] for d in dims))
                groups.setdefault(key, []).append(k)
            for key, idx in groups.items():
                idx = np.array(idx)
                if numeric_x:
                    idx = idx[np.argsort(xs[idx], kind="stable")]
                ax.plot(
                    xs[idx] if numeric_x else [str(v) for v in xs[idx]],
                    ys[idx],
                    marker="o",
                    ms=3.5,
                    lw=1.2,
                    color=colour[key[0]],
                    alpha=0.85,
                )
            title = " ".join(f"{n} = {v}" for n, v in ((row, r), (col, c)) if n is not None)
            ax.set_title(title, fontsize=10)
            finite = ys[sel][np.isfinite(ys[sel].astype(float))] if sel.any() else ys[:0]
            if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 100:
                ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
            if i == len(rows) - 1:
                ax.set_xlabel(_label(x, units.get(x)))
            if j == 0:
                ax.set_ylabel(_label(y, units.get(y)))
    if hue:
        fig.legend(
            handles=[Line2D([], [], marker="o", color=colour[h], label=str(h), ms=5) for h in hues],
            title=hue,
            loc="outside right upper",
            fontsize=9,
            frameon=False,
        )
    name = meta.get("attrs", {}).get("title", p.name)
    fig.suptitle(f"{name}: {y} against {x}", fontsize=11)
    _save(fig, out)


def _frontier_line(ax, x, y, on, colour) -> None:
    idx = np.flatnonzero(on)
    if len(idx):
        idx = idx[np.argsort(x[idx])]
        ax.plot(x[idx], y[idx], color=colour, lw=1.5, ls="--", zorder=1)


def plot_pareto(ds, path) -> None:
    """Two panels of a plan: goodput per GPU against speed per user, and cost per million
    output tokens against p99 E2E latency; frontier configurations highlighted and named."""
    Figure, FigureCanvasAgg, _ = _matplotlib()
    dims = list(ds.dims)
    flat = {
        k: ds[k].values.reshape(-1)
        for k in (
            "goodput_tok_s_per_gpu",
            "tok_s_per_user",
            "cost_per_mtok",
            "e2e_p99_ms",
            "pareto",
            "pareto_cost",
            "status",
            "fragile",
        )
    }
    import itertools

    labels = [
        " ".join(str(v) for v in combo)
        for combo in itertools.product(*[ds[d].values.tolist() for d in dims])
    ] or ["config"]
    ok = flat["status"] == "ok"
    fig = Figure(figsize=(14, 6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    panels = (
        (ax1, "tok_s_per_user", "goodput_tok_s_per_gpu", "pareto", False),
        (ax2, "e2e_p99_ms", "cost_per_mtok", "pareto_cost", True),
    )
    for ax, xk, yk, pk, cost in panels:
        xv, yv, on = flat[xk], flat[yk], flat[pk] & ok
        sel = ok & np.isfinite(xv) & np.isfinite(yv)
        ax.scatter(xv[sel & ~on], yv[sel & ~on], s=18, color="0.6", label="meets the SLO")
        ax.scatter(xv[on], yv[on], s=40, color="#d62728", zorder=3, label="Pareto frontier")
        frag = sel & flat["fragile"]
        if frag.any():
            ax.scatter(
                xv[frag], yv[frag], s=90, facecolors="none", edgecolors="#1f77b4", label="fragile"
            )
        _frontier_line(ax, xv, yv, on, "#d62728")
        for k in np.flatnonzero(on):
            ax.annotate(
                labels[k], (xv[k], yv[k]), fontsize=7, xytext=(4, 3), textcoords="offset points"
            )
        if sel.any() and yv[sel].max() / max(yv[sel].min(), 1e-12) > 10:
            ax.set_yscale("log")
        if sel.any() and xv[sel].max() / max(xv[sel].min(), 1e-12) > 10:
            ax.set_xscale("log")
        ax.set_xlabel(_label(xk, ds[xk].attrs.get("units")) + (" at max_rate" if cost else ""))
        ax.set_ylabel(_label(yk, ds[yk].attrs.get("units")))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        if not sel.any():
            ax.text(0.5, 0.5, "no configuration meets the SLO", ha="center", transform=ax.transAxes)
    ax1.set_title("throughput per GPU against interactivity (up and right is better)")
    ax2.set_title("cost against latency (down and left is better)")
    import json

    slo = json.loads(ds.attrs.get("slo", "{}"))
    fig.suptitle(
        f"{ds.attrs.get('title', 'plan')}: {int(ok.sum())} of {len(ok)} configurations meet "
        "the SLO " + ", ".join(f"{k} <= {v:g}" for k, v in slo.items()),
        fontsize=11,
    )
    _save(fig, path)


def plot_knees(curves: list[dict], slo: dict, path, top: int = 10) -> None:
    """Each SLO metric against the arrival rate, one line per configuration (the simulated
    points of its search), the bound dashed and each knee (max_rate) starred; the first
    ``top`` configurations in colour, the rest grey."""
    Figure, FigureCanvasAgg, _ = _matplotlib()
    metrics = list(slo)
    fig = Figure(figsize=(6.5 * len(metrics) + 3.5, 6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    shown = [c for c in curves if c["max_rate"] is not None]
    order = sorted(shown, key=lambda c: -c["max_rate"])
    coloured = {id(c): _PHASE_COLOURS[i % len(_PHASE_COLOURS)] for i, c in enumerate(order[:top])}
    for ax, m in zip(axes, metrics):
        for c in shown:
            colr = coloured.get(id(c), "0.75")
            v = c["metrics"][m]
            ok = np.isfinite(v) & (v > 0)
            ax.plot(
                c["rates"][ok],
                v[ok],
                marker="o",
                ms=3,
                lw=1.0,
                color=colr,
                label=c["label"] if id(c) in coloured else None,
                zorder=2 if id(c) in coloured else 1,
            )
            ax.plot(
                [c["max_rate"]],
                [c["at_max"][m]],
                marker="*",
                ms=13,
                color=colr,
                markeredgecolor="black",
                zorder=4,
            )
        ax.axhline(slo[m], color="#d62728", ls="--", lw=1.3, label=f"SLO bound {slo[m]:g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arrival rate (requests/s)")
        ax.set_ylabel(f"{m} (ms)" if m.endswith("_ms") else m)
        ax.set_title(f"{m}: knee (star) = max_rate", fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        if not shown:
            ax.text(
                0.5, 0.5, "no configuration has a max_rate", ha="center", transform=ax.transAxes
            )
    if shown:
        handles, labels = axes[-1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False, ncol=1)
    fig.suptitle(
        "SLO metrics against arrival rate (simulated points of each search); "
        f"{len(shown)} configurations, {min(top, len(shown))} in colour",
        fontsize=11,
    )
    _save(fig, path)


def plot_validation_many(names, reports, path: str | os.PathLike) -> None:
    """Predicted vs measured for several traces in one figure: per-request TTFT, E2E and TPOT
    (log axes, y = x) coloured by trace, and the mean of each metric per trace; a PNG."""
    Figure, FigureCanvasAgg, Line2D = _matplotlib()
    from infersweep.fitting.validate import METRIC_LABELS, METRICS

    fig = Figure(figsize=(16, 10), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 3, height_ratios=(1.0, 0.8))
    colour = {nm: _PHASE_COLOURS[i % len(_PHASE_COLOURS)] for i, nm in enumerate(names)}
    fig.suptitle(f"Simulated vs measured over {len(names)} trace(s)", fontsize=12)
    for col, m in enumerate(METRICS):
        ax = fig.add_subplot(grid[0, col])
        lo, hi = math.inf, 0.0
        for nm, rep in zip(names, reports):
            ok = rep.compared & np.isfinite(rep.measured[m]) & np.isfinite(rep.predicted[m])
            ok &= (rep.measured[m] > 0) & (rep.predicted[m] > 0)
            x = rep.measured[m][ok]
            y = rep.predicted[m][ok]
            if len(x) > 3000:  # a readable cloud: an even subsample
                k = np.linspace(0, len(x) - 1, 3000).astype(int)
                x, y = x[k], y[k]
            if len(x):
                lo = min(lo, float(x.min()), float(y.min()))
                hi = max(hi, float(x.max()), float(y.max()))
                ax.scatter(x, y, s=3, alpha=0.35, color=colour[nm], rasterized=True)
        if hi > 0:
            ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"measured {METRIC_LABELS[m]} (ms)")
        ax.set_ylabel(f"predicted {METRIC_LABELS[m]} (ms)")
        ax.grid(True, which="both", alpha=0.2)
        ax2 = fig.add_subplot(grid[1, col])
        for i, (nm, rep) in enumerate(zip(names, reports)):
            s = rep.overall.metrics[m]
            ax2.bar(i - 0.2, s.mean_measured_ms, width=0.4, color="0.6")
            ax2.bar(i + 0.2, s.mean_predicted_ms, width=0.4, color=colour[nm])
        ax2.set_xticks(range(len(names)))
        ax2.set_xticklabels([nm[:28] for nm in names], rotation=60, ha="right", fontsize=7)
        ax2.set_ylabel(f"mean {METRIC_LABELS[m]} (ms): measured grey, predicted colour")
        ax2.set_yscale("log")
    handles = [Line2D([], [], ls="", marker="o", ms=6, color=colour[nm], label=nm) for nm in names]
    fig.legend(handles=handles, loc="outside right upper", fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
