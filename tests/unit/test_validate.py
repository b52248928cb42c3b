"""infersweep.fitting.validate.compare and infersweep.fitting.otlp.read_measured.

Every expected number is worked out by hand in the comments from the literal inputs.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from infersweep.errors import ConfigError
from infersweep.fitting.otlp import read_measured
from infersweep.fitting.validate import compare
from infersweep.sweeps.render import render_validation
from infersweep.workload.generate import Workload
from tests.conftest import FakeSim

HEADER = "arrival_time_s,prompt_tokens,output_tokens,measured_ttft_ms,measured_e2e_ms,phase"


def fake(wl: Workload, ids, prompt, output, ttft, e2e, completed=None, dropped=None):
    n = len(ids)
    swl = Workload.from_arrays(np.arange(n) * 1000, prompt, output, sort=False)
    return FakeSim(
        workload=swl,
        request_id=np.asarray(ids),
        ttft_ms=np.asarray(ttft, float),
        e2e_ms=np.asarray(e2e, float),
        completed=np.ones(n, bool) if completed is None else np.asarray(completed),
        dropped=np.zeros(n, bool) if dropped is None else np.asarray(dropped),
    )


def trace(tmp_path: Path, *rows: str, header: str = HEADER, name: str = "m.csv") -> Path:
    p = tmp_path / name
    p.write_text("\n".join([header, *rows]) + "\n")
    return p


# three requests, in arrival order:
#   A: prompt 10, out 11, TTFT 100 -> 110, E2E 1100 -> 1210, phase a
#   B: prompt 20, out 21, TTFT 200 -> 180, E2E 2200 -> 2200, phase a
#   C: prompt 30, out  1, TTFT  50 ->  50, E2E   50 ->   60, phase b
# written to the CSV out of arrival order (rows: C, A, B), so trace rows are C=0, A=1, B=2
ROWS = ("2.0,30,1,50,50,b", "0.0,10,11,100,1100,a", "1.0,20,21,200,2200,a")


@pytest.fixture
def three(tmp_path):
    wl = read_measured(trace(tmp_path, *ROWS))
    # the simulation's arrays in trace-row order (C, A, B), not arrival order
    sim = fake(wl, [0, 1, 2], [30, 10, 20], [1, 11, 21], [50, 110, 180], [60, 1210, 2200])
    return wl, sim


def test_hand_computed_errors_overall(three):
    wl, sim = three
    r = compare(wl, sim, skip_first=0)
    o = r.overall
    assert (o.requests, o.skipped, o.dropped, o.not_completed, o.compared) == (3, 0, 0, 0, 3)
    t = o.metrics["ttft"]
    # errors +10, -20, 0 ms; relative +10 %, -10 %, 0 %
    assert t.n == 3 and t.n_pct == 3
    assert t.mape_pct == pytest.approx(20 / 3)
    assert t.mean_signed_error_ms == pytest.approx(-10 / 3)
    assert t.mean_signed_error_pct == pytest.approx(0.0, abs=1e-12)
    assert t.mean_measured_ms == pytest.approx(350 / 3)
    assert t.mean_predicted_ms == pytest.approx(340 / 3)
    e = o.metrics["e2e"]
    # errors +110, 0, +10 ms; relative +10 %, 0 %, +20 %
    assert e.mape_pct == pytest.approx(10.0)
    assert e.mean_signed_error_ms == pytest.approx(40.0)
    assert e.mean_signed_error_pct == pytest.approx(10.0)
    p = o.metrics["tpot"]
    # C has one output token: no TPOT.  A: (1100-100)/10 = 100 vs (1210-110)/10 = 110;
    # B: (2200-200)/20 = 100 vs (2200-180)/20 = 101
    assert p.n == 2
    assert p.mean_measured_ms == pytest.approx(100.0)
    assert p.mean_predicted_ms == pytest.approx(105.5)
    assert p.mape_pct == pytest.approx(5.5)
    assert p.mean_signed_error_ms == pytest.approx(5.5)
    assert p.mean_signed_error_pct == pytest.approx(5.5)


def test_per_request_arrays_are_matched_by_trace_row(three):
    wl, sim = three
    r = compare(wl, sim, skip_first=0)
    assert list(r.request_id) == [1, 2, 0]  # arrival order A, B, C
    assert list(r.arrival_s) == [0.0, 1.0, 2.0]
    assert list(r.predicted["ttft"]) == [110.0, 180.0, 50.0]
    assert list(r.measured["e2e"]) == [1100.0, 2200.0, 50.0]
    assert r.predicted["tpot"][:2] == pytest.approx([110.0, 101.0])
    assert math.isnan(r.predicted["tpot"][2]) and math.isnan(r.measured["tpot"][2])


def test_phase_breakdown(three):
    wl, sim = three
    r = compare(wl, sim, skip_first=0)
    assert [g.name for g in r.phases] == ["a", "b"]
    a, b = r.phases
    assert (a.requests, a.compared, b.requests, b.compared) == (2, 2, 1, 1)
    # a: TTFT +10, -20 -> mean -5 ms, MAPE 10 %, signed 0 %; E2E +110, 0 -> 55 ms, 5 %
    assert a.metrics["ttft"].mean_signed_error_ms == pytest.approx(-5.0)
    assert a.metrics["ttft"].mape_pct == pytest.approx(10.0)
    assert a.metrics["ttft"].mean_signed_error_pct == pytest.approx(0.0, abs=1e-12)
    assert a.metrics["e2e"].mean_signed_error_ms == pytest.approx(55.0)
    assert a.metrics["e2e"].mape_pct == pytest.approx(5.0)
    assert a.metrics["tpot"].mape_pct == pytest.approx(5.5)
    # b: TTFT exact; E2E +10 ms on 50 = +20 %; no TPOT (one output token)
    assert b.metrics["ttft"].mape_pct == pytest.approx(0.0, abs=1e-12)
    assert b.metrics["e2e"].mean_signed_error_pct == pytest.approx(20.0)
    assert b.metrics["tpot"].n == 0 and math.isnan(b.metrics["tpot"].mape_pct)
    d = r.to_dict()
    assert d["phases"][1]["tpot"] == {
        "n": 0,
        "n_pct": 0,
        "mape_pct": None,
        "mean_signed_error_ms": None,
        "mean_signed_error_pct": None,
        "mean_measured_ms": None,
        "mean_predicted_ms": None,
    }


def test_skip_first_leaves_out_the_earliest_arrivals(three):
    wl, sim = three
    r = compare(wl, sim, skip_first=1)  # skips A (arrival 0 s, trace row 1), not row 0
    o = r.overall
    assert (o.requests, o.skipped, o.compared) == (3, 1, 2)
    assert list(r.status) == ["skipped", "compared", "compared"]
    # B, C: TTFT -20, 0 -> -10 ms, MAPE 5 %, signed -5 %; E2E 0, +10 -> 5 ms, 10 %, +10 %
    assert o.metrics["ttft"].mean_signed_error_ms == pytest.approx(-10.0)
    assert o.metrics["ttft"].mape_pct == pytest.approx(5.0)
    assert o.metrics["ttft"].mean_signed_error_pct == pytest.approx(-5.0)
    assert o.metrics["e2e"].mean_signed_error_ms == pytest.approx(5.0)
    assert o.metrics["e2e"].mape_pct == pytest.approx(10.0)
    # TPOT: B only, 100 vs 101
    assert o.metrics["tpot"].n == 1
    assert o.metrics["tpot"].mape_pct == pytest.approx(1.0)
    assert r.phases[0].skipped == 1 and r.phases[0].compared == 1
    r2 = compare(wl, sim, skip_first=2)
    assert r2.overall.compared == 1
    assert r2.overall.metrics["ttft"].n == 1  # C only
    assert r2.overall.metrics["e2e"].mean_signed_error_ms == pytest.approx(10.0)


def test_dropped_and_unfinished_requests_are_counted_and_excluded(tmp_path):
    rows = [f"{k}.0,100,5,100,500,p{k % 2}" for k in range(5)]
    wl = read_measured(trace(tmp_path, *rows))
    nan = float("nan")
    sim = fake(
        wl,
        range(5),
        [100] * 5,
        [5] * 5,
        ttft=[120, nan, 90, 5000, 100],
        e2e=[520, nan, 480, nan, 500],
        completed=[True, False, True, False, True],
        dropped=[False, True, False, False, False],
    )
    r = compare(wl, sim, skip_first=0)
    o = r.overall
    assert (o.requests, o.skipped, o.dropped, o.not_completed, o.compared) == (5, 0, 1, 1, 3)
    assert list(r.status) == ["compared", "dropped", "compared", "not-completed", "compared"]
    # requests 0, 2, 4 only: TTFT +20, -10, 0 -> 10/3 ms; MAPE 10 %; signed 10/3 %
    t = o.metrics["ttft"]
    assert t.n == 3
    assert t.mean_signed_error_ms == pytest.approx(10 / 3)
    assert t.mape_pct == pytest.approx(10.0)
    assert t.mean_signed_error_pct == pytest.approx(10 / 3)
    # E2E +20, -20, 0 -> 0 ms; MAPE 40/3/5 = 8/3 %
    assert o.metrics["e2e"].mean_signed_error_ms == pytest.approx(0.0, abs=1e-12)
    assert o.metrics["e2e"].mape_pct == pytest.approx(8 / 3)
    assert np.isnan(r.predicted["ttft"][[1, 3]]).all()  # not mixed in
    p0, p1 = r.phases  # p0: requests 0, 2, 4; p1: 1 (dropped), 3 (not completed)
    assert (p0.name, p0.compared, p0.dropped, p0.not_completed) == ("p0", 3, 0, 0)
    assert (p1.name, p1.compared, p1.dropped, p1.not_completed) == ("p1", 0, 1, 1)
    assert p1.metrics["ttft"].n == 0
    assert r.to_dict()["overall"]["counts"] == {
        "requests": 5,
        "skipped": 0,
        "dropped": 1,
        "not_completed": 1,
        "compared": 3,
    }


def test_zero_measured_values_stay_out_of_percentages(tmp_path):
    wl = read_measured(trace(tmp_path, "0,10,1,0,0,x", "1,10,1,100,100,x"))
    sim = fake(wl, [0, 1], [10, 10], [1, 1], [5, 110], [5, 110])
    t = compare(wl, sim, skip_first=0).overall.metrics["ttft"]
    # signed ms over both (+5, +10); % over the second only (+10 %)
    assert (t.n, t.n_pct) == (2, 1)
    assert t.mean_signed_error_ms == pytest.approx(7.5)
    assert t.mape_pct == pytest.approx(10.0)
    assert t.mean_signed_error_pct == pytest.approx(10.0)


def test_no_phase_column(tmp_path):
    wl = read_measured(
        trace(tmp_path, "0,10,3,10,30", "1,10,3,20,40", header=HEADER.rsplit(",", 1)[0])
    )
    sim = fake(wl, [0, 1], [10, 10], [3, 3], [12, 20], [30, 44])
    r = compare(wl, sim, skip_first=0)
    assert r.phases == [] and r.phase is None
    # TTFT +2, 0 -> MAPE (20 % + 0) / 2
    assert r.overall.metrics["ttft"].mape_pct == pytest.approx(10.0)
    # TPOT: (30-10)/2 = 10 vs (30-12)/2 = 9; (40-20)/2 = 10 vs (44-20)/2 = 12
    assert r.overall.metrics["tpot"].mean_signed_error_ms == pytest.approx(0.5)
    assert r.overall.metrics["tpot"].mape_pct == pytest.approx(15.0)


def test_to_dict_is_json_and_render_shows_the_numbers(three):
    wl, sim = three
    r = compare(wl, sim, skip_first=0)
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["skip_first"] == 0
    assert d["overall"]["ttft"]["mape_pct"] == pytest.approx(20 / 3)
    assert d["overall"]["e2e"]["mean_signed_error_ms"] == pytest.approx(40.0)
    assert len(d["requests"]) == 3
    assert d["requests"][2] == {
        "request_id": 0,
        "arrival_s": 2.0,
        "phase": "b",
        "output_tokens": 1,
        "status": "compared",
        "measured_ttft_ms": 50.0,
        "predicted_ttft_ms": 50.0,
        "measured_e2e_ms": 50.0,
        "predicted_e2e_ms": 60.0,
        "measured_tpot_ms": None,
        "predicted_tpot_ms": None,
    }
    assert "requests" not in r.to_dict(requests=False)
    buf = io.StringIO()
    render_validation(r, Console(file=buf, width=100, color_system=None))
    text = buf.getvalue()
    assert "phase: a" in text and "phase: b" in text
    assert "6.7" in text  # overall TTFT MAPE 20/3 %
    assert "+40.0" in text  # overall E2E mean signed error, ms
    assert "compared 3" in text


def test_mismatched_simulation_is_an_error(three):
    wl, _ = three
    short = fake(wl, [0, 1], [30, 10], [1, 11], [1, 1], [1, 1])
    with pytest.raises(ConfigError, match="not a simulation of this trace"):
        compare(wl, short)
    other_ids = fake(wl, [0, 1, 5], [30, 10, 20], [1, 11, 21], [1] * 3, [1] * 3)
    with pytest.raises(ConfigError, match="request 2"):
        compare(wl, other_ids)
    other_tokens = fake(wl, [0, 1, 2], [30, 10, 99], [1, 11, 21], [1] * 3, [1] * 3)
    with pytest.raises(ConfigError, match="token counts") as ei:
        compare(wl, other_tokens)
    assert ei.value.field == "request 2"


@pytest.mark.parametrize("bad", [-1, 1.5, True, "1", 3, 10])
def test_bad_skip_first(three, bad):
    wl, sim = three
    with pytest.raises(ConfigError) as ei:
        compare(wl, sim, skip_first=bad)
    assert ei.value.field == "skip_first"
    assert ei.value.value == bad


def test_unmeasured_workload_is_an_error(three):
    _, sim = three
    wl = Workload.from_arrays([0, 1000, 2000], [30, 10, 20], [1, 11, 21], sort=False)
    with pytest.raises(ConfigError, match="not a measured trace"):
        compare(wl, sim)


def test_with_a_real_simulation(tmp_path):
    from infersweep.api import simulate

    # rows out of arrival order; distinct lengths so a wrong match shows
    rows = [
        "0.30,300,30,40,400,s",
        "0.00,100,10,20,200,s",
        "0.20,200,20,30,300,s",
        "0.10,150,15,25,250,s",
        "0.40,400,40,50,500,s",
    ]
    wl = read_measured(trace(tmp_path, *rows))
    res = simulate(model="llama-2-7b-hf", hardware="H100", workload=wl)
    r = compare(wl, res, skip_first=1)
    assert r.overall.compared == 4 and r.overall.skipped == 1
    assert list(r.request_id) == [1, 3, 2, 0, 4]
    assert list(r.output_tokens) == [10, 15, 20, 30, 40]
    by_id = dict(zip(res.request_id.tolist(), res.ttft_ms.tolist()))
    for i in range(1, 5):
        assert r.predicted["ttft"][i] == by_id[int(r.request_id[i])]
    meas = np.array([25.0, 30.0, 40.0, 50.0])  # measured TTFT of rows 3, 2, 0, 4
    pred = np.array([by_id[k] for k in (3, 2, 0, 4)])
    expect = float(np.mean(np.abs(pred - meas) / meas) * 100)
    assert r.overall.metrics["ttft"].mape_pct == pytest.approx(expect)


# ---------------------------------------------------------------------------------------------
# read_measured: bad input
# ---------------------------------------------------------------------------------------------


def test_read_measured_good(tmp_path):
    wl = read_measured(trace(tmp_path, *ROWS))
    assert len(wl) == 3
    assert list(wl.extra["measured_ttft_ms"]) == [100.0, 200.0, 50.0]
    assert list(wl.extra["phase"]) == ["a", "a", "b"]


def test_read_measured_empty_trace(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("")
    with pytest.raises(ConfigError, match="empty") as ei:
        read_measured(p)
    assert ei.value.file == str(p)
    with pytest.raises(ConfigError, match="no requests") as ei:
        read_measured(trace(tmp_path, name="header-only.csv"))
    assert ei.value.file == str(tmp_path / "header-only.csv")


def test_read_measured_missing_measurement_columns(tmp_path):
    p = trace(
        tmp_path, "0,10,3,10", header="arrival_time_s,prompt_tokens,output_tokens,measured_ttft_ms"
    )
    with pytest.raises(ConfigError, match="measured_e2e_ms") as ei:
        read_measured(p)
    assert ei.value.file == str(p)
    assert ei.value.field == "header"
    assert ei.value.value == "arrival_time_s,prompt_tokens,output_tokens,measured_ttft_ms"


def test_read_measured_negative_arrival(tmp_path):
    p = trace(tmp_path, "0,10,3,10,30,a", "-1.5,10,3,10,30,a")
    with pytest.raises(ConfigError, match=">= 0") as ei:
        read_measured(p)
    assert (ei.value.file, ei.value.field, ei.value.value) == (
        str(p),
        "line 3 arrival_time_s",
        "-1.5",
    )


def test_read_measured_negative_latency(tmp_path):
    p = trace(tmp_path, "0,10,3,-3,30,a")
    with pytest.raises(ConfigError, match=">= 0") as ei:
        read_measured(p)
    assert (ei.value.file, ei.value.field, ei.value.value) == (
        str(p),
        "line 2 measured_ttft_ms",
        -3.0,
    )
    p = trace(tmp_path, "0,10,3,3,-30,a", name="e2e.csv")
    with pytest.raises(ConfigError) as ei:
        read_measured(p)
    assert (ei.value.field, ei.value.value) == ("line 2 measured_e2e_ms", -30.0)


def test_read_measured_e2e_below_ttft(tmp_path):
    # rows out of arrival order: the bad one is the file's line 2 (trace row 0)
    p = trace(tmp_path, "5,10,3,40,30,a", "1,10,3,10,30,a")
    with pytest.raises(ConfigError, match="below measured_ttft_ms") as ei:
        read_measured(p)
    assert (ei.value.file, ei.value.field, ei.value.value) == (
        str(p),
        "line 2 measured_e2e_ms",
        30.0,
    )


def test_read_measured_missing_file_and_non_number(tmp_path):
    with pytest.raises(ConfigError, match="not found") as ei:
        read_measured(tmp_path / "nope.csv")
    assert ei.value.file == str(tmp_path / "nope.csv")
    p = trace(tmp_path, "0,10,3,fast,30,a")
    with pytest.raises(ConfigError, match="not a number") as ei:
        read_measured(p)
    assert (ei.value.field, ei.value.value) == ("line 2 measured_ttft_ms", "fast")
