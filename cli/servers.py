"""Local servers of the command line: Prefect and MLflow UIs for `retrain serve` and `retrain dashboard`.

Each server is a child process that is stopped (by its process id) when the block exits. While a
local Prefect server is up, its URL and process are recorded in the state folder, so that the other
`retrain` commands run against it instead of starting Prefect's ephemeral API (seconds per command).
Standard library only: the commands read the record before Prefect is imported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from cli.watchdog import start_time
from tasks.settings import Settings

# A live local server answers its health check in milliseconds; a command waits no longer than this.
HEALTH_TIMEOUT_S = 1.5


@dataclass(frozen=True)
class LocalServer:
    """A local Prefect server that `retrain serve` or `retrain dashboard` started.

    Attributes:
        api_url: Its API (`http://127.0.0.1:<port>/api`).
        pid: The server's process id.
        started: That process's start time (`cli.watchdog.start_time`): tells it from a reused pid.
        owner: The command that started it (`retrain dashboard`).
    """

    api_url: str
    pid: int
    started: str
    owner: str


def free_port(preferred: int) -> int:
    """`preferred` when it is free on 127.0.0.1, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError("no free port on 127.0.0.1")


def answers_health(api_url: str, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """Whether the Prefect API at `api_url` answers `/health` with 200 within `timeout` seconds."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@contextmanager
def recorded_server(settings: Settings, server: LocalServer) -> Iterator[None]:
    """Record `server` in the state folder for the block; the record is removed on the way out."""
    path = settings.local_server_file
    path.parent.mkdir(parents=True, exist_ok=True)
    written = path.with_suffix(f".{os.getpid()}.tmp")
    written.write_text(json.dumps(asdict(server)))
    written.replace(path)  # atomic: a reader never sees half a record
    try:
        yield
    finally:
        if read_record(settings) == server:  # not a newer server's record
            path.unlink(missing_ok=True)


def read_record(settings: Settings) -> LocalServer | None:
    """The recorded local server, or None when there is no record or it cannot be read."""
    try:
        return LocalServer(**json.loads(settings.local_server_file.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def running_local_server(settings: Settings) -> LocalServer | None:
    """The recorded local Prefect server when its process lives and its API answers, else None.

    A record whose process is gone (a server killed with SIGKILL leaves one) is stale: it is
    removed. A live server that does not answer in time is not used, and its record is kept.
    """
    path = settings.local_server_file
    if not path.exists():
        return None
    server = read_record(settings)
    if server is None or start_time(server.pid) != server.started:
        path.unlink(missing_ok=True)
        return None
    return server if answers_health(server.api_url) else None


def wait_until_healthy(
    url: str, process: subprocess.Popen, timeout: float, headers: dict | None = None
) -> None:
    """Poll `url` until it answers 200, the process dies, or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before it was healthy")
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy within {timeout:.0f} s")


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a server started here: SIGINT, then SIGTERM, then SIGKILL, by its process id."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue


def start_prefect_server(
    port: int, env: dict[str, str] | None = None, log_path: Path | None = None
) -> subprocess.Popen:
    """Start the Prefect server (API, UI, services) on 127.0.0.1:`port` in its own process group.

    What `prefect server start` runs, with the project's app (`cli.prefect_api`). The UI learns
    its API URL from the server settings, not from `--port`: without PREFECT_SERVER_API_PORT it
    would call port 4200 whatever port the server listens on.
    """
    settings = {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        **(env or {}),
    }
    return spawn_prefect_server(port, "warning", settings, log_path)


def start_ephemeral_api(port: int, log_path: Path | None = None) -> subprocess.Popen:
    """Prefect's ephemeral API server (no UI) on 127.0.0.1:`port`, started as Prefect starts it.

    The same command and flags as Prefect's own `SubprocessASGIServer`, with the project's app
    (`cli.prefect_api`), launched without importing Prefect here, so a command can start it
    before its own imports.
    """
    settings = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1"}
    return spawn_prefect_server(port, "error", settings, log_path)


def spawn_prefect_server(
    port: int, log_level: str, settings: dict[str, str], log_path: Path | None
) -> subprocess.Popen:
    """uvicorn serving `cli.prefect_api:create_app` on 127.0.0.1:`port`, as Prefect runs its server.

    Args:
        settings: Prefect settings for the server, over this process's environment (whose
            PREFECT_API_URL, the API a client would call, is left out).
    """
    environment = {**os.environ, "PREFECT__SERVER_FINAL": "1", **settings}
    environment.pop("PREFECT_API_URL", None)
    prefect_package = Path(importlib.util.find_spec("prefect").origin).parent
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_package.parent)]
    command += ["--factory", "cli.prefect_api:create_app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", log_level, "--lifespan", "on"]
    return spawn(command, log_path, env=environment)


def spawn(
    command: list[str], log_path: Path | None, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """Start `command` in its own session (so `stop` ends its children too), its output appended
    to `log_path` (discarded when None)."""
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    return subprocess.Popen(
        command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


@contextmanager
def local_prefect_server(
    settings: Settings, preferred_port: int = 4200, timeout: float = 90, owner: str = "retrain"
) -> Iterator[str]:
    """A Prefect server with its SQLite database in the settings' Prefect home; yields its API URL.

    While it is up it is recorded in the state folder (see `running_local_server`), as started by
    the command `owner`.
    """
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    port = free_port(preferred_port)
    process = start_prefect_server(
        port, {"PREFECT_HOME": str(settings.prefect_home)}, settings.state_dir / "prefect-server.log"
    )
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        wait_until_healthy(f"{api_url}/health", process, timeout)
        server = LocalServer(api_url, process.pid, start_time(process.pid) or "", owner)
        with recorded_server(settings, server):
            yield api_url
    finally:
        stop(process)


@contextmanager
def local_mlflow_ui(settings: Settings, preferred_port: int = 5000, timeout: float = 60) -> Iterator[str]:
    """`mlflow ui` on the settings' local tracking store; yields its URL."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    port = free_port(preferred_port)
    process = spawn(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            settings.tracking_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        settings.state_dir / "mlflow-ui.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{url}/health", process, timeout)
        yield url
    finally:
        stop(process)
