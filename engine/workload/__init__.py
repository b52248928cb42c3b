"""Workloads: generated (presets, ``distribution``, arrival processes) and traced requests."""

from infersweep.workload.generate import Workload, WorkloadSpec, generate
from infersweep.workload.trace import read_trace

__all__ = ["Workload", "WorkloadSpec", "generate", "read_trace"]
