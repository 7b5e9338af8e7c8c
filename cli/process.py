"""Process settings of the command line: what must hold before Prefect is imported, and on the way out.

Prefect reads its settings when it is first imported, so the commands call `use_local_defaults`
before importing anything that imports Prefect (the flows, the tasks, the deployments). That is
also when a command picks its Prefect API: `PREFECT_API_URL`, else the local server that
`retrain serve` or `retrain dashboard` runs in this state folder, else Prefect's ephemeral one.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from cli.servers import (
    LocalServer,
    answers_health,
    free_port,
    running_local_server,
    start_ephemeral_api,
    wait_until_healthy,
)
from core.errors import BadInputError
from tasks.settings import Settings

_WATCHDOG: subprocess.Popen[bytes] | None = None
_REUSED_SERVER: LocalServer | None = None


@dataclass(frozen=True)
class CommandApi:
    """The ephemeral Prefect API a command started for itself before its own imports."""

    api_url: str
    process: subprocess.Popen[bytes]
    log_path: str


_COMMAND_API: CommandApi | None = None
_COMMAND_API_UP = False


def use_local_defaults() -> Settings:
    """Without a Prefect API, use the local server of this state folder, or an ephemeral one.

    The local server is the one `retrain serve` or `retrain dashboard` started (recorded under
    `.retrain/`); without one, Prefect's ephemeral API starts in this process, its database in the
    state folder too, and a watchdog stops it should this process die.

    Returns:
        The settings of this process, read after the defaults are set.
    """
    global _REUSED_SERVER
    settings = Settings.from_environment()
    configured = bool(settings.prefect_api_url)
    if not configured and (server := running_local_server(settings)):
        _REUSED_SERVER = server
        os.environ["PREFECT_API_URL"] = server.api_url
        settings = Settings.from_environment()
    if not configured and not os.environ.get("PREFECT_HOME"):
        settings.prefect_home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(settings.prefect_home)
    if not settings.prefect_api_url:
        reap_orphans_on_exit()
    # The ephemeral API server logs harmless errors while it shuts down; keep them off the console.
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
    # Its telemetry heartbeat races the first writes to the fresh SQLite database and logs
    # "database is locked" tracebacks (docket logger, not silenced by the level above).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A fresh ephemeral database is migrated at start: on a slow machine that takes over the
    # default 20 s and the first run would fail with "Timed out ... ephemeral Prefect API".
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    # Loading the champion downloads its files: no progress bars between the command's own lines.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return settings


def start_command_api() -> None:
    """Start the command's ephemeral Prefect API now, when it will need one and has none.

    Prefect itself would start the same server at the first flow run, once the command's imports
    are done; started first, it comes up on the other core meanwhile (seconds sooner). Nothing
    is started when PREFECT_API_URL or PREFECT_PROFILES_PATH is set, or a local server of this
    state folder answers: the command uses that API as before. Stopped when the command exits,
    by the watchdog should the command die.
    """
    global _COMMAND_API
    settings = use_local_defaults()
    if settings.prefect_api_url or os.environ.get("PREFECT_PROFILES_PATH"):
        return
    port = free_port(0)
    log_path = settings.state_dir / "prefect-ephemeral.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process = start_ephemeral_api(port, log_path)
    api_url = f"http://127.0.0.1:{port}/api"
    os.environ["PREFECT_API_URL"] = api_url
    _COMMAND_API = CommandApi(api_url, process, str(log_path))
    atexit.register(end_command_api, process)


def end_command_api(process: subprocess.Popen[bytes]) -> None:
    """Ask the command's API server to stop, without waiting the second its shutdown takes.

    Runs after Prefect's exit handlers have delivered their logs and events. The server shuts
    down on its own; should it hang, the watchdog kills it.
    """
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def wait_for_command_api(while_it_starts: Callable[[], object] | None = None) -> None:
    """Return once the command's own Prefect API answers (at once without one).

    Args:
        while_it_starts: Work the command will need anyway (imports), done while the server is
            still coming up instead of waiting idle.
    """
    global _COMMAND_API_UP
    if _COMMAND_API is None or _COMMAND_API_UP:
        return
    if while_it_starts is not None and not answers_health(_COMMAND_API.api_url, timeout=0.2):
        while_it_starts()
    timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"))
    try:
        wait_until_healthy(f"{_COMMAND_API.api_url}/health", _COMMAND_API.process, timeout)
    except RuntimeError as exc:
        raise RuntimeError(
            f"Prefect's ephemeral API for this command did not start: {exc}. Its output is in "
            f"{_COMMAND_API.log_path}; set PREFECT_API_URL to a running Prefect server to use that instead."
        ) from None
    _COMMAND_API_UP = True


def prefect_api_note() -> str | None:
    """Which Prefect API this command's flow runs use, when the user did not name one.

    Call after Prefect is imported (it reads Prefect's own setting).
    """
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    if _REUSED_SERVER is not None and api_url == _REUSED_SERVER.api_url:
        where = api_url.removesuffix("/api")
        return f"Prefect: the local server at {where} that `{_REUSED_SERVER.owner}` started"
    if not api_url or (_COMMAND_API is not None and api_url == _COMMAND_API.api_url):
        return (
            "Prefect: an ephemeral API in this process (seconds to start; `retrain dashboard` "
            "keeps a local server that later commands reuse)"
        )
    return None


def reap_orphans_on_exit() -> None:
    """Start the watchdog that stops this process's children (the ephemeral server) when it dies.

    Prefect's ephemeral API server is a child process; if this process is killed, nothing else
    would stop it (it holds hundreds of MB). See `cli.watchdog`.
    """
    global _WATCHDOG
    if _WATCHDOG is None or _WATCHDOG.poll() is not None:
        _WATCHDOG = subprocess.Popen(
            [sys.executable, "-m", "cli.watchdog", str(os.getpid())],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def pin_local_state(settings: Settings) -> None:
    """Make local stores absolute, so flow runs started in other directories share them."""
    os.environ.update(settings.pinned_environment())


def stop_on_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C, so the servers started here are stopped on the way out."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def bad_input_names() -> tuple[str, ...]:
    """Class names of `BadInputError` and its subclasses, as Prefect writes them in state messages."""
    classes, pending = [], [BadInputError]
    while pending:
        current = pending.pop()
        classes.append(current.__name__)
        pending.extend(current.__subclasses__())
    return tuple(classes)


class HideBadInput(logging.Filter):
    """Drop Prefect's console records about bad input: the command prints the message itself once.

    Prefect logs the exception of a failed task or flow run and repeats it in the final state's
    message, where only the class name identifies it (`DataError: ...` in Prefect 3.9,
    `DataError(...)` before).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record unless it is about a `BadInputError`."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BadInputError):
            return False
        text = record.getMessage()
        return not any(f"{name}(" in text or f"{name}:" in text for name in bad_input_names())


def quiet_bad_input_on_console() -> None:
    """Attach `HideBadInput` to Prefect's console handlers (the API's logs keep the full record)."""
    import prefect.logging.handlers as handlers

    # Prefect 3 puts its console handler on the root logger; flow and task run records reach it there.
    names = (None, "prefect", "prefect.flow_runs", "prefect.task_runs")
    for logger in [logging.getLogger(n) for n in names]:
        for handler in logger.handlers:
            if isinstance(handler, handlers.PrefectConsoleHandler) and not any(
                isinstance(f, HideBadInput) for f in handler.filters
            ):
                handler.addFilter(HideBadInput())
