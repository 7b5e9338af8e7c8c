"""The backtest flow: wiring only. The logic lives in `tasks/backtest.py`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from tasks.backtest import run_replay, write_outputs
from tasks.config import PipelineConfig
from tasks.ingest import columns_to_read, ingest
from tasks.tracking import fail_run_on_error, finish_run, log_values, start_run
from tasks.validate import validate


@flow(name="backtest")
def backtest_flow(
    config: PipelineConfig,
    start: str | None = None,
    step: str = "7d",
    policies: str = "never,every:28d,drift",
    retune: bool = False,
    out_dir: str = "backtest",
) -> dict[str, Any]:
    """Replay history and compare what each retraining policy would have delivered.

    Args:
        config: The validated pipeline config (needs `time_column`).
        start: First replayed day (default: after the first 30% of the time range).
        step: Window length, such as `7d`.
        policies: Comma-separated `never`, `every:<interval>`, `drift`.
        retune: Tune again at every retrain instead of refitting the first tuned configuration.
        out_dir: Where the CSV table, PNG plot and markdown summary go.

    Returns:
        The metric, per-policy mean metric, retrains and training seconds, and the output paths.
    """
    run_id = start_run(
        config,
        f"{config.experiment_name}-backtest",
        run_name=f"backtest-{config.name}",
        tags={"prefect_flow_run_id": str(flow_run.id or ""), "policies": policies, "step": step},
    )
    with fail_run_on_error(run_id):
        # History, checked like training data
        frame, schema = validate(ingest(config.data, columns_to_read(config)), config)

        # Prequential replay of every policy, then the evidence
        table = run_replay(frame, schema, config, start, step, policies, retune)
        result = write_outputs(table, config, Path(out_dir))
        log_values(
            run_id,
            params={"start": start or "auto", "step": step, "policies": policies, "retune": retune},
            metrics={
                p: {"mean_metric": v["mean_metric"], "retrains": v["retrains"]}
                for p, v in result["policies"].items()
            },
            files=[Path(result["table"]), Path(result["plot"]), Path(result["summary"])],
            files_dir="backtest",
        )
    finish_run(run_id)
    return {**result, "mlflow_run_id": run_id}
