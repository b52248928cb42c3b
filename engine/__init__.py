"""infersweep: a JIT-compiled, vectorised simulator of LLM inference serving.

The documented entry points (imported lazily, so ``import infersweep`` is instant):

- ``infersweep.simulate(...)``: one simulation, returning per-request arrays and a summary
  (``infersweep.api``).
- ``infersweep.sweep(spec, out)``: a sweep over a grid of configurations, written to Parquet
  (``infersweep.sweeps.runner``).
- ``infersweep.plan(spec, slo=..., target_rate=...)``: capacity planning, the highest rate
  meeting an SLO per configuration with costs and a sensitivity band, as an xarray Dataset
  (``infersweep.sweeps.plan``).

The stages, one sub-package each: ``config`` (hardware and model inputs), ``costmodel`` (the
roofline step cost), ``workload`` (generated and traced requests), ``scheduler`` (the kernels
and their one driver), ``metrics`` (summary statistics), ``fitting`` (measured traces,
validation, calibration) and ``sweeps`` (grids, runner, results, CLI).
"""

__version__ = "0.1.0"

__all__ = ["__version__", "plan", "simulate", "sweep"]


def __getattr__(name: str):
    if name == "simulate":
        from .api import simulate

        return simulate
    if name == "plan":
        from .sweeps.plan import plan

        return plan
    if name == "sweep":
        from .sweeps.runner import sweep

        return sweep
    raise AttributeError(f"module 'infersweep' has no attribute {name!r}")
