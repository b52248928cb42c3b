"""SchedulerConfig validation (the Python API's counterpart of run's scheduler flags)."""

from __future__ import annotations

import pytest

from infersweep.errors import ConfigError
from infersweep.scheduler.driver import SchedulerConfig


@pytest.mark.parametrize("value", ["auto", "AUTO", " Auto ", None])
def test_total_kv_blocks_auto(value):
    assert SchedulerConfig(total_kv_blocks=value).total_kv_blocks is None


@pytest.mark.parametrize("value", ["many", 0, -3, 2.5, True])
def test_total_kv_blocks_rejects(value):
    # the engine names the setting; the command line maps it to its flag (tests/cli)
    with pytest.raises(ConfigError, match="total_kv_blocks") as ei:
        SchedulerConfig(total_kv_blocks=value)
    assert ei.value.field == "total_kv_blocks"


def test_total_kv_blocks_integer_kept():
    assert SchedulerConfig(total_kv_blocks=7438).total_kv_blocks == 7438


def test_checks_hold_after_an_equal_valid_config_was_seen():
    """Validation is remembered per set of values *with their types*: True equals 1 and 2.0
    equals 2 in Python, but after a valid config with 1 or 2 they are still refused."""
    SchedulerConfig(max_num_running_reqs=1, block_size=16)
    with pytest.raises(ConfigError, match="max_num_running_reqs"):
        SchedulerConfig(max_num_running_reqs=True, block_size=16)
    with pytest.raises(ConfigError, match="block_size"):
        SchedulerConfig(max_num_running_reqs=1, block_size=16.0)
    # and a remembered config still gets its "auto" normalised
    for _ in range(2):
        assert SchedulerConfig(total_kv_blocks="auto").total_kv_blocks is None
