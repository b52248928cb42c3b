"""The sweep runner: a grid of points -> validated jobs -> batched kernel calls -> chunk files
-> one tidy Parquet result.

Points are processed in fixed chunks of consecutive point indices; each finished chunk is
written atomically to ``OUT/chunks/`` so that an interrupted sweep resumes with only the missing
chunks.  When every chunk exists the chunks are streamed, in point order, into
``OUT/result.parquet`` (atomically) and removed.  Each (model, hardware entry, TP, step model)
cost table is built once; identical workloads are generated once.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infersweep import __version__
from infersweep.config.models import (
    HARDWARE_FIELDS,
    Hardware,
    ModelConfig,
    load_hardware,
    load_model,
)
from infersweep.costmodel.stepcost import weights_fit
from infersweep.errors import ConfigError
from infersweep.metrics.summary import STATUS_NAMES, SUMMARY_INDEX, SWEEP_METRICS
from infersweep.metrics.summary_nb import M_STATUS
from infersweep.scheduler.driver import SchedulerConfig, resolve_kv_blocks
from infersweep.sweeps.grid import SETTINGS, SweepSpec
from infersweep.sweeps.results import FACT_ATTRS, META_KEY, axis_array, dataset_attrs
from infersweep.workload.generate import LengthSpec, Workload, WorkloadSpec, generate

CHUNK_DIR = "chunks"
RESULT = "result.parquet"
MANIFEST = "manifest.json"
DEFAULT_CHUNK = 64


# --------------------------------------------------------------------------------------------
# point preparation
# --------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    index: int
    settings: dict
    reason: str
    job: Any  # infersweep.scheduler.batch.Job | None


class Preparer:
    """Turns point settings into jobs, caching models, hardware entries, cost tables and
    workloads across points."""

    def __init__(self) -> None:
        self._workloads: dict = {}
        self._hw: dict = {}
        self._models: dict = {}

    def model(self, s: dict) -> ModelConfig:
        key = (s["model"], s["model_config_folder"])
        m = self._models.get(key)
        if m is None:
            m = self._models[key] = load_model(*key)
        return m

    def hardware(self, s: dict) -> Hardware:
        overrides = tuple(sorted((k, s[k]) for k in HARDWARE_FIELDS if k in s))
        key = (s["hardware"], s["hardware_config"], overrides)
        hw = self._hw.get(key)
        if hw is None:
            hw = load_hardware(s["hardware"], s["hardware_config"])
            if overrides:
                hw = hw.with_fields(**dict(overrides))
            self._hw[key] = hw
        return hw

    def workload(self, s: dict) -> Workload:
        key = tuple(
            s[k]
            for k in (
                "workload",
                "trace",
                "rate",
                "num_requests",
                "seed",
                "arrival",
                "arrival_cv",
                "prompt_tokens",
                "prompt_tokens_stdev",
                "prompt_tokens_min",
                "prompt_tokens_max",
                "output_tokens",
                "output_tokens_stdev",
                "output_tokens_min",
                "output_tokens_max",
                "prefix_tokens",
            )
        )
        wl = self._workloads.get(key)
        if wl is None:
            spec = WorkloadSpec(
                workload=s["workload"],
                rate=s["rate"],
                num_requests=s["num_requests"],
                seed=s["seed"],
                arrival=s["arrival"],
                arrival_cv=s["arrival_cv"],
                prefix_tokens=s["prefix_tokens"],
                trace=s["trace"],
                prompt=LengthSpec(
                    mean=s["prompt_tokens"],
                    std=s["prompt_tokens_stdev"],
                    min=s["prompt_tokens_min"],
                    max=s["prompt_tokens_max"],
                ),
                output=LengthSpec(
                    mean=s["output_tokens"],
                    std=s["output_tokens_stdev"],
                    min=s["output_tokens_min"],
                    max=s["output_tokens_max"],
                ),
            )
            wl = generate(spec)
            if len(self._workloads) > 4096:
                self._workloads.clear()
            self._workloads[key] = wl
        return wl

    def scheduler(self, s: dict) -> SchedulerConfig:
        tkb = s["total_kv_blocks"]
        return SchedulerConfig(
            semantics=s["semantics"],
            max_num_scheduled_tokens=s["max_num_scheduled_tokens"],
            max_num_running_reqs=s["max_num_running_reqs"],
            long_prefill_token_threshold=s["long_prefill_token_threshold"],
            block_size=s["block_size"],
            total_kv_blocks=None if tkb == "auto" else tkb,
            gpu_memory_utilization=s["gpu_memory_utilization"],
            prefix_caching=s["prefix_caching"],
            horizon_s=s["horizon"],
            blis_preemption=s["blis_preemption"],
        )

    def prepare(self, index: int, s: dict) -> Prepared:
        from infersweep.api import cost_model_for
        from infersweep.scheduler.batch import Job

        model = self.model(s)
        hw = self.hardware(s)
        tp = s["tp"]
        if tp < 1:
            raise ConfigError("must be an integer >= 1", field="tp", value=tp)
        sched = self.scheduler(s)
        wl = self.workload(s)
        if not model.tp_divides_heads(tp):
            return Prepared(
                index,
                s,
                f"TP {tp} does not divide the {model.n_heads} attention "
                f"heads and {model.n_kv_heads} KV heads of {model.name}",
                None,
            )
        if weights_fit(model, hw, tp) is False:
            return Prepared(
                index,
                s,
                f"weights ({model.weight_bytes / 2**30:.1f} GiB) do not "
                f"fit in {hw.memory_gib:g} GiB x TP {tp}",
                None,
            )
        try:
            cost = cost_model_for(
                model,
                hw,
                tp,
                bench_data=s["bench_data"],
                step_model=s["step_model"],
                max_tokens=sched.max_num_scheduled_tokens,
            )
            resolve_kv_blocks(cost, sched)
        except ConfigError as exc:
            return Prepared(index, s, str(exc), None)
        return Prepared(index, s, "", Job(wl, cost, sched))


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


def axis_columns(spec: SweepSpec) -> list[str]:
    return list(spec.axes)


def label_facts(spec: SweepSpec, prep: Preparer) -> dict[str, dict[str, np.ndarray]]:
    """Per-label facts of the hardware and model axes (non-dimension coords)."""
    facts: dict[str, dict[str, np.ndarray]] = {}
    base = spec.point(0)
    hw_axes_fixed = not any(k in spec.axes for k in ("hardware_config", *HARDWARE_FIELDS))
    if "hardware" in spec.axes and hw_axes_fixed:
        entries = [prep.hardware({**base, "hardware": h}) for h in spec.axes["hardware"]]
        facts["hardware"] = {
            "hardware_tflops_peak": np.array([e.tflops_peak for e in entries], np.float64),
            "hardware_bw_peak_tbs": np.array([e.bw_peak_tbs for e in entries], np.float64),
            "hardware_memory_gib": np.array(
                [e.memory_gib or math.nan for e in entries], np.float64
            ),
        }
    if "model" in spec.axes and "model_config_folder" not in spec.axes:
        models = [prep.model({**base, "model": m}) for m in spec.axes["model"]]
        facts["model"] = {
            "model_weight_gib": np.array([m.weight_bytes / 2**30 for m in models], np.float64),
            "model_layers": np.array([m.n_layers for m in models], np.int64),
            "model_hidden": np.array([m.hidden for m in models], np.int64),
            "model_heads": np.array([m.n_heads for m in models], np.int64),
            "model_kv_heads": np.array([m.n_kv_heads for m in models], np.int64),
        }
    return facts


def result_meta(spec: SweepSpec, facts: dict, created: str | None = None) -> dict:
    from infersweep.metrics.summary import METRICS
    from infersweep.sweeps.results import REASON_ATTRS, STATUS_ATTRS

    variables = {
        m: {
            "units": METRICS[m].units,
            "long_name": METRICS[m].long_name,
            "description": METRICS[m].description,
        }
        for m in SWEEP_METRICS
    }
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


def chunk_table(spec: SweepSpec, points: list[Prepared], metrics: np.ndarray, facts: dict):
    """The rows of one chunk: point, axis columns, metrics, status, reason, facts."""
    import pyarrow as pa

    n = len(points)
    cols: dict[str, Any] = {"point": pa.array([p.index for p in points], pa.int64())}
    for d, vals in spec.axes.items():
        arr = axis_array(vals)
        col = [p.settings[d] for p in points]
        cols[d] = pa.array(
            col, type=pa.from_numpy_dtype(arr.dtype) if arr.dtype.kind != "U" else pa.string()
        )
    for m in SWEEP_METRICS:
        i, _ = SUMMARY_INDEX[m]
        cols[m] = pa.array(metrics[:, i], pa.float64(), from_pandas=True)  # NaN -> null
    status = []
    reason = []
    for k, p in enumerate(points):
        if p.reason:
            status.append("invalid")
            reason.append(p.reason)
        else:
            status.append(STATUS_NAMES.get(int(metrics[k, M_STATUS]), "unknown"))
            reason.append("")
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


# --------------------------------------------------------------------------------------------
# computing a chunk (locally or on a Dask worker)
# --------------------------------------------------------------------------------------------


def compute_chunk(
    spec_dict: dict, start: int, end: int, per_request: bool = False, threads: int | None = None
):
    """Simulate points [start, end) of a spec; returns (chunk table, per-request tables)."""
    from infersweep.metrics.summary_nb import N_M
    from infersweep.scheduler.batch import run_jobs

    spec = spec_from_dict(spec_dict)
    prep = Preparer()
    points = [prep.prepare(i, spec.point(i)) for i in range(start, end)]
    jobs = [p.job for p in points if p.job is not None]
    br = run_jobs(jobs, keep_requests=per_request, threads=threads)
    metrics = np.full((len(points), N_M), np.nan)
    per_req = {}
    j = 0
    for k, p in enumerate(points):
        if p.job is not None:
            metrics[k] = br.metrics[j]
            if per_request:
                per_req[p.index] = request_table(
                    p.job, br.out_req[br.req_off[j] : br.req_off[j + 1]]
                )
            j += 1
    facts = label_facts(spec, prep)
    return chunk_table(spec, points, metrics, facts), per_req


def request_table(job, out: np.ndarray):
    import pyarrow as pa

    from infersweep.scheduler import common_nb as sc

    wl = job.workload
    rows = wl.extra.get("trace_row")
    rid = np.arange(len(wl)) if rows is None else np.asarray(rows)

    def ms(col: int) -> np.ndarray:
        v = out[:, col]
        return np.where(v >= 0, v / 1000.0, np.nan)

    return pa.table(
        {
            "request_id": pa.array(rid, pa.int64()),
            "arrival_s": pa.array(wl.arrival_us / 1e6),
            "prompt_tokens": pa.array(wl.prompt_tok),
            "output_tokens": pa.array(wl.output_tok),
            "ttft_ms": pa.array(ms(sc.O_TTFT)),
            "e2e_ms": pa.array(ms(sc.O_E2E)),
            "scheduling_delay_ms": pa.array(ms(sc.O_SCHED)),
            "preemptions": pa.array(out[:, sc.O_PREEMPT]),
            "completed": pa.array(out[:, sc.O_STATE] == sc.STATE_DONE),
        }
    )


def spec_from_dict(d: dict) -> SweepSpec:
    spec = SweepSpec(name=d.get("name", "sweep"))
    spec.fixed = dict(d["fixed"])
    spec.axes = {k: list(v) for k, v in d["axes"].items()}
    return spec


def spec_to_dict(spec: SweepSpec) -> dict:
    return {"name": spec.name, "fixed": dict(spec.fixed), "axes": dict(spec.axes)}


# --------------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------------


def check_spec(spec: SweepSpec) -> Preparer:
    """Fail early on unknown models, GPUs, hardware files, workloads or bad values; the error
    names the spec file and its key."""
    prep = Preparer()
    base = spec.point(0)

    def check(key: str, table: str, s: dict) -> None:
        try:
            if key in ("model", "model_config_folder"):
                prep.model(s)
            elif key in ("hardware", "hardware_config") or key in HARDWARE_FIELDS:
                prep.hardware(s)
            elif key in (
                "workload",
                "trace",
                "rate",
                "num_requests",
                "seed",
                "arrival",
                "arrival_cv",
            ) or key.startswith(("prompt_", "output_", "prefix_")):
                prep.workload(s)
            elif key == "tp":
                if s["tp"] < 1:
                    raise ConfigError("must be an integer >= 1", field="tp", value=s["tp"])
            elif key == "step_model":
                if s["step_model"] not in ("auto", "v1", "v2"):
                    raise ConfigError(
                        "unknown step model",
                        field="step_model",
                        value=s["step_model"],
                        hint="one of: auto, v2, v1",
                    )
            elif key in SETTINGS and key != "bench_data":
                prep.scheduler(s)
        except ConfigError as exc:
            if spec.source or table == "grid":
                raise ConfigError(
                    exc.message,
                    file=exc.file or spec.source or None,
                    field=f"{table}.{key}"
                    + (f" ({exc.field})" if exc.field and exc.field != key else ""),
                    value=exc.value,
                    hint=exc.hint,
                ) from None
            raise

    for k, vals in spec.axes.items():
        for v in vals:
            check(k, "grid", {**base, k: v})
    for k in spec.fixed:
        check(k, "sweep", base)
    for k in ("model", "hardware", "tp", "workload", "semantics"):
        check(k, "sweep", base)
    return prep


@dataclass
class SweepOutcome:
    path: Path
    n_points: int
    computed: int
    skipped: int
    seconds: float


def _result_digest(path: Path) -> str | None:
    """The spec digest stored in a result file's metadata (None when unreadable)."""
    try:
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta[META_KEY])["attrs"]["spec_digest"]
    except Exception:
        return None


def _prepare_out(out: Path, spec: SweepSpec, chunk: int, force: bool, per_request: bool) -> dict:
    manifest = {
        "infersweep_version": __version__,
        "spec_digest": spec.digest(),
        "spec": spec_to_dict(spec),
        "n_points": spec.n_points,
        "chunk_size": chunk,
        "per_request": per_request,
    }
    if out.exists() and not out.is_dir():
        raise ConfigError(
            "cannot write to the output folder: it is a file", file=out, hint="--out takes a folder"
        )
    mpath = out / MANIFEST
    if out.is_dir() and not force:
        old = None
        if mpath.exists():
            try:
                old = json.loads(mpath.read_text())
            except (OSError, json.JSONDecodeError):
                old = {}
        elif (out / RESULT).exists() or (out / CHUNK_DIR).is_dir():
            # no manifest but results: only the result's own metadata can say what it is
            digest = _result_digest(out / RESULT) if (out / RESULT).exists() else None
            old = {
                "spec_digest": digest,
                "per_request": (out / "per_request").is_dir(),
                "chunk_size": chunk,
            }
        if old is not None:
            if old.get("spec_digest") != manifest["spec_digest"]:
                raise ConfigError(
                    "the output folder holds the result of a different sweep",
                    file=out,
                    hint="use another --out, or --force to replace it",
                )
            if per_request and not old.get("per_request", False):
                raise ConfigError(
                    "the output folder's sweep was run without --per-request",
                    file=out,
                    field="--per-request",
                    hint="use --force to recompute it with per-request data",
                )
            # a folder run with --per-request keeps producing it when resumed
            manifest["per_request"] = bool(old.get("per_request", False))
            manifest["chunk_size"] = old.get("chunk_size", chunk)
            if not mpath.exists():
                from infersweep.sweeps.io import atomic_write_text

                atomic_write_text(mpath, json.dumps(manifest, indent=2, default=str))
            return manifest
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to the output folder ({exc.strerror})", file=out) from None
    if force:
        for name in (CHUNK_DIR, "per_request"):
            shutil.rmtree(out / name, ignore_errors=True)
        (out / RESULT).unlink(missing_ok=True)
    from infersweep.sweeps.io import atomic_write_text

    atomic_write_text(mpath, json.dumps(manifest, indent=2, default=str))
    return manifest


def _write_chunk(out: Path, cid: int, table, per_req: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from infersweep.sweeps.io import atomic_write_bytes

    for point, tbl in per_req.items():
        sink = pa.BufferOutputStream()
        pq.write_table(tbl, sink)
        atomic_write_bytes(
            out / "per_request" / f"point={point}" / "part-0.parquet", sink.getvalue().to_pybytes()
        )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(out / CHUNK_DIR / f"chunk-{cid:07d}.parquet", sink.getvalue().to_pybytes())


def _finalise(out: Path, spec: SweepSpec, n_chunks: int, facts: dict) -> Path:
    """Stream the chunks, in point order, into result.parquet (atomically); remove them."""
    import pyarrow.parquet as pq

    chunk_dir = out / CHUNK_DIR
    meta = result_meta(spec, facts)
    writer = None
    tmp = out / f".{RESULT}.tmp-{os.getpid()}"
    expected = 0
    try:
        for cid in range(n_chunks):
            tbl = pq.read_table(chunk_dir / f"chunk-{cid:07d}.parquet")
            pts = tbl.column("point").to_numpy()
            if len(pts) and (pts[0] != expected or (np.diff(pts) != 1).any()):
                raise ConfigError(
                    "a chunk file does not hold the points it should",
                    file=chunk_dir / f"chunk-{cid:07d}.parquet",
                )
            expected += len(pts)
            tbl = tbl.drop(["point"])
            tbl = tbl.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
            if writer is None:
                writer = pq.ParquetWriter(tmp, tbl.schema)
            writer.write_table(tbl)
        if expected != spec.n_points:
            raise ConfigError(
                f"the chunks hold {expected} of {spec.n_points} points", file=chunk_dir
            )
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    if writer is not None:
        writer.close()
    os.replace(tmp, out / RESULT)
    shutil.rmtree(chunk_dir, ignore_errors=True)
    return out / RESULT


def run_sweep(
    spec: SweepSpec,
    out: str | os.PathLike,
    *,
    threads: int | None = None,
    chunk_size: int | None = None,
    per_request: bool = False,
    quiet: bool = False,
    force: bool = False,
    dask: str | None = None,
    progress=None,
) -> SweepOutcome:
    """Run (or resume) a sweep into the folder ``out``; returns where the result is."""
    t0 = time.perf_counter()
    out = Path(out)
    if spec.n_points < 1:
        raise ConfigError("the sweep has no points")
    prep = check_spec(spec)
    manifest = _prepare_out(out, spec, int(chunk_size or DEFAULT_CHUNK), force, per_request)
    chunk = int(manifest["chunk_size"])
    per_request = bool(manifest["per_request"])
    n_points = spec.n_points
    n_chunks = (n_points + chunk - 1) // chunk
    result = out / RESULT
    if result.exists() and not force:
        return SweepOutcome(result, n_points, 0, n_points, time.perf_counter() - t0)
    chunk_dir = out / CHUNK_DIR
    done = (
        {int(p.stem.split("-")[1]) for p in chunk_dir.glob("chunk-*.parquet")}
        if chunk_dir.is_dir()
        else set()
    )
    todo = [c for c in range(n_chunks) if c not in done]
    skipped = sum(min(chunk, n_points - c * chunk) for c in done if c < n_chunks)
    spec_d = spec_to_dict(spec)
    facts = label_facts(spec, prep)

    def span(c: int) -> tuple[int, int]:
        return c * chunk, min(n_points, (c + 1) * chunk)

    bar = progress
    if bar is not None:
        bar.start(n_points, skipped)
    try:
        if dask:
            _run_dask(dask, spec_d, todo, span, per_request, out, bar)
        else:
            for c in todo:
                a, b = span(c)
                table, per_req = compute_chunk(spec_d, a, b, per_request, threads)
                _write_chunk(out, c, table, per_req)
                if bar is not None:
                    bar.advance(b - a)
    finally:
        if bar is not None:
            bar.stop()
    path = _finalise(out, spec, n_chunks, facts)
    return SweepOutcome(path, n_points, n_points - skipped, skipped, time.perf_counter() - t0)


def _run_dask(
    address: str, spec_d: dict, todo: list[int], span, per_request: bool, out: Path, bar
) -> None:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigError(
            "Dask is not installed", field="--dask", hint="pip install 'infersweep[dask]'"
        ) from None
    cluster = None
    if address == "local":
        cluster = LocalCluster(
            n_workers=max(1, min(os.cpu_count() or 1, 4)),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        try:
            client = Client(address, timeout="10s")
        except OSError as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler ({exc})", field="--dask", value=address
            ) from None
    try:
        futures = {}
        for c in todo:
            a, b = span(c)
            fut = client.submit(compute_chunk, spec_d, a, b, per_request, 1, pure=False)
            futures[fut] = c
        for fut in as_completed(futures):
            table, per_req = fut.result()
            c = futures[fut]
            _write_chunk(out, c, table, per_req)
            if bar is not None:
                a, b = span(c)
                bar.advance(b - a)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
