"""infersweep engine: configs, cost tables, kernels, metrics.

Import what you need from the submodules; this package imports nothing heavy at import time
so that the CLI starts fast.  The main entry points:

- ``engine.simulate.simulate``: one simulation, returning per-request arrays and a summary.
- ``engine.stepcost.build_cost_model`` / ``CostModel.step_time``: the roofline step cost.
"""

__version__ = "0.1.0"
