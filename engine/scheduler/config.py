"""Scheduler settings: the value object that the scheduler settings of the registry feed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infersweep import settings
from infersweep.errors import ConfigError

LIVELOCK_NOTE = (
    "blis semantics: the reference simulator would not terminate on this run (a "
    "preemption livelock, quirk Q3); it ran with blis_preemption safe instead"
)
BLIS_DEFAULT_BLOCKS = 1_000_000  # REFERENCE_SEMANTICS: the reference's default KV block count
NO_MEMORY_BLOCKS = 1_000_000  # vllm semantics without MemoryGiB: as many as blis assumes
MAX_IDLE_STEPS = 100_000  # stall guard: consecutive steps without progress before stopping


class SplitError(ConfigError):
    """Settings that do not form a prefill/decode split: one pool without the other, or a
    split's settings without a split.  A sweep or plan whose axes vary the pools reports such a
    point as invalid (a grid of prefill_instances x decode_instances compares colocated and
    disaggregated serving); anywhere else it is an error."""


_SCHEDULER = settings.group("scheduler")
_VALIDATED: set = set()  # value sets (with their types) that passed SchedulerConfig's checks


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerConfig:
    """Batch formation and KV-cache settings (the settings of group ``scheduler``; defaults and
    checks from :mod:`infersweep.settings`)."""

    semantics: str = settings.field_default("semantics")
    max_num_scheduled_tokens: int = settings.field_default("max_num_scheduled_tokens")
    max_num_running_reqs: int = settings.field_default("max_num_running_reqs")
    long_prefill_token_threshold: int = settings.field_default("long_prefill_token_threshold")
    block_size: int = settings.field_default("block_size")
    total_kv_blocks: int | str | None = None  # None or "auto": auto (vllm) / 1,000,000 (blis)
    gpu_memory_utilization: float = settings.field_default("gpu_memory_utilization")
    prefix_caching: bool = settings.field_default("prefix_caching")
    max_idle_steps: int = MAX_IDLE_STEPS
    horizon_s: float = settings.field_default("horizon")  # 0 = none
    # blis semantics under preemption: "reference" copies the reference's quirks (Q3, a failed
    # allocation dropping the request's block list) and falls back to "safe" where the
    # reference would never terminate; "safe" skips requests evicted earlier in the same pass
    blis_preemption: str = settings.field_default("blis_preemption")
    # clusters (vllm semantics): replicas behind a router (see scheduler/cluster_nb.py)
    replicas: int = settings.field_default("replicas")
    router: str = settings.field_default("router")
    affinity_slack: int = settings.field_default("affinity_slack")
    snapshot_interval: float = settings.field_default("snapshot_interval")  # ms
    routing_latency: float = settings.field_default("routing_latency")  # ms
    router_seed: int = settings.field_default("router_seed")
    router_weights: str = settings.field_default("router_weights")  # LOAD:KV:PREFIX
    # prefill/decode disaggregation (vllm semantics; see scheduler/pd_nb.py)
    prefill_instances: int = settings.field_default("prefill_instances")
    decode_instances: int = settings.field_default("decode_instances")
    prefill_tp: int = settings.field_default("prefill_tp")  # 0 = the run's tp
    decode_tp: int = settings.field_default("decode_tp")
    prefill_hardware: str | None = settings.field_default("prefill_hardware")  # None = hardware
    decode_hardware: str | None = settings.field_default("decode_hardware")
    kv_link: str = settings.field_default("kv_link")
    kv_link_gbps: float | None = settings.field_default("kv_link_gbps")  # None = kv_link's
    kv_link_latency_us: float | None = settings.field_default("kv_link_latency_us")

    @property
    def disaggregated(self) -> bool:
        """Prefill/decode disaggregation is on (both pools given)."""
        return self.prefill_instances > 0 and self.decode_instances > 0

    @property
    def instances(self) -> int:
        """Instances the run simulates: P + D with disaggregation, else ``replicas``."""
        if self.disaggregated:
            return self.prefill_instances + self.decode_instances
        return max(self.replicas, 1)

    def link(self) -> tuple[float, float]:
        """The KV link's (bandwidth Gbit/s per GPU, latency µs)."""
        from infersweep.config.catalog import kv_link

        return kv_link(self.kv_link, self.kv_link_gbps, self.kv_link_latency_us)

    def weights(self) -> tuple[float, float, float]:
        """The weighted router's (load, KV, prefix) weights."""
        parts = str(self.router_weights).split(":")
        try:
            w = tuple(float(x) for x in parts)
        except ValueError:
            w = ()
        if len(w) != 3 or not all(0 <= x <= 1e6 for x in w):
            raise ConfigError(
                "must be three non-negative numbers LOAD:KV:PREFIX",
                field="router_weights",
                value=self.router_weights,
            )
        return w  # type: ignore[return-value]

    def __post_init__(self) -> None:
        # validation is a pure function of the values: each distinct set is checked once
        # (a tenth of a small run's Python time); keyed with the types, so that True is not 1
        try:
            key = tuple((type(v), v) for v in (getattr(self, s.attr) for s in _SCHEDULER))
            known = key in _VALIDATED
        except TypeError:  # an unhashable value: checked every time
            key, known = None, False
        if not known:
            self._validate()
            if key is not None:
                if len(_VALIDATED) > 4096:
                    _VALIDATED.clear()
                _VALIDATED.add(key)
        if isinstance(self.total_kv_blocks, str):  # "auto", checked
            object.__setattr__(self, "total_kv_blocks", None)

    def _validate(self) -> None:
        for s in _SCHEDULER:
            value = getattr(self, s.attr)
            if s.kind == "bool":
                if not isinstance(value, bool):
                    raise ConfigError("must be true or false", field=s.name, value=value)
            elif s.kind in ("int", "kv"):  # no silent conversions of floats in the API
                if value is not None and not (
                    isinstance(value, (int, np.integer, str)) and not isinstance(value, bool)
                ):
                    raise ConfigError(
                        "must be an integer" + (" or 'auto'" if s.kind == "kv" else ""),
                        field=s.name,
                        value=value,
                    )
                if value is not None and not isinstance(value, str):
                    settings.check(s.name, int(value))
                elif isinstance(value, str):
                    settings.check(s.name, value)
            else:
                settings.check(s.name, value)
        self.weights()  # checks the format
        if self.replicas > 1 and self.semantics == "blis":
            raise ConfigError(
                "replicas > 1 needs semantics vllm (the reference's cluster mode is not "
                "modelled for blis)",
                field="replicas",
                value=self.replicas,
            )
        self._check_disaggregation()
        if isinstance(self.max_idle_steps, bool) or self.max_idle_steps < 1:
            raise ConfigError(
                "must be an integer >= 1", field="max_idle_steps", value=self.max_idle_steps
            )

    def _check_disaggregation(self) -> None:
        p, d = self.prefill_instances, self.decode_instances
        if (p > 0) != (d > 0):
            zero, other = ("decode_instances", "prefill_instances") if p else (
                "prefill_instances", "decode_instances")  # fmt: skip
            raise SplitError(
                f"is 0 while {other} = {max(p, d)}: disaggregation needs both pools",
                field=zero,
                value=0,
                hint="give both prefill_instances and decode_instances (> 0), or neither",
            )
        if not self.disaggregated:
            given = [
                name
                for name in (
                    "prefill_tp",
                    "decode_tp",
                    "prefill_hardware",
                    "decode_hardware",
                    "kv_link",
                    "kv_link_gbps",
                    "kv_link_latency_us",
                )
                if getattr(self, name) != settings.default(name)
            ]
            if given:
                raise SplitError(
                    "is a setting of prefill/decode disaggregation, which is off",
                    field=", ".join(given),
                    hint="set prefill_instances and decode_instances (> 0) as well",
                )
            return
        if self.semantics == "blis":
            raise ConfigError(
                "prefill/decode disaggregation needs semantics vllm (the reference does not "
                "model it)",
                field="prefill_instances",
                value=p,
            )
        if self.replicas > 1:
            raise ConfigError(
                "replicas and prefill/decode disaggregation exclude each other: the pools' "
                "sizes are prefill_instances and decode_instances",
                field="replicas",
                value=self.replicas,
            )
        self.link()
