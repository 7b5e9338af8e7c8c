"""The Prefect edge of notifications: the config's `notify:` section as Prefect automations.

Each chosen event becomes one automation whose `SendNotification` action posts through one
`CustomWebhookNotificationBlock` per model, so Prefect's own event triggers and notification
machinery deliver them (and show them in the UI under Automations). The webhook URL lives only in
the block's secret values: the block's `url` is the template `{{webhook_url}}`, so neither the
automations nor the block's public fields hold it. Applying a config again replaces what an
earlier one created (same names, updated in place; events no longer chosen are deleted).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.config import PipelineConfig, expand_env
from core.results import artifact_key
from tasks.publish import DRIFT_EVENT, PROMOTED_EVENT, ROLLED_BACK_EVENT, SUPPRESSED_EVENT, model_resource_id

# `notify.events` names and the Prefect events each one matches.
EVENT_NAMES = {
    "drift_detected": (DRIFT_EVENT,),
    "alert_suppressed": (SUPPRESSED_EVENT,),
    "run_failed": ("prefect.flow-run.Failed", "prefect.flow-run.Crashed"),
    "promoted": (PROMOTED_EVENT,),
    "rolled_back": (ROLLED_BACK_EVENT,),
}
# Rendered by the Prefect server (Jinja) for each triggering event.
MODEL_EVENT_BODY = (
    "{{ event.event }} for model {{ event.resource['prefect.resource.name'] }} "
    "at {{ event.occurred }}: {{ event.payload | tojson }}"
)
FLOW_RUN_BODY = (
    "flow run {{ event.resource['prefect.resource.name'] }} of model {model}: {{ event.event }} "
    "at {{ event.occurred }}"
)
WEBHOOK_JSON = {"subject": "{{subject}}", "body": "{{body}}", "model": "{{name}}"}


@dataclass(frozen=True)
class NotificationsApplied:
    """What applying a config's `notify:` section changed on the Prefect server."""

    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    block: str | None = None


def automation_prefix(name: str) -> str:
    """The name prefix of model `name`'s notification automations."""
    return f"retrain-{artifact_key(name)}-notify-"


def webhook_block_name(name: str) -> str:
    """The name of model `name`'s webhook block (a `custom-webhook` block document)."""
    return f"retrain-{artifact_key(name)}-webhook"


def notification_automations(config: PipelineConfig, block_id: object) -> list[object]:
    """One automation per chosen event, each sending through the block `block_id`."""
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    assert config.notify is not None
    automations = []
    for choice in config.notify.events:
        if choice == "run_failed":
            # Prefect's own flow-run state events; the deployments tag their runs with the model name.
            match: dict[str, str] = {}
            related = {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{config.name}"}
            body = FLOW_RUN_BODY.replace("{model}", config.name)
        else:
            match, related, body = (
                {"prefect.resource.id": model_resource_id(config.name)},
                {},
                MODEL_EVENT_BODY,
            )
        trigger = EventTrigger(
            expect=set(EVENT_NAMES[choice]),
            match=match,
            match_related=related,
            posture=Posture.Reactive,
            threshold=1,
        )
        action = SendNotification(
            block_document_id=block_id, subject=f"retrain {config.name}: {choice}", body=body
        )
        automations.append(
            AutomationCore(
                name=f"{automation_prefix(config.name)}{choice}",
                description=f"Notify the webhook of model {config.name} about {choice}.",
                tags=["retrain", config.name],
                trigger=trigger,
                actions=[action],
            )
        )
    return automations


def save_webhook_block(config: PipelineConfig, environ: Mapping[str, str]) -> object:
    """Save (or overwrite) the model's webhook block with the expanded URL as a secret value."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    assert config.notify is not None
    url = expand_env(config.notify.webhook_url, environ, "notify.webhook_url")
    block = CustomWebhookNotificationBlock(
        name=config.name, url="{{webhook_url}}", json_data=WEBHOOK_JSON, secrets={"webhook_url": url}
    )
    return block.save(webhook_block_name(config.name), overwrite=True)


def apply_notifications(
    config: PipelineConfig, environ: Mapping[str, str] | None = None
) -> NotificationsApplied:
    """Make the Prefect server's notification automations of `config.name` match `config.notify`.

    Without a `notify:` section, the model's earlier automations and block are deleted.
    """
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    prefix = automation_prefix(config.name)
    wanted = {}
    block_name = None
    if config.notify is not None:
        block_id = save_webhook_block(config, os.environ if environ is None else environ)
        block_name = webhook_block_name(config.name)
        wanted = {automation.name: automation for automation in notification_automations(config, block_id)}
    applied = NotificationsApplied(block=block_name)
    with get_client(sync_client=True) as client:
        for automation in client.read_automations():
            if not automation.name.startswith(prefix):
                continue
            if automation.name in wanted and automation.name not in applied.replaced:
                client.update_automation(automation.id, wanted[automation.name])
                applied.replaced.append(automation.name)
            else:  # no longer chosen, or a duplicate
                client.delete_automation(automation.id)
                applied.deleted.append(automation.name)
        for name in sorted(set(wanted) - set(applied.replaced)):
            client.create_automation(wanted[name])
            applied.created.append(name)
    if config.notify is None:
        try:
            CustomWebhookNotificationBlock.delete(webhook_block_name(config.name))
        except (ObjectNotFound, ValueError):
            pass
    return applied
