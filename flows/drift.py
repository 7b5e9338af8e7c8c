"""The drift-check flow: wiring only. The rules live in `core/drift.py`, the edges in `tasks/`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
from prefect import flow

from core.config import DataConfig, PipelineConfig
from core.drift import columns_table, streamable, summary_kinds
from core.drift_stats import ColumnSummary
from core.results import DriftSummary
from core.tables import columns_to_read, fingerprint
from core.validation import DataSchema
from tasks.drift import detect_drift, judge_drift, select_batch, stream_batch
from tasks.faults import reach
from tasks.ingest import ingest, streams
from tasks.monitoring import (
    DriftHistory,
    drift_history,
    load_reference,
    load_reference_summaries,
    log_evidence,
    mark_alert,
    measure_performance,
    require_champion,
)
from tasks.publish import emit_drift_event, plan_alert, publish_drift_summary
from tasks.recovery import recover
from tasks.redaction import protect_secrets
from tasks.registry import ChampionInfo, find_champion
from tasks.report import write_report
from tasks.report_helper import ReportWorker
from tasks.settings import Settings, run_config
from tasks.tracking import run_links
from tasks.validate import validate


@flow(name="drift-check")
def drift_check_flow(config: PipelineConfig | str, current: DataConfig | None = None) -> DriftSummary:
    """Check the newest data (or `current`) for drift against what the champion was trained on.

    Args:
        config: The validated pipeline config, or the path of its file (read on the worker, with
            `RETRAIN_DATA` applied).
        current: The batch to check; by default the source's rows after the training window.

    Returns:
        The verdict with its reasons, per-column scores, performance, report and alert status.
    """
    config = run_config(config)
    protect_secrets(config)
    settings = Settings.from_environment()
    # The report's helper process starts first: it imports Evidently while the batch is tested
    with ReportWorker.for_this_process() as report_worker:
        return check_batch(settings, config, current, report_worker)


def check_batch(
    settings: Settings, config: PipelineConfig, current: DataConfig | None, report_worker: ReportWorker
) -> DriftSummary:
    """The check itself (see `drift_check_flow`), its report drawn by `report_worker`."""
    recover(settings, config)
    # The champion and exactly what it was trained on
    champion = require_champion(settings, find_champion(settings, config.name), config.name)
    reference = load_reference(settings, champion)
    schema = champion.input_schema(config.target, config.time_column)

    # The batch, with the same checks as training (target optional); a large one streamed
    batch, data_sha256, batch_rows, streamed = read_checked_batch(
        current, config, champion, reference, schema, settings
    )
    history = drift_history(settings, config, data_sha256)
    # Alerts a crash left recorded but unsent go out first, under their recorded ids
    for unsent in history.unsent_alerts:
        send_alert(settings, config.name, *unsent)
    if history.same_batch_run_id:
        return report_skipped(settings, config, data_sha256, history)

    # Drift on the full batch (or its summaries); the Evidently report drawn beside the rest; with
    # labels, performance decay and the retrain-gain probe
    columns, target = detect_drift(reference, batch, schema, config, streamed)
    report = write_report.submit(report_worker, reference, batch, schema, config, settings.reports_dir)
    performance = measure_performance(settings, champion, batch, schema, config)
    verdict = judge_drift(columns, config, performance, history.verdicts)

    # Evidence (Evidently report, MLflow run), recorded before the alert is sent
    report_path, details = report.result()
    alert = plan_alert(config, verdict, report_path.as_uri(), history.last_alert_at)
    summary = DriftSummary(
        drift_detected=verdict.drift_detected,
        share_drifted=verdict.share_drifted,
        drifted_columns=verdict.drifted_columns,
        reasons=verdict.reasons,
        performance=performance,
        event_emitted=False,
        report_path=str(report_path),
        mlflow_run_id=None,
        event_note=alert.note,
        target_drift=columns_table([target])[0] if target else None,
        batch_rows=batch_rows,
        champion_version=champion.version,
        columns=columns_table(columns),
    )
    run_id = log_evidence(settings, config, champion, summary, columns, details, data_sha256, alert)
    sent, note = send_alert(settings, config.name, run_id, alert.event_id, alert.payload, alert.note)
    summary = replace(summary, mlflow_run_id=run_id, event_emitted=sent, event_note=note)
    publish_drift_summary(config, summary, run_links(settings, run_id, report=f"drift/{report_path.name}"))
    return summary


def report_skipped(
    settings: Settings, config: PipelineConfig, data_sha256: str, history: DriftHistory
) -> DriftSummary:
    """The verdict of the earlier check of this exact batch, published as this run's (skipped) one."""
    skipped = DriftSummary.skipped_batch(data_sha256, history.same_batch_run_id, history.same_batch_summary)
    publish_drift_summary(config, skipped, run_links(settings, skipped.mlflow_run_id))
    return skipped


def read_checked_batch(
    current: DataConfig | None,
    config: PipelineConfig,
    champion: ChampionInfo,
    reference: pd.DataFrame,
    schema: DataSchema,
    settings: Settings,
) -> tuple[pd.DataFrame, str, int, tuple[dict[str, ColumnSummary], dict[str, ColumnSummary]] | None]:
    """The batch to test (whole, or a streamed one's sample), its fingerprint, rows and summaries.

    A batch of more than `tasks.ingest.STREAM_ABOVE_ROWS` rows is streamed when every feature's
    test can run on summaries (`core.drift.streamable`).
    """
    source, given = current or config.data, current is not None
    if streamable(reference, schema, config.drift) and streams(source):
        return read_streamed(source, config, champion, reference, schema, settings, given)
    batch, data_sha256 = read_batch(source, config, champion, settings, given)
    return batch, data_sha256, len(batch), None


def read_batch(
    source: DataConfig, config: PipelineConfig, champion: ChampionInfo, settings: Settings, given: bool
) -> tuple[pd.DataFrame, str]:
    """The whole batch, selected and validated, and the fingerprint of its rows as read."""
    raw = ingest(source, columns_to_read(config), settings)
    batch_raw = select_batch(raw, config, champion.tags.get("trained_until"), given)
    batch, _ = validate(batch_raw, config, champion.schema, require_target=False)
    return batch, fingerprint(batch_raw)


def read_streamed(
    source: DataConfig,
    config: PipelineConfig,
    champion: ChampionInfo,
    reference: pd.DataFrame,
    schema: DataSchema,
    settings: Settings,
    given: bool,
) -> tuple[pd.DataFrame, str, int, tuple[dict[str, ColumnSummary], dict[str, ColumnSummary]]]:
    """A streamed batch: its bounded sample, fingerprint, rows and (reference, batch) summaries."""
    summaries = load_reference_summaries(settings, champion, reference, summary_kinds(schema, config.task))
    trained_until = champion.tags.get("trained_until")
    stream = stream_batch(
        source, config, champion.schema, summaries, reference, trained_until, given, settings
    )
    return stream.sample, stream.sha256, stream.rows, (summaries, stream.summaries)


def send_alert(
    settings: Settings,
    name: str,
    run_id: str,
    event_id: str | None,
    payload: dict[str, Any] | None,
    note: str = "",
) -> tuple[bool, str]:
    """Send a recorded alert under its id, then mark it sent on its MLflow run (none: `note`)."""
    if event_id is None or payload is None:
        return False, note
    reach(settings, "before-alert-sent")
    sent, note = emit_drift_event(name, event_id, payload)
    reach(settings, "after-alert-sent")
    mark_alert(settings, run_id, sent)
    return sent, note
