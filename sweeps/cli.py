"""The ``infersweep`` / ``simulation_worker`` command line (typer): parse, call, print.

Heavy modules (numba kernels, xarray, pyarrow) are imported inside the commands so that
``--help`` is instant.  A ``ConfigError`` becomes one ``error: ...`` line on stderr and exit
status 2; a traceback is shown only with ``--verbose``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="infersweep",
    help="Simulate LLM inference serving (roofline step costs + a vLLM-like scheduler) and "
    "sweep deployment configurations.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXIT_BAD_INPUT = 2

# ------------------------------------------------------------------------------------------
# shared options
# ------------------------------------------------------------------------------------------

OptModel = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model name (a folder of the embedded data/models, org/name allowed) or "
        "a label when --model-config-folder is given.",
    ),
]
OptModelFolder = Annotated[
    Path | None,
    typer.Option("--model-config-folder", help="Folder holding a HuggingFace config.json."),
]
OptHwConfig = Annotated[
    str | None,
    typer.Option(
        "--hardware-config",
        help="Hardware config JSON: a path, an embedded file name, or one of "
        "minimal, full_487017bc, v2, catalog (default: catalog).",
    ),
]
OptBench = Annotated[
    Path | None,
    typer.Option("--bench-data-path", help="MFU table folder (default: the embedded H100 tables)."),
]
OptHardware = Annotated[
    str, typer.Option("--hardware", help="GPU name in the hardware config (case-insensitive).")
]
OptTp = Annotated[int, typer.Option("--tp", help="Tensor parallelism (>= 1).")]
OptStepModel = Annotated[
    str, typer.Option("--step-model", help="auto (v2 when MFU tables exist, else v1), v2 or v1.")
]
OptVerbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks and notes.")]
OptQuiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notes on stderr.")]


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


def _warn(msg: str, quiet: bool = False) -> None:
    if not quiet:
        typer.echo(f"warning: {msg}", err=True)


def _report(exc: BaseException, verbose: bool) -> None:
    """Print one line for an exception and exit (bad input: 2, anything else: 1)."""
    from infersweep.errors import ConfigError

    if verbose:
        raise exc
    if isinstance(exc, ConfigError):
        _err(f"error: {exc}")
        raise SystemExit(EXIT_BAD_INPUT)
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        _err(f"error: {exc.strerror or exc}{where}")
        raise SystemExit(EXIT_BAD_INPUT)
    _err(
        f"error: internal error: {exc.__class__.__name__}: {exc} "
        "(run with --verbose for the traceback)"
    )
    raise SystemExit(1)


def handles_errors(fn):
    """Command decorator: the project's error policy, also under typer's CliRunner."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            if type(exc).__module__.startswith(("click", "typer")):
                raise
            _report(exc, bool(kwargs.get("verbose")))

    return wrapper


@app.callback()
def _root() -> None:
    """Simulate LLM inference serving and sweep deployment configurations."""


# ------------------------------------------------------------------------------------------
# step-time
# ------------------------------------------------------------------------------------------


@app.command("step-time")
@handles_errors
def step_time(
    cases: Annotated[
        Path | None,
        typer.Option(
            "--cases",
            help="JSON-lines file of step cases (fields model, tp, hw_config, prefills, "
            "decodes); each line is written back with step_us added.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write the answered cases (default: stdout)."),
    ] = None,
    model: OptModel = None,
    model_config_folder: OptModelFolder = None,
    hardware_config: OptHwConfig = None,
    bench_data_path: OptBench = None,
    hardware: OptHardware = "H100",
    tp: OptTp = 1,
    decode: Annotated[
        list[str],
        typer.Option(
            "--decode", help="Decode entries: COUNTxCONTEXT (e.g. 32x1024) or CONTEXT; repeatable."
        ),
    ] = [],  # noqa: B006
    prefill: Annotated[
        list[str],
        typer.Option(
            "--prefill",
            help="Prefill entries: TOKENS, TOKENS@POSITION or COUNTxTOKENS; repeatable.",
        ),
    ] = [],  # noqa: B006
    step_model: OptStepModel = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the breakdown as JSON.")] = False,
    verbose: OptVerbose = False,
) -> None:
    """Roofline step time of one step (a readable breakdown), or of every line of a cases
    file."""
    from infersweep.errors import ConfigError

    if cases is not None:
        from infersweep.costmodel.stepcases import CaseRunner
        from infersweep.sweeps.io import atomic_write_text

        if not cases.is_file():
            raise ConfigError("cases file not found", file=cases)
        runner = CaseRunner(
            bench_data=str(bench_data_path) if bench_data_path else None,
            step_model=step_model,
            default_hw_config=hardware_config or "minimal",
        )
        with cases.open(encoding="utf-8") as fh:
            lines = list(runner.run_lines(fh))
        for w in runner.warnings:
            _warn(w)
        text = "\n".join(lines) + ("\n" if lines else "")
        if out is None:
            sys.stdout.write(text)
        else:
            atomic_write_text(out, text)
        n_err = sum('"error"' in line for line in lines)
        if n_err:
            _err(f"{n_err} of {len(lines)} cases have an error field")
        return
    if model is None and model_config_folder is None:
        raise ConfigError(
            "give --cases FILE, or --model with --decode/--prefill entries", field="--model"
        )
    from infersweep.config.models import load_hardware, load_model
    from infersweep.costmodel.stepcases import parse_step_spec
    from infersweep.costmodel.stepcost import build_cost_model, step_breakdown
    from infersweep.sweeps.render import render_step_breakdown

    m = load_model(model, model_config_folder)
    hw = load_hardware(hardware, hardware_config)
    cm = build_cost_model(m, hw, tp, bench_data=bench_data_path, step_model=step_model)
    for note in cm.notes:
        _warn(note)
    pf = parse_step_spec(prefill, "--prefill")
    dc = parse_step_spec(decode, "--decode")
    info = step_breakdown(cm, pf, dc)
    if as_json:
        import json

        typer.echo(json.dumps(info, indent=2))
    else:
        render_step_breakdown(info)


# ------------------------------------------------------------------------------------------
# run
# ------------------------------------------------------------------------------------------

LOG_LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "fatal", "panic")


def _parse_kv_blocks(text: str | None) -> int | None:
    from infersweep.errors import ConfigError

    if text is None or text.strip().lower() == "auto":
        return None
    try:
        v = int(text)
    except ValueError:
        raise ConfigError(
            "must be a positive integer or 'auto'", field="--total-kv-blocks", value=text
        ) from None
    if v < 1:
        raise ConfigError(
            "must be a positive integer or 'auto'", field="--total-kv-blocks", value=text
        )
    return v


@app.command("run")
@handles_errors
def run_cmd(
    model: OptModel = None,
    model_config_folder: OptModelFolder = None,
    hardware_config: OptHwConfig = None,
    bench_data_path: OptBench = None,
    hardware: OptHardware = "H100",
    tp: OptTp = 1,
    workload: Annotated[
        str,
        typer.Option(
            "--workload",
            help="chatbot, contentgen, summarization, multidoc, distribution or traces.",
        ),
    ] = "distribution",
    workload_traces_filepath: Annotated[
        Path | None,
        typer.Option(
            "--workload-traces-filepath",
            help="Trace CSV for --workload traces (arrival_time_s,prompt_tokens,output_tokens).",
        ),
    ] = None,
    rate: Annotated[float, typer.Option("--rate", help="Requests per second.")] = 1.0,
    num_requests: Annotated[int, typer.Option("--num-requests", help="Requests.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 42,
    arrival: Annotated[
        str,
        typer.Option(
            "--arrival", help="constant (the reference's even spacing), poisson or gamma."
        ),
    ] = "constant",
    arrival_cv: Annotated[
        float,
        typer.Option("--arrival-cv", help="Coefficient of variation of gamma inter-arrival gaps."),
    ] = 2.0,
    prompt_tokens: Annotated[int, typer.Option("--prompt-tokens")] = 512,
    prompt_tokens_stdev: Annotated[int, typer.Option("--prompt-tokens-stdev")] = 256,
    prompt_tokens_min: Annotated[int, typer.Option("--prompt-tokens-min")] = 2,
    prompt_tokens_max: Annotated[int, typer.Option("--prompt-tokens-max")] = 7000,
    output_tokens: Annotated[int, typer.Option("--output-tokens")] = 512,
    output_tokens_stdev: Annotated[int, typer.Option("--output-tokens-stdev")] = 256,
    output_tokens_min: Annotated[int, typer.Option("--output-tokens-min")] = 2,
    output_tokens_max: Annotated[int, typer.Option("--output-tokens-max")] = 7000,
    prefix_tokens: Annotated[
        int,
        typer.Option(
            "--prefix-tokens", help="Tokens of a prefix shared by every generated request."
        ),
    ] = 0,
    max_num_scheduled_tokens: Annotated[
        int, typer.Option("--max-num-scheduled-tokens", help="Token budget per step.")
    ] = 2048,
    max_num_running_reqs: Annotated[
        int, typer.Option("--max-num-running-reqs", help="Cap on running requests.")
    ] = 256,
    long_prefill_token_threshold: Annotated[
        int,
        typer.Option(
            "--long-prefill-token-threshold", help="Chunk size cap for long prefills (0 = off)."
        ),
    ] = 0,
    block_size_in_tokens: Annotated[
        int, typer.Option("--block-size-in-tokens", help="KV-cache block size.")
    ] = 16,
    total_kv_blocks: Annotated[
        str | None,
        typer.Option(
            "--total-kv-blocks", help="KV blocks, or auto (vllm: from MemoryGiB; blis: 1,000,000)."
        ),
    ] = None,
    gpu_memory_utilization: Annotated[
        float,
        typer.Option(
            "--gpu-memory-utilization", help="Memory fraction for weights + KV cache (auto sizing)."
        ),
    ] = 0.9,
    no_prefix_caching: Annotated[
        bool, typer.Option("--no-prefix-caching", help="Disable prefix caching (vllm semantics).")
    ] = False,
    horizon: Annotated[
        float,
        typer.Option(
            "--horizon", help="Stop after this many simulated seconds (0 = run to the end)."
        ),
    ] = 0.0,
    semantics: Annotated[
        str,
        typer.Option(
            "--semantics",
            help="vllm (a real continuous-batching engine) or blis (the reference "
            "simulator, quirks included).",
        ),
    ] = "vllm",
    blis_preemption: Annotated[
        str,
        typer.Option(
            "--blis-preemption",
            help="blis semantics under preemption: reference (its quirks, "
            "falling back to safe where it would never finish) or "
            "safe.",
        ),
    ] = "reference",
    step_model: OptStepModel = "auto",
    results_path: Annotated[
        Path | None,
        typer.Option(
            "--results-path",
            help="Write the metrics and per-request records (.json), or the "
            "per-request table (.parquet).",
        ),
    ] = None,
    log: Annotated[
        str, typer.Option("--log", help="Log level for stderr notes: error hides warnings.")
    ] = "warn",
    alpha_coeffs: Annotated[
        str | None,
        typer.Option("--alpha-coeffs", hidden=True, help="Accepted for compatibility; unused."),
    ] = None,
    beta_coeffs: Annotated[
        str | None,
        typer.Option("--beta-coeffs", hidden=True, help="Accepted for compatibility; unused."),
    ] = None,
    defaults_filepath: Annotated[
        str | None,
        typer.Option(
            "--defaults-filepath", hidden=True, help="Accepted for compatibility; unused."
        ),
    ] = None,
    vllm_version: Annotated[
        str | None,
        typer.Option("--vllm-version", hidden=True, help="Accepted for compatibility; unused."),
    ] = None,
    roofline: Annotated[
        bool,
        typer.Option(
            "--roofline", hidden=True, help="Accepted for compatibility (always roofline)."
        ),
    ] = False,
    max_model_len: Annotated[
        int | None,
        typer.Option(
            "--max-model-len", hidden=True, help="Accepted for compatibility; not enforced."
        ),
    ] = None,
    verbose: OptVerbose = False,
    quiet: OptQuiet = False,
) -> None:
    """Simulate one deployment (model, GPU, TP) under one workload and print the metrics."""
    from infersweep.api import simulate
    from infersweep.errors import ConfigError
    from infersweep.scheduler.driver import SchedulerConfig
    from infersweep.sweeps.output import metrics_text, write_results
    from infersweep.workload.generate import LengthSpec, WorkloadSpec

    if log.lower() not in LOG_LEVELS:
        raise ConfigError(
            "unknown log level", field="--log", value=log, hint="one of: " + ", ".join(LOG_LEVELS)
        )
    show_notes = not quiet and log.lower() in ("trace", "debug", "info", "warn", "warning")
    spec = WorkloadSpec(
        workload=workload,
        rate=rate,
        num_requests=num_requests,
        seed=seed,
        arrival=arrival,
        arrival_cv=arrival_cv,
        prefix_tokens=prefix_tokens,
        prompt=LengthSpec(
            mean=prompt_tokens,
            std=prompt_tokens_stdev,
            min=prompt_tokens_min,
            max=prompt_tokens_max,
        ),
        output=LengthSpec(
            mean=output_tokens,
            std=output_tokens_stdev,
            min=output_tokens_min,
            max=output_tokens_max,
        ),
        trace=str(workload_traces_filepath) if workload_traces_filepath else None,
    )
    sched = SchedulerConfig(
        semantics=semantics,
        max_num_scheduled_tokens=max_num_scheduled_tokens,
        max_num_running_reqs=max_num_running_reqs,
        long_prefill_token_threshold=long_prefill_token_threshold,
        block_size=block_size_in_tokens,
        total_kv_blocks=_parse_kv_blocks(total_kv_blocks),
        gpu_memory_utilization=gpu_memory_utilization,
        prefix_caching=not no_prefix_caching,
        horizon_s=horizon,
        blis_preemption=blis_preemption,
    )
    res = simulate(
        model=model,
        model_config_folder=model_config_folder,
        hardware=hardware,
        hardware_config=hardware_config,
        tp=tp,
        bench_data=bench_data_path,
        step_model=step_model,
        workload=spec,
        scheduler=sched,
    )
    if show_notes:
        for note in res.notes:
            _warn(note)
        if res.summary["status"] != "ok":
            _warn(f"the run stopped early: status {res.summary['status']}")
    if res.summary["completed_requests"] > 0:
        sys.stdout.write(metrics_text(res.summary))
    elif show_notes:
        _warn("no request completed")
    if results_path is not None:
        table = res.requests_table() if results_path.suffix.lower() == ".parquet" else None
        write_results(results_path, res.summary, res.records(), table)


# ------------------------------------------------------------------------------------------
# sweep, show
# ------------------------------------------------------------------------------------------


class _Progress:
    """A rich progress bar on stderr: points done, points/s, ETA."""

    def __init__(self) -> None:
        self._p = None
        self._task = None

    def start(self, total: int, done: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._p = Progress(
            TextColumn("sweep"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} points/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._p.start()
        self._task = self._p.add_task("sweep", total=total, completed=done, rate="-")
        self._t0 = __import__("time").perf_counter()
        self._done0 = done

    def advance(self, n: int) -> None:
        if self._p is None:
            return
        self._p.advance(self._task, n)
        done = self._p.tasks[0].completed - self._done0
        dt = __import__("time").perf_counter() - self._t0
        r = done / dt if dt > 0 else 0.0
        self._p.update(self._task, rate=f"{r:,.0f}" if r >= 10 else f"{r:.2f}")

    def stop(self) -> None:
        if self._p is not None:
            self._p.stop()


@app.command("sweep")
@handles_errors
def sweep_cmd(
    spec_file: Annotated[
        Path | None,
        typer.Argument(help="Sweep spec (TOML, [sweep] fixed settings and [grid] axes)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output folder (result.parquet, resumable)."),
    ] = None,
    example: Annotated[
        bool, typer.Option("--example", help="Run the embedded example spec.")
    ] = False,
    hardware: Annotated[
        list[str], typer.Option("--hardware", help="Axis values (repeatable, comma lists).")
    ] = [],  # noqa: B006
    model: Annotated[list[str], typer.Option("--model", help="Axis values.")] = [],  # noqa: B006
    tp: Annotated[list[str], typer.Option("--tp", help="Axis values.")] = [],  # noqa: B006
    workload: Annotated[list[str], typer.Option("--workload", help="Axis values.")] = [],  # noqa: B006
    rate: Annotated[list[str], typer.Option("--rate", help="Axis values.")] = [],  # noqa: B006
    num_requests: Annotated[list[str], typer.Option("--num-requests", help="Axis values.")] = [],  # noqa: B006
    seed: Annotated[list[str], typer.Option("--seed", help="Axis values.")] = [],  # noqa: B006
    semantics: Annotated[list[str], typer.Option("--semantics", help="Axis values.")] = [],  # noqa: B006
    axis: Annotated[
        list[str], typer.Option("--axis", help="Any setting as an axis: KEY=V1,V2,...")
    ] = [],  # noqa: B006
    set_: Annotated[list[str], typer.Option("--set", help="A fixed setting: KEY=VALUE.")] = [],  # noqa: B006
    threads: Annotated[
        int | None, typer.Option("--threads", help="Worker threads (default: all cores).")
    ] = None,
    chunk_size: Annotated[
        int | None, typer.Option("--chunk-size", help="Points per chunk file.")
    ] = None,
    per_request: Annotated[
        bool,
        typer.Option("--per-request", help="Also write per-request Parquet, partitioned by point."),
    ] = False,
    dask_local: Annotated[
        bool, typer.Option("--dask-local", help="Run the chunks on a local Dask cluster.")
    ] = False,
    dask: Annotated[
        str | None,
        typer.Option("--dask", help="'local' for a LocalCluster, or a scheduler address."),
    ] = None,
    dask_scheduler: Annotated[
        str | None,
        typer.Option("--dask-scheduler", help="Address of a Dask scheduler (tcp://host:8786)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a result of a different sweep in --out.")
    ] = False,
    show: Annotated[
        bool, typer.Option("--show/--no-show", help="Print the summary table at the end.")
    ] = True,
    verbose: OptVerbose = False,
    quiet: OptQuiet = False,
) -> None:
    """Simulate every point of a grid (hardware x model x TP x workload x rate ...) and write a
    tidy Parquet result (an xarray Dataset on read)."""
    from infersweep.config.catalog import data_dir
    from infersweep.errors import ConfigError
    from infersweep.sweeps.grid import load_spec, parse_cli_axes
    from infersweep.sweeps.runner import run_sweep

    if example and spec_file is not None:
        raise ConfigError("give a spec file or --example, not both", field="--example")
    spec = load_spec(data_dir() / "sweeps" / "example.toml" if example else spec_file)
    spec = parse_cli_axes(
        spec,
        {
            "hardware": hardware,
            "model": model,
            "tp": tp,
            "workload": workload,
            "rate": rate,
            "num_requests": num_requests,
            "seed": seed,
            "semantics": semantics,
        },
        set_,
        axis,
    )
    if not spec.axes and not spec.fixed:
        raise ConfigError(
            "nothing to sweep: give a spec file, --example, or axes such as "
            "--model ... --rate 1,2,4",
            field="spec",
        )
    if out is None:
        out = Path("results") / spec.name
    addr = dask_scheduler or dask or ("local" if dask_local else None)
    if threads is not None and threads < 1:
        raise ConfigError("must be >= 1", field="--threads", value=threads)
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError("must be >= 1", field="--chunk-size", value=chunk_size)
    outcome = run_sweep(
        spec,
        out,
        threads=threads,
        chunk_size=chunk_size,
        per_request=per_request,
        force=force,
        dask=addr,
        progress=None if quiet else _Progress(),
    )
    if not quiet:
        _err(
            f"{outcome.n_points} points ({outcome.computed} simulated, {outcome.skipped} "
            f"reused) in {outcome.seconds:.1f} s -> {outcome.path}"
        )
    if show:
        from infersweep.sweeps.show import render_show

        render_show(outcome.path)


@app.command("show")
@handles_errors
def show_cmd(
    result: Annotated[Path, typer.Argument(help="A sweep result (result.parquet or its folder).")],
    by: Annotated[str, typer.Option("--by", help="Metric to rank points by.")] = "ttft_p99_ms",
    top: Annotated[int, typer.Option("--top", help="How many points to list.")] = 10,
    descending: Annotated[
        bool | None,
        typer.Option(
            "--desc/--asc", help="Sort order (default: descending for throughput metrics)."
        ),
    ] = None,
    verbose: OptVerbose = False,
) -> None:
    """A short table of a sweep result: counts by status and the best points by a metric."""
    from infersweep.sweeps.show import render_show

    render_show(result, by=by, top=top, descending=descending)


# ------------------------------------------------------------------------------------------
# measured traces: import-otlp, validate, calibrate
# ------------------------------------------------------------------------------------------

OptManifest = Annotated[
    Path | None,
    typer.Option(
        "--manifest",
        help="A vLLM run's manifest.json: takes max_num_batched_tokens, max_num_seqs, "
        "num_gpu_blocks, block_size, prefix caching and the model from it "
        "(explicit flags win).",
    ),
]
OptSemanticsV = Annotated[str, typer.Option("--semantics", help="vllm or blis.")]
OptBudget = Annotated[
    int | None,
    typer.Option("--max-num-scheduled-tokens", help="Token budget per step (default 2048)."),
]
OptMaxRun = Annotated[
    int | None,
    typer.Option("--max-num-running-reqs", help="Cap on running requests (default 256)."),
]
OptThr = Annotated[
    int,
    typer.Option(
        "--long-prefill-token-threshold", help="Chunk size cap for long prefills (0 = off)."
    ),
]
OptBlock = Annotated[
    int | None, typer.Option("--block-size-in-tokens", help="KV block size (default 16).")
]
OptKV = Annotated[str | None, typer.Option("--total-kv-blocks", help="KV blocks, or auto.")]
OptUtil = Annotated[float, typer.Option("--gpu-memory-utilization")]
OptNoPrefix = Annotated[bool, typer.Option("--no-prefix-caching")]


def _deployment(
    model,
    model_config_folder,
    hardware_config,
    bench_data_path,
    hardware,
    tp,
    step_model,
    semantics,
    budget,
    max_run,
    thr,
    block,
    kv,
    util,
    no_prefix,
    manifest,
):
    """Model, hardware entry and scheduler settings from the shared flags (and a manifest)."""
    from infersweep.config.models import load_hardware, load_model
    from infersweep.fitting.otlp import read_manifest
    from infersweep.scheduler.driver import SchedulerConfig

    man = read_manifest(manifest) if manifest is not None else {}
    m = load_model(model or man.get("model"), model_config_folder)
    hw = load_hardware(hardware or man.get("gpu") or "H100", hardware_config)
    tp = tp if tp is not None else man.get("tp", 1)
    kv_blocks = _parse_kv_blocks(kv) if kv is not None else man.get("blocks")
    sched = SchedulerConfig(
        semantics=semantics,
        max_num_scheduled_tokens=budget if budget is not None else man.get("budget", 2048),
        max_num_running_reqs=max_run if max_run is not None else man.get("max_run", 256),
        long_prefill_token_threshold=thr,
        block_size=block if block is not None else man.get("block", 16),
        total_kv_blocks=kv_blocks,
        gpu_memory_utilization=util,
        prefix_caching=(not no_prefix) and man.get("prefix_caching", True),
    )
    return m, hw, tp, sched


@app.command("import-otlp")
@handles_errors
def import_otlp_cmd(
    spans: Annotated[Path, typer.Argument(help="vLLM OpenTelemetry spans (JSON lines).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The measured-trace CSV to write.")],
    verbose: OptVerbose = False,
    quiet: OptQuiet = False,
) -> None:
    """Convert vLLM's OTLP spans to a measured trace (arrival, tokens, measured TTFT/E2E,
    phase); malformed or partial spans are reported and skipped."""
    from infersweep.fitting.otlp import import_otlp, write_measured_csv

    rows, report = import_otlp(spans)
    if not quiet:
        for line in report.lines_text():
            _err(line)
    write_measured_csv(rows, out)
    if not quiet:
        _err(f"wrote {len(rows)} requests to {out}")


@app.command("validate")
@handles_errors
def validate_cmd(
    measured: Annotated[Path, typer.Argument(help="Measured trace CSV (import-otlp's format).")],
    model: OptModel = None,
    model_config_folder: OptModelFolder = None,
    hardware_config: OptHwConfig = None,
    bench_data_path: OptBench = None,
    hardware: Annotated[str | None, typer.Option("--hardware")] = None,
    tp: Annotated[int | None, typer.Option("--tp")] = None,
    step_model: OptStepModel = "auto",
    semantics: OptSemanticsV = "vllm",
    max_num_scheduled_tokens: OptBudget = None,
    max_num_running_reqs: OptMaxRun = None,
    long_prefill_token_threshold: OptThr = 0,
    block_size_in_tokens: OptBlock = None,
    total_kv_blocks: OptKV = None,
    gpu_memory_utilization: OptUtil = 0.9,
    no_prefix_caching: OptNoPrefix = False,
    manifest: OptManifest = None,
    skip_first: Annotated[
        int, typer.Option("--skip-first", help="Leave out the first N requests (warm-up).")
    ] = 1,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Write the errors (and per-request values) as JSON."),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Draw predicted vs measured to a PNG.")
    ] = None,
    verbose: OptVerbose = False,
    quiet: OptQuiet = False,
) -> None:
    """Replay a measured trace and report the prediction error: MAPE and mean signed error of
    TTFT, E2E and TPOT, overall and by phase."""
    import json

    from infersweep.api import simulate
    from infersweep.fitting.otlp import read_measured
    from infersweep.fitting.validate import compare

    wl = read_measured(measured)
    m, hw, tp_, sched = _deployment(
        model,
        model_config_folder,
        hardware_config,
        bench_data_path,
        hardware,
        tp,
        step_model,
        semantics,
        max_num_scheduled_tokens,
        max_num_running_reqs,
        long_prefill_token_threshold,
        block_size_in_tokens,
        total_kv_blocks,
        gpu_memory_utilization,
        no_prefix_caching,
        manifest,
    )
    res = simulate(
        model=m,
        hardware=hw,
        tp=tp_,
        bench_data=bench_data_path,
        step_model=step_model,
        workload=wl,
        scheduler=sched,
    )
    if not quiet:
        for note in res.notes:
            _warn(note)
    rep = compare(wl, res, skip_first=skip_first)
    rep.render()
    if json_out is not None:
        from infersweep.sweeps.io import atomic_write_text

        atomic_write_text(json_out, json.dumps(rep.to_dict(), indent=2, allow_nan=False))
    if plot is not None:
        from infersweep.sweeps.plot import plot_validation

        plot_validation(rep, plot)


@app.command("calibrate")
@handles_errors
def calibrate_cmd(
    measured: Annotated[Path, typer.Argument(help="Measured trace CSV (import-otlp's format).")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Hardware-config JSON to write (accepted by run, sweep, validate)."
        ),
    ],
    fit: Annotated[
        list[str],
        typer.Option(
            "--fit",
            help="Fields to fit (repeatable or comma list): TOverheadMicros, "
            "PrefillOverheadMicros, MixedPrefillOverheadMicros, AllReduceLatency, "
            "bwEfficiencyFactor, perLayerOverhead.",
        ),
    ] = [],  # noqa: B006
    fit_phase: Annotated[
        str | None,
        typer.Option("--fit-phase", help="Fit on the requests of this phase only (default: all)."),
    ] = None,
    model: OptModel = None,
    model_config_folder: OptModelFolder = None,
    hardware_config: OptHwConfig = None,
    bench_data_path: OptBench = None,
    hardware: Annotated[str | None, typer.Option("--hardware")] = None,
    tp: Annotated[int | None, typer.Option("--tp")] = None,
    step_model: OptStepModel = "auto",
    semantics: OptSemanticsV = "vllm",
    max_num_scheduled_tokens: OptBudget = None,
    max_num_running_reqs: OptMaxRun = None,
    long_prefill_token_threshold: OptThr = 0,
    block_size_in_tokens: OptBlock = None,
    total_kv_blocks: OptKV = None,
    gpu_memory_utilization: OptUtil = 0.9,
    no_prefix_caching: OptNoPrefix = False,
    manifest: OptManifest = None,
    skip_first: Annotated[int, typer.Option("--skip-first")] = 1,
    candidates: Annotated[
        int,
        typer.Option(
            "--candidates", help="Sobol candidates of the batch search (rounded to a power of two)."
        ),
    ] = 512,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    verbose: OptVerbose = False,
    quiet: OptQuiet = False,
) -> None:
    """Fit the hardware entry's overhead fields to a measured trace and write the calibrated
    hardware config; prints the error before and after on the fitted requests and the rest."""
    import json

    from infersweep.api import simulate
    from infersweep.errors import ConfigError
    from infersweep.fitting.calibrate import DEFAULT_FIT, calibrate, fit_mask
    from infersweep.fitting.otlp import read_measured
    from infersweep.fitting.validate import compare
    from infersweep.sweeps.io import atomic_write_text

    fields = [f.strip() for item in fit for f in item.split(",") if f.strip()] or DEFAULT_FIT
    if candidates < 2:
        raise ConfigError("must be >= 2", field="--candidates", value=candidates)
    wl = read_measured(measured)
    m, hw, tp_, sched = _deployment(
        model,
        model_config_folder,
        hardware_config,
        bench_data_path,
        hardware,
        tp,
        step_model,
        semantics,
        max_num_scheduled_tokens,
        max_num_running_reqs,
        long_prefill_token_threshold,
        block_size_in_tokens,
        total_kv_blocks,
        gpu_memory_utilization,
        no_prefix_caching,
        manifest,
    )
    res = calibrate(
        wl,
        model=m,
        hardware=hw,
        tp=tp_,
        scheduler=sched,
        fields=fields,
        fit_phase=fit_phase,
        skip_first=skip_first,
        bench_data=bench_data_path,
        step_model=step_model,
        n_candidates=candidates,
        seed=seed,
    )
    atomic_write_text(
        out, json.dumps({res.hardware.name: res.hardware.to_entry()}, indent=2) + "\n"
    )
    if quiet:
        return
    from rich.console import Console
    from rich.table import Table

    mask = fit_mask(wl, fit_phase, skip_first)
    console = Console()
    t = Table(
        title=f"calibration of {hw.name} ({', '.join(res.best.params)}) on "
        f"{int(mask.sum())} requests{' of phase ' + fit_phase if fit_phase else ''}"
    )
    for c in ("requests", "", "TTFT MAPE %", "E2E MAPE %", "TPOT MAPE %"):
        t.add_column(c, justify="right" if "%" in c else "left")
    for label, h in (("before", hw), ("after", res.hardware)):
        sim = simulate(
            model=m,
            hardware=h,
            tp=tp_,
            bench_data=bench_data_path,
            step_model=step_model,
            workload=wl,
            scheduler=sched,
        )
        rep = compare(wl, sim, skip_first=skip_first)
        for group, sel in (("fitted", mask), ("rest", ~mask)):
            stats = rep.stats_for(sel)
            t.add_row(group, label, *(f"{stats[k]:.1f}" for k in ("ttft", "e2e", "tpot")))
    console.print(t)
    console.print(
        "fitted: "
        + ", ".join(f"{k} = {v:.4g}" for k, v in res.best.params.items())
        + f"  ({res.n_candidates} candidates in {res.seconds:.1f} s, "
        f"{res.candidates_per_s:,.0f}/s)"
    )
    console.print(f"wrote {out}")


# ------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: usage errors become one ``error:`` line too."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args or "-v" in args
    command = typer.main.get_command(app)
    try:
        rc = command.main(
            args=args, prog_name=Path(sys.argv[0]).name or "infersweep", standalone_mode=False
        )
    except KeyboardInterrupt:
        _err("interrupted")
        raise SystemExit(130) from None
    except Exception as exc:
        if type(exc).__name__ == "Abort":
            _err("aborted")
            raise SystemExit(130) from None
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click usage errors
            if verbose:
                raise
            _err(f"error: {exc.format_message()}")
            raise SystemExit(exc.exit_code or EXIT_BAD_INPUT) from None
        _report(exc, verbose)
    if isinstance(rc, int) and rc:
        raise SystemExit(rc)


if __name__ == "__main__":  # pragma: no cover
    main()
