"""Size limits and estimates: what a command is about to allocate (and, for sweeps, how many
points, chunk files and seconds), checked against the machine before any work starts.

Two kinds of check live here:

- ``RANGES``: per-setting validation ranges that keep every time inside the int64 microsecond
  clock and every length inside what the kernels index (a small table, meant to move into the
  settings registry);
- estimates of the memory a run or a sweep chunk needs, compared with the memory available to
  this process: the machine's available memory (``/proc/meminfo`` MemAvailable, or
  ``os.sysconf``) and the address-space limit (``RLIMIT_AS``, as set by ``ulimit -v``) less what
  the process already maps.

Every refusal is one ``ConfigError`` naming the setting, the estimate and the limit.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

from infersweep.errors import ConfigError

#: The simulation clock counts int64 microseconds (up to 2**63 - 1, about 292,000 years); every
#: time an input can produce is kept far below that, so that sums of step times never wrap.
MAX_TIME_S = 1e9  # about 31.7 years of simulated time
#: The longest prompt or output of one request (the longest contexts served are ~10**7 tokens).
MAX_REQUEST_TOKENS = 1 << 24
#: Entries (prefill chunks + decodes) of one step in ``step-time``.
MAX_STEP_ENTRIES = 1 << 20
#: Sweeps larger than this need ``--yes`` (overridable with ``--max-points`` or the
#: ``INFERSWEEP_MAX_POINTS`` environment variable).
DEFAULT_MAX_POINTS = 1_000_000


#: The most requests of one run (request indices are int32 in the kernels' ITL records).
MAX_REQUESTS = (1 << 31) - 1
#: The most GPUs of one deployment.
MAX_TP = 4096
MAX_REPLICAS = 4096  # instances of a cluster (each holds its own KV pool)


@dataclass(frozen=True, slots=True)
class Range:
    lo: float
    hi: float
    unit: str
    why: str


#: Ranges of values that are not settings (trace rows, step entries).  The per-setting ranges
#: (rate, num_requests, token counts, horizon, ...) are the ``min``/``max`` of the settings
#: registry (:mod:`infersweep.settings`), built from the constants above.
RANGES: dict[str, Range] = {
    "tokens": Range(0, MAX_REQUEST_TOKENS, "tokens", "per request"),
    "arrival_time_s": Range(0, MAX_TIME_S, "s", "the clock counts int64 microseconds"),
}


def check_range(
    key: str, value: float, *, field: str | None = None, file: object = None, label: str = ""
) -> None:
    """Raise a ConfigError when ``value`` is outside ``RANGES[key]``."""
    r = RANGES[key]
    if value is None or not (r.lo <= value <= r.hi):
        unit = f" {r.unit}" if r.unit else ""
        why = f" ({r.why})" if r.why else ""
        raise ConfigError(
            f"{label + ' ' if label else ''}must be between {_num(r.lo)} and {_num(r.hi)}"
            f"{unit}{why}",
            file=file,
            field=field or key,
            value=value,
        )


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


# --------------------------------------------------------------------------------------------
# available memory
# --------------------------------------------------------------------------------------------


_MEMINFO_TTL_S = 1.0  # how long a reading of /proc/meminfo is reused
_meminfo_cache: list = [float("-inf"), None]  # [when read (monotonic s), MemAvailable]


def _meminfo_available() -> int | None:
    """MemAvailable, read at most once a second (a small run checks its memory twice, and
    the reading was a tenth of its Python time)."""
    now = time.monotonic()
    if now - _meminfo_cache[0] < _MEMINFO_TTL_S:
        return _meminfo_cache[1]
    value = _read_meminfo_available()
    _meminfo_cache[0] = now
    _meminfo_cache[1] = value
    return value


def _read_meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def _address_space_left() -> tuple[int | None, int | None]:
    """(RLIMIT_AS soft limit, limit - address space already mapped), None when unlimited."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None, None
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None, None
    used = 0
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    used = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    return soft, max(soft - used, 0)


@dataclass(frozen=True, slots=True)
class MemoryBudget:
    bytes: int  # what one more allocation may take
    text: str  # where the figure comes from, for messages


def memory_budget() -> MemoryBudget | None:
    """The memory this process may still allocate (None when nothing is known).

    ``INFERSWEEP_MEMORY_LIMIT`` (bytes, or with a K/M/G suffix) caps it further, e.g. for tests.
    """
    cands: list[tuple[int, str]] = []
    avail = _meminfo_available()
    if avail is not None:
        cands.append((avail, f"{gib(avail)} available on this machine"))
    soft, left = _address_space_left()
    if left is not None:
        cands.append((left, f"{gib(left)} left under the address-space limit of {gib(soft)}"))
    env = os.environ.get("INFERSWEEP_MEMORY_LIMIT", "").strip()
    if env:
        mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(env[-1].lower(), 1)
        try:
            cap = int(float(env.rstrip("kKmMgG")) * mult)
        except ValueError:
            raise ConfigError(
                "must be a byte count (e.g. 4G)", field="INFERSWEEP_MEMORY_LIMIT", value=env
            ) from None
        cands.append((cap, f"INFERSWEEP_MEMORY_LIMIT {gib(cap)}"))
    if not cands:
        return None
    b, text = min(cands)
    return MemoryBudget(b, text)


def gib(n: float) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):,.1f} GiB"
    return f"{n / (1 << 20):,.0f} MiB"


def check_memory(what: str, estimate: float, *, field: str, value: object, hint: str = "") -> None:
    """Refuse ``what`` when its ``estimate`` (bytes) exceeds the memory this process may use."""
    budget = memory_budget()
    if budget is None or estimate <= budget.bytes:
        return
    raise ConfigError(
        f"{what} needs about {gib(estimate)} of memory, above the {budget.text}",
        field=field,
        value=value,
        hint=hint or None,
    )


# --------------------------------------------------------------------------------------------
# estimates
# --------------------------------------------------------------------------------------------

#: Bytes per request that do not scale with its tokens: the request table, the per-request
#: outputs and kernel state, the event heap, queues, summary scratch and workload generation.
BYTES_PER_REQUEST = 640
#: Per-request records of ``--results-path`` JSON (Python dicts and the text).
BYTES_PER_RECORD = 1600
#: Bytes per output token (the ITL buffer: value and owner).
BYTES_PER_OUTPUT_TOKEN = 16
#: Bytes per KV block of the pool.
BYTES_PER_KV_BLOCK = 48


def run_bytes(
    *,
    n_requests: int,
    sum_prompt: float,
    sum_output: float,
    max_context: float,
    block_size: int,
    kv_blocks: int,
    literal: bool = False,
    records: bool = False,
    instances: int = 1,
) -> float:
    """Memory of one simulation (the driver, the kernel and the summary), in bytes.  A cluster
    or P/D run of ``instances`` instances has a KV pool of ``kv_blocks`` (the largest) and
    request lists (three int64 rows per request) for each."""
    bs = max(int(block_size), 1)
    n = float(n_requests)
    k = max(int(instances), 1)
    lists = 3 * 8 * n * k if k > 1 else 0.0
    block_lists = ((sum_prompt + sum_output) / bs + 2 * n) * 8 * (2 if literal else 1)
    slots = (sum_prompt + sum_output) / bs * 8
    return (
        n * (BYTES_PER_REQUEST + (BYTES_PER_RECORD if records else 0))
        + (sum_output + n) * BYTES_PER_OUTPUT_TOKEN
        + block_lists
        + slots
        + (max_context + 2) * 16
        + float(kv_blocks) * BYTES_PER_KV_BLOCK * k
        + lists
    )


def workload_bytes(n_requests: int) -> float:
    """Memory of generating a workload of ``n_requests`` (lengths, gaps, sort)."""
    return float(n_requests) * BYTES_PER_REQUEST


def clock_check(n_requests: int, rate: float, field: str = "rate") -> None:
    """The last arrival of ``n_requests`` at ``rate`` must stay inside the clock's range."""
    span = float(n_requests) / float(rate)
    if not math.isfinite(span) or span > MAX_TIME_S:
        raise ConfigError(
            f"the last of {n_requests:,} requests would arrive after {span:.3g} s, above the "
            f"limit of {MAX_TIME_S:g} s (the clock counts int64 microseconds)",
            field=field,
            value=rate,
        )


def check_run_memory(
    *,
    prompt_tok,
    output_tok,
    block_size: int,
    kv_blocks: int,
    literal: bool = False,
    source: str = "",
    extra_bytes: float = 0.0,
    instances: int = 1,
) -> None:
    """Refuse a simulation whose arrays would not fit; the error names the input that drives
    the estimate (the request count, the tokens of the workload, or the KV blocks)."""
    n = int(len(prompt_tok))
    sp = float(prompt_tok.sum()) if n else 0.0
    so = float(output_tok.sum()) if n else 0.0
    mc = float((prompt_tok + output_tok).max()) if n else 0.0
    total = (
        run_bytes(
            n_requests=n,
            sum_prompt=sp,
            sum_output=so,
            max_context=mc,
            block_size=block_size,
            kv_blocks=kv_blocks,
            literal=literal,
            instances=instances,
        )
        + extra_bytes
    )
    k = max(int(instances), 1)
    kv_part = float(kv_blocks) * BYTES_PER_KV_BLOCK * k
    if kv_part > total / 2:
        field, value = "total_kv_blocks", kv_blocks  # per instance (the message counts them)
    elif source:  # a trace: its rows and their tokens
        field, value = f"{source}: requests", n
    else:
        field, value = "num_requests", n
    where = f" on {k} instances (a KV pool each)" if k > 1 else ""
    check_memory(
        f"simulating {n:,} requests ({int(sp):,} prompt and {int(so):,} output tokens){where}",
        total,
        field=field,
        value=value,
    )
