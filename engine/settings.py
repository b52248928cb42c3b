"""The settings registry: every user setting declared once.

A setting has a name (the canonical snake_case key used by sweep specs, ``--set``/``--axis``, the
Python API and the result columns), a kind, a default, a unit, a help text, its validation (choices
or a range) and the group of the object it feeds (``deployment``: which model on which GPU;
``workload``: :class:`~infersweep.workload.WorkloadSpec`; ``scheduler``:
:class:`~infersweep.scheduler.driver.SchedulerConfig`).  From this table come:

- the typer options of every command (``infersweep.sweeps.cli``), flag names included;
- the sweep axes and fixed settings (``infersweep.sweeps.grid``);
- the defaults and checks of ``WorkloadSpec`` and ``SchedulerConfig`` and the config builders
  (:func:`workload_spec`, :func:`scheduler_config`) used by ``run``, ``validate``, ``calibrate``,
  sweeps and :func:`infersweep.simulate`.

Hardware-entry fields (``TFlopsPeak``, ``TOverheadMicros``, ...) are settings too: they are
declared with their units in :data:`infersweep.config.models.HARDWARE_FIELDS` and usable as sweep
axes and fixed settings under their JSON names.

An unknown name is an error everywhere, with the closest known names suggested.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from infersweep import limits
from infersweep.config.catalog import KV_LINKS
from infersweep.errors import ConfigError

KINDS = ("str", "int", "float", "bool", "kv", "path")
GROUPS = ("deployment", "workload", "scheduler")


@dataclass(frozen=True, slots=True)
class Setting:
    """One user setting."""

    name: str
    kind: str  # one of KINDS; "kv": an integer or "auto"; "path": a file or folder name
    default: Any
    group: str  # one of GROUPS
    help: str
    unit: str = ""
    flag: str = ""  # the CLI flag; default "--" + name with dashes
    aliases: tuple[str, ...] = ()  # other accepted spec keys
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    field: str = ""  # the attribute of the object it feeds; default the name

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def attr(self) -> str:
        return self.field or self.name

    def check(self, value: Any, where: str | None = None) -> Any:
        """The value with its type and range checked (strings from the CLI converted); one
        ConfigError naming the setting and the value otherwise."""
        return _check(self, value, where)


def _s(name, kind, default, group, help, **kw) -> Setting:
    return Setting(name=name, kind=kind, default=default, group=group, help=help, **kw)


# Choices of the str settings (kept here so that the CLI help lists them).
SEMANTICS = ("vllm", "blis")
BLIS_PREEMPTION = ("reference", "safe")
STEP_MODELS = ("auto", "v2", "v1")
PRESET_WORKLOADS = ("chatbot", "contentgen", "summarization", "multidoc")
WORKLOADS = (*PRESET_WORKLOADS, "distribution", "traces")
ARRIVALS = ("constant", "poisson", "gamma")
ROUTERS = (
    "round-robin",
    "random",
    "least-outstanding",
    "least-kv",
    "prefix-affinity",
    "weighted",
)  # in the order of infersweep.schema's ROUTER_* codes

_DECLARED = (
    # -- deployment: which model on which GPU ----------------------------------------------
    _s(
        "model",
        "str",
        None,
        "deployment",
        "Model name (a folder of the embedded data/models, org/name allowed), or a label when "
        "model_config_folder is given.",
    ),
    _s(
        "model_config_folder",
        "path",
        None,
        "deployment",
        "Folder holding a HuggingFace config.json.",
    ),
    _s(
        "hardware",
        "str",
        "H100",
        "deployment",
        "GPU name in the hardware config (case-insensitive).",
        aliases=("gpu",),
    ),
    _s(
        "hardware_config",
        "str",
        None,
        "deployment",
        "Hardware config JSON: a path, an embedded file name, or one of minimal, full_487017bc, "
        "v2, catalog (default: catalog).",
    ),
    _s(
        "tp",
        "int",
        1,
        "deployment",
        "Tensor parallelism.",
        unit="GPUs",
        min=1,
        max=limits.MAX_TP,
    ),
    _s(
        "bench_data",
        "path",
        None,
        "deployment",
        "MFU table folder (default: the embedded H100 tables).",
        flag="--bench-data-path",
        aliases=("bench_data_path",),
    ),
    _s(
        "step_model",
        "str",
        "auto",
        "deployment",
        "Step-cost model: auto (v2 where MFU tables exist, else v1), v2 or v1.",
        choices=STEP_MODELS,
    ),
    # -- deployment: quantisation and expert parallelism (config/arch.py, costmodel/moe.py) ---
    _s(
        "weight_dtype",
        "str",
        "auto",
        "deployment",
        "Weight dtype of the linear layers: auto (the checkpoint's), bf16, fp16, fp8 (FP8 GEMMs "
        "at the FP8 peak), int4 (weight-only, group-128 scales) or mxfp4.",
        choices=("auto", "bf16", "fp16", "fp8", "int4", "mxfp4"),
    ),
    _s(
        "kv_cache_dtype",
        "str",
        "auto",
        "deployment",
        "KV-cache dtype: auto (the model's), bf16, fp16 or fp8.",
        choices=("auto", "bf16", "fp16", "fp8"),
    ),
    _s(
        "ep",
        "int",
        1,
        "deployment",
        "Expert parallelism: split the experts over this many of the TP GPUs (must divide tp "
        "and the experts; all-to-all over InterconnectGBs).",
        unit="GPUs",
        min=1,
    ),
    _s(
        "dp",
        "int",
        1,
        "deployment",
        "Attention data parallelism of MoE models (vLLM --data-parallel-size with expert "
        "parallelism): dp ranks of tp GPUs each, experts split over all of them (ep = tp x dp); "
        "the scheduler settings count for the whole group.",
        unit="GPUs",
        min=1,
    ),
    _s(
        "moe_skew",
        "float",
        0.0,
        "deployment",
        "Routing skew of MoE models: Zipf exponent of the experts' popularity (0 = uniform).",
        min=0,
    ),
    # -- workload -----------------------------------------------------------------------------
    _s(
        "workload",
        "str",
        "distribution",
        "workload",
        "A preset (chatbot, contentgen, summarization, multidoc), distribution (the "
        "prompt/output flags) or traces (a trace CSV).",
        choices=WORKLOADS,
    ),
    _s(
        "trace",
        "path",
        None,
        "workload",
        "Trace CSV for workload traces (arrival_time_s,prompt_tokens,output_tokens[,"
        "prefix_group,prefix_tokens]).",
        flag="--workload-traces-filepath",
        aliases=("workload_traces_filepath",),
    ),
    _s(
        "rate",
        "float",
        1.0,
        "workload",
        "Arrival rate.",
        unit="requests/s",
        min=0,
        min_exclusive=True,
        max=1e6,
    ),
    _s(
        "num_requests",
        "int",
        100,
        "workload",
        "Requests to simulate.",
        unit="requests",
        min=1,
        aliases=("num_prompts",),
        max=limits.MAX_REQUESTS,
    ),
    _s("seed", "int", 42, "workload", "Random seed of generated workloads.", min=0),
    _s(
        "arrival",
        "str",
        "constant",
        "workload",
        "Arrival process: constant (the reference's even spacing), poisson or gamma.",
        choices=ARRIVALS,
    ),
    _s(
        "arrival_cv",
        "float",
        2.0,
        "workload",
        "Coefficient of variation of gamma inter-arrival gaps.",
        min=1e-3,
        max=1e3,
    ),
    _s(
        "prompt_tokens",
        "int",
        512,
        "workload",
        "Mean prompt length (distribution).",
        unit="tokens",
        min=0,
        max=limits.MAX_REQUEST_TOKENS,
    ),
    _s(
        "prompt_tokens_stdev",
        "int",
        256,
        "workload",
        "Prompt length std (distribution).",
        unit="tokens",
        min=0,
        max=limits.MAX_REQUEST_TOKENS,
    ),
    _s(
        "prompt_tokens_min",
        "int",
        2,
        "workload",
        "Shortest prompt (distribution).",
        unit="tokens",
        min=0,
        max=limits.MAX_REQUEST_TOKENS,
    ),
    _s(
        "prompt_tokens_max",
        "int",
        7000,
        "workload",
        "Longest prompt (distribution).",
        unit="tokens",
        min=0,
        max=limits.MAX_REQUEST_TOKENS,
    ),
    _s(
        "output_tokens",
        "int",
        512,
        "workload",
        "Mean output length (distribution).",
        unit="tokens",
        min=0,
        max=limits.MAX_REQUEST_TOKENS,
    ),
    _s(
        "output_tokens_stdev",
        "int",
        256,
        "workload",
        "Output length std (distribution).",
        unit="tokens",
        min=0,
        max=limits.MAX_REQUEST_TOKENS,
    ),
    _s(
        "output_tokens_min",
        "int",
        2,
        "workload",
        "Shortest output (distribution).",
        unit="tokens",
        min=0,
        max=limits.MAX_REQUEST_TOKENS,
    ),
    _s(
        "output_tokens_max",
        "int",
        7000,
        "workload",
        "Longest output (distribution).",
        unit="tokens",
        min=0,
        max=limits.MAX_REQUEST_TOKENS,
    ),
    _s(
        "prefix_tokens",
        "int",
        0,
        "workload",
        "Tokens of a prefix shared by every generated request.",
        unit="tokens",
        min=0,
        max=limits.MAX_REQUEST_TOKENS,
    ),
    # -- scheduler ----------------------------------------------------------------------------
    _s(
        "semantics",
        "str",
        "vllm",
        "scheduler",
        "vllm (a real continuous-batching engine) or blis (the reference simulator, quirks "
        "included).",
        choices=SEMANTICS,
    ),
    _s(
        "max_num_scheduled_tokens",
        "int",
        2048,
        "scheduler",
        "Token budget per step.",
        unit="tokens",
        min=1,
        aliases=("max_num_batched_tokens",),
        max=limits.MAX_REQUEST_TOKENS,
    ),
    _s(
        "max_num_running_reqs",
        "int",
        256,
        "scheduler",
        "Cap on running requests.",
        unit="requests",
        min=1,
        aliases=("max_num_seqs",),
        max=limits.MAX_REQUESTS,
    ),
    _s(
        "long_prefill_token_threshold",
        "int",
        0,
        "scheduler",
        "Chunk size cap for long prefills (0 = off).",
        unit="tokens",
        min=0,
        max=limits.MAX_REQUEST_TOKENS,
    ),
    _s(
        "block_size",
        "int",
        16,
        "scheduler",
        "KV-cache block size.",
        unit="tokens",
        min=1,
        flag="--block-size-in-tokens",
        aliases=("block_size_in_tokens",),
        max=limits.MAX_REQUEST_TOKENS,
    ),
    _s(
        "total_kv_blocks",
        "kv",
        "auto",
        "scheduler",
        "KV blocks, or auto (vllm: from MemoryGiB; blis: 1,000,000).",
        unit="blocks",
        min=1,
    ),
    _s(
        "gpu_memory_utilization",
        "float",
        0.9,
        "scheduler",
        "Memory fraction for weights + KV cache (auto KV sizing).",
        min=0,
        max=1,
        min_exclusive=True,
    ),
    _s("prefix_caching", "bool", True, "scheduler", "Prefix caching (vllm semantics)."),
    _s(
        "horizon",
        "float",
        0.0,
        "scheduler",
        "Stop after this many simulated seconds (0 = run to the end).",
        unit="s",
        min=0,
        field="horizon_s",
        max=limits.MAX_TIME_S,
    ),
    _s(
        "blis_preemption",
        "str",
        "reference",
        "scheduler",
        "blis semantics under preemption: reference (its quirks, falling back to safe where it "
        "would never finish) or safe.",
        choices=BLIS_PREEMPTION,
    ),
    # -- scheduler: clusters (replicas behind a router; vllm semantics) ----------------------
    _s(
        "replicas",
        "int",
        1,
        "scheduler",
        "Identical instances behind a router, on one clock (vllm semantics).",
        unit="instances",
        min=1,
        max=limits.MAX_REPLICAS,
    ),
    _s(
        "router",
        "str",
        "round-robin",
        "scheduler",
        "How requests are spread over the replicas: round-robin, random (seeded by "
        "router_seed), least-outstanding (fewest queued + running + in flight), least-kv "
        "(fewest KV blocks in use), prefix-affinity (the instance holding the request's shared "
        "prefix, unless its load exceeds the least loaded one's by more than affinity_slack) or "
        "weighted (lowest load share + KV share - prefix share).",
        choices=ROUTERS,
    ),
    _s(
        "affinity_slack",
        "int",
        8,
        "scheduler",
        "prefix-affinity: how many more outstanding requests than the least loaded instance "
        "the prefix holder may have and still get the request.",
        unit="requests",
        min=0,
        max=limits.MAX_REQUESTS,
    ),
    _s(
        "snapshot_interval",
        "float",
        0.0,
        "scheduler",
        "How stale the load the router sees is: snapshots of the instances' load refreshed "
        "every this many ms (0 = the router sees the current load).",
        unit="ms",
        min=0,
        max=limits.MAX_TIME_S * 1e3,
    ),
    _s(
        "routing_latency",
        "float",
        0.0,
        "scheduler",
        "Time from a request's arrival at the router to its arrival at the instance.",
        unit="ms",
        min=0,
        max=limits.MAX_TIME_S * 1e3,
    ),
    _s("router_seed", "int", 0, "scheduler", "Seed of the random router.", min=0),
    _s(
        "router_weights",
        "str",
        "1:1:1",
        "scheduler",
        "weighted router: the weights of its load, KV and prefix terms, as LOAD:KV:PREFIX "
        "(non-negative numbers).",
    ),
    # -- scheduler: prefill/decode disaggregation (vllm semantics; scheduler/pd_nb.py) -------
    _s(
        "prefill_instances",
        "int",
        0,
        "scheduler",
        "Prefill/decode disaggregation: instances that prefill (the router spreads requests "
        "over them); with decode_instances > 0. 0 = not disaggregated.",
        unit="instances",
        min=0,
        max=limits.MAX_REPLICAS,
    ),
    _s(
        "decode_instances",
        "int",
        0,
        "scheduler",
        "Prefill/decode disaggregation: instances that decode (each request goes to the one "
        "with the fewest outstanding requests); with prefill_instances > 0.",
        unit="instances",
        min=0,
        max=limits.MAX_REPLICAS,
    ),
    _s(
        "prefill_tp",
        "int",
        0,
        "scheduler",
        "Tensor parallelism of the prefill instances (0 = tp).",
        unit="GPUs",
        min=0,
        max=limits.MAX_TP,
    ),
    _s(
        "decode_tp",
        "int",
        0,
        "scheduler",
        "Tensor parallelism of the decode instances (0 = tp).",
        unit="GPUs",
        min=0,
        max=limits.MAX_TP,
    ),
    _s(
        "prefill_hardware",
        "str",
        None,
        "scheduler",
        "GPU of the prefill instances, from the same hardware config (default: hardware).",
    ),
    _s(
        "decode_hardware",
        "str",
        None,
        "scheduler",
        "GPU of the decode instances, from the same hardware config (default: hardware).",
    ),
    _s(
        "kv_link",
        "str",
        "infiniband",
        "scheduler",
        "Link that carries the prompt KV from a prefill to a decode instance: nvlink (3,600 "
        "Gbit/s, 2 us), infiniband (400 Gbit/s, 5 us) or ethernet (100 Gbit/s, 50 us), per GPU.",
        choices=tuple(KV_LINKS),
    ),
    _s(
        "kv_link_gbps",
        "float",
        None,
        "scheduler",
        "KV link bandwidth per GPU, one direction (default: kv_link's).",
        unit="Gbit/s",
        min=0,
        min_exclusive=True,
        max=1e9,
    ),
    _s(
        "kv_link_latency_us",
        "float",
        None,
        "scheduler",
        "KV link latency per transfer (default: kv_link's).",
        unit="us",
        min=0,
        max=limits.MAX_TIME_S * 1e6,
    ),
)

#: Every setting by canonical name, in declaration order.
SETTINGS: dict[str, Setting] = {s.name: s for s in _DECLARED}
#: Accepted other spellings of a setting name (lower case) -> canonical name.
ALIASES: dict[str, str] = {a: s.name for s in _DECLARED for a in s.aliases}


@functools.cache
def group(name: str) -> tuple[Setting, ...]:
    """The settings of one group, in declaration order."""
    return tuple(s for s in _DECLARED if s.group == name)


def defaults() -> dict[str, Any]:
    """Every setting's default."""
    return {s.name: s.default for s in _DECLARED}


def default(name: str) -> Any:
    return SETTINGS[name].default


def field_default(name: str) -> Any:
    """A dataclass field whose default is the setting's (for the config objects it feeds)."""
    import dataclasses

    return dataclasses.field(default=SETTINGS[name].default)


def hardware_fields() -> dict[str, str]:
    """Hardware-entry fields usable as settings: lower-case name -> canonical JSON name."""
    from infersweep.config.models import HARDWARE_FIELDS

    return {k.lower(): k for k in HARDWARE_FIELDS}


def canonical(name: str, where: str | None = None) -> str:
    """The canonical name of a setting or hardware field (an error naming the closest known
    names otherwise)."""
    key = str(name).strip()
    low = key.lower().replace("-", "_")
    if low in SETTINGS:
        return low
    if low in ALIASES:
        return ALIASES[low]
    hw = hardware_fields()
    if key.lower() in hw:
        return hw[key.lower()]
    known = list(SETTINGS) + sorted(hw.values())
    import difflib

    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    hint = ("did you mean " + " or ".join(close) + "?") if close else "known: " + ", ".join(known)
    raise ConfigError("unknown setting", file=where, field=str(name), hint=hint)


def check(name: str, value: Any, where: str | None = None) -> Any:
    """A value of the setting ``name`` (canonical or hardware field) with type and range
    checked."""
    s = SETTINGS.get(name)
    if s is None:  # a hardware field: a finite number; its range is checked by Hardware
        s = Setting(name=name, kind="float", default=None, group="deployment", help="")
    return _check(s, value, where)


def _check(s: Setting, value: Any, where: str | None) -> Any:
    def bad(why: str) -> ConfigError:
        return ConfigError(why, file=where, field=s.name, value=value)

    kind = s.kind
    if value is None:
        if s.default is None:
            return None
        raise bad("must have a value")
    if kind in ("str", "path"):
        if not isinstance(value, str) or not value.strip():
            if kind == "path" and hasattr(value, "__fspath__"):
                return str(value)
            raise bad("must be a non-empty string")
        if s.choices and value not in s.choices:
            raise ConfigError(
                "unknown value",
                file=where,
                field=s.name,
                value=value,
                hint="one of: " + ", ".join(s.choices),
            )
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise bad("must be true or false")
    if kind == "kv":
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        kind = "int"
    if isinstance(value, bool):
        raise bad(f"must be {'an integer' if kind == 'int' else 'a number'}")
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        elif isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise bad("must be an integer" + (" or 'auto'" if s.kind == "kv" else "")) from None
        elif hasattr(value, "__index__") and not isinstance(value, float):
            value = int(value)
        if not isinstance(value, int):
            raise bad("must be an integer")
    else:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise bad("must be a number") from None
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad("must be a finite number")
        value = float(value)
    if s.min is not None and (value <= s.min if s.min_exclusive else value < s.min):
        raise bad(f"must be {'>' if s.min_exclusive else '>='} {s.min:g}")
    if s.max is not None and value > s.max:
        raise bad(f"must be <= {s.max:g}")
    return value


def resolve(values: dict[str, Any], where: str | None = None) -> dict[str, Any]:
    """Every setting: the given ones (any accepted name, checked) over the defaults."""
    out = defaults()
    for k, v in values.items():
        name = canonical(k, where)
        out[name] = check(name, v, where)
    return out


# -- config builders ------------------------------------------------------------------------

#: deployment settings that ModelConfig.deployed applies to a model
MODEL_DEPLOYMENT = ("weight_dtype", "kv_cache_dtype", "ep", "dp", "moe_skew")


def deploy(model, values: dict[str, Any]):
    """``model`` served with the quantisation and expert-parallel settings of ``values``
    (unchanged when they are all at their defaults)."""
    kw = {k: values.get(k, SETTINGS[k].default) for k in MODEL_DEPLOYMENT}
    if all(kw[k] == SETTINGS[k].default for k in MODEL_DEPLOYMENT):
        return model
    return model.deployed(**kw)


def workload_spec(values: dict[str, Any]):
    """The WorkloadSpec of resolved settings."""
    from infersweep.workload.generate import LengthSpec, WorkloadSpec

    def lengths(what: str) -> LengthSpec:
        p = f"{what}_tokens"
        return LengthSpec(
            mean=values[p],
            std=values[p + "_stdev"],
            min=values[p + "_min"],
            max=values[p + "_max"],
        )

    trace = values.get("trace")
    return WorkloadSpec(
        workload=values["workload"],
        rate=values["rate"],
        num_requests=values["num_requests"],
        seed=values["seed"],
        arrival=values["arrival"],
        arrival_cv=values["arrival_cv"],
        prefix_tokens=values["prefix_tokens"],
        prompt=lengths("prompt"),
        output=lengths("output"),
        trace=None if trace is None else str(trace),
    )


def workload_key(values: dict[str, Any]) -> tuple:
    """What determines a generated workload (for reuse across sweep points)."""
    return tuple(values[s.name] for s in group("workload"))


def scheduler_config(values: dict[str, Any]):
    """The SchedulerConfig of resolved settings."""
    from infersweep.scheduler.driver import SchedulerConfig

    kw = {s.attr: values[s.name] for s in group("scheduler")}
    if kw["total_kv_blocks"] == "auto":
        kw["total_kv_blocks"] = None
    return SchedulerConfig(**kw)
