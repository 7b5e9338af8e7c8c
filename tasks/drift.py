"""Prefect tasks of the drift check: pick the batch (or stream it), test it, give the verdict."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.config import DataConfig, PipelineConfig
from core.drift import (
    ColumnDrift,
    DriftVerdict,
    borderline_note,
    detect_columns,
    detect_columns_summarised,
    drift_verdict,
    no_newer_rows,
    rows_after,
    summarised_target,
    target_drift,
)
from core.drift_stats import ColumnSummary, StreamedBatch, summarise_stream
from core.results import BatchPerformance
from core.validation import DataSchema, validate_table
from tasks.ingest import iter_source_batches
from tasks.settings import Settings

# Rows of a streamed batch kept as a uniform sample: the HTML report's rows are drawn from it, and
# the champion's performance on a labelled batch is measured on its labelled rows.
STREAM_SAMPLE_ROWS = 100_000


@task(name="select-batch", cache_policy=NO_CACHE)
def select_batch(
    raw: pd.DataFrame, config: PipelineConfig, trained_until: str | None, given: bool
) -> pd.DataFrame:
    """The batch to check: all of a given batch, or the source's rows after the training window."""
    batch = raw if given else rows_after(raw, config.time_column, trained_until)
    get_run_logger().info("Checking a batch of %d rows", len(batch))
    return batch


@task(name="stream-batch", cache_policy=NO_CACHE)
def stream_batch(
    source: DataConfig,
    config: PipelineConfig,
    expected_schema: dict[str, str],
    reference: dict[str, ColumnSummary],
    reference_frame: pd.DataFrame,
    trained_until: str | None,
    given: bool,
    settings: Settings,
) -> StreamedBatch:
    """Read a large batch in record batches, each selected and validated like a whole batch, into
    column summaries and a bounded sample (memory does not grow with the batch)."""
    now = pd.Timestamp.now(tz="UTC")

    def check(chunk: pd.DataFrame) -> pd.DataFrame:
        if not given:
            chunk = rows_after(chunk, config.time_column, trained_until, allow_empty=True)
        if chunk.empty:
            return chunk
        return validate_table(chunk, config, expected_schema, require_target=False, now=now)[0]

    columns = [*reference, *([config.time_column] if config.time_column else [])]
    chunks = iter_source_batches(source, columns, stream_types(reference, reference_frame), settings)
    streamed = summarise_stream(chunks, check, reference, STREAM_SAMPLE_ROWS, config.tuning.seed)
    if not streamed.rows:
        raise no_newer_rows(trained_until)
    get_run_logger().info("Streamed a batch of %d rows in record batches", streamed.rows)
    return streamed


def stream_types(reference: dict[str, ColumnSummary], frame: pd.DataFrame) -> dict[str, str]:
    """Column types a CSV batch is parsed with: numerics as floats, categoricals as the reference's."""
    types = {}
    for column, summary in reference.items():
        dtype = frame[column].dtype if column in frame else None
        if summary.kind == "numeric":
            types[column] = "float64"
        elif dtype is not None and pd.api.types.is_bool_dtype(dtype):
            types[column] = "bool"
        elif dtype is not None and pd.api.types.is_integer_dtype(dtype):
            types[column] = "int64"
        else:
            types[column] = "string"
    return types


@task(name="detect-drift", cache_policy=NO_CACHE)
def detect_drift(
    reference: pd.DataFrame,
    batch: pd.DataFrame,
    schema: DataSchema,
    config: PipelineConfig,
    streamed: tuple[dict[str, ColumnSummary], dict[str, ColumnSummary]] | None = None,
) -> tuple[list[ColumnDrift], ColumnDrift | None]:
    """Per-feature drift on the full batch (or the reference's and a streamed batch's summaries),
    and target drift when it has labels."""
    if streamed is not None:
        columns = detect_columns_summarised(*streamed, schema, config.drift)
        return columns, summarised_target(*streamed, schema)
    columns = detect_columns(reference, batch, schema, config.drift)
    return columns, target_drift(reference, batch, schema, config.task)


@task(name="decide-drift", cache_policy=NO_CACHE)
def judge_drift(
    columns: list[ColumnDrift],
    config: PipelineConfig,
    performance: BatchPerformance | None,
    history: list[bool],
) -> DriftVerdict:
    """The drift verdict as a task of the flow (see `core.drift.drift_verdict`), naming borderline
    columns."""
    decay, probe = (performance.decay, performance.probe) if performance else (None, None)
    verdict = drift_verdict(columns, config.drift, decay, history, probe)
    note = borderline_note(columns)
    if note:
        verdict = replace(verdict, reasons=[*verdict.reasons, note])
    get_run_logger().info(
        "Drift %s: %s", "detected" if verdict.drift_detected else "not detected", verdict.reasons
    )
    return verdict
