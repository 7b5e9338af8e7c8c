"""Prefect tasks of the backtest: replay the plan's windows, then write the evidence."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.backtest import BacktestPlan, plan_windows, replay, write_outputs
from core.config import PipelineConfig
from core.errors import BadInputError
from core.results import BacktestSummary
from core.validation import DataSchema


@task(name="backtest-replay", cache_policy=NO_CACHE)
def run_replay(
    frame: pd.DataFrame, schema: DataSchema, config: PipelineConfig, plan: BacktestPlan
) -> pd.DataFrame:
    """Plan the windows and replay them with a progress bar."""
    from rich.progress import Progress

    if not config.time_column:
        raise BadInputError("the config has no time_column", "A backtest replays history in time order.")
    begin, windows = plan_windows(frame[config.time_column], plan.start, plan.step_length)
    get_run_logger().info("Replaying %d windows of %s from %s", len(windows), plan.step, begin.date())
    with Progress(transient=True) as progress:
        bar = progress.add_task("backtest", total=len(windows))
        return replay(
            frame,
            schema,
            config,
            begin,
            windows,
            list(plan.policy_list),
            plan.retune,
            lambda: progress.advance(bar),
        )


@task(name="backtest-outputs", cache_policy=NO_CACHE)
def save_outputs(table: pd.DataFrame, config: PipelineConfig, out_dir: Path) -> BacktestSummary:
    """CSV table, PNG plot and markdown summary in `out_dir`; see `core.backtest.write_outputs`."""
    return write_outputs(table, config, out_dir)
