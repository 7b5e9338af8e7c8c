"""Prefect tasks of the backtest: replay the plan's windows, search the trigger, write the evidence."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.backtest import (
    BacktestPlan,
    ReplayCache,
    first_spec,
    plan_windows,
    replay,
    tune_trigger,
    write_outputs,
)
from core.config import PipelineConfig
from core.errors import BadInputError
from core.results import BacktestSummary, TriggerTuning
from core.validation import DataSchema


@task(name="backtest-replay", cache_policy=NO_CACHE)
def run_replay(
    frame: pd.DataFrame, schema: DataSchema, config: PipelineConfig, plan: BacktestPlan
) -> tuple[pd.DataFrame, TriggerTuning | None]:
    """Plan the windows and replay them with a progress bar; then the trigger search, when asked."""
    from rich.progress import Progress

    if not config.time_column:
        raise BadInputError("the config has no time_column", "A backtest replays history in time order.")
    begin, windows = plan_windows(frame[config.time_column], plan.start, plan.step_length)
    if plan.tune_trigger and len(windows) < 4:
        raise BadInputError(
            f"--tune-trigger needs at least 4 windows to search on half and check on the other; "
            f"there are {len(windows)}",
            "Use a smaller --step or an earlier --start.",
        )
    get_run_logger().info("Replaying %d windows of %s from %s", len(windows), plan.step, begin.date())
    schema, spec = first_spec(frame, schema, config, begin)
    cache = ReplayCache()
    policies = list(plan.policy_list)
    with Progress(transient=True) as progress:
        bar = progress.add_task("backtest", total=len(windows))
        table = replay(
            frame,
            schema,
            config,
            begin,
            windows,
            policies,
            plan.retune,
            lambda: progress.advance(bar),
            spec=spec,
            cache=cache,
        )
    if not plan.tune_trigger:
        return table, None
    calendar = [p for p in policies if p.is_calendar]
    get_run_logger().info("Searching the trigger's settings on the first %d windows", len(windows) // 2)
    return table, tune_trigger(frame, schema, config, windows, calendar, spec, cache)


@task(name="backtest-outputs", cache_policy=NO_CACHE)
def save_outputs(
    table: pd.DataFrame, config: PipelineConfig, out_dir: Path, tuning: TriggerTuning | None = None
) -> BacktestSummary:
    """CSV table, PNG plot and markdown summary in `out_dir`; see `core.backtest.write_outputs`."""
    return write_outputs(table, config, out_dir, tuning)
