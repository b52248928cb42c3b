"""Workloads: presets, ``distribution``, arrival processes and trace replay.

A workload is a structure of arrays sorted by arrival (stable).  Generated workloads draw from
numpy's ``Generator(PCG64(seed))`` (lengths and arrival gaps from two independent child
streams, so changing the arrival process does not change the lengths); traces are replayed
exactly: each row is one request at exactly that arrival with exactly those lengths.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from infersweep import limits, settings
from infersweep.errors import ConfigError

#: (prompt mean, std, min, max), (output mean, std, min, max) — SPEC_inputs_outputs §4
PRESETS: dict[str, tuple[tuple[int, int, int, int], tuple[int, int, int, int]]] = {
    "chatbot": ((256, 100, 2, 800), (256, 100, 1, 1024)),
    "contentgen": ((1024, 150, 10, 2048), (1024, 200, 10, 2048)),
    "summarization": ((4096, 500, 100, 8192), (512, 150, 10, 2048)),
    "multidoc": ((10240, 1200, 500, 20480), (1536, 300, 50, 4096)),
}
DISTRIBUTION_DEFAULTS = (512, 256, 2, 7000)


@dataclass(frozen=True, slots=True, eq=False)
class Workload:
    """Requests as arrays (sorted by arrival): the kernel's input."""

    arrival_us: np.ndarray  # int64
    prompt_tok: np.ndarray  # int64
    output_tok: np.ndarray  # int64
    group: np.ndarray  # int64, -1 = no shared prefix
    prefix_tok: np.ndarray  # int64
    name: str = "custom"
    source: str = ""
    extra: dict = field(default_factory=dict)  # e.g. measured_ttft_ms, phase (trace order)

    def __post_init__(self) -> None:
        n = len(self.arrival_us)
        for a in (self.prompt_tok, self.output_tok, self.group, self.prefix_tok):
            if len(a) != n:
                raise ConfigError("workload arrays have different lengths")

    def __len__(self) -> int:
        return int(self.arrival_us.shape[0])

    @property
    def n_groups(self) -> int:
        return int(self.group.max()) + 1 if len(self) and self.group.max() >= 0 else 0

    @classmethod
    def from_arrays(
        cls,
        arrival_us,
        prompt_tok,
        output_tok,
        group=None,
        prefix_tok=None,
        *,
        name: str = "custom",
        source: str = "",
        extra: dict | None = None,
        sort: bool = True,
    ) -> Workload:
        a = np.asarray(arrival_us, np.int64)
        p = np.asarray(prompt_tok, np.int64)
        o = np.asarray(output_tok, np.int64)
        g = np.full(len(a), -1, np.int64) if group is None else np.asarray(group, np.int64)
        x = np.zeros(len(a), np.int64) if prefix_tok is None else np.asarray(prefix_tok, np.int64)
        where = source or None
        if len(a) == 0:
            raise ConfigError("the workload has no requests", file=where)
        if (a < 0).any():
            raise ConfigError(
                "arrival times must be >= 0",
                file=where,
                field="arrival_time_s",
                value=float(a[a < 0][0]) / 1e6,
            )
        if (p < 1).any():
            raise ConfigError(
                "prompt lengths must be >= 1",
                file=where,
                field="prompt_tokens",
                value=int(p[p < 1][0]),
            )
        if (o < 0).any():
            raise ConfigError(
                "output lengths must be >= 0",
                file=where,
                field="output_tokens",
                value=int(o[o < 0][0]),
            )
        if (x < 0).any():
            raise ConfigError(
                "prefix lengths must be >= 0",
                file=where,
                field="prefix_tokens",
                value=int(x[x < 0][0]),
            )
        if (x > p).any():
            i = int(np.argmax(x > p))
            raise ConfigError(
                "a prefix cannot be longer than its prompt",
                file=where,
                field="prefix_tokens",
                value=int(x[i]),
            )
        # a group only means something with a prefix; dense group ids
        g = np.where(x > 0, g, -1)
        if (g >= 0).any():
            _, dense = np.unique(g[g >= 0], return_inverse=True)
            g = g.copy()
            g[g >= 0] = dense
        extra = dict(extra or {})
        if sort:
            order = np.argsort(a, kind="stable")
            if not (order == np.arange(len(a))).all():
                a, p, o, g, x = a[order], p[order], o[order], g[order], x[order]
                extra = {k: np.asarray(v)[order] for k, v in extra.items()}
                extra["trace_row"] = order
        return cls(
            arrival_us=a,
            prompt_tok=p,
            output_tok=o,
            group=g,
            prefix_tok=x,
            name=name,
            source=source,
            extra=extra,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LengthSpec:
    """Gaussian lengths: mean, std, clamped to [min, max] (the ``*_tokens*`` settings)."""

    mean: int
    std: int
    min: int
    max: int

    def check(self, what: str) -> None:
        """Check the four numbers as the settings ``{what}_tokens``, ``..._stdev``, ``..._min``
        and ``..._max``."""
        names = {"mean": "", "std": "_stdev", "min": "_min", "max": "_max"}
        for k, suffix in names.items():
            settings.check(f"{what}_tokens{suffix}", getattr(self, k))
        if self.min > self.mean:
            raise ConfigError(
                f"min ({self.min}) is above the mean ({self.mean})",
                field=f"{what}_tokens_min",
                value=self.min,
            )
        if self.mean > self.max:
            raise ConfigError(
                f"mean ({self.mean}) is above the max ({self.max})",
                field=f"{what}_tokens_max",
                value=self.max,
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadSpec:
    """Everything that defines a workload (the settings of group ``workload``; defaults and
    checks from :mod:`infersweep.settings`)."""

    workload: str = settings.field_default("workload")
    rate: float = settings.field_default("rate")
    num_requests: int = settings.field_default("num_requests")
    seed: int = settings.field_default("seed")
    arrival: str = settings.field_default("arrival")
    arrival_cv: float = settings.field_default("arrival_cv")
    prompt: LengthSpec | None = None  # for "distribution" (default: DISTRIBUTION_DEFAULTS)
    output: LengthSpec | None = None
    prefix_tokens: int = settings.field_default("prefix_tokens")
    trace: str | None = None

    def __post_init__(self) -> None:
        settings.check("workload", self.workload)
        settings.check("arrival", self.arrival)
        if self.workload == "traces":
            if not self.trace:
                raise ConfigError("workload traces needs a trace file", field="trace")
            return
        for name in ("rate", "num_requests", "seed", "prefix_tokens"):
            settings.check(name, getattr(self, name))
        if self.arrival == "gamma":
            settings.check("arrival_cv", self.arrival_cv)
        if 1e6 / self.rate < 1:
            raise ConfigError(
                "rate above 1e6 requests per second (arrivals are in µs)",
                field="rate",
                value=self.rate,
            )
        limits.clock_check(int(self.num_requests), float(self.rate))
        if self.workload == "distribution":
            for ls, what in ((self.prompt, "prompt"), (self.output, "output")):
                if ls is not None:
                    ls.check(what)

    def lengths(self) -> tuple[LengthSpec, LengthSpec]:
        if self.workload in PRESETS:
            (pm, ps, pn, px), (om, os_, on, ox) = PRESETS[self.workload]
            return (
                LengthSpec(mean=pm, std=ps, min=pn, max=px),
                LengthSpec(mean=om, std=os_, min=on, max=ox),
            )
        m, s, lo, hi = DISTRIBUTION_DEFAULTS
        d = LengthSpec(mean=m, std=s, min=lo, max=hi)
        return self.prompt or d, self.output or d


def _gauss(rng: np.random.Generator, ls: LengthSpec, n: int) -> np.ndarray:
    """Gaussian lengths clamped to [min, max], rounded half away from zero, at least 1."""
    if ls.min == ls.max:
        return np.full(n, max(ls.min, 1), np.int64)
    v = rng.standard_normal(n) * ls.std + ls.mean
    v = np.clip(v, ls.min, ls.max)
    v = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.maximum(v.astype(np.int64), 1)


def constant_gap_us(rate: float) -> int:
    """The reference's spacing: int64(1 / (rate / 1e6)) µs (truncation)."""
    return int(1.0 / (rate * 1.0 / 1e6))


def arrivals_us(
    rate: float, n: int, process: str, cv: float, rng: np.random.Generator
) -> np.ndarray:
    if process == "constant":
        gap = constant_gap_us(rate)
        return gap * np.arange(1, n + 1, dtype=np.int64)
    mean_gap = 1e6 / rate
    if process == "poisson":
        gaps = rng.exponential(mean_gap, n)
    else:  # gamma: shape 1/cv^2, mean mean_gap
        shape = 1.0 / (cv * cv)
        gaps = rng.gamma(shape, mean_gap / shape, n)
    times = np.cumsum(gaps)
    if n and not times[-1] <= limits.MAX_TIME_S * 1e6:  # a heavy-tailed draw past the clock
        raise ConfigError(
            f"the last arrival falls after {times[-1] / 1e6:.3g} s, above the limit of "
            f"{limits.MAX_TIME_S:g} s (the clock counts int64 microseconds)",
            field="rate",
            value=rate,
        )
    return np.round(times).astype(np.int64)


def generate(spec: WorkloadSpec) -> Workload:
    """Synthesize a workload (presets and ``distribution``) or read a trace."""
    if spec.workload == "traces":
        assert spec.trace is not None
        from .trace import read_trace

        return read_trace(spec.trace)
    limits.check_memory(
        f"generating {int(spec.num_requests):,} requests",
        limits.workload_bytes(int(spec.num_requests)),
        field="num_requests",
        value=int(spec.num_requests),
    )
    ss = np.random.SeedSequence(int(spec.seed))
    len_ss, arr_ss = ss.spawn(2)
    len_rng = np.random.Generator(np.random.PCG64(len_ss))
    arr_rng = np.random.Generator(np.random.PCG64(arr_ss))
    n = int(spec.num_requests)
    p_spec, o_spec = spec.lengths()
    draws = _gauss(len_rng, p_spec, n), _gauss(len_rng, o_spec, n)
    prompt, output = draws
    prefix = int(spec.prefix_tokens)
    group = np.full(n, -1, np.int64)
    pfx = np.zeros(n, np.int64)
    if prefix > 0:
        prompt = prompt + prefix
        group[:] = 0
        pfx[:] = prefix
    arr = arrivals_us(float(spec.rate), n, spec.arrival, float(spec.arrival_cv), arr_rng)
    return Workload.from_arrays(arr, prompt, output, group, pfx, name=spec.workload)
