"""The `retrain` commands (also `python -m cli`): parse options, run a flow, render its result.

Bad input (config, data, arguments) exits 2 with one paragraph; any other failure exits 1.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from cli.process import (
    pin_local_state,
    prefect_api_note,
    quiet_bad_input_on_console,
    stop_on_sigterm,
    use_local_defaults,
    wait_for_command_api,
)
from cli.render import (
    fail,
    print_drift_summary,
    print_json,
    print_models,
    print_notifications,
    print_rollback,
    print_score_summary,
    print_summary,
)
from core.backtest import BacktestPlan
from core.config import (
    LOCAL_DATA_VARIABLE,
    READ_SETTINGS,
    DataConfig,
    PipelineConfig,
    load_run_config,
    parse_config,
)
from core.errors import BadInputError
from core.secrets import redact_url
from tasks.redaction import protect_secrets
from tasks.settings import Settings

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Scheduled and drift-triggered retraining."
)
EXIT_BAD_INPUT, EXIT_FAILURE = 2, 1
BACKTEST_DEFAULTS = BacktestPlan()
Result = TypeVar("Result")

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


def run_guarded(func: Callable[[], Result], debug: bool) -> Result:
    """Call `func`, mapping bad input to exit 2 and any other failure to exit 1."""
    try:
        return func()
    except BadInputError as exc:
        fail(exc.message, EXIT_BAD_INPUT, debug)
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as exc:  # noqa: BLE001 - every other failure is exit 1 with its reason
        fail(f"the run failed: {type(exc).__name__}: {exc}", EXIT_FAILURE, debug)
    raise AssertionError("unreachable")  # fail() always exits


def with_dask(config: PipelineConfig, address: str | None, workers: int | None) -> PipelineConfig:
    """Apply `--dask-address` / `--dask-workers`: tuning trials run on that Dask cluster."""
    if not (address or workers):
        return config
    raw = config.model_dump()
    raw["tuning"].update(runner="dask", dask_address=address, dask_workers=workers)
    return parse_config(raw, "given with --dask-address / --dask-workers")


def prepare(config_path: Path, data: str | None, debug: bool) -> PipelineConfig:
    """Local defaults, then the validated config (exit 2 on a bad one)."""
    use_local_defaults()
    config = run_guarded(lambda: load_run_config(config_path, os.environ, data), debug)
    protect_secrets(config)
    return config


def show(result: Result, as_json: bool, render: Callable[[Result], None]) -> None:
    """The `--json` line of `result`, or its human rendering."""
    if as_json:
        print_json(result)
    else:
        render(result)


def import_model_stores() -> None:
    """Import what a flow's first MLflow call and first model load import (MLflow's SQL stores,
    skops): done while the command's Prefect API starts, they cost the command nothing."""
    from tasks.registry import skops_io
    from tasks.tracking import import_tracking_store

    import_tracking_store(Settings.from_environment())
    skops_io()


def run_flow(call: Callable[[], Result], debug: bool) -> Result:
    """Run a flow call; bad input is printed once, by the command, without Prefect's traceback.

    The command's flow run sends no Prefect heartbeats: their thread sleeps in one-second steps
    and the run's end waits for it (up to a second of every command), and a command that dies is
    found by this project's own recovery (its MLflow runs carry its process) and watchdog.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if not debug:
        quiet_bad_input_on_console()
    wait_for_command_api(while_it_starts=import_model_stores)
    if note := prefect_api_note():
        typer.echo(note, err=True)
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return run_guarded(call, debug)


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
    show(result, as_json, lambda summary: print_summary(summary, Settings.from_environment().tracking_uri))


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

    batch = DataConfig(source=current, query=current_query) if current else None
    result = run_flow(lambda: drift_check_flow(pipeline_config, batch), debug)
    show(result, as_json, print_drift_summary)


@app.command()
def predict(
    config: ConfigOption,
    out: str = typer.Option(
        None, "--out", help="Where to write: .csv or .parquet path, or SQLAlchemy URL (default: score.out)."
    ),
    data: str = typer.Option(
        None, "--data", help="Rows to score: path, URL or SQL URL (default: data.source / RETRAIN_DATA)."
    ),
    query: str = typer.Option(None, "--query", help="SQL query to run when --data is a database URL."),
    out_table: str = typer.Option(
        None, "--out-table", help="Table to write when --out is a database URL (default: score.out_table)."
    ),
    version: int = typer.Option(None, "--version", min=1, help="Score with this version, not @champion."),
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Score rows with the champion (or --version N) and write predictions with the row keys."""
    pipeline_config = prepare(config, None, debug)
    from flows.score import score_flow

    read = pipeline_config.data.model_dump(include=READ_SETTINGS)
    batch = DataConfig(source=data, query=query, **read) if data else None
    chosen = str(version) if version else None
    result = run_flow(lambda: score_flow(pipeline_config, out, batch, chosen, out_table), debug)
    show(result, as_json, print_score_summary)


@app.command()
def models(config: ConfigOption, as_json: JsonOption = False, debug: DebugOption = False) -> None:
    """List the model's versions with aliases, test metric, decision, trigger, and the alias history."""
    pipeline_config = prepare(config, None, debug)
    from tasks.registry import list_versions

    settings = Settings.from_environment()
    listing = run_guarded(
        lambda: list_versions(settings, pipeline_config.name, pipeline_config.metric.name), debug
    )
    show(listing, as_json, print_models)


@app.command()
def rollback(
    config: ConfigOption,
    reason: str = typer.Option(..., "--reason", help="Why; recorded on the version and in the history."),
    to: int = typer.Option(None, "--to", min=1, help="Version to bring back (default: previous-champion)."),
    data: DataOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Move champion back to previous-champion (or --to N) when the current data fits that version."""
    pipeline_config = prepare(config, data, debug)
    from flows.rollback import rollback_flow

    result = run_flow(lambda: rollback_flow(pipeline_config, reason, str(to) if to else None), debug)
    show(result, as_json, print_rollback)


@app.command()
def backtest(
    config: ConfigOption,
    start: str = typer.Option(None, "--start", help="First replayed day (default: after 30% of the range)."),
    step: str = typer.Option(BACKTEST_DEFAULTS.step, "--step", help="Window length: 12h, 7d, 2w ..."),
    policies: str = typer.Option(
        BACKTEST_DEFAULTS.policies,
        "--policies",
        help="never, every:<interval>, drift (default: never, every step, 2x, 4x, 8x the step, drift).",
    ),
    out: Path = typer.Option(
        Path(BACKTEST_DEFAULTS.out_dir), "--out", help="Folder for the table, plot and summary."
    ),
    data: DataOption = None,
    retune: bool = typer.Option(False, "--retune", help="Tune again at every retrain (slower)."),
    tune_trigger: bool = typer.Option(
        False,
        "--tune-trigger",
        help="Search the drift settings on the first half of the windows, check them on the second.",
    ),
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Replay history: what would never, every:<interval> and drift-triggered retraining have delivered?"""
    pipeline_config = prepare(config, data, debug)
    plan = run_guarded(lambda: BacktestPlan(step, policies, start, retune, str(out), tune_trigger), debug)
    from flows.backtest import backtest_flow

    result = run_flow(lambda: backtest_flow(pipeline_config, plan), debug)
    if as_json:
        print_json(result)
        return
    console = Console()
    console.print(Path(result.summary).read_text(), highlight=False)
    console.print(f"Table: {result.table}\nPlot: {result.plot}\nMLflow run: {result.mlflow_run_id}")


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
    # sooner. Set before Prefect is imported, when its settings are read.
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "5")
    if data:
        # The deployments pass the config's path; each run reads it with this process's RETRAIN_DATA.
        os.environ[LOCAL_DATA_VARIABLE] = data
    pipeline_config = prepare(config, None, debug)
    settings = Settings.from_environment()
    pin_local_state(settings)
    stop_on_sigterm()
    console = Console()
    with ExitStack() as stack:
        api_url = settings.prefect_api_url
        if not api_url:
            from cli.servers import local_prefect_server

            console.print("Starting a local Prefect server (database in .retrain/prefect) ...")
            api_url = run_guarded(
                lambda: stack.enter_context(local_prefect_server(settings, port, owner="retrain serve")),
                debug,
            )
        from prefect import serve as prefect_serve
        from prefect.settings import PREFECT_API_URL, temporary_settings

        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: api_url}))
        from deployments import build_deployments
        from tasks.notify import apply_notifications

        deployments = build_deployments(pipeline_config, config)
        print_notifications(console, run_guarded(lambda: apply_notifications(pipeline_config), debug))
        console.print(f"Prefect dashboard: {redact_url(api_url.removesuffix('/api'))}", highlight=False)
        console.print(f"MLflow tracking: {redact_url(settings.tracking_uri)}", highlight=False)
        try:
            prefect_serve(*deployments)
        except KeyboardInterrupt:
            console.print("Stopping.")


@app.command()
def notifications(config: ConfigOption, debug: DebugOption = False) -> None:
    """Create or replace the config's `notify:` automations on the Prefect server (`prefect deploy` runs it).

    Uses Prefect's own settings (PREFECT_API_URL or the active profile): it needs a Prefect server.
    """
    pipeline_config = run_guarded(lambda: load_run_config(config, os.environ), debug)
    protect_secrets(pipeline_config)
    from tasks.notify import apply_notifications
    from tasks.publish import api_target

    if api_target() is None:
        fail(
            "retrain notifications needs a Prefect server, and Prefect's PREFECT_API_URL is not set: "
            "automations on Prefect's ephemeral API would vanish with this command. Set PREFECT_API_URL "
            "(or `prefect config set PREFECT_API_URL=...`) to your server.",
            EXIT_BAD_INPUT,
            debug,
        )
    print_notifications(Console(), run_guarded(lambda: apply_notifications(pipeline_config), debug))


@app.command()
def dashboard(
    prefect_port: int = typer.Option(4200, "--prefect-port"),
    mlflow_port: int = typer.Option(5000, "--mlflow-port"),
) -> None:
    """Start the Prefect UI and the MLflow UI on the configured stores, print both URLs, wait for Ctrl-C."""
    import time
    from contextlib import ExitStack

    from cli.servers import local_mlflow_ui, local_prefect_server

    settings = use_local_defaults()
    pin_local_state(settings)
    stop_on_sigterm()
    console = Console()
    with ExitStack() as stack:
        api_url = settings.prefect_api_url or stack.enter_context(
            local_prefect_server(settings, prefect_port, owner="retrain dashboard")
        )
        mlflow_url = (
            settings.tracking_uri
            if not settings.tracking_is_local
            else stack.enter_context(local_mlflow_ui(settings, mlflow_port))
        )
        console.print(
            f"Prefect UI: {redact_url(api_url.removesuffix('/api'))}\nMLflow UI:  {redact_url(mlflow_url)}",
            highlight=False,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            console.print("Stopping.")


def main() -> None:
    """Console-script entry point."""
    app()
