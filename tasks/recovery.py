"""Crash recovery at the start of every run: the MLflow records a killed run left behind made true.

- Runs still RUNNING whose process on this host is gone are marked KILLED.
- A promotion a crash interrupted is completed or undone (`tasks.registry.repair_promotion`).
- Versions whose run died before deciding are tagged `decision=interrupted`.
"""

from __future__ import annotations

import os
import socket

from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from prefect import get_run_logger, task

from core.config import PipelineConfig
from tasks.locks import promotion_lease
from tasks.options import io_edge_options
from tasks.registry import PENDING_TAG, repair_promotion
from tasks.settings import Settings
from tasks.tracking import PROCESS_TAG, client

INTERRUPTED = "interrupted"


def process_is_gone(tag: str | None) -> bool:
    """Whether the process named by a `retrain.process` tag is known dead (only on this host)."""
    host, _, pid = (tag or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def mark_killed_runs(settings: Settings, experiment_names: list[str]) -> list[str]:
    """Mark KILLED the RUNNING runs of these experiments whose process on this host is gone."""
    mlflow_client = client(settings)
    ids = [e.experiment_id for n in experiment_names if (e := mlflow_client.get_experiment_by_name(n))]
    if not ids:
        return []
    running = mlflow_client.search_runs(
        ids, filter_string="attributes.status = 'RUNNING'", run_view_type=ViewType.ACTIVE_ONLY
    )
    killed = [run.info.run_id for run in running if process_is_gone(run.data.tags.get(PROCESS_TAG))]
    for run_id in killed:
        mlflow_client.set_terminated(run_id, "KILLED")
    return killed


def registry_needs_repair(settings: Settings, name: str) -> bool:
    """Whether model `name` has a promotion intent or a version without a decision, read unlocked.

    Without either there is nothing for the locked repairs to do, and whatever appears after this
    read belongs to a run that is alive now (a crashed one leaves its records before it dies).
    """
    mlflow_client = client(settings)
    try:
        if PENDING_TAG in mlflow_client.get_registered_model(name).tags:
            return True
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
            return False  # no registered model yet
        raise
    versions = mlflow_client.search_model_versions(f"name = '{name}'")
    return any("decision" not in version.tags and version.run_id for version in versions)


def mark_interrupted_versions(settings: Settings, name: str) -> list[str]:
    """Tag `decision=interrupted` on versions without a decision whose run ended without one."""
    mlflow_client = client(settings)
    marked = []
    for version in mlflow_client.search_model_versions(f"name = '{name}'"):
        if "decision" in version.tags or not version.run_id:
            continue
        if mlflow_client.get_run(version.run_id).info.status in {"KILLED", "FAILED"}:
            reason = "the run that registered this version stopped before deciding; never champion"
            mlflow_client.set_model_version_tag(name, version.version, "decision", INTERRUPTED)
            mlflow_client.set_model_version_tag(name, version.version, "decision_reason", reason)
            marked.append(str(version.version))
    return marked


@task(name="recover-after-crash", **io_edge_options())
def recover(settings: Settings, config: PipelineConfig) -> list[str]:
    """Make the records of earlier, killed runs of `config.name` true before this run reads them.

    Returns:
        One line per repair (empty when nothing was left behind).
    """
    experiments = [config.experiment_name, config.monitoring_experiment, config.scoring_experiment]
    notes = [f"run {run_id} marked KILLED" for run_id in mark_killed_runs(settings, experiments)]
    from tasks.publish import api_target

    # The lease (a Prefect API round trip with a shared registry) only when there is something to repair.
    if registry_needs_repair(settings, config.name):
        with promotion_lease(settings, config.name, api_target()):
            repaired = repair_promotion(settings, config.name)
            notes += [repaired] if repaired else []
            notes += [
                f"version {v} marked {INTERRUPTED}" for v in mark_interrupted_versions(settings, config.name)
            ]
    for note in notes:
        get_run_logger().warning("Recovered after a crash: %s", note)
    return notes
