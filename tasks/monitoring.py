"""The MLflow edge of the drift check: the champion's reference, earlier checks, and the evidence."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import mlflow
import pandas as pd
from prefect import task

from core.config import PipelineConfig
from core.drift import ColumnDrift, performance_decay
from core.errors import BadInputError
from core.metrics import score
from core.results import BatchPerformance, DriftSummary
from core.secrets import redact_url
from core.validation import DataSchema
from tasks.options import io_edge_options
from tasks.registry import ChampionInfo, load_champion_model
from tasks.settings import Settings
from tasks.tracking import client, ensure_experiment, log_json


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


@dataclass(frozen=True)
class DriftHistory:
    """What earlier checks of this model found."""

    same_batch_run_id: str | None
    verdicts: list[bool]
    last_alert_at: datetime | None


@task(name="drift-history", **io_edge_options())
def drift_history(settings: Settings, config: PipelineConfig, data_sha256: str) -> DriftHistory:
    """The earlier check of this exact batch, recent verdicts (newest first) and the last alert."""
    mlflow_client = client(settings)
    experiment_id = ensure_experiment(settings, mlflow_client, config.monitoring_experiment)
    same = mlflow_client.search_runs(
        [experiment_id], filter_string=f"tags.data_sha256 = '{data_sha256}'", max_results=1
    )
    recent = mlflow_client.search_runs(
        [experiment_id], order_by=["attributes.start_time DESC"], max_results=max(1, config.drift.window)
    )
    alerts = mlflow_client.search_runs(
        [experiment_id],
        filter_string="tags.alert = 'sent'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    last_alert = datetime.fromtimestamp(alerts[0].info.start_time / 1000, tz=timezone.utc) if alerts else None
    return DriftHistory(
        same[0].info.run_id if same else None,
        [run.data.tags.get("drift_detected") == "true" for run in recent],
        last_alert,
    )


@task(name="measure-performance", **io_edge_options())
def measure_performance(
    settings: Settings,
    champion: ChampionInfo,
    batch: pd.DataFrame,
    schema: DataSchema,
    config: PipelineConfig,
) -> BatchPerformance | None:
    """The champion's metric on a labelled batch against its own test metric (None without labels)."""
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
    return BatchPerformance(metric, batch_value, test_value, decay)


@task(name="log-drift-evidence", **io_edge_options())
def log_evidence(
    settings: Settings,
    config: PipelineConfig,
    champion: ChampionInfo,
    summary: DriftSummary,
    columns: list[ColumnDrift],
    details: dict[str, Any] | None,
    data_sha256: str,
    alert: str,
) -> str:
    """One run in `<name>-monitoring`: per-column scores as metrics, HTML report and JSON summary.

    Its tags are what later checks look up: the batch's fingerprint, the verdict and the alert.
    """
    from prefect.runtime import flow_run

    mlflow_client = client(settings)
    experiment_id = ensure_experiment(settings, mlflow_client, config.monitoring_experiment)
    tags = {
        "data_sha256": data_sha256,
        "drift_detected": str(summary.drift_detected).lower(),
        "alert": alert,
        "prefect_flow_run_id": str(flow_run.id or ""),
        "champion_version": champion.version,
        "model_name": config.name,
    }
    run = mlflow_client.create_run(experiment_id, run_name=f"drift-{config.name}", tags=tags)
    run_id = run.info.run_id
    for column in columns:
        mlflow_client.log_metric(run_id, f"drift_score.{column.column}", column.score)
    mlflow_client.log_metric(run_id, "share_drifted", summary.share_drifted or 0.0)
    log_json(mlflow_client, run_id, summary.to_dict(), "drift/summary.json")
    if details:
        log_json(mlflow_client, run_id, details, "drift/evidently.json")
    if summary.report_path:
        mlflow_client.log_artifact(run_id, summary.report_path, "drift")
    mlflow_client.set_terminated(run_id, "FINISHED")
    return run_id
