"""The Prefect edge: the drift event that triggers retraining, and the artifacts shown in the UI."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from core.config import PipelineConfig
from core.drift import DriftVerdict, in_cooldown
from core.results import DriftSummary, RetrainSummary, artifact_key, decision_markdown, drift_markdown
from core.secrets import redact_url
from tasks.options import io_edge_options

DRIFT_EVENT = "retrain.drift.detected"
# Events of a model's lifecycle, each for resource `retrain.model.<name>`; notifications match them.
SUPPRESSED_EVENT = "retrain.drift.suppressed"
PROMOTED_EVENT = "retrain.model.promoted"
ROLLED_BACK_EVENT = "retrain.model.rolled-back"


def model_resource_id(name: str) -> str:
    """The Prefect event resource of model `name`: drift events name it, triggers match it."""
    return f"retrain.model.{name}"


def api_target() -> str | None:
    """The Prefect API that receives events, or None when only the ephemeral one runs.

    Prefect's own setting, not the environment: `retrain serve` sets it for its local server.
    """
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


@dataclass(frozen=True)
class AlertPlan:
    """What the check does about its verdict: `pending` (record, then send), `suppressed` or `none`."""

    status: str
    note: str
    event_id: str | None = None
    payload: dict[str, Any] | None = None


@task(name="plan-drift-alert", cache_policy=NO_CACHE)
def plan_alert(
    config: PipelineConfig, verdict: DriftVerdict, report_uri: str, last_alert_at: datetime | None
) -> AlertPlan:
    """Whether the verdict raises an alert now, with the id it will be sent under (sent idempotently).

    A suppressed alert (within the cooldown) is announced as `SUPPRESSED_EVENT`, for notifications.
    """
    if not verdict.drift_detected:
        return AlertPlan("none", "no drift, no event")
    if in_cooldown(last_alert_at, config.drift.cooldown_hours, datetime.now(timezone.utc)):
        note = (
            f"alert suppressed: the last drift alert for {config.name} was sent at "
            f"{last_alert_at:%Y-%m-%d %H:%M:%S} UTC, within "
            f"drift.cooldown_hours={config.drift.cooldown_hours}"
        )
        get_run_logger().warning(note)
        emit_model_event(config.name, SUPPRESSED_EVENT, {"note": note, "reasons": verdict.reasons[:10]})
        return AlertPlan("suppressed", note)
    # Bounded, so the payload fits in the MLflow tag that records the alert before it is sent.
    payload = {
        "share_drifted": verdict.share_drifted,
        "drifted_columns": verdict.drifted_columns[:50],
        "reasons": [reason[:300] for reason in verdict.reasons[:10]],
        "report": report_uri,
    }
    return AlertPlan("pending", "alert recorded, not sent yet", str(uuid.uuid4()), payload)


@task(name="emit-drift-event", **io_edge_options())
def emit_drift_event(name: str, event_id: str, payload: dict[str, Any]) -> tuple[bool, str]:
    """Emit `retrain.drift.detected` for `retrain.model.<name>` under the alert's recorded id.

    Sending the same id again (after a crash, before the alert was marked sent) is harmless:
    Prefect stores and acts on an event id once.

    Returns:
        Whether an event was sent, and a sentence saying where; `emit_event` returns None when
        Prefect has nowhere to send it.
    """
    from prefect.events import emit_event

    event = emit_event(
        event=DRIFT_EVENT,
        resource={"prefect.resource.id": model_resource_id(name), "prefect.resource.name": name},
        payload=payload,
        id=uuid.UUID(event_id),
    )
    target = api_target()
    if event is None:
        note = "no event sent: Prefect has no API to send it to (set PREFECT_API_URL)"
    elif target is None:
        note = (
            "event sent to Prefect's ephemeral API, which stops with this process: no deployment will see it"
        )
    else:
        note = f"event {event.id} sent to {redact_url(target)}"
    get_run_logger().info(note)
    return event is not None, note


@task(name="emit-model-event", **io_edge_options())
def emit_model_event(name: str, event: str, payload: dict[str, Any]) -> bool:
    """Emit a lifecycle event (`PROMOTED_EVENT`, `ROLLED_BACK_EVENT` ...) for `retrain.model.<name>`.

    Returns:
        Whether Prefect had an API to send it to.
    """
    from prefect.events import emit_event

    sent = emit_event(
        event=event,
        resource={"prefect.resource.id": model_resource_id(name), "prefect.resource.name": name},
        payload=payload,
    )
    get_run_logger().info("event %s %s", event, "sent" if sent is not None else "not sent: no Prefect API")
    return sent is not None


def publish_links(key: str, links: dict[str, str]) -> None:
    """The first link (the MLflow run) as a link artifact: one click from the flow run to MLflow."""
    for text, link in list(links.items())[:1]:
        create_link_artifact(link, link_text=text, key=f"{key}-mlflow-run", description=text)


@task(name="publish-drift-summary", cache_policy=NO_CACHE)
def publish_drift_summary(config: PipelineConfig, summary: DriftSummary, links: dict[str, str]) -> None:
    """Per-column table and verdict as Prefect artifacts, linking the report and the MLflow run.

    A skipped check (this exact batch was checked before) says so in the run's log and artifact.
    """
    key = artifact_key(config.name)
    if summary.skipped:
        get_run_logger().info(summary.reasons[0])
    else:
        create_table_artifact(summary.columns, key=f"{key}-drift-columns", description="Per-column drift")
    create_markdown_artifact(
        drift_markdown(config.name, summary, links), key=f"{key}-drift", description="Drift verdict"
    )
    publish_links(key, links)


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(summary: RetrainSummary, links: dict[str, str]) -> None:
    """Show the leaderboard and the decision as Prefect artifacts of the flow run, with MLflow links.

    A promotion is also announced as `PROMOTED_EVENT` (what `promoted` notifications match).
    """
    if summary.promoted:
        promoted = {"version": summary.model_version, "previous_version": summary.champion_version}
        metric = {summary.metric: summary.metrics[summary.metric]}
        emit_model_event(
            summary.model_name, PROMOTED_EVENT, {**promoted, **metric, "reason": summary.decision}
        )
    key = artifact_key(summary.model_name)
    board: list[dict[str, Any]] = summary.leaderboard
    create_table_artifact(board, key=f"{key}-leaderboard", description="Validation leaderboard")
    create_markdown_artifact(
        decision_markdown(summary, links), key=f"{key}-decision", description="Promotion decision"
    )
    publish_links(key, links)
