"""infersweep.fitting.otlp: vLLM OTLP spans → measured trace.

Expected values come from the published example (measured.csv and manifest.json next to the
spans, read here with the csv/json modules) or are written out by hand from literal inputs.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest

from infersweep.errors import ConfigError
from infersweep.fitting.otlp import (
    MEASURED_CSV_COLUMNS,
    import_otlp,
    infer_phases,
    measured_csv_text,
    write_measured_csv,
)
from tests.conftest import need_reference

EXAMPLE = ("vllm", "jan21-llama7b-train-1")
T0 = 1_700_000_000_000_000_000  # ns


# ---------------------------------------------------------------------------------------------
# building span files
# ---------------------------------------------------------------------------------------------


def attr(key: str, value) -> dict:
    if isinstance(value, dict):
        return {"key": key, "value": value}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"doubleValue": value}}


def span(
    start_ns: int,
    *,
    ttft=0.05,
    e2e=1.0,
    queue=0.001,
    prompt=100,
    completion=10,
    name="llm_request",
    span_id=None,
    drop=(),
    extra=None,
) -> dict:
    attrs = {
        "gen_ai.latency.time_to_first_token": ttft,
        "gen_ai.latency.e2e": e2e,
        "gen_ai.latency.time_in_queue": queue,
        "gen_ai.usage.prompt_tokens": prompt,
        "gen_ai.usage.completion_tokens": completion,
    }
    attrs.update(extra or {})
    return {
        "traceId": "ab" * 16,
        "spanId": span_id or f"{start_ns % 10**16:016x}",
        "name": name,
        "kind": 2,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(start_ns + 10**9),
        "attributes": [attr(k, v) for k, v in attrs.items() if k not in drop],
    }


def line(*spans: dict) -> str:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": []},
                    "scopeSpans": [{"scope": {"name": "vllm.llm_engine"}, "spans": list(spans)}],
                }
            ]
        }
    )


def write(tmp_path: Path, *lines: str, name: str = "spans.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


# ---------------------------------------------------------------------------------------------
# the published example
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example():
    spans = need_reference(*EXAMPLE, "otlp_spans.jsonl")
    measured = need_reference(*EXAMPLE, "measured.csv")
    manifest = json.loads(need_reference(*EXAMPLE, "manifest.json").read_text())
    with measured.open(newline="") as fh:
        published = list(csv.DictReader(fh))
    rows, report = import_otlp(spans)
    return rows, report, published, measured, manifest


def test_example_row_count_and_report(example):
    rows, report, published, _, manifest = example
    assert len(rows) == len(published) == manifest["num_requests"] == 282
    assert report.imported == 282
    assert report.spans == 282
    assert report.lines == 116  # several spans per exported line
    assert report.skipped == []


def test_example_arrival_times_to_the_microsecond(example):
    rows, _, published, _, _ = example
    for r, p in zip(rows, published):
        assert abs(r.arrival_time_s - float(p["arrival_time_s"])) <= 0.5e-6 + 1e-12
        assert r.csv_fields()[0] == p["arrival_time_s"]
    assert rows[0].arrival_ns == 0
    assert all(a.arrival_ns <= b.arrival_ns for a, b in itertools.pairwise(rows))


def test_example_token_counts_exact(example):
    rows, _, published, _, _ = example
    assert [r.prompt_tokens for r in rows] == [int(p["prompt_tokens"]) for p in published]
    assert [r.output_tokens for r in rows] == [int(p["output_tokens"]) for p in published]
    assert all(p["prefix_group"] == "0" and p["prefix_tokens"] == "0" for p in published)
    assert all(r.csv_fields()[3:5] == ["0", "0"] for r in rows)


def test_example_latencies_to_the_printed_precision(example):
    rows, _, published, _, _ = example
    for r, p in zip(rows, published):
        assert abs(r.measured_ttft_ms - float(p["measured_ttft_ms"])) <= 0.0005 + 1e-9
        assert abs(r.measured_e2e_ms - float(p["measured_e2e_ms"])) <= 0.0005 + 1e-9
        assert r.csv_fields()[5:7] == [p["measured_ttft_ms"], p["measured_e2e_ms"]]


def test_example_phases(example):
    rows, report, published, _, manifest = example
    assert [r.phase for r in rows] == [p["phase"] for p in published]
    # the manifest's phase names and sizes, in order
    assert report.phases == [(ph["name"], ph["n"]) for ph in manifest["phases"]]
    assert report.phases[2][0] == "constant-rate sweep (10 rates)"
    assert len(report.rates) == 10
    # GuideLLM raises the rate from one constant-rate benchmark to the next
    assert all(a.rate_rps < b.rate_rps for a, b in zip(report.rates, report.rates[1:]))
    assert sum(r.n for r in report.rates) == 237


def test_example_csv_is_the_published_file(example, tmp_path):
    rows, _, _, measured, _ = example
    out = tmp_path / "sub" / "measured.csv"
    write_measured_csv(rows, out)
    assert out.read_bytes() == measured.read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["measured.csv"]  # no temporary left


# ---------------------------------------------------------------------------------------------
# hand-built span files
# ---------------------------------------------------------------------------------------------


def test_order_by_start_and_relative_to_first_valid_span(tmp_path):
    # exported by end time: the later-starting span comes first in the file
    p = write(
        tmp_path,
        line(span(T0 + 3_000_000_000, prompt=30, completion=3)),
        line(
            span(T0 + 1_000_000_000, prompt=10, completion=1, ttft=0.25, e2e=0.25),
            span(T0 + 2_500_001_500, prompt=20, completion=2),
        ),
    )
    rows, report = import_otlp(p)
    assert [r.prompt_tokens for r in rows] == [10, 20, 30]
    assert [r.csv_fields()[0] for r in rows] == ["0.000000", "1.500002", "2.000000"]
    assert [r.line for r in rows] == [2, 2, 1]
    assert rows[0].csv_fields()[5:7] == ["250.000", "250.000"]
    assert report.imported == 3 and report.spans == 3 and report.lines == 2


def test_int_value_as_string_or_number_and_double_as_string(tmp_path):
    s1 = span(
        T0,
        extra={
            "gen_ai.usage.prompt_tokens": {"intValue": 77},
            "gen_ai.latency.e2e": {"doubleValue": "2.5"},
        },
    )
    s2 = span(T0 + 5 * 10**9, extra={"gen_ai.usage.prompt_tokens": {"intValue": "88"}})
    rows, report = import_otlp(write(tmp_path, line(s1, s2)))
    assert [r.prompt_tokens for r in rows] == [77, 88]
    assert rows[0].csv_fields()[6] == "2500.000"
    assert report.skipped == []


def test_arrival_rounds_half_to_even_on_the_microsecond(tmp_path):
    starts = [T0, T0 + 1_500, T0 + 2_500, T0 + 3_499, T0 + 999_999_500, T0 + 1_000_000_501]
    p = write(tmp_path, *(line(span(s, span_id=f"{k:016x}")) for k, s in enumerate(starts)))
    rows, _ = import_otlp(p)
    assert [r.csv_fields()[0] for r in rows] == [
        "0.000000",
        "0.000002",
        "0.000002",
        "0.000003",
        "1.000000",
        "1.000001",
    ]


def test_malformed_and_partial_spans_are_reported_and_skipped(tmp_path):
    good = [span(T0 + (k + 1) * 10**9, prompt=100 + k, span_id=f"{k:016x}") for k in range(3)]
    lines = [
        line(good[0]),  # 1
        '{"resourceSpans": [ this is not json',  # 2
        line(span(T0 + 50, name="http_request", span_id="f1")),  # 3
        line(
            span(T0 + 60, drop=("gen_ai.latency.e2e",), span_id="f2"),  # 4: 2 spans
            good[1],
        ),
        line(span(T0 + 70, ttft=-0.1, span_id="f3")),  # 5
        line(
            span(
                T0 + 80,
                extra={
                    "gen_ai.usage.prompt_tokens":  # 6
                    {"stringValue": "many"}
                },
                span_id="f4",
            )
        ),
        line(
            span(
                T0 + 90,
                extra={"gen_ai.latency.e2e": {"doubleValue": "NaN"}},  # 7
                span_id="f5",
            )
        ),
        line(span(T0 + 95, ttft=2.0, e2e=1.0, span_id="f6")),  # 8
        line(good[1]),  # 9: repeat
        "",  # 10: blank
        json.dumps({"something": "else"}),  # 11
        line(span(T0 + 99, prompt=0, span_id="f7")),  # 12
        line(
            span(
                T0 + 98,
                extra={
                    "gen_ai.usage.completion_tokens":  # 13
                    {"doubleValue": 2.5}
                },
                span_id="f8",
            )
        ),
        line(good[2]),  # 14
        line(span(T0 + 97, ttft=0.05, queue=0.5, span_id="f9")),  # 15
    ]
    rows, report = import_otlp(write(tmp_path, *lines))
    # only the three good spans, never the broken ones
    assert [r.prompt_tokens for r in rows] == [100, 101, 102]
    assert [r.line for r in rows] == [1, 4, 14]
    # relative to the first *valid* span (the broken ones start earlier, at T0 + 50 ns ...)
    assert [r.csv_fields()[0] for r in rows] == ["0.000000", "1.000000", "2.000000"]
    got = [(s.line, s.span, s.kind) for s in report.skipped]
    assert got == [
        (2, None, "bad-json"),
        (3, 0, "not-llm-request"),
        (4, 0, "missing-attribute"),
        (5, 0, "negative-value"),
        (6, 0, "bad-value"),
        (7, 0, "bad-value"),
        (8, 0, "inconsistent"),
        (9, 0, "duplicate"),
        (11, None, "bad-structure"),
        (12, 0, "bad-value"),
        (13, 0, "bad-value"),
        (15, 0, "inconsistent"),
    ]
    reasons = {s.line: s.reason for s in report.skipped}
    assert "gen_ai.latency.e2e" in reasons[4]
    assert "gen_ai.latency.time_to_first_token" in reasons[5]
    assert "'http_request'" in reasons[3]
    assert "line 4" in reasons[9]
    assert "time in queue" in reasons[15]
    assert report.imported == 3
    assert report.n_skipped == 12
    assert report.blank_lines == 1
    assert report.skipped_by_kind() == {
        "bad-json": 1,
        "not-llm-request": 1,
        "missing-attribute": 1,
        "negative-value": 1,
        "bad-value": 4,
        "inconsistent": 2,
        "duplicate": 1,
        "bad-structure": 1,
    }
    d = report.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["skipped"] == 12 and d["imported"] == 3
    assert d["skipped_spans"][0] == {
        "line": 2,
        "span": None,
        "kind": "bad-json",
        "reason": report.skipped[0].reason,
        "span_id": "",
    }
    text = "\n".join(report.lines_text())
    assert "12 skipped" in text and "line 2" in text


def test_empty_file_is_an_error(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text("")
    with pytest.raises(ConfigError, match="empty") as ei:
        import_otlp(p)
    assert ei.value.file == str(p)
    p.write_text("\n  \n")
    with pytest.raises(ConfigError, match="empty"):
        import_otlp(p)


def test_missing_file_and_folder_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found") as ei:
        import_otlp(tmp_path / "nope.jsonl")
    assert ei.value.file == str(tmp_path / "nope.jsonl")
    with pytest.raises(ConfigError, match="not a file"):
        import_otlp(tmp_path)


def test_no_usable_span_is_an_error(tmp_path):
    p = write(tmp_path, "not json", line(span(T0, name="other")))
    with pytest.raises(ConfigError, match="no usable llm_request span") as ei:
        import_otlp(p)
    assert "line 1" in str(ei.value) and "2 skipped" in str(ei.value)


def test_undecodable_file_is_an_error(tmp_path):
    p = tmp_path / "bin.jsonl"
    p.write_bytes(b"\xff\xfe\x00garbage\x81")
    with pytest.raises(ConfigError, match="cannot read") as ei:
        import_otlp(p)
    assert ei.value.file == str(p)


def test_write_measured_csv_text_and_errors(tmp_path):
    p = write(tmp_path, line(span(T0, prompt=5, completion=2, ttft=0.0123456, e2e=0.5)))
    rows, _ = import_otlp(p)
    out = tmp_path / "m.csv"
    write_measured_csv(rows, out)
    assert (
        out.read_bytes()
        == (
            ",".join(MEASURED_CSV_COLUMNS)
            + "\r\n"
            + "0.000000,5,2,0,0,12.346,500.000,synchronous\r\n"
        ).encode()
    )
    assert measured_csv_text(rows).encode() == out.read_bytes()
    with pytest.raises(ConfigError, match="no requests"):
        write_measured_csv([], tmp_path / "none.csv")
    assert not (tmp_path / "none.csv").exists()
    with pytest.raises(ConfigError, match="folder"):
        write_measured_csv(rows, tmp_path)


# ---------------------------------------------------------------------------------------------
# phases on hand-built timelines
# ---------------------------------------------------------------------------------------------

S = 10**9


def timeline():
    """3 synchronous (1 s each, 0.5 s apart), a burst of 4 at 10 s (2 s each), rate 1/s from
    20 s (7 requests, the one at 23 s missing), then a late catch-up burst of 3 at 40.37 s
    and rate 1.25/s on the grid 40.37 s + k·0.8 s."""
    start, e2e = [], []
    for k in range(3):  # synchronous
        start.append(int(k * 1.5 * S))
        e2e.append(1.0)
    for k in range(4):  # throughput burst
        start.append(10 * S + k * 1_000_000)
        e2e.append(2.0)
    for k in (0, 1, 2, 4, 5, 6, 7):  # 1 req/s, one slot missing
        start.append(20 * S + k * S + (k % 3) * 5_000_000)  # a few ms of jitter
        e2e.append(0.4)
    for k in range(3):  # late catch-up burst at 40.37 s
        start.append(40_370_000_000 + k * 2_000_000)
        e2e.append(0.3)
    for k in range(1, 8):  # then 1.25 req/s on the grid from 40.37 s
        start.append(40_370_000_000 + k * 800_000_000)
        e2e.append(0.3)
    return start, e2e


def test_phase_rule_on_a_hand_built_sweep():
    start, e2e = timeline()
    labels, rates = infer_phases(start, e2e)
    assert labels == (
        ["synchronous"] * 3 + ["throughput"] * 4 + ["constant-rate sweep (2 rates)"] * 17
    )
    assert [r.n for r in rates] == [7, 10]
    assert rates[0].rate_rps == pytest.approx(1.0, rel=0.01)
    assert rates[1].rate_rps == pytest.approx(1.25, rel=0.01)
    assert rates[1].first_arrival_s == pytest.approx(40.37)


def test_phase_rule_one_rate_and_synchronous_only():
    start, e2e = timeline()
    labels, rates = infer_phases(start[:14], e2e[:14])
    assert labels[7:] == ["constant-rate sweep (1 rate)"] * 7 and len(rates) == 1
    labels, rates = infer_phases(start[:3], e2e[:3])
    assert labels == ["synchronous"] * 3 and rates == []
    # overlapping from the start: no synchronous phase; two requests after: no rate grid
    labels, rates = infer_phases([0, 1, 5 * S, 6 * S], [1.0, 1.0, 0.1, 0.1])
    assert labels == ["throughput", "throughput", "constant-rate sweep", "constant-rate sweep"]
    assert rates == []


def test_phases_through_import(tmp_path):
    start, e2e = timeline()
    spans = [
        span(T0 + s, e2e=d, ttft=0.01, span_id=f"{k:016x}")
        for k, (s, d) in enumerate(zip(start, e2e))
    ]
    rows, report = import_otlp(write(tmp_path, *(line(s) for s in reversed(spans))))
    assert report.phases == [
        ("synchronous", 3),
        ("throughput", 4),
        ("constant-rate sweep (2 rates)", 17),
    ]
    assert [r.phase for r in rows][6:8] == ["throughput", "constant-rate sweep (2 rates)"]
