"""The drift-check flow: wiring only. The logic lives in `tasks/drift.py` and `tasks/monitoring.py`."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from tasks.config import DataConfig, PipelineConfig
from tasks.drift import (
    columns_table,
    decide,
    detect_drift,
    select_batch,
    skipped_summary,
    write_report,
)
from tasks.ingest import columns_to_read, fingerprint, ingest
from tasks.monitoring import (
    drift_history,
    emit_drift_event,
    load_reference,
    log_evidence,
    measure_performance,
    publish_drift_summary,
    reports_dir,
    require_champion,
)
from tasks.registry import find_champion
from tasks.validate import validate


@flow(name="drift-check")
def drift_check_flow(config: PipelineConfig, current: DataConfig | None = None) -> dict[str, Any]:
    """Check the newest data (or `current`) for drift against what the champion was trained on.

    Args:
        config: The validated pipeline config.
        current: The batch to check; by default the source's rows after the training window.

    Returns:
        The verdict with its reasons, per-column scores, performance, report and alert status.
    """
    # The champion and exactly what it was trained on
    champion = require_champion(find_champion(config.name), config.name)
    reference = load_reference(champion)
    schema = champion.input_schema(config.target, config.time_column)

    # The batch, with the same checks as training (target optional)
    raw = ingest(current or config.data, columns_to_read(config))
    batch_raw = select_batch(raw, config, champion.tags.get("trained_until"), current is not None)
    batch, _ = validate(batch_raw, config, champion.schema, require_target=False)
    data_sha256 = fingerprint(batch_raw)
    history = drift_history(config, data_sha256)
    if history.same_batch_run_id:
        return skipped_summary(data_sha256, history.same_batch_run_id)

    # Drift on the full batch; performance decay when it has labels
    columns, target = detect_drift(reference, batch, schema, config)
    performance = measure_performance(champion, batch, schema, config)
    verdict = decide(columns, config, performance["decay"] if performance else None, history.verdicts)

    # Evidence: Evidently report, MLflow run, and the alert
    report_path, details = write_report(reference, batch, schema, config, reports_dir())
    alert, note = (
        emit_drift_event(config, verdict, report_path.as_uri(), history.last_alert_at)
        if verdict.drift_detected
        else ("none", "no drift, no event")
    )
    summary = {
        "drift_detected": verdict.drift_detected,
        "skipped": False,
        "share_drifted": verdict.share_drifted,
        "drifted_columns": verdict.drifted_columns,
        "reasons": verdict.reasons,
        "performance": performance,
        "target_drift": columns_table([target])[0] if target else None,
        "event_emitted": alert == "sent",
        "event_note": note,
        "report_path": str(report_path),
        "batch_rows": len(batch),
        "champion_version": champion.version,
    }
    summary["mlflow_run_id"] = log_evidence(
        config,
        champion,
        summary,
        columns,
        report_path,
        details,
        tags={
            "data_sha256": data_sha256,
            "drift_detected": str(verdict.drift_detected).lower(),
            "alert": alert,
            "prefect_flow_run_id": str(flow_run.id or ""),
        },
    )
    summary["columns"] = columns_table(columns)
    publish_drift_summary(config, summary, columns)
    return summary
