"""Text output of ``run``: the reference simulator's metrics block (Go-style JSON numbers),
its optional KV-cache and anomaly blocks, and the ``--results-path`` file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from infersweep.sweeps.io import atomic_write_text


def go_number(x: float) -> str:
    """A float as Go's encoding/json writes it: shortest round-trip digits, no exponent
    between 1e-6 and 1e21, integral values without a decimal point."""
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    f = float(x)
    if not math.isfinite(f):
        return "null"
    if f == 0:
        return "0"
    a = abs(f)
    if a < 1e-6 or a >= 1e21:
        mant, _, exp = repr(f).partition("e")
        if not exp:
            mant, exp = f"{f:e}".split("e")
        sign = "-" if exp.startswith("-") else "+"
        return f"{mant}e{sign}{int(exp.lstrip('+-'))}"
    return np.format_float_positional(f, unique=True, trim="-")


def _render(value, indent: int, level: int) -> str:
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f"{pad}{json.dumps(str(k))}: {_render(v, indent, level + 1)}" for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        items = [f"{pad}{_render(v, indent, level + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + end + "]"
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    return go_number(value)


def go_json(value, indent: int = 2) -> str:
    """JSON like Go's json.MarshalIndent(value, "", "  ")."""
    return _render(value, indent, 0)


def metrics_text(summary: dict) -> str:
    """What ``run`` prints on stdout."""
    lines = ["=== Simulation Metrics ===", go_json(summary)]
    dropped = summary.get("dropped_unservable", 0)
    if dropped:
        lines += [
            "=== Anomaly Counters ===",
            "Priority Inversions: 0",
            "HOL Blocking Events: 0",
            "Rejected Requests: 0",
            f"Dropped Unservable: {dropped}",
        ]
    completed = summary.get("completed_requests", 0)
    pre_rate = summary.get("preemption_count", 0) / completed if completed else 0.0
    hit = summary.get("cache_hit_rate", 0.0)
    if pre_rate or hit:
        lines += [
            "=== KV Cache Metrics ===",
            f"Preemption Rate: {pre_rate:.4f}",
            f"Cache Hit Rate: {hit:.4f}",
            "KV Thrashing Rate: 0.0000",
        ]
    return "\n".join(lines) + "\n"


def write_results(
    path: str | Path, summary: dict, records: list[dict], table: dict | None = None
) -> None:
    """``--results-path``: JSON (the metrics object plus ``requests``) or, for a ``.parquet``
    path, the per-request table as Parquet.  Written atomically."""
    p = Path(path)
    if p.suffix.lower() == ".parquet":
        from infersweep.sweeps.results import requests_table, write_table

        if table is None:
            raise ValueError("a .parquet results path needs the per-request table")
        write_table(p, requests_table(table, summary))
        return
    obj = dict(summary)
    obj["requests"] = records
    atomic_write_text(p, go_json(obj) + "\n")
