"""Validated, frozen configuration objects: hardware entries and model configs.

Every bad input raises ``ConfigError`` naming the file, the field and the value.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from infersweep.config import arch as _arch
from infersweep.config.catalog import resolve_hardware_file, resolve_model_folder
from infersweep.errors import ConfigError

# --------------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------------


def read_json(path: str | os.PathLike) -> object:
    """Parse a JSON file; a missing or malformed file is a ConfigError naming it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=p) from None
    except IsADirectoryError:
        raise ConfigError("is a folder, not a file", file=p) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file ({exc.__class__.__name__}: {exc})", file=p) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", file=p
        ) from None


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# --------------------------------------------------------------------------------------------
# Hardware
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HardwareField:
    """One field of a hardware entry: JSON name, attribute, unit, allowed range, meaning.

    Every optional field defaults to 0, which means "not set": the step and request times are
    then exactly those of the reference model (a scale of 0 acts as 1); StepCostScale defaults
    to 1."""

    name: str
    attr: str
    unit: str
    lo: float  # allowed range (inclusive)
    hi: float
    help: str
    required: bool = False


_INF = math.inf

#: Every hardware-entry field, declared once (keys of the JSON are matched case-insensitively).
HARDWARE_FIELD_SPECS: tuple[HardwareField, ...] = (
    HardwareField(
        "TFlopsPeak",
        "tflops_peak",
        "TFLOP/s",
        0.0,
        _INF,
        "dense BF16 tensor peak of one GPU",
        required=True,
    ),
    HardwareField(
        "BwPeakTBs", "bw_peak_tbs", "TB/s", 0.0, _INF, "HBM bandwidth of one GPU", required=True
    ),
    HardwareField(
        "TOverheadMicros",
        "t_overhead_us",
        "us per step",
        0.0,
        _INF,
        "fixed CPU/launch cost of every non-empty engine step (scheduler, input "
        "preparation, sampling launch)",
    ),
    HardwareField(
        "PrefillOverheadMicros",
        "prefill_overhead_us",
        "us per prefill entry",
        0.0,
        _INF,
        "cost per prefill entry of a step with no decodes",
    ),
    HardwareField(
        "MixedPrefillOverheadMicros",
        "mixed_prefill_overhead_us",
        "us per prefill entry",
        0.0,
        _INF,
        "cost per prefill entry of a step that also has decodes",
    ),
    HardwareField(
        "AllReduceLatency",
        "allreduce_latency_us",
        "us per all-reduce",
        0.0,
        _INF,
        "latency of one tensor-parallel all-reduce; 2 per layer per step when TP > 1",
    ),
    HardwareField(
        "bwEfficiencyFactor",
        "bw_efficiency_factor",
        "fraction",
        0.0,
        1.0,
        "achieved / peak HBM bandwidth for weight, KV and activation traffic",
    ),
    HardwareField(
        "perLayerOverhead",
        "per_layer_overhead_us",
        "us per layer",
        0.0,
        _INF,
        "per-layer kernel-launch cost of a step, divided by TP",
    ),
    HardwareField("MemoryGiB", "memory_gib", "GiB", 0.0, _INF, "HBM capacity of one GPU"),
    HardwareField(
        "BwEffConstant",
        "bw_eff_constant",
        "fraction",
        0.0,
        1.0,
        "roofline v1: achieved / peak bandwidth",
    ),
    HardwareField(
        "mfuPrefill",
        "mfu_prefill",
        "fraction",
        0.0,
        1.0,
        "roofline v1: model FLOPs utilisation of prefill",
    ),
    HardwareField(
        "mfuDecode",
        "mfu_decode",
        "fraction",
        0.0,
        1.0,
        "roofline v1: model FLOPs utilisation of decode",
    ),
    HardwareField(
        "StepCostScale",
        "step_cost_scale",
        "x (time multiplier)",
        0.0,
        _INF,
        "every step time times this (plan's sensitivity band); default 1",
    ),
    # -- fitted cost structure (issue 10); 0 = not set ------------------------------------
    HardwareField(
        "PrefillComputeScale",
        "prefill_compute_scale",
        "x (time multiplier)",
        0.0,
        10.0,
        "multiplies the compute time of a step's prefill part (GEMMs and attention) "
        "from the MFU tables: 1 / (achieved / tabulated efficiency); 0 = 1",
    ),
    HardwareField(
        "DecodeComputeScale",
        "decode_compute_scale",
        "x (time multiplier)",
        0.0,
        10.0,
        "multiplies the compute time of a step's decode part (GEMMs and attention); 0 = 1",
    ),
    HardwareField(
        "StepRequestOverheadMicros",
        "step_request_overhead_us",
        "us per scheduled request per step",
        0.0,
        _INF,
        "CPU cost that grows with the batch: per request in a step (input "
        "preparation, sampling, output processing)",
    ),
    HardwareField(
        "LayerOverheadMicros",
        "layer_overhead_us",
        "us per layer per step",
        0.0,
        _INF,
        "fixed latency of one transformer layer in a non-empty step on every GPU (kernel "
        "launches and the small kernels that do not shrink with TP; unlike perLayerOverhead it "
        "is not divided by TP)",
    ),
    HardwareField(
        "AllReducePeerLatencyMicros",
        "allreduce_peer_latency_us",
        "us per all-reduce per peer GPU",
        0.0,
        _INF,
        "latency of one TP all-reduce per other GPU of the group (a ring or two-shot "
        "all-reduce takes TP-1 hops each way): 2 per layer per step, times TP-1",
    ),
    HardwareField(
        "AllReduceBwGBs",
        "allreduce_bw_gbs",
        "GB/s",
        0.0,
        _INF,
        "bus bandwidth of the TP all-reduce: a step moves 2 x layers x tokens x "
        "hidden x bytes x 2(TP-1)/TP bytes through it when TP > 1; 0 = free",
    ),
    HardwareField(
        "RequestOverheadMicros",
        "request_overhead_us",
        "us per request",
        0.0,
        _INF,
        "client-side latency outside the engine, before the first token: HTTP, "
        "request parsing, first SSE chunk (added to TTFT and E2E)",
    ),
    HardwareField(
        "PromptTokenOverheadMicros",
        "prompt_token_overhead_us",
        "us per prompt token",
        0.0,
        _INF,
        "tokenisation and transfer of the prompt before the engine sees the request "
        "(added to TTFT and E2E)",
    ),
    HardwareField(
        "FirstTokenDelaySteps",
        "first_token_delay_steps",
        "engine steps",
        0.0,
        10.0,
        "steps a request waits beyond the simulated queue before its first token (the "
        "asynchronous scheduling pipeline and output processing of the real engine), in units "
        "of the request's own mean inter-token time; added to TTFT and E2E",
    ),
    HardwareField(
        "OutputTokenOverheadMicros",
        "output_token_overhead_us",
        "us per output token after the first",
        0.0,
        _INF,
        "detokenisation and streaming of each further token that the engine step "
        "does not carry (added to E2E and to each inter-token gap)",
    ),
    # -- datasheet peaks and links beyond BF16 and HBM, MoE efficiencies (issue 13) ---------
    HardwareField(
        "TFlopsPeakFP8",
        "tflops_peak_fp8",
        "TFLOP/s",
        0.0,
        _INF,
        "dense FP8 tensor peak: the GEMMs of FP8 weights (and activations); 0 = none",
    ),
    HardwareField(
        "TFlopsPeakFP4", "tflops_peak_fp4", "TFLOP/s", 0.0, _INF, "dense FP4 tensor peak; 0 = none"
    ),
    HardwareField(
        "InterconnectGBs",
        "interconnect_gbs",
        "GB/s",
        0.0,
        _INF,
        "GPU-to-GPU bandwidth per GPU and direction (the expert-parallel all-to-all); 0 = unknown",
    ),
    HardwareField(
        "MoeGemmEfficiency",
        "moe_gemm_efficiency",
        "x (MFU multiplier)",
        0.0,
        2.0,
        "grouped-GEMM MFU of routed experts / the GEMM table's MFU at m = tokens per expert; "
        "0 = the catalog entry's, else 1",
    ),
    HardwareField(
        "MoeBwEfficiency",
        "moe_bw_efficiency",
        "fraction of the HBM peak",
        0.0,
        2.0,
        "bandwidth at which routed experts stream / BwPeakTBs; 0 = the catalog entry's, else "
        "the entry's own bandwidth",
    ),
)

#: canonical field -> attribute. Keys are matched case-insensitively.
HARDWARE_FIELDS = {f.name: f.attr for f in HARDWARE_FIELD_SPECS}
HARDWARE_FIELD_BY_NAME = {f.name: f for f in HARDWARE_FIELD_SPECS}
_FIELD_BY_LOWER = {k.lower(): k for k in HARDWARE_FIELDS}
#: fields whose default is not 0 (left out of ``to_entry`` at that default)
_FIELD_DEFAULTS = {"StepCostScale": 1.0}
#: catalog facts of an entry that do not change a simulation (read by ``plan``): the list price
#: of one GPU-hour in USD and the cross-validated relative step-time error of a fitted profile
CATALOG_FIELDS = {
    "PricePerGPUHour": "price_per_gpu_hour",
    "CrossValidatedError": "cross_validated_error",
}
_CATALOG_BY_LOWER = {k.lower(): k for k in CATALOG_FIELDS}

#: Physical ranges of the non-zero values (they keep every step time inside the int64 µs
#: clock; the settings registry will carry them).
HARDWARE_RANGES = {
    "TFlopsPeak": (0.1, 1e7),
    "BwPeakTBs": (1e-3, 1e6),
    "TOverheadMicros": (0.0, 1e9),
    "PrefillOverheadMicros": (0.0, 1e9),
    "MixedPrefillOverheadMicros": (0.0, 1e9),
    "AllReduceLatency": (0.0, 1e9),
    "perLayerOverhead": (0.0, 1e9),
    "MemoryGiB": (0.0, 1e9),
    "StepCostScale": (1e-3, 1e3),
    "StepRequestOverheadMicros": (0.0, 1e9),
    "LayerOverheadMicros": (0.0, 1e9),
    "AllReducePeerLatencyMicros": (0.0, 1e9),
    "AllReduceBwGBs": (0.0, 1e9),
    "RequestOverheadMicros": (0.0, 1e9),
    "PromptTokenOverheadMicros": (0.0, 1e9),
    "OutputTokenOverheadMicros": (0.0, 1e9),
}

#: The optional overhead fields that calibration may fit.
OVERHEAD_FIELDS = (
    "TOverheadMicros",
    "PrefillOverheadMicros",
    "MixedPrefillOverheadMicros",
    "AllReduceLatency",
    "bwEfficiencyFactor",
    "perLayerOverhead",
)

#: Fields that shift per-request client-side latencies (not the engine step).
REQUEST_FIELDS = (
    "RequestOverheadMicros",
    "PromptTokenOverheadMicros",
    "FirstTokenDelaySteps",
    "OutputTokenOverheadMicros",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Hardware:
    """One GPU entry of a hardware config file (SPEC_inputs_outputs §1)."""

    name: str
    tflops_peak: float
    bw_peak_tbs: float
    t_overhead_us: float = 0.0
    prefill_overhead_us: float = 0.0
    mixed_prefill_overhead_us: float = 0.0
    allreduce_latency_us: float = 0.0
    bw_efficiency_factor: float = 0.0
    per_layer_overhead_us: float = 0.0
    memory_gib: float = 0.0
    bw_eff_constant: float = 0.0
    mfu_prefill: float = 0.0
    mfu_decode: float = 0.0
    step_cost_scale: float = 1.0  # every step time x this (plan's sensitivity band)
    price_per_gpu_hour: float = 0.0  # USD, 0 = unknown (catalog fact, not simulated)
    cross_validated_error: float = 0.0  # relative, 0 = unknown (catalog fact)
    prefill_compute_scale: float = 0.0
    decode_compute_scale: float = 0.0
    step_request_overhead_us: float = 0.0
    layer_overhead_us: float = 0.0
    allreduce_peer_latency_us: float = 0.0
    allreduce_bw_gbs: float = 0.0
    request_overhead_us: float = 0.0
    prompt_token_overhead_us: float = 0.0
    first_token_delay_steps: float = 0.0
    output_token_overhead_us: float = 0.0
    tflops_peak_fp8: float = 0.0
    tflops_peak_fp4: float = 0.0
    interconnect_gbs: float = 0.0
    moe_gemm_efficiency: float = 0.0
    moe_bw_efficiency: float = 0.0
    source: str = ""
    ignored_fields: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        where = self.source or None

        def bad(fname: str, value: object, why: str) -> ConfigError:
            return ConfigError(why, file=where, field=f"{self.name}.{fname}", value=value)

        for fname, attr in HARDWARE_FIELDS.items():
            v = getattr(self, attr)
            if not _is_number(v):
                raise bad(fname, v, "must be a number")
            if not math.isfinite(v):
                raise bad(fname, v, "must be finite")
        for spec in HARDWARE_FIELD_SPECS:
            v = getattr(self, spec.attr)
            if spec.required and not v > 0:
                raise bad(spec.name, v, "must be > 0")
        for fname, (lo, hi) in HARDWARE_RANGES.items():
            v = getattr(self, HARDWARE_FIELDS[fname])
            if v and not lo <= v <= hi:
                raise bad(fname, v, f"must be between {lo:g} and {hi:g} (0 = not set)")
        for fname in (
            "TOverheadMicros",
            "PrefillOverheadMicros",
            "MixedPrefillOverheadMicros",
            "AllReduceLatency",
            "perLayerOverhead",
            "MemoryGiB",
            "TFlopsPeakFP8",
            "TFlopsPeakFP4",
            "InterconnectGBs",
        ):
            v = getattr(self, HARDWARE_FIELDS[fname])
            if v < 0:
                raise bad(fname, v, "must be >= 0")
        for fname in ("bwEfficiencyFactor", "BwEffConstant", "mfuPrefill", "mfuDecode"):
            v = getattr(self, HARDWARE_FIELDS[fname])
            if v < 0 or v > 1:
                raise bad(fname, v, "must be between 0 and 1 (0 = not set)")
        if not self.step_cost_scale > 0:
            raise bad("StepCostScale", self.step_cost_scale, "must be > 0")
        for fname, attr in CATALOG_FIELDS.items():
            v = getattr(self, attr)
            if not _is_number(v) or not math.isfinite(v) or v < 0:
                raise bad(fname, v, "must be a finite number >= 0 (0 = unknown)")
        for spec in HARDWARE_FIELD_SPECS:
            v = getattr(self, spec.attr)
            if v < spec.lo:
                raise bad(spec.name, v, f"must be >= {spec.lo:g}")
            if v > spec.hi:
                raise bad(
                    spec.name, v, f"must be between {spec.lo:g} and {spec.hi:g} (0 = not set)"
                )

    # -- derived -------------------------------------------------------------------------
    @property
    def has_v1_efficiencies(self) -> bool:
        return self.mfu_prefill > 0 and self.mfu_decode > 0

    def to_entry(self) -> dict[str, float]:
        """The JSON entry (canonical field names; zero optional fields left out)."""
        out: dict[str, float] = {}
        for fname, attr in HARDWARE_FIELDS.items():
            v = getattr(self, attr)
            if fname in ("TFlopsPeak", "BwPeakTBs") or v != _FIELD_DEFAULTS.get(fname, 0):
                out[fname] = float(v)
        for fname, attr in CATALOG_FIELDS.items():
            if getattr(self, attr):
                out[fname] = float(getattr(self, attr))
        return out

    def with_fields(self, **fields: float) -> Hardware:
        """A copy with some JSON fields replaced (canonical or any-case names)."""
        kwargs = {a: getattr(self, a) for a in HARDWARE_FIELDS.values()}
        for key, v in fields.items():
            canon = _FIELD_BY_LOWER.get(key.lower())
            if canon is None:
                canon = next((k for k, a in HARDWARE_FIELDS.items() if a == key), None)
            if canon is None:
                raise ConfigError(
                    "unknown hardware field", field=key, hint="known: " + ", ".join(HARDWARE_FIELDS)
                )
            kwargs[HARDWARE_FIELDS[canon]] = v
        facts = {a: getattr(self, a) for a in CATALOG_FIELDS.values()}
        return Hardware(name=self.name, source=self.source, **kwargs, **facts)


def parse_hardware_entry(name: str, entry: object, *, source: str = "") -> Hardware:
    """Build a Hardware from one JSON entry (keys matched case-insensitively)."""
    if not isinstance(entry, dict):
        raise ConfigError(
            "entry must be a JSON object", file=source or None, field=name, value=entry
        )
    kwargs: dict[str, object] = {}
    ignored = []
    for key, value in entry.items():
        if str(key).startswith("_"):  # a comment
            ignored.append(str(key))
            continue
        fact = _CATALOG_BY_LOWER.get(str(key).lower())
        if fact is not None:  # a catalog fact (price, CV error), not a simulation input
            if value is not None:
                kwargs[CATALOG_FIELDS[fact]] = value
            continue
        canon = _FIELD_BY_LOWER.get(str(key).lower())
        if canon is None:
            close = [
                _FIELD_BY_LOWER[c]
                for c in difflib.get_close_matches(
                    str(key).lower(), list(_FIELD_BY_LOWER), n=1, cutoff=0.5
                )
            ]
            raise ConfigError(
                "unknown hardware field",
                file=source or None,
                field=f"{name}.{key}",
                value=value,
                hint=(f"did you mean {close[0]}? " if close else "")
                + "known: "
                + ", ".join([*HARDWARE_FIELDS, *CATALOG_FIELDS])
                + "; keys starting with _ are comments",
            )
        if value is None:
            continue
        kwargs[HARDWARE_FIELDS[canon]] = value
    for req in ("TFlopsPeak", "BwPeakTBs"):
        if HARDWARE_FIELDS[req] not in kwargs:
            raise ConfigError(
                "required field is missing", file=source or None, field=f"{name}.{req}"
            )
    return Hardware(name=name, source=source, ignored_fields=tuple(ignored), **kwargs)


def hardware_names(path: Path) -> list[str]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise ConfigError("must be a JSON object keyed by GPU name", file=path)
    return [k for k, v in data.items() if not str(k).startswith("_")]


@lru_cache(maxsize=256)
def _load_hardware_cached(path: str, mtime: float, gpu: str) -> Hardware:
    data = read_json(path)
    if not isinstance(data, dict):
        raise ConfigError("must be a JSON object keyed by GPU name", file=path)
    names = {str(k).lower(): k for k in data if not str(k).startswith("_")}
    key = names.get(gpu.lower())
    if key is None:
        raise ConfigError(
            "unknown GPU",
            file=path,
            field="hardware",
            value=gpu,
            hint="this file has: " + ", ".join(sorted(names.values())),
        )
    return parse_hardware_entry(str(key), data[key], source=path)


def load_hardware(gpu: str, hardware_config: str | os.PathLike | None = None) -> Hardware:
    """The entry for ``gpu`` (case-insensitive) in a hardware config file or alias."""
    if not gpu or not str(gpu).strip():
        raise ConfigError("no GPU given", field="hardware")
    path = resolve_hardware_file(hardware_config)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = 0.0
    return _load_hardware_cached(str(path), mtime, str(gpu))


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

DTYPE_BYTES = {
    "float32": 4,
    "fp32": 4,
    "float16": 2,
    "fp16": 2,
    "half": 2,
    "bfloat16": 2,
    "bf16": 2,
    "int8": 1,
    "uint8": 1,
    "fp8": 1,
    "float8": 1,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "int4": 1,
    "nf4": 1,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """The architecture facts the roofline needs, read from a HuggingFace config.json."""

    name: str
    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    intermediate: int
    bytes_per_param: float
    vocab: int = 0
    source: str = ""
    is_moe: bool = False
    # MoE, MLA, sliding window, explicit head_dim (None: a plain dense transformer), and the
    # deployment's choices (engine/config/arch.py; defaults keep the reference's numbers)
    arch: _arch.Arch | None = None
    weight_dtype: str = "auto"
    kv_cache_dtype: str = "auto"
    ep: int = 1
    dp: int = 1
    moe_skew: float = 0.0

    def __post_init__(self) -> None:
        where = self.source or None
        for fname, v in (
            ("num_hidden_layers", self.n_layers),
            ("hidden_size", self.hidden),
            ("num_attention_heads", self.n_heads),
            ("num_key_value_heads", self.n_kv_heads),
            ("intermediate_size", self.intermediate),
            ("vocab_size", self.vocab),
        ):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError("must be an integer", file=where, field=fname, value=v)
            if v <= 0 and fname not in ("intermediate_size", "vocab_size"):
                raise ConfigError("must be a positive integer", file=where, field=fname, value=v)
        if self.n_kv_heads > self.n_heads or self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"must divide num_attention_heads ({self.n_heads})",
                file=where,
                field="num_key_value_heads",
                value=self.n_kv_heads,
            )
        if self.hidden % self.n_heads:
            raise ConfigError(
                f"must be divisible by num_attention_heads ({self.n_heads})",
                file=where,
                field="hidden_size",
                value=self.hidden,
            )
        if self.intermediate < 0:
            raise ConfigError(
                "must be >= 0",
                file=self.source or None,
                field="intermediate_size",
                value=self.intermediate,
            )
        if not (self.bytes_per_param > 0 and math.isfinite(self.bytes_per_param)):
            raise ConfigError(
                "must be > 0",
                file=self.source or None,
                field="bytes_per_param",
                value=self.bytes_per_param,
            )

    @property
    def head_dim(self) -> int:
        """hd = d div H (the integer head dim of the reference's GEMM shapes and MFU keys), or
        the config's explicit ``head_dim`` where it differs."""
        if self.arch is not None and self.arch.head_dim:
            return self.arch.head_dim
        return self.hidden // self.n_heads

    @property
    def weight_bpp(self) -> float:
        """Bytes per parameter of the linear layers under the deployment's weight dtype."""
        return _arch.weight_bpp(self)

    @property
    def kv_bpp(self) -> float:
        """Bytes per KV-cache element under the deployment's KV-cache dtype."""
        if self.kv_cache_dtype == "auto":
            return self.bytes_per_param
        return _arch.KV_DTYPES[self.kv_cache_dtype]

    @property
    def extended(self) -> bool:
        """Whether the step cost needs the extended tables (not the reference's formulas)."""
        return (
            self.arch is not None
            or self.weight_bpp != self.bytes_per_param
            or self.ep > 1
            or self.dp > 1
        )

    @property
    def n_params(self) -> float:
        return _arch.param_counts(self)["total"]

    @property
    def n_active_params(self) -> float:
        return _arch.param_counts(self)["active"]

    def deployed(
        self,
        *,
        weight_dtype: str = "auto",
        kv_cache_dtype: str = "auto",
        ep: int = 1,
        moe_skew: float = 0.0,
        dp: int = 1,
    ) -> ModelConfig:
        """This model served with a weight dtype, KV-cache dtype, expert parallelism, attention
        data parallelism and routing skew (``auto``: the checkpoint's dtypes)."""
        return _arch.deployed(self, weight_dtype, kv_cache_dtype, ep, moe_skew, dp)

    @property
    def d_ff(self) -> int:
        return self.intermediate if self.intermediate > 0 else 4 * self.hidden

    @property
    def attention_key(self) -> str:
        return f"{self.n_heads}-{self.n_kv_heads}-{self.head_dim}"

    @property
    def weight_bytes(self) -> float:
        """W_b exactly as the reference computes it (REFERENCE §5.5)."""
        if self.arch is not None:
            return _arch.weight_bytes(self)
        d = float(self.hidden)
        dh = d / float(self.n_heads)
        d_kv = float(self.n_kv_heads) * dh
        d_ff = float(self.d_ff)
        per_layer = d * (d + 2 * d_kv) + (d * d) + (3 * d * d_ff)
        return per_layer * float(self.n_layers) * float(self.weight_bpp)

    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes per token for the whole model (all layers, K and V; MLA: the latent
        and the rope key)."""
        if self.arch is not None and self.arch.is_mla:
            a = self.arch
            return float(self.n_layers) * (a.kv_lora_rank + a.qk_rope_head_dim) * self.kv_bpp
        dh = self.arch.head_dim if self.arch is not None and self.arch.head_dim else None
        return (
            2.0
            * self.n_layers
            * self.n_kv_heads
            * (dh if dh is not None else self.hidden / self.n_heads)
            * self.kv_bpp
        )

    def tp_divides_heads(self, tp: int) -> bool:
        return self.n_heads % tp == 0 and self.n_kv_heads % tp == 0


def _count_field(
    cfg: dict, keys: tuple[str, ...], source: str, *, required: bool, positive: bool = True
) -> tuple[int, str | None]:
    """The first of ``keys`` present in ``cfg``, checked to be a whole number (> 0, or >= 0
    when not ``positive``): (value, key); (0, None) when none is present and not required.

    JSON floats with an integral value (``32.0``) are accepted; fractions, NaN, infinities,
    booleans and strings are errors naming the file, the key and the value."""
    for k in keys:
        if k not in cfg or cfg[k] is None:
            continue
        v = cfg[k]
        if not _is_number(v) or not math.isfinite(v) or float(v) != int(v):
            raise ConfigError("must be a whole number", file=source, field=k, value=v)
        iv = int(v)
        if iv < (1 if positive else 0):
            raise ConfigError(
                "must be a positive integer" if positive else "must be >= 0",
                file=source,
                field=k,
                value=v,
            )
        return iv, k
    if required:
        raise ConfigError("required key is missing", file=source, field=keys[0])
    return 0, None


def parse_model_config(cfg: object, *, name: str, source: str) -> ModelConfig:
    if not isinstance(cfg, dict):
        raise ConfigError("config.json must hold a JSON object", file=source)
    merged = dict(cfg)
    if isinstance(cfg.get("text_config"), dict):
        merged.update(cfg["text_config"])
    n_layers, _ = _count_field(merged, ("num_hidden_layers",), source, required=True)
    hidden, _ = _count_field(merged, ("hidden_size",), source, required=True)
    heads, _ = _count_field(merged, ("num_attention_heads",), source, required=True)
    kv, kv_key = _count_field(
        merged,
        ("num_key_value_heads", "num_kv_heads", "multi_query_group_num"),
        source,
        required=False,
    )
    if kv_key is None:
        kv = heads  # no grouped-query attention: one KV head per attention head
    elif kv > heads or heads % kv:
        raise ConfigError(
            f"must divide num_attention_heads ({heads})"
            if kv <= heads
            else f"must not exceed num_attention_heads ({heads})",
            file=source,
            field=kv_key,
            value=merged[kv_key],
        )
    if hidden % heads and not merged.get("head_dim"):
        raise ConfigError(
            f"must be divisible by num_attention_heads ({heads})",
            file=source,
            field="hidden_size",
            value=merged["hidden_size"],
            hint="the roofline uses head_dim = hidden_size / num_attention_heads",
        )
    inter, _ = _count_field(
        merged, ("intermediate_size", "ffn_hidden_size"), source, required=False
    )
    vocab, _ = _count_field(merged, ("vocab_size",), source, required=False, positive=False)
    dtype_key = "torch_dtype" if isinstance(merged.get("torch_dtype"), str) else "dtype"
    dtype = merged.get(dtype_key)
    if dtype is None and isinstance(merged.get("quantization_config"), dict):
        dtype = "bfloat16"  # a quantised checkpoint without torch_dtype (gpt-oss): bf16 activations
    if dtype is None:
        raise ConfigError(
            'no dtype: set torch_dtype (e.g. "bfloat16")', file=source, field="torch_dtype"
        )
    if not isinstance(dtype, str) or dtype.lower() not in DTYPE_BYTES:
        raise ConfigError(
            "unknown dtype",
            file=source,
            field=dtype_key,
            value=dtype,
            hint="known: " + ", ".join(sorted(set(DTYPE_BYTES))),
        )
    if not vocab and merged.get("model_type") == "gemma3_text":
        vocab = 262208  # Gemma3TextConfig's default (the official file omits it)
    arch = _arch.parse_arch(merged, n_layers=n_layers, hidden=hidden, heads=heads, source=source)
    return ModelConfig(
        name=name,
        n_layers=n_layers,
        hidden=hidden,
        n_heads=heads,
        n_kv_heads=kv,
        intermediate=inter,
        bytes_per_param=float(DTYPE_BYTES[dtype.lower()]),
        vocab=vocab,
        source=source,
        is_moe="num_local_experts" in merged or (arch is not None and arch.is_moe),
        arch=arch,
    )


@lru_cache(maxsize=256)
def _load_model_cached(path: str, mtime: float, name: str) -> ModelConfig:
    return parse_model_config(read_json(path), name=name, source=path)


def load_model(model: str | None = None, folder: str | os.PathLike | None = None) -> ModelConfig:
    """Model config from ``--model-config-folder`` or from a name in ``data/models``."""
    d = resolve_model_folder(model, folder)
    path = d / "config.json"
    if not path.is_file():
        raise ConfigError("config.json not found in model folder", file=d)
    label = (model or d.name).lower()
    return _load_model_cached(str(path), path.stat().st_mtime, label)


def check_tp(tp: object, field_name: str = "tp") -> int:
    if isinstance(tp, bool) or not isinstance(tp, (int, float)) or tp != int(tp):
        raise ConfigError("must be an integer >= 1", field=field_name, value=tp)
    if int(tp) < 1:
        raise ConfigError("must be an integer >= 1", field=field_name, value=tp)
    return int(tp)
