"""infersweep.schema: every layout declared once, and everything derived from it agrees."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from infersweep import schema as S
from infersweep.api import simulate

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_metric_table_is_the_rendered_declaration():
    text = README.read_text()
    m = re.search(r"<!-- metric table: [^\n]*-->\n(.*?)<!-- end metric table -->", text, flags=re.S)
    assert m is not None, "README lost its metric-table markers"
    assert m.group(1) == S.metric_table_markdown()


@pytest.mark.parametrize("layout", S.LAYOUTS, ids=lambda lay: lay.prefix)
def test_layout_constants_are_the_field_positions(layout):
    for i, f in enumerate(layout.fields):
        assert getattr(S, layout.prefix + f.name.upper()) == i
        assert f.units and f.long_name
    if layout.width_name:
        assert getattr(S, layout.width_name) == len(layout.fields)


def test_a_few_indices_by_hand():
    # the kernels and the recorded step logs rely on these values
    assert (S.Q_ARRIVAL, S.Q_PROMPT, S.Q_OUTPUT, S.N_Q) == (0, 1, 2, 6)
    assert (S.STATE_PENDING, S.STATE_DONE, S.STATE_DROPPED) == (0, 3, 4)
    assert (S.STATUS_OK, S.STATUS_STALLED, S.STATUS_HORIZON, S.STATUS_ITL_FULL) == (0, 1, 2, 3)
    assert S.STATUS_NAMES[S.STATUS_HORIZON] == "horizon"
    assert S.M_COMPLETED_REQUESTS == 0
    assert len(S.METRICS) == S.N_M


def test_constant_names_are_unique():
    names = [k for lay in S.LAYOUTS for k in lay.constants()]
    assert len(names) == len(set(names)) == len(S.CONSTANTS)


@pytest.mark.parametrize("semantics", ["vllm", "blis"])
def test_run_summary_is_the_metric_declaration(semantics):
    """Every declared metric is computed (no slot left at its NaN fill) and ``run`` prints the
    columns in declaration order, each with its declared type."""
    res = simulate(
        model="llama-3.1-8b-instruct",
        hardware="H100",
        tp=1,
        semantics=semantics,
        workload="chatbot",
        num_requests=30,
        rate=2.0,
    )
    from infersweep.metrics import summary_nb

    raw = res.raw
    vec = np.full(S.N_M, np.nan)
    summary_nb.summarize_nb(
        raw.out,
        raw.scalars,
        np.ascontiguousarray(raw.itl_us, np.int64),
        raw.workload.output_tok,
        semantics == "blis",
        raw.kv_blocks_total,
        vec,
    )
    missing = [m.name for m in S.METRICS if np.isnan(vec[S.SUMMARY.index(m.name)])]
    assert missing == []
    keys = [k for k in res.summary if k not in ("instance_id", "semantics", "status")]
    expected = [m.name for m in S.METRIC_COLUMNS]
    if "kv_allocation_failures" not in keys:  # omitted when 0, as the reference does
        expected.remove("kv_allocation_failures")
    assert keys == expected
    for m in S.METRIC_COLUMNS:
        if m.name in res.summary:
            assert isinstance(res.summary[m.name], int if m.integer else float), m.name
    assert res.summary["completed_requests"] == 30
    assert res.summary["status"] == "ok"
