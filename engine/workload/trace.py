"""Trace CSVs: recorded requests (and, for measured traces, their measured latencies)."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from infersweep import limits
from infersweep.errors import ConfigError
from infersweep.workload.generate import Workload

TRACE_COLUMNS = ("arrival_time_s", "prompt_tokens", "output_tokens")
TRACE_OPTIONAL = ("prefix_group", "prefix_tokens")
MEASURED_COLUMNS = ("measured_ttft_ms", "measured_e2e_ms")


def read_trace(path: str | os.PathLike, *, need_measured: bool = False) -> Workload:
    """Read a trace CSV: arrival_time_s,prompt_tokens,output_tokens[,prefix_group,
    prefix_tokens][,measured_ttft_ms,measured_e2e_ms][,phase]; other columns are ignored."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("trace file not found" if not p.exists() else "is not a file", file=p)
    # a parsed row costs about 40 times its text (Python lists of strings, then arrays)
    limits.check_memory(
        "reading the trace", p.stat().st_size * 40.0, field="trace file size", value=str(p)
    )
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = [row for row in reader if row and any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read the trace ({exc})", file=p) from None
    if header is None:
        raise ConfigError("the trace is empty (no header row)", file=p)
    cols = [c.strip().lower() for c in header]
    missing = [c for c in TRACE_COLUMNS if c not in cols]
    if missing:
        raise ConfigError(
            f"missing column(s) {', '.join(missing)}",
            file=p,
            field="header",
            value=",".join(header),
            hint="a trace needs " + ",".join(TRACE_COLUMNS),
        )
    if need_measured:
        miss = [c for c in MEASURED_COLUMNS if c not in cols]
        if miss:
            raise ConfigError(
                f"missing measurement column(s) {', '.join(miss)}",
                file=p,
                field="header",
                value=",".join(header),
                hint="a measured trace needs " + ",".join(MEASURED_COLUMNS),
            )
    if not rows:
        raise ConfigError("the trace has no requests (only a header)", file=p)
    idx = {c: i for i, c in enumerate(cols)}

    def num(row: list[str], line: int, col: str, integer: bool, default=None):
        i = idx.get(col)
        if i is None or i >= len(row) or row[i].strip() == "":
            if default is not None:
                return default
            raise ConfigError("missing value", file=p, field=f"line {line} {col}")
        text = row[i].strip()
        try:
            v = float(text)
        except ValueError:
            raise ConfigError(
                "not a number", file=p, field=f"line {line} {col}", value=text
            ) from None
        if not math.isfinite(v):
            raise ConfigError("must be finite", file=p, field=f"line {line} {col}", value=text)
        if integer:
            if v != int(v):
                raise ConfigError(
                    "must be an integer", file=p, field=f"line {line} {col}", value=text
                )
            return int(v)
        return v

    n = len(rows)
    arr = np.empty(n, np.int64)
    pt = np.empty(n, np.int64)
    ot = np.empty(n, np.int64)
    grp = np.full(n, -1, np.int64)
    pfx = np.zeros(n, np.int64)
    extra: dict[str, np.ndarray] = {}
    meas = [c for c in MEASURED_COLUMNS if c in idx]
    for c in meas:
        extra[c] = np.empty(n)
    phases = [] if "phase" in idx else None
    for k, row in enumerate(rows):
        line = k + 2
        t = num(row, line, "arrival_time_s", False)
        if t < 0:
            raise ConfigError(
                "must be >= 0",
                file=p,
                field=f"line {line} arrival_time_s",
                value=row[idx["arrival_time_s"]],
            )
        limits.check_range("arrival_time_s", t, file=p, field=f"line {line} arrival_time_s")
        arr[k] = int(round(t * 1e6))
        v = num(row, line, "prompt_tokens", True)
        if v < 1:
            raise ConfigError("must be >= 1", file=p, field=f"line {line} prompt_tokens", value=v)
        limits.check_range("tokens", v, file=p, field=f"line {line} prompt_tokens")
        pt[k] = v
        v = num(row, line, "output_tokens", True)
        if v < 1:
            raise ConfigError(
                "must be >= 1 (a request produces at least one token)",
                file=p,
                field=f"line {line} output_tokens",
                value=v,
            )
        limits.check_range("tokens", v, file=p, field=f"line {line} output_tokens")
        ot[k] = v
        if "prefix_group" in idx:
            g = row[idx["prefix_group"]].strip() if idx["prefix_group"] < len(row) else ""
            if g not in ("", "-1"):
                grp[k] = num(row, line, "prefix_group", True)
        if "prefix_tokens" in idx:
            pfx[k] = num(row, line, "prefix_tokens", True, default=0)
            if pfx[k] < 0 or pfx[k] > pt[k]:
                raise ConfigError(
                    "must be between 0 and prompt_tokens",
                    file=p,
                    field=f"line {line} prefix_tokens",
                    value=int(pfx[k]),
                )
        for c in meas:
            v = num(row, line, c, False)
            if v < 0:
                raise ConfigError("must be >= 0", file=p, field=f"line {line} {c}", value=v)
            extra[c][k] = v
        if phases is not None:
            i = idx["phase"]
            phases.append(row[i].strip() if i < len(row) else "")
    if phases is not None:
        extra["phase"] = np.array(phases, dtype=object)
    return Workload.from_arrays(arr, pt, ot, grp, pfx, name="traces", source=str(p), extra=extra)
