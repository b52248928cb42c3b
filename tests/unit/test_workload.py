"""Workload generation (SPEC_inputs_outputs §4): the presets' length distributions, clamping
to [min, max], the reference's constant spacing, and the independence of the length and the
arrival streams.  Expected values are the spec's numbers, typed in here."""

from __future__ import annotations

import numpy as np
import pytest

from infersweep.errors import ConfigError
from infersweep.workload.generate import LengthSpec, WorkloadSpec, generate

# (prompt mean, std, min, max), (output mean, std, min, max): SPEC_inputs_outputs §4
SPEC_PRESETS = {
    "chatbot": ((256, 100, 2, 800), (256, 100, 1, 1024)),
    "contentgen": ((1024, 150, 10, 2048), (1024, 200, 10, 2048)),
    "summarization": ((4096, 500, 100, 8192), (512, 150, 10, 2048)),
    "multidoc": ((10240, 1200, 500, 20480), (1536, 300, 50, 4096)),
}


@pytest.mark.parametrize("preset", sorted(SPEC_PRESETS))
def test_preset_lengths_follow_the_spec(preset):
    wl = generate(WorkloadSpec(workload=preset, num_requests=20_000, seed=7))
    for tok, (mean, std, lo, hi) in zip((wl.prompt_tok, wl.output_tok), SPEC_PRESETS[preset]):
        assert tok.dtype == np.int64
        assert tok.min() >= lo and tok.max() <= hi
        # 20,000 draws: the sample mean is within 4 standard errors, the spread within 5 %
        assert abs(tok.mean() - mean) < 4 * std / np.sqrt(len(tok))
        assert abs(tok.std() - std) < 0.05 * std


def test_lengths_are_clamped_to_min_and_max():
    spec = WorkloadSpec(
        workload="distribution",
        num_requests=5_000,
        prompt=LengthSpec(mean=100, std=1_000, min=90, max=120),
        output=LengthSpec(mean=10, std=50, min=0, max=12),
    )
    wl = generate(spec)
    assert wl.prompt_tok.min() == 90 and wl.prompt_tok.max() == 120  # both bounds reached
    assert set(np.unique(wl.prompt_tok)) <= set(range(90, 121))
    # output min 0 is clamped again to at least one token
    assert wl.output_tok.min() == 1 and wl.output_tok.max() == 12


def test_fixed_lengths_when_min_equals_max():
    spec = WorkloadSpec(
        workload="distribution",
        num_requests=50,
        prompt=LengthSpec(mean=300, std=80, min=300, max=300),
        output=LengthSpec(mean=0, std=0, min=0, max=0),
    )
    wl = generate(spec)
    assert (wl.prompt_tok == 300).all()
    assert (wl.output_tok == 1).all()


def test_constant_arrivals_are_the_reference_spacing():
    # int64(1 / (rate / 1e6)) µs, truncated: rate 3/s -> 333,333 µs; the first at one gap
    wl = generate(WorkloadSpec(workload="chatbot", rate=3.0, num_requests=5))
    assert wl.arrival_us.tolist() == [333_333, 666_666, 999_999, 1_333_332, 1_666_665]


@pytest.mark.parametrize("arrival", ["poisson", "gamma"])
def test_random_arrivals_have_the_rate(arrival):
    wl = generate(WorkloadSpec(workload="chatbot", rate=50.0, num_requests=20_000, arrival=arrival))
    gaps = np.diff(wl.arrival_us)
    assert (gaps >= 0).all()
    assert abs(gaps.mean() - 20_000) < 0.05 * 20_000  # 1e6 / 50 µs
    cv = gaps.std() / gaps.mean()
    assert abs(cv - (1.0 if arrival == "poisson" else 2.0)) < 0.15  # gamma: --arrival-cv 2


def test_arrival_process_and_rate_do_not_change_the_lengths():
    base = generate(WorkloadSpec(workload="chatbot", num_requests=500, seed=3))
    for kw in (
        dict(arrival="poisson"),
        dict(arrival="gamma", arrival_cv=0.5),
        dict(rate=40.0),
        dict(rate=0.1, arrival="poisson"),
    ):
        other = generate(WorkloadSpec(workload="chatbot", num_requests=500, seed=3, **kw))
        np.testing.assert_array_equal(other.prompt_tok, base.prompt_tok)
        np.testing.assert_array_equal(other.output_tok, base.output_tok)
        if kw.get("arrival", "constant") != "constant":
            assert not np.array_equal(other.arrival_us, base.arrival_us)


def test_lengths_do_not_change_the_arrivals():
    def arrivals(workload: str, **kw) -> np.ndarray:
        spec = WorkloadSpec(workload=workload, num_requests=400, seed=11, arrival="poisson", **kw)
        return generate(spec).arrival_us

    base = arrivals("chatbot")
    np.testing.assert_array_equal(arrivals("summarization"), base)
    np.testing.assert_array_equal(arrivals("multidoc"), base)
    np.testing.assert_array_equal(arrivals("chatbot", prefix_tokens=64), base)
    assert not np.array_equal(
        generate(
            WorkloadSpec(workload="chatbot", num_requests=400, seed=12, arrival="poisson")
        ).arrival_us,
        base,
    )


def test_seed_reproduces_and_changes_the_draw():
    a = generate(WorkloadSpec(workload="contentgen", num_requests=300, seed=5))
    b = generate(WorkloadSpec(workload="contentgen", num_requests=300, seed=5))
    c = generate(WorkloadSpec(workload="contentgen", num_requests=300, seed=6))
    np.testing.assert_array_equal(a.prompt_tok, b.prompt_tok)
    np.testing.assert_array_equal(a.output_tok, b.output_tok)
    assert not np.array_equal(a.prompt_tok, c.prompt_tok)


def test_shared_prefix_is_added_to_every_prompt():
    plain = generate(WorkloadSpec(workload="chatbot", num_requests=100, seed=9))
    shared = generate(WorkloadSpec(workload="chatbot", num_requests=100, seed=9, prefix_tokens=64))
    np.testing.assert_array_equal(shared.prompt_tok, plain.prompt_tok + 64)
    assert (shared.prefix_tok == 64).all() and (shared.group == 0).all()
    assert (plain.group == -1).all() and (plain.prefix_tok == 0).all()


@pytest.mark.parametrize(
    "kw",
    [
        dict(rate=0.0),
        dict(num_requests=0),
        dict(workload="nope"),
        dict(arrival="uniform"),
        dict(arrival="gamma", arrival_cv=0.0),
        dict(workload="distribution", prompt=LengthSpec(mean=10, std=1, min=20, max=30)),
        dict(workload="distribution", output=LengthSpec(mean=40, std=1, min=20, max=30)),
    ],
)
def test_bad_workload_settings_are_errors(kw):
    with pytest.raises(ConfigError):
        generate(WorkloadSpec(**{"workload": "chatbot", **kw}))
