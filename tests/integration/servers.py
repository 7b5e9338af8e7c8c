"""Real servers for the integration and browser tests: Prefect and MLflow on PostgreSQL, basic auth on.

`shared_stack(request, bike_frame)` starts, once per test session, and in this order:

1. two fresh PostgreSQL databases on 127.0.0.1:5432 (user postgres, trust auth);
2. `prefect server start` on the first, with `PREFECT_SERVER_API_AUTH_STRING` set;
3. `mlflow server --app-name basic-auth` on the second, its users in a SQLite file;
4. a 2011-only champion trained by `retrain run` against both;
5. `retrain serve`, until its three deployments exist in the Prefect API.

Both test modules share it (their module-scoped `stack` fixtures call `shared_stack`), so the
expensive part runs once. Everything is stopped by process id (`serve` first, while the API still
answers it, then the servers) and the databases are dropped when the session ends, even after a
failure or an error half-way through the start.

Nothing here reads the session harness's PREFECT_API_URL: subprocesses get an explicit environment
(`Stack.env`) and in-process clients use `Stack.prefect()` / `Stack.mlflow()`.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from cli.servers import free_port, spawn, start_prefect_server, stop, wait_until_healthy
from deployments import deployment_names

REPO = Path(__file__).resolve().parents[2]
RETRAIN = str(Path(sys.executable).with_name("retrain"))
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
EVENT = "retrain.drift.detected"
# The runner polls the API for runs to start every PREFECT_RUNNER_POLL_FREQUENCY seconds (10 by
# default). 2 s keeps each deployment run's wait short; benchmarks/trigger_latency.py measures the default.
RUNNER_POLL_SECONDS = "2"
_STASH_KEY = pytest.StashKey["Stack"]()
_FAILED_KEY = pytest.StashKey[str]()


def _connect():
    import psycopg2

    connection = psycopg2.connect(dbname="postgres", **PG)
    connection.autocommit = True
    return connection


def create_database(name: str) -> None:
    connection = _connect()  # not `with connection`: that opens a transaction, CREATE DATABASE refuses
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()


def drop_database(name: str) -> None:
    """Terminate the database's sessions, then drop it."""
    connection = _connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        connection.close()


def postgres_available() -> bool:
    try:
        _connect().close()
    except Exception:  # noqa: BLE001 - any failure means no usable server
        return False
    return True


def last_json_line(output: str) -> dict[str, Any]:
    return json.loads(output.strip().splitlines()[-1])


def basic_auth_header(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


@dataclass
class Stack:
    """Where the servers are, how to log in, and the files of the scenario."""

    work: Path
    name: str
    databases: list[str] = field(default_factory=list)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    prefect_url: str = ""
    prefect_auth: str = ""
    mlflow_url: str = ""
    mlflow_user: str = "admin"
    mlflow_password: str = ""
    config: Path = Path()
    files: dict[str, Path] = field(default_factory=dict)
    champion: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _scheduled_run: Any = None

    @property
    def api_url(self) -> str:
        return f"{self.prefect_url}/api"

    @property
    def deployments(self) -> dict[str, str]:
        return deployment_names(self.name)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of every `retrain` subprocess: both servers with their credentials."""
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "RETRAIN_"))
        }
        return {
            **inherited,
            "PREFECT_API_URL": self.api_url,
            "PREFECT_API_AUTH_STRING": self.prefect_auth,
            "PREFECT_HOME": str(self.work / "prefect-client"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "MLFLOW_TRACKING_USERNAME": self.mlflow_user,
            "MLFLOW_TRACKING_PASSWORD": self.mlflow_password,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            **extra,
        }

    @contextmanager
    def prefect(self) -> Iterator[Any]:
        """A sync Prefect client on this server (overrides the session harness's API in-process)."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        with temporary_settings(
            updates={PREFECT_API_URL: self.api_url, PREFECT_API_AUTH_STRING: self.prefect_auth}
        ):
            with get_client(sync_client=True) as client:
                yield client

    @contextmanager
    def mlflow(self) -> Iterator[Any]:
        """An MlflowClient on this server, with the credentials in the environment while it is used."""
        from mlflow import MlflowClient

        names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
        saved = {name: os.environ.get(name) for name in names}
        os.environ.update(dict(zip(names, (self.mlflow_user, self.mlflow_password), strict=True)))
        try:
            yield MlflowClient(tracking_uri=self.mlflow_url, registry_uri=self.mlflow_url)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def retrain(self, *args: str, timeout: float = 300) -> dict[str, Any]:
        """`retrain <args> --json` against the servers; its JSON line (exit 0 asserted)."""
        result = subprocess.run(
            [RETRAIN, *args, "--json"],
            env=self.env(),
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"retrain {args} exited {result.returncode}:\n{result.stderr[-4000:]}"
        return last_json_line(result.stdout)

    def deployment_id(self, role: str) -> Any:
        flow = {"drift_check": "drift-check", "score": "score"}.get(role, "retrain")
        with self.prefect() as client:
            return client.read_deployment_by_name(f"{flow}/{self.deployments[role]}").id

    def flow_runs(self, role: str, include_future: bool = False) -> list[Any]:
        """Flow runs of one of the three deployments (without the cron's future runs)."""
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
        from prefect.client.schemas.sorting import FlowRunSort

        deployment_id = self.deployment_id(role)
        with self.prefect() as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            )
        if include_future:
            return runs
        return [run for run in runs if not (run.state and run.state.is_scheduled() and run.auto_scheduled)]

    def wait_for_final(self, flow_run_id: Any, timeout: float) -> Any:
        """The flow run once it reaches a final state (fails the test after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.prefect() as client:
                run = client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                return run
            if time.monotonic() > deadline:
                pytest.fail(f"flow run {run.name} still {run.state and run.state.type} after {timeout:.0f} s")
            self.assert_serving()
            time.sleep(2)

    def events(self, name: str = EVENT) -> list[dict[str, Any]]:
        """The events of this model stored by the Prefect server."""
        body = {
            "filter": {
                "event": {"name": [name]},
                "resource": {"id": [f"retrain.model.{self.name}"]},
                "occurred": {"since": "2000-01-01T00:00:00Z"},
            },
            "limit": 50,
        }
        with self.prefect() as client:
            response = client._client.post("/events/filter", json=body)
            response.raise_for_status()
            return response.json()["events"]

    def assert_serving(self) -> None:
        serve = self.processes.get("serve")
        if serve is not None and serve.poll() is not None:
            log = (self.work / "serve.log").read_text(errors="replace")[-4000:]
            pytest.fail(f"`retrain serve` exited with code {serve.returncode}:\n{log}")

    def scheduled_run(self) -> Any:
        """Run the scheduled deployment now, once per session; the finished flow run."""
        if self._scheduled_run is None:
            from prefect.deployments import run_deployment
            from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

            started = time.monotonic()
            with temporary_settings(
                updates={PREFECT_API_URL: self.api_url, PREFECT_API_AUTH_STRING: self.prefect_auth}
            ):
                run = run_deployment(
                    name=f"retrain/{self.deployments['scheduled']}", timeout=300, poll_interval=2
                )
            self.timings["scheduled run"] = time.monotonic() - started
            self._scheduled_run = run
        return self._scheduled_run


def _write_inputs(stack: Stack, bike_frame: pd.DataFrame) -> None:
    """Config and data files: the 2011 training data, the served source, the drifted batches."""
    raw = yaml.safe_load((REPO / "configs" / "bike_sharing.yaml").read_text())
    raw["name"] = stack.name
    raw["tuning"] = {"n_trials": 4, "subset_rows": 3000}
    # Yearly crons: no scheduled retrain or drift check may fire by itself during the test.
    raw["schedule"] = {"cron": "0 3 1 1 *"}
    raw["drift"] = {"cooldown_hours": 6, "cron": "0 6 1 1 *"}
    stack.config = stack.work / "bike.yaml"
    stack.config.write_text(yaml.safe_dump(raw, sort_keys=False))
    dates = pd.to_datetime(bike_frame["dteday"])
    windows = {
        "y2011": (dates < "2012-01-01"),
        # What `retrain serve` trains on: 2011 at first; 2012 rows "arrive" before the drift alert.
        "source": (dates < "2012-01-01"),
        "until_sep2012": (dates < "2012-10-01"),
        "summer2012": (dates >= "2012-06-01") & (dates < "2012-09-01"),
        "jul2012": (dates >= "2012-07-01") & (dates < "2012-08-01"),
        "aug2012": (dates >= "2012-08-01") & (dates < "2012-09-01"),
        "sep2012": (dates >= "2012-09-01") & (dates < "2012-10-01"),
    }
    for key, rows in windows.items():
        stack.files[key] = stack.work / f"{key}.csv"
        bike_frame[rows].to_csv(stack.files[key], index=False)


def _start_prefect(stack: Stack, cleanup: ExitStack) -> subprocess.Popen:
    port = free_port(0)
    stack.prefect_url = f"http://127.0.0.1:{port}"
    stack.prefect_auth = f"admin:{secrets.token_urlsafe(18)}"
    home = stack.work / "prefect-server"
    home.mkdir()
    process = start_prefect_server(
        port,
        {
            "PREFECT_HOME": str(home),
            "PREFECT_API_DATABASE_CONNECTION_URL": (
                f"postgresql+asyncpg://{PG['user']}@{PG['host']}:{PG['port']}/{stack.databases[0]}"
            ),
            "PREFECT_SERVER_API_AUTH_STRING": stack.prefect_auth,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        },
        stack.work / "prefect-server.log",
    )
    stack.processes["prefect"] = process
    cleanup.callback(stop, process, 20)
    return process


def _start_mlflow(stack: Stack, cleanup: ExitStack) -> subprocess.Popen:
    port = free_port(0)
    stack.mlflow_url = f"http://127.0.0.1:{port}"
    stack.mlflow_password = secrets.token_urlsafe(18)  # the auth app wants at least 12 characters
    auth_ini = stack.work / "mlflow-auth.ini"
    auth_ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{stack.work / 'mlflow-auth.db'}\n"
        f"admin_username = {stack.mlflow_user}\n"
        f"admin_password = {stack.mlflow_password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Each request otherwise re-hashes the password (PBKDF2): a run makes hundreds of requests.
        "auth_cache_ttl_seconds = 600\n"
    )
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "PREFECT_API_"))
    }
    environment.update(
        {
            "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),  # required by the auth app
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
    )
    # Explicit driver: SQLAlchemy 2.1 maps a plain `postgresql://` to psycopg 3, which the `server`
    # extra (what an MLflow server host installs) does not bring; it brings psycopg2.
    backend = f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{stack.databases[1]}"
    process = spawn(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--app-name",
            "basic-auth",
            "--backend-store-uri",
            backend,
            "--artifacts-destination",
            str(stack.work / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            # One process: uvicorn's supervisor of MLflow's default 4 workers restarts them when
            # they answer its pings late, which a loaded 2-core machine makes them do.
            "--workers",
            "1",
        ],
        stack.work / "mlflow-server.log",
        env=environment,
        cwd=stack.work,
    )
    stack.processes["mlflow"] = process
    cleanup.callback(stop, process, 20)
    return process


def _start_serve(stack: Stack, cleanup: ExitStack) -> None:
    process = spawn(
        [RETRAIN, "serve", "--config", str(stack.config), "--data", str(stack.files["source"])],
        stack.work / "serve.log",
        env=stack.env(PREFECT_RUNNER_POLL_FREQUENCY=RUNNER_POLL_SECONDS),
        cwd=stack.work,
    )
    stack.processes["serve"] = process
    # Registered after the servers' callbacks, so it runs first: serve pauses its deployments
    # through the API when it stops.
    cleanup.callback(stop, process, 15)


def _wait_for_deployments(stack: Stack, timeout: float = 120) -> None:
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    missing: list[str] = list(stack.deployments)
    while missing:
        stack.assert_serving()
        for role in list(missing):
            try:
                stack.deployment_id(role)
                missing.remove(role)
            except ObjectNotFound:
                pass
        if missing and time.monotonic() > deadline:
            raise RuntimeError(f"deployments {missing} did not appear within {timeout:.0f} s")
        if missing:
            time.sleep(1)


def _log_tail(stack: Stack, name: str) -> str:
    path = stack.work / name
    return path.read_text(errors="replace")[-3000:] if path.is_file() else "(no log)"


def start_stack(bike_frame: pd.DataFrame, work: Path, cleanup: ExitStack) -> Stack:
    """Start everything; every started piece registers its own teardown on `cleanup` first."""
    stack = Stack(work=work, name=f"bike-it-{uuid.uuid4().hex[:8]}")
    (work / "prefect-client").mkdir()
    _write_inputs(stack, bike_frame)
    started = time.monotonic()
    for role in ("prefect", "mlflow"):
        database = f"retrain_it_{stack.name.removeprefix('bike-it-')}_{role}"
        create_database(database)
        stack.databases.append(database)
        cleanup.callback(drop_database, database)
    prefect = _start_prefect(stack, cleanup)
    mlflow = _start_mlflow(stack, cleanup)
    for process, url, log in (
        (prefect, f"{stack.api_url}/health", "prefect-server.log"),
        (mlflow, f"{stack.mlflow_url}/health", "mlflow-server.log"),
    ):
        try:
            wait_until_healthy(url, process, timeout=180)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{_log_tail(stack, log)}") from exc
    stack.timings["servers healthy"] = time.monotonic() - started

    started = time.monotonic()
    stack.champion = stack.retrain(
        "run", "--config", str(stack.config), "--data", str(stack.files["y2011"]), timeout=400
    )
    stack.timings["champion run"] = time.monotonic() - started
    assert stack.champion["promoted"] is True, stack.champion

    started = time.monotonic()
    _start_serve(stack, cleanup)
    _wait_for_deployments(stack)
    stack.timings["serve ready"] = time.monotonic() - started
    return stack


def shared_stack(
    request: pytest.FixtureRequest, bike_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Stack:
    """The session's stack, started on first use and torn down when the session ends."""
    config = request.config
    stack = config.stash.get(_STASH_KEY, None)
    if stack is not None:
        return stack
    if _FAILED_KEY in config.stash:
        pytest.fail(f"the servers failed to start earlier in this session: {config.stash[_FAILED_KEY]}")
    if not postgres_available():
        pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 as user postgres (trust auth)")
    cleanup = ExitStack()
    config.add_cleanup(cleanup.close)
    try:
        stack = start_stack(bike_frame, tmp_path_factory.mktemp("servers"), cleanup)
    except BaseException as exc:
        config.stash[_FAILED_KEY] = f"{type(exc).__name__}: {str(exc)[:500]}"
        cleanup.close()
        raise
    config.stash[_STASH_KEY] = stack
    return stack
