"""The rollback flow: wiring only. The alias move and its records live in `tasks/registry.py`."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from core.config import DataConfig, PipelineConfig
from core.results import RollbackSummary
from core.tables import columns_to_read
from tasks.ingest import ingest
from tasks.publish import ROLLED_BACK_EVENT, emit_model_event
from tasks.recovery import recover
from tasks.redaction import protect_secrets
from tasks.registry import roll_back, rollback_target
from tasks.settings import Settings
from tasks.validate import check_fits_version


@flow(name="rollback")
def rollback_flow(
    config: PipelineConfig, reason: str, to: str | None = None, data: DataConfig | None = None
) -> RollbackSummary:
    """Make `previous-champion` (or version `to`) the champion again, when today's data fits it.

    Args:
        config: The validated pipeline config.
        reason: Why, recorded on the version and in the alias history.
        to: The version to bring back (default: `previous-champion`).
        data: The current data checked against the version's schema (default: the config's source).

    Returns:
        The champion now, the version it replaced, and whether the lifecycle event was sent.
    """
    protect_secrets(config)
    settings = Settings.from_environment()
    recover(settings, config)
    champion, target = rollback_target(settings, config.name, to)

    # Today's data must fit the version that comes back
    raw = ingest(data or config.data, columns_to_read(config), settings)
    check_fits_version(raw, config, target.version, target.schema)

    # The move, under the promotion lease, then the lifecycle event
    replaced = roll_back(settings, config.name, target.version, champion.version, reason)
    payload = {"version": target.version, "replaced": replaced, "reason": reason[:1000]}
    sent = emit_model_event(config.name, ROLLED_BACK_EVENT, payload)
    return RollbackSummary(
        model_name=config.name,
        champion_version=target.version,
        rolled_back_from=replaced,
        reason=reason,
        event_emitted=sent,
        prefect_flow_run_id=str(flow_run.id) if flow_run.id else None,
    )
