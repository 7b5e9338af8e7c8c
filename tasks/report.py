"""The drift check's Evidently HTML report, drawn by its helper process (`tasks.report_helper`).

When the helper cannot serve (it failed to start, died or took too long), the report is drawn in
this process instead, so a check always has its report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.config import PipelineConfig
from core.drift import evidently_report, time_stratified_sample
from core.validation import DataSchema
from tasks.report_helper import ReportWorker


@task(name="write-drift-report", cache_policy=NO_CACHE)
def write_report(
    worker: ReportWorker,
    reference: pd.DataFrame,
    batch: pd.DataFrame,
    schema: DataSchema,
    config: PipelineConfig,
    out_dir: Path,
) -> tuple[Path, dict[str, Any]]:
    """The Evidently HTML report on a time-stratified sample of the batch, and its JSON summary."""
    sample = time_stratified_sample(batch, config.time_column, config.drift.report_rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S%f")
    path = (out_dir / f"drift-{config.name}-{stamp}.html").resolve()
    details = worker.draw(reference, sample, schema, config, path)
    if details is not None:
        get_run_logger().info("Report of %d rows drawn by its helper process", len(sample))
    else:
        if worker.closed:
            raise RuntimeError("the drift check ended before its report was drawn")
        log = get_run_logger().info if worker.process is None else get_run_logger().warning
        log("Drawing the report in this process: %s", worker.failure)
        snapshot = evidently_report(reference, sample, schema, config.drift)
        snapshot.save_html(str(path))
        details = snapshot.dict()
    return path, {"report_rows": len(sample), "evidently": details}
