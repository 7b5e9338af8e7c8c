"""The backtest flow: wiring only. The simulation lives in `core/backtest.py`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from core.backtest import BacktestPlan
from core.config import PipelineConfig
from core.results import BacktestSummary
from core.tables import columns_to_read
from tasks.backtest import run_replay, save_outputs
from tasks.ingest import ingest
from tasks.redaction import protect_secrets
from tasks.settings import Settings
from tasks.tracking import log_values, tracked_run
from tasks.validate import validate


@flow(name="backtest")
def backtest_flow(config: PipelineConfig, plan: BacktestPlan | None = None) -> BacktestSummary:
    """Replay history and compare what each retraining policy would have delivered.

    Args:
        config: The validated pipeline config (needs `time_column`).
        plan: Window length, policies, start, retuning and output folder (default: `BacktestPlan()`).

    Returns:
        The metric, per-policy mean metric, retrains and training seconds, and the output paths.
    """
    plan = plan or BacktestPlan()
    protect_secrets(config)
    settings = Settings.from_environment()
    tags = {
        "prefect_flow_run_id": str(flow_run.id or ""),
        "policies": ",".join(p.name for p in plan.policy_list),
        "step": plan.step,
    }
    with tracked_run(
        settings, config, f"{config.experiment_name}-backtest", f"backtest-{config.name}", tags
    ) as run_id:
        # History, checked like training data
        frame, schema = validate(ingest(config.data, columns_to_read(config), settings), config)

        # Prequential replay of every policy, then the evidence
        table, tuning = run_replay(frame, schema, config, plan)
        result = save_outputs(table, config, Path(plan.out_dir), tuning)
        log_values(
            settings,
            run_id,
            params={
                "start": plan.start or "auto",
                "step": plan.step,
                "policies": ",".join(p.name for p in plan.policy_list),
                "retune": plan.retune,
                "tune_trigger": plan.tune_trigger,
            },
            metrics={
                p: {"mean_metric": v.mean_metric, "retrains": v.retrains} for p, v in result.policies.items()
            },
            files=[Path(result.table), Path(result.plot), Path(result.summary)],
            files_dir="backtest",
        )
    return replace(result, mlflow_run_id=run_id)
