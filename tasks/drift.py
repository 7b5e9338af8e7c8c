"""Prefect tasks of the drift check: pick the batch, test it, give the verdict, draw the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.config import PipelineConfig
from core.drift import (
    ColumnDrift,
    DriftVerdict,
    detect_columns,
    drift_verdict,
    evidently_report,
    rows_after,
    target_drift,
    time_stratified_sample,
)
from core.results import BatchPerformance
from core.validation import DataSchema


@task(name="select-batch", cache_policy=NO_CACHE)
def select_batch(
    raw: pd.DataFrame, config: PipelineConfig, trained_until: str | None, given: bool
) -> pd.DataFrame:
    """The batch to check: all of a given batch, or the source's rows after the training window."""
    batch = raw if given else rows_after(raw, config.time_column, trained_until)
    get_run_logger().info("Checking a batch of %d rows", len(batch))
    return batch


@task(name="detect-drift", cache_policy=NO_CACHE)
def detect_drift(
    reference: pd.DataFrame, batch: pd.DataFrame, schema: DataSchema, config: PipelineConfig
) -> tuple[list[ColumnDrift], ColumnDrift | None]:
    """Per-feature drift on the full batch, and target drift when it has labels."""
    columns = detect_columns(reference, batch, schema, config.drift)
    return columns, target_drift(reference, batch, schema, config.task)


@task(name="decide-drift", cache_policy=NO_CACHE)
def judge_drift(
    columns: list[ColumnDrift],
    config: PipelineConfig,
    performance: BatchPerformance | None,
    history: list[bool],
) -> DriftVerdict:
    """The drift verdict as a task of the flow; see `core.drift.drift_verdict`."""
    decay, probe = (performance.decay, performance.probe) if performance else (None, None)
    verdict = drift_verdict(columns, config.drift, decay, history, probe)
    get_run_logger().info(
        "Drift %s: %s", "detected" if verdict.drift_detected else "not detected", verdict.reasons
    )
    return verdict


@task(name="write-drift-report", cache_policy=NO_CACHE)
def write_report(
    reference: pd.DataFrame, batch: pd.DataFrame, schema: DataSchema, config: PipelineConfig, out_dir: Path
) -> tuple[Path, dict[str, Any]]:
    """The Evidently HTML report on a time-stratified sample, and its JSON summary."""
    sample = time_stratified_sample(batch, config.time_column, config.drift.report_rows)
    snapshot = evidently_report(reference, sample, schema, config.drift)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S%f")
    path = (out_dir / f"drift-{config.name}-{stamp}.html").resolve()
    snapshot.save_html(str(path))
    return path, {"report_rows": len(sample), "batch_rows": len(batch), "evidently": snapshot.dict()}
