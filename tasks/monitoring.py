"""MLflow and Prefect edges of the drift check: reference, history, evidence and the alert."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.config import PipelineConfig
from tasks.drift import ColumnDrift, DriftVerdict, columns_table, performance_decay
from tasks.errors import BadInputError, io_edge_options
from tasks.evaluate import score
from tasks.registry import ChampionInfo
from tasks.report import artifact_key
from tasks.tracking import client, ensure_experiment, log_json, tracking_uri
from tasks.validate import DataSchema

DRIFT_EVENT = "retrain.drift.detected"


def require_champion(champion: ChampionInfo | None, name: str) -> ChampionInfo:
    """The champion, or bad input telling the user to train first."""
    if champion is None:
        raise BadInputError(
            f"No champion is registered for model '{name}' (no `models:/{name}@champion` in "
            f"{tracking_uri()})",
            "Train one first with `retrain run --config <file>`, then check drift against it.",
        )
    return champion


@task(name="load-reference", **io_edge_options())
def load_reference(champion: ChampionInfo) -> pd.DataFrame:
    """The training sample logged with the champion: exactly what it saw."""
    artifact = champion.tags.get("reference_artifact")
    if not artifact or not champion.run_id:
        raise BadInputError(
            f"Champion version {champion.version} has no logged reference sample",
            "Retrain with this version of the pipeline, which logs one with every model.",
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=champion.run_id, artifact_path=artifact, dst_path=tmp, tracking_uri=tracking_uri()
        )
        return pd.read_parquet(path)


@dataclass(frozen=True)
class DriftHistory:
    """What earlier checks of this model found."""

    same_batch_run_id: str | None
    verdicts: list[bool]
    last_alert_at: datetime | None


@task(name="drift-history", **io_edge_options())
def drift_history(config: PipelineConfig, data_sha256: str) -> DriftHistory:
    """The earlier check of this exact batch, recent verdicts (newest first) and the last alert."""
    mlflow_client = client()
    experiment_id = ensure_experiment(mlflow_client, config.monitoring_experiment)
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
    champion: ChampionInfo, batch: pd.DataFrame, schema: DataSchema, config: PipelineConfig
) -> dict[str, float] | None:
    """The champion's metric on a labelled batch against its own test metric (None without labels)."""
    if schema.target not in batch:
        return None
    labelled = batch[batch[schema.target].notna()]
    if labelled.empty:
        return None
    mlflow.set_tracking_uri(tracking_uri())
    model = mlflow.sklearn.load_model(champion.uri)
    metric = config.metric.name
    batch_value = score(model, labelled, schema, config.task)[metric]
    test_tag = champion.tags.get(f"test_{metric}")
    test_value = float(test_tag) if test_tag else None
    decay = performance_decay(batch_value, test_value, config.greater_is_better) if test_value else None
    return {"metric": metric, "batch": batch_value, "champion_test": test_value, "decay": decay}


@task(name="log-drift-evidence", **io_edge_options())
def log_evidence(
    config: PipelineConfig,
    champion: ChampionInfo,
    summary: dict[str, Any],
    columns: list[ColumnDrift],
    report_path: Path | None,
    details: dict[str, Any] | None,
    tags: dict[str, str],
) -> str:
    """One run in `<name>-monitoring`: per-column scores as metrics, HTML report and JSON summary."""
    mlflow_client = client()
    experiment_id = ensure_experiment(mlflow_client, config.monitoring_experiment)
    run = mlflow_client.create_run(
        experiment_id,
        run_name=f"drift-{config.name}",
        tags={**tags, "champion_version": champion.version, "model_name": config.name},
    )
    run_id = run.info.run_id
    for column in columns:
        mlflow_client.log_metric(run_id, f"drift_score.{column.column}", column.score)
    mlflow_client.log_metric(run_id, "share_drifted", summary.get("share_drifted") or 0.0)
    log_json(mlflow_client, run_id, {**summary, "columns": columns_table(columns)}, "drift/summary.json")
    if details:
        log_json(mlflow_client, run_id, details, "drift/evidently.json")
    if report_path:
        mlflow_client.log_artifact(run_id, str(report_path), "drift")
    mlflow_client.set_terminated(run_id, "FINISHED")
    return run_id


def api_target() -> str | None:
    """The Prefect API that receives events, or None when only the ephemeral one runs."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def in_cooldown(last_alert_at: datetime | None, cooldown_hours: float, now: datetime) -> bool:
    """Whether an alert sent at `last_alert_at` still silences new ones."""
    return last_alert_at is not None and now - last_alert_at < timedelta(hours=cooldown_hours)


@task(name="emit-drift-event", cache_policy=NO_CACHE)
def emit_drift_event(
    config: PipelineConfig, verdict: DriftVerdict, report_uri: str, last_alert_at: datetime | None
) -> tuple[str, str]:
    """Emit `retrain.drift.detected` for `retrain.model.<name>`, unless an alert is cooling down.

    Returns:
        The alert status (`sent`, `suppressed` or `not-sent`) and a sentence saying what happened;
        `emit_event` returns None when Prefect has nowhere to send it.
    """
    from prefect.events import emit_event

    logger = get_run_logger()
    now = datetime.now(timezone.utc)
    if in_cooldown(last_alert_at, config.drift.cooldown_hours, now):
        note = (
            f"alert suppressed: the last drift alert for {config.name} was sent at "
            f"{last_alert_at:%Y-%m-%d %H:%M:%S} UTC, within "
            f"drift.cooldown_hours={config.drift.cooldown_hours}"
        )
        logger.warning(note)
        return "suppressed", note
    event = emit_event(
        event=DRIFT_EVENT,
        resource={
            "prefect.resource.id": f"retrain.model.{config.name}",
            "prefect.resource.name": config.name,
        },
        payload={
            "share_drifted": verdict.share_drifted,
            "drifted_columns": verdict.drifted_columns,
            "reasons": verdict.reasons,
            "report": report_uri,
        },
    )
    target = api_target()
    if event is None:
        note = "no event sent: Prefect has no API to send it to (set PREFECT_API_URL)"
    elif target is None:
        note = (
            "event sent to Prefect's ephemeral API, which stops with this process: no deployment will see it"
        )
    else:
        note = f"event {event.id} sent to {target}"
    logger.info(note)
    return ("sent" if event is not None else "not-sent"), note


@task(name="publish-drift-summary", cache_policy=NO_CACHE)
def publish_drift_summary(
    config: PipelineConfig, summary: dict[str, Any], columns: list[ColumnDrift]
) -> None:
    """Per-column table and verdict as Prefect artifacts, linking the report and the MLflow run."""
    key = artifact_key(config.name)
    create_table_artifact(columns_table(columns), key=f"{key}-drift-columns", description="Per-column drift")
    verdict = "DRIFT DETECTED" if summary["drift_detected"] else "no drift"
    lines = [
        f"# {config.name}: {verdict}",
        "",
        *[f"- {reason}" for reason in summary["reasons"]],
        "",
        f"Report: `{summary['report_path']}` (also in MLflow run `{summary['mlflow_run_id']}`, "
        "under `drift/`).",
        f"Alert: {summary['event_note']}",
    ]
    create_markdown_artifact("\n".join(lines), key=f"{key}-drift", description="Drift verdict")


def reports_dir() -> Path:
    """Where HTML drift reports are written: `$RETRAIN_REPORTS_DIR` or `.retrain/reports`."""
    return Path(os.environ.get("RETRAIN_REPORTS_DIR", Path(".retrain") / "reports"))
