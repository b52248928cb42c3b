"""The shape of the code base (STYLE.md): one package, stages that import one way, heavy
libraries in their one place."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved within infersweep)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                out.add("infersweep." + (node.module or ""))
            elif node.module:
                out.add(node.module)
                out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def _sources(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_engine_never_imports_sweeps():
    for path in _sources("engine"):
        if path == REPO / "engine" / "__init__.py":  # the lazy facade (infersweep.sweep)
            continue
        bad = {m for m in _imports(path) if m.startswith(("infersweep.sweeps", "sweeps"))}
        assert not bad, (path, bad)


def test_no_generic_top_level_imports():
    for path in _sources("engine") + _sources("sweeps") + _sources("tests"):
        bad = {m for m in _imports(path) if m.split(".")[0] in ("engine", "sweeps")}
        assert not bad, (path, bad)


def test_parquet_and_xarray_only_in_results():
    allowed = {REPO / "sweeps" / "results.py"}
    for path in _sources("engine") + _sources("sweeps"):
        heavy = {m for m in _imports(path) if m.startswith(("pyarrow.parquet", "xarray"))} | {
            m for m in _imports(path) if m == "pyarrow"
        }
        if path not in allowed:
            assert not heavy, (path, heavy)


def test_numba_only_in_kernel_modules():
    for path in _sources("engine") + _sources("sweeps"):
        uses = {m for m in _imports(path) if m.split(".")[0] == "numba"}
        if uses:
            assert path.name.endswith("_nb.py") or path.name == "_jit.py", (path, uses)


@pytest.mark.slow
def test_the_wheel_installs_one_package(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO), "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("infersweep-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"infersweep", wheel.name.split("-py3")[0] + ".dist-info"}, tops
    for part in (
        "infersweep/sweeps/cli.py",
        "infersweep/scheduler/vllm_nb.py",
        "infersweep/data/hardware/hardware.json",
        "infersweep/data/sweeps/example.toml",
    ):
        assert part in names, part
    # installed (not a checkout), the package never writes its kernel cache into its own
    # folder, which pip would then leave behind on uninstall
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {
        k: v for k, v in os.environ.items() if k not in ("INFERSWEEP_CACHE_DIR", "NUMBA_CACHE_DIR")
    }
    env.update(PYTHONPATH=str(site), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    proc = subprocess.run(
        [sys.executable, "-c", "import infersweep._jit as j; print(j.CACHE_DIR)"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    cache = Path(proc.stdout.strip())
    assert cache.is_relative_to(tmp_path / "xdg"), cache
    assert not (site / "infersweep" / "__pycache__").exists()
