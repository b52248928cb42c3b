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
