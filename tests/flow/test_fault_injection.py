"""Fault injection: `retrain` commands killed at each named point, then the records after the next run.

One store lives through the whole story, as on a machine that keeps crashing: runs are SIGKILLed
during tuning, after logging the model, after registering it and between the alias writes, and a
drift check is killed between recording its alert and sending it. Then one more run and one more
check must leave the registry and the monitoring history true: no run RUNNING or falsely
FINISHED, no version tagged promoted that was never champion, the interrupted promotion
completed, the unsent alert sent once, and the ephemeral Prefect server gone with its parent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cli.watchdog import descendants, start_time
from conftest import REPO, synthetic_frame, write_tiny_cli_config

pytestmark = pytest.mark.slow
NAME = "crashing-model"


def command(
    tmp_path: Path, *args: str, failpoint: str | None = None, ephemeral: bool = False
) -> subprocess.Popen[str]:
    """`retrain <args> --json` on the test's store; on the session's Prefect API unless `ephemeral`."""
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PYTHONPATH": str(REPO),
    }
    # Not the suite's RETRAIN_DATA (the Makefile exports one) nor an earlier fault point.
    env = {k: v for k, v in env.items() if not k.startswith(("RETRAIN_", "PREFECT_API_URL"))}
    if not ephemeral:
        env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    if failpoint:
        env["RETRAIN_FAILPOINT"] = failpoint
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args, "--config", str(tmp_path / "config.yaml"), "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    """The exit code, and stderr then stdout (the `--json` line is the last line)."""
    try:
        out, err = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"{process.args} timed out: {(err + out)[-3000:]}") from None
    return process.returncode, err + out


def wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 240
    while not path.exists():
        assert process.poll() is None, finish(process)[1][-3000:]
        assert time.monotonic() < deadline, f"{path.name} never reached"
        time.sleep(0.1)


def test_every_crash_point_leaves_true_records_after_the_next_run(tmp_path: Path) -> None:
    write_tiny_cli_config(
        tmp_path, NAME, tuning={"n_trials": 2, "subset_rows": 200}, drift={"cooldown_hours": 0}
    )
    shifted = synthetic_frame(rows=200, seed=3).assign(x2=lambda f: f["x2"] + 40)
    shifted.to_csv(tmp_path / "shifted.csv", index=False)
    failpoints = tmp_path / ".retrain" / "failpoints"

    # Killed during tuning: the ephemeral Prefect server must not outlive the command.
    paused = command(tmp_path, "run", failpoint="tuning:pause", ephemeral=True)
    wait_for(failpoints / "tuning.reached", paused)
    children = descendants(paused.pid)
    assert children, "the command started no Prefect server"
    paused.send_signal(signal.SIGKILL)
    paused.wait()
    deadline = time.monotonic() + 20
    while any(start_time(pid) == started for pid, started in children.items()):
        assert time.monotonic() < deadline, "the ephemeral Prefect server outlived its killed parent"
        time.sleep(0.2)

    # Killed after logging the model, after registering it, and between the alias writes.
    for point in ("after-model-logged", "after-version-registered", "between-alias-writes"):
        code, output = finish(command(tmp_path, "run", failpoint=point))
        assert code == -signal.SIGKILL, output[-3000:]

    code, output = finish(command(tmp_path, "run"))
    assert code == 0, output[-3000:]
    summary = json.loads(output.strip().splitlines()[-1])

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = MlflowClient(store, registry_uri=store)
    experiment = registry.get_experiment_by_name(NAME)
    runs = registry.search_runs([experiment.experiment_id], "tags.model_name = 'crashing-model'")
    statuses = sorted(run.info.status for run in runs)
    assert statuses == ["FINISHED", "KILLED", "KILLED", "KILLED", "KILLED"], statuses
    versions = {str(v.version): v for v in registry.search_model_versions(f"name = '{NAME}'")}
    decisions = {number: version.tags.get("decision") for number, version in versions.items()}
    # v1: registered, never decided (interrupted); v2: promoted by a run killed between the alias
    # writes (completed by the next run's recovery). The last run has v2's data and config, so it
    # trains the same model again: it registers nothing.
    assert decisions == {"1": "interrupted", "2": "promoted"}, decisions
    model = registry.get_registered_model(NAME)
    aliases = {alias: str(number) for alias, number in model.aliases.items()}
    assert "promotion_in_progress" not in model.tags
    assert aliases["champion"] == "2" and "previous-champion" not in aliases
    assert summary["registered"] is False and summary["model_version"] == "2"
    assert "identical to the champion" in summary["decision"]

    # A drift check killed after recording its alert, before sending it; then the same batch again.
    check = ("drift", "--current", str(tmp_path / "shifted.csv"))
    code, output = finish(command(tmp_path, *check, failpoint="before-alert-sent"))
    assert code == -signal.SIGKILL, output[-3000:]
    assert "drawn by its helper process" in output  # the command started it before its imports
    code, output = finish(command(tmp_path, *check))
    assert code == 0, output[-3000:]
    again = json.loads(output.strip().splitlines()[-1])
    assert again["drift_detected"] is True, "a skipped batch reports the earlier verdict"
    assert any("skipped" in reason for reason in again["reasons"])
    monitoring = registry.get_experiment_by_name(f"{NAME}-monitoring")
    checks = registry.search_runs([monitoring.experiment_id])
    assert [(run.info.status, run.data.tags["alert"]) for run in checks] == [("FINISHED", "sent")]
