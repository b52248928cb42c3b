"""Every numba option of the project lives here (STYLE: one decorator module).

Compiled kernels are cached on disk (``cache=True``) so that a second process compiles
nothing.  Numba keys each function's cache entry on its own source file only, so a kernel
that calls into another, changed kernel file would load stale machine code.  The cache
directory is therefore named after a hash of all kernel sources, ``schema.py`` (whose layout
indices the kernels compile in) and the Python and numba versions: any change to any of them
starts a fresh cache.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numba


def _skip_scipy_blas_probe() -> None:
    """Numba's lazily imported ``numba.np.arraymath`` probes for BLAS at import by importing
    scipy.linalg (about 0.4 s).  No kernel of ours uses BLAS, so import arraymath once with the
    probe failing fast; BLAS stays usable later (the stub is removed again), only numba's
    np.cov/np.corrcoef support is off in this process."""
    if "numba.np.arraymath" in sys.modules or "scipy.linalg.cython_blas" in sys.modules:
        return
    sys.modules["scipy.linalg.cython_blas"] = None  # type: ignore[assignment]
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        del sys.modules["scipy.linalg.cython_blas"]


_skip_scipy_blas_probe()

_OPTS = dict(cache=True, nogil=True, error_model="numpy")


def _cache_dir() -> str:
    here = Path(__file__).resolve().parent
    h = hashlib.sha1()
    # schema.py declares the layout indices that the kernels freeze as constants
    for p in sorted(here.rglob("*_nb.py")) + [here / "schema.py", Path(__file__).resolve()]:
        h.update(str(p.relative_to(here)).encode())
        h.update(p.read_bytes())
    tag = (
        f"infersweep-{h.hexdigest()[:16]}-py{sys.version_info[0]}{sys.version_info[1]}"
        f"-numba{numba.__version__}"
    )
    user = os.environ.get("INFERSWEEP_CACHE_DIR") or os.environ.get("NUMBA_CACHE_DIR")
    candidates = [Path(user)] if user else []
    candidates += [
        here / "__pycache__",
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "infersweep",
        Path(tempfile.gettempdir()) / "infersweep-cache",
    ]
    for base in candidates:
        try:
            d = base / tag
            d.mkdir(parents=True, exist_ok=True)
            probe = d / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
            return str(d)
        except OSError:
            continue
    return ""


CACHE_DIR = _cache_dir()


def _decorate(opts: dict):
    def deco(fn):
        old = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = CACHE_DIR or old
        try:
            return numba.njit(**opts)(fn)
        finally:
            numba.config.CACHE_DIR = old

    return deco


jit = _decorate(_OPTS)
"""Decorator for a serial kernel."""

hjit = _decorate(dict(_OPTS, _nrt=False))
"""Decorator for a hot helper that allocates no arrays.  Compiled without numba's reference
counting: an ordinary jitted function increfs every array argument on entry and decrefs it after
its last use, two atomic operations per array per call, which dominated the per-step cost of
the schedulers.  Such a helper may read and write the arrays it is given, but must not create,
slice or return arrays."""

ijit = _decorate(dict(_OPTS, _nrt=False, inline="always"))
"""An hjit helper that numba inlines into its callers at the IR level: for a helper called once
per entry inside a step (a real call costs a few ns, which a batch of hundreds multiplies)."""

pjit = _decorate(dict(_OPTS, parallel=True))
"""Decorator for a kernel that uses ``prange``."""

prange = numba.prange


def max_threads() -> int:
    return int(numba.config.NUMBA_NUM_THREADS)


@contextmanager
def parallel_settings(threads: int | None = None, chunksize: int = 1):
    """Threads and ``prange`` chunk size for the parallel kernels called inside the block."""
    old = numba.get_num_threads()
    if threads:
        numba.set_num_threads(max(1, min(int(threads), max_threads())))
    try:
        with numba.parallel_chunksize(chunksize):
            yield
    finally:
        numba.set_num_threads(old)
