"""Local servers of the command line: Prefect and MLflow UIs for `retrain serve` and `retrain dashboard`.

Each server is a child process that is stopped (by its process id) when the block exits.
"""

from __future__ import annotations

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
from pathlib import Path

from tasks.settings import Settings


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
        time.sleep(0.5)
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
    """Start `prefect server start` on 127.0.0.1:`port` in its own process group.

    The UI learns its API URL from the server settings, not from `--port`: without
    PREFECT_SERVER_API_PORT it would call port 4200 whatever port the server listens on.
    """
    environment = {
        **os.environ,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        **(env or {}),
    }
    environment.pop("PREFECT_API_URL", None)
    return spawn(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        log_path,
        env=environment,
    )


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
    settings: Settings, preferred_port: int = 4200, timeout: float = 90
) -> Iterator[str]:
    """A Prefect server with its SQLite database in the settings' Prefect home; yields its API URL."""
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    port = free_port(preferred_port)
    process = start_prefect_server(
        port, {"PREFECT_HOME": str(settings.prefect_home)}, settings.state_dir / "prefect-server.log"
    )
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        wait_until_healthy(f"{api_url}/health", process, timeout)
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
