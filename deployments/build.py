"""The four deployments of one model config, built from the imported flow objects.

- `<name>-scheduled`: `retrain` on `schedule.cron`.
- `<name>-drift-check`: `drift-check` on `drift.cron`, checking the newest rows of the source.
- `<name>-on-drift`: `retrain`, started by the `retrain.drift.detected` event of this model, with the
  event's reasons as its `trigger` parameter.
- `<name>-score`: `score` (batch predictions of the champion) on `score.cron`, or unscheduled (run it
  on demand) without one; it writes to `score.out`.

Both retrain deployments have a concurrency limit of 1. The scheduled one enqueues a colliding run
(the schedule's retrain still happens, after the running one); the drift-triggered one cancels a
colliding run (`CANCEL_NEW`): a retrain already running trains on the same newest data, so a second
one would only repeat it. Drift alerts are also rate-limited at the source: the drift check sends at
most one alert per `drift.cooldown_hours` and logs every suppressed one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.schedules import Cron

from core.config import PipelineConfig
from core.errors import ConfigError
from flows.drift import drift_check_flow
from flows.retrain import retrain_flow
from flows.score import score_flow
from tasks.publish import DRIFT_EVENT, model_resource_id

TRIGGER_TEMPLATE = "drift alert: {{ event.payload.reasons | join('; ') }}"


def deployment_names(name: str) -> dict[str, str]:
    """Deployment names by role for model `name`."""
    return {
        "scheduled": f"{name}-scheduled",
        "drift_check": f"{name}-drift-check",
        "on_drift": f"{name}-on-drift",
        "score": f"{name}-score",
    }


def drift_trigger(name: str) -> DeploymentEventTrigger:
    """Run on every `retrain.drift.detected` event of model `name`, passing its reasons."""
    return DeploymentEventTrigger(
        name=f"{name}-drift-alert",
        expect={DRIFT_EVENT},
        match={"prefect.resource.id": model_resource_id(name)},
        parameters={"trigger": TRIGGER_TEMPLATE},
    )


def config_parameter(config: PipelineConfig, config_path: str | Path | None) -> str | dict[str, Any]:
    """The `config` parameter the deployments store in Prefect: the file's path, or the config itself.

    With a path (what `retrain serve` and `prefect.yaml` pass) each run reads the file on the worker,
    so editing it changes the next run. A config stored inline must not hold a literal password.
    """
    if config_path is not None:
        return str(Path(config_path).resolve())
    inline = config.model_dump(mode="json")
    if inline["data"] != config.data.model_dump() or inline["score"]["out"] != config.score.out:
        raise ConfigError(
            "data.source, data.query or score.out holds a literal password or token, and a deployment "
            "stores its parameters in Prefect, where it would be masked and the runs could not connect",
            "Put the secret in an environment variable of the worker and write ${VAR} in its place, "
            "or deploy the config by its file path.",
        )
    return inline


def build_deployments(
    config: PipelineConfig, config_path: str | Path | None = None
) -> list[RunnerDeployment]:
    """The scheduled, drift-check, drift-triggered and scoring deployments for `config`.

    With `config_path`, their runs read the config from that file (see `config_parameter`).
    """
    names = deployment_names(config.name)
    parameters: dict[str, Any] = {"config": config_parameter(config, config_path)}
    tags = ["retrain", config.name]
    return [
        retrain_flow.to_deployment(
            name=names["scheduled"],
            schedule=Cron(config.schedule.cron, timezone=config.schedule.timezone),
            parameters={**parameters, "trigger": "schedule"},
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
            ),
            tags=tags,
            entrypoint_type=EntrypointType.MODULE_PATH,
            description=f"Retrain {config.name} on {config.schedule.cron} ({config.schedule.timezone}).",
        ),
        drift_check_flow.to_deployment(
            name=names["drift_check"],
            schedule=Cron(config.drift.cron, timezone=config.schedule.timezone),
            parameters=parameters,
            tags=tags,
            entrypoint_type=EntrypointType.MODULE_PATH,
            description=f"Check the newest data of {config.name} for drift on {config.drift.cron}.",
        ),
        retrain_flow.to_deployment(
            name=names["on_drift"],
            triggers=[drift_trigger(config.name)],
            parameters=parameters,
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
            tags=tags,
            entrypoint_type=EntrypointType.MODULE_PATH,
            description=f"Retrain {config.name} when a drift alert for it arrives.",
        ),
        score_flow.to_deployment(
            name=names["score"],
            schedule=Cron(config.score.cron, timezone=config.schedule.timezone)
            if config.score.cron
            else None,
            # The run writes to the config's score.out, read with the config.
            parameters=parameters,
            tags=tags,
            entrypoint_type=EntrypointType.MODULE_PATH,
            description=f"Score new rows of {config.name} with its champion"
            + (f" on {config.score.cron}." if config.score.cron else " (on demand)."),
        ),
    ]
