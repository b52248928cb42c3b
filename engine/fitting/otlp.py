"""Import vLLM's OpenTelemetry spans as a measured trace.

vLLM (``--otlp-traces-endpoint``) exports one ``llm_request`` span per request; a file export is
one JSON object per line (``resourceSpans`` → ``scopeSpans`` → ``spans``, any number of spans
per line, lines in export order, i.e. roughly by *end* time).  Each span carries
``startTimeUnixNano`` (when the server had received and tokenised the request) and the
attributes (seconds / tokens; an ``intValue`` may be a JSON string, as in the OTLP JSON
mapping)::

    gen_ai.latency.time_to_first_token   gen_ai.latency.e2e   gen_ai.latency.time_in_queue
    gen_ai.usage.prompt_tokens           gen_ai.usage.completion_tokens

:func:`import_otlp` turns them into the rows of a measured trace (the ``--workload traces``
CSV plus measurements)::

    arrival_time_s,prompt_tokens,output_tokens,prefix_group,prefix_tokens,
    measured_ttft_ms,measured_e2e_ms,phase

- requests are ordered by span start (ties: file order); ``arrival_time_s`` is the start
  relative to the first valid span, in integer nanoseconds rounded to the microsecond (half to
  even), printed with 6 decimals;
- ``measured_ttft_ms`` / ``measured_e2e_ms`` are the latencies × 1000 printed with 3 decimals;
- ``prefix_group`` and ``prefix_tokens`` are 0 (spans do not say what was shared);
- ``phase`` is the GuideLLM sweep phase, inferred from the timing (:func:`infer_phases`).

A span that cannot be used (a line that is not JSON, a span that is not ``llm_request``, a
missing attribute, a non-numeric, non-finite or negative value, TTFT > E2E, a repeated span)
is skipped and listed in the :class:`ImportReport` with its line number and the reason; it is
never mixed in.  No valid span at all is a :class:`~infersweep.errors.ConfigError`.

Phase rule (a GuideLLM ``sweep`` runs its benchmarks one after another and lets each drain
before the next starts: synchronous, throughput, then constant rates).  A request occupies the
server from its span start for its E2E latency.

1. **synchronous**: the longest prefix of requests, by arrival, in which every request starts
   after the one before it has finished (one request at a time);
2. **throughput**: from the first request that the next one overlaps (the burst sent at once)
   to the end of that busy period (the first later request that starts when nothing is in
   flight);
3. **constant-rate**: everything after.  The number of rates is counted by fitting arrival
   grids ``a + n·P`` (integer ``n``: a missing request leaves a hole, it does not break the
   grid): scanning by arrival, a grid starts at three requests whose two gaps are (close to)
   integer multiples of the smaller one (neither gap a burst gap, i.e. under 10 % of the median
   gap after the throughput phase) and grows while the next request lies within 5 % of ``P``
   of a later grid point (``a`` and ``P`` refitted by least squares at each step); a grid of at
   least 4 requests is one rate.  A grid whose requests all lie on the previous grid (within
   5 % of its ``P``) continues that rate.  Requests off every grid (a late first request, a
   catch-up burst after a client stall) belong to the rate of the next grid (or the last one).
   Every constant-rate request is labelled ``constant-rate sweep (K rates)`` (``(1 rate)`` for
   one; ``constant-rate sweep`` when no grid is found); the rates found are in the report.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infersweep.errors import ConfigError

SPAN_NAME = "llm_request"
A_TTFT = "gen_ai.latency.time_to_first_token"
A_E2E = "gen_ai.latency.e2e"
A_QUEUE = "gen_ai.latency.time_in_queue"
A_PROMPT = "gen_ai.usage.prompt_tokens"
A_COMPLETION = "gen_ai.usage.completion_tokens"
A_REQUEST_ID = "gen_ai.request.id"
REQUIRED_ATTRIBUTES = (A_TTFT, A_E2E, A_QUEUE, A_PROMPT, A_COMPLETION)

MEASURED_CSV_COLUMNS = (
    "arrival_time_s",
    "prompt_tokens",
    "output_tokens",
    "prefix_group",
    "prefix_tokens",
    "measured_ttft_ms",
    "measured_e2e_ms",
    "phase",
)

PHASE_SYNCHRONOUS = "synchronous"
PHASE_THROUGHPUT = "throughput"
PHASE_CONSTANT = "constant-rate sweep"

#: constant-rate grid fitting (see the module docstring)
GRID_TOLERANCE = 0.05  # of the period
GRID_MIN_REQUESTS = 4
BURST_GAP_FRACTION = 0.1  # of the median gap after the throughput phase

# reasons a span is skipped (the keys of ImportReport.skipped_by_kind)
BAD_JSON = "bad-json"
BAD_STRUCTURE = "bad-structure"
NOT_LLM_REQUEST = "not-llm-request"
MISSING_ATTRIBUTE = "missing-attribute"
BAD_VALUE = "bad-value"
NEGATIVE_VALUE = "negative-value"
INCONSISTENT = "inconsistent"
DUPLICATE = "duplicate"


def constant_rate_phase_name(n_rates: int) -> str:
    """``constant-rate sweep (10 rates)``; ``(1 rate)``; no count when none was identified."""
    if n_rates <= 0:
        return PHASE_CONSTANT
    return f"{PHASE_CONSTANT} ({n_rates} rate{'' if n_rates == 1 else 's'})"


@dataclass(frozen=True, slots=True)
class MeasuredRow:
    """One request of the measured trace (times as exported: ns and seconds)."""

    arrival_ns: int  # span start relative to the first valid span
    prompt_tokens: int
    output_tokens: int
    ttft_s: float
    e2e_s: float
    queue_s: float
    phase: str
    line: int  # 1-based line of the span file
    span_id: str = ""
    request_id: str = ""

    @property
    def arrival_time_s(self) -> float:
        return self.arrival_ns / 1e9

    @property
    def measured_ttft_ms(self) -> float:
        return self.ttft_s * 1000.0

    @property
    def measured_e2e_ms(self) -> float:
        return self.e2e_s * 1000.0

    def csv_fields(self) -> list[str]:
        """The row as printed: 6 decimals for seconds, 3 for milliseconds."""
        return [
            _us_text(self.arrival_ns),
            str(self.prompt_tokens),
            str(self.output_tokens),
            "0",
            "0",
            f"{self.ttft_s * 1000.0:.3f}",
            f"{self.e2e_s * 1000.0:.3f}",
            self.phase,
        ]


@dataclass(frozen=True, slots=True)
class SkippedSpan:
    line: int  # 1-based line of the span file
    span: int | None  # 0-based index of the span in that line; None: the whole line
    kind: str  # one of the module's reason kinds
    reason: str
    span_id: str = ""

    def where(self) -> str:
        return f"line {self.line}" + ("" if self.span is None else f" span {self.span}")


@dataclass(frozen=True, slots=True)
class RatePhase:
    """One constant rate found in the constant-rate part of the sweep."""

    index: int
    n: int
    rate_rps: float
    first_arrival_s: float
    last_arrival_s: float


@dataclass(slots=True)
class ImportReport:
    source: str
    lines: int = 0  # non-blank lines read
    blank_lines: int = 0
    spans: int = 0  # spans seen (every name)
    imported: int = 0
    skipped: list[SkippedSpan] = field(default_factory=list)
    phases: list[tuple[str, int]] = field(default_factory=list)  # (name, requests), in order
    rates: list[RatePhase] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def skipped_by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.skipped:
            out[s.kind] = out.get(s.kind, 0) + 1
        return out

    def lines_text(self, limit: int = 20) -> list[str]:
        """The report as plain lines (for the CLI)."""
        out = [
            f"{self.source}: {self.imported} request(s) imported from {self.spans} span(s) "
            f"on {self.lines} line(s); {self.n_skipped} skipped"
        ]
        for kind, n in self.skipped_by_kind().items():
            out.append(f"  skipped {kind}: {n}")
        for s in self.skipped[:limit]:
            out.append(f"  {s.where()}: {s.reason}")
        if self.n_skipped > limit:
            out.append(f"  ... and {self.n_skipped - limit} more")
        for name, n in self.phases:
            out.append(f"  phase {name}: {n} request(s)")
        for r in self.rates:
            out.append(
                f"    rate {r.index + 1}: {r.rate_rps:.4g} req/s, {r.n} request(s) from "
                f"{r.first_arrival_s:.3f} s"
            )
        return out

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "lines": self.lines,
            "blank_lines": self.blank_lines,
            "spans": self.spans,
            "imported": self.imported,
            "skipped": self.n_skipped,
            "skipped_by_kind": self.skipped_by_kind(),
            "skipped_spans": [
                {
                    "line": s.line,
                    "span": s.span,
                    "kind": s.kind,
                    "reason": s.reason,
                    "span_id": s.span_id,
                }
                for s in self.skipped
            ],
            "phases": [{"name": n, "requests": k} for n, k in self.phases],
            "constant_rates": [
                {
                    "index": r.index,
                    "requests": r.n,
                    "rate_rps": r.rate_rps,
                    "first_arrival_s": r.first_arrival_s,
                    "last_arrival_s": r.last_arrival_s,
                }
                for r in self.rates
            ],
        }


class _Skip(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _us_text(ns: int) -> str:
    """Nanoseconds as seconds with 6 decimals, rounded half to even in integer arithmetic."""
    us, rem = divmod(int(ns), 1000)
    if rem > 500 or (rem == 500 and us % 2 == 1):
        us += 1
    sec, frac = divmod(us, 1_000_000)
    return f"{sec}.{frac:06d}"


def _number(key: str, value: object) -> float:
    """The numeric value of an OTLP AnyValue: doubleValue / intValue (number or string)."""
    if not isinstance(value, dict) or not value:
        raise _Skip(BAD_VALUE, f"{key}: not an OTLP value ({_short(value)})")
    for vk in ("doubleValue", "intValue"):
        if vk in value:
            raw = value[vk]
            if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
                raise _Skip(BAD_VALUE, f"{key}: {vk} is not a number ({_short(raw)})")
            try:
                v = int(raw) if vk == "intValue" and isinstance(raw, str) else float(raw)
            except (ValueError, OverflowError):
                raise _Skip(BAD_VALUE, f"{key}: {vk} is not a number ({_short(raw)})") from None
            v = float(v)
            if not math.isfinite(v):
                raise _Skip(BAD_VALUE, f"{key}: {vk} is not finite ({_short(raw)})")
            if v < 0:
                raise _Skip(NEGATIVE_VALUE, f"{key}: negative ({_short(raw)})")
            return v
    kind = next(iter(value))
    raise _Skip(BAD_VALUE, f"{key}: {kind} is not numeric ({_short(value[kind])})")


def _count(key: str, value: object, minimum: int) -> int:
    v = _number(key, value)
    if v != int(v):
        raise _Skip(BAD_VALUE, f"{key}: not a whole number of tokens ({v!r})")
    if v < minimum:
        raise _Skip(BAD_VALUE, f"{key}: {int(v)} is below {minimum}")
    return int(v)


def _short(v: object, n: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= n else text[: n - 3] + "..."


def _parse_span(span: object) -> dict:
    if not isinstance(span, dict):
        raise _Skip(BAD_STRUCTURE, f"a span is not a JSON object ({_short(span)})")
    name = span.get("name")
    if name != SPAN_NAME:
        raise _Skip(NOT_LLM_REQUEST, f"span name {name!r} is not {SPAN_NAME!r}")
    start = span.get("startTimeUnixNano")
    if isinstance(start, bool) or not isinstance(start, (int, str)):
        raise _Skip(
            BAD_VALUE if start is not None else MISSING_ATTRIBUTE,
            f"startTimeUnixNano missing or not an integer ({_short(start)})",
        )
    try:
        start_ns = int(start)
    except ValueError:
        raise _Skip(BAD_VALUE, f"startTimeUnixNano is not an integer ({_short(start)})") from None
    if start_ns <= 0:
        raise _Skip(
            NEGATIVE_VALUE if start_ns < 0 else BAD_VALUE,
            f"startTimeUnixNano must be > 0 ({start_ns})",
        )
    attrs_list = span.get("attributes")
    if not isinstance(attrs_list, list):
        raise _Skip(
            MISSING_ATTRIBUTE if attrs_list is None else BAD_STRUCTURE,
            "the span has no attributes list",
        )
    attrs: dict[str, object] = {}
    for a in attrs_list:
        if isinstance(a, dict) and isinstance(a.get("key"), str):
            attrs.setdefault(a["key"], a.get("value"))
    missing = [k for k in REQUIRED_ATTRIBUTES if k not in attrs]
    if missing:
        raise _Skip(MISSING_ATTRIBUTE, "missing attribute(s) " + ", ".join(missing))
    ttft = _number(A_TTFT, attrs[A_TTFT])
    e2e = _number(A_E2E, attrs[A_E2E])
    queue = _number(A_QUEUE, attrs[A_QUEUE])
    prompt = _count(A_PROMPT, attrs[A_PROMPT], 1)
    completion = _count(A_COMPLETION, attrs[A_COMPLETION], 1)
    if ttft > e2e:
        raise _Skip(INCONSISTENT, f"time to first token ({ttft!r} s) is above e2e ({e2e!r} s)")
    if queue > ttft:
        raise _Skip(
            INCONSISTENT, f"time in queue ({queue!r} s) is above time to first token ({ttft!r} s)"
        )
    rid = attrs.get(A_REQUEST_ID)
    rid = rid.get("stringValue", "") if isinstance(rid, dict) else ""
    return {
        "start_ns": start_ns,
        "ttft": ttft,
        "e2e": e2e,
        "queue": queue,
        "prompt": prompt,
        "completion": completion,
        "span_id": str(span.get("spanId", "") or ""),
        "trace_id": str(span.get("traceId", "") or ""),
        "request_id": rid if isinstance(rid, str) else "",
    }


def _spans_of(obj: object):
    """Yield each span object of one exported line; raises _Skip on a broken structure."""
    if not isinstance(obj, dict):
        raise _Skip(BAD_STRUCTURE, f"the line is not a JSON object ({_short(obj)})")
    rs_list = obj.get("resourceSpans")
    if not isinstance(rs_list, list):
        raise _Skip(BAD_STRUCTURE, "no resourceSpans list")
    for rs in rs_list:
        ss_list = rs.get("scopeSpans") if isinstance(rs, dict) else None
        if not isinstance(ss_list, list):
            raise _Skip(BAD_STRUCTURE, "a resourceSpans entry has no scopeSpans list")
        for ss in ss_list:
            spans = ss.get("spans") if isinstance(ss, dict) else None
            if not isinstance(spans, list):
                raise _Skip(BAD_STRUCTURE, "a scopeSpans entry has no spans list")
            yield from spans


def import_otlp(spans_path: str | os.PathLike) -> tuple[list[MeasuredRow], ImportReport]:
    """Read a vLLM OTLP span export (JSON lines) into measured-trace rows, by arrival."""
    p = Path(spans_path)
    if not p.is_file():
        raise ConfigError("span file not found" if not p.exists() else "is not a file", file=p)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the span file ({exc})", file=p) from None
    report = ImportReport(source=str(p))
    parsed: list[tuple[int, int, int, dict]] = []  # (start_ns, line, span index, fields)
    seen: dict[tuple[str, str], int] = {}
    lines = text.split("\n")  # not splitlines(): a U+2028 inside a string is no line end
    if lines and lines[-1] == "":
        lines.pop()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            report.blank_lines += 1
            continue
        report.lines += 1
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            report.skipped.append(
                SkippedSpan(
                    lineno, None, BAD_JSON, f"not valid JSON ({exc.msg}, column {exc.colno})"
                )
            )
            continue
        except RecursionError:
            report.skipped.append(SkippedSpan(lineno, None, BAD_JSON, "JSON nested too deeply"))
            continue
        k = -1
        try:
            for k, span in enumerate(_spans_of(obj)):
                report.spans += 1
                sid = str(span.get("spanId", "") or "") if isinstance(span, dict) else ""
                try:
                    f = _parse_span(span)
                except _Skip as s:
                    report.skipped.append(SkippedSpan(lineno, k, s.kind, s.reason, sid))
                    continue
                key = (f["trace_id"], f["span_id"])
                if f["span_id"] and key in seen:
                    report.skipped.append(
                        SkippedSpan(
                            lineno,
                            k,
                            DUPLICATE,
                            f"the same span (traceId/spanId) as line {seen[key]}",
                            sid,
                        )
                    )
                    continue
                if f["span_id"]:
                    seen[key] = lineno
                parsed.append((f["start_ns"], lineno, k, f))
        except _Skip as s:
            # the spans of this line before the broken entry were read; say so
            report.skipped.append(
                SkippedSpan(
                    lineno,
                    None,
                    s.kind,
                    s.reason + (f" (after {k + 1} span(s) of this line)" if k >= 0 else ""),
                )
            )
    if report.lines == 0:
        raise ConfigError(
            "the span file is empty",
            file=p,
            hint="expected one OTLP JSON object per line (resourceSpans)",
        )
    if not parsed:
        first = "; ".join(f"{s.where()}: {s.reason}" for s in report.skipped[:3])
        raise ConfigError(
            f"no usable {SPAN_NAME} span ({report.n_skipped} skipped)", file=p, hint=first or None
        )
    parsed.sort(key=lambda r: (r[0], r[1], r[2]))
    t0 = parsed[0][0]
    start = np.array([r[0] - t0 for r in parsed], np.int64)
    e2e = np.array([r[3]["e2e"] for r in parsed])
    labels, rates = infer_phases(start, e2e)
    rows = [
        MeasuredRow(
            arrival_ns=int(start[i]),
            prompt_tokens=f["prompt"],
            output_tokens=f["completion"],
            ttft_s=f["ttft"],
            e2e_s=f["e2e"],
            queue_s=f["queue"],
            phase=labels[i],
            line=line,
            span_id=f["span_id"],
            request_id=f["request_id"],
        )
        for i, (_, line, _, f) in enumerate(parsed)
    ]
    report.imported = len(rows)
    order: list[str] = []
    counts: dict[str, int] = {}
    for lab in labels:
        if lab not in counts:
            order.append(lab)
            counts[lab] = 0
        counts[lab] += 1
    report.phases = [(name, counts[name]) for name in order]
    report.rates = rates
    return rows, report


# --------------------------------------------------------------------------------------------
# phases
# --------------------------------------------------------------------------------------------


def infer_phases(start_ns, e2e_s) -> tuple[list[str], list[RatePhase]]:
    """The GuideLLM sweep phase of each request (sorted by start), and the constant rates.

    ``start_ns``: span starts (ns, any origin, non-decreasing); ``e2e_s``: E2E latencies (s).
    See the module docstring for the rule.
    """
    t = np.asarray(start_ns, np.int64)
    n = len(t)
    if n == 0:
        return [], []
    ts = (t - t[0]) / 1e9
    end = ts + np.asarray(e2e_s, float)
    # 1. synchronous: each request starts after the previous one ended, up to the first
    #    request that its successor overlaps
    s = n
    for i in range(n - 1):
        if ts[i + 1] < end[i]:
            s = i
            break
    # 2. throughput: the busy period from request s
    u = n
    if s < n:
        busy_until = end[s]
        u = s + 1
        while u < n and ts[u] < busy_until:
            busy_until = max(busy_until, end[u])
            u += 1
    labels = [PHASE_SYNCHRONOUS] * s + [PHASE_THROUGHPUT] * (u - s)
    # 3. constant rates
    rest = ts[u:]
    if len(rest) == 0:
        return labels, []
    which, grids = _rate_grids(rest)
    name = constant_rate_phase_name(len(grids))
    labels += [name] * len(rest)
    rates = []
    for g, (_, period) in enumerate(grids):
        members = np.flatnonzero(which == g)
        rates.append(
            RatePhase(
                index=g,
                n=int(len(members)),
                rate_rps=1.0 / period,
                first_arrival_s=float(rest[members[0]]),
                last_arrival_s=float(rest[members[-1]]),
            )
        )
    return labels, rates


def _fit(t: np.ndarray, k: np.ndarray) -> tuple[float, float]:
    """Least-squares ``t ≈ a + k·P``."""
    a_mat = np.column_stack([np.ones(len(k)), k.astype(float)])
    (a, period), *_ = np.linalg.lstsq(a_mat, t, rcond=None)
    return float(a), float(period)


def _rate_grids(t: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Constant-rate grids in arrival times ``t`` (s, sorted): (grid index per request,
    [(a, P)] per grid)."""
    n = len(t)
    tol = GRID_TOLERANCE
    gaps = np.diff(t)
    burst = BURST_GAP_FRACTION * float(np.median(gaps)) if len(gaps) else 0.0
    cores: list[tuple[list[int], list[int], float, float]] = []  # (members, k, a, P)
    i = 0
    while i + GRID_MIN_REQUESTS - 1 < n:
        g1, g2 = gaps[i], gaps[i + 1]
        small, big = min(g1, g2), max(g1, g2)
        if small <= burst or small <= 0:
            i += 1
            continue
        m = big / small
        if abs(m - round(m)) > tol:
            i += 1
            continue
        k1 = max(1, round(g1 / small))
        members = [i, i + 1, i + 2]
        ks = [0, k1, k1 + max(1, round(g2 / small))]
        a, period = _fit(t[members], np.array(ks))
        j = i + 3
        while j < n and period > 0:
            kj = round((t[j] - a) / period)
            if kj <= ks[-1] or abs(t[j] - a - kj * period) > tol * period:
                break
            members.append(j)
            ks.append(kj)
            a, period = _fit(t[members], np.array(ks))
            j += 1
        if len(members) >= GRID_MIN_REQUESTS and period > 0:
            if cores:
                pm, pk, pa, pp = cores[-1]
                r = (t[members] - pa) / pp
                if (
                    np.all(np.abs(r - np.round(r)) <= tol)
                    and np.all(np.diff(np.round(r)) > 0)
                    and round(r[0]) > pk[-1]
                ):
                    allm = pm + members
                    allk = pk + [int(x) for x in np.round(r)]
                    na, np_ = _fit(t[allm], np.array(allk))
                    cores[-1] = (allm, allk, na, np_)
                    i = j
                    continue
            cores.append((members, ks, a, period))
            i = j
        else:
            i += 1
    which = np.full(n, -1, np.int64)
    for g, (members, _, _, _) in enumerate(cores):
        which[members] = g
    if cores:
        # off-grid requests: the next grid's rate (late starts, catch-up bursts), else the last
        nxt = len(cores) - 1
        for q in range(n - 1, -1, -1):
            if which[q] >= 0:
                nxt = int(which[q])
            else:
                which[q] = nxt
    return which, [(a, p) for _, _, a, p in cores]


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def measured_csv_text(rows: list[MeasuredRow]) -> str:
    """The CSV text, as Python's ``csv`` module writes it (CRLF line ends, minimal quoting),
    like the published example."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(MEASURED_CSV_COLUMNS)
    for r in rows:
        w.writerow(r.csv_fields())
    return buf.getvalue()


def write_measured_csv(rows: list[MeasuredRow], path: str | os.PathLike) -> None:
    """Write the rows as a measured-trace CSV (atomically)."""
    from infersweep.fileio import atomic_write_text

    if not rows:
        raise ConfigError("no requests to write", file=path)
    atomic_write_text(path, measured_csv_text(rows))


def read_measured(path: str | os.PathLike):
    """Read a measured trace (``read_trace(path, need_measured=True)``) and check that each
    request's E2E is not below its TTFT."""
    from infersweep.workload.trace import read_trace

    wl = read_trace(path, need_measured=True)
    ttft = wl.extra["measured_ttft_ms"]
    e2e = wl.extra["measured_e2e_ms"]
    bad = np.flatnonzero(e2e < ttft)
    if len(bad):
        i = int(bad[0])
        rows = wl.extra.get("trace_row")
        row = int(rows[i]) if rows is not None else i
        raise ConfigError(
            f"measured_e2e_ms is below measured_ttft_ms ({float(ttft[i])!r})",
            file=path,
            field=f"line {row + 2} measured_e2e_ms",
            value=float(e2e[i]),
        )
    return wl


def read_manifest(path) -> dict:
    """The settings of a vLLM run's manifest.json that a simulation needs: budget, max_run,
    blocks, block (block size), prefix_caching, model, tp, gpu (keys present only when set)."""
    from infersweep.config.models import read_json

    m = read_json(path)
    if not isinstance(m, dict):
        raise ConfigError("must be a JSON object", file=path)
    out = {}
    for src, dst in (
        ("max_num_batched_tokens", "budget"),
        ("max_num_seqs", "max_run"),
        ("num_gpu_blocks", "blocks"),
        ("block_size", "block"),
    ):
        v = m.get(src)
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError("must be a positive integer", file=path, field=src, value=v)
            out[dst] = v
    if "prefix_caching" in m:
        out["prefix_caching"] = bool(m["prefix_caching"])
    for key in ("model_config", "model"):
        if isinstance(m.get(key), str):
            out.setdefault("model", m[key])
    if isinstance(m.get("tp"), int):
        out["tp"] = m["tp"]
    if isinstance(m.get("gpu"), str):
        out["gpu"] = m["gpu"]
    return out
