"""The fitted cost structure (issue 10): each new hardware field does what its documentation
says (hand-computed), the defaults change nothing, profiles are chosen by GPU and vLLM
version, the joint fit recovers known values and names bad traces, and validate runs over a
folder of traces."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from infersweep.api import simulate
from infersweep.config.models import HARDWARE_FIELD_SPECS, load_hardware, load_model
from infersweep.costmodel.stepcost import build_cost_model
from infersweep.errors import ConfigError
from infersweep.fitting import profiles
from infersweep.fitting.joint import joint_calibrate, load_trace, load_traces
from infersweep.scheduler.driver import SchedulerConfig
from infersweep.workload.generate import Workload

MODEL = "llama-2-7b-hf"
SCHED = SchedulerConfig(max_num_scheduled_tokens=4096, total_kv_blocks=7438)
NEW_FIELDS = (
    "PrefillComputeScale",
    "DecodeComputeScale",
    "StepRequestOverheadMicros",
    "LayerOverheadMicros",
    "AllReducePeerLatencyMicros",
    "AllReduceBwGBs",
    "RequestOverheadMicros",
    "PromptTokenOverheadMicros",
    "FirstTokenDelaySteps",
    "OutputTokenOverheadMicros",
)


def _cm(tp=1, model=MODEL, **fields):
    hw = load_hardware("H100", "minimal").with_fields(**fields)
    return build_cost_model(load_model(model), hw, tp)


def test_every_field_is_documented_with_a_unit():
    names = {f.name for f in HARDWARE_FIELD_SPECS}
    for f in HARDWARE_FIELD_SPECS:
        assert f.unit and len(f.help) > 20, f.name
    assert set(NEW_FIELDS) <= names


@pytest.mark.parametrize("name", NEW_FIELDS)
def test_zero_means_not_set(name):
    """0 (the default) gives exactly the tables and step times of an entry without it."""
    a = _cm(tp=2, model="codellama-34b-instruct-hf")
    b = _cm(tp=2, model="codellama-34b-instruct-hf", **{name: 0.0})
    assert np.array_equal(a.ctf, b.ctf)
    for pf, dc in (([(0, 700)], []), ([], [300] * 9), ([(100, 64)], [900] * 20)):
        assert a.step_time(pf, dc) == b.step_time(pf, dc)


def test_compute_scales_multiply_their_part():
    base = _cm()
    _us, c = base.step_time([(0, 2048)], [])
    assert c["prefill_compute_us"] > c["prefill_memory_us"]  # compute-bound prefill
    us2, c2 = _cm(PrefillComputeScale=1.5).step_time([(0, 2048)], [])
    assert c2["prefill_compute_us"] == pytest.approx(1.5 * c["prefill_compute_us"])
    assert us2 == round(1.5 * c["prefill_compute_us"])
    # the decode part is untouched by the prefill scale and scaled by its own
    dc = [1000] * 64
    assert _cm(PrefillComputeScale=1.5).step_time([], dc) == base.step_time([], dc)
    _, d = base.step_time([], dc)
    _, d2 = _cm(DecodeComputeScale=0.5).step_time([], dc)
    assert d2["decode_compute_us"] == pytest.approx(0.5 * d["decode_compute_us"])


def test_step_overheads_by_hand():
    L = 32
    dc = [500] * 10
    pf = [(0, 100)]
    _us0, c0 = _cm().step_time(pf, dc)
    _, c = _cm(StepRequestOverheadMicros=7.0).step_time(pf, dc)
    assert c["overhead_us"] == pytest.approx(c0["overhead_us"] + 7.0 * 11)
    _us, c = _cm(LayerOverheadMicros=4.0).step_time(pf, dc)
    assert c["overhead_us"] == pytest.approx(4.0 * L)
    # per peer GPU: 2 all-reduces per layer, TP - 1 peers; nothing at TP 1
    m = "llama-2-70b-hf"  # 80 layers
    _, c = _cm(tp=4, model=m, AllReducePeerLatencyMicros=3.0).step_time([], [100] * 4)
    assert c["overhead_us"] == pytest.approx(3.0 * 2 * 80 * 3)
    _, c = _cm(AllReducePeerLatencyMicros=3.0).step_time([], [100] * 4)
    assert c["overhead_us"] == 0.0
    # bandwidth: bytes = 2 x L x tokens x hidden x 2 bytes x 2(TP-1)/TP
    _, c = _cm(tp=4, model=m, AllReduceBwGBs=100.0).step_time([(0, 60)], [100] * 4)
    nbytes = 2 * 80 * 64 * 8192 * 2 * 2 * 3 / 4
    assert c["overhead_us"] == pytest.approx(nbytes / 100e9 * 1e6)


def _one_request_times(scheduler=None, **fields):
    wl = Workload.from_arrays([0, 10_000_000], [800, 300], [50, 1])
    hw = load_hardware("H100", "minimal").with_fields(**fields)
    res = simulate(model=MODEL, hardware=hw, tp=1, workload=wl, scheduler=scheduler or SCHED)
    return res


@pytest.mark.parametrize(
    "cluster",
    [{}, {"replicas": 2}, {"prefill_instances": 1, "decode_instances": 1}],
    ids=["one-instance", "replicas", "pd"],
)
def test_request_overheads_shift_client_latencies(cluster):
    import dataclasses

    sched = dataclasses.replace(SCHED, **cluster)
    base = _one_request_times(sched)
    res = _one_request_times(
        sched,
        RequestOverheadMicros=5000.0,
        PromptTokenOverheadMicros=2.0,
        OutputTokenOverheadMicros=100.0,
    )
    # request 0: 800 prompt tokens, 50 output tokens; request 1: 300 and 1
    pre = np.array([5000 + 2 * 800, 5000 + 2 * 300]) / 1000.0
    post = np.array([100 * 49, 0]) / 1000.0
    assert np.allclose(res.ttft_ms, base.ttft_ms + pre)
    assert np.allclose(res.e2e_ms, base.e2e_ms + pre + post)
    # the engine is untouched: the ITL samples are each 100 µs longer
    assert np.array_equal(res.raw.itl_us, base.raw.itl_us + 100)


def test_first_token_delay_steps_uses_the_requests_own_step_time():
    base = _one_request_times()
    res = _one_request_times(FirstTokenDelaySteps=2.0)
    itl0 = (base.e2e_ms[0] - base.ttft_ms[0]) / 49
    assert res.ttft_ms[0] == pytest.approx(base.ttft_ms[0] + 2 * itl0, abs=1e-3)
    assert res.e2e_ms[0] == pytest.approx(base.e2e_ms[0] + 2 * itl0, abs=1e-3)
    assert res.ttft_ms[1] == base.ttft_ms[1]  # one output token: no inter-token time


@pytest.mark.parametrize(
    ("field", "value"), [("PrefillComputeScale", -1), ("FirstTokenDelaySteps", 11)]
)
def test_out_of_range_fields_rejected(field, value):
    with pytest.raises(ConfigError, match=field):
        load_hardware("H100", "minimal").with_fields(**{field: value})


# -- profiles --------------------------------------------------------------------------------


def test_parse_version():
    assert profiles.parse_version("0.15.1") == (0, 15, 1)
    assert profiles.parse_version("v0.11.0rc2") == (0, 11, 0)
    assert profiles.parse_version("nightly") is None


def _fake_profiles(tmp_path, monkeypatch, versions):
    for v in versions:
        doc = {
            "_profile": {"gpu": "H100", "vllm_version": v},
            "H100": {"TFlopsPeak": 1, "BwPeakTBs": 1},
        }
        (tmp_path / f"h100-vllm-{v}.json").write_text(json.dumps(doc))
    (tmp_path / "hardware.json").write_text('{"H100": {"TFlopsPeak": 1, "BwPeakTBs": 1}}')
    monkeypatch.setattr(profiles, "hardware_dir", lambda: tmp_path)


@pytest.mark.parametrize(
    ("asked", "chosen", "how"),
    [
        ("0.15.1", "0.15", "matches"),
        ("0.23.0", "0.23", "matches"),
        ("0.12.0", "0.11", "nearest"),
        ("0.19.0", "0.23", "nearest"),  # a tie (4 minor versions each way): the newer
        ("0.30.2", "0.23", "nearest"),
        ("0.9.2", "0.11", "nearest"),
    ],
)
def test_find_profile_by_version(tmp_path, monkeypatch, asked, chosen, how):
    _fake_profiles(tmp_path, monkeypatch, ["0.11", "0.15", "0.23"])
    prof, why = profiles.find_profile("h100", asked)
    assert prof.vllm_version == chosen
    assert how in why and prof.name in why


def test_find_profile_other_gpu(tmp_path, monkeypatch):
    _fake_profiles(tmp_path, monkeypatch, ["0.15"])
    prof, why = profiles.find_profile("A100-SXM", "0.15.1")
    assert prof is None and "A100-SXM" in why


def test_shipped_profiles_are_usable_configs():
    shipped = {p.vllm_version: p for p in profiles.list_profiles()}
    assert {"0.11", "0.15", "0.23"} <= set(shipped)
    for v, p in shipped.items():
        hw = load_hardware("H100", p.name)  # by name, as --hardware-config NAME
        assert hw.tflops_peak == 989.5
        meta = p.meta
        assert meta["fields"] and meta["traces"] and meta["command"]
        assert meta["cross_validated"]["pooled"]["e2e_mape_pooled"] > 0, v


# -- joint fit -------------------------------------------------------------------------------


def _write_trace(folder, wl, manifest, measured=None):
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["arrival_time_s,prompt_tokens,output_tokens,measured_ttft_ms,measured_e2e_ms,phase"]
    mt, me = measured if measured is not None else (wl.extra["ttft"], wl.extra["e2e"])
    for i in range(len(wl)):
        lines.append(
            f"{wl.arrival_us[i] / 1e6:.6f},{wl.prompt_tok[i]},{wl.output_tok[i]},"
            f"{mt[i]:.4f},{me[i]:.4f},{wl.extra['phase'][i]}"
        )
    (folder / "measured.csv").write_text("\n".join(lines) + "\n")
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _synthetic_trace(folder, hw, seed, gap_s, n=30):
    rng = np.random.default_rng(seed)
    arr = (np.arange(n) * gap_s * 1e6).astype(np.int64) + 1000
    prompt = rng.integers(200, 1500, n)
    out = rng.integers(30, 120, n)
    phase = np.array(["a"] * (n // 2) + ["b"] * (n - n // 2), dtype=object)
    wl = Workload.from_arrays(arr, prompt, out, extra={"phase": phase})
    res = simulate(model=MODEL, hardware=hw, tp=1, workload=wl, scheduler=SCHED)
    manifest = {
        "model_config": MODEL,
        "tp": 1,
        "gpu": "H100",
        "vllm_version": "0.15.1",
        "max_num_batched_tokens": 4096,
        "num_gpu_blocks": 7438,
        "recommended_skip_first": 2,
    }
    _write_trace(folder, wl, manifest, (res.ttft_ms, res.e2e_ms))


def test_joint_fit_recovers_known_fields(tmp_path):
    truth = load_hardware("H100", "minimal").with_fields(
        TOverheadMicros=1500.0, RequestOverheadMicros=8000.0
    )
    _synthetic_trace(tmp_path / "light", truth, 1, 3.0)
    _synthetic_trace(tmp_path / "busy", truth, 2, 0.05)
    traces = load_traces([tmp_path])
    assert [t.name for t in traces] == ["busy", "light"] and traces[0].skip_first == 2
    res = joint_calibrate(
        traces,
        load_hardware("H100", "minimal"),
        fields=["TOverheadMicros", "RequestOverheadMicros"],
        n_candidates=32,
        refine_iter=40,
    )
    fitted = res.hardware
    assert fitted.t_overhead_us == pytest.approx(1500.0, rel=0.1)
    assert fitted.request_overhead_us == pytest.approx(8000.0, rel=0.1)
    assert res.best.loss < 0.05 < res.start.loss
    for s in res.best.scores:
        assert s.e2e_mape < 1.0 and s.ttft_mape < 2.0


def test_bad_trace_is_named(tmp_path):
    good = load_hardware("H100", "minimal")
    _synthetic_trace(tmp_path / "ok", good, 1, 1.0, n=10)
    bad = tmp_path / "broken-run"
    bad.mkdir()
    (bad / "measured.csv").write_text("arrival_time_s,prompt_tokens\n0,10\n")
    (bad / "manifest.json").write_text(json.dumps({"model_config": MODEL}))
    with pytest.raises(ConfigError, match="broken-run"):
        load_traces([tmp_path])
    nomodel = tmp_path / "x" / "no-model"
    _synthetic_trace(nomodel, good, 1, 1.0, n=10)
    (nomodel / "manifest.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"no-model.*model"):
        load_trace(nomodel)


def test_validate_over_a_folder(tmp_path, cli):
    truth = load_hardware("H100", "minimal").with_fields(TOverheadMicros=800.0)
    _synthetic_trace(tmp_path / "runs" / "one", truth, 1, 2.0, n=12)
    _synthetic_trace(tmp_path / "runs" / "two", truth, 2, 0.2, n=12)
    res = cli(
        "validate", tmp_path / "runs", "--hardware-config", "minimal", "--json", tmp_path / "v.json"
    )
    assert res.code == 0, res.err
    assert "one" in res.out and "two" in res.out and "pooled" in res.out
    doc = json.loads((tmp_path / "v.json").read_text())
    assert [t["name"] for t in doc["traces"]] == ["one", "two"]
    assert doc["traces"][0]["overall"]["counts"]["compared"] == 10  # skip_first 2
    # minimal has no overhead: predictions are below the 'measurements' of TOverhead 800
    assert (
        doc["traces"][0]["overall"]["e2e"]["mean_predicted_ms"]
        < (doc["traces"][0]["overall"]["e2e"]["mean_measured_ms"])
    )
    assert doc["pooled"]["e2e"]["n"] == 20 and math.isfinite(doc["pooled"]["e2e"]["mape_pct"])


def test_validate_picks_the_profile_of_the_manifest(tmp_path, cli):
    truth = load_hardware("H100", "minimal")
    _synthetic_trace(tmp_path / "run", truth, 1, 2.0, n=8)
    res = cli(
        "validate",
        tmp_path / "run" / "measured.csv",
        "--manifest",
        tmp_path / "run" / "manifest.json",
        "--json",
        tmp_path / "v.json",
    )
    assert res.code == 0, res.err
    assert "h100-vllm-0.15" in res.err and "matches vLLM 0.15.1" in res.err
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["hardware"]["config"].endswith("h100-vllm-0.15.json")
    o = doc["overall"]
    assert o["counts"]["compared"] == 6  # the manifest's recommended_skip_first is 2
    for m in ("ttft", "e2e", "tpot"):
        assert {"n", "mape_pct", "mean_measured_ms", "mean_predicted_ms"} <= set(o[m])


def test_profiles_in_the_api_and_as_a_sweep_axis(cli, tmp_path):
    import pyarrow.parquet as pq

    kw = dict(model=MODEL, tp=1, workload="chatbot", num_requests=30, rate=4.0, seed=1)
    a = simulate(hardware_config="h100-vllm-0.15", **kw)
    b = simulate(hardware_config="h100-vllm-0.15.json", **kw)
    c = simulate(**kw)  # the default config: unchanged
    assert np.array_equal(a.ttft_ms, b.ttft_ms)
    assert not np.allclose(a.ttft_ms, c.ttft_ms)
    out = tmp_path / "out"
    res = cli(
        "sweep",
        "--axis",
        "hardware_config=catalog,h100-vllm-0.15,h100-vllm-0.23",
        "--model",
        MODEL,
        "--set",
        "num_requests=20",
        "--out",
        out,
        "--no-show",
        "--quiet",
    )
    assert res.code == 0, res.err
    rows = pq.read_table(out / "result.parquet").to_pylist()
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert len({r["ttft_p50_ms"] for r in rows}) == 3


def test_cli_joint_calibrate(tmp_path, cli):
    truth = load_hardware("H100", "minimal").with_fields(
        TOverheadMicros=1500.0, RequestOverheadMicros=8000.0
    )
    _synthetic_trace(tmp_path / "runs" / "light", truth, 1, 3.0, n=16)
    _synthetic_trace(tmp_path / "runs" / "busy", truth, 2, 0.05, n=16)
    out = tmp_path / "fit.json"
    res = cli(
        "calibrate",
        tmp_path / "runs",
        "--out",
        out,
        "--hardware-config",
        "minimal",
        "--fit",
        "TOverheadMicros,RequestOverheadMicros",
        "--candidates",
        "16",
        "--refine",
        "20",
        "--cv",
    )
    assert res.code == 0, res.err
    doc = json.loads(out.read_text())
    assert doc["H100"]["TOverheadMicros"] == pytest.approx(1500.0, rel=0.15)
    assert doc["_profile"]["traces"] == ["busy", "light"]
    assert set(doc["_profile"]["cross_validated"]) == {"busy", "light"}
    for word in ("before", "after", "held out", "busy", "light", "cross-validated"):
        assert word in res.out
    assert load_hardware("H100", out).request_overhead_us == pytest.approx(8000.0, rel=0.15)
    # a trace that is not one is named
    (tmp_path / "runs" / "empty").mkdir()
    (tmp_path / "runs" / "empty" / "measured.csv").write_text("arrival_time_s\n")
    res = cli("calibrate", tmp_path / "runs", "--out", out, "--hardware-config", "minimal")
    assert res.code != 0 and "empty" in res.err


def test_validate_hardware_flag_without_profile(tmp_path, cli):
    """--hardware names a GPU without a profile: the default config, said so."""
    _synthetic_trace(tmp_path / "run", load_hardware("H100", "minimal"), 1, 2.0, n=8)
    run = tmp_path / "run"
    res = cli(
        "validate",
        run / "measured.csv",
        "--manifest",
        run / "manifest.json",
        "--hardware",
        "H200",
        "--json",
        tmp_path / "v.json",
    )
    assert res.code == 0, res.err
    assert "no calibrated profile for GPU H200" in res.err
    assert json.loads((tmp_path / "v.json").read_text())["hardware"]["config"] == "default"
