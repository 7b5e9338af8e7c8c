"""Deployments against real servers, no Docker: Prefect and MLflow on PostgreSQL with basic auth.

The scenario (tests/servers.py starts the servers, a 2011-only champion and `retrain serve`):
the scheduled deployment runs and is linked to its MLflow run; 2012 rows arrive and a drift check
on summer 2012 alerts; the alert's trigger starts exactly one drift retrain, which promotes a new
champion; further drifted batches within the cooldown are checked but do not alert again. Two
identical runs of another model race on the same servers: exactly one promotes.
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import assert_one_winner, run_concurrently, write_tiny_cli_config
from servers import RETRAIN, Stack, basic_auth_header, shared_stack

pytestmark = [pytest.mark.slow, pytest.mark.integration]
SUPPRESSED_BATCHES = ("jul2012", "aug2012", "sep2012")
QUIET_SECONDS = 20  # how long after the last suppressed alert no second drift retrain may appear


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, bike_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Stack:
    return shared_stack(request, bike_frame, tmp_path_factory)


def status_of(url: str, headers: dict[str, str] | None = None, body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_both_servers_refuse_requests_without_credentials(stack: Stack) -> None:
    flows = f"{stack.api_url}/flows/filter"
    experiments = f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=5"
    assert status_of(flows, body={}) == 401
    assert status_of(flows, basic_auth_header("admin:wrong-password"), body={}) == 401
    assert status_of(flows, basic_auth_header(stack.prefect_auth), body={}) == 200
    assert status_of(experiments) == 401
    assert status_of(experiments, basic_auth_header(f"{stack.mlflow_user}:wrong-password-123")) == 401
    assert status_of(experiments, basic_auth_header(f"{stack.mlflow_user}:{stack.mlflow_password}")) == 200


def test_serve_registers_the_deployments_and_the_drift_trigger(stack: Stack) -> None:
    with stack.prefect() as client:
        response = client._client.post("/automations/filter", json={})
        response.raise_for_status()
    automations = [a for a in response.json() if a["name"] == f"{stack.name}-drift-alert"]
    assert len(automations) == 1
    trigger, action = automations[0]["trigger"], automations[0]["actions"][0]
    assert trigger["expect"] == ["retrain.drift.detected"]
    assert trigger["match"] == {"prefect.resource.id": f"retrain.model.{stack.name}"}
    assert action["type"] == "run-deployment"
    assert action["deployment_id"] == str(stack.deployment_id("on_drift"))
    assert automations[0]["enabled"] is True


def test_scheduled_deployment_runs_and_links_its_mlflow_run(stack: Stack) -> None:
    run = stack.scheduled_run()
    assert run.state.is_completed(), f"{run.name}: {run.state}"
    assert run.deployment_id == stack.deployment_id("scheduled")
    assert run.parameters["trigger"] == "schedule"
    with stack.mlflow() as client:
        experiment = client.get_experiment_by_name(stack.name)
        runs = client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.prefect_flow_run_id = '{run.id}'"
        )
    assert len(runs) == 1
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["trigger"] == "schedule"
    assert "mlflow.parentRunId" not in runs[0].data.tags  # the flow's run, not a tuning trial
    # The champion's rows from another file (another data.source, so another config fingerprint):
    # trained again, the challenger cannot beat it by the margin.
    assert runs[0].data.tags["decision"] == "rejected"


@pytest.fixture(scope="module")
def first_alert(stack: Stack) -> dict[str, Any]:
    """2012 rows arrive in the served source; a drift check on summer 2012 alerts."""
    stack.scheduled_run()  # the scheduled retrain happens before the new rows
    frame = pd.read_csv(stack.files["until_sep2012"])
    frame.to_csv(stack.files["source"], index=False)
    summary = stack.retrain(
        "drift", "--config", str(stack.config), "--current", str(stack.files["summer2012"])
    )
    deadline = time.monotonic() + 60
    runs = stack.flow_runs("on_drift")
    while not runs and time.monotonic() < deadline:
        time.sleep(1)
        runs = stack.flow_runs("on_drift")
    return {"summary": summary, "runs": runs, "at": time.monotonic()}


def test_drift_alert_starts_exactly_one_retrain(stack: Stack, first_alert: dict[str, Any]) -> None:
    summary = first_alert["summary"]
    assert summary["drift_detected"] is True and summary["event_emitted"] is True
    assert {"yr", "temp", "season"} <= set(summary["drifted_columns"])
    assert summary["reasons"]
    runs = first_alert["runs"]
    assert len(runs) == 1, [r.name for r in runs]
    trigger = runs[0].parameters["trigger"]
    assert trigger.startswith("drift alert: ")
    assert summary["reasons"][0] in trigger and "features drifted" in trigger
    events = stack.events()
    assert len(events) == 1
    assert events[0]["payload"]["reasons"] == summary["reasons"]


@pytest.fixture(scope="module")
def cooldown_alerts(stack: Stack, first_alert: dict[str, Any]) -> dict[str, Any]:
    """Three more distinct drifted batches, checked while the drift retrain runs."""
    summaries = {
        batch: stack.retrain("drift", "--config", str(stack.config), "--current", str(stack.files[batch]))
        for batch in SUPPRESSED_BATCHES
    }
    return {"summaries": summaries, "at": time.monotonic()}


def test_drift_alerts_within_the_cooldown_are_suppressed(
    stack: Stack, cooldown_alerts: dict[str, Any]
) -> None:
    summaries = cooldown_alerts["summaries"]
    run_ids = {summary["mlflow_run_id"] for summary in summaries.values()}
    assert len(run_ids) == len(SUPPRESSED_BATCHES)  # distinct batches, each really checked
    with stack.mlflow() as client, tempfile.TemporaryDirectory() as tmp:
        for batch, summary in summaries.items():
            assert summary["drift_detected"] is True, batch
            assert summary["event_emitted"] is False, batch
            assert summary["reasons"], batch
            run = client.get_run(summary["mlflow_run_id"])
            assert run.data.tags["alert"] == "suppressed", batch
            path = client.download_artifacts(summary["mlflow_run_id"], "drift/summary.json", tmp)
            note = json.loads(Path(path).read_text())["event_note"]
            assert note.startswith("alert suppressed") and "cooldown_hours=6" in note, note
    assert len(stack.events()) == 1


@pytest.fixture(scope="module")
def drift_retrain(stack: Stack, first_alert: dict[str, Any], cooldown_alerts: dict[str, Any]) -> Any:
    """The drift-triggered run once finished, and no sooner than QUIET_SECONDS after the last alert."""
    run = stack.wait_for_final(first_alert["runs"][0].id, timeout=300)
    quiet_until = cooldown_alerts["at"] + QUIET_SECONDS
    time.sleep(max(0.0, quiet_until - time.monotonic()))
    return run


def test_drift_retrain_completes_and_becomes_the_champion(stack: Stack, drift_retrain: Any) -> None:
    assert drift_retrain.state.is_completed(), f"{drift_retrain.name}: {drift_retrain.state}"
    on_drift = stack.flow_runs("on_drift")
    assert [r.id for r in on_drift] == [drift_retrain.id]  # still exactly one after all alerts
    scheduled = [r for r in stack.flow_runs("scheduled") if not r.state.is_scheduled()]
    assert [r.id for r in scheduled] == [stack.scheduled_run().id]

    with stack.mlflow() as client:
        champion = client.get_model_version_by_alias(stack.name, "champion")
        previous = client.get_model_version_by_alias(stack.name, "previous-champion")
        run = client.get_run(champion.run_id)
    # Trained on 2011 + 2012 after the alert, it beats the 2011 champion on the 2012 test window.
    assert champion.tags["prefect_flow_run_id"] == str(drift_retrain.id)
    assert champion.tags["decision"] == "promoted"
    assert run.data.tags["trigger"] == drift_retrain.parameters["trigger"]
    assert previous.version == stack.champion["model_version"]
    assert previous.tags["prefect_flow_run_id"] == stack.champion["prefect_flow_run_id"]
    assert int(champion.version) == int(previous.version) + 2  # v2 is the scheduled run's challenger


def test_concurrent_runs_on_the_postgres_backed_servers_promote_exactly_one(
    stack: Stack, tmp_path: Path
) -> None:
    name = "race-model"
    write_tiny_cli_config(tmp_path, name)
    command = [RETRAIN, "run", "--config", str(tmp_path / "config.yaml"), "--json"]

    summaries = run_concurrently([command, command], stack.env(), tmp_path)

    with stack.mlflow() as registry:
        assert_one_winner(summaries, registry, name)
