"""``infersweep step-time`` end to end: the bad-input matrix, warnings, cases files, --json.

Every bad input must give a non-zero exit status (2 for a ConfigError), exactly one stderr line
starting with ``error:`` that names the file / field / value, and no traceback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, assert_one_error_line, run_subprocess

LLAMA = "llama-3.1-8b-instruct"
MODEL_ARGS = (
    "step-time",
    "--model",
    LLAMA,
    "--hardware",
    "H100",
    "--tp",
    "1",
    "--decode",
    "32x1024",
    "--prefill",
    "512",
)


def write_hw(tmp_path: Path, text: str, name: str = "hw.json") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def hw_entry(**fields) -> str:
    entry = {"TFlopsPeak": 989.5, "BwPeakTBs": 3.35}
    entry.update(fields)
    for k in [k for k, v in entry.items() if v is None]:
        del entry[k]
    return json.dumps({"H100": entry, "A100-SXM": {"TFlopsPeak": 312, "BwPeakTBs": 2.039}})


# ---------------------------------------------------------------------------------------------
# hardware config
# ---------------------------------------------------------------------------------------------


def test_missing_hardware_file(cli, tmp_path):
    missing = tmp_path / "nope.json"
    res = cli(*MODEL_ARGS, "--hardware-config", missing)
    assert_one_error_line(res, str(missing), "not found")


def test_hardware_config_is_a_folder(cli, tmp_path):
    res = cli(*MODEL_ARGS, "--hardware-config", tmp_path)
    assert_one_error_line(res, str(tmp_path))


@pytest.mark.parametrize(
    "text",
    [
        '{"H100": {"TFlopsPeak": 989.5, ',
        '{"H100": {"TFlopsPeak": 989.5 "BwPeakTBs": 3.35}}',
        "",
    ],
)
def test_malformed_json(cli, tmp_path, text):
    path = write_hw(tmp_path, text)
    assert_one_error_line(cli(*MODEL_ARGS, "--hardware-config", path), str(path), "JSON")


@pytest.mark.parametrize("text", ["[1, 2]", '{"H100": 5}', '{"H100": [989.5, 3.35]}'])
def test_wrong_json_shape(cli, tmp_path, text):
    path = write_hw(tmp_path, text)
    assert_one_error_line(cli(*MODEL_ARGS, "--hardware-config", path), str(path))


def test_unknown_gpu_lists_known(cli, tmp_path):
    path = write_hw(tmp_path, hw_entry())
    res = cli(
        "step-time",
        "--model",
        LLAMA,
        "--hardware",
        "B200",
        "--hardware-config",
        path,
        "--decode",
        "4x100",
    )
    assert_one_error_line(res, str(path), "B200", "H100", "A100-SXM")


def test_unknown_gpu_in_alias_file(cli):
    res = cli(
        "step-time",
        "--model",
        LLAMA,
        "--hardware",
        "TPUv9",
        "--hardware-config",
        "minimal",
        "--decode",
        "4x100",
    )
    assert_one_error_line(res, "TPUv9", "H100", "A100-SXM")


def test_unknown_hardware_config_alias(cli):
    res = cli(*MODEL_ARGS, "--hardware-config", "no_such_alias")
    assert_one_error_line(res, "no_such_alias", "minimal")


BAD_VALUES = [  # (JSON literal, text expected in the message)
    (None, "missing"),
    ("0", "0"),
    ("-1.5", "-1.5"),
    ("NaN", "nan"),
    ("Infinity", "inf"),
    ("-Infinity", "-inf"),
    ('"fast"', "fast"),
]


@pytest.mark.parametrize("field", ["TFlopsPeak", "BwPeakTBs"])
@pytest.mark.parametrize(("literal", "shown"), BAD_VALUES, ids=[v[1] for v in BAD_VALUES])
def test_bad_required_field(cli, tmp_path, field, literal, shown):
    other = "BwPeakTBs" if field == "TFlopsPeak" else "TFlopsPeak"
    parts = [f'"{other}": 3.35']
    if literal is not None:
        parts.append(f'"{field}": {literal}')
    path = write_hw(tmp_path, '{"H100": {' + ", ".join(parts) + "}}")
    res = cli(*MODEL_ARGS, "--hardware-config", path)
    assert_one_error_line(res, str(path), f"H100.{field}", shown)


@pytest.mark.parametrize(
    "field",
    [
        "TOverheadMicros",
        "PrefillOverheadMicros",
        "MixedPrefillOverheadMicros",
        "AllReduceLatency",
        "perLayerOverhead",
        "MemoryGiB",
    ],
)
def test_negative_overhead(cli, tmp_path, field):
    path = write_hw(tmp_path, hw_entry(**{field: -5}))
    res = cli(*MODEL_ARGS, "--hardware-config", path)
    assert_one_error_line(res, str(path), f"H100.{field}", "-5")


@pytest.mark.parametrize("field", ["TOverheadMicros", "AllReduceLatency"])
def test_nan_overhead(cli, tmp_path, field):
    path = write_hw(
        tmp_path, f'{{"H100": {{"TFlopsPeak": 989.5, "BwPeakTBs": 3.35, "{field}": NaN}}}}'
    )
    res = cli(*MODEL_ARGS, "--hardware-config", path)
    assert_one_error_line(res, str(path), field, "nan")


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_bw_efficiency_factor_out_of_range(cli, tmp_path, value):
    path = write_hw(tmp_path, hw_entry(bwEfficiencyFactor=value))
    res = cli(*MODEL_ARGS, "--hardware-config", path)
    assert_one_error_line(res, str(path), "bwEfficiencyFactor", str(value))


def test_valid_custom_hardware_file_and_case_insensitive_gpu(cli, tmp_path):
    path = write_hw(tmp_path, hw_entry(bwEfficiencyFactor=0.82, perLayerOverhead=100))
    res = cli(
        "step-time",
        "--model",
        LLAMA,
        "--hardware",
        "h100",
        "--hardware-config",
        path,
        "--decode",
        "32x1024",
        "--json",
    )
    assert res.code == 0, res.err
    assert json.loads(res.out)["step_us"] == 11_828  # REFERENCE §5.8 (d)


# ---------------------------------------------------------------------------------------------
# model config
# ---------------------------------------------------------------------------------------------

TOY = {
    "num_hidden_layers": 2,
    "hidden_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "intermediate_size": 512,
    "torch_dtype": "bfloat16",
}


def model_folder(tmp_path: Path, cfg: dict | None) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    if cfg is not None:
        (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("key", ["num_hidden_layers", "hidden_size", "num_attention_heads"])
@pytest.mark.parametrize("how", ["missing", "zero", "negative", "string"])
def test_model_config_bad_required_key(cli, tmp_path, key, how):
    cfg = dict(TOY)
    if how == "missing":
        del cfg[key]
    else:
        cfg[key] = {"zero": 0, "negative": -4, "string": "many"}[how]
    folder = model_folder(tmp_path, cfg)
    res = cli(
        "step-time",
        "--model-config-folder",
        folder,
        "--hardware-config",
        "minimal",
        "--decode",
        "4x100",
    )
    assert_one_error_line(res, str(folder / "config.json"), key)


@pytest.mark.parametrize("dtype", ["complex128", "bfloat17", ""])
def test_model_config_unknown_dtype(cli, tmp_path, dtype):
    folder = model_folder(tmp_path, {**TOY, "torch_dtype": dtype})
    res = cli(
        "step-time",
        "--model-config-folder",
        folder,
        "--hardware-config",
        "minimal",
        "--decode",
        "4x100",
    )
    line = assert_one_error_line(res, str(folder / "config.json"), "dtype")
    if dtype:
        assert dtype in line


def test_model_config_no_dtype(cli, tmp_path):
    cfg = dict(TOY)
    del cfg["torch_dtype"]
    folder = model_folder(tmp_path, cfg)
    res = cli(
        "step-time",
        "--model-config-folder",
        folder,
        "--hardware-config",
        "minimal",
        "--decode",
        "4x100",
    )
    assert_one_error_line(res, str(folder / "config.json"), "dtype")


def test_model_folder_without_config_json(cli, tmp_path):
    folder = model_folder(tmp_path, None)
    res = cli(
        "step-time",
        "--model-config-folder",
        folder,
        "--hardware-config",
        "minimal",
        "--decode",
        "4x100",
    )
    assert_one_error_line(res, str(folder), "config.json")


def test_model_folder_missing(cli, tmp_path):
    res = cli(
        "step-time",
        "--model-config-folder",
        tmp_path / "absent",
        "--hardware-config",
        "minimal",
        "--decode",
        "4x100",
    )
    assert_one_error_line(res, str(tmp_path / "absent"))


def test_model_config_malformed_json(cli, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"num_hidden_layers": 2,')
    res = cli(
        "step-time",
        "--model-config-folder",
        folder,
        "--hardware-config",
        "minimal",
        "--decode",
        "4x100",
    )
    assert_one_error_line(res, str(folder / "config.json"), "JSON")


def test_unknown_model_name_lists_known(cli):
    res = cli("step-time", "--model", "gpt-17", "--hardware-config", "minimal", "--decode", "4x100")
    assert_one_error_line(res, "gpt-17", LLAMA)


def test_toy_model_without_tables_needs_v1_fields(cli, tmp_path):
    """A GPU without MFU tables and without mfuPrefill/mfuDecode: the error says how to fix."""
    folder = model_folder(tmp_path, TOY)
    hw = write_hw(tmp_path, json.dumps({"TOY": {"TFlopsPeak": 100, "BwPeakTBs": 2}}))
    res = cli(
        "step-time",
        "--model-config-folder",
        folder,
        "--hardware",
        "TOY",
        "--hardware-config",
        hw,
        "--decode",
        "4x100",
    )
    assert_one_error_line(res, "mfuPrefill", "mfuDecode")


# ---------------------------------------------------------------------------------------------
# TP, bench data, step specs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tp", ["0", "-1"])
def test_tp_below_one(cli, tp):
    res = cli(
        "step-time",
        "--model",
        LLAMA,
        "--hardware-config",
        "minimal",
        "--tp",
        tp,
        "--decode",
        "4x100",
    )
    assert_one_error_line(res, "--tp", tp)


def test_tp_not_an_integer(cli):
    res = cli(
        "step-time",
        "--model",
        LLAMA,
        "--hardware-config",
        "minimal",
        "--tp",
        "two",
        "--decode",
        "4x100",
    )
    assert_one_error_line(res, "--tp")


def test_missing_bench_data_folder(cli, tmp_path):
    missing = tmp_path / "nonexistent"
    res = cli(*MODEL_ARGS, "--hardware-config", "minimal", "--bench-data-path", missing)
    assert_one_error_line(res, str(missing), "bench-data")


def test_bench_data_nonexistent_absolute(cli):
    res = cli(*MODEL_ARGS, "--hardware-config", "minimal", "--bench-data-path", "/nonexistent")
    assert_one_error_line(res, "/nonexistent")


@pytest.fixture
def bench_copy(tmp_path) -> Path:
    dst = tmp_path / "bench_data"
    shutil.copytree(REPO / "data" / "bench_data", dst)
    return dst


DECODE_CSV = Path("mha") / "decode" / "h100" / "32-8-128-tp1.csv"


@pytest.mark.parametrize(
    ("row", "needles"),
    [
        ("bf16,bf16,oops,4096,23.498,0.003", ["line 3", "batch_size", "oops"]),
        ("bf16,bf16,1,4096", ["line 3", "columns"]),
        ("bf16,bf16,1,4096,23.498,-0.5", ["line 3", "mfu", "-0.5"]),
        ("bf16,bf16,1,4096,23.498,nan", ["line 3", "mfu", "nan"]),
        ("bf16,bf16,1,4k,23.498,0.003", ["line 3", "kv_len", "4k"]),
    ],
)
def test_malformed_decode_csv_row(cli, bench_copy, row, needles):
    path = bench_copy / DECODE_CSV
    lines = path.read_text().splitlines()
    lines[2] = row  # line 3 of the file (line 1 is the header)
    path.write_text("\n".join(lines) + "\n")
    res = cli(*MODEL_ARGS, "--hardware-config", "minimal", "--bench-data-path", bench_copy)
    assert_one_error_line(res, str(path), *needles)


def test_malformed_gemm_csv_row(cli, bench_copy):
    path = bench_copy / "gemm" / "h100" / "data.csv"
    lines = path.read_text().splitlines()
    lines[5] = "64,4096,six,15.1,0.1"
    path.write_text("\n".join(lines) + "\n")
    res = cli(*MODEL_ARGS, "--hardware-config", "minimal", "--bench-data-path", bench_copy)
    assert_one_error_line(res, str(path), "line 6", "six")


def test_bench_copy_unchanged_gives_same_answer(cli, bench_copy):
    res = cli(
        *MODEL_ARGS, "--hardware-config", "minimal", "--bench-data-path", bench_copy, "--json"
    )
    assert res.code == 0, res.err
    assert json.loads(res.out)["step_us"] == 13_694


@pytest.mark.parametrize(
    ("flag", "spec"),
    [("--decode", "32xabc"), ("--prefill", "0"), ("--decode", "-5"), ("--prefill", "0x512")],
)
def test_bad_step_spec(cli, flag, spec):
    res = cli("step-time", "--model", LLAMA, "--hardware-config", "minimal", flag, spec)
    assert_one_error_line(res, flag, spec)


def test_no_model_and_no_cases(cli):
    assert_one_error_line(cli("step-time", "--hardware-config", "minimal"), "--model")


def test_unknown_option_is_one_line(cli):
    res = cli("step-time", "--model", LLAMA, "--frobnicate", "3")
    assert res.code != 0
    assert_one_error_line(res, "--frobnicate", code=res.code)


def test_missing_cases_file(cli, tmp_path):
    assert_one_error_line(
        cli("step-time", "--cases", tmp_path / "none.jsonl"), str(tmp_path / "none.jsonl")
    )


# ---------------------------------------------------------------------------------------------
# warnings, --json, cases files
# ---------------------------------------------------------------------------------------------


def test_tp_not_dividing_heads_is_a_warning(cli):
    res = cli(
        "step-time",
        "--model",
        "qwen2.5-7b-instruct",
        "--hardware-config",
        "minimal",
        "--tp",
        "8",
        "--decode",
        "4x1024",
        "--json",
    )
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    lines = res.err.strip().splitlines()
    assert all(line.startswith("warning:") for line in lines), lines
    divide = [line for line in lines if "divide" in line]
    assert len(divide) == 1, lines
    assert "28" in divide[0] and "8" in divide[0]
    info = json.loads(res.out)
    assert info["step_us"] >= 1 and info["tp"] == 8


def test_tp_dividing_heads_has_no_divide_warning(cli):
    res = cli(
        "step-time",
        "--model",
        "qwen2.5-7b-instruct",
        "--hardware-config",
        "minimal",
        "--tp",
        "4",
        "--decode",
        "4x1024",
        "--json",
    )
    assert res.code == 0, res.err
    assert "divide" not in res.err
    assert res.err.strip() == ""


def test_json_breakdown_matches_api(cli):
    from infersweep.config.models import load_hardware, load_model
    from infersweep.costmodel.stepcost import build_cost_model

    res = cli(*MODEL_ARGS, "--hardware-config", "minimal", "--json")
    assert res.code == 0, res.err
    assert res.err.strip() == ""
    info = json.loads(res.out)
    assert info["step_us"] == 13_694  # REFERENCE §5.8 (c)
    assert info["bound_by"] == "prefill compute"
    assert info["n_prefill"] == 1 and info["n_decode"] == 32 and info["prefill_tokens"] == 512
    cm = build_cost_model(load_model(LLAMA), load_hardware("H100", "minimal"), 1)
    us, comp = cm.step_time([(0, 512)], [1024] * 32)
    assert info["step_us"] == us
    for key, value in comp.items():
        assert info[key] == pytest.approx(value, rel=1e-15), key
    assert info["decode_attention_mfu"] == {"min": 0.010, "max": 0.010}
    assert info["decode_gemm_mfu"]["q_proj"] == 0.054
    assert info["prefill_buckets"]["512"]["attention_mfu"] == 0.228


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--decode", "32x1024"), 8628),
        (("--prefill", "512"), 13_694),
        (("--prefill", "512@512"), 14_032),
        (("--decode", "1127"), 10_103),
        (("--decode", "16x1024", "--decode", "16x1024"), 8628),
        ((), 1),
    ],
)
def test_step_specs(cli, args, expected):
    res = cli("step-time", "--model", LLAMA, "--hardware-config", "minimal", *args, "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["step_us"] == expected


def test_human_readable_breakdown(cli):
    res = cli(*MODEL_ARGS, "--hardware-config", "minimal")
    assert res.code == 0, res.err
    assert "13694" in res.out.replace(",", "")
    assert "prefill compute" in res.out


def test_cases_file_with_bad_lines(cli, tmp_path):
    base = {"model": LLAMA, "tp": 1, "hw_config": "minimal"}
    lines = [
        {**base, "prefills": [], "decodes": [1024] * 32},
        {**base, "model": "no-such-model", "prefills": [], "decodes": [1024]},
        {**base, "prefills": [[0, 512]], "decodes": []},
        {**base, "tp": 0, "prefills": [], "decodes": [1024]},
        {**base, "hw_config": "full_487017bc", "prefills": [], "decodes": []},
        {**base, "prefills": [[0, 0]], "decodes": []},
        {**base, "decodes": "lots"},
    ]
    cases = tmp_path / "cases.jsonl"
    cases.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    out = tmp_path / "out.jsonl"
    res = cli("step-time", "--cases", cases, "--out", out)
    assert "Traceback" not in res.err
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(answers) == len(lines)
    assert [a.get("step_us") for a in answers] == [8628, None, 13_694, None, 3200, None, None]
    assert "no-such-model" in answers[1]["error"]
    assert "tp" in answers[3]["error"]
    assert "prefills" in answers[5]["error"]
    assert "decodes" in answers[6]["error"]
    for a, x in zip(answers, lines):
        assert {k: a[k] for k in x} == x  # the input fields come back unchanged
        assert ("error" in a) != ("step_us" in a)
    assert "4 of 7" in res.err


def test_cases_file_malformed_json_line(cli, tmp_path):
    cases = tmp_path / "cases.jsonl"
    good = json.dumps({"model": LLAMA, "tp": 1, "hw_config": "minimal", "decodes": [1024]})
    cases.write_text(good + "\n{not json\n[1, 2]\n" + good + "\n")
    res = cli("step-time", "--cases", cases)
    answers = [json.loads(line) for line in res.out.splitlines()]
    assert [a.get("step_us") for a in answers] == [4235, None, None, 4235]
    assert answers[1]["line"] == 2 and "error" in answers[1]
    assert answers[2]["line"] == 3 and "error" in answers[2]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"prefills": [[0, 10**20]], "decodes": []}),
        pytest.param({"prefills": [], "decodes": [2**64]}),
        pytest.param({"bench_data": 5, "decodes": [5]}),
        {"step_model": 5, "decodes": [5]},
        {"hardware": 5, "decodes": [5]},
        {"hw_config": ["minimal"], "decodes": [5]},
        {"tp": "2", "decodes": [5]},
        pytest.param({"tp": True, "decodes": [5]}),
        {"prefills": [[0, 1.5]], "decodes": []},
        {"decodes": [None]},
    ],
)
def test_cases_file_bad_field_stays_on_its_line(cli, tmp_path, bad):
    base = {"model": LLAMA, "tp": 1, "hw_config": "minimal"}
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        json.dumps({**base, "decodes": [1024]}) + "\n" + json.dumps({**base, **bad}) + "\n"
    )
    res = cli("step-time", "--cases", cases)
    assert "internal error" not in res.err
    answers = [json.loads(line) for line in res.out.splitlines()]
    assert answers[0]["step_us"] == 4235
    assert "error" in answers[1]


def test_default_hardware_config_is_the_catalog(cli):
    res = cli("step-time", "--model", LLAMA, "--decode", "32x1024", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["step_us"] >= 1


# ---------------------------------------------------------------------------------------------
# the real console entry point, in a fresh process
# ---------------------------------------------------------------------------------------------


def test_subprocess_bad_input_one_line(tmp_path):
    path = write_hw(tmp_path, '{"H100": {"TFlopsPeak": NaN, "BwPeakTBs": 3.35}}')
    proc = run_subprocess(*MODEL_ARGS, "--hardware-config", path, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert str(path) in lines[0] and "TFlopsPeak" in lines[0]


def test_subprocess_verbose_shows_traceback(tmp_path):
    path = write_hw(tmp_path, '{"H100": {"TFlopsPeak": 0, "BwPeakTBs": 3.35}}')
    proc = run_subprocess(*MODEL_ARGS, "--hardware-config", path, "--verbose", timeout=120)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr
