"""Calibration: recovers known overhead values from a trace simulated by infersweep itself,
never makes the fitted error worse, rejects bad input clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from infersweep.api import simulate
from infersweep.config.models import load_hardware, load_model
from infersweep.costmodel.stepcost import build_cost_model
from infersweep.errors import ConfigError
from infersweep.fitting.calibrate import (
    calibrate,
    canonical_fields,
    fit_mask,
    gemm_terms,
    with_hardware,
)
from infersweep.scheduler.driver import SchedulerConfig
from infersweep.workload.generate import Workload

MODEL = "llama-2-7b-hf"
SCHED = SchedulerConfig(max_num_scheduled_tokens=4096, total_kv_blocks=7438)


def synthetic_measured(hw, n=40, seed=3, rate_gap_s=4.0, burst=False) -> Workload:
    """A trace whose 'measurements' are infersweep's own predictions with hardware ``hw``."""
    rng = np.random.default_rng(seed)
    if burst:
        arr = np.concatenate(
            [
                np.arange(n // 2) * rate_gap_s,
                (n // 2) * rate_gap_s + rng.uniform(0, 0.05, n - n // 2),
            ]
        )
    else:
        arr = np.arange(n) * rate_gap_s
    prompt = rng.integers(200, 2500, n)
    out = rng.integers(50, 300, n)
    phase = np.array(["synchronous"] * (n // 2) + ["burst"] * (n - n // 2), dtype=object)
    wl = Workload.from_arrays(
        (arr * 1e6).astype(np.int64) + 1000, prompt, out, extra={"phase": phase}
    )
    res = simulate(model=MODEL, hardware=hw, tp=1, workload=wl, scheduler=SCHED)
    assert res.completed.all()
    extra = dict(wl.extra)
    extra["measured_ttft_ms"] = res.ttft_ms
    extra["measured_e2e_ms"] = res.e2e_ms
    return Workload.from_arrays(wl.arrival_us, wl.prompt_tok, wl.output_tok, extra=extra)


def test_recovers_known_overheads():
    base = load_hardware("H100", "minimal")
    truth = base.with_fields(TOverheadMicros=900.0, bwEfficiencyFactor=0.8)
    wl = synthetic_measured(truth)
    res = calibrate(
        wl,
        model=load_model(MODEL),
        hardware=base,
        tp=1,
        scheduler=SCHED,
        fields=["TOverheadMicros", "bwEfficiencyFactor"],
        n_candidates=256,
        refine_iter=150,
    )
    p = res.best.params
    assert p["TOverheadMicros"] == pytest.approx(900.0, rel=0.05)
    assert p["bwEfficiencyFactor"] == pytest.approx(0.8, rel=0.02)
    assert res.best.loss < 0.5  # percent
    assert res.start.loss > 10 * res.best.loss
    assert res.hardware.t_overhead_us == p["TOverheadMicros"]


def test_recovers_prefill_overhead_and_per_layer():
    base = load_hardware("H100", "minimal").with_fields(bwEfficiencyFactor=0.85)
    truth = base.with_fields(PrefillOverheadMicros=4000.0, perLayerOverhead=25.0)
    wl = synthetic_measured(truth, n=30)
    res = calibrate(
        wl,
        model=load_model(MODEL),
        hardware=base,
        tp=1,
        scheduler=SCHED,
        fields=["PrefillOverheadMicros", "perLayerOverhead"],
        n_candidates=256,
        refine_iter=150,
    )
    assert res.best.params["perLayerOverhead"] == pytest.approx(25.0, rel=0.05)
    assert res.best.params["PrefillOverheadMicros"] == pytest.approx(4000.0, rel=0.1)


def test_never_worse_than_the_start():
    """Starting at the truth already, the result cannot be worse (it may move within the
    rounding plateau but its loss is at most the starting loss)."""
    truth = load_hardware("H100", "minimal").with_fields(
        TOverheadMicros=700.0, bwEfficiencyFactor=0.9
    )
    wl = synthetic_measured(truth, n=20)
    res = calibrate(
        wl,
        model=load_model(MODEL),
        hardware=truth,
        tp=1,
        scheduler=SCHED,
        fields=["TOverheadMicros", "bwEfficiencyFactor", "AllReduceLatency"],
        n_candidates=64,
        refine_iter=30,
    )
    assert res.start.loss == pytest.approx(0.0, abs=1e-9)
    assert res.best.loss <= res.start.loss


def test_fit_phase_selects_requests():
    truth = load_hardware("H100", "minimal").with_fields(TOverheadMicros=500.0)
    wl = synthetic_measured(truth, n=20, burst=True)
    mask = fit_mask(wl, "synchronous", 1)
    assert mask.sum() == 9 and not mask[0]
    assert not mask[10:].any()
    with pytest.raises(ConfigError, match="no requests"):
        calibrate(
            wl,
            model=load_model(MODEL),
            hardware=truth,
            tp=1,
            scheduler=SCHED,
            fit_phase="nosuch",
            n_candidates=8,
            refine_iter=2,
        )


def test_with_hardware_equals_a_fresh_build():
    m = load_model(MODEL)
    hw = load_hardware("H100", "minimal")
    base = build_cost_model(m, hw, 1, max_tokens=4096)
    terms = gemm_terms(base)
    for fields in (
        {"bwEfficiencyFactor": 0.61, "TOverheadMicros": 12.5},
        {"perLayerOverhead": 3.0, "MixedPrefillOverheadMicros": 40.0},
        {"bwEfficiencyFactor": 0.99},
    ):
        h = hw.with_fields(**fields)
        a = with_hardware(base, h, terms)
        b = build_cost_model(m, h, 1, max_tokens=4096)
        assert np.array_equal(a.ctf, b.ctf) and np.array_equal(a.cti, b.cti)


@pytest.mark.parametrize(
    "names, ok",
    [
        (["toverheadmicros", "BWEFFICIENCYFACTOR"], ("TOverheadMicros", "bwEfficiencyFactor")),
        (["perLayerOverhead"], ("perLayerOverhead",)),
    ],
)
def test_canonical_fields(names, ok):
    assert canonical_fields(names) == ok


@pytest.mark.parametrize("names", [["TFlopsPeak"], ["nosuch"], []])
def test_unknown_fit_field(names):
    with pytest.raises(ConfigError, match="fit"):
        canonical_fields(names)


def test_missing_measurements_rejected():
    wl = Workload.from_arrays([1, 2], [10, 10], [5, 5])
    with pytest.raises(ConfigError, match="measured"):
        calibrate(
            wl,
            model=load_model(MODEL),
            hardware=load_hardware("H100", "minimal"),
            tp=1,
            scheduler=SCHED,
            n_candidates=8,
            refine_iter=2,
        )


# -- the CLI ---------------------------------------------------------------------------------


def _write_measured(path, wl: Workload):
    lines = ["arrival_time_s,prompt_tokens,output_tokens,measured_ttft_ms,measured_e2e_ms,phase"]
    for i in range(len(wl)):
        lines.append(
            f"{wl.arrival_us[i] / 1e6:.6f},{wl.prompt_tok[i]},{wl.output_tok[i]},"
            f"{wl.extra['measured_ttft_ms'][i]:.3f},{wl.extra['measured_e2e_ms'][i]:.3f},"
            f"{wl.extra['phase'][i]}"
        )
    path.write_text("\n".join(lines) + "\n")


def test_cli_calibrate_writes_a_usable_config(tmp_path, cli):
    truth = load_hardware("H100", "minimal").with_fields(
        TOverheadMicros=1200.0, bwEfficiencyFactor=0.85
    )
    wl = synthetic_measured(truth, n=24)
    meas = tmp_path / "measured.csv"
    _write_measured(meas, wl)
    out = tmp_path / "cal.json"
    res = cli(
        "calibrate",
        meas,
        "--out",
        out,
        "--model",
        MODEL,
        "--hardware-config",
        "minimal",
        "--max-num-scheduled-tokens",
        "4096",
        "--total-kv-blocks",
        "7438",
        "--candidates",
        "128",
        "--fit-phase",
        "synchronous",
    )
    assert res.code == 0, res.err
    entry = json.loads(out.read_text())["H100"]
    assert entry["TOverheadMicros"] == pytest.approx(1200.0, rel=0.05)
    assert entry["TFlopsPeak"] == 989.5 and entry["BwPeakTBs"] == 3.35
    assert "fitted" in res.out and "rest" in res.out
    # the written file is accepted as is by run and validate
    res = cli(
        "validate",
        meas,
        "--model",
        MODEL,
        "--hardware-config",
        out,
        "--max-num-scheduled-tokens",
        "4096",
        "--total-kv-blocks",
        "7438",
        "--json",
        tmp_path / "v.json",
    )
    assert res.code == 0, res.err
    rep = json.loads((tmp_path / "v.json").read_text())
    assert rep["overall"]["ttft"]["mape_pct"] < 2.0
    assert rep["overall"]["e2e"]["mape_pct"] < 2.0
    res = cli(
        "run",
        "--model",
        MODEL,
        "--hardware-config",
        out,
        "--workload",
        "chatbot",
        "--num-requests",
        "10",
    )
    assert res.code == 0, res.err


@pytest.mark.parametrize(
    "content, needle",
    [
        ("", "empty"),
        ("arrival_time_s,prompt_tokens,output_tokens\n0.1,10,5\n", "measured"),
        (
            "arrival_time_s,prompt_tokens,output_tokens,measured_ttft_ms,measured_e2e_ms\n"
            "0.1,10,5,-3,40\n",
            "measured_ttft_ms",
        ),
        (
            "arrival_time_s,prompt_tokens,output_tokens,measured_ttft_ms,measured_e2e_ms\n"
            "-0.1,10,5,3,40\n",
            "arrival_time_s",
        ),
    ],
)
def test_cli_bad_measured_traces(tmp_path, cli, content, needle):
    meas = tmp_path / "m.csv"
    meas.write_text(content)
    for cmd in (["calibrate", meas, "--out", tmp_path / "o.json"], ["validate", meas]):
        res = cli(*cmd, "--model", MODEL)
        assert res.code != 0
        lines = [x for x in res.err.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), res.err
        assert needle in lines[0]
        assert "Traceback" not in res.err
    assert not (tmp_path / "o.json").exists()


def test_cli_unknown_fit_field(tmp_path, cli):
    truth = load_hardware("H100", "minimal")
    wl = synthetic_measured(truth, n=6)
    meas = tmp_path / "m.csv"
    _write_measured(meas, wl)
    res = cli(
        "calibrate",
        meas,
        "--out",
        tmp_path / "o.json",
        "--model",
        MODEL,
        "--fit",
        "TOverheadMicros,warpSpeed",
    )
    assert res.code != 0 and "warpSpeed" in res.err and "Traceback" not in res.err
