"""Sweep results: a tidy table (one row per point) <-> an ``xarray.Dataset`` <-> Parquet.

The Parquet file is long and tidy: the axis columns first in spec order, then one column per
metric (float64, null where a point is invalid; NaN in the Dataset), then ``status`` and
``reason``, then the per-label facts of the axes (``hardware_tflops_peak``,
``model_weight_gib``, ...).  The schema
metadata (key ``infersweep``) holds the dataset attributes, the variable attributes and the
exact axis labels, so that Dataset -> Parquet -> Dataset is lossless.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np

from infersweep import __version__
from infersweep.errors import ConfigError
from infersweep.metrics.summary import METRICS

META_KEY = b"infersweep"
STATUS_ATTRS = {
    "units": "1",
    "long_name": "point status",
    "description": "ok; invalid (see reason); stalled (no progress possible); "
    "horizon (stopped at --horizon)",
}
REASON_ATTRS = {
    "units": "1",
    "long_name": "why a point is invalid",
    "description": "Empty for valid points.",
}
FACT_ATTRS = {
    "hardware_tflops_peak": ("TFLOP/s", "peak dense BF16 throughput"),
    "hardware_bw_peak_tbs": ("TB/s", "peak HBM bandwidth"),
    "hardware_memory_gib": ("GiB", "HBM per GPU (NaN when unknown)"),
    "model_weight_gib": ("GiB", "weight bytes of the model"),
    "model_layers": ("1", "transformer layers"),
    "model_hidden": ("1", "hidden size"),
    "model_heads": ("1", "attention heads"),
    "model_kv_heads": ("1", "KV heads"),
}


def axis_array(values: list) -> np.ndarray:
    """Axis labels as a numpy array with a stable dtype (str -> unicode)."""
    if all(isinstance(v, str) for v in values):
        return np.array(values, dtype=str)
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.float64)
    return np.array([str(v) for v in values], dtype=str)


def _label(v):
    return v.item() if hasattr(v, "item") else v


def build_dataset(
    axes: dict[str, list],
    table: dict[str, np.ndarray],
    metric_names: list[str],
    facts: dict[str, dict[str, np.ndarray]],
    attrs: dict,
):
    """A Dataset with one dimension per axis from a tidy table sorted by point."""
    import xarray as xr

    dims = list(axes)
    shape = tuple(len(v) for v in axes.values()) if dims else ()
    coords: dict = {d: (d, axis_array(v)) for d, v in axes.items()}
    for axis, cols in facts.items():
        for name, vals in cols.items():
            coords[name] = (axis, np.asarray(vals))
    data_vars = {}
    for m in metric_names:
        info = METRICS.get(m)
        var_attrs = (
            {"units": info.units, "long_name": info.long_name, "description": info.description}
            if info
            else {}
        )
        data_vars[m] = (dims, np.asarray(table[m], np.float64).reshape(shape), var_attrs)
    data_vars["status"] = (
        dims,
        np.asarray(table["status"], dtype=str).reshape(shape),
        dict(STATUS_ATTRS),
    )
    data_vars["reason"] = (
        dims,
        np.asarray(table["reason"], dtype=str).reshape(shape),
        dict(REASON_ATTRS),
    )
    ds = xr.Dataset(data_vars=data_vars, coords=coords, attrs=dict(attrs))
    for name in facts_names(facts):
        units, long_name = FACT_ATTRS.get(name, ("1", name))
        ds[name].attrs.update({"units": units, "long_name": long_name})
    return ds


def facts_names(facts: dict) -> list[str]:
    return [n for cols in facts.values() for n in cols]


def dataset_attrs(spec, created: str | None = None) -> dict:
    return {
        "title": f"infersweep sweep {spec.name}",
        "sweep_name": spec.name,
        "infersweep_version": __version__,
        "spec": spec.to_json(),
        "spec_digest": spec.digest(),
        "created": created or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------------------------
# Parquet
# --------------------------------------------------------------------------------------------


def _meta(ds) -> dict:
    return {
        "attrs": dict(ds.attrs),
        "dims": list(ds.dims),
        "axes": {d: [_label(v) for v in ds[d].values] for d in ds.dims},
        "axis_dtypes": {d: str(ds[d].dtype.kind) for d in ds.dims},
        "variables": {n: dict(ds[n].attrs) for n in ds.data_vars},
        "facts": {
            n: {"dim": ds[n].dims[0], "attrs": dict(ds[n].attrs), "dtype": str(ds[n].dtype)}
            for n in ds.coords
            if n not in ds.dims
        },
    }


def dataset_to_table(ds):
    """The tidy pyarrow Table of a Dataset (axis columns, metrics, status, reason, facts)."""
    import pyarrow as pa

    dims = list(ds.dims)
    shape = tuple(ds.sizes[d] for d in dims)
    n = int(np.prod(shape)) if dims else 1
    cols: dict = {}
    if dims:
        grids = np.meshgrid(*[ds[d].values for d in dims], indexing="ij")
        for d, g in zip(dims, grids):
            cols[d] = g.reshape(n)
    for name in ds.data_vars:
        cols[name] = ds[name].values.reshape(n)
    for name in ds.coords:
        if name in ds.dims:
            continue
        dim = ds[name].dims[0]
        idx = np.unravel_index(np.arange(n), shape)[dims.index(dim)] if dims else np.zeros(1, int)
        cols[name] = ds[name].values[idx]
    arrays = {
        k: pa.array(v.tolist())
        if v.dtype.kind == "U"
        else pa.array(v, from_pandas=(k in ds.data_vars and v.dtype.kind == "f"))
        for k, v in cols.items()
    }  # metric NaN -> null, as the sweep writes them
    tbl = pa.table(arrays)
    return tbl.replace_schema_metadata({META_KEY: json.dumps(_meta(ds)).encode()})


def write_parquet(ds, path: str | Path) -> None:
    """Write the Dataset as tidy Parquet, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from infersweep.sweeps.io import atomic_write_bytes

    sink = pa.BufferOutputStream()
    pq.write_table(dataset_to_table(ds), sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def read_result_table(path: str | Path):
    """A sweep result (its folder or its ``result.parquet``) as (pyarrow table, metadata,
    file path); a clear ConfigError for a missing, unreadable or foreign file."""
    import pyarrow.parquet as pq

    p = Path(path)
    if p.is_dir():
        p = p / "result.parquet"
    if not p.is_file():
        raise ConfigError("sweep result not found", file=p)
    try:
        tbl = pq.read_table(p)
    except Exception as exc:
        raise ConfigError(f"not a readable Parquet file ({exc})", file=p) from None
    meta_raw = (tbl.schema.metadata or {}).get(META_KEY)
    if meta_raw is None:
        raise ConfigError("not an infersweep sweep result (no metadata)", file=p)
    return tbl, json.loads(meta_raw), p


def read_dataset(path: str | Path):
    """Read a sweep Parquet file back into the identical Dataset."""
    tbl, meta, _ = read_result_table(path)
    return table_to_dataset(tbl, meta)


def table_to_dataset(tbl, meta: dict):
    import xarray as xr

    dims = meta["dims"]
    shape = tuple(len(meta["axes"][d]) for d in dims)
    coords: dict = {}
    for d in dims:
        vals = meta["axes"][d]
        kind = meta["axis_dtypes"][d]
        arr = axis_array(vals)
        if kind == "f":
            arr = arr.astype(np.float64)
        coords[d] = (d, arr)
    n = tbl.num_rows
    if n != (int(np.prod(shape)) if dims else 1):
        raise ConfigError(f"the table has {n} rows for a grid of {int(np.prod(shape))} points")
    # rows may come in any order: sort them into C order of the axes
    order = np.arange(n)
    if dims:
        index = np.zeros(n, np.int64)
        for d, size in zip(dims, shape):
            lookup = {_label(v): i for i, v in enumerate(coords[d][1])}
            col = tbl.column(d).to_pylist()
            index = index * size + np.array([lookup[v] for v in col], np.int64)
        order = np.argsort(index, kind="stable")
    for name, info in meta["facts"].items():
        dim = info["dim"]
        col = np.asarray(tbl.column(name).to_numpy(zero_copy_only=False))[order].reshape(shape)
        axis_pos = dims.index(dim)
        first = np.moveaxis(col, axis_pos, 0).reshape(shape[axis_pos], -1)[:, 0]
        coords[name] = (dim, first.astype(info["dtype"]))
    data_vars = {}
    for name, attrs in meta["variables"].items():
        raw = tbl.column(name).to_numpy(zero_copy_only=False)[order]
        if name in ("status", "reason"):
            arr = np.asarray(raw, dtype=str)
        else:
            arr = np.asarray(raw, dtype=np.float64)
        data_vars[name] = (dims, arr.reshape(shape), dict(attrs))
    ds = xr.Dataset(data_vars=data_vars, coords=coords, attrs=dict(meta["attrs"]))
    for name, info in meta["facts"].items():
        ds[name].attrs.update(info["attrs"])
    return ds
