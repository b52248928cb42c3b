"""Every numba option of the project lives here (STYLE: one decorator module)."""

from __future__ import annotations

import numba

_OPTS = dict(cache=True, nogil=True, error_model="numpy")

jit = numba.njit(**_OPTS)
"""Decorator for a serial kernel."""

pjit = numba.njit(parallel=True, **_OPTS)
"""Decorator for a kernel that uses ``prange``."""

prange = numba.prange


def set_threads(n: int) -> None:
    """Limit the threads used by parallel kernels."""
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))


def max_threads() -> int:
    return int(numba.config.NUMBA_NUM_THREADS)
