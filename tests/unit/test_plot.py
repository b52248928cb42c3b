"""sweeps.plot.plot_validation writes a PNG (atomically) for a small validation report."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from infersweep.errors import ConfigError
from infersweep.fitting.otlp import read_measured
from infersweep.fitting.validate import compare
from infersweep.workload.generate import Workload
from tests.conftest import FakeSim

pytest.importorskip("matplotlib")


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def small_report(tmp_path, completed=(True,) * 6):
    rows = [
        "0.0,100,50,30,400,synchronous",
        "1.0,120,60,35,450,synchronous",
        "2.0,90,1,28,28,throughput",
        "2.1,110,40,300,900,throughput",
        "5.0,130,70,40,520,constant-rate sweep (1 rate)",
        "6.0,140,80,42,600,constant-rate sweep (1 rate)",
    ]
    p = tmp_path / "m.csv"
    p.write_text(
        "arrival_time_s,prompt_tokens,output_tokens,measured_ttft_ms,"
        "measured_e2e_ms,phase\n" + "\n".join(rows) + "\n"
    )
    wl = read_measured(p)
    n = len(wl)
    sim = FakeSim(
        workload=Workload.from_arrays(wl.arrival_us, wl.prompt_tok, wl.output_tok),
        request_id=np.arange(n),
        ttft_ms=np.array([33, 30, 25, 280, 45, 40], float),
        e2e_ms=np.array([420, 430, 25, 1000, 500, 640], float),
        completed=np.array(completed),
        dropped=~np.array(completed),
    )
    return compare(wl, sim, skip_first=1)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_png_is_written(tmp_path):
    from infersweep.sweeps.plot import plot_validation

    out = tmp_path / "plots" / "validation.png"
    plot_validation(small_report(tmp_path), out)
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000
    w, h = png_size(data)
    assert w >= 1000 and h >= 700
    assert [p.name for p in out.parent.iterdir()] == ["validation.png"]  # no temporary left


def test_png_without_any_compared_request(tmp_path):
    from infersweep.sweeps.plot import plot_validation

    report = small_report(tmp_path, completed=(False,) * 6)
    assert report.overall.compared == 0 and report.overall.dropped == 5
    out = tmp_path / "empty.png"
    plot_validation(report, out)
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_png_replaces_an_old_file_and_refuses_a_folder(tmp_path):
    from infersweep.sweeps.plot import plot_validation

    out = tmp_path / "v.png"
    out.write_bytes(b"old")
    plot_validation(small_report(tmp_path), out)
    assert out.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ConfigError, match="folder"):
        plot_validation(small_report(tmp_path), tmp_path)
