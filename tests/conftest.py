"""Shared fixtures: the recorded reference outputs and an in-process CLI runner."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]

# Property tests explore new examples on every local run; under CI they replay a fixed
# sequence, so a submission's result does not depend on the draw (a failure found locally
# becomes a directed test).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def reference_dir() -> Path:
    env = os.environ.get("INFERSWEEP_REFERENCE")
    return Path(env) if env else REPO.parent / "shared" / "reference"


def need_reference(*parts: str) -> Path:
    """The path under shared/reference; skip when absent, but fail when CI is set."""
    path = reference_dir().joinpath(*parts)
    if not path.exists():
        msg = f"reference data not found at {path} (set INFERSWEEP_REFERENCE)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must have it")
        pytest.skip(msg)
    return path


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run the console entry point in-process: ``cli("step-time", "--cases", f)``."""
    from infersweep.sweeps.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        cap = capsys.readouterr()
        return CliResult(code, cap.out, cap.err)

    return run


def run_subprocess(
    *args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None
):
    """Run ``infersweep`` in a fresh process (the installed console script's module)."""
    import subprocess

    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "infersweep.sweeps.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        timeout=timeout,
        env=full_env,
    )


def assert_one_error_line(res: CliResult, *needles: str, code: int = 2) -> str:
    """A bad input's outcome: exit ``code`` (2 for a ConfigError), exactly one stderr line,
    starting with ``error:`` and naming every needle, and no traceback anywhere."""
    assert res.code == code, (res.code, res.out, res.err)
    assert "Traceback" not in res.err and "Traceback" not in res.out, res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    line = lines[0]
    assert line.startswith("error:"), line
    for needle in needles:
        assert needle.lower() in line.lower(), (needle, line)
    return line


#: the seed document's `run` flags (paths relative to a folder made by make_seed_dir)
SEED_FLAGS = [
    "--model",
    "meta-llama/llama-3.1-8b-instruct",
    "--model-config-folder",
    "model_configs/llama-3.1-8b-instruct",
    "--hardware-config",
    "hardware_config_minimal.json",
    "--bench-data-path",
    "bench_data",
    "--hardware",
    "H100",
    "--tp",
    "1",
    "--workload",
    "chatbot",
]


def make_seed_dir(path: Path) -> Path:
    """Lay ``path`` out like the seed document's working directory."""
    (path / "model_configs" / "llama-3.1-8b-instruct").mkdir(parents=True)
    shutil.copy(
        REPO / "data" / "models" / "llama-3.1-8b-instruct" / "config.json",
        path / "model_configs" / "llama-3.1-8b-instruct" / "config.json",
    )
    shutil.copytree(REPO / "data" / "bench_data", path / "bench_data")
    (path / "hardware_config_minimal.json").write_text(
        '{"H100": {"TFlopsPeak": 989.5, "BwPeakTBs": 3.35}}'
    )
    return path


@dataclass
class FakeSim:
    """What fitting.validate.compare() reads from a SimResult (arrays in any order, matched by
    request_id)."""

    workload: object
    request_id: np.ndarray
    ttft_ms: np.ndarray
    e2e_ms: np.ndarray
    completed: np.ndarray
    dropped: np.ndarray
