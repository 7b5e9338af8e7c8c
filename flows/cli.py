"""The `retrain` command line (also `python -m flows`)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Scheduled and drift-triggered retraining."
)
JSON_KEYS = (
    "promoted",
    "model_name",
    "model_version",
    "decision",
    "metrics",
    "baseline_metrics",
    "champion_metrics",
    "mlflow_run_id",
    "prefect_flow_run_id",
)
EXIT_BAD_INPUT, EXIT_FAILURE = 2, 1

# Options shared by the commands.
ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="YAML pipeline config.")]
DataOption = Annotated[
    str | None, typer.Option("--data", help="Local copy of the data; overrides data.source.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]
DaskAddressOption = Annotated[
    str | None,
    typer.Option("--dask-address", help="Run tuning trials on the Dask cluster at tcp://host:port."),
]
DaskWorkersOption = Annotated[
    int | None,
    typer.Option("--dask-workers", min=1, help="Run tuning trials on a local Dask cluster of N workers."),
]


@app.callback()
def _commands() -> None:
    """Scheduled and drift-triggered retraining on Prefect and MLflow."""


def use_local_defaults() -> None:
    """Without a Prefect API, keep Prefect's ephemeral database under `.retrain/` too.

    Must run before Prefect is imported: its settings are read then.
    """
    if not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        home = Path(".retrain", "prefect").resolve()
        home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(home)
    # The ephemeral API server logs harmless errors while it shuts down; keep them off the console.
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
    # Its telemetry heartbeat races the first writes to the fresh SQLite database and logs
    # "database is locked" tracebacks (docket logger, not silenced by the level above).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A fresh ephemeral database is migrated at start: on a slow machine that takes over the
    # default 20 s and the first run would fail with "Timed out ... ephemeral Prefect API".
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


class _HideBadInput(logging.Filter):
    """Drop Prefect's console records about a BadInputError: the CLI prints the message itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        from tasks.errors import BadInputError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BadInputError):
            return False
        text = record.getMessage()
        # Prefect 3.9 writes "exception DataError: ..." in its state messages, older ones "DataError(...)".
        names = ("BadInputError", "DataError(", "DataError:", "ConfigError(", "ConfigError:")
        return not any(name in text for name in names)


def quiet_bad_input_on_console() -> None:
    """Attach `_HideBadInput` to Prefect's console handlers (API logs keep the full record)."""
    import prefect.logging.handlers as handlers

    # Prefect 3 puts its console handler on the root logger; flow and task run records reach it there.
    names = (None, "prefect", "prefect.flow_runs", "prefect.task_runs")
    for logger in [logging.getLogger(n) for n in names]:
        for handler in logger.handlers:
            if isinstance(handler, handlers.PrefectConsoleHandler) and not any(
                isinstance(f, _HideBadInput) for f in handler.filters
            ):
                handler.addFilter(_HideBadInput())


def fail(message: str, code: int, debug: bool) -> None:
    """Print the error paragraph (with the traceback under --debug) and exit."""
    console = Console(stderr=True)
    if debug:
        console.print_exception()
    # The message is plain text: a column such as `temp[c]` must not be read as console markup.
    console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def run_guarded(func: Any, debug: bool) -> Any:
    """Call `func`, mapping bad input to exit 2 and any other failure to exit 1."""
    from tasks.errors import BadInputError

    try:
        return func()
    except BadInputError as exc:
        fail(exc.message, EXIT_BAD_INPUT, debug)
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as exc:  # noqa: BLE001 - every other failure is exit 1 with its reason
        fail(f"the run failed: {type(exc).__name__}: {exc}", EXIT_FAILURE, debug)


def load(config_path: Path, data: str | None) -> Any:
    """Load the config and apply `--data` / `RETRAIN_DATA`."""
    from tasks.config import DataConfig, load_config

    config = load_config(config_path)
    override = data or os.environ.get("RETRAIN_DATA")
    if override:
        # The source changes; how it is read (compact types, memory limit) stays as configured.
        source = DataConfig(source=override, **config.data.model_dump(include=READ_SETTINGS))
        config = config.model_copy(update={"data": source})
    return config


READ_SETTINGS = {"compact_dtypes", "memory_limit_mb"}


def with_dask(config: Any, address: str | None, workers: int | None) -> Any:
    """Apply `--dask-address` / `--dask-workers`: tuning trials run on that Dask cluster."""
    from tasks.config import parse_config

    if not (address or workers):
        return config
    raw = config.model_dump(mode="json")
    raw["tuning"].update(runner="dask", dask_address=address, dask_workers=workers)
    return parse_config(raw, "given with --dask-address / --dask-workers")


def prepare(config_path: Path, data: str | None, debug: bool) -> Any:
    """Local defaults, then the validated config (exit 2 on a bad one)."""
    use_local_defaults()
    return run_guarded(lambda: load(config_path, data), debug)


def run_flow(call: Any, debug: bool) -> dict[str, Any]:
    """Run a flow call; bad input is printed once, by the CLI, without Prefect's traceback."""
    if not debug:
        quiet_bad_input_on_console()
    return run_guarded(call, debug)


def print_json(result: dict[str, Any], keys: tuple[str, ...]) -> None:
    """The `--json` contract: one JSON object as the last line of stdout."""
    sys.stdout.write(json.dumps({k: result.get(k) for k in keys}, default=str) + "\n")


def print_summary(result: dict[str, Any]) -> None:
    """The human summary: leaderboard, baseline, champion, decision, where to look."""
    console = Console()
    metric = result["metric"]
    table = Table(title=f"Leaderboard (validation {metric})")
    for column in ("rank", "candidate", f"validation_{metric}", "trials", "best_params"):
        table.add_column(column)
    for row in result["leaderboard"]:
        table.add_row(
            *(str(row[c]) for c in ("rank", "candidate", f"validation_{metric}", "trials", "best_params"))
        )
    console.print(table)
    tests = Table(title="Test window")
    tests.add_column("model")
    for name in result["metrics"]:
        tests.add_column(name)
    rows = [
        (f"challenger ({result['best_candidate']}) v{result['model_version']}", result["metrics"]),
        ("baseline", result["baseline_metrics"]),
    ]
    if result["champion_metrics"]:
        rows.append((f"champion v{result['champion_version']}", result["champion_metrics"]))
    for label, values in rows:
        tests.add_row(label, *(f"{values[k]:.4f}" for k in result["metrics"]))
    console.print(tests)
    verdict = "[bold green]PROMOTED[/]" if result["promoted"] else "[bold yellow]NOT PROMOTED[/]"
    console.print(f"{verdict} {result['model_name']} v{result['model_version']}: {result['decision']}")
    from tasks.tracking import tracking_uri

    console.print(
        f"MLflow: run {result['mlflow_run_id']} in {tracking_uri()}\n"
        f"Prefect: flow run {result['prefect_flow_run_id']}\n"
        "See both in the dashboards: `retrain dashboard` (or `make dashboard`).",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def run(
    config: ConfigOption,
    data: DataOption = None,
    dask_address: DaskAddressOption = None,
    dask_workers: DaskWorkersOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Retrain: ingest, validate, tune, evaluate and maybe promote a new champion."""
    pipeline_config = prepare(config, data, debug)
    pipeline_config = run_guarded(lambda: with_dask(pipeline_config, dask_address, dask_workers), debug)
    from flows.retrain import retrain_flow

    result = run_flow(lambda: retrain_flow(pipeline_config), debug)
    if as_json:
        print_json(result, JSON_KEYS)
    else:
        print_summary(result)


DRIFT_JSON_KEYS = (
    "drift_detected",
    "share_drifted",
    "drifted_columns",
    "reasons",
    "performance",
    "event_emitted",
    "report_path",
    "mlflow_run_id",
)


def print_drift_summary(result: dict[str, Any]) -> None:
    """The human drift summary: per-column table, verdict with reasons, evidence and alert."""
    console = Console()
    if result.get("columns"):
        table = Table(title="Drift per feature (full batch)")
        for column in ("column", "kind", "method", "score", "threshold", "drifted"):
            table.add_column(column)
        for row in result["columns"]:
            table.add_row(
                *(str(row[c]) for c in ("column", "kind", "method", "score", "threshold", "drifted"))
            )
        console.print(table)
    verdict = "[bold red]DRIFT DETECTED[/]" if result["drift_detected"] else "[bold green]NO DRIFT[/]"
    console.print(verdict)
    for reason in result["reasons"]:
        console.print(f"  - {escape(reason)}", highlight=False)
    if result.get("performance"):
        perf = result["performance"]
        console.print(
            f"Champion {perf['metric']} on the batch: {perf['batch']:.4f} (test: {perf['champion_test']})"
        )
    console.print(
        f"Report: {result['report_path']}\nMLflow run: {result['mlflow_run_id']}\n"
        f"Alert: {escape(result.get('event_note', ''))}",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def drift(
    config: ConfigOption,
    current: str = typer.Option(
        None, "--current", help="Batch to check (path, URL or SQL URL); default: rows after training."
    ),
    current_query: str = typer.Option(
        None, "--current-query", help="SQL query to run when --current is a database URL."
    ),
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Check the newest data for drift against the champion's training data; alert on drift."""
    pipeline_config = prepare(config, None, debug)
    from flows.drift import drift_check_flow
    from tasks.config import DataConfig

    batch = DataConfig(source=current, query=current_query) if current else None
    result = run_flow(lambda: drift_check_flow(pipeline_config, batch), debug)
    if as_json:
        print_json(result, DRIFT_JSON_KEYS)
    else:
        print_drift_summary(result)


@app.command()
def backtest(
    config: ConfigOption,
    start: str = typer.Option(None, "--start", help="First replayed day (default: after 30% of the range)."),
    step: str = typer.Option("7d", "--step", help="Window length: 12h, 7d, 2w ..."),
    policies: str = typer.Option(
        "never,every:28d,drift", "--policies", help="never, every:<interval>, drift."
    ),
    out: Path = typer.Option(Path("backtest"), "--out", help="Folder for the table, plot and summary."),
    data: DataOption = None,
    retune: bool = typer.Option(False, "--retune", help="Tune again at every retrain (slower)."),
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Replay history: what would never, every:<interval> and drift-triggered retraining have delivered?"""
    pipeline_config = prepare(config, data, debug)
    from flows.backtest import backtest_flow
    from tasks.backtest import parse_duration, parse_policies

    run_guarded(lambda: (parse_policies(policies), parse_duration(step)), debug)  # fail fast, exit 2
    result = run_flow(lambda: backtest_flow(pipeline_config, start, step, policies, retune, str(out)), debug)
    if as_json:
        print_json(result, ("metric", "policies", "table", "plot"))
        return
    console = Console()
    console.print(Path(result["summary"]).read_text(), highlight=False)
    console.print(f"Table: {result['table']}\nPlot: {result['plot']}\nMLflow run: {result['mlflow_run_id']}")


def stop_on_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C, so the servers started here are stopped on the way out."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def pin_local_state() -> None:
    """Make local stores absolute, so flow runs started in other directories share them."""
    from tasks.ingest import cache_dir
    from tasks.monitoring import reports_dir
    from tasks.tracking import tracking_uri

    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri()
    os.environ["RETRAIN_CACHE_DIR"] = str(cache_dir().resolve())
    os.environ["RETRAIN_REPORTS_DIR"] = str(reports_dir().resolve())


@app.command()
def serve(
    config: ConfigOption,
    data: DataOption = None,
    port: int = typer.Option(
        4200, "--port", help="Port of the local Prefect server (without PREFECT_API_URL)."
    ),
    debug: DebugOption = False,
) -> None:
    """Serve the scheduled, drift-check and drift-triggered deployments until Ctrl-C.

    Without PREFECT_API_URL a local Prefect server (SQLite under .retrain/) is started first.
    """
    from contextlib import ExitStack

    # Prefect's runner polls for runs every 10 s by default; a drift alert's retrain should start
    # sooner. Set before Prefect is imported (by pin_local_state), when its settings are read.
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "5")
    pipeline_config = prepare(config, data, debug)
    pin_local_state()
    stop_on_sigterm()
    console = Console()
    with ExitStack() as stack:
        api_url = os.environ.get("PREFECT_API_URL")
        if not api_url:
            from deployments.servers import local_prefect_server

            console.print("Starting a local Prefect server (database in .retrain/prefect) ...")
            api_url = run_guarded(lambda: stack.enter_context(local_prefect_server(port)), debug)
        from prefect import serve as prefect_serve
        from prefect.settings import PREFECT_API_URL, temporary_settings

        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: api_url}))
        from deployments import build_deployments

        deployments = build_deployments(pipeline_config)
        console.print(f"Prefect dashboard: {api_url.removesuffix('/api')}", highlight=False)
        console.print(f"MLflow tracking: {os.environ['MLFLOW_TRACKING_URI']}", highlight=False)
        try:
            prefect_serve(*deployments)
        except KeyboardInterrupt:
            console.print("Stopping.")


@app.command()
def dashboard(
    prefect_port: int = typer.Option(4200, "--prefect-port"),
    mlflow_port: int = typer.Option(5000, "--mlflow-port"),
) -> None:
    """Start the Prefect UI and the MLflow UI on the configured stores, print both URLs, wait for Ctrl-C."""
    import time
    from contextlib import ExitStack

    from deployments.servers import local_mlflow_ui, local_prefect_server

    use_local_defaults()
    pin_local_state()
    stop_on_sigterm()
    console = Console()
    with ExitStack() as stack:
        api_url = os.environ.get("PREFECT_API_URL") or stack.enter_context(local_prefect_server(prefect_port))
        tracking = os.environ["MLFLOW_TRACKING_URI"]
        mlflow_url = (
            tracking
            if tracking.startswith(("http://", "https://"))
            else stack.enter_context(local_mlflow_ui(tracking, mlflow_port))
        )
        console.print(
            f"Prefect UI: {api_url.removesuffix('/api')}\nMLflow UI:  {mlflow_url}", highlight=False
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            console.print("Stopping.")


def main() -> None:
    """Console-script entry point."""
    app()
