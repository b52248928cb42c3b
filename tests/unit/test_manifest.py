"""A vLLM run's manifest.json -> simulation settings."""

from __future__ import annotations

import json

import pytest

from infersweep.errors import ConfigError
from infersweep.fitting.otlp import read_manifest
from tests.conftest import need_reference


def test_example_manifest():
    d = need_reference("vllm", "jan21-llama7b-train-1")
    m = read_manifest(d / "manifest.json")
    assert m == {
        "budget": 4096,
        "max_run": 256,
        "blocks": 7438,
        "block": 16,
        "prefix_caching": True,
        "model": "llama-2-7b-hf",
        "tp": 1,
        "gpu": "H100",
    }


@pytest.mark.parametrize(
    "doc, field",
    [
        ({"max_num_batched_tokens": 0}, "max_num_batched_tokens"),
        ({"num_gpu_blocks": "many"}, "num_gpu_blocks"),
        ({"block_size": True}, "block_size"),
    ],
)
def test_bad_manifest_values(tmp_path, doc, field):
    p = tmp_path / "manifest.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=field):
        read_manifest(p)


def test_manifest_not_an_object(tmp_path):
    p = tmp_path / "manifest.json"
    p.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        read_manifest(p)


def test_manifest_flags_feed_validate(tmp_path, cli):
    """--manifest sets the budget, the KV blocks and the model; explicit flags win."""
    trace = tmp_path / "m.csv"
    trace.write_text(
        "arrival_time_s,prompt_tokens,output_tokens,measured_ttft_ms,"
        "measured_e2e_ms\n0.0,100,5,10,40\n1.0,3000,5,80,120\n"
    )
    man = tmp_path / "manifest.json"
    man.write_text(
        json.dumps(
            {
                "model_config": "llama-2-7b-hf",
                "max_num_batched_tokens": 64,
                "num_gpu_blocks": 500,
                "block_size": 16,
                "tp": 1,
            }
        )
    )
    out = tmp_path / "v.json"
    res = cli(
        "validate",
        trace,
        "--manifest",
        man,
        "--hardware-config",
        "minimal",
        "--skip-first",
        "0",
        "--json",
        out,
    )
    assert res.code == 0, res.err
    rep = json.loads(out.read_text())
    # with a 64-token budget the 3000-token prompt needs 47 prefill steps
    ttft = [r["predicted_ttft_ms"] for r in rep["requests"]]
    res2 = cli(
        "validate",
        trace,
        "--manifest",
        man,
        "--hardware-config",
        "minimal",
        "--skip-first",
        "0",
        "--max-num-scheduled-tokens",
        "4096",
        "--json",
        out,
    )
    assert res2.code == 0, res2.err
    ttft2 = [r["predicted_ttft_ms"] for r in json.loads(out.read_text())["requests"]]
    assert ttft[1] > 3 * ttft2[1]  # 47 weight-bound steps against one compute-bound step
