"""The size of a sweep, estimated from its spec before any work: points, chunk files, compute
time and memory per chunk.  A sweep above ``--max-points`` (default 10**6) needs ``--yes``; one
whose chunks would not fit in memory is refused, naming the setting, the estimate and the limit.
"""

from __future__ import annotations

import os
from pathlib import Path

from infersweep import limits
from infersweep.errors import ConfigError
from infersweep.workload.generate import DISTRIBUTION_DEFAULTS, PRESETS

#: Compute per simulated request on one thread (measured on the example workloads: 16-40 µs
#: a request at 256-4096 prompt / 256-512 output tokens): a fixed part and parts per token.
SECONDS_PER_REQUEST = 5e-6
SECONDS_PER_OUTPUT_TOKEN = 5e-8
SECONDS_PER_PROMPT_TOKEN = 5e-9
SECONDS_PER_POINT = 1e-3  # preparing, labelling and writing a point
#: Bytes per request a chunk holds for each of its points (workload arrays, packed rows).
HELD_BYTES_PER_REQUEST = 100.0


def _values(spec, key: str) -> list:
    from infersweep import settings

    if key in spec.axes:
        return list(spec.axes[key])
    return [spec.fixed.get(key, settings.default(key))]


def _worst_request(spec) -> tuple[int, float, float]:
    """(most requests of a point, largest mean prompt and output tokens), from the settings."""
    n = max(int(v) for v in _values(spec, "num_requests"))
    mp = mo = 0.0
    for wl in _values(spec, "workload"):
        if wl in PRESETS:
            (pm, *_), (om, *_) = PRESETS[wl]
        elif wl == "distribution":
            pm = max(float(v) for v in _values(spec, "prompt_tokens"))
            om = max(float(v) for v in _values(spec, "output_tokens"))
        else:  # traces: their rows are counted when read
            pm, om = DISTRIBUTION_DEFAULTS[0], DISTRIBUTION_DEFAULTS[0]
        mp, mo = max(mp, float(pm)), max(mo, float(om))
    return n, mp, mo


def _threads(threads: int | None) -> int:
    return max(1, int(threads or os.cpu_count() or 1))


def estimate_seconds(spec, threads: int | None, n: int, mp: float, mo: float) -> float:
    per_point = (
        n * (SECONDS_PER_REQUEST + mo * SECONDS_PER_OUTPUT_TOKEN + mp * SECONDS_PER_PROMPT_TOKEN)
        + SECONDS_PER_POINT
    )
    return spec.n_points * per_point / _threads(threads)


def duration_text(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:,.1f} days"


def max_points_limit(max_points: int | None) -> int:
    if max_points is not None:
        if max_points < 1:
            raise ConfigError("must be >= 1", field="--max-points", value=max_points)
        return int(max_points)
    env = os.environ.get("INFERSWEEP_MAX_POINTS", "").strip()
    if env:
        try:
            v = int(float(env))
        except ValueError:
            raise ConfigError(
                "must be a number of points", field="INFERSWEEP_MAX_POINTS", value=env
            ) from None
        if v >= 1:
            return v
    return limits.DEFAULT_MAX_POINTS


def check_sweep_size(
    spec, chunk: int, threads: int | None, *, yes: bool, max_points: int | None
) -> str:
    """Refuse a sweep above the size limit unless ``yes``; returns a one-line estimate."""
    n_points = spec.n_points
    n_chunks = -(-n_points // max(chunk, 1))
    n, mp, mo = _worst_request(spec)
    secs = estimate_seconds(spec, threads, n, mp, mo)
    text = (
        f"{n_points:,} points in {n_chunks:,} chunk files, about {duration_text(secs)} on "
        f"{_threads(threads)} thread(s)"
    )
    limit = max_points_limit(max_points)
    if n_points > limit and not yes:
        raise ConfigError(
            f"the sweep has {text}, above the limit of {limit:,} points",
            field="--yes",
            hint="give --yes to run it anyway, or --max-points N to change the limit",
        )
    return text


def check_sweep_memory(
    spec, prep, chunk: int, threads: int | None, per_request: bool = False
) -> None:
    """Refuse a sweep whose chunks would not fit in memory: a chunk holds its points'
    workloads and runs ``threads`` points at once."""
    n, mp, mo = _worst_request(spec)
    # the workloads check_spec built (traces included) give real token counts
    for wl in getattr(prep, "_workloads", {}).values():
        if len(wl):
            n = max(n, len(wl))
            mp = max(mp, float(wl.prompt_tok.mean()))
            mo = max(mo, float(wl.output_tok.mean()))
    kv_values = [v for v in _values(spec, "total_kv_blocks") if v != "auto"]
    kv = max([int(v) for v in kv_values] + [4_000_000])  # auto: a few million blocks at most
    bs = min(int(v) for v in _values(spec, "block_size"))
    at_once = min(_threads(threads), chunk, spec.n_points)
    # clusters and P/D splits: a pool and request lists per instance (the most of any point)
    reps = max(int(v) for v in _values(spec, "replicas"))
    pd = max(int(v) for v in _values(spec, "prefill_instances")) + max(
        int(v) for v in _values(spec, "decode_instances")
    )
    instances = max(reps, pd, 1)
    per_point = limits.run_bytes(
        n_requests=n,
        sum_prompt=n * mp,
        sum_output=n * mo,
        max_context=min(mp + mo, limits.MAX_REQUEST_TOKENS) * 4,
        block_size=bs,
        kv_blocks=kv,
        # given pools count once per instance; "auto" is already a generous bound for one
        # point (the run checks its real pools before it starts)
        instances=instances if kv_values else 1,
    ) + (3 * 8.0 * n * instances if instances > 1 and not kv_values else 0.0)
    # every point of a chunk holds its workload and its packed request rows until the chunk
    # is written (and its per-request outputs with --per-request)
    held = min(chunk, spec.n_points) * n * (HELD_BYTES_PER_REQUEST + (56.0 if per_request else 0))
    total = held + at_once * per_point
    field = (
        "num_requests" if n * limits.BYTES_PER_REQUEST * at_once > kv * 48 else "total_kv_blocks"
    )
    value = n if field == "num_requests" else kv
    where = Path(spec.source).name if spec.source else None
    limits.check_memory(
        f"a chunk of {min(chunk, spec.n_points)} points ({at_once} at once, up to {n:,} "
        "requests each)",
        total,
        field=f"{where}: {field}" if where else field,
        value=value,
        hint="lower num_requests, --chunk-size or --threads",
    )
