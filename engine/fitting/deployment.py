"""The deployment a measured trace is replayed on: settings given explicitly win over the
vLLM run's manifest, which wins over the registry's defaults."""

from __future__ import annotations

import os
from typing import Any

from infersweep import settings

#: read_manifest key -> setting name
MANIFEST_SETTINGS = {
    "model": "model",
    "gpu": "hardware",
    "tp": "tp",
    "blocks": "total_kv_blocks",
    "budget": "max_num_scheduled_tokens",
    "max_run": "max_num_running_reqs",
    "block": "block_size",
    "prefix_caching": "prefix_caching",
}


def resolve_deployment(given: dict[str, Any], manifest: str | os.PathLike | None = None):
    """(model, hardware entry, TP, SchedulerConfig, resolved settings) of a replay.

    ``given``: deployment and scheduler settings, ``None`` where not set."""
    from infersweep.config.models import load_hardware, load_model
    from infersweep.fitting.otlp import read_manifest

    man = read_manifest(manifest) if manifest is not None else {}
    values = {MANIFEST_SETTINGS[k]: v for k, v in man.items() if k in MANIFEST_SETTINGS}
    values.update({k: v for k, v in given.items() if v is not None})
    values = settings.resolve(values)
    model = settings.deploy(load_model(values["model"], values["model_config_folder"]), values)
    hardware = load_hardware(values["hardware"], values["hardware_config"])
    return model, hardware, values["tp"], settings.scheduler_config(values), values
