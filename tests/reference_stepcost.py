"""A slow, literal pure-Python port of the roofline step cost (REFERENCE_SEMANTICS §2–§5,
SPEC §1.1–§1.2), written independently of ``engine/`` for the tests.

It reads the config files and the bench-data CSVs itself (``json`` and ``csv`` only, no numpy,
no engine imports), follows the REFERENCE text line by line, including its evaluation order, and
is meant to be obviously correct rather than fast. It is checked against the recorded reference
outputs in ``tests/parity/test_step_cases.py``.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

EPS = 1e-4
REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"

DTYPE_BYTES = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "int8": 1,
    "uint8": 1,
    "fp8": 1,
    "int4": 1,
    "nf4": 1,
}


# ---------------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefModel:
    L: int
    d: int
    H: int
    KV: int
    d_ff_raw: int
    B: float

    @property
    def hd(self) -> int:
        return self.d // self.H

    @property
    def d_ff(self) -> int:
        return self.d_ff_raw if self.d_ff_raw != 0 else 4 * self.d

    @property
    def key(self) -> str:
        return f"{self.H}-{self.KV}-{self.hd}"


def ref_model_from_dict(cfg: dict) -> RefModel:
    """REFERENCE §3: text_config keys override; first non-zero numeric key wins."""
    m = dict(cfg)
    if isinstance(cfg.get("text_config"), dict):
        m.update(cfg["text_config"])

    def first(*keys: str) -> int:
        for k in keys:
            v = m.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and int(v) != 0:
                return int(v)
        return 0

    H = first("num_attention_heads")
    dtype = m.get("torch_dtype") if isinstance(m.get("torch_dtype"), str) else m.get("dtype")
    return RefModel(
        L=first("num_hidden_layers"),
        d=first("hidden_size"),
        H=H,
        KV=first("num_key_value_heads", "num_kv_heads", "multi_query_group_num") or H,
        d_ff_raw=first("intermediate_size", "ffn_hidden_size"),
        B=float(DTYPE_BYTES.get(str(dtype).lower(), 0)),
    )


def ref_model(name: str) -> RefModel:
    return ref_model_from_dict(json.loads((DATA / "models" / name / "config.json").read_text()))


HW_FILES = {
    "minimal": "hardware_config_minimal.json",
    "full_487017bc": "hardware_config.json",
    "v2": "hardware_config_v2.json",
}


def ref_hardware(hw_config: str, gpu: str = "H100") -> dict:
    """The entry as a dict with canonical keys (case-insensitive match), missing fields 0."""
    raw = json.loads((DATA / "hardware" / HW_FILES[hw_config]).read_text())[gpu]
    return normalise_hw(raw)


HW_KEYS = (
    "TFlopsPeak",
    "BwPeakTBs",
    "TOverheadMicros",
    "PrefillOverheadMicros",
    "MixedPrefillOverheadMicros",
    "AllReduceLatency",
    "bwEfficiencyFactor",
    "perLayerOverhead",
    "MemoryGiB",
    "BwEffConstant",
    "mfuPrefill",
    "mfuDecode",
)


def normalise_hw(raw: dict) -> dict:
    lower = {k.lower(): v for k, v in raw.items()}
    return {k: float(lower.get(k.lower(), 0.0) or 0.0) for k in HW_KEYS}


# ---------------------------------------------------------------------------------------------
# MFU tables (REFERENCE §4)
# ---------------------------------------------------------------------------------------------


def _gpu_dir(parent: Path, gpu: str) -> Path:
    for p in sorted(parent.iterdir()):
        if p.is_dir() and p.name.lower() == gpu.lower():
            return p
    raise FileNotFoundError(parent / gpu)


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return [r for r in list(csv.reader(fh))[1:] if r]


def bracket(values: list, x) -> tuple[int, int]:
    n = len(values)
    if x <= values[0]:
        return 0, 0
    if x >= values[n - 1]:
        return n - 1, n - 1
    hi = next(i for i, v in enumerate(values) if v >= x)
    if values[hi] == x:
        return hi, hi
    return hi - 1, hi


def lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


class RefTables:
    """The MFU database of one GPU, read from the CSVs."""

    def __init__(self, root: Path | str | None = None, gpu: str = "H100") -> None:
        root = Path(root) if root is not None else DATA / "bench_data"
        self.gemm = [
            (int(r[0]), int(r[1]), int(r[2]), float(r[4]))
            for r in _rows(_gpu_dir(root / "gemm", gpu) / "data.csv")
        ]
        pdir = _gpu_dir(root / "mha" / "prefill", gpu)
        self.prefill = {
            f.stem: [(int(r[1]), float(r[3])) for r in _rows(f)] for f in sorted(pdir.glob("*.csv"))
        }
        ddir = _gpu_dir(root / "mha" / "decode", gpu)
        self.decode = {
            f.stem: [(int(r[2]), int(r[3]), float(r[5])) for r in _rows(f)]
            for f in sorted(ddir.glob("*.csv"))
        }

    # -- choices ---------------------------------------------------------------------------
    def attention_key(self, m: RefModel) -> str:
        if m.key in self.prefill:
            return m.key
        best, best_d = None, math.inf
        for k in self.prefill:
            h, kv, hd = (int(x) for x in k.split("-"))
            dist = math.sqrt((h - m.H) ** 2 + (kv - m.KV) ** 2 + (hd - m.hd) ** 2)
            if dist < best_d:
                best, best_d = k, dist
        return best

    def decode_rows(self, key: str, tp: int) -> list[tuple[int, int, float]]:
        avail = sorted(int(n.rsplit("-tp", 1)[1]) for n in self.decode if n.startswith(key + "-tp"))
        if tp in avail:
            return self.decode[f"{key}-tp{tp}"]
        best, best_d = None, None
        for t in avail:
            if best_d is None or abs(t - tp) < best_d:
                best, best_d = t, abs(t - tp)
        return self.decode[f"{key}-tp{best}"]

    def gemm_group(self, k: int, n: int) -> tuple[int, int]:
        groups = list(dict.fromkeys((kk, nn) for _, kk, nn, _ in self.gemm))
        best, best_d = None, math.inf
        for kk, nn in groups:
            if kk >= k and nn >= n and (kk - k) ** 2 + (nn - n) ** 2 < best_d:
                best, best_d = (kk, nn), (kk - k) ** 2 + (nn - n) ** 2
        if best is None:
            best = max(groups, key=lambda g: g[0] ** 2 + g[1] ** 2)
        return best

    # -- lookups -----------------------------------------------------------------------------
    def mfu_g(self, m: int, k: int, n: int) -> float:
        kk, nn = self.gemm_group(k, n)
        pts = sorted((mm, f) for mm, k2, n2, f in self.gemm if (k2, n2) == (kk, nn))
        ms = [p[0] for p in pts]
        lo, hi = bracket(ms, m)
        mfu = (
            pts[lo][1]
            if lo == hi
            else lerp(pts[lo][1], pts[hi][1], float(m - ms[lo]) / float(ms[hi] - ms[lo]))
        )
        if mfu < EPS:
            best = None
            for mm, k2, n2, f in self.gemm:
                if f >= EPS:
                    dist = (mm - m) ** 2 + (k2 - k) ** 2 + (n2 - n) ** 2
                    if best is None or dist < best:
                        best, mfu = dist, f
            if best is None:
                mfu = EPS
        return mfu

    def mfu_p(self, key: str, s: int) -> float:
        rows = self.prefill[key]
        srt = sorted(rows, key=lambda r: r[0])
        seqs = [r[0] for r in srt]
        lo, hi = bracket(seqs, s)
        mfu = (
            srt[lo][1]
            if lo == hi
            else lerp(srt[lo][1], srt[hi][1], float(s - seqs[lo]) / float(seqs[hi] - seqs[lo]))
        )
        if mfu < EPS:
            best = None
            for seq, f in rows:
                if f >= EPS and (best is None or abs(seq - s) < best):
                    best, mfu = abs(seq - s), f
            if best is None:
                mfu = EPS
        return mfu

    def mfu_d(self, rows: list[tuple[int, int, float]], bs: int, kv: int) -> float:
        axb = sorted({r[0] for r in rows})
        axk = sorted({r[1] for r in rows})
        cell = {}
        for b, k, f in rows:
            cell[(b, k)] = f
        b0i, b1i = bracket(axb, bs)
        k0i, k1i = bracket(axk, kv)
        b0, b1, k0, k1 = axb[b0i], axb[b1i], axk[k0i], axk[k1i]

        def q(b, k):
            return cell.get((b, k), 0.0)

        if b0 == b1 and k0 == k1:
            mfu = q(b0, k0)
        elif b0 == b1:
            mfu = lerp(q(b0, k0), q(b0, k1), float(kv - k0) / float(k1 - k0))
        elif k0 == k1:
            mfu = lerp(q(b0, k0), q(b1, k0), float(bs - b0) / float(b1 - b0))
        else:
            tb = float(bs - b0) / float(b1 - b0)
            top = lerp(q(b0, k0), q(b1, k0), tb)
            bot = lerp(q(b0, k1), q(b1, k1), tb)
            mfu = lerp(top, bot, float(kv - k0) / float(k1 - k0))
        if mfu < EPS:
            best = None
            for b, k, f in rows:
                if f >= EPS:
                    dist = math.sqrt(float(b - bs) ** 2 + float(k - kv) ** 2)
                    if best is None or dist < best:
                        best, mfu = dist, f
            if best is None:
                mfu = EPS
        return mfu


# ---------------------------------------------------------------------------------------------
# step time (REFERENCE §5, SPEC §1)
# ---------------------------------------------------------------------------------------------


def go_round(x: float) -> int:
    """Go's math.Round for x >= 0: truncate, add one if the fraction is >= 0.5."""
    t = math.trunc(x)
    return int(t + 1 if x - t >= 0.5 else t)


class RefStepCost:
    """Step time of one (model, hardware entry, TP); ``tables=None`` means roofline v1."""

    def __init__(self, model: RefModel, hw: dict, tp: int, tables: RefTables | None) -> None:
        self.m = model
        self.hw = hw
        self.tp = tp
        self.tables = tables
        self.v1 = tables is None
        self.P = hw["TFlopsPeak"] * 1e12
        W = hw["BwPeakTBs"] * 1e12
        if self.v1 and hw["BwEffConstant"] > 0:
            W = W * hw["BwEffConstant"]
        elif hw["bwEfficiencyFactor"] != 0:
            W = W * hw["bwEfficiencyFactor"]
        self.W = W
        self.tau = 1.0 / tp
        m = model
        d_kv = m.KV * (m.d // m.H)
        self.shapes = [
            (m.d, m.d),
            (m.d, d_kv),
            (m.d, d_kv),
            (m.d, m.d),
            (m.d, m.d_ff),
            (m.d, m.d_ff),
            (m.d_ff, m.d),
        ]
        if not self.v1:
            self.key = tables.attention_key(m)
            self.drows = tables.decode_rows(self.key, tp)
        # W_b, REFERENCE §5.5 (float64, dh = d/H)
        d = float(m.d)
        dh = d / float(m.H)
        dkv = float(m.KV) * dh
        dff = float(m.d_ff)
        self.Wb = (d * (d + 2 * dkv) + d * d + 3 * d * dff) * float(m.L) * m.B
        self._g: dict[tuple[int, float], float] = {}

    # -- pieces ------------------------------------------------------------------------------
    def gemm(self, M: int, k: int, n: int, mfu_const: float) -> float:
        mfu = mfu_const if self.v1 else self.tables.mfu_g(M, k, n)
        eff = self.P * mfu
        if eff <= 0:
            eff = 1.0
        compute = 2.0 * M * k * n / eff
        floor = k * n * self.m.B / self.W
        return max(compute, floor)

    def G(self, M: int, mfu_const: float = 0.0) -> float:
        key = (M, mfu_const)
        if key not in self._g:
            s = 0.0
            for k, n in self.shapes:
                s += self.gemm(M, k, n, mfu_const)
            self._g[key] = s * self.tau * self.m.L
        return self._g[key]

    def A(self, q: int, c: int) -> float:
        m = self.m
        return 2.0 * m.H * q * c * m.hd + 2.0 * m.H * q * c * m.hd

    def dyn(self, seq: int, t: int) -> float:
        m = self.m
        L, d, B = float(m.L), float(m.d), m.B
        dh = d / float(m.H)
        KV = float(m.KV)
        f = 0.80 if t == 1 else 0.92
        g = 0.75 if t == 1 else 0.85
        kv_growth = 2 * L * KV * dh * B * t
        kv_access = 2 * L * KV * dh * B * seq * f
        act = L * d * B * t * g
        total = 0.0 + act
        total = total + kv_access
        total = total + kv_growth
        total = total + self.Wb
        return total - self.Wb

    # -- phases -------------------------------------------------------------------------------
    def decode_phase(self, decodes: list[int]) -> tuple[float, float]:
        bs = len(decodes)
        mfu_dec = self.hw["mfuDecode"]
        g = self.G(bs, mfu_dec if self.v1 else 0.0)
        F = 0.0
        Sw = 0.0
        for c in decodes:
            f = self.A(1, c) * self.m.L
            F += f
            Sw += f * (mfu_dec if self.v1 else self.tables.mfu_d(self.drows, bs, c))
        attn = 0.0
        if F > 0:
            eff = Sw / F
            if eff > 0:
                attn = F / (self.P * eff) * self.tau
        compute = g + attn
        acc = self.Wb * self.tau
        for c in decodes:
            acc += self.dyn(c, 1) * self.tau
        return compute, acc / self.W

    def prefill_phase(self, prefills: list[tuple[int, int]]) -> tuple[float, float]:
        buckets: dict[int, list[tuple[int, int]]] = {}
        for pi, n in prefills:
            s = pi + n
            b = 512
            while b < s and b < 65536:
                b *= 2
            buckets.setdefault(b, []).append((pi, n))
        compute = 0.0
        for b in sorted(buckets):
            T = sum(n for _, n in buckets[b])
            Fb = 0.0
            for pi, n in buckets[b]:
                Fb += self.A(n, pi + n) * self.m.L
            mfu = self.hw["mfuPrefill"] if self.v1 else self.tables.mfu_p(self.key, b)
            attn = Fb / 1.8 / (self.P * mfu) * self.tau
            compute = compute + (self.G(T, self.hw["mfuPrefill"] if self.v1 else 0.0) + attn)
        acc = self.Wb * self.tau
        for pi, n in prefills:
            acc += self.dyn(pi, n) * self.tau
        return compute, acc / self.W

    def overhead_us(self, n_pf: int, n_dc: int) -> float:
        hw = self.hw
        ovh = hw["perLayerOverhead"] * self.m.L / self.tp
        if n_pf + n_dc > 0:
            ovh += hw["TOverheadMicros"]
            if self.tp > 1:
                ovh += hw["AllReduceLatency"] * 2 * self.m.L
            if n_pf > 0 and n_dc == 0:
                ovh += hw["PrefillOverheadMicros"] * n_pf
            elif n_pf > 0:
                ovh += hw["MixedPrefillOverheadMicros"] * n_pf
        return ovh

    def hardware_s(self, prefills, decodes) -> float:
        pT = max(self.prefill_phase(prefills)) if prefills else None
        dT = max(self.decode_phase(decodes)) if decodes else None
        if pT is not None and dT is not None:
            return max(pT, dT)
        if pT is not None:
            return pT
        if dT is not None:
            return dT
        return 0.0

    def step_us(self, prefills=(), decodes=()) -> int:
        prefills = [tuple(p) for p in prefills]
        decodes = list(decodes)
        hw = self.hardware_s(prefills, decodes)
        total = (hw + self.overhead_us(len(prefills), len(decodes)) / 1e6) * 1e6
        if total < 1:
            total = 1.0
        return go_round(total)


_TABLES: dict[str, RefTables] = {}


def ref_cost(
    model: str | RefModel,
    hw: str | dict,
    tp: int,
    *,
    v1: bool = False,
    bench_root: str | None = None,
) -> RefStepCost:
    """Convenience: ``ref_cost("llama-3.1-8b-instruct", "minimal", 1).step_us(...)``."""
    m = ref_model(model) if isinstance(model, str) else model
    h = ref_hardware(hw) if isinstance(hw, str) else normalise_hw(hw)
    tables = None
    if not v1:
        key = str(bench_root)
        if key not in _TABLES:
            _TABLES[key] = RefTables(bench_root)
        tables = _TABLES[key]
    return RefStepCost(m, h, tp, tables)
