"""The ``infersweep`` / ``simulation_worker`` command line (typer): parse, call, print.

Heavy modules (numba kernels, xarray, pyarrow) are imported inside the commands so that
``--help`` is instant.  A ``ConfigError`` becomes one ``error: ...`` line on stderr and exit
status 2; a traceback is shown only with ``--verbose``.
"""

import sys
from pathlib import Path
from typing import Annotated

import typer

from infersweep.sweeps.options import with_settings

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

OptVerbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks and notes.")]
OptQuiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notes on stderr.")]


def _err(msg: str, nl: bool = True) -> None:
    typer.echo(msg, err=True, nl=nl)


def _warn(msg: str, quiet: bool = False) -> None:
    if not quiet:
        typer.echo(f"warning: {msg}", err=True)


def _report(exc: BaseException, verbose: bool) -> None:
    """Print one line for an exception and exit (bad input: 2, anything else: 1)."""
    from infersweep.errors import ConfigError

    if verbose:
        raise exc
    if isinstance(exc, ConfigError):
        from infersweep.sweeps.options import flag_of

        flag = flag_of(exc.field) if exc.file is None else None
        if flag is not None:  # the engine names settings; the command line knows them as flags
            exc = ConfigError(exc.message, field=flag, value=exc.value, hint=exc.hint)
        _err(f"error: {exc}")
        raise SystemExit(EXIT_BAD_INPUT)
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        _err(f"error: {exc.strerror or exc}{where}")
        raise SystemExit(EXIT_BAD_INPUT)
    if isinstance(exc, MemoryError):  # an allocation the size checks did not foresee
        detail = str(exc).strip().replace("\n", " ")
        _err(
            "error: out of memory"
            + (f" ({detail})" if detail else "")
            + ": the inputs ask for more memory than this process may use; lower "
            "--num-requests, the token counts, --total-kv-blocks or --chunk-size"
        )
        raise SystemExit(EXIT_BAD_INPUT)
    if isinstance(exc, OverflowError):  # a value past a range check
        _err(f"error: a value is out of range ({exc}); see the limits in the README")
        raise SystemExit(EXIT_BAD_INPUT)
    _err(
        f"error: internal error: {exc.__class__.__name__}: {exc} "
        "(run with --verbose for the traceback)"
    )
    raise SystemExit(1)


def check_output_path(path: Path, flag: str) -> None:
    """Before any work: the output file's folder exists or can be made and is writable, and the
    path is not a folder (so a long simulation never ends in a write error)."""
    from infersweep.errors import ConfigError
    from infersweep.sweeps.io import check_writable_file

    try:
        check_writable_file(path)
    except ConfigError as exc:
        raise ConfigError(exc.message, file=exc.file, field=flag, hint=exc.hint) from None


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
@with_settings("deployment")
def step_time(
    settings: dict,
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the breakdown as JSON.")] = False,
    verbose: OptVerbose = False,
) -> None:
    """Roofline step time of one step (a readable breakdown), or of every line of a cases
    file."""
    from infersweep import settings as registry
    from infersweep.errors import ConfigError

    values = registry.resolve(settings)
    if cases is not None:
        from infersweep.costmodel.stepcases import CaseRunner
        from infersweep.sweeps.io import atomic_write_text

        if not cases.is_file():
            raise ConfigError("cases file not found", file=cases)
        if out is not None:
            check_output_path(out, "--out")
        runner = CaseRunner(
            bench_data=values["bench_data"],
            step_model=values["step_model"],
            default_hw_config=values["hardware_config"] or "minimal",
        )
        try:
            with cases.open(encoding="utf-8") as fh:
                lines = list(runner.run_lines(fh))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the cases ({exc})", file=cases) from None
        if not lines:
            raise ConfigError(
                "the cases file holds no case",
                file=cases,
                hint="one JSON object a line, e.g. "
                '{"model": "llama-3.1-8b-instruct", "tp": 1, "decodes": [1024]}',
            )
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
    if values["model"] is None and values["model_config_folder"] is None:
        raise ConfigError(
            "give --cases FILE, or --model with --decode/--prefill entries", field="--model"
        )
    from infersweep.config.models import load_hardware, load_model
    from infersweep.costmodel.stepcases import parse_step_spec
    from infersweep.costmodel.stepcost import build_cost_model, step_breakdown
    from infersweep.settings import deploy
    from infersweep.sweeps.render import render_step_breakdown

    m = deploy(load_model(values["model"], values["model_config_folder"]), values)
    hw = load_hardware(values["hardware"], values["hardware_config"])
    cm = build_cost_model(
        m, hw, values["tp"], bench_data=values["bench_data"], step_model=values["step_model"]
    )
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


def _compat(name: str) -> object:
    """A hidden option of the reference's ``run`` that is accepted and ignored."""
    return typer.Option(name, hidden=True, help="Accepted for compatibility; unused.")


@app.command("run")
@handles_errors
@with_settings("deployment", "workload", "scheduler")
def run_cmd(
    settings: dict,
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
    alpha_coeffs: Annotated[str | None, _compat("--alpha-coeffs")] = None,
    beta_coeffs: Annotated[str | None, _compat("--beta-coeffs")] = None,
    defaults_filepath: Annotated[str | None, _compat("--defaults-filepath")] = None,
    vllm_version: Annotated[str | None, _compat("--vllm-version")] = None,
    roofline: Annotated[bool, _compat("--roofline")] = False,
    max_model_len: Annotated[int | None, _compat("--max-model-len")] = None,
    verbose: OptVerbose = False,
    quiet: OptQuiet = False,
) -> None:
    """Simulate one deployment (model, GPU, TP) under one workload and print the metrics."""
    from infersweep import settings as registry
    from infersweep.api import simulate
    from infersweep.errors import ConfigError
    from infersweep.sweeps.output import metrics_text, write_results

    if log.lower() not in LOG_LEVELS:
        raise ConfigError(
            "unknown log level", field="--log", value=log, hint="one of: " + ", ".join(LOG_LEVELS)
        )
    show_notes = not quiet and log.lower() in ("trace", "debug", "info", "warn", "warning")
    if results_path is not None:
        check_output_path(results_path, "--results-path")
    values = registry.resolve(settings)
    res = simulate(
        model=values["model"],
        model_config_folder=values["model_config_folder"],
        hardware=values["hardware"],
        hardware_config=values["hardware_config"],
        tp=values["tp"],
        bench_data=values["bench_data"],
        step_model=values["step_model"],
        **{k: values[k] for k in registry.MODEL_DEPLOYMENT},
        workload=registry.workload_spec(values),
        scheduler=registry.scheduler_config(values),
    )
    status = res.summary["status"]
    if show_notes:
        for note in res.notes:
            _warn(note)
        if status == "unservable":
            _warn(
                f"no request completed: all {res.summary['dropped_unservable']} were dropped "
                "(they never fit in the KV cache); latency metrics are null"
            )
        elif status != "ok":
            _warn(f"the run stopped early: status {status}")
        if res.summary["completed_requests"] == 0 and status != "unservable":
            _warn("no request completed; latency metrics are null")
    sys.stdout.write(metrics_text(res.summary))
    if results_path is not None:
        from infersweep import limits

        if results_path.suffix.lower() != ".parquet":
            limits.check_memory(
                f"the per-request records of {len(res.workload):,} requests",
                len(res.workload) * float(limits.BYTES_PER_RECORD),
                field="--results-path",
                value=str(results_path),
                hint="write a .parquet file instead",
            )
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
@with_settings("deployment", "workload", "scheduler", mode="axis")
def sweep_cmd(
    settings: dict,
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
    axis: Annotated[
        list[str],
        typer.Option("--axis", help="Any setting or hardware field as an axis: KEY=V1,V2,..."),
    ] = [],  # noqa: B006
    set_: Annotated[
        list[str], typer.Option("--set", help="A fixed setting or hardware field: KEY=VALUE.")
    ] = [],  # noqa: B006
    threads: Annotated[
        int | None,
        typer.Option("--threads", help="Worker threads (default: the spec's, else all cores)."),
    ] = None,
    chunk_size: Annotated[
        int | None, typer.Option("--chunk-size", help="Points per chunk file.")
    ] = None,
    per_request: Annotated[
        bool | None,
        typer.Option(
            "--per-request/--no-per-request",
            help="Also write per-request Parquet, partitioned by point.",
        ),
    ] = None,
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
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Run a sweep above --max-points without asking."),
    ] = False,
    max_points: Annotated[
        int | None,
        typer.Option(
            "--max-points",
            help="Sweeps with more points need --yes (default 1,000,000, or "
            "INFERSWEEP_MAX_POINTS).",
        ),
    ] = None,
    show: Annotated[
        bool, typer.Option("--show/--no-show", help="Print the summary table at the end.")
    ] = True,
    verbose: OptVerbose = False,
    quiet: OptQuiet = False,
) -> None:
    """Simulate every point of a grid (hardware x model x TP x workload x rate ...) and write a
    tidy Parquet result (an xarray Dataset on read).  Every setting option takes axis values;
    the spec's [sweep] table may also set threads, chunk_size and per_request."""
    from infersweep.config.catalog import data_dir
    from infersweep.errors import ConfigError
    from infersweep.sweeps.grid import load_spec, parse_cli_axes
    from infersweep.sweeps.runner import run_sweep

    if example and spec_file is not None:
        raise ConfigError("give a spec file or --example, not both", field="--example")
    spec = load_spec(data_dir() / "sweeps" / "example.toml" if example else spec_file)
    spec = parse_cli_axes(spec, settings, set_, axis)
    if not spec.axes and not spec.fixed:
        raise ConfigError(
            "nothing to sweep: give a spec file, --example, or axes such as "
            "--model ... --rate 1,2,4",
            field="spec",
        )
    if out is None:
        out = Path("results") / spec.name
    addr = dask_scheduler or dask or ("local" if dask_local else None)
    run = spec.run_options(threads=threads, chunk_size=chunk_size, per_request=per_request)
    notes: list[str] = []
    outcome = run_sweep(
        spec,
        out,
        threads=run["threads"],
        chunk_size=run["chunk_size"],
        per_request=run["per_request"],
        force=force,
        dask=addr,
        progress=None if quiet else _Progress(),
        yes=yes,
        max_points=max_points,
        notes=notes,
    )
    for note in notes:
        _warn(note, quiet)
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
    instances: Annotated[
        bool,
        typer.Option("--instances", help="Also list the per-instance metrics of the points shown."),
    ] = False,
    verbose: OptVerbose = False,
) -> None:
    """A short table of a sweep result: counts by status and the best points by a metric."""
    from infersweep.sweeps.show import render_show

    render_show(result, by=by, top=top, descending=descending, instances=instances)


# ------------------------------------------------------------------------------------------
# plan, plot (capacity planning; a compact block: axes as in sweep, plan options, output)
# ------------------------------------------------------------------------------------------


@app.command("plan")
@handles_errors
@with_settings("deployment", "workload", "scheduler", mode="axis", exclude=("rate",))
def plan_cmd(
    settings: dict,
    spec_file: Annotated[
        Path | None,
        typer.Argument(help="Plan spec (TOML: [sweep], [grid] without rate, [slo], [plan])."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output folder (plan.parquet, pareto.png, knees.png)."),
    ] = None,
    example: Annotated[
        bool, typer.Option("--example", help="Plan the embedded example (plan-example.toml).")
    ] = False,
    slo: Annotated[
        list[str], typer.Option("--slo", help="SLO bound METRIC=MAX (repeatable, comma lists).")
    ] = [],  # noqa: B006
    target_rate: Annotated[
        float | None,
        typer.Option("--target-rate", help="Requests/s to serve: replicas, GPUs, cost per hour."),
    ] = None,
    price: Annotated[
        list[str],
        typer.Option("--price", help="USD per GPU-hour, GPU=PRICE (repeatable; default: catalog)."),
    ] = [],  # noqa: B006
    cost_uncertainty: Annotated[
        float | None,
        typer.Option(
            "--cost-uncertainty",
            help="Relative step-cost error δ of the band (default: the profile's "
            "CrossValidatedError, else 0.05).",
        ),
    ] = None,
    band: Annotated[
        bool, typer.Option("--band/--no-band", help="Search max_rate_low/high too.")
    ] = True,
    check_replicas: Annotated[
        bool | None,
        typer.Option(
            "--check-replicas/--no-check-replicas",
            help="With --target-rate: simulate the cluster of the estimated replica count with "
            "the configuration's router, and raise (or lower) the count until it meets the SLO "
            "(default: on, or the spec's [plan] check_replicas).",
        ),
    ] = None,
    axis: Annotated[list[str], typer.Option("--axis", help="Any setting as an axis.")] = [],  # noqa: B006
    set_: Annotated[list[str], typer.Option("--set", help="A fixed setting: KEY=VALUE.")] = [],  # noqa: B006
    threads: Annotated[int | None, typer.Option("--threads", help="Worker threads.")] = None,
    top: Annotated[int, typer.Option("--top", help="Rows of the ranked table.")] = 15,
    emit_serve_args: Annotated[
        bool,
        typer.Option("--emit-serve-args", help="Print the vllm serve command of each ranked row."),
    ] = False,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write the two PNGs.")] = True,
    verbose: OptVerbose = False,
    quiet: OptQuiet = False,
) -> None:
    """Capacity planning: per configuration the highest arrival rate meeting the SLO, its
    goodput, cost, sensitivity band and vllm serve settings; a ranked table and two figures."""
    from infersweep.errors import ConfigError
    from infersweep.sweeps.grid import parse_cli_axes
    from infersweep.sweeps.plan import (
        PlanOptions,
        check_out_dir,
        check_slo,
        load_plan_spec,
        parse_pairs,
        plan_options,
        run_plan,
        write_plan,
    )
    from infersweep.sweeps.render import render_plan

    if example:
        from infersweep.config.catalog import data_dir

        if spec_file is not None:
            raise ConfigError("give a spec file or --example, not both", field="--example")
        spec_file = data_dir() / "sweeps" / "plan-example.toml"
    spec, slo_table, plan_table = load_plan_spec(spec_file)
    spec = parse_cli_axes(spec, settings, set_, axis)
    if not spec.axes and not spec.fixed:
        raise ConfigError("nothing to plan: give a spec file or axes such as --model ...")
    cli_slo = parse_pairs(slo, "--slo")
    if cli_slo:
        cli_slo = check_slo(cli_slo, None, "--slo ")  # its errors name the flag, not the spec
    opts = plan_options(
        plan_table,
        slo={**slo_table, **cli_slo},
        target_rate=target_rate,
        prices=parse_pairs(price, "--price"),
        cost_uncertainty=cost_uncertainty,
        check_replicas=check_replicas,
        where=spec.source or None,
    )
    opts = PlanOptions(**{**opts.__dict__, "sensitivity": band})
    if threads is not None and threads < 1:
        raise ConfigError("must be >= 1", field="--threads", value=threads)
    if top < 1:
        raise ConfigError("must be >= 1", field="--top", value=top)
    out = out if out is not None else Path("results") / f"{spec.name}-plan"
    check_out_dir(out)

    tty = not quiet and sys.stderr.isatty()

    def progress(stage: str, done: int, total: int) -> None:
        _err(f"\r{stage}: {done}/{total} searches done ", nl=False)

    run = run_plan(spec, opts, threads=threads, progress=progress if tty else None)
    if tty:
        _err("")
    ds = write_plan(run, out, plots=plots)
    if not quiet:
        _err(
            f"{len(run.configs)} configurations: {run.points} points simulated in "
            f"{run.kernel_calls} batched kernel calls, {run.seconds:.1f} s -> {out}"
        )
    render_plan(ds, top=top)
    if emit_serve_args:
        import numpy as np

        flat_rank = ds["rank"].values.reshape(-1)
        cmds = ds["serve_command"].values.reshape(-1)
        ranked = sorted(np.flatnonzero(np.isfinite(flat_rank)), key=lambda k: flat_rank[k])
        for i in ranked[:top]:
            typer.echo(cmds[i])


@app.command("plot")
@handles_errors
def plot_cmd(
    result: Annotated[Path, typer.Argument(help="A sweep or plan result (.parquet or folder).")],
    x: Annotated[str, typer.Option("--x", help="Column on the x axis.")],
    y: Annotated[str, typer.Option("--y", help="Column on the y axis.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")],
    hue: Annotated[str | None, typer.Option("--hue", help="Column for colours.")] = None,
    col: Annotated[str | None, typer.Option("--col", help="Column for panel columns.")] = None,
    row: Annotated[str | None, typer.Option("--row", help="Column for panel rows.")] = None,
    verbose: OptVerbose = False,
) -> None:
    """Draw any sweep or plan result: y against x, coloured and faceted by columns."""
    from infersweep.sweeps.plot import plot_result

    plot_result(result, x=x, y=y, hue=hue, col=col, row=row, out=out)


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

    check_output_path(out, "--out")
    rows, report = import_otlp(spans)
    if not quiet:
        for line in report.lines_text():
            _err(line)
    write_measured_csv(rows, out)
    if not quiet:
        _err(f"wrote {len(rows)} requests to {out}")


@app.command("validate")
@handles_errors
@with_settings("deployment", "scheduler", mode="optional")
def validate_cmd(
    settings: dict,
    measured: Annotated[
        Path,
        typer.Argument(
            help="Measured trace CSV (import-otlp's format), a trace folder (measured.csv + "
            "manifest.json), or a folder of trace folders."
        ),
    ],
    manifest: OptManifest = None,
    skip_first: Annotated[
        int | None,
        typer.Option(
            "--skip-first",
            help="Leave out the first N requests (warm-up). Default: the manifest's "
            "recommended_skip_first, else 1.",
        ),
    ] = None,
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
    """Replay measured traces and report the prediction error: MAPE and mean signed error of
    TTFT, E2E and TPOT, overall and by phase; over a folder of traces, one row per trace and the
    pooled figures. Without --hardware-config, the calibrated profile matching the manifest's
    gpu and vllm_version (nearest version) is used."""
    import json

    from infersweep.errors import ConfigError
    from infersweep.fitting.joint import find_manifest, recommended_skip_first, trace_paths
    from infersweep.fitting.profiles import hardware_for_validation

    if json_out is not None:
        check_output_path(json_out, "--json")
    if plot is not None:
        check_output_path(plot, "--plot")
    many = measured.is_dir() and not (measured / "measured.csv").is_file()
    if many and manifest is not None:
        raise ConfigError(
            "--manifest is for one trace; over a folder each trace uses its own manifest.json",
            field="--manifest",
        )
    paths = trace_paths([measured]) if measured.is_dir() else [measured]
    reports, used, names, failed = [], [], [], []
    for path in paths:
        csv_path = path / "measured.csv" if path.is_dir() else path
        man = manifest
        if man is None and path.is_dir():  # a trace folder: its own manifest.json
            man = find_manifest(csv_path)
        hw_config, why = hardware_for_validation(
            settings.get("hardware_config"), man, settings.get("hardware")
        )
        skip = skip_first
        if skip is None:
            from infersweep.config.models import read_json

            skip = recommended_skip_first(read_json(man)) if man is not None else 1
        try:
            rep = _validate_one(csv_path, man, skip, {**settings, "hardware_config": hw_config})
        except ConfigError as exc:  # one bad trace of a folder: report it, go on
            if not many:
                raise
            _err(f"{path.name}: error: {exc}")
            failed.append({"name": path.name, "error": str(exc)})
            continue
        if not quiet:
            _err(f"{path.name if many else csv_path}: used {why}")
        reports.append(rep)
        names.append(path.name)
        used.append({"config": hw_config or "default", "reason": why})
    from infersweep.sweeps.io import atomic_write_text

    if not many:
        rep = reports[0]
        from infersweep.sweeps.render import render_validation

        render_validation(rep)
        if json_out is not None:
            doc = rep.to_dict()
            doc["hardware"] = used[0]
            atomic_write_text(json_out, json.dumps(doc, indent=2, allow_nan=False))
        if plot is not None:
            from infersweep.sweeps.plot import plot_validation

            plot_validation(rep, plot)
        return
    if not reports:
        raise ConfigError("no trace of the folder could be validated", file=measured)
    from infersweep.fitting.validate import pooled_summary
    from infersweep.sweeps.render import render_validation_many

    pooled = pooled_summary(reports)
    if not quiet:
        render_validation_many(names, reports, used, pooled)
    if json_out is not None:
        doc = {
            "traces": [
                {"name": nm, "hardware": u, **r.to_dict(requests=False)}
                for nm, r, u in zip(names, reports, used)
            ],
            "pooled": pooled,
            "failed": failed,
        }
        atomic_write_text(json_out, json.dumps(doc, indent=2, allow_nan=False))
    if plot is not None:
        from infersweep.sweeps.plot import plot_validation_many

        plot_validation_many(names, reports, plot)
    if failed:
        raise SystemExit(EXIT_BAD_INPUT)


def _validate_one(csv_path, manifest, skip_first, settings):
    """Simulate one measured trace with the given settings and compare it."""
    from infersweep.api import simulate
    from infersweep.fitting.deployment import resolve_deployment
    from infersweep.fitting.otlp import read_measured
    from infersweep.fitting.validate import compare

    wl = read_measured(csv_path)
    m, hw, tp_, sched, values = resolve_deployment(settings, manifest)
    res = simulate(
        model=m,
        hardware=hw,
        tp=tp_,
        bench_data=values["bench_data"],
        step_model=values["step_model"],
        workload=wl,
        scheduler=sched,
    )
    for note in res.notes:
        _warn(note)
    return compare(wl, res, skip_first=skip_first)


@app.command("calibrate")
@handles_errors
@with_settings("deployment", "scheduler", mode="optional")
def calibrate_cmd(
    settings: dict,
    measured: Annotated[
        list[Path],
        typer.Argument(
            help="Measured trace CSV (import-otlp's format); or several traces / trace "
            "folders (measured.csv + manifest.json) / folders of them for a joint fit."
        ),
    ],
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
            "bwEfficiencyFactor, perLayerOverhead; MoE models also MoeGemmEfficiency, "
            "MoeBwEfficiency.",
        ),
    ] = [],  # noqa: B006
    fit_phase: Annotated[
        str | None,
        typer.Option("--fit-phase", help="Fit on the requests of this phase only (default: all)."),
    ] = None,
    manifest: OptManifest = None,
    skip_first: Annotated[int, typer.Option("--skip-first")] = 1,
    candidates: Annotated[
        int | None,
        typer.Option(
            "--candidates",
            help="Sobol candidates of the batch search (rounded to a power of two; default "
            "512 for one trace, 32 for a joint fit).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    cv: Annotated[
        bool,
        typer.Option(
            "--cv",
            help="Joint fit: also cross-validate (fit without each trace, score it); slower.",
        ),
    ] = False,
    refine: Annotated[
        int, typer.Option("--refine", help="Joint fit: Nelder-Mead iterations after the search.")
    ] = 60,
    verbose: OptVerbose = False,
    quiet: OptQuiet = False,
) -> None:
    """Fit the hardware entry's optional fields to measured traces and write the calibrated
    hardware config. One CSV: the overhead fields, error before and after on the fitted requests
    and the rest. Several traces or folders (each with its manifest.json): one profile fitted
    jointly to all, before/after per trace and phase, optionally cross-validated."""
    if len(measured) > 1 or any(p.is_dir() for p in measured):
        check_output_path(out, "--out")
        _calibrate_joint(
            measured,
            out,
            fit,
            settings,
            32 if candidates is None else candidates,
            refine,
            seed,
            cv,
            quiet,
        )
        return
    measured = measured[0]
    candidates = 512 if candidates is None else candidates
    import json

    from infersweep.errors import ConfigError
    from infersweep.fitting.calibrate import DEFAULT_FIT, before_after, calibrate
    from infersweep.fitting.deployment import resolve_deployment
    from infersweep.fitting.otlp import read_measured
    from infersweep.sweeps.io import atomic_write_text

    if fit and not any(f.strip() for item in fit for f in item.split(",")):
        raise ConfigError(
            "names no field",
            field="--fit",
            value=" ".join(fit),
            hint="give fields such as TOverheadMicros,bwEfficiencyFactor, or leave --fit out "
            "for the default " + ",".join(DEFAULT_FIT),
        )
    fields = [f.strip() for item in fit for f in item.split(",") if f.strip()] or DEFAULT_FIT
    if candidates < 2:
        raise ConfigError("must be >= 2", field="--candidates", value=candidates)
    check_output_path(out, "--out")
    wl = read_measured(measured)
    m, hw, tp_, sched, values = resolve_deployment(settings, manifest)
    res = calibrate(
        wl,
        model=m,
        hardware=hw,
        tp=tp_,
        scheduler=sched,
        fields=fields,
        fit_phase=fit_phase,
        skip_first=skip_first,
        bench_data=values["bench_data"],
        step_model=values["step_model"],
        n_candidates=candidates,
        seed=seed,
    )
    atomic_write_text(
        out, json.dumps({res.hardware.name: res.hardware.to_entry()}, indent=2) + "\n"
    )
    if quiet:
        return
    from infersweep.sweeps.render import render_calibration

    rows = before_after(
        wl,
        model=m,
        before=hw,
        after=res.hardware,
        tp=tp_,
        scheduler=sched,
        fit_phase=fit_phase,
        skip_first=skip_first,
        bench_data=values["bench_data"],
        step_model=values["step_model"],
    )
    render_calibration(res, rows, fit_phase=fit_phase, out=out)


def _calibrate_joint(paths, out, fit, settings, candidates, refine, seed, cv, quiet) -> None:
    """``calibrate`` over several traces: one profile fitted jointly (infersweep.fitting.joint)."""
    import json

    from infersweep.config.models import load_hardware
    from infersweep.errors import ConfigError
    from infersweep.fitting.joint import (
        DEFAULT_JOINT_FIT,
        cross_validate,
        joint_calibrate,
        load_traces,
        score_hardware_phases,
    )
    from infersweep.sweeps.io import atomic_write_text

    if fit and not any(f.strip() for item in fit for f in item.split(",")):
        raise ConfigError("names no field", field="--fit", value=" ".join(fit))
    fields = [f.strip() for item in fit for f in item.split(",") if f.strip()] or list(
        DEFAULT_JOINT_FIT
    )
    if candidates < 2:
        raise ConfigError("must be >= 2", field="--candidates", value=candidates)
    bench = settings.get("bench_data")
    step_model = settings.get("step_model") or "auto"
    traces = load_traces(paths, model_config_folder=settings.get("model_config_folder"))
    gpus = sorted({t.gpu for t in traces})
    if len(gpus) > 1 and settings.get("hardware") is None:
        raise ConfigError(
            "the traces were measured on different GPUs: " + ", ".join(gpus),
            hint="fit one GPU at a time (or name it with --hardware)",
        )
    hw = load_hardware(settings.get("hardware") or gpus[0], settings.get("hardware_config"))

    def progress(n, best):
        _err(f"  {n} candidates, best loss {best:.4f}")

    res = joint_calibrate(
        traces,
        hw,
        fields=fields,
        bench_data=bench,
        step_model=step_model,
        n_candidates=candidates,
        refine_iter=refine,
        seed=seed,
        progress=None if quiet else progress,
    )
    before = score_hardware_phases(traces, hw, bench_data=bench, step_model=step_model)
    after = score_hardware_phases(traces, res.hardware, bench_data=bench, step_model=step_model)
    held = None
    if cv:
        held = cross_validate(
            traces,
            hw,
            fields=fields,
            bench_data=bench,
            step_model=step_model,
            n_candidates=max(candidates // 2, 2),
            refine_iter=max(refine // 2, 10),
            seed=seed,
        )
    meta = {
        "gpu": hw.name,
        "vllm_version": ",".join(sorted({t.vllm_version for t in traces if t.vllm_version})),
        "fields": list(res.fields),
        "traces": [t.name for t in traces],
        "loss_before": round(res.start.loss, 4),
        "loss_after": round(res.best.loss, 4),
        "after": {n: s.to_dict() for n, p, s in after if p == "all"},
        "cross_validated": (
            {n: s.to_dict() for n, s in held.items()} if held is not None else None
        ),
    }
    doc = {"_profile": meta, res.hardware.name: res.hardware.to_entry()}
    atomic_write_text(out, json.dumps(doc, indent=1) + "\n")
    if quiet:
        return
    from infersweep.sweeps.render import render_joint_calibration

    render_joint_calibration(res, hw, traces, before, after, held, out)


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
