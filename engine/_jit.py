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
from pathlib import Path


def _import_numba():
    """Import numba without the two imports it makes only for checks that do not apply here
    (about 15 ms of a 0.45 s command): ``yaml``, which numba's config uses only to read a
    ``.numba_config.yaml`` in the working directory (still imported when that file exists),
    and ``scipy``, imported only to check that its version is at least 1.0 (ours is newer,
    pinned in pyproject.toml).  Both stay importable afterwards."""
    hidden = [m for m in ("scipy", "yaml") if m not in sys.modules]
    if os.path.isfile(".numba_config.yaml") and "yaml" in hidden:
        hidden.remove("yaml")
    for m in hidden:
        sys.modules[m] = None  # type: ignore[assignment]
    try:
        import numba
    finally:
        for m in hidden:
            del sys.modules[m]
    return numba


numba = _import_numba()
from numba.core import types  # noqa: E402
from numba.core.caching import FunctionCache  # noqa: E402
from numba.core.registry import CPUDispatcher  # noqa: E402
from numba.core.runtime import rtsys  # noqa: E402


def _skip_scipy_blas_probe() -> None:
    """Numba's lazily imported ``numba.np.arraymath`` probes for BLAS at import by importing
    scipy.linalg (about 0.4 s).  No kernel of ours uses BLAS, so import arraymath once with the
    probe failing fast, just before our first compile (a warm process imports none of it).
    BLAS stays usable later (the stub is removed again); only numba's np.cov/np.corrcoef
    support is off in this process."""
    if "numba.np.arraymath" in sys.modules or "scipy.linalg.cython_blas" in sys.modules:
        return
    sys.modules["scipy.linalg.cython_blas"] = None  # type: ignore[assignment]
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        del sys.modules["scipy.linalg.cython_blas"]


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
    # inside the package only in a source checkout (engine/ next to pyproject.toml): files
    # written into an installed package are unknown to pip, which then leaves the package's
    # folder behind on uninstall, and that empty shell shadows a later (editable) install
    if (here.parent / "pyproject.toml").is_file():
        candidates.append(here / "__pycache__")
    candidates += [
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


class _Dispatcher(CPUDispatcher):
    """A dispatcher that compiles one specialisation per argument *types*, not per constant.

    Numba types a constant argument of a call between jitted functions as a literal
    (``Literal[int](0)``) and compiles the callee once for every distinct constant: the same
    helper was compiled up to four times, each copy linked and optimised again into its
    callers.  Calls between our kernels therefore pass plain types; LLVM still folds the
    constants where it inlines a callee."""

    def get_call_template(self, args, kws):
        args = tuple(types.unliteral(a) for a in args)
        kws = {k: types.unliteral(v) for k, v in kws.items()}
        return super().get_call_template(args, kws)


class _FunctionCache(FunctionCache):
    """Numba's on-disk cache, less one step.  Before it loads a cached function numba
    refreshes its whole typing and lowering context: it imports and registers every
    implementation of numpy, the builtins, typed containers, jitclasses, ... (numba imports
    them lazily for this), which was about a fifth of a warm ``run`` process.  Rebuilding
    machine code from the cache needs only numba's runtime (NRT), whose symbols the code links
    to.  Compiling refreshes both contexts itself (``CompilerBase``), so a cache miss still
    finds everything."""

    def load_overload(self, sig, target_context):
        rtsys.initialize(target_context)
        cres = None
        with self._guard_against_spurious_io_errors():
            cres = self._load_overload(sig, target_context)
        if cres is None:  # a compile follows, whose context refresh imports numba.np.arraymath
            _skip_scipy_blas_probe()
        return cres


def _decorate(opts: dict):
    targetoptions = {k: v for k, v in opts.items() if k != "cache"}
    targetoptions.update(nopython=True, boundscheck=None)

    def deco(fn):
        old = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = CACHE_DIR or old
        try:
            disp = _Dispatcher(py_func=fn, locals={}, targetoptions=dict(targetoptions))
            if opts.get("cache"):
                disp._cache = _FunctionCache(fn)
            return disp
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


def max_threads() -> int:
    return int(numba.config.NUMBA_NUM_THREADS)
