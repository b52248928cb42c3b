"""Calibrated hardware profiles: files in ``data/hardware`` fitted to measured runs.

A profile is an ordinary hardware-config file (usable as ``--hardware-config NAME``, as a sweep
axis value and in the Python API) with a ``_profile`` block that says what it was fitted to::

    {"_about": "...",
     "_profile": {"gpu": "H100", "vllm_version": "0.15", "fields": [...], "traces": [...],
                  "command": "...", "cross_validated": {...}, "fit": {...}},
     "H100": {"TFlopsPeak": 989.5, "BwPeakTBs": 3.35, ...}}

:func:`find_profile` picks the profile for a GPU and a vLLM version: the same major.minor
version when there is one, else the nearest version (ties: the newer).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from infersweep.config.catalog import hardware_dir
from infersweep.config.models import read_json


@dataclass(frozen=True, slots=True)
class Profile:
    path: Path
    name: str  # file name without .json: the --hardware-config NAME
    gpu: str
    vllm_version: str
    meta: dict


def parse_version(text: str) -> tuple[int, ...] | None:
    """(major, minor, patch) of a version string such as ``0.15.1`` or ``v0.11.0rc2``."""
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", str(text or ""))
    if not m:
        return None
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def list_profiles(folder: Path | None = None) -> list[Profile]:
    """Every calibrated profile in the hardware data folder (files with a ``_profile`` block)."""
    folder = folder or hardware_dir()
    out = []
    for p in sorted(folder.glob("*.json")):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        meta = data.get("_profile") if isinstance(data, dict) else None
        if not isinstance(meta, dict):
            continue
        out.append(
            Profile(
                path=p,
                name=p.stem,
                gpu=str(meta.get("gpu", "")),
                vllm_version=str(meta.get("vllm_version", "")),
                meta=meta,
            )
        )
    return out


def find_profile(gpu: str | None, vllm_version: str | None) -> tuple[Profile | None, str]:
    """The profile for ``gpu`` and ``vllm_version`` and a sentence saying why it was chosen
    (None and the reason when there is none for that GPU)."""
    gpu = (gpu or "").strip()
    cands = [p for p in list_profiles() if p.gpu.lower() == gpu.lower()] if gpu else []
    if not cands:
        return None, f"no calibrated profile for GPU {gpu or '(none given)'}"
    want = parse_version(vllm_version or "")
    if want is None:
        best = max(cands, key=lambda p: parse_version(p.vllm_version) or (0,))
        return best, (
            f"profile {best.name} (the newest for {gpu}): the manifest gives no vllm_version"
        )

    def key(p: Profile):
        v = parse_version(p.vllm_version) or (0, 0, 0)
        same = v[:2] == want[:2]
        dist = abs((v[0] * 1000 + v[1]) - (want[0] * 1000 + want[1]))
        return (0 if same else 1, dist, tuple(-x for x in v))

    best = min(cands, key=key)
    v = parse_version(best.vllm_version) or (0, 0, 0)
    how = "matches" if v[:2] == want[:2] else "is the nearest to"
    return best, (
        f"profile {best.name} (fitted on vLLM {best.vllm_version}, {best.gpu}) {how} "
        f"vLLM {vllm_version}"
    )


def manifest_identity(manifest_path) -> tuple[str | None, str | None]:
    """(gpu, vllm_version) from a manifest.json (None where absent)."""
    m = read_json(manifest_path)
    if not isinstance(m, dict):
        return None, None
    gpu = m.get("gpu") if isinstance(m.get("gpu"), str) else None
    ver = m.get("vllm_version") if isinstance(m.get("vllm_version"), str) else None
    return gpu, ver


def hardware_for_validation(
    hardware_config, manifest_path, gpu: str | None = None
) -> tuple[str | None, str]:
    """The hardware config ``validate`` uses and a sentence saying which and why: the one given;
    else the calibrated profile matching the GPU (``gpu`` when given, else the manifest's) and
    the manifest's ``vllm_version``; else the default hardware config."""
    if hardware_config is not None and str(hardware_config) != "":
        return str(hardware_config), f"hardware config {hardware_config} (given)"
    if manifest_path is None:
        return None, "the default hardware config (no manifest, so no calibrated profile)"
    man_gpu, ver = manifest_identity(manifest_path)
    prof, why = find_profile(gpu or man_gpu or "H100", ver)
    if prof is None:
        return None, f"the default hardware config ({why})"
    return str(prof.path), why
