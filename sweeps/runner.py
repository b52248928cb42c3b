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

from infersweep import __version__, schema, settings
from infersweep.config.models import (
    HARDWARE_FIELDS,
    Hardware,
    ModelConfig,
    load_hardware,
    load_model,
)
from infersweep.costmodel.stepcost import weights_fit
from infersweep.errors import ConfigError
from infersweep.metrics.summary import request_columns
from infersweep.scheduler.config import SplitError
from infersweep.scheduler.driver import SchedulerConfig, resolve_kv_blocks
from infersweep.sweeps.grid import SweepSpec
from infersweep.sweeps.results import (
    INSTANCE_COLUMNS,
    INSTANCES_FILE,
    chunk_table,
    instance_points,
    instances_chunk_table,
    instances_meta,
    instances_schema,
    merge_chunks,
    merge_instance_chunks,
    parquet_rows,
    result_digest,
    result_meta,
    split_instances,
    split_result,
    write_table,
)
from infersweep.workload.generate import Workload, generate

CHUNK_DIR = "chunks"
RESULT = "result.parquet"
INSTANCES = INSTANCES_FILE
#: settings that make a point run more than one instance when not at their default (the
#: prefill/decode pool sizes count where the registry has them)
INSTANCE_SETTINGS = ("replicas", "prefill_instances", "decode_instances")
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
    job: Any  # infersweep.scheduler.driver.Job | None


class Preparer:
    """Turns point settings into jobs, caching models, hardware entries, cost tables and
    workloads across points."""

    def __init__(self) -> None:
        self._workloads: dict = {}
        self._schedulers: dict = {}
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
        key = settings.workload_key(s)
        wl = self._workloads.get(key)
        if wl is None:
            wl = generate(settings.workload_spec(s))
            if len(self._workloads) > 4096:
                self._workloads.clear()
            self._workloads[key] = wl
        return wl

    def scheduler(self, s: dict) -> SchedulerConfig:
        # points differ mostly in rate, model or TP: one (frozen, checked) config per setting
        key = tuple(s[x.name] for x in settings.group("scheduler"))
        try:
            cfg = self._schedulers.get(key)
        except TypeError:  # an unhashable value: no reuse
            return settings.scheduler_config(s)
        if cfg is None:
            cfg = settings.scheduler_config(s)
            if len(self._schedulers) > 4096:
                self._schedulers.clear()
            self._schedulers[key] = cfg
        return cfg

    def prepare(self, index: int, s: dict) -> Prepared:
        from infersweep.api import cost_model_for, pd_cost_models
        from infersweep.scheduler.driver import Job

        hw = self.hardware(s)
        try:  # quantisation / expert parallelism a model cannot take: an invalid point
            model = settings.deploy(self.model(s), s)
        except ConfigError as exc:
            return Prepared(index, s, str(exc), None)
        tp = s["tp"]
        if tp < 1:
            raise ConfigError("must be an integer >= 1", field="tp", value=tp)
        try:
            sched = self.scheduler(s)
        except SplitError as exc:  # (check_spec let it through: the axes vary the pools)
            return Prepared(index, s, str(exc), None)
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
            pd_costs = pd_cost_models(
                model,
                hw,
                tp,
                sched,
                hardware_config=s["hardware_config"],
                bench_data=s["bench_data"],
                step_model=s["step_model"],
            )
            for side in pd_costs or ():
                resolve_kv_blocks(side, sched)
        except ConfigError as exc:
            return Prepared(index, s, str(exc), None)
        return Prepared(index, s, "", Job(wl, cost, sched, pd_costs))


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
            "model_params_b": np.array([m.n_params / 1e9 for m in models], np.float64),
            "model_active_params_b": np.array(
                [m.n_active_params / 1e9 for m in models], np.float64
            ),
        }
    return facts


# --------------------------------------------------------------------------------------------
# computing a chunk (locally or on a Dask worker)
# --------------------------------------------------------------------------------------------


def cluster_sweep(spec: SweepSpec) -> bool:
    """Whether a point of the sweep may run more than one instance (then the sweep writes
    ``instances.parquet``): a value of an ``INSTANCE_SETTINGS`` setting other than its
    default, on an axis or fixed."""
    for name in INSTANCE_SETTINGS:
        if name not in settings.SETTINGS:
            continue
        default = settings.SETTINGS[name].default
        values = list(spec.axes.get(name, [])) + ([spec.fixed[name]] if name in spec.fixed else [])
        if any(v != default for v in values):
            return True
    return False


def instance_columns(
    inst: np.ndarray | None, row: np.ndarray, n_requests: int, kv_blocks: int
) -> dict[str, np.ndarray]:
    """The per-instance columns (``INSTANCE_COLUMNS``) of one simulated point: a cluster's
    counters (``CI_*`` rows, labelled by ``metrics.summary.instance_records``), or the one
    instance of a single-instance point (from its summary ``row``)."""
    from infersweep.metrics.summary import instance_records
    from infersweep.schema import SUMMARY

    if inst is not None:
        recs = instance_records(inst)
        cols = {k: np.array([r[k] for r in recs]) for k in INSTANCE_COLUMNS if k in recs[0]}
        pool = inst[:, schema.CI_KV_BLOCKS].astype(np.float64)  # P/D: pools may differ
        pool = np.where(pool > 0, pool, kv_blocks if kv_blocks else np.nan)
        cols["kv_peak_fraction"] = cols["kv_peak_blocks"] / pool
        cols["role"] = inst[:, schema.CI_ROLE].copy()
        return cols

    def m(name: str) -> np.ndarray:
        v = row[SUMMARY.index(name)]
        return np.array([0.0 if np.isnan(v) else v])

    cols = {k: m(k) for k in INSTANCE_COLUMNS if k not in ("requests", "role")}
    cols["requests"] = np.array([n_requests])
    cols["role"] = np.array([schema.ROLE_WHOLE])
    return cols


def compute_chunk(
    spec_dict: dict, start: int, end: int, per_request: bool = False, threads: int | None = None
):
    """Simulate points [start, end) of a spec; returns (chunk table, per-request tables,
    per-instance table: None unless the sweep has clusters)."""
    from infersweep.scheduler.driver import run_jobs
    from infersweep.schema import N_M

    spec = SweepSpec.from_parts(spec_dict)
    prep = Preparer()
    points = [prep.prepare(i, spec.point(i)) for i in range(start, end)]
    jobs = [p.job for p in points if p.job is not None]
    br = run_jobs(jobs, keep_requests=per_request, threads=threads)
    metrics = np.full((len(points), N_M), np.nan)
    per_req = {}
    inst_rows = []
    j = 0
    for k, p in enumerate(points):
        if p.job is not None:
            metrics[k] = br.metrics[j]
            if per_request:
                per_req[p.index] = request_columns(
                    p.job.workload, br.out_req[br.req_off[j] : br.req_off[j + 1]]
                )
            inst = br.instances[j] if br.instances is not None else None
            inst_rows.append(
                (p, instance_columns(inst, metrics[k], len(p.job.workload), br.kv_blocks[j]))
            )
            j += 1
    facts = label_facts(spec, prep)
    inst_table = instances_chunk_table(spec, inst_rows) if cluster_sweep(spec) else None
    return chunk_table(spec, points, metrics, facts), per_req, inst_table


# --------------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------------


def check_spec(spec: SweepSpec) -> Preparer:
    """Fail early on unknown models, GPUs, hardware files, workloads or bad values; the error
    names the spec file and its key."""
    prep = Preparer()
    base = spec.point(0)
    # a grid over the P/D pools: points that are no split are invalid points, not errors
    split_axes = "prefill_instances" in spec.axes or "decode_instances" in spec.axes

    def check(key: str, table: str, s: dict) -> None:
        try:
            if key in ("model", "model_config_folder"):
                prep.model(s)
            elif key in ("hardware", "hardware_config") or key in HARDWARE_FIELDS:
                prep.hardware(s)
            elif key in settings.SETTINGS:
                group = settings.SETTINGS[key].group
                if group == "workload":
                    prep.workload(s)
                elif group == "scheduler":
                    prep.scheduler(s)
                # deployment settings (tp, step_model, bench_data) are checked by the registry
        except SplitError:
            if split_axes:
                return
            raise
        except ConfigError as exc:
            culprit = _setting_of(exc.field)
            if culprit and culprit != key and (culprit in spec.fixed or culprit in spec.axes):
                # the error is about another setting of the same point: name that one
                key, table = culprit, ("sweep" if culprit in spec.fixed else "grid")
                exc = ConfigError(
                    exc.message, file=exc.file, field=culprit, value=exc.value, hint=exc.hint
                )
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


def _setting_of(flag: str | None) -> str | None:
    """The sweep setting a ConfigError's field names (``--num-requests`` -> num_requests)."""
    from infersweep.sweeps.grid import canonical

    if not flag:
        return None
    try:
        return canonical(flag.strip().lstrip("-"))
    except ConfigError:
        return None


@dataclass
class SweepOutcome:
    path: Path
    n_points: int
    computed: int
    skipped: int
    seconds: float


def _check_out(out: Path) -> None:
    """Before any work: ``out`` is (or can be made) a writable folder."""
    if out.exists() and not out.is_dir():
        raise ConfigError(
            "cannot write to the output folder: it is a file",
            file=out,
            field="--out",
            hint="--out takes a folder",
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot write to the output folder (cannot create it: {exc.strerror})",
            file=out,
            field="--out",
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(
            "cannot write to the output folder (permission denied)", file=out, field="--out"
        )


def _prepare_out(
    out: Path, spec: SweepSpec, chunk: int, force: bool, per_request: bool, inputs: dict
) -> tuple[dict, dict | None]:
    """The manifest to run with, and the input digests the folder's chunks were computed from
    (None when unknown: a fresh folder, or one written before digests were recorded)."""
    manifest = {
        "infersweep_version": __version__,
        "spec_digest": spec.digest(),
        "spec": spec.to_parts(),
        "n_points": spec.n_points,
        "chunk_size": chunk,
        "per_request": per_request,
        "inputs": inputs,
    }
    _check_out(out)
    mpath = out / MANIFEST
    if out.is_dir() and not force:
        old = None
        if mpath.exists():
            try:
                old = json.loads(mpath.read_text())
            except (OSError, json.JSONDecodeError):
                old = {}
            if not isinstance(old, dict):
                old = {}
        elif (out / RESULT).exists() or (out / CHUNK_DIR).is_dir():
            # no manifest but results: only the result's own metadata can say what it is
            digest = result_digest(out / RESULT) if (out / RESULT).exists() else None
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
            old_inputs = old.get("inputs")
            if not mpath.exists():
                from infersweep.sweeps.io import atomic_write_text

                atomic_write_text(mpath, json.dumps(manifest, indent=2, default=str))
            return manifest, old_inputs if isinstance(old_inputs, dict) else None
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
        (out / INSTANCES).unlink(missing_ok=True)
    from infersweep.sweeps.io import atomic_write_text

    atomic_write_text(mpath, json.dumps(manifest, indent=2, default=str))
    return manifest, None


def _chunk_path(out: Path, cid: int) -> Path:
    return out / CHUNK_DIR / f"chunk-{cid:07d}.parquet"


def _inst_path(out: Path, cid: int) -> Path:
    return out / CHUNK_DIR / f"inst-{cid:07d}.parquet"


def _finalise(out: Path, spec: SweepSpec, n_chunks: int, facts: dict) -> Path:
    """Stream the chunks, in point order, into instances.parquet (clusters) and then
    result.parquet (each atomically); remove them.  A run killed in between leaves the chunks,
    and the next run writes both files again."""
    chunk_dir = out / CHUNK_DIR
    if cluster_sweep(spec):
        merge_instance_chunks(
            [_inst_path(out, cid) for cid in range(n_chunks)],
            instances_meta(spec),
            out / INSTANCES,
            instances_schema(spec),
        )
    chunks = [_chunk_path(out, cid) for cid in range(n_chunks)]
    merge_chunks(chunks, result_meta(spec, facts), out / RESULT, spec.n_points)
    shutil.rmtree(chunk_dir, ignore_errors=True)
    return out / RESULT


def _write_chunk(out: Path, cid: int, table, per_req: dict, inst_table=None) -> None:
    """The chunk's files; its main chunk file last (its presence marks the chunk done)."""
    for point, cols in per_req.items():
        write_table(out / "per_request" / f"point={point}" / "part-0.parquet", cols)
    if inst_table is not None:
        write_table(_inst_path(out, cid), inst_table)
    write_table(_chunk_path(out, cid), table)


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
    yes: bool = False,
    max_points: int | None = None,
    notes: list[str] | None = None,
) -> SweepOutcome:
    """Run (or resume) a sweep into the folder ``out``; returns where the result is.

    Before any work: the size (points, chunk files, time, memory) is checked, then the folder
    is locked for the whole run.  ``notes`` collects one-line remarks (e.g. recomputed chunks).
    """
    from infersweep.sweeps import outdir
    from infersweep.sweeps.sizing import check_sweep_memory, check_sweep_size

    t0 = time.perf_counter()
    out = Path(out)
    notes = notes if notes is not None else []
    if spec.n_points < 1:
        raise ConfigError("the sweep has no points")
    check_sweep_size(
        spec, int(chunk_size or DEFAULT_CHUNK), threads, yes=yes, max_points=max_points
    )
    prep = check_spec(spec)
    check_sweep_memory(spec, prep, int(chunk_size or DEFAULT_CHUNK), threads, per_request)
    _check_out(out)
    with outdir.OutLock(out):
        outdir.clean_stray(out)
        inputs = outdir.spec_inputs(spec)
        inputs["engine"] = __version__
        manifest, old_inputs = _prepare_out(
            out, spec, int(chunk_size or DEFAULT_CHUNK), force, per_request, inputs
        )
        chunk = int(manifest["chunk_size"])
        per_request = bool(manifest["per_request"])
        n_points = spec.n_points
        n_chunks = (n_points + chunk - 1) // chunk
        result = out / RESULT
        chunk_dir = out / CHUNK_DIR

        def span(c: int) -> tuple[int, int]:
            return c * chunk, min(n_points, (c + 1) * chunk)

        changed = outdir.changed_inputs(old_inputs, inputs)
        if "engine" in changed:  # another engine version: nothing computed before is reused
            changed = list(inputs)
        n_stale = 0
        clusters = cluster_sweep(spec)
        if result.exists() and not force and not _rows_ok(result, n_points):
            notes.append(f"{result} was unreadable or incomplete; recomputing it")
            result.unlink()
        if result.exists() and not force and clusters and not _points_ok(out / INSTANCES):
            notes.append(f"{out / INSTANCES} was missing or unreadable; recomputing the sweep")
            result.unlink()
        if result.exists() and not force:
            if not changed:
                # a run killed between the final rename and the clean-up left its chunks
                shutil.rmtree(chunk_dir, ignore_errors=True)
                return SweepOutcome(result, n_points, 0, n_points, time.perf_counter() - t0)
            stale = outdir.chunks_using(spec, changed, list(range(n_chunks)), span)
            _split_result(out, spec, n_chunks, span, keep=set(range(n_chunks)) - stale)
            result.unlink()
            n_stale = len(stale)
        done = (
            {int(p.stem.split("-")[1]) for p in chunk_dir.glob("chunk-*.parquet")}
            if chunk_dir.is_dir()
            else set()
        )
        done = {c for c in done if c < n_chunks}
        for c in sorted(done):  # a damaged chunk file (a disk fault, a copy) is recomputed
            a, b = span(c)
            path = chunk_dir / f"chunk-{c:07d}.parquet"
            if not _rows_ok(path, b - a):
                notes.append(f"{path} was unreadable or incomplete; recomputing it")
                path.unlink(missing_ok=True)
                done.discard(c)
            elif clusters and not _points_ok(_inst_path(out, c), (a, b)):
                notes.append(f"{_inst_path(out, c)} was missing or unreadable; recomputing it")
                path.unlink(missing_ok=True)
                done.discard(c)
        if changed:
            stale = outdir.chunks_using(spec, changed, sorted(done), span)
            for c in stale:
                (chunk_dir / f"chunk-{c:07d}.parquet").unlink(missing_ok=True)
            done -= stale
            n_stale += len(stale)
            notes.append(
                "input(s) changed since the folder's results were computed: "
                + ", ".join(i.split(":", 1)[-1] for i in changed)
                + f"; recomputing {n_stale} of {n_chunks} chunk(s)"
            )
        if changed or old_inputs is None:
            from infersweep.sweeps.io import atomic_write_text

            manifest["inputs"] = inputs  # only now: the stale chunks are gone
            atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, default=str))
        todo = [c for c in range(n_chunks) if c not in done]
        skipped = sum(span(c)[1] - span(c)[0] for c in done)
        spec_d = spec.to_parts()
        facts = label_facts(spec, prep)

        bar = progress
        if bar is not None:
            bar.start(n_points, skipped)
        try:
            if dask:
                _run_dask(dask, spec_d, todo, span, per_request, out, bar)
            else:
                for c in todo:
                    a, b = span(c)
                    table, per_req, inst = compute_chunk(spec_d, a, b, per_request, threads)
                    _write_chunk(out, c, table, per_req, inst)
                    if bar is not None:
                        bar.advance(b - a)
        finally:
            if bar is not None:
                bar.stop()
        path = _finalise(out, spec, n_chunks, facts)
    return SweepOutcome(path, n_points, n_points - skipped, skipped, time.perf_counter() - t0)


def _rows_ok(path: Path, rows: int) -> bool:
    """Whether ``path`` is a readable Parquet file of ``rows`` rows."""
    return parquet_rows(path) == rows


def _points_ok(path: Path, span: tuple[int, int] | None = None) -> bool:
    """Whether ``path`` is a readable per-instance table (of points within ``span``)."""
    pts = instance_points(path)
    if pts is None:
        return False
    return span is None or not len(pts) or (span[0] <= pts.min() and pts.max() < span[1])


def _split_result(out: Path, spec: SweepSpec, n_chunks: int, span, keep: set[int]) -> None:
    """Turn the rows of the chunks in ``keep`` of a finished result back into chunk files (so
    that only the chunks whose inputs changed are recomputed)."""
    if keep:
        parts = {c: span(c) for c in sorted(keep)}
        # the per-instance rows first: a chunk file marks its chunk done
        if cluster_sweep(spec) and not split_instances(
            out / INSTANCES, parts, lambda c: _inst_path(out, c)
        ):
            return
        split_result(out / RESULT, spec.n_points, parts, lambda c: _chunk_path(out, c))


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
            table, per_req, inst = fut.result()
            c = futures[fut]
            _write_chunk(out, c, table, per_req, inst)
            if bar is not None:
                a, b = span(c)
                bar.advance(b - a)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def sweep(
    spec: SweepSpec | dict | str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    *,
    threads: int | None = None,
    chunk_size: int | None = None,
    per_request: bool | None = None,
    force: bool = False,
    dask: str | None = None,
    yes: bool = False,
    max_points: int | None = None,
    **settings_or_axes: Any,
):
    """Run (or resume) a sweep and return its result as an ``xarray.Dataset``.

    ``spec``: a TOML file, a :class:`SweepSpec` or its dict form (``{"sweep": {...}, "grid":
    {...}}``); keyword arguments add axes (a list) or fixed settings (a scalar) under any
    setting or hardware-field name.  ``out`` defaults to ``results/<spec name>``.  A sweep of
    more than ``max_points`` points (default 1,000,000) runs only with ``yes=True``.

    >>> ds = infersweep.sweep(model=["llama-3.1-8b-instruct"], tp=[1, 2], rate=[1, 4],
    ...                       workload="chatbot", num_requests=200, out="results/api")
    """
    from infersweep.sweeps.grid import load_spec, spec_from_dict
    from infersweep.sweeps.results import read_dataset

    if isinstance(spec, SweepSpec):
        sp = spec
    elif isinstance(spec, dict):
        sp = spec_from_dict(spec)
    else:
        sp = load_spec(spec)
    for key, value in settings_or_axes.items():
        if isinstance(value, (list, tuple)):
            sp.add_axis(key, list(value))
        else:
            sp.set_fixed(key, value)
    run = sp.run_options(threads=threads, chunk_size=chunk_size, per_request=per_request)
    outcome = run_sweep(
        sp,
        Path(out) if out is not None else Path("results") / sp.name,
        threads=run["threads"],
        chunk_size=run["chunk_size"],
        per_request=run["per_request"],
        force=force,
        dask=dask,
        quiet=True,
        yes=yes,
        max_points=max_points,
    )
    return read_dataset(outcome.path)
