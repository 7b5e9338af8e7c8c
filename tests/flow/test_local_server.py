"""Commands reuse the local Prefect server of their state folder; a stale record of one is ignored.

`retrain serve` and `retrain dashboard` record the local server they start (`cli.servers`) in
`.retrain/prefect-server.json`. A later command in that folder, without PREFECT_API_URL, runs its
flow there instead of starting Prefect's ephemeral API; a record whose process is gone is removed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cli.servers import LocalServer, free_port, local_prefect_server, running_local_server
from cli.watchdog import start_time
from conftest import write_tiny_cli_config
from tasks.settings import Settings

RETRAIN = [sys.executable, "-m", "cli"]


def command_environment() -> dict[str, str]:
    """The environment of a user's shell: no Prefect API, no MLflow URI, no test overrides."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "RETRAIN_"))}


def run_in(folder: Path) -> subprocess.CompletedProcess[str]:
    """`retrain run --config config.yaml --json` in `folder`, as a user's shell runs it; must succeed."""
    completed = subprocess.run(
        [*RETRAIN, "run", "--config", "config.yaml", "--json"],
        cwd=folder,
        env=command_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def write_record(settings: Settings, server: LocalServer) -> None:
    settings.local_server_file.parent.mkdir(parents=True, exist_ok=True)
    settings.local_server_file.write_text(json.dumps(server.__dict__))


def test_a_command_runs_its_flow_on_the_local_server_of_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_tiny_cli_config(tmp_path, "local-server-model", tuning={"n_trials": 1})
    settings = Settings.from_environment({})

    with local_prefect_server(settings, free_port(4330), owner="retrain dashboard") as api_url:
        assert running_local_server(settings) == LocalServer(
            **json.loads(settings.local_server_file.read_text())
        )
        completed = run_in(tmp_path)
        assert f"the local server at {api_url.removesuffix('/api')}" in completed.stderr
        flow_run_id = json.loads(completed.stdout.strip().splitlines()[-1])["prefect_flow_run_id"]
        with urllib.request.urlopen(f"{api_url}/flow_runs/{flow_run_id}", timeout=30) as response:
            flow_run = json.loads(response.read())
        assert flow_run["state_type"] == "COMPLETED"

    # The server is stopped and its record removed with it: the next command starts its own API.
    assert not settings.local_server_file.exists()
    assert running_local_server(settings) is None


def test_a_record_whose_server_is_gone_is_ignored_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_environment({})
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    port = free_port(4331)  # nothing listens there
    write_record(settings, LocalServer(f"http://127.0.0.1:{port}/api", ended.pid, "1", "retrain dashboard"))

    assert running_local_server(settings) is None
    assert not settings.local_server_file.exists()


def test_a_live_process_whose_api_does_not_answer_is_not_used_and_keeps_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_environment({})
    port = free_port(4332)
    this = LocalServer(
        f"http://127.0.0.1:{port}/api", os.getpid(), start_time(os.getpid()) or "", "retrain serve"
    )
    write_record(settings, this)

    assert running_local_server(settings) is None
    assert settings.local_server_file.exists()
    # A reused pid (same number, another start time) is a gone server.
    write_record(settings, LocalServer(this.api_url, this.pid, "0", this.owner))
    assert running_local_server(settings) is None
    assert not settings.local_server_file.exists()


def test_a_command_takes_the_recorded_server_unless_prefect_api_url_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.servers import stop, wait_until_healthy

    monkeypatch.chdir(tmp_path)
    # A stand-in that answers /api/health like a Prefect server (a file served by http.server).
    (tmp_path / "www" / "api").mkdir(parents=True)
    (tmp_path / "www" / "api" / "health").write_text("true")
    port = free_port(4333)
    served = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", "www"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    api_url = f"http://127.0.0.1:{port}/api"
    code = "from cli.process import use_local_defaults; print(use_local_defaults().prefect_api_url)"
    settings = Settings.from_environment({})

    def api_of_a_command(**env: str) -> str:
        completed = subprocess.run(
            [sys.executable, "-c", code],
            env={**command_environment(), "PYTHONPATH": str(Path(__file__).parents[2]), **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return completed.stdout.strip()

    try:
        wait_until_healthy(f"{api_url}/health", served, 60)
        started = start_time(served.pid) or ""
        write_record(settings, LocalServer(api_url, served.pid, started, "retrain serve"))
        assert api_of_a_command() == api_url
        assert api_of_a_command(PREFECT_API_URL="http://elsewhere:4200/api") == "http://elsewhere:4200/api"
    finally:
        stop(served)
    # Once the server is gone, the next command starts its own API and drops the record.
    assert api_of_a_command() == "None"
    assert not settings.local_server_file.exists()


def test_a_command_without_an_api_starts_its_own_first_keeps_its_runs_and_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    monkeypatch.chdir(tmp_path)
    write_tiny_cli_config(tmp_path, "own-api-model", tuning={"n_trials": 1})
    settings = Settings.from_environment({})
    completed = run_in(tmp_path)
    assert "Prefect: an ephemeral API" in completed.stderr
    # Started by the command itself before its imports (Prefect's own start writes no such log).
    assert (settings.state_dir / "prefect-ephemeral.log").exists()
    flow_run_id = json.loads(completed.stdout.strip().splitlines()[-1])["prefect_flow_run_id"]
    # The run is kept in the state folder's Prefect database, for the dashboard to show later.
    with sqlite3.connect(settings.prefect_home / "prefect.db") as database:
        (state,) = database.execute("SELECT state_type FROM flow_run WHERE id = ?", (flow_run_id,)).fetchone()
    assert state == "COMPLETED"
    # Its server does not outlive the command (it is asked to stop on the way out).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and servers_started_in(tmp_path):
        time.sleep(0.2)
    assert not servers_started_in(tmp_path)


def servers_started_in(folder: Path) -> list[int]:
    """Pids of Prefect API servers whose working directory is `folder`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes()
            if b"prefect.server.api.server:create_app" in command and (entry / "cwd").resolve() == folder:
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found
