"""Human-readable output (rich tables) for the CLI."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table


def render_step_breakdown(info: dict, console: Console | None = None) -> None:
    console = console or Console()
    head = (
        f"[bold]{info['model']}[/] on {info['hardware']} TP {info['tp']} "
        f"(roofline {info['step_model']})"
    )
    console.print(head)
    console.print(
        f"step time: [bold]{info['step_us']} µs[/]  bound by: {info['bound_by']}  "
        f"({info['n_prefill']} prefill entries, {info['prefill_tokens']} new tokens; "
        f"{info['n_decode']} decode entries)"
    )
    t = Table(show_header=True, header_style="bold")
    t.add_column("component")
    t.add_column("µs", justify="right")
    for key, label in (
        ("prefill_compute_us", "prefill compute"),
        ("prefill_memory_us", "prefill memory"),
        ("decode_compute_us", "decode compute"),
        ("decode_memory_us", "decode memory"),
        ("overhead_us", "overhead"),
        ("hardware_us", "hardware (max of phases)"),
    ):
        t.add_row(label, f"{info[key]:,.3f}")
    console.print(t)
    if info.get("attention_table"):
        console.print(
            f"MFU tables: attention {info['attention_table']}, decode {info['decode_table']}"
        )
    if "decode_gemm_mfu" in info:
        g = info["decode_gemm_mfu"]
        a = info["decode_attention_mfu"]
        gm = ", ".join(f"{k} {v:.4f}" for k, v in g.items()) or "constant (v1)"
        console.print(f"decode GEMM MFU at M={info['n_decode']}: {gm}")
        console.print(f"decode attention MFU: {a['min']:.6f} .. {a['max']:.6f}")
    for b, d in info.get("prefill_buckets", {}).items():
        gm = ", ".join(f"{k} {v:.4f}" for k, v in d["gemm_mfu"].items()) or "constant (v1)"
        console.print(
            f"prefill bucket {b}: {d['tokens']} tokens, attention MFU "
            f"{d['attention_mfu']:.6f}, GEMM {d['gemm_us']:,.1f} µs ({gm})"
        )
    dep = info.get("deployment")
    if dep:
        console.print(
            f"weights {dep['weight_dtype']} ({dep['weight_bytes_per_param']:g} B/param, experts "
            f"{dep['expert_bytes_per_param']:g}), KV "
            f"{dep['kv_cache_dtype']} ({dep['kv_bytes_per_token']:,.0f} B/token), GEMM peak "
            f"{dep['gemm_peak_tflops']:g} TFLOP/s, EP {dep['ep']}, DP {dep['dp']}; parameters "
            f"{dep['total_params'] / 1e9:.2f} B total, {dep['active_params'] / 1e9:.2f} B active"
        )
    for label in ("decode", "prefill"):
        if f"{label}_weight_bytes_read" in info:
            line = f"{label}: weight bytes read per GPU {info[f'{label}_weight_bytes_read']:,.0f}"
            moe = info.get(f"{label}_moe")
            if moe:
                line += (
                    f"; experts activated {moe['experts_activated_per_layer']:.2f} of "
                    f"{moe['experts']} per layer (top-{moe['experts_per_token']}, "
                    f"{moe['moe_layers']} MoE layers), expert bytes per GPU "
                    f"{moe['expert_weight_bytes_read']:,.0f} of "
                    f"{moe['expert_weight_bytes_all']:,.0f}; all-to-all "
                    f"{moe['all_to_all_us']:,.1f} µs (EP {moe['ep']})"
                )
            console.print(line)
    att = info.get("attention")
    if att:
        console.print(
            f"attention: MLA {att['mla']} (kv_lora_rank {att['kv_lora_rank']}), sliding-window "
            f"layers {att['sliding_layers']} (window {att['sliding_window']})"
        )
    for note in info.get("notes", []):
        console.print(f"note: {note}")


def render_validation(report, console: Console | None = None) -> None:
    """Rich tables of a validation report: errors per metric and the mean latencies, overall
    and per phase."""
    from infersweep.fitting.validate import METRIC_LABELS, METRICS

    console = console or Console()
    o = report.overall
    console.print(
        f"[bold]validation[/] of {report.source or 'the measured trace'}: "
        f"{o.requests} request(s); compared {o.compared}; skipped the first "
        f"{o.skipped}; dropped by the simulation {o.dropped}; not completed "
        f"{o.not_completed}"
    )
    groups = [o] + list(report.phases)

    def fmt(v: float, spec: str) -> str:
        return "-" if not math.isfinite(v) else format(v, spec)

    for g in groups:
        title = (
            "all requests" if g is o else f"phase: {g.name or '(no phase)'}"
        ) + f" ({g.compared} compared of {g.requests})"
        t = Table(title=title, title_justify="left", show_header=True, header_style="bold")
        for head in (
            "metric",
            "n",
            "measured ms",
            "predicted ms",
            "MAPE %",
            "error ms",
            "error %",
        ):
            t.add_column(head, justify="left" if head == "metric" else "right")
        for m in METRICS:
            s = g.metrics[m]
            t.add_row(
                METRIC_LABELS[m],
                str(s.n),
                fmt(s.mean_measured_ms, ",.1f"),
                fmt(s.mean_predicted_ms, ",.1f"),
                fmt(s.mape_pct, ".1f"),
                fmt(s.mean_signed_error_ms, "+,.1f"),
                fmt(s.mean_signed_error_pct, "+.1f"),
            )
        console.print(t)
    ntp = o.metrics["tpot"].n
    console.print(
        f"measured, predicted: means; error: mean signed error (predicted - "
        f"measured); TPOT over the {ntp} compared request(s) with more than one "
        f"output token; % errors over measured values > 0."
    )


def render_calibration(result, rows, *, fit_phase, out, console: Console | None = None) -> None:
    """The before/after table of a calibration (rows of ``fitting.calibrate.before_after``)."""
    console = console or Console()
    n_fit = next((r["n"] for r in rows if r["group"] == "fitted"), 0)
    t = Table(
        title=f"calibration of {result.hardware.name} ({', '.join(result.best.params)}) on "
        f"{n_fit} requests{' of phase ' + fit_phase if fit_phase else ''}"
    )
    for c in ("requests", "", "TTFT MAPE %", "E2E MAPE %", "TPOT MAPE %"):
        t.add_column(c, justify="right" if "%" in c else "left")
    for r in rows:
        t.add_row(r["group"], r["label"], *(f"{r[k]:.1f}" for k in ("ttft", "e2e", "tpot")))
    console.print(t)
    console.print(
        "fitted: "
        + ", ".join(f"{k} = {v:.4g}" for k, v in result.best.params.items())
        + f"  ({result.n_candidates} candidates in {result.seconds:.1f} s, "
        f"{result.candidates_per_s:,.0f}/s)"
    )
    console.print(f"wrote {out}")


def render_plan(ds, *, top: int = 15, console: Console | None = None) -> None:
    """The ranked plan: the best configurations meeting the SLO first, then what failed."""
    import itertools
    import json
    import math

    import numpy as np

    console = console or Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 180))
    dims = list(ds.dims)
    combos = list(itertools.product(*[ds[d].values.tolist() for d in dims])) or [()]
    flat = {k: ds[k].values.reshape(-1) for k in ds.data_vars}
    slo = json.loads(ds.attrs.get("slo", "{}"))
    has_target = bool(ds.attrs.get("target_rate"))
    ok = flat["status"] == "ok"
    order = sorted(np.flatnonzero(ok), key=lambda i: flat["rank"][i])
    t = Table(
        title=f"{ds.attrs.get('title', 'plan')}: {int(ok.sum())} of {len(ok)} configurations "
        "meet the SLO " + ", ".join(f"{k} <= {v:g}" for k, v in slo.items()),
        show_lines=False,
    )
    cols = ["#", *dims, "max_rate", "band (±δ)", "tok/s/GPU", *slo, "above"]
    cols += ["est.", "replicas", "check", "GPUs", "USD/h"] if has_target else ["USD/h/replica"]
    cols += ["USD/Mtok", "pareto"]
    for c in cols:
        t.add_column(
            c, justify="left" if c in dims or c in ("above", "pareto", "check") else "right"
        )

    def num(v, fmt=",.2f"):
        return "-" if v is None or not math.isfinite(v) else format(v, fmt)

    for i in order[:top]:
        band = f"{num(flat['max_rate_low'][i])}–{num(flat['max_rate_high'][i])}"
        if flat["fragile"][i]:
            band += " !"
        cells = [str(int(flat["rank"][i])), *[str(v) for v in combos[i]]]
        cells += [num(flat["max_rate"][i], ",.3f"), band, num(flat["goodput_tok_s_per_gpu"][i])]
        cells += [num(flat[m][i], ",.1f") for m in slo]
        cells.append(str(flat["saturation"][i]))
        if has_target:
            cells += [
                num(flat["replicas_estimate"][i], ",.0f"),
                num(flat["replicas_needed"][i], ",.0f"),
                str(flat["replicas_check"][i]),
                num(flat["gpus"][i], ",.0f"),
                num(flat["cost_per_hour"][i]),
            ]
        else:
            cells.append(num(flat["replica_cost_per_hour"][i]))
        cells += [num(flat["cost_per_mtok"][i], ",.3f")]
        cells.append(
            "yes"
            if flat["pareto"][i] and flat["pareto_cost"][i]
            else "tput"
            if flat["pareto"][i]
            else "cost"
            if flat["pareto_cost"][i]
            else ""
        )
        t.add_row(*cells)
    console.print(t)
    if len(order) > top:
        console.print(f"... and {len(order) - top} more meeting the SLO (see plan.parquet)")
    if any(flat["fragile"][i] for i in order[:top]):
        console.print("! fragile: the ±δ band is wider than ±15 % of max_rate")
    bad = np.flatnonzero(~ok)
    for i in bad[:10]:
        label = " ".join(str(v) for v in combos[i])
        console.print(f"{flat['status'][i]}: {label}: {flat['reason'][i]}")
    if len(bad) > 10:
        console.print(f"... and {len(bad) - 10} more without a max_rate")


def render_validation_many(names, reports, used, pooled, console: Console | None = None) -> None:
    """One row per trace (MAPE and error of the mean by metric, the hardware used) and the
    pooled figures."""
    from infersweep.fitting.validate import METRICS

    console = console or Console()
    t = Table(title="validation over traces", title_justify="left", header_style="bold")
    for head in (
        "trace",
        "n",
        "TTFT MAPE %",
        "TTFT mean err %",
        "E2E MAPE %",
        "E2E mean err %",
        "TPOT MAPE %",
        "TPOT mean err %",
        "hardware",
    ):
        t.add_column(head, justify="left" if head in ("trace", "hardware") else "right")

    def fmt(v) -> str:
        return "-" if v is None or not math.isfinite(v) else f"{v:.1f}"

    for name, r, u in zip(names, reports, used):
        cells = []
        for m in METRICS:
            s = r.overall.metrics[m]
            me = (
                (s.mean_predicted_ms - s.mean_measured_ms) / s.mean_measured_ms * 100
                if s.n and s.mean_measured_ms > 0
                else float("nan")
            )
            cells += [fmt(s.mape_pct), fmt(me)]
        hw = str(u.get("config", ""))
        t.add_row(name, str(r.overall.compared), *cells, hw.rsplit("/", 1)[-1])
    cells = []
    for m in METRICS:
        p = pooled[m]
        cells += [fmt(p["mape_pct"]), "med " + fmt(p["median_abs_mean_error_pct"])]
    t.add_row("pooled", str(pooled["ttft"]["n"]), *cells, "")
    console.print(t)
    console.print(
        "MAPE: per request; mean err: (mean predicted - mean measured) / mean measured; pooled: "
        "MAPE over all compared requests, median over traces of the absolute error of the mean."
    )


def render_joint_calibration(res, hw, traces, before, after, held, out, console=None) -> None:
    """Before/after (and held-out) errors per trace and phase of a joint calibration, the
    pooled figures and the fitted values."""
    from infersweep.fitting.joint import pooled

    console = console or Console()
    t = Table(
        title=f"joint calibration of {hw.name} ({', '.join(res.fields)}) on {len(traces)} "
        "trace(s): MAPE % and error of the mean %",
        title_justify="left",
        header_style="bold",
    )
    for c in ("trace", "phase", "", "TTFT", "TTFT mean", "E2E", "E2E mean", "TPOT"):
        t.add_column(c, justify="left" if c in ("trace", "phase", "") else "right")

    def row(name, phase, label, s):
        t.add_row(
            name,
            phase,
            label,
            f"{s.ttft_mape:.1f}",
            f"{s.ttft_mean_err:+.1f}",
            f"{s.e2e_mape:.1f}",
            f"{s.e2e_mean_err:+.1f}",
            f"{s.tpot_mape:.1f}",
        )

    for (name, phase, b), (_, _, a) in zip(before, after):
        row(name, phase, "before", b)
        row("", "", "after", a)
        if held is not None and phase == "all" and name in held:
            row("", "", "held out", held[name])
    console.print(t)
    for label, scores in (
        ("before", [s for _, p, s in before if p == "all"]),
        ("after", [s for _, p, s in after if p == "all"]),
        ("cross-validated", list(held.values()) if held else []),
    ):
        if scores:
            p = pooled(scores)
            console.print(
                f"{label}: pooled MAPE TTFT {p['ttft_mape_pooled']:.1f} %, E2E "
                f"{p['e2e_mape_pooled']:.1f} %; median error of the mean TTFT "
                f"{p['ttft_mean_err_median']:.1f} %, E2E {p['e2e_mean_err_median']:.1f} %"
            )
    console.print(
        "fitted: "
        + ", ".join(f"{k} = {v:.4g}" for k, v in res.best.params.items())
        + f"  ({res.n_candidates} candidates, {res.n_simulations} simulations in "
        f"{res.seconds:.1f} s)"
    )
    console.print(f"wrote {out}")
