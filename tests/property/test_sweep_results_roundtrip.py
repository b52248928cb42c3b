"""Dataset -> Parquet -> Dataset is lossless (STYLE "Results"; SPEC_inputs_outputs §6).

Hypothesis draws small sweep-shaped Datasets: 0 to 3 axes whose labels are str, int, float or
bool, float64 metric variables holding any float (NaN and infinities included), status and reason
strings, per-label facts (float64 / int64 non-dimension coords of one axis), and attributes.
The expected value is the drawn Dataset itself.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from infersweep.sweeps.results import META_KEY, dataset_to_table, read_dataset, write_parquet

PROPS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Text without NUL (numpy's fixed-width unicode drops trailing NULs) and without lone
# surrogates (not encodable in UTF-8, so not a possible label or Parquet string).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: s not in ("status", "reason")
)

LABELS = {
    "str": st.lists(TEXT, min_size=1, max_size=3, unique=True),
    "int": st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=3, unique=True),
    "float": st.lists(
        st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=3, unique=True
    ),
    "bool": st.lists(st.booleans(), min_size=1, max_size=2, unique=True),
}
LABEL_DTYPE = {"str": str, "int": np.int64, "float": np.float64, "bool": bool}
ATTRS = st.dictionaries(NAMES, st.one_of(TEXT, st.integers(-(10**6), 10**6)), max_size=3)


@st.composite
def sweep_datasets(draw) -> xr.Dataset:
    n_dims = draw(st.integers(0, 3))
    n_metrics = draw(st.integers(1, 3))
    n_facts = draw(st.integers(0, 2)) if n_dims else 0
    names = draw(
        st.lists(
            NAMES,
            min_size=n_dims + n_metrics + n_facts,
            max_size=n_dims + n_metrics + n_facts,
            unique=True,
        )
    )
    dims, metrics, facts = (
        names[:n_dims],
        names[n_dims : n_dims + n_metrics],
        names[n_dims + n_metrics :],
    )
    coords = {}
    for d in dims:
        kind = draw(st.sampled_from(sorted(LABELS)))
        coords[d] = (d, np.array(draw(LABELS[kind]), dtype=LABEL_DTYPE[kind]))
    shape = tuple(len(coords[d][1]) for d in dims)
    n = int(np.prod(shape)) if dims else 1
    for f in facts:
        dim = draw(st.sampled_from(dims))
        size = len(coords[dim][1])
        if draw(st.booleans()):
            vals = draw(arrays(np.float64, size, elements=st.floats(allow_nan=True)))
        else:
            vals = draw(arrays(np.int64, size, elements=st.integers(-(2**63), 2**63 - 1)))
        coords[f] = (dim, vals, draw(ATTRS))
    data_vars = {}
    for m in metrics:
        vals = draw(
            arrays(np.float64, shape, elements=st.floats(allow_nan=True, allow_infinity=True))
        )
        data_vars[m] = (dims, vals, draw(ATTRS))
    for name in ("status", "reason"):
        strings = draw(st.lists(TEXT, min_size=n, max_size=n))
        data_vars[name] = (dims, np.array(strings, dtype=str).reshape(shape), draw(ATTRS))
    return xr.Dataset(data_vars=data_vars, coords=coords, attrs=draw(ATTRS))


@PROPS
@given(ds=sweep_datasets())
def test_dataset_parquet_dataset_identity(tmp_path_factory, ds):
    path = tmp_path_factory.mktemp("rt") / "result.parquet"
    write_parquet(ds, path)
    back = read_dataset(path)
    xr.testing.assert_identical(back, ds)
    assert list(back.dims) == list(ds.dims)
    for d in ds.dims:
        assert back[d].dtype.kind == ds[d].dtype.kind, d

    # the file itself is tidy: one row per point, axis columns first, values in C order
    tbl = pq.read_table(path)
    dims = list(ds.dims)
    n = int(np.prod([ds.sizes[d] for d in dims])) if dims else 1
    assert tbl.num_rows == n
    assert tbl.column_names[: len(dims)] == dims
    assert META_KEY in tbl.schema.metadata
    for m in ds.data_vars:
        col = tbl.column(m).to_numpy(zero_copy_only=False)
        if m in ("status", "reason"):
            assert col.tolist() == ds[m].values.reshape(n).tolist(), m
        else:
            # a NaN metric (any payload) is stored as null; every other value bit for bit
            want = np.ascontiguousarray(ds[m].values.reshape(n), np.float64)
            nulls = tbl.column(m).is_null().to_numpy(zero_copy_only=False)
            assert nulls.tolist() == np.isnan(want).tolist(), m
            got = np.asarray(col, np.float64)
            assert got[~nulls].view(np.uint64).tolist() == want[~nulls].view(np.uint64).tolist(), m


@PROPS
@given(ds=sweep_datasets(), seed=st.integers(0, 2**32 - 1))
def test_rows_in_any_order_read_back_identical(tmp_path_factory, ds, seed):
    """read_dataset sorts the rows into place: a shuffled file gives the same Dataset."""
    tbl = dataset_to_table(ds)
    perm = np.random.default_rng(seed).permutation(tbl.num_rows)
    shuffled = tbl.take(pa.array(perm))
    assert shuffled.schema.metadata == tbl.schema.metadata
    path = tmp_path_factory.mktemp("shuffled") / "result.parquet"
    pq.write_table(shuffled, path)
    xr.testing.assert_identical(read_dataset(path), ds)


def test_identity_detects_a_changed_value(tmp_path):
    """Guard: the round-trip check above would notice a lost NaN or a changed label."""
    ds = xr.Dataset(
        {
            "m": (("rate",), np.array([1.0, np.nan])),
            "status": (("rate",), np.array(["ok", "invalid"])),
            "reason": (("rate",), np.array(["", "why"])),
        },
        coords={"rate": ("rate", np.array([1.0, 2.5]))},
    )
    write_parquet(ds, tmp_path / "r.parquet")
    back = read_dataset(tmp_path / "r.parquet")
    xr.testing.assert_identical(back, ds)
    changed = ds.copy(deep=True)
    changed["m"].values[1] = 0.0
    with pytest.raises(AssertionError):
        xr.testing.assert_identical(back, changed)
    meta = json.loads(pq.read_schema(tmp_path / "r.parquet").metadata[META_KEY])
    assert meta["axes"] == {"rate": [1.0, 2.5]}
