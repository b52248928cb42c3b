"""Shared fixtures: the recorded reference outputs and an in-process CLI runner."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

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
    from sweeps.cli import main

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


def run_subprocess(*args: str, cwd: Path | None = None, timeout: float = 300,
                   env: dict | None = None):
    """Run ``infersweep`` in a fresh process (the installed console script's module)."""
    import subprocess

    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "sweeps.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd or REPO, timeout=timeout,
                          env=full_env)
