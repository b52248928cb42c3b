"""Where data files are found: the embedded data directory and name resolution.

Every data file is found through ``data_dir()`` (the package's own ``data/``, overridable with
the ``INFERSWEEP_DATA`` environment variable or ``set_data_dir``), never relative to the
current directory, except for paths the user gives explicitly.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from infersweep.errors import ConfigError

_DATA_OVERRIDE: Path | None = None

#: Short names for the embedded hardware config files.
HARDWARE_ALIASES = {
    "minimal": "hardware_config_minimal.json",
    "full_487017bc": "hardware_config.json",
    "full": "hardware_config.json",
    "v2": "hardware_config_v2.json",
    "catalog": "hardware.json",
    "default": "hardware.json",
}

#: The hardware config used when none is given: datasheet figures plus MemoryGiB.
DEFAULT_HARDWARE_FILE = "hardware.json"


def set_data_dir(path: str | os.PathLike | None) -> None:
    """Point every lookup at another data directory (``None`` restores the default)."""
    global _DATA_OVERRIDE
    _DATA_OVERRIDE = None if path is None else Path(path)


def data_dir() -> Path:
    """The data directory: override, ``INFERSWEEP_DATA``, installed package data, source tree."""
    if _DATA_OVERRIDE is not None:
        return _DATA_OVERRIDE
    env = os.environ.get("INFERSWEEP_DATA")
    if env:
        return Path(env)
    return _embedded_data_dir()


@functools.cache
def _embedded_data_dir() -> Path:
    """The data shipped with the package (resolved once: it cannot move under a running
    process, and resolving it took a fifth of a small run's Python time)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "data"  # wheels map the repository's data/ to infersweep/data
    if (installed / "hardware").is_dir():
        return installed
    return package.parent / "data"  # source tree / editable install


def hardware_dir() -> Path:
    return data_dir() / "hardware"


def models_dir() -> Path:
    return data_dir() / "models"


def default_bench_dir() -> Path:
    return data_dir() / "bench_data"


def resolve_hardware_file(spec: str | os.PathLike | None) -> Path:
    """A hardware config: an existing path, an alias, or a file name in ``data/hardware``."""
    if spec is None or str(spec) == "":
        return hardware_dir() / DEFAULT_HARDWARE_FILE
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise ConfigError("is not a file", file=text, hint="hardware_config takes a JSON file")
    name = HARDWARE_ALIASES.get(text.lower(), text)
    for cand in (hardware_dir() / name, hardware_dir() / f"{name}.json"):
        if len(Path(name).parts) == 1 and cand.is_file():
            return cand
    known = sorted(HARDWARE_ALIASES) + sorted(p.name for p in hardware_dir().glob("*.json"))
    raise ConfigError(
        "hardware config file not found",
        file=text,
        hint="give a path, or one of: " + ", ".join(known),
    )


def known_models() -> list[str]:
    d = models_dir()
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if (p / "config.json").is_file())


def resolve_model_folder(model: str | None, folder: str | os.PathLike | None) -> Path:
    """The folder holding ``config.json``: ``--model-config-folder`` or a name in ``data/models``.

    A model label may be an ``org/name`` (``meta-llama/Llama-3.1-8B-Instruct``); it is matched
    case-insensitively by its full text and by its last component.
    """
    if folder is not None and str(folder) != "":
        path = Path(folder).expanduser()
        if path.is_file() and path.name.endswith(".json"):
            return path.parent if path.name == "config.json" else path
        if not path.is_dir():
            raise ConfigError(
                "model config folder not found",
                file=str(folder),
                hint="model_config_folder takes a folder holding config.json",
            )
        return path
    if not model:
        raise ConfigError(
            "no model given", field="model", hint="known models: " + ", ".join(known_models())
        )
    path = Path(model).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return path
    wanted = model.lower()
    for key in (wanted, wanted.rsplit("/", 1)[-1]):  # the embedded folders are lower case
        direct = models_dir() / key
        if key and "/" not in key and (direct / "config.json").is_file():
            return direct
    by_lower = {name.lower(): name for name in known_models()}
    for key in (wanted, wanted.rsplit("/", 1)[-1]):
        if key in by_lower:
            return models_dir() / by_lower[key]
    raise ConfigError(
        "unknown model",
        field="model",
        value=model,
        hint="known models: " + ", ".join(known_models()) + "; or give model_config_folder",
    )


def resolve_bench_dir(path: str | os.PathLike | None) -> Path:
    """The MFU table folder: the given path (must exist) or the embedded tables."""
    if path is None or str(path) == "":
        return default_bench_dir()
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ConfigError(
            "bench-data folder not found",
            file=str(path),
            hint="bench_data takes a folder with gemm/ and mha/",
        )
    return p


#: KV-transfer links of prefill/decode disaggregation (``kv_link``): per-GPU bandwidth in
#: Gbit/s (one direction) and one-way latency in µs, with where the figures come from.  A
#: prefill instance at TP t moves its t KV shards in parallel, one per GPU and link.
KV_LINKS: dict[str, dict] = {
    "nvlink": {
        "gbps": 3600.0,
        "latency_us": 2.0,
        "source": "NVLink 4 (H100 SXM datasheet): 900 GB/s per GPU in both directions, so "
        "450 GB/s = 3,600 Gbit/s each way; a few µs per transfer (same node only)",
    },
    "infiniband": {
        "gbps": 400.0,
        "latency_us": 5.0,
        "source": "InfiniBand NDR, one 400 Gbit/s ConnectX-7 port per GPU (DGX H100 "
        "datasheet); RDMA one-way latency a few µs",
    },
    "ethernet": {
        "gbps": 100.0,
        "latency_us": 50.0,
        "source": "100 GbE per GPU, TCP: 100 Gbit/s; one-way latency of tens of µs in a "
        "data centre (kernel network stack)",
    },
}


def kv_link(name: str, gbps: float | None = None, latency_us: float | None = None):
    """The (bandwidth Gbit/s, latency µs) of a KV link preset, with either overridden."""
    if name not in KV_LINKS:
        raise ConfigError(
            "unknown KV link", field="kv_link", value=name, hint="one of: " + ", ".join(KV_LINKS)
        )
    preset = KV_LINKS[name]
    return (
        float(preset["gbps"] if gbps is None else gbps),
        float(preset["latency_us"] if latency_us is None else latency_us),
    )
