"""The settings registry: one declaration per setting feeds the CLI, sweep specs and the config
objects, with the same defaults and checks everywhere."""

from __future__ import annotations

import dataclasses

import pytest
import typer

from infersweep import settings
from infersweep.errors import ConfigError
from infersweep.scheduler.config import SchedulerConfig
from infersweep.sweeps.grid import load_spec, spec_from_dict
from infersweep.workload.generate import DISTRIBUTION_DEFAULTS, PRESETS, WorkloadSpec
from tests.conftest import assert_one_error_line


def _command(name: str):
    from infersweep.sweeps.cli import app

    group = typer.main.get_command(app)
    return group.commands[name]


def _options(name: str) -> dict[str, object]:
    """flag -> click parameter of a command."""
    return {opt: p for p in _command(name).params for opt in p.opts}


@pytest.mark.parametrize(
    ("command", "groups"),
    [
        ("run", ("deployment", "workload", "scheduler")),
        ("sweep", ("deployment", "workload", "scheduler")),
        ("plan", ("deployment", "scheduler")),
        ("validate", ("deployment", "scheduler")),
        ("calibrate", ("deployment", "scheduler")),
        ("step-time", ("deployment",)),
    ],
)
def test_every_setting_of_a_group_is_an_option(command, groups):
    opts = _options(command)
    for g in groups:
        for s in settings.group(g):
            assert s.cli_flag in opts, (command, s.name)


def test_run_defaults_are_the_registry_defaults():
    opts = _options("run")
    for s in settings.SETTINGS.values():
        default = opts[s.cli_flag].default
        assert default == s.default or (default is None and s.default is None), s.name


def test_config_objects_take_the_registry_defaults():
    sched = SchedulerConfig()
    for s in settings.group("scheduler"):
        want = None if s.default == "auto" else s.default
        assert getattr(sched, s.attr) == want, s.name
    wl = WorkloadSpec()
    for s in settings.group("workload"):
        if s.name.startswith(("prompt_tokens", "output_tokens")) or s.name == "trace":
            continue
        assert getattr(wl, s.name) == s.default, s.name
    # the distribution defaults are the registry's length defaults
    for what in ("prompt", "output"):
        got = tuple(
            settings.default(f"{what}_tokens{sfx}") for sfx in ("", "_stdev", "_min", "_max")
        )
        assert got == DISTRIBUTION_DEFAULTS


def test_presets_are_the_registry_choices():
    assert tuple(PRESETS) == settings.PRESET_WORKLOADS
    assert set(settings.WORKLOADS) == {*PRESETS, "distribution", "traces"}


def test_api_default_workload_is_the_registry_default():
    import inspect

    from infersweep.api import simulate

    params = inspect.signature(simulate).parameters
    for name in ("hardware", "tp", "step_model", "workload"):
        assert params[name].default == settings.default(name)


def test_every_scheduler_setting_reaches_the_config():
    values = settings.resolve(
        {
            "semantics": "blis",
            "max_num_scheduled_tokens": 1000,
            "max_num_running_reqs": 7,
            "long_prefill_token_threshold": 64,
            "block_size": 32,
            "total_kv_blocks": 999,
            "gpu_memory_utilization": 0.5,
            "prefix_caching": False,
            "horizon": 3.5,
            "blis_preemption": "safe",
            "replicas": 1,
            "router": "prefix-affinity",
            "affinity_slack": 3,
            "snapshot_interval": 2.5,
            "routing_latency": 0.25,
            "router_seed": 9,
            "router_weights": "1:0.5:2",
        }
    )
    cfg = settings.scheduler_config(values)
    assert dataclasses.asdict(cfg) | {"max_idle_steps": 0} == {
        "semantics": "blis",
        "max_num_scheduled_tokens": 1000,
        "max_num_running_reqs": 7,
        "long_prefill_token_threshold": 64,
        "block_size": 32,
        "total_kv_blocks": 999,
        "gpu_memory_utilization": 0.5,
        "prefix_caching": False,
        "max_idle_steps": 0,
        "horizon_s": 3.5,
        "blis_preemption": "safe",
        "replicas": 1,
        "router": "prefix-affinity",
        "affinity_slack": 3,
        "snapshot_interval": 2.5,
        "routing_latency": 0.25,
        "router_seed": 9,
        "router_weights": "1:0.5:2",
        # prefill/decode disaggregation: off here (blis), so at its defaults
        "prefill_instances": 0,
        "decode_instances": 0,
        "prefill_tp": 0,
        "decode_tp": 0,
        "prefill_hardware": None,
        "decode_hardware": None,
        "kv_link": "infiniband",
        "kv_link_gbps": None,
        "kv_link_latency_us": None,
    }


def test_every_disaggregation_setting_reaches_the_config():
    given = {
        "prefill_instances": 3,
        "decode_instances": 2,
        "prefill_tp": 2,
        "decode_tp": 4,
        "prefill_hardware": "H200",
        "decode_hardware": "A100",
        "kv_link": "ethernet",
        "kv_link_gbps": 200.0,
        "kv_link_latency_us": 7.5,
    }
    cfg = settings.scheduler_config(settings.resolve({k: str(v) for k, v in given.items()}))
    assert {k: getattr(cfg, k) for k in given} == given
    assert cfg.disaggregated
    assert cfg.link() == (200.0, 7.5)


def test_unknown_setting_suggests_the_closest_name():
    with pytest.raises(ConfigError, match="did you mean max_num_scheduled_tokens"):
        settings.canonical("max_num_schedule_tokens")
    with pytest.raises(ConfigError, match="did you mean TOverheadMicros"):
        settings.canonical("TOverheadMicro")


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("rate", 0, "> 0"),
        ("rate", "fast", "number"),
        ("tp", 0, ">= 1"),
        ("gpu_memory_utilization", 1.5, "<= 1"),
        ("semantics", "sglang", "one of"),
        ("total_kv_blocks", "lots", "integer or 'auto'"),
        ("prefix_caching", "maybe", "true or false"),
    ],
)
def test_checks_name_setting_and_value(name, value, why):
    with pytest.raises(ConfigError, match=why) as ei:
        settings.check(name, value)
    assert ei.value.field == name


def test_aliases_resolve():
    assert settings.canonical("block-size-in-tokens") == "block_size"
    assert settings.canonical("max_num_seqs") == "max_num_running_reqs"
    assert settings.canonical("GPU") == "hardware"
    assert settings.canonical("toverheadmicros") == "TOverheadMicros"


def test_spec_keys_are_settings_or_run_options(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("[sweep]\nthreads = 1\nchunk_size = 3\nper_request = true\n[grid]\ntp = [1]\n")
    spec = load_spec(p)
    assert spec.run_options() == {"threads": 1, "chunk_size": 3, "per_request": True}
    # a flag wins over the spec
    assert spec.run_options(chunk_size=5, per_request=False)["chunk_size"] == 5
    assert spec.run_options(per_request=False)["per_request"] is False
    p.write_text("[sweep]\nchunksize = 3\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_spec(p)
    with pytest.raises(ConfigError, match="threads"):
        spec_from_dict({"sweep": {"threads": 0}})


def test_cli_errors_name_the_flag(cli):
    res = cli("run", "--model", "llama-3.1-8b-instruct", "--rate", "-1")
    assert_one_error_line(res, "--rate", "-1")
    res = cli("run", "--model", "llama-3.1-8b-instruct", "--total-kv-blocks", "lots")
    assert_one_error_line(res, "--total-kv-blocks", "lots")


def test_sweep_takes_any_setting_as_an_axis(cli, tmp_path):
    res = cli(
        "sweep",
        "--model",
        "qwen2.5-1.5b-instruct",
        "--workload",
        "chatbot",
        "--num-requests",
        "20",
        "--max-num-running-reqs",
        "4,8",
        "--block-size-in-tokens",
        "16",
        "--out",
        str(tmp_path / "o"),
        "--quiet",
        "--no-show",
    )
    assert res.code == 0, res.err
    from infersweep.sweeps.results import read_dataset

    ds = read_dataset(tmp_path / "o")
    assert list(ds.max_num_running_reqs.values) == [4, 8]
    assert list(ds.block_size.values) == [16]


def test_per_request_tables_of_run_and_sweep_have_the_same_columns(cli, tmp_path):
    import pyarrow.parquet as pq

    from infersweep.metrics.summary import REQUEST_COLUMNS

    run_path = tmp_path / "r.parquet"
    res = cli(
        "run",
        "--model",
        "qwen2.5-1.5b-instruct",
        "--workload",
        "chatbot",
        "--num-requests",
        "10",
        "--results-path",
        str(run_path),
    )
    assert res.code == 0, res.err
    res = cli(
        "sweep",
        "--model",
        "qwen2.5-1.5b-instruct",
        "--workload",
        "chatbot",
        "--num-requests",
        "10",
        "--per-request",
        "--out",
        str(tmp_path / "s"),
        "--quiet",
        "--no-show",
    )
    assert res.code == 0, res.err
    a = pq.read_table(run_path)
    b = pq.read_table(tmp_path / "s" / "per_request" / "point=0" / "part-0.parquet")
    assert a.column_names == b.column_names == list(REQUEST_COLUMNS)
    assert a.schema.types == b.schema.types
    assert a.column("e2e_ms").to_pylist() == b.column("e2e_ms").to_pylist()


def test_python_sweep_entry_point(tmp_path):
    import infersweep

    ds = infersweep.sweep(
        model="qwen2.5-1.5b-instruct",
        workload="chatbot",
        num_requests=10,
        rate=[1.0, 2.0],
        out=tmp_path / "api",
    )
    assert list(ds.rate.values) == [1.0, 2.0]
    assert (ds.status.values == "ok").all()
    assert (ds.completed_requests.values == 10).all()
