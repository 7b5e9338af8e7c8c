"""The drift-check flow: wiring only. The rules live in `core/drift.py`, the edges in `tasks/`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prefect import flow

from core.config import DataConfig, PipelineConfig
from core.drift import columns_table
from core.results import DriftSummary
from core.tables import columns_to_read, fingerprint
from tasks.drift import detect_drift, judge_drift, select_batch, write_report
from tasks.faults import reach
from tasks.ingest import ingest
from tasks.monitoring import (
    drift_history,
    load_reference,
    log_evidence,
    mark_alert,
    measure_performance,
    require_champion,
)
from tasks.publish import emit_drift_event, plan_alert, publish_drift_summary
from tasks.recovery import recover
from tasks.redaction import protect_secrets
from tasks.registry import find_champion
from tasks.settings import Settings
from tasks.validate import validate


@flow(name="drift-check")
def drift_check_flow(config: PipelineConfig, current: DataConfig | None = None) -> DriftSummary:
    """Check the newest data (or `current`) for drift against what the champion was trained on.

    Args:
        config: The validated pipeline config.
        current: The batch to check; by default the source's rows after the training window.

    Returns:
        The verdict with its reasons, per-column scores, performance, report and alert status.
    """
    protect_secrets(config)
    settings = Settings.from_environment()
    recover(settings, config)
    # The champion and exactly what it was trained on
    champion = require_champion(settings, find_champion(settings, config.name), config.name)
    reference = load_reference(settings, champion)
    schema = champion.input_schema(config.target, config.time_column)

    # The batch, with the same checks as training (target optional)
    raw = ingest(current or config.data, columns_to_read(config), settings)
    batch_raw = select_batch(raw, config, champion.tags.get("trained_until"), current is not None)
    batch, _ = validate(batch_raw, config, champion.schema, require_target=False)
    data_sha256 = fingerprint(batch_raw)
    history = drift_history(settings, config, data_sha256)
    # Alerts a crash left recorded but unsent go out first, under their recorded ids
    for unsent in history.unsent_alerts:
        send_alert(settings, config.name, *unsent)
    if history.same_batch_run_id:
        return DriftSummary.skipped_batch(data_sha256, history.same_batch_run_id, history.same_batch_summary)

    # Drift on the full batch; with labels, performance decay and the retrain-gain probe
    columns, target = detect_drift(reference, batch, schema, config)
    performance = measure_performance(settings, champion, batch, schema, config)
    verdict = judge_drift(columns, config, performance, history.verdicts)

    # Evidence (Evidently report, MLflow run), recorded before the alert is sent
    report_path, details = write_report(reference, batch, schema, config, settings.reports_dir)
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
        batch_rows=len(batch),
        champion_version=champion.version,
        columns=columns_table(columns),
    )
    run_id = log_evidence(settings, config, champion, summary, columns, details, data_sha256, alert)
    sent, note = send_alert(settings, config.name, run_id, alert.event_id, alert.payload, alert.note)
    summary = replace(summary, mlflow_run_id=run_id, event_emitted=sent, event_note=note)
    publish_drift_summary(config, summary)
    return summary


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
