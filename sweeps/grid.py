"""Sweep specs: a TOML file and/or CLI axes -> a validated grid of run settings.

A spec names the grid axes (any scalar ``run`` setting, or a hardware-entry field such as
``TOverheadMicros``) and fixed settings::

    [sweep]
    name = "example"
    num_requests = 1000
    seed = 42

    [grid]
    hardware = ["H100", "A100-SXM"]
    model = ["llama-3.1-8b-instruct", "qwen2.5-7b-instruct"]
    tp = [1, 2, 4]
    workload = ["chatbot", "summarization"]
    rate = [1, 2, 4, 8, 16]

Points are the cartesian product of the axes in spec order (the last axis varies fastest).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infersweep.config.models import HARDWARE_FIELDS
from infersweep.errors import ConfigError

# setting -> (kind, default).  kinds: str, int, float, bool, kv (int or "auto")
SETTINGS: dict[str, tuple[str, Any]] = {
    "model": ("str", None),
    "model_config_folder": ("str", None),
    "hardware": ("str", "H100"),
    "hardware_config": ("str", None),
    "tp": ("int", 1),
    "bench_data": ("str", None),
    "step_model": ("str", "auto"),
    "workload": ("str", "distribution"),
    "trace": ("str", None),
    "rate": ("float", 1.0),
    "num_requests": ("int", 100),
    "seed": ("int", 42),
    "arrival": ("str", "constant"),
    "arrival_cv": ("float", 2.0),
    "prompt_tokens": ("int", 512),
    "prompt_tokens_stdev": ("int", 256),
    "prompt_tokens_min": ("int", 2),
    "prompt_tokens_max": ("int", 7000),
    "output_tokens": ("int", 512),
    "output_tokens_stdev": ("int", 256),
    "output_tokens_min": ("int", 2),
    "output_tokens_max": ("int", 7000),
    "prefix_tokens": ("int", 0),
    "semantics": ("str", "vllm"),
    "max_num_scheduled_tokens": ("int", 2048),
    "max_num_running_reqs": ("int", 256),
    "long_prefill_token_threshold": ("int", 0),
    "block_size": ("int", 16),
    "total_kv_blocks": ("kv", "auto"),
    "gpu_memory_utilization": ("float", 0.9),
    "prefix_caching": ("bool", True),
    "horizon": ("float", 0.0),
    "blis_preemption": ("str", "reference"),
}
ALIASES = {
    "block_size_in_tokens": "block_size",
    "workload_traces_filepath": "trace",
    "bench_data_path": "bench_data",
    "gpu": "hardware",
    "num_prompts": "num_requests",
}
#: hardware-entry fields usable as axes or fixed settings (canonical JSON names)
HW_FIELDS = {k.lower(): k for k in HARDWARE_FIELDS}
#: axes whose labels carry per-label facts in the result (non-dimension coords)
SECTION_KEYS = {"name", "description", "threads", "chunk_size", "per_request"}


def canonical(name: str, where: str | None = None) -> str:
    """The canonical setting name of an axis or fixed setting (error when unknown)."""
    key = str(name).strip()
    low = key.lower().replace("-", "_")
    if low in SETTINGS:
        return low
    if low in ALIASES:
        return ALIASES[low]
    if key.lower() in HW_FIELDS:
        return HW_FIELDS[key.lower()]
    known = sorted(SETTINGS) + sorted(HARDWARE_FIELDS)
    raise ConfigError(
        "unknown setting", file=where, field=str(name), hint="known: " + ", ".join(known)
    )


def coerce(name: str, value: Any, where: str | None = None) -> Any:
    """A setting value with its type checked (one error naming the field and value)."""
    kind = SETTINGS[name][0] if name in SETTINGS else "float"

    def bad(why: str) -> ConfigError:
        return ConfigError(why, file=where, field=name, value=value)

    if value is None:
        raise bad("must have a value")
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise bad("must be a non-empty string")
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise bad("must be true or false")
    if kind == "kv":
        if isinstance(value, str) and value.lower() == "auto":
            return "auto"
        kind = "int"
    if isinstance(value, bool):
        raise bad(f"must be {'an integer' if kind == 'int' else 'a number'}")
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise bad("must be an integer") from None
        if not isinstance(value, int):
            raise bad("must be an integer")
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise bad("must be a number") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad("must be a finite number")
    return float(value)


@dataclass
class SweepSpec:
    """Axes (ordered) and fixed settings of a sweep."""

    name: str = "sweep"
    axes: dict[str, list] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def add_axis(self, name: str, values: list, where: str | None = None) -> None:
        key = canonical(name, where)
        if not isinstance(values, list):
            values = [values]
        if len(values) == 0:
            raise ConfigError("an axis needs at least one value", file=where, field=key)
        vals = [coerce(key, v, where) for v in values]
        if len(set(map(repr, vals))) != len(vals):
            raise ConfigError("an axis lists a value twice", file=where, field=key, value=values)
        self.fixed.pop(key, None)
        self.axes[key] = vals

    def set_fixed(self, name: str, value: Any, where: str | None = None) -> None:
        key = canonical(name, where)
        if isinstance(value, list):
            raise ConfigError(
                "a fixed setting takes one value (put lists under [grid])",
                file=where,
                field=key,
                value=value,
            )
        self.fixed[key] = coerce(key, value, where)
        self.axes.pop(key, None)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.axes.values())

    @property
    def n_points(self) -> int:
        return math.prod(self.shape) if self.axes else 1

    def point(self, i: int) -> dict[str, Any]:
        """The settings of point i (C order over the axes)."""
        settings = {k: d for k, (_, d) in SETTINGS.items()}
        settings.update(self.fixed)
        idx = []
        for n in reversed(self.shape):
            idx.append(i % n)
            i //= n
        for (k, vals), j in zip(self.axes.items(), reversed(idx)):
            settings[k] = vals[j]
        return settings

    def points(self):
        for i in range(self.n_points):
            yield self.point(i)

    def to_dict(self) -> dict:
        return {"sweep": {"name": self.name, **self.fixed}, "grid": dict(self.axes)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    def digest(self) -> str:
        """A hash of what determines the result (name excluded)."""
        d = {"fixed": sorted(self.fixed.items()), "axes": list(self.axes.items())}
        return hashlib.sha256(json.dumps(d, default=str).encode()).hexdigest()[:16]


def load_spec(path: str | os.PathLike | None = None) -> SweepSpec:
    """Read a TOML sweep spec (or start an empty one)."""
    spec = SweepSpec()
    if path is None:
        return spec
    p = Path(path)
    if not p.is_file():
        raise ConfigError("sweep spec not found" if not p.exists() else "is not a file", file=p)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed TOML: {exc}", file=p) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the spec ({exc})", file=p) from None
    spec.source = str(p)
    unknown_tables = set(data) - {"sweep", "grid"}
    if unknown_tables:
        raise ConfigError(
            "unknown table(s): " + ", ".join(sorted(unknown_tables)),
            file=p,
            hint="a spec has [sweep] (fixed settings) and [grid] (axes)",
        )
    sweep = data.get("sweep", {})
    grid = data.get("grid", {})
    if not isinstance(sweep, dict) or not isinstance(grid, dict):
        raise ConfigError("[sweep] and [grid] must be tables", file=p)
    for k, v in sweep.items():
        if k == "name":
            if not isinstance(v, str):
                raise ConfigError("must be a string", file=p, field="sweep.name", value=v)
            spec.name = v
        elif k in SECTION_KEYS:
            continue
        else:
            spec.set_fixed(k, v, where=str(p))
    for k, v in grid.items():
        if not isinstance(v, list):
            raise ConfigError(
                "an axis must be a list of values", file=p, field=f"grid.{k}", value=v
            )
        spec.add_axis(k, v, where=str(p))
    return spec


def parse_cli_axes(
    spec: SweepSpec, options: dict[str, list[str]], sets: list[str], axes: list[str]
) -> SweepSpec:
    """Add CLI axes: repeatable options (``--tp 1 --tp 2``, comma lists ``--rate 1,2,4``),
    ``--set key=value`` fixed settings and ``--axis key=v1,v2`` axes."""
    for name, raw in options.items():
        if not raw:
            continue
        values: list[str] = []
        for item in raw:
            values += [v.strip() for v in str(item).split(",") if v.strip() != ""]
        if not values:
            raise ConfigError("an axis needs at least one value", field=f"--{name}")
        spec.add_axis(name, values)
    for item in axes:
        if "=" not in item:
            raise ConfigError("expected KEY=V1,V2,...", field="--axis", value=item)
        k, v = item.split("=", 1)
        vals = [x.strip() for x in v.split(",") if x.strip() != ""]
        spec.add_axis(k, vals)
    for item in sets:
        if "=" not in item:
            raise ConfigError("expected KEY=VALUE", field="--set", value=item)
        k, v = item.split("=", 1)
        spec.set_fixed(k, v.strip())
    return spec


def axis_product(spec: SweepSpec):
    return itertools.product(*spec.axes.values())
