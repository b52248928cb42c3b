"""Step-time cases: the JSON-lines format of ``shared/reference/step_cases.jsonl``.

Each line names a model, TP, hardware config and the step's prefill and decode entries; the
answer is the line with ``step_us`` and its components added, or with ``error`` when a field is
bad (the other lines still run).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from infersweep import limits
from infersweep.config.models import load_hardware, load_model
from infersweep.costmodel.stepcost import MAX_ENTRY_TOKENS, CostModel, build_cost_model
from infersweep.errors import ConfigError

DEFAULT_GPU = "H100"


@dataclass
class CaseRunner:
    """Evaluates case lines, building each (model, hardware, TP) cost model once."""

    bench_data: str | None = None
    step_model: str = "auto"
    default_hw_config: str = "minimal"
    warnings: list[str] = field(default_factory=list)
    _models: dict = field(default_factory=dict)
    _seen_warnings: set = field(default_factory=set)

    def cost_model(self, case: dict) -> CostModel:
        model_name = case.get("model")
        if not isinstance(model_name, str) or not model_name:
            raise ConfigError("must be a model name or folder", field="model", value=model_name)
        tp = case.get("tp", 1)
        gpu = case.get("hardware", DEFAULT_GPU)
        if not isinstance(gpu, str):
            raise ConfigError("must be a GPU name", field="hardware", value=gpu)
        hw_cfg = case.get("hw_config", self.default_hw_config)
        if not isinstance(hw_cfg, str):
            raise ConfigError(
                "must be a hardware config name or path", field="hw_config", value=hw_cfg
            )
        bench = case.get("bench_data", self.bench_data)
        if bench is not None and not isinstance(bench, str):
            raise ConfigError("must be a folder path", field="bench_data", value=bench)
        step_model = case.get("step_model", self.step_model)
        if not isinstance(step_model, str):
            raise ConfigError("must be auto, v2 or v1", field="step_model", value=step_model)
        if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
            raise ConfigError("must be an integer >= 1", field="tp", value=tp)
        key = (model_name, tp, gpu.lower(), hw_cfg, bench, step_model)
        cm = self._models.get(key)
        if cm is None:
            model = load_model(model_name)
            cm = build_cost_model(
                model, load_hardware(gpu, hw_cfg), tp, bench_data=bench, step_model=step_model
            )
            self._models[key] = cm
            for note in cm.notes:
                if "does not divide" in note and note not in self._seen_warnings:
                    self._seen_warnings.add(note)
                    self.warnings.append(note)
        return cm

    def evaluate(self, case: dict) -> dict:
        out = dict(case)
        try:
            cm = self.cost_model(case)
            prefills = _entries(case.get("prefills", []), "prefills", pairs=True)
            decodes = _entries(case.get("decodes", []), "decodes", pairs=False)
            us, comp = cm.step_time(prefills, decodes)
        except ConfigError as exc:
            out["error"] = str(exc)
            return out
        out["step_us"] = us
        out.update(comp)
        return out

    def run_lines(self, lines: Iterable[str]) -> Iterator[str]:
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                case = json.loads(line)
            except json.JSONDecodeError as exc:
                yield json.dumps({"line": lineno, "error": f"malformed JSON: {exc.msg}"})
                continue
            if not isinstance(case, dict):
                yield json.dumps({"line": lineno, "error": "a case must be a JSON object"})
                continue
            yield json.dumps(self.evaluate(case))


def _entries(value: object, name: str, *, pairs: bool) -> list:
    if not isinstance(value, list):
        raise ConfigError("must be a list", field=name, value=value)
    if len(value) > limits.MAX_STEP_ENTRIES:
        raise ConfigError(
            f"{len(value):,} entries are above the limit of {limits.MAX_STEP_ENTRIES:,}",
            field=name,
        )
    out = []
    for item in value:
        if pairs:
            ok = (
                isinstance(item, list)
                and len(item) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) for x in item)
                and 0 <= item[0] < MAX_ENTRY_TOKENS
                and 1 <= item[1] < MAX_ENTRY_TOKENS
            )
            if not ok:
                raise ConfigError(
                    "each entry must be [progress_index >= 0, new_tokens >= 1]",
                    field=name,
                    value=item,
                )
            out.append((item[0], item[1]))
        else:
            if (
                isinstance(item, bool)
                or not isinstance(item, int)
                or not (0 <= item < MAX_ENTRY_TOKENS)
            ):
                raise ConfigError(
                    "each entry must be a context length >= 0", field=name, value=item
                )
            out.append(item)
    return out


def parse_step_spec(specs: list[str], kind: str) -> list:
    """CLI shorthand: ``--decode 32x1024`` (32 decodes at context 1024), ``--prefill 512``
    (512 new tokens from position 0), ``--prefill 256@1024`` (256 new tokens after 1024),
    ``--prefill 4x512``."""
    out: list = []
    for spec in specs:
        text = spec.strip().lower()
        count = 1
        if "x" in text:
            c, text = text.split("x", 1)
            count = _pos_int(c, kind, spec)
        if len(out) + count > limits.MAX_STEP_ENTRIES:
            raise ConfigError(
                f"a step of {len(out) + count:,} {kind[2:]} entries is above the limit of "
                f"{limits.MAX_STEP_ENTRIES:,} (the largest batches served are far smaller)",
                field=kind,
                value=spec,
            )
        if kind == "--prefill":
            pi = 0
            if "@" in text:
                text, p = text.split("@", 1)
                pi = _pos_int(p, kind, spec, allow_zero=True)
            n = _pos_int(text, kind, spec)
            out.extend([(pi, n)] * count)
        else:
            out.extend([_pos_int(text, kind, spec, allow_zero=True)] * count)
    return out


def _pos_int(text: str, kind: str, spec: str, allow_zero: bool = False) -> int:
    try:
        v = int(text)
    except ValueError:
        raise ConfigError(
            "expected COUNTxTOKENS or TOKENS[@POS] with integers", field=kind, value=spec
        ) from None
    if v < (0 if allow_zero else 1):
        raise ConfigError("numbers must be positive", field=kind, value=spec)
    return v
