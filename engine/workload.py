"""Workloads: presets, ``distribution``, arrival processes and trace replay.

A workload is a structure of arrays sorted by arrival (stable).  Generated workloads draw from
numpy's ``Generator(PCG64(seed))`` (lengths and arrival gaps from two independent child
streams, so changing the arrival process does not change the lengths); traces are replayed
exactly: each row is one request at exactly that arrival with exactly those lengths.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConfigError

#: (prompt mean, std, min, max), (output mean, std, min, max) — SPEC_inputs_outputs §4
PRESETS: dict[str, tuple[tuple[int, int, int, int], tuple[int, int, int, int]]] = {
    "chatbot": ((256, 100, 2, 800), (256, 100, 1, 1024)),
    "contentgen": ((1024, 150, 10, 2048), (1024, 200, 10, 2048)),
    "summarization": ((4096, 500, 100, 8192), (512, 150, 10, 2048)),
    "multidoc": ((10240, 1200, 500, 20480), (1536, 300, 50, 4096)),
}
DISTRIBUTION_DEFAULTS = (512, 256, 2, 7000)
WORKLOADS = (*PRESETS, "distribution", "traces")
ARRIVALS = ("constant", "poisson", "gamma")

TRACE_COLUMNS = ("arrival_time_s", "prompt_tokens", "output_tokens")
TRACE_OPTIONAL = ("prefix_group", "prefix_tokens")
MEASURED_COLUMNS = ("measured_ttft_ms", "measured_e2e_ms")


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
    def from_arrays(cls, arrival_us, prompt_tok, output_tok, group=None, prefix_tok=None, *,
                    name: str = "custom", source: str = "", extra: dict | None = None,
                    sort: bool = True) -> "Workload":
        a = np.asarray(arrival_us, np.int64)
        p = np.asarray(prompt_tok, np.int64)
        o = np.asarray(output_tok, np.int64)
        g = np.full(len(a), -1, np.int64) if group is None else np.asarray(group, np.int64)
        x = np.zeros(len(a), np.int64) if prefix_tok is None else np.asarray(prefix_tok,
                                                                              np.int64)
        where = source or None
        if len(a) == 0:
            raise ConfigError("the workload has no requests", file=where)
        if (a < 0).any():
            raise ConfigError("arrival times must be >= 0", file=where, field="arrival_time_s",
                              value=float(a[a < 0][0]) / 1e6)
        if (p < 1).any():
            raise ConfigError("prompt lengths must be >= 1", file=where, field="prompt_tokens",
                              value=int(p[p < 1][0]))
        if (o < 0).any():
            raise ConfigError("output lengths must be >= 0", file=where, field="output_tokens",
                              value=int(o[o < 0][0]))
        if (x < 0).any():
            raise ConfigError("prefix lengths must be >= 0", file=where, field="prefix_tokens",
                              value=int(x[x < 0][0]))
        if (x > p).any():
            i = int(np.argmax(x > p))
            raise ConfigError("a prefix cannot be longer than its prompt", file=where,
                              field="prefix_tokens", value=int(x[i]))
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
        return cls(arrival_us=a, prompt_tok=p, output_tok=o, group=g, prefix_tok=x, name=name,
                   source=source, extra=extra)


@dataclass(frozen=True, slots=True, kw_only=True)
class LengthSpec:
    mean: int
    std: int
    min: int
    max: int

    def check(self, what: str) -> None:
        for k in ("mean", "std", "min", "max"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ConfigError("must be an integer", field=f"--{what}-tokens-{k}"
                                  if k != "mean" else f"--{what}-tokens", value=v)
            if v < 0:
                raise ConfigError("must be >= 0", field=f"--{what}-tokens-{k}"
                                  if k != "mean" else f"--{what}-tokens", value=v)
        if self.min > self.mean:
            raise ConfigError(f"min ({self.min}) is above the mean ({self.mean})",
                              field=f"--{what}-tokens-min", value=self.min)
        if self.mean > self.max:
            raise ConfigError(f"mean ({self.mean}) is above the max ({self.max})",
                              field=f"--{what}-tokens-max", value=self.max)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadSpec:
    """Everything that defines a workload (the ``run`` flags of the workload family)."""

    workload: str = "chatbot"
    rate: float = 1.0
    num_requests: int = 100
    seed: int = 42
    arrival: str = "constant"
    arrival_cv: float = 2.0
    prompt: LengthSpec | None = None  # for "distribution"
    output: LengthSpec | None = None
    prefix_tokens: int = 0
    trace: str | None = None

    def __post_init__(self) -> None:
        if self.workload not in WORKLOADS:
            raise ConfigError("unknown workload", field="--workload", value=self.workload,
                              hint="one of: " + ", ".join(WORKLOADS))
        if self.arrival not in ARRIVALS:
            raise ConfigError("unknown arrival process", field="--arrival", value=self.arrival,
                              hint="one of: " + ", ".join(ARRIVALS))
        if self.workload == "traces":
            if not self.trace:
                raise ConfigError("--workload traces needs --workload-traces-filepath",
                                  field="--workload-traces-filepath")
            return
        r = self.rate
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) \
                or r <= 0:
            raise ConfigError("must be a finite number > 0 (requests per second)",
                              field="--rate", value=r)
        n = self.num_requests
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError("must be an integer >= 1", field="--num-requests", value=n)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or self.seed < 0:
            raise ConfigError("must be an integer >= 0", field="--seed", value=self.seed)
        if self.arrival == "gamma":
            cv = self.arrival_cv
            if not isinstance(cv, (int, float)) or not math.isfinite(cv) or cv <= 0:
                raise ConfigError("must be a finite number > 0", field="--arrival-cv",
                                  value=cv)
        if isinstance(self.prefix_tokens, bool) or not isinstance(self.prefix_tokens,
                                                                  (int, np.integer)) \
                or self.prefix_tokens < 0:
            raise ConfigError("must be an integer >= 0", field="--prefix-tokens",
                              value=self.prefix_tokens)
        if 1e6 / r < 1:
            raise ConfigError("rate above 1e6 requests per second (arrivals are in µs)",
                              field="--rate", value=r)
        if self.workload == "distribution":
            for ls, what in ((self.prompt, "prompt"), (self.output, "output")):
                if ls is not None:
                    ls.check(what)

    def lengths(self) -> tuple[LengthSpec, LengthSpec]:
        if self.workload in PRESETS:
            (pm, ps, pn, px), (om, os_, on, ox) = PRESETS[self.workload]
            return (LengthSpec(mean=pm, std=ps, min=pn, max=px),
                    LengthSpec(mean=om, std=os_, min=on, max=ox))
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


def arrivals_us(rate: float, n: int, process: str, cv: float,
                rng: np.random.Generator) -> np.ndarray:
    if process == "constant":
        gap = constant_gap_us(rate)
        return gap * np.arange(1, n + 1, dtype=np.int64)
    mean_gap = 1e6 / rate
    if process == "poisson":
        gaps = rng.exponential(mean_gap, n)
    else:  # gamma: shape 1/cv^2, mean mean_gap
        shape = 1.0 / (cv * cv)
        gaps = rng.gamma(shape, mean_gap / shape, n)
    return np.round(np.cumsum(gaps)).astype(np.int64)


def generate(spec: WorkloadSpec) -> Workload:
    """Synthesize a workload (presets and ``distribution``) or read a trace."""
    if spec.workload == "traces":
        assert spec.trace is not None
        return read_trace(spec.trace)
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


# --------------------------------------------------------------------------------------------
# traces
# --------------------------------------------------------------------------------------------


def read_trace(path: str | os.PathLike, *, need_measured: bool = False) -> Workload:
    """Read a trace CSV: arrival_time_s,prompt_tokens,output_tokens[,prefix_group,
    prefix_tokens][,measured_ttft_ms,measured_e2e_ms][,phase]; other columns are ignored."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("trace file not found" if not p.exists() else "is not a file",
                          file=p)
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = [row for row in reader if row and any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read the trace ({exc})", file=p) from None
    if header is None:
        raise ConfigError("the trace is empty (no header row)", file=p)
    cols = [c.strip().lower() for c in header]
    missing = [c for c in TRACE_COLUMNS if c not in cols]
    if missing:
        raise ConfigError(f"missing column(s) {', '.join(missing)}", file=p, field="header",
                          value=",".join(header),
                          hint="a trace needs " + ",".join(TRACE_COLUMNS))
    if need_measured:
        miss = [c for c in MEASURED_COLUMNS if c not in cols]
        if miss:
            raise ConfigError(f"missing measurement column(s) {', '.join(miss)}", file=p,
                              field="header", value=",".join(header),
                              hint="a measured trace needs " + ",".join(MEASURED_COLUMNS))
    if not rows:
        raise ConfigError("the trace has no requests (only a header)", file=p)
    idx = {c: i for i, c in enumerate(cols)}

    def num(row: list[str], line: int, col: str, integer: bool, default=None):
        i = idx.get(col)
        if i is None or i >= len(row) or row[i].strip() == "":
            if default is not None:
                return default
            raise ConfigError("missing value", file=p, field=f"line {line} {col}")
        text = row[i].strip()
        try:
            v = float(text)
        except ValueError:
            raise ConfigError("not a number", file=p, field=f"line {line} {col}",
                              value=text) from None
        if not math.isfinite(v):
            raise ConfigError("must be finite", file=p, field=f"line {line} {col}", value=text)
        if integer:
            if v != int(v):
                raise ConfigError("must be an integer", file=p, field=f"line {line} {col}",
                                  value=text)
            return int(v)
        return v

    n = len(rows)
    arr = np.empty(n, np.int64)
    pt = np.empty(n, np.int64)
    ot = np.empty(n, np.int64)
    grp = np.full(n, -1, np.int64)
    pfx = np.zeros(n, np.int64)
    extra: dict[str, np.ndarray] = {}
    meas = [c for c in MEASURED_COLUMNS if c in idx]
    for c in meas:
        extra[c] = np.empty(n)
    phases = [] if "phase" in idx else None
    for k, row in enumerate(rows):
        line = k + 2
        t = num(row, line, "arrival_time_s", False)
        if t < 0:
            raise ConfigError("must be >= 0", file=p, field=f"line {line} arrival_time_s",
                              value=row[idx["arrival_time_s"]])
        arr[k] = int(round(t * 1e6))
        pt[k] = num(row, line, "prompt_tokens", True)
        if pt[k] < 1:
            raise ConfigError("must be >= 1", file=p, field=f"line {line} prompt_tokens",
                              value=int(pt[k]))
        ot[k] = num(row, line, "output_tokens", True)
        if ot[k] < 0:
            raise ConfigError("must be >= 0", file=p, field=f"line {line} output_tokens",
                              value=int(ot[k]))
        if "prefix_group" in idx:
            g = row[idx["prefix_group"]].strip() if idx["prefix_group"] < len(row) else ""
            if g not in ("", "-1"):
                grp[k] = num(row, line, "prefix_group", True)
        if "prefix_tokens" in idx:
            pfx[k] = num(row, line, "prefix_tokens", True, default=0)
            if pfx[k] < 0 or pfx[k] > pt[k]:
                raise ConfigError("must be between 0 and prompt_tokens", file=p,
                                  field=f"line {line} prefix_tokens", value=int(pfx[k]))
        for c in meas:
            v = num(row, line, c, False)
            if v < 0:
                raise ConfigError("must be >= 0", file=p, field=f"line {line} {c}", value=v)
            extra[c][k] = v
        if phases is not None:
            i = idx["phase"]
            phases.append(row[i].strip() if i < len(row) else "")
    if phases is not None:
        extra["phase"] = np.array(phases, dtype=object)
    return Workload.from_arrays(arr, pt, ot, grp, pfx, name="traces", source=str(p),
                                extra=extra)
