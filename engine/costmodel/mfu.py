"""MFU tables (``bench_data/``): loading, validation and the table choices of REFERENCE §4.

The lookups themselves (interpolation, fallbacks) run in ``stepcost_nb``; this module reads the
CSV files once per folder and GPU and makes the per-model choices (attention key, decode TP
file, GEMM (K, N) group) that do not change during a simulation.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from infersweep.errors import ConfigError

EPS_MFU = 1e-4


@dataclass(frozen=True, slots=True)
class PrefillTable:
    key: str
    seq_len: np.ndarray  # int64, file order
    mfu: np.ndarray  # float64, file order


@dataclass(frozen=True, slots=True)
class DecodeTable:
    key: str
    batch_size: np.ndarray  # int64, file order
    kv_len: np.ndarray  # int64, file order
    mfu: np.ndarray  # float64, file order


@dataclass(frozen=True, slots=True)
class BenchTables:
    root: str
    gpu_dir: str
    gemm_m: np.ndarray
    gemm_k: np.ndarray
    gemm_n: np.ndarray
    gemm_mfu: np.ndarray
    prefill: dict[str, PrefillTable]  # insertion order = lexical file order
    decode: dict[str, DecodeTable]

    @property
    def prefill_keys(self) -> list[str]:
        return list(self.prefill)


def _find_gpu_dir(parent: Path, gpu: str) -> Path | None:
    """The sub-folder of ``parent`` named ``gpu``, matched case-insensitively (fixes Q4)."""
    if not parent.is_dir():
        return None
    exact = parent / gpu
    if exact.is_dir():
        return exact
    for p in sorted(parent.iterdir()):
        if p.is_dir() and p.name.lower() == gpu.lower():
            return p
    return None


def gpu_has_tables(root: str | Path, gpu: str) -> bool:
    root = Path(root)
    return any(
        _find_gpu_dir(root / sub, gpu) is not None for sub in ("gemm", "mha/prefill", "mha/decode")
    )


def _read_rows(path: Path, n_cols: int) -> list[tuple[int, list[str]]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise ConfigError(f"cannot read CSV ({exc})", file=path) from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"malformed CSV ({exc})", file=path) from None
    if len(rows) < 2:
        raise ConfigError("CSV is empty or has only a header", file=path)
    out = []
    for i, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < n_cols:
            raise ConfigError(
                f"malformed CSV row: expected at least {n_cols} columns, got {len(row)}",
                file=path,
                field=f"line {i}",
                value=",".join(row),
            )
        out.append((i, row))
    return out


def _int(path: Path, line: int, col: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError(
            "malformed CSV row: not an integer", file=path, field=f"line {line} {col}", value=text
        ) from None


def _mfu(path: Path, line: int, text: str) -> float:
    try:
        v = float(text.strip())
    except ValueError:
        raise ConfigError(
            "malformed CSV row: mfu is not a number",
            file=path,
            field=f"line {line} mfu",
            value=text,
        ) from None
    if not math.isfinite(v) or v < 0:
        raise ConfigError(
            "malformed CSV row: mfu must be finite and >= 0",
            file=path,
            field=f"line {line} mfu",
            value=text,
        )
    return v


@lru_cache(maxsize=32)
def load_bench_tables(root: str, gpu: str) -> BenchTables | None:
    """All tables of one GPU under ``root``; ``None`` when the GPU has no tables at all."""
    base = Path(root)
    dirs = {sub: _find_gpu_dir(base / sub, gpu) for sub in ("gemm", "mha/prefill", "mha/decode")}
    if all(d is None for d in dirs.values()):
        return None
    for sub, d in dirs.items():
        if d is None:
            raise ConfigError(
                f"no {sub} tables for GPU {gpu!r} (the other tables exist)", file=base / sub
            )
    gemm_path = dirs["gemm"] / "data.csv"
    if not gemm_path.is_file():
        raise ConfigError("GEMM table not found", file=gemm_path)
    gm, gk, gn, gf = [], [], [], []
    for line, row in _read_rows(gemm_path, 5):
        gm.append(_int(gemm_path, line, "m", row[0]))
        gk.append(_int(gemm_path, line, "k", row[1]))
        gn.append(_int(gemm_path, line, "n", row[2]))
        gf.append(_mfu(gemm_path, line, row[4]))

    prefill: dict[str, PrefillTable] = {}
    files = sorted(dirs["mha/prefill"].glob("*.csv"))
    if not files:
        raise ConfigError("no prefill CSV files found", file=dirs["mha/prefill"])
    for f in files:
        seq, mfu = [], []
        for line, row in _read_rows(f, 4):
            seq.append(_int(f, line, "seq_len", row[1]))
            mfu.append(_mfu(f, line, row[3]))
        prefill[f.stem] = PrefillTable(f.stem, np.array(seq, np.int64), np.array(mfu, np.float64))

    decode: dict[str, DecodeTable] = {}
    files = sorted(dirs["mha/decode"].glob("*.csv"))
    if not files:
        raise ConfigError("no decode CSV files found", file=dirs["mha/decode"])
    for f in files:
        bs, kv, mfu = [], [], []
        for line, row in _read_rows(f, 6):
            bs.append(_int(f, line, "batch_size", row[2]))
            kv.append(_int(f, line, "kv_len", row[3]))
            mfu.append(_mfu(f, line, row[5]))
        decode[f.stem] = DecodeTable(
            f.stem, np.array(bs, np.int64), np.array(kv, np.int64), np.array(mfu, np.float64)
        )
    return BenchTables(
        root=str(base),
        gpu_dir=dirs["gemm"].name,
        gemm_m=np.array(gm, np.int64),
        gemm_k=np.array(gk, np.int64),
        gemm_n=np.array(gn, np.int64),
        gemm_mfu=np.array(gf, np.float64),
        prefill=prefill,
        decode=decode,
    )


# --------------------------------------------------------------------------------------------
# Per-model choices
# --------------------------------------------------------------------------------------------


def _parse_key(key: str) -> tuple[int, int, int] | None:
    parts = key.split("-")
    if len(parts) != 3:
        return None
    try:
        return int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None


def choose_attention_key(tables: BenchTables, heads: int, kv_heads: int, head_dim: int) -> str:
    """The model's key if a prefill table has it, else the nearest (H, KV, hd) (ties: first)."""
    key = f"{heads}-{kv_heads}-{head_dim}"
    if key in tables.prefill:
        return key
    best, best_d = None, math.inf
    for cand in tables.prefill:  # lexical file order, strict <
        shape = _parse_key(cand) or (0, 0, 0)
        d = math.sqrt(
            (shape[0] - heads) ** 2 + (shape[1] - kv_heads) ** 2 + (shape[2] - head_dim) ** 2
        )
        if d < best_d:
            best, best_d = cand, d
    assert best is not None
    return best


def choose_decode_table(tables: BenchTables, key: str, tp: int) -> DecodeTable:
    """``{key}-tp{tp}`` if present, else the nearest available TP (ties: the smaller)."""
    avail: list[int] = []
    for name in tables.decode:
        prefix = f"{key}-tp"
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            avail.append(int(name[len(prefix) :]))
    if not avail:
        raise ConfigError(
            f"no decode MFU table for attention config {key}",
            file=Path(tables.root) / "mha" / "decode" / tables.gpu_dir,
        )
    if tp in avail:
        return tables.decode[f"{key}-tp{tp}"]
    best, best_d = None, None
    for t in sorted(avail):
        d = abs(t - tp)
        if best_d is None or d < best_d:
            best, best_d = t, d
    return tables.decode[f"{key}-tp{best}"]


def choose_gemm_group(tables: BenchTables, k: int, n: int) -> tuple[int, int]:
    """The (K, N) group of REFERENCE §4.5 for a GEMM of inner size k and output size n."""
    groups: list[tuple[int, int]] = []
    seen = set()
    for kk, nn in zip(tables.gemm_k.tolist(), tables.gemm_n.tolist()):
        if (kk, nn) not in seen:
            seen.add((kk, nn))
            groups.append((kk, nn))
    best, best_d = None, math.inf
    for kk, nn in groups:
        if kk >= k and nn >= n:
            d = float(kk - k) ** 2 + float(nn - n) ** 2
            if d < best_d:
                best, best_d = (kk, nn), d
    if best is None:
        mag = -1.0
        for kk, nn in groups:
            m = float(kk) * kk + float(nn) * nn
            if m > mag:
                best, mag = (kk, nn), m
    assert best is not None
    return best
