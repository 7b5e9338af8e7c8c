"""The MLflow edge of the drift check: the champion's reference, earlier checks, and the evidence."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric
from prefect import task

from core.config import PipelineConfig
from core.drift import ColumnDrift, performance_decay
from core.drift_stats import ColumnSummary, summarise
from core.errors import BadInputError
from core.metrics import score
from core.results import BatchPerformance, DriftSummary
from core.secrets import redact_url
from core.trigger import probe_batch
from core.validation import DataSchema
from tasks.options import io_edge_options
from tasks.publish import AlertPlan
from tasks.registry import ChampionInfo, load_champion_model
from tasks.settings import Settings
from tasks.tracking import (
    PROCESS_TAG,
    REFERENCE_SUMMARY,
    client,
    ensure_experiment,
    log_json,
    source_tags,
    this_process,
)


def require_champion(settings: Settings, champion: ChampionInfo | None, name: str) -> ChampionInfo:
    """The champion, or bad input telling the user to train first."""
    if champion is None:
        raise BadInputError(
            f"No champion is registered for model '{name}' (no `models:/{name}@champion` in "
            f"{redact_url(settings.tracking_uri)})",
            "Train one first with `retrain run --config <file>`, then check drift against it.",
        )
    return champion


@task(name="load-reference", **io_edge_options())
def load_reference(settings: Settings, champion: ChampionInfo) -> pd.DataFrame:
    """The training sample logged with the champion: exactly what it saw."""
    artifact = champion.tags.get("reference_artifact")
    if not artifact or not champion.run_id:
        raise BadInputError(
            f"Champion version {champion.version} has no logged reference sample",
            "Retrain with this version of the pipeline, which logs one with every model.",
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=champion.run_id,
            artifact_path=artifact,
            dst_path=tmp,
            tracking_uri=settings.tracking_uri,
        )
        return pd.read_parquet(path)


@task(name="load-reference-summaries", **io_edge_options())
def load_reference_summaries(
    settings: Settings, champion: ChampionInfo, reference: pd.DataFrame, kinds: dict[str, str]
) -> dict[str, ColumnSummary]:
    """The reference's column summaries logged with the champion (computed from its sample for
    versions trained before they were logged)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=champion.run_id,
                artifact_path=REFERENCE_SUMMARY,
                dst_path=tmp,
                tracking_uri=settings.tracking_uri,
            )
            logged = json.loads(Path(path).read_text())
        except (OSError, ValueError, mlflow.exceptions.MlflowException):
            logged = {}
    if set(kinds) - set(logged):
        return summarise(reference, kinds)
    return {c: ColumnSummary.from_json(logged[c]) for c in kinds}


@dataclass(frozen=True)
class DriftHistory:
    """What earlier, finished checks of this model found.

    Attributes:
        same_batch_run_id: The run that already checked this exact batch, if any.
        same_batch_summary: That check's JSON summary (its verdict is this check's answer).
        verdicts: Recent verdicts, newest first.
        last_alert_at: When the last alert was recorded (sent or still to send).
        unsent_alerts: Alerts recorded but not known sent (a crash came between): run id, event
            id and payload, to send again under the same id.
    """

    same_batch_run_id: str | None
    same_batch_summary: dict[str, Any] | None
    verdicts: list[bool]
    last_alert_at: datetime | None
    unsent_alerts: list[tuple[str, str, dict[str, Any]]]


FINISHED = "attributes.status = 'FINISHED'"


@task(name="drift-history", **io_edge_options())
def drift_history(settings: Settings, config: PipelineConfig, data_sha256: str) -> DriftHistory:
    """Earlier finished checks: this exact batch's, recent verdicts, the last alert and unsent ones.

    Unfinished runs (running now, or left by a killed process) count for nothing.
    """
    mlflow_client = client(settings)
    experiment_id = ensure_experiment(settings, mlflow_client, config.monitoring_experiment)

    def finished(condition: str = "", limit: int = 1) -> list[Any]:
        where = f"{FINISHED} and {condition}" if condition else FINISHED
        return mlflow_client.search_runs(
            [experiment_id], where, order_by=["attributes.start_time DESC"], max_results=limit
        )

    same = finished(f"tags.data_sha256 = '{data_sha256}'")
    recent = finished(limit=max(1, config.drift.window))
    pending = finished("tags.alert = 'pending'", limit=10)
    last_alert = max((run.info.start_time for run in finished("tags.alert = 'sent'") + pending), default=None)
    unsent = [
        (run.info.run_id, run.data.tags["alert_event_id"], json.loads(run.data.tags["alert_payload"]))
        for run in pending
    ]
    return DriftHistory(
        same[0].info.run_id if same else None,
        read_summary(settings, same[0].info.run_id) if same else None,
        [run.data.tags.get("drift_detected") == "true" for run in recent],
        datetime.fromtimestamp(last_alert / 1000, tz=timezone.utc) if last_alert else None,
        unsent,
    )


def read_summary(settings: Settings, run_id: str) -> dict[str, Any] | None:
    """The JSON summary an earlier check logged, or None when it has none."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path="drift/summary.json",
                dst_path=tmp,
                tracking_uri=settings.tracking_uri,
            )
        except (OSError, mlflow.exceptions.MlflowException):
            return None
        return json.loads(Path(path).read_text())


@task(name="mark-alert", **io_edge_options())
def mark_alert(settings: Settings, run_id: str, sent: bool) -> None:
    """Record on the check's run that its alert was sent (or had nowhere to go)."""
    client(settings).set_tag(run_id, "alert", "sent" if sent else "not-sent")


@task(name="measure-performance", **io_edge_options())
def measure_performance(
    settings: Settings,
    champion: ChampionInfo,
    batch: pd.DataFrame,
    schema: DataSchema,
    config: PipelineConfig,
) -> BatchPerformance | None:
    """The champion's metric on a labelled batch against its own test metric, and the retrain-gain
    probe (`core.trigger`) on it; None without labels."""
    if schema.target not in batch:
        return None
    labelled = batch[batch[schema.target].notna()]
    if labelled.empty:
        return None
    model = load_champion_model(settings, champion)
    metric = config.metric.name
    batch_value = score(model, labelled, schema, config.task)[metric]
    test_tag = champion.tags.get(f"test_{metric}")
    test_value = float(test_tag) if test_tag else None
    decay = performance_decay(batch_value, test_value, config.greater_is_better) if test_value else None
    return BatchPerformance(
        metric, batch_value, test_value, decay, probe_batch(model, labelled, schema, config)
    )


@task(name="log-drift-evidence", **io_edge_options())
def log_evidence(
    settings: Settings,
    config: PipelineConfig,
    champion: ChampionInfo,
    summary: DriftSummary,
    columns: list[ColumnDrift],
    details: dict[str, Any] | None,
    data_sha256: str,
    alert: AlertPlan,
) -> str:
    """One run in `<name>-monitoring`: per-column scores as metrics, HTML report and JSON summary.

    Its tags are what later checks look up: the batch's fingerprint, the verdict and the alert.
    An alert to send is recorded here first (with its event id and payload), then sent, then
    marked sent: a crash in between leaves it `pending`, and the next check sends it again.
    """
    from prefect.runtime import flow_run

    mlflow_client = client(settings)
    experiment_id = ensure_experiment(settings, mlflow_client, config.monitoring_experiment)
    tags = {
        "data_sha256": data_sha256,
        "drift_detected": str(summary.drift_detected).lower(),
        "alert": alert.status,
        **(
            {"alert_event_id": alert.event_id, "alert_payload": json.dumps(alert.payload)}
            if alert.event_id
            else {}
        ),
        "prefect_flow_run_id": str(flow_run.id or ""),
        "champion_version": champion.version,
        "model_name": config.name,
        PROCESS_TAG: this_process(),
        **source_tags(),
    }
    run = mlflow_client.create_run(experiment_id, run_name=f"drift-{config.name}", tags=tags)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    scores = {f"drift_score.{column.column}": column.score for column in columns}
    scores["share_drifted"] = summary.share_drifted or 0.0
    metrics = [Metric(key, float(value), now, 0) for key, value in scores.items()]
    # A write per 1,000 scores (MLflow's batch limit), not one database transaction per score.
    for start in range(0, len(metrics), 1000):
        mlflow_client.log_batch(run_id, metrics=metrics[start : start + 1000])
    log_json(mlflow_client, run_id, summary.to_dict(), "drift/summary.json")
    if details:
        log_json(mlflow_client, run_id, details, "drift/evidently.json")
    if summary.report_path:
        mlflow_client.log_artifact(run_id, summary.report_path, "drift")
    mlflow_client.set_terminated(run_id, "FINISHED")
    return run_id
