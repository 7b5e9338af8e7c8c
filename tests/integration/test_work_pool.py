"""The README's work-pool commands, run as written, and the notifications, against a real Prefect server.

One `prefect server start` on SQLite for the module (its triggers and actions services run, which
the session's test harness does not). The project directory is a copy of the repository's
`prefect.yaml` and `flows/` with a small-tuning `configs/bike_sharing.yaml` (same model, same
UCI source), so `prefect deploy --all` deploys exactly what the README says, and the worker can
train on the real data only through `RETRAIN_DATA`: downloads go to a closed proxy port.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from cli.servers import free_port, spawn, start_prefect_server, stop, wait_until_healthy
from servers import REPO

pytestmark = [pytest.mark.slow, pytest.mark.integration]
BIN = Path(sys.executable).parent
# The README's commands, in order (the worker's line is the README's, run in the background).
CREATE_POOL = "prefect work-pool create retrain-process --type process"
DEPLOY = "prefect deploy --all"
WORKER = "prefect worker start --pool retrain-process"
RUN = "prefect deployment run retrain/bike-demand-scheduled --watch --watch-timeout 400"
NAME = "bike-demand"


@dataclass
class Server:
    """The module's Prefect server and a project directory to deploy from."""

    api_url: str
    work: Path
    project: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "RETRAIN_"))
        }
        return {
            **inherited,
            "PATH": f"{BIN}{os.pathsep}{inherited.get('PATH', '')}",
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.work / "prefect-client"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "MLFLOW_TRACKING_URI": f"sqlite:///{self.work / 'mlflow.db'}",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            **extra,
        }

    def run(self, command: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
        """A README command in the project directory; exit 0 asserted."""
        result = subprocess.run(
            command.split(),
            cwd=self.project,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, (
            f"{command} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
        return result

    @contextmanager
    def client(self) -> Iterator[Any]:
        """A sync Prefect client on this server (not the session harness's)."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            with get_client(sync_client=True) as client:
                yield client


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("work-pool")
    (work / "prefect-client").mkdir()
    project = work / "project"
    (project / "configs").mkdir(parents=True)
    shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
    (project / "flows").symlink_to(REPO / "flows", target_is_directory=True)
    raw = yaml.safe_load((REPO / "configs" / "bike_sharing.yaml").read_text())
    raw["tuning"] = {"n_trials": 2, "subset_rows": 1000}
    raw["candidates"] = {"linear": {}}
    (project / "configs" / "bike_sharing.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    port = free_port(0)
    process = start_prefect_server(
        port,
        {"PREFECT_HOME": str(work / "prefect-server"), "PREFECT_SERVER_LOGGING_LEVEL": "WARNING"},
        work / "prefect-server.log",
    )
    api_url = f"http://127.0.0.1:{port}/api"
    state = Server(api_url, work, project, [process])
    try:
        wait_until_healthy(f"{api_url}/health", process, timeout=180)
        yield state
    finally:
        for started in reversed(state.processes):
            stop(started, 15)


def test_the_readme_work_pool_commands_train_on_retrain_data(
    server: Server, bike_frame: pd.DataFrame
) -> None:
    from mlflow import MlflowClient

    data = server.work / "hour.csv"
    bike_frame.head(4000).to_csv(data, index=False)
    server.run(CREATE_POOL)
    deployed = server.run(DEPLOY)
    # The build step ran `retrain notifications` (once): this config has no notify: section.
    assert deployed.stdout.count("Notifications: none") == 1, deployed.stdout[-3000:]
    worker_env = server.env(
        RETRAIN_PROJECT_DIR=str(server.project),
        RETRAIN_DATA=str(data),
        PREFECT_WORKER_QUERY_SECONDS="2",
        # A download of data.source (the UCI URL) would fail: the only data is RETRAIN_DATA's.
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        NO_PROXY="127.0.0.1,localhost",
        OMP_NUM_THREADS="1",
    )
    worker = spawn(WORKER.split(), server.work / "worker.log", env=worker_env, cwd=server.project)
    server.processes.append(worker)
    started = time.monotonic()
    result = server.run(RUN, timeout=450)
    seconds = time.monotonic() - started
    assert "Completed" in result.stdout, result.stdout[-2000:]

    with server.client() as client:
        deployment = client.read_deployment_by_name(f"retrain/{NAME}-scheduled")
        assert deployment.parameters == {"config": "configs/bike_sharing.yaml", "trigger": "schedule"}
        runs = client.read_flow_runs()
    finished = [run for run in runs if run.deployment_id == deployment.id and run.state.is_completed()]
    assert len(finished) == 1, [(run.name, run.state.type) for run in runs]
    run_id = finished[0].id
    tracking = MlflowClient(tracking_uri=f"sqlite:///{server.work / 'mlflow.db'}")
    (mlflow_run,) = tracking.search_runs(
        [tracking.get_experiment_by_name(NAME).experiment_id], f"tags.prefect_flow_run_id = '{run_id}'"
    )
    tags = mlflow_run.data.tags
    assert tags["data_rows"] == "4000" and tags["trigger"] == "schedule"
    assert (
        tags["mlflow.source.type"] == "JOB"
        and tags["mlflow.source.name"] == f"prefect deployment {NAME}-scheduled"
    )
    (dataset,) = mlflow_run.inputs.dataset_inputs
    assert json.loads(dataset.dataset.source) == {"uri": data.resolve().as_uri()}
    assert json.loads(dataset.dataset.profile)["num_rows"] == 4000
    print(f"\nprefect deployment run --watch: {seconds:.1f} s (machine shared with other jobs)")


class Receiver(BaseHTTPRequestHandler):
    """Records every POST (path and JSON body) for the notification test."""

    received: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length", 0))
        Receiver.received.append((self.path, json.loads(self.rfile.read(length) or b"{}")))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    http = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_address[1]}"
    finally:
        http.shutdown()
        http.server_close()


def wait_for_posts(count: int, timeout: float = 60) -> list[tuple[str, dict[str, Any]]]:
    deadline = time.monotonic() + timeout
    while len(Receiver.received) < count and time.monotonic() < deadline:
        time.sleep(0.5)
    return list(Receiver.received)


def test_notifications_post_through_prefect_automations(server: Server, receiver: str) -> None:
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    token = "hook-token-7f3a9c"
    name = "notify-it"
    config = server.work / "notify.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "task": "regression",
                "target": "y",
                "data": {"source": "unused.csv"},
                "notify": {"webhook_url": "${RETRAIN_TEST_WEBHOOK}", "events": ["promoted", "run_failed"]},
            }
        )
    )
    hook = {"RETRAIN_TEST_WEBHOOK": f"{receiver}/hooks/{token}"}
    outputs = [server.run(f"retrain notifications --config {config}", **hook) for _ in range(2)]
    assert "created: retrain-notify-it-notify-promoted" in outputs[0].stdout
    assert "replaced: retrain-notify-it-notify-promoted" in outputs[1].stdout
    with server.client() as client:
        automations = [a for a in client.read_automations() if a.name.startswith(f"retrain-{name}-")]
        stored = json.dumps([a.model_dump(mode="json") for a in automations])
        # What the API shows (the secret only to a client that asks for secrets) ...
        blocks = json.dumps(
            [b.model_dump(mode="json") for b in client.read_block_documents(include_secrets=False)]
        )
        assert token in json.dumps(
            [b.model_dump(mode="json") for b in client.read_block_documents(include_secrets=True)]
        )
    assert sorted(a.name for a in automations) == [
        f"retrain-{name}-notify-promoted",
        f"retrain-{name}-notify-run_failed",
    ]
    assert token not in stored + blocks + "".join(o.stdout + o.stderr for o in outputs)
    # ... and what it stores: the block's secret values are encrypted in its database.
    database = b"".join(path.read_bytes() for path in (server.work / "prefect-server").rglob("*.db*"))
    assert b"retrain-notify-it-notify-promoted" in database and token.encode() not in database

    # The triggers service loads new automations every few seconds (later on a busy machine):
    # announce the promotion until its notification arrives.
    deadline = time.monotonic() + 90
    while not Receiver.received and time.monotonic() < deadline:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            emit_event(
                event="retrain.model.promoted",
                resource={"prefect.resource.id": f"retrain.model.{name}", "prefect.resource.name": name},
                payload={"version": "7", "previous_version": "6"},
            )
            EventsWorker.drain_all(timeout=10)
        wait_for_posts(1, timeout=5)
    announced = len(Receiver.received)
    failing = (
        "from prefect import flow, tags\n"
        "@flow(name='fails')\ndef fails():\n    raise RuntimeError('planted failure')\n"
        f"with tags('retrain', {name!r}):\n    fails(return_state=True)\n"
    )
    subprocess.run([sys.executable, "-c", failing], env=server.env(), timeout=120, capture_output=True)
    posts = wait_for_posts(announced + 1, timeout=90)
    assert {path for path, _ in posts} == {f"/hooks/{token}"}, posts
    by_subject = {body["subject"]: body for _, body in posts}
    assert set(by_subject) == {f"retrain {name}: promoted", f"retrain {name}: run_failed"}, posts
    promoted = by_subject[f"retrain {name}: promoted"]
    assert promoted["model"] == name and '"version": "7"' in promoted["body"], promoted
    assert "prefect.flow-run.Failed" in by_subject[f"retrain {name}: run_failed"]["body"]

    # Without the section the automations go: nothing is left behind.
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "notify": None}))
    server.run(f"retrain notifications --config {config}")
    with server.client() as client:
        assert not [a for a in client.read_automations() if a.name.startswith(f"retrain-{name}-")]
