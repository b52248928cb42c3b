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
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infersweep import settings
from infersweep.errors import ConfigError

#: keys of the [sweep] table that are not settings
SECTION_KEYS = {"name", "description"}
#: run options a spec may set in [sweep] (the command-line flags of the same names win):
#: name -> (check, default)
RUN_OPTIONS: dict[str, tuple[str, Any]] = {
    "threads": ("an integer >= 1", None),
    "chunk_size": ("an integer >= 1", None),
    "per_request": ("true or false", False),
}


def _run_option(name: str, value: Any, where: str | None) -> Any:
    if name == "per_request":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if not ok:
        raise ConfigError(f"must be {RUN_OPTIONS[name][0]}", file=where, field=name, value=value)
    return value


def canonical(name: str, where: str | None = None) -> str:
    """The canonical name of an axis or fixed setting (registry: :mod:`infersweep.settings`)."""
    return settings.canonical(name, where)


def coerce(name: str, value: Any, where: str | None = None) -> Any:
    """A setting value with its type and range checked (one error naming field and value)."""
    if value is None:
        raise ConfigError("must have a value", file=where, field=name, value=value)
    return settings.check(name, value, where)


@dataclass
class SweepSpec:
    """Axes (ordered) and fixed settings of a sweep."""

    name: str = "sweep"
    axes: dict[str, list] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # RUN_OPTIONS given by the spec

    def run_options(self, **flags: Any) -> dict[str, Any]:
        """threads, chunk_size, per_request: a flag that is not None wins over the spec."""
        out = {}
        for name, (_, default) in RUN_OPTIONS.items():
            v = flags.get(name)
            if v is not None:
                v = _run_option(name, v, f"--{name.replace('_', '-')}")
            out[name] = v if v is not None else self.options.get(name, default)
        return out

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
        values = settings.defaults()
        values.update(self.fixed)
        idx = []
        for n in reversed(self.shape):
            idx.append(i % n)
            i //= n
        for (k, vals), j in zip(self.axes.items(), reversed(idx)):
            values[k] = vals[j]
        return values

    def points(self):
        for i in range(self.n_points):
            yield self.point(i)

    def to_dict(self) -> dict:
        return {"sweep": {"name": self.name, **self.fixed}, "grid": dict(self.axes)}

    def to_parts(self) -> dict:
        """The checked settings as plain data (the manifest's and Dask's form): name, fixed,
        axes.  ``from_parts`` rebuilds the spec without checking the values again."""
        return {"name": self.name, "fixed": dict(self.fixed), "axes": dict(self.axes)}

    @classmethod
    def from_parts(cls, d: dict) -> SweepSpec:
        return cls(
            name=d.get("name", "sweep"),
            fixed=dict(d["fixed"]),
            axes={k: list(v) for k, v in d["axes"].items()},
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    def digest(self) -> str:
        """A hash of what determines the result (name excluded)."""
        d = {"fixed": sorted(self.fixed.items()), "axes": list(self.axes.items())}
        return hashlib.sha256(json.dumps(d, default=str).encode()).hexdigest()[:16]


#: tables of a plan spec (``infersweep plan``): a sweep reads such a spec and ignores them, so
#: that ``sweep PLAN.toml --rate ...`` simulates the plan's grid at chosen rates
PLAN_TABLES = ("slo", "plan")


def load_spec(path: str | os.PathLike | None = None) -> SweepSpec:
    """Read a TOML sweep spec (or start an empty one); a plan spec's [slo] and [plan] tables
    are allowed and ignored."""
    return load_spec_tables(path, PLAN_TABLES)[0]


def load_spec_tables(
    path: str | os.PathLike | None = None, extra_tables: tuple[str, ...] = ()
) -> tuple[SweepSpec, dict]:
    """Read a TOML spec that may also hold the tables ``extra_tables`` (``plan``'s [slo] and
    [plan]); returns the sweep spec and those tables (unchecked)."""
    spec = SweepSpec()
    if path is None:
        return spec, {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError("sweep spec not found" if not p.exists() else "is not a file", file=p)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed TOML: {exc}", file=p) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the spec ({exc})", file=p) from None
    spec = spec_from_dict(data, where=str(p), extra_tables=extra_tables)
    spec.source = str(p)
    return spec, {t: data[t] for t in extra_tables if t in data}


def spec_from_dict(
    data: dict, where: str | None = None, extra_tables: tuple[str, ...] = ()
) -> SweepSpec:
    """A spec from its dict form: ``{"sweep": {fixed settings}, "grid": {axis: [values]}}``
    (tables named in ``extra_tables`` are allowed and left to the caller)."""
    spec = SweepSpec()
    unknown_tables = set(data) - {"sweep", "grid", *extra_tables}
    if unknown_tables:
        raise ConfigError(
            "unknown table(s): " + ", ".join(sorted(unknown_tables)),
            file=where,
            hint="a spec has [sweep] (fixed settings) and [grid] (axes)"
            + "".join(f", [{t}]" for t in extra_tables),
        )
    sweep = data.get("sweep", {})
    grid = data.get("grid", {})
    if not isinstance(sweep, dict) or not isinstance(grid, dict):
        raise ConfigError("[sweep] and [grid] must be tables", file=where)
    for k, v in sweep.items():
        if k == "name":
            if not isinstance(v, str):
                raise ConfigError("must be a string", file=where, field="sweep.name", value=v)
            spec.name = v
        elif k == "description":
            continue
        elif k in RUN_OPTIONS:
            spec.options[k] = _run_option(k, v, where)
        else:
            spec.set_fixed(k, v, where=where)
    for k, v in grid.items():
        if not isinstance(v, list):
            raise ConfigError(
                "an axis must be a list of values", file=where, field=f"grid.{k}", value=v
            )
        spec.add_axis(k, v, where=where)
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
            raise ConfigError("an axis needs at least one value", field=name)
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
