"""Every kernel compiles exactly one specialisation per run: no duplicate per constant argument
(numba types constants as literals), per semantics where the other's kernel is not needed, or
per caller.  Each case runs in a fresh process with an empty kernel cache, so that every
kernel it needs is compiled (not loaded) and counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numba.core.registry
    from infersweep.api import simulate

    case = sys.argv[1]
    kw = dict(model="llama-3.1-8b-instruct", hardware="H100", tp=1, num_requests=30, rate=8.0)
    if case == "sweep":
        from infersweep.sweeps.grid import SweepSpec
        from infersweep.sweeps.runner import run_sweep

        spec = SweepSpec(name="spec")
        spec.set_fixed("model", "llama-3.1-8b-instruct")
        spec.set_fixed("hardware", "H100")
        spec.set_fixed("workload", "chatbot")
        spec.set_fixed("num_requests", 30)
        spec.add_axis("rate", [1, 8, 64])
        spec.add_axis("tp", [1, 2])
        run_sweep(spec, sys.argv[2], threads=2, quiet=True)
    elif case == "cluster":  # the cluster kernel shares vllm_advance_nb with the single one
        simulate(semantics="vllm", **kw)
        simulate(replicas=3, router="prefix-affinity", workload="chatbot", **kw)
        simulate(replicas=2, routing_latency=1.0, workload="multidoc", **kw)
    elif case == "pd":  # disaggregation shares vllm_advance_nb too, with two cost tables
        simulate(semantics="vllm", **kw)
        simulate(replicas=2, workload="chatbot", **kw)
        simulate(prefill_instances=2, decode_instances=1, workload="chatbot", **kw)
        simulate(prefill_instances=1, decode_instances=2, decode_tp=2, router="least-kv", **kw)
    else:
        simulate(semantics=case, **kw)
        simulate(semantics=case, log_steps=1000, workload="multidoc", **kw)
    counts = {}
    for name, mod in list(sys.modules.items()):
        if not name.startswith("infersweep"):
            continue
        for attr, obj in vars(mod).items():
            if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.signatures:
                counts[f"{obj.py_func.__module__}.{obj.py_func.__qualname__}"] = [
                    str(s) for s in obj.signatures
                ]
    print(json.dumps(counts))
    """
)


@pytest.mark.parametrize("case", ["vllm", "blis", "sweep", "cluster", "pd"])
def test_one_specialisation_per_kernel(case, tmp_path):
    env = {**os.environ, "INFERSWEEP_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, case, str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    entry = "infersweep.scheduler.driver_nb.reset_pool_nb"
    assert entry in counts, sorted(counts)
    # the scheduler kernels of the semantics that ran, and only those, were compiled
    ran = "blis" if case == "blis" else "vllm"
    other = "vllm" if ran == "blis" else "blis"
    assert f"infersweep.scheduler.{ran}_nb.simulate_{ran}_nb" in counts
    assert f"infersweep.scheduler.{other}_nb.simulate_{other}_nb" not in counts
    assert len(counts) > 10  # the helpers were compiled too, not loaded from a cache
    if case == "cluster":
        assert "infersweep.scheduler.cluster_nb.simulate_cluster_nb" in counts
        assert "infersweep.scheduler.vllm_nb.vllm_advance_nb" in counts
    if case == "pd":
        assert "infersweep.scheduler.pd_nb.simulate_pd_nb" in counts
    many = {k: v for k, v in counts.items() if len(v) != 1}
    assert not many, many
