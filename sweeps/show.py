"""``infersweep show``: counts by status and the best points of a sweep result."""

from __future__ import annotations

from pathlib import Path

from infersweep.errors import ConfigError
from infersweep.sweeps.results import INSTANCES_FILE

HIGHER_IS_BETTER = {
    "responses_per_sec",
    "tokens_per_sec",
    "completed_requests",
    "utilization",
    "cache_hit_rate",
}


def render_show(
    result: str | Path,
    *,
    by: str = "ttft_p99_ms",
    top: int = 10,
    descending: bool | None = None,
    instances: bool = False,
) -> None:
    import pyarrow.compute as pc
    from rich.console import Console
    from rich.table import Table

    from infersweep.sweeps.results import read_result_table

    tbl, meta, p = read_result_table(result)
    dims = meta.get("dims", [])
    metric_cols = [v for v in meta.get("variables", {}) if v not in ("status", "reason")]
    if (
        by not in tbl.column_names
        or by not in (metric_cols or tbl.column_names)
        or by in dims
        or by in ("status", "reason")
    ):
        metrics = [c for c in tbl.column_names if c.endswith(("_ms", "_s", "_sec", "_rate"))]
        raise ConfigError(
            "unknown metric", field="--by", value=by, hint="e.g. " + ", ".join(metrics[:12])
        )
    if top < 1:
        raise ConfigError("must be >= 1", field="--top", value=top)
    console = Console()
    if not console.is_terminal:  # files and pipes: wide enough for the whole table
        console = Console(width=max(console.width, 160))
    name = meta.get("attrs", {}).get("sweep_name", p.parent.name)
    axes_text = ", ".join(f"{d} ({len(meta['axes'][d])})" for d in dims) or "none"
    console.print(f"[bold]{name}[/]: {tbl.num_rows} points, axes: {axes_text}")
    counts = pc.value_counts(tbl.column("status")).to_pylist()
    console.print("status: " + ", ".join(f"{c['values']} {c['counts']}" for c in counts))
    ok = tbl.filter(pc.equal(tbl.column("status"), "ok"))
    if ok.num_rows == 0:
        reasons = pc.value_counts(tbl.column("reason")).to_pylist()
        for r in reasons[:5]:
            console.print(f"  invalid: {r['values']} ({r['counts']})")
        return
    desc = by in HIGHER_IS_BETTER if descending is None else descending
    order = pc.sort_indices(ok, sort_keys=[(by, "descending" if desc else "ascending")])
    best = ok.take(order[:top])
    inst_path = p.parent / INSTANCES_FILE
    clusters = inst_path.is_file()
    shown = ("ttft_p99_ms", "e2e_p99_ms", "itl_p99_ms", "tokens_per_sec")
    if clusters:
        shown += ("load_imbalance",)
    cols = dims + [c for c in (by, *shown) if c not in dims]
    cols = list(dict.fromkeys(cols))
    t = Table(title=f"best {min(top, ok.num_rows)} by {by} ({'desc' if desc else 'asc'})")
    for c in cols:
        t.add_column(c, justify="right" if c not in dims else "left")
    for row in best.select(cols).to_pylist():
        t.add_row(*[f"{v:,.3f}" if isinstance(v, float) else str(v) for v in row.values()])
    console.print(t)
    if clusters:
        if instances:
            _show_instances(console, inst_path, dims, best)
        else:
            console.print(
                f"per-instance metrics in {inst_path.name}; --instances lists those of these points"
            )
    elif instances:
        console.print("no per-instance metrics: the sweep has no point with replicas > 1")
    invalid = tbl.num_rows - ok.num_rows
    if invalid:  # not ranked: invalid, unservable (nothing completed), stalled, horizon
        bad = tbl.filter(pc.not_equal(tbl.column("status"), "ok"))
        counts: dict[tuple[str, str], int] = {}
        for st, why in zip(bad.column("status").to_pylist(), bad.column("reason").to_pylist()):
            if why:
                counts[(st, why)] = counts.get((st, why), 0) + 1
        for (st, why), k in sorted(counts.items(), key=lambda kv: -kv[1])[:5]:
            console.print(f"{st} ({k}): {why}")


def _show_instances(console, path: Path, dims: list[str], best) -> None:
    """The per-instance rows of the points of ``best`` (a table of result rows), in its order."""
    from rich.table import Table

    from infersweep.sweeps.results import read_instance_rows

    keys = [tuple(r.values()) for r in best.select(dims).to_pylist()] if dims else [()]
    rows: dict[tuple, list[dict]] = {k: [] for k in keys}
    for r in read_instance_rows(path):
        k = tuple(r[d] for d in dims)
        if k in rows:
            rows[k].append(r)
    cols = [
        ("instance", "instance", "{:d}"),
        ("requests", "requests", "{:,d}"),
        ("completed_requests", "completed", "{:,d}"),
        ("dropped_unservable", "dropped", "{:,d}"),
        ("preemption_count", "preempted", "{:,d}"),
        ("kv_peak_blocks", "KV peak", "{:,d}"),
        ("kv_peak_fraction", "KV peak %", "{:.1%}"),
        ("cache_hit_rate", "hit rate", "{:.3f}"),
        ("utilization", "busy", "{:.3f}"),
    ]
    t = Table(title="per instance (instances.parquet)")
    for d in dims:
        t.add_column(d)
    for _, head, _ in cols:
        t.add_column(head, justify="right")
    for k in keys:
        for j, r in enumerate(rows[k]):
            labels = [str(v) if j == 0 else "" for v in k]
            t.add_row(*labels, *[fmt.format(r[c]) for c, _, fmt in cols])
        t.add_section()
    console.print(t)
