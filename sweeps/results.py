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
from typing import Any

import numpy as np

from infersweep import __version__, schema
from infersweep.errors import ConfigError
from infersweep.metrics.summary import REQUEST_COLUMNS
from infersweep.schema import M_DROPPED_UNSERVABLE as M_DROPPED
from infersweep.schema import M_STATUS, METRIC_COLUMNS, STATUS_NAMES, SUMMARY

META_KEY = b"infersweep"
STATUS_ATTRS = schema.attrs(schema.STATUS_VARIABLE)
REASON_ATTRS = schema.attrs(schema.REASON_VARIABLE)
FACT_ATTRS = {
    "hardware_tflops_peak": ("TFLOP/s", "peak dense BF16 throughput"),
    "hardware_bw_peak_tbs": ("TB/s", "peak HBM bandwidth"),
    "hardware_memory_gib": ("GiB", "HBM per GPU (NaN when unknown)"),
    "model_weight_gib": ("GiB", "weight bytes of the model"),
    "model_layers": ("1", "transformer layers"),
    "model_hidden": ("1", "hidden size"),
    "model_heads": ("1", "attention heads"),
    "model_kv_heads": ("1", "KV heads"),
    "model_params_b": ("1e9", "parameters (total; MoE: all experts)"),
    "model_active_params_b": ("1e9", "parameters active per token (MoE: routed top-k)"),
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


def build_variables_dataset(
    axes: dict[str, list],
    variables: dict[str, tuple[np.ndarray, dict]],
    facts: dict[str, dict[str, np.ndarray]],
    attrs: dict,
):
    """A Dataset with one dimension per axis from columns in point order, each with its own
    attributes (``plan``'s table: float, bool and string variables; an ``value_type`` attribute
    of ``integer`` writes a float column as nullable int64 Parquet)."""
    import xarray as xr

    dims = list(axes)
    shape = tuple(len(v) for v in axes.values()) if dims else ()
    coords: dict = {d: (d, axis_array(v)) for d, v in axes.items()}
    for axis, cols in facts.items():
        for name, vals in cols.items():
            coords[name] = (axis, np.asarray(vals))
    data_vars = {
        name: (dims, np.asarray(vals).reshape(shape), dict(var_attrs))
        for name, (vals, var_attrs) in variables.items()
    }
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
        "dtypes": {n: ds[n].dtype.kind for n in ds.data_vars},
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

    def arrow(k: str, v: np.ndarray):
        if v.dtype.kind == "U":
            return pa.array(v.tolist())
        if k in ds.data_vars and ds[k].attrs.get("value_type") == "integer":
            return pa.array(
                [None if not np.isfinite(x) else int(x) for x in v.tolist()], pa.int64()
            )
        return pa.array(v, from_pandas=(k in ds.data_vars and v.dtype.kind == "f"))

    arrays = {k: arrow(k, v) for k, v in cols.items()}  # metric NaN -> null, as sweeps write
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
        p = p / "result.parquet" if not (p / "plan.parquet").is_file() else p / "plan.parquet"
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


def read_result_columns(path: str | Path):
    """A sweep or plan result as numpy columns, its metadata and file path: integers without
    nulls as int64, other numbers as float64 (NaN for null), bools as bool, strings as
    object arrays."""
    import pyarrow as pa

    tbl, meta, p = read_result_table(path)
    cols: dict[str, np.ndarray] = {}
    for name in tbl.column_names:
        col = tbl.column(name)
        if pa.types.is_integer(col.type) and col.null_count == 0:
            cols[name] = col.to_numpy(zero_copy_only=False).astype(np.int64)
        elif pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
            cols[name] = (
                col.cast(pa.float64()).fill_null(float("nan")).to_numpy(zero_copy_only=False)
            )
        elif pa.types.is_boolean(col.type) and col.null_count == 0:
            cols[name] = col.to_numpy(zero_copy_only=False).astype(bool)
        else:
            cols[name] = np.asarray(col.to_pylist(), dtype=object)
    return cols, meta, p


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
        kind = meta.get("dtypes", {}).get(name, "f")
        if kind == "f" and tbl.column(name).null_count:
            raw = tbl.column(name).cast("float64").fill_null(float("nan"))
            raw = raw.to_numpy(zero_copy_only=False)[order]
        else:
            raw = tbl.column(name).to_numpy(zero_copy_only=False)[order]
        if name in ("status", "reason") or kind == "U":
            arr = np.asarray(raw, dtype=str)
        elif kind == "b":
            arr = np.asarray(raw, dtype=bool)
        else:
            arr = np.asarray(raw, dtype=np.float64)
        data_vars[name] = (dims, arr.reshape(shape), dict(attrs))
    ds = xr.Dataset(data_vars=data_vars, coords=coords, attrs=dict(meta["attrs"]))
    for name, info in meta["facts"].items():
        ds[name].attrs.update(info["attrs"])
    return ds


# --------------------------------------------------------------------------------------------
# writing: sweep chunks, per-request tables, the merged result
# --------------------------------------------------------------------------------------------


def result_meta(spec, facts: dict, created: str | None = None) -> dict:
    """The schema metadata of a sweep result (attributes, axes, variables, facts)."""
    variables = {m.name: schema.attrs(m) for m in METRIC_COLUMNS}
    variables["status"] = dict(STATUS_ATTRS)
    variables["reason"] = dict(REASON_ATTRS)
    fact_meta = {}
    for dim, cols in facts.items():
        for name, vals in cols.items():
            units, long_name = FACT_ATTRS[name]
            fact_meta[name] = {
                "dim": dim,
                "attrs": {"units": units, "long_name": long_name},
                "dtype": str(vals.dtype),
            }
    axes = {
        d: [v.item() if hasattr(v, "item") else v for v in axis_array(vals)]
        for d, vals in spec.axes.items()
    }
    return {
        "attrs": dataset_attrs(spec, created),
        "dims": list(spec.axes),
        "axes": axes,
        "axis_dtypes": {d: axis_array(v).dtype.kind for d, v in spec.axes.items()},
        "variables": variables,
        "facts": fact_meta,
    }


def _axis_type(vals: list):
    import pyarrow as pa

    arr = axis_array(vals)
    return pa.string() if arr.dtype.kind == "U" else pa.from_numpy_dtype(arr.dtype)


def _axis_column(vals: list, labels: list):
    """An axis column of ``labels`` (one point setting per row) typed as the axis."""
    import pyarrow as pa

    typ = _axis_type(vals)
    if typ == pa.string():  # mixed labels (e.g. total_kv_blocks = ["auto", 64])
        labels = [str(v) for v in labels]
    return pa.array(labels, type=typ)


def chunk_table(spec, points: list, metrics: np.ndarray, facts: dict):
    """The rows of one chunk: point, axis columns, metrics, status, reason, facts."""
    import pyarrow as pa

    n = len(points)
    cols: dict[str, Any] = {"point": pa.array([p.index for p in points], pa.int64())}
    for d, vals in spec.axes.items():
        cols[d] = _axis_column(vals, [p.settings[d] for p in points])
    for m in METRIC_COLUMNS:
        i = SUMMARY.index(m.name)
        cols[m.name] = pa.array(metrics[:, i], pa.float64(), from_pandas=True)  # NaN -> null
    status = []
    reason = []
    for k, p in enumerate(points):
        if p.reason:
            status.append("invalid")
            reason.append(p.reason)
        else:
            st = STATUS_NAMES.get(int(metrics[k, M_STATUS]), "unknown")
            status.append(st)
            reason.append(
                f"no request completed: all {int(metrics[k, M_DROPPED])} were dropped (they "
                "never fit in the KV cache)"
                if st == "unservable"
                else ""
            )
    cols["status"] = pa.array(status, pa.string())
    cols["reason"] = pa.array(reason, pa.string())
    for dim, fcols in facts.items():
        labels = {
            (v.item() if hasattr(v, "item") else v): j
            for j, v in enumerate(axis_array(spec.axes[dim]))
        }
        idx = np.array([labels[p.settings[dim]] for p in points], np.int64)
        for name, vals in fcols.items():
            cols[name] = pa.array(vals[idx]) if n else pa.array(vals[:0])
    return pa.table(cols)


def requests_table(cols: dict[str, np.ndarray], summary: dict | None = None):
    """The pyarrow table of per-request columns (``REQUEST_COLUMNS``), with the run's summary
    in the schema metadata when given."""
    import pyarrow as pa

    tbl = pa.table({k: np.asarray(cols[k]) for k in REQUEST_COLUMNS})
    meta = {
        b"infersweep.columns": json.dumps(
            {k: {"units": u, "description": d} for k, (u, d) in REQUEST_COLUMNS.items()}
        ).encode()
    }
    if summary is not None:
        meta[b"infersweep.summary"] = json.dumps(summary).encode()
    return tbl.replace_schema_metadata(meta)


def write_table(path: str | Path, table) -> None:
    """Write a pyarrow table (or per-request columns) as Parquet, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from infersweep.fileio import atomic_write_bytes

    if isinstance(table, dict):
        table = requests_table(table)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def parquet_rows(path: str | Path) -> int | None:
    """The row count of a readable Parquet file (None when it is missing or damaged)."""
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path).num_rows
    except Exception:
        return None


def split_result(path: Path, n_points: int, parts: dict[int, tuple[int, int]], chunk_path) -> None:
    """Write the rows [a, b) of a finished result, for each chunk ``c: (a, b)`` of ``parts``,
    back into the chunk file ``chunk_path(c)`` (with its ``point`` column); nothing when the
    result does not hold ``n_points`` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tbl = pq.read_table(path)
    if tbl.num_rows != n_points:
        return
    tbl = tbl.replace_schema_metadata(None)
    for c, (a, b) in parts.items():
        part = tbl.slice(a, b - a).add_column(0, "point", pa.array(range(a, b), pa.int64()))
        write_table(chunk_path(c), part)


def merge_chunks(chunks: list[Path], meta: dict, path: Path, n_points: int) -> None:
    """Stream chunk files (each holding consecutive points) into one Parquet file with the
    result metadata, atomically (a temporary file, then a rename)."""
    import os

    import pyarrow.parquet as pq

    writer = None
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    expected = 0
    try:
        for chunk in chunks:
            tbl = pq.read_table(chunk)
            pts = tbl.column("point").to_numpy()
            if len(pts) and (pts[0] != expected or (np.diff(pts) != 1).any()):
                raise ConfigError("a chunk file does not hold the points it should", file=chunk)
            expected += len(pts)
            tbl = tbl.drop(["point"])
            tbl = tbl.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
            if writer is None:
                writer = pq.ParquetWriter(tmp, tbl.schema)
            writer.write_table(tbl)
        if expected != n_points:
            raise ConfigError(
                f"the chunks hold {expected} of {n_points} points", file=path.parent / "chunks"
            )
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    if writer is not None:
        writer.close()
    os.replace(tmp, path)


def result_digest(path: Path) -> str | None:
    """The spec digest stored in a result file's metadata (None when unreadable)."""
    try:
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta[META_KEY])["attrs"]["spec_digest"]
    except Exception:
        return None


# --------------------------------------------------------------------------------------------
# per-instance metrics of cluster sweeps: instances.parquet
# --------------------------------------------------------------------------------------------

INSTANCES_FILE = "instances.parquet"

#: instances.parquet columns after ``point``, the axes and ``instance``:
#: name -> (units, long name, description)
INSTANCE_COLUMNS: dict[str, tuple[str, str, str]] = {
    "requests": (
        "1",
        "requests routed to the instance",
        "Requests the router sent to this instance (a single instance: every request).",
    ),
    "completed_requests": ("1", "completed requests", "Requests that finished on it."),
    "dropped_unservable": (
        "1",
        "dropped requests",
        "Requests dropped by it because they can never fit in its KV cache.",
    ),
    "preemption_count": ("1", "preemptions", "Requests evicted from its running batch."),
    "kv_peak_blocks": ("blocks", "peak KV blocks used", "Most of its KV blocks in use at once."),
    "kv_peak_fraction": (
        "1",
        "peak KV utilisation",
        "kv_peak_blocks / its KV blocks (the point's kv_blocks_total; prefill/decode "
        "disaggregation: its pool's).",
    ),
    "cache_hit_rate": (
        "1",
        "prefix-cache hit rate",
        "Its cached blocks reused / (reused + newly allocated).",
    ),
    "utilization": (
        "1",
        "busy fraction",
        "Its time in non-empty steps / the point's simulated duration (the cluster's).",
    ),
    "steps": ("1", "engine steps", "Scheduler steps it simulated."),
    "total_output_tokens": ("tokens", "output tokens", "Output tokens it produced."),
    "role": (
        "1",
        "instance role",
        "0 = a whole instance; prefill/decode disaggregation: 1 = prefill, 2 = decode "
        "(prefill instances first).",
    ),
}
#: the float columns of INSTANCE_COLUMNS (the others are int64)
INSTANCE_FLOAT = ("kv_peak_fraction", "cache_hit_rate", "utilization")
INSTANCE_KEYS = {
    "point": ("1", "point index", "The point's row in result.parquet (grid order)."),
    "instance": ("1", "instance index", "0 ... instances - 1, as the router numbers them."),
}


def instances_schema(spec):
    """The Arrow schema of instances.parquet (and of its chunk files)."""
    import pyarrow as pa

    fields = [pa.field("point", pa.int64())]
    fields += [pa.field(d, _axis_type(v)) for d, v in spec.axes.items()]
    fields.append(pa.field("instance", pa.int64()))
    for name in INSTANCE_COLUMNS:
        fields.append(pa.field(name, pa.float64() if name in INSTANCE_FLOAT else pa.int64()))
    return pa.schema(fields)


def instances_chunk_table(spec, rows: list[tuple[Any, dict[str, np.ndarray]]]):
    """The per-instance rows of one chunk: for each simulated point (a ``Prepared``) its
    columns (INSTANCE_COLUMNS, one value per instance), in point order."""
    import pyarrow as pa

    schema_ = instances_schema(spec)
    counts = [len(cols["requests"]) for _, cols in rows]
    data: dict[str, Any] = {
        "point": pa.array(np.repeat([p.index for p, _ in rows], counts).astype(np.int64))
    }
    for d, vals in spec.axes.items():
        labels = [p.settings[d] for (p, _), k in zip(rows, counts) for _ in range(k)]
        data[d] = _axis_column(vals, labels)
    data["instance"] = pa.array(
        np.concatenate([np.arange(k, dtype=np.int64) for k in counts] or [np.zeros(0, np.int64)])
    )
    for name in INSTANCE_COLUMNS:
        parts = [np.asarray(cols[name]) for _, cols in rows]
        typ = np.float64 if name in INSTANCE_FLOAT else np.int64
        data[name] = pa.array(np.concatenate(parts).astype(typ) if parts else np.zeros(0, typ))
    return pa.table(data, schema=schema_)


def instances_meta(spec, created: str | None = None) -> dict:
    """The schema metadata of instances.parquet (attributes, axes, column attributes)."""
    attrs = dataset_attrs(spec, created)
    attrs["title"] = f"infersweep sweep {spec.name}: per-instance metrics"
    attrs["kind"] = "instances"
    variables = {
        k: {"units": u, "long_name": ln, "description": d}
        for k, (u, ln, d) in {**INSTANCE_KEYS, **INSTANCE_COLUMNS}.items()
    }
    return {
        "attrs": attrs,
        "dims": list(spec.axes),
        "axes": {
            d: [v.item() if hasattr(v, "item") else v for v in axis_array(vals)]
            for d, vals in spec.axes.items()
        },
        "axis_dtypes": {d: axis_array(v).dtype.kind for d, v in spec.axes.items()},
        "variables": variables,
    }


def merge_instance_chunks(chunks: list[Path], meta: dict, path: Path, schema_) -> int:
    """Stream per-instance chunk files into one Parquet file, atomically; (point, instance)
    must increase strictly across the files (no point twice, instances in order).  Returns
    the row count."""
    import os

    import pyarrow.parquet as pq

    sch = schema_.with_metadata({META_KEY: json.dumps(meta).encode()})
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    last = (-1, -1)
    rows = 0
    try:
        with pq.ParquetWriter(tmp, sch) as writer:
            for chunk in chunks:
                tbl = pq.read_table(chunk).cast(schema_).replace_schema_metadata(None)
                pts = tbl.column("point").to_numpy()
                inst = tbl.column("instance").to_numpy()
                if len(pts):
                    key_ok = (pts[0], inst[0]) > last and bool(
                        np.all((np.diff(pts) > 0) | ((np.diff(pts) == 0) & (np.diff(inst) == 1)))
                    )
                    if not key_ok:
                        raise ConfigError(
                            "a per-instance chunk file repeats or disorders points", file=chunk
                        )
                    last = (int(pts[-1]), int(inst[-1]))
                rows += tbl.num_rows
                writer.write_table(tbl.replace_schema_metadata(sch.metadata))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return rows


def instance_points(path: str | Path) -> np.ndarray | None:
    """The ``point`` column of a per-instance table (None when missing or unreadable)."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=["point"]).column("point").to_numpy()
    except Exception:
        return None


def read_instance_rows(path: str | Path) -> list[dict]:
    """The rows of instances.parquet as dicts (for ``show``)."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def split_instances(path: Path, parts: dict[int, tuple[int, int]], chunk_path) -> bool:
    """Write the rows of points [a, b) of instances.parquet, for each chunk ``c: (a, b)`` of
    ``parts``, back into ``chunk_path(c)``; False (nothing written) when it is unreadable."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        tbl = pq.read_table(path).replace_schema_metadata(None)
    except Exception:
        return False
    pt = tbl.column("point")
    for c, (a, b) in parts.items():
        mask = pc.and_(pc.greater_equal(pt, a), pc.less(pt, b))
        write_table(chunk_path(c), tbl.filter(mask))
    return True


def read_instances(path: str | Path):
    """A sweep's per-instance metrics (its folder or ``instances.parquet``) as an
    ``xarray.Dataset``: dims the sweep axes plus ``instance`` (as many as the largest point
    has; NaN where a point has fewer instances or was not simulated)."""
    import pyarrow.parquet as pq
    import xarray as xr

    p = Path(path)
    if p.is_dir():
        p = p / INSTANCES_FILE
    if not p.is_file():
        raise ConfigError(
            "per-instance result not found (written by sweeps with replicas > 1)", file=p
        )
    try:
        tbl = pq.read_table(p)
    except Exception as exc:
        raise ConfigError(f"not a readable Parquet file ({exc})", file=p) from None
    raw = (tbl.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise ConfigError("not an infersweep per-instance result (no metadata)", file=p)
    meta = json.loads(raw)
    dims = meta["dims"]
    shape = tuple(len(meta["axes"][d]) for d in dims)
    n_points = int(np.prod(shape)) if dims else 1
    point = tbl.column("point").to_numpy()
    inst = tbl.column("instance").to_numpy()
    width = int(inst.max()) + 1 if len(inst) else 0
    coords: dict = {}
    for d in dims:
        arr = axis_array(meta["axes"][d])
        coords[d] = (d, arr.astype(np.float64) if meta["axis_dtypes"][d] == "f" else arr)
    coords["instance"] = ("instance", np.arange(width, dtype=np.int64))
    data_vars = {}
    for name in INSTANCE_COLUMNS:
        grid = np.full((n_points, width), np.nan)
        grid[point, inst] = tbl.column(name).to_numpy(zero_copy_only=False)
        attrs = dict(meta["variables"][name])
        data_vars[name] = ([*dims, "instance"], grid.reshape((*shape, width)), attrs)
    return xr.Dataset(data_vars=data_vars, coords=coords, attrs=dict(meta["attrs"]))
