"""The `retrain` executable: starts a command's Prefect API and report helper, then the command line.

A command that runs a flow first starts its ephemeral Prefect API, when it has no other
(`cli.process.start_command_api`), so that server starts on the other core during the imports.
The command line's own imports (scikit-learn, pandas, Prefect, MLflow) take seconds. A drift check
also needs Evidently for its HTML report, which takes seconds more, so `retrain drift` starts the
report's helper process (`tasks.report_helper`, standard library only) before anything else: the
helper imports Evidently on the other core while this process imports the rest.

When the command is done, and every exit handler has run (Prefect's log and event workers have
delivered what they hold, temporary folders are removed), the process ends at once instead of
tearing its interpreter down object by object, which costs over a second with these libraries
loaded and serves nobody.
"""

from __future__ import annotations

import atexit
import os
import sys

# Commands that run a flow, so need a Prefect API (see `cli.process.start_command_api`).
FLOW_COMMANDS = frozenset({"run", "drift", "predict", "rollback", "backtest"})


def main() -> None:
    """Run the `retrain` command line."""
    arguments = sys.argv[1:]
    status: list[int] = [1]
    # Registered first, so it runs last: after the exit handlers the libraries register on import.
    atexit.register(end_now, status)
    asks_for_help = bool({"--help", "-h"} & set(arguments))
    if arguments[:1] and arguments[0] in FLOW_COMMANDS and not asks_for_help:
        from cli.process import start_command_api

        start_command_api()
    if arguments[:1] == ["drift"] and not asks_for_help:
        from tasks.report_helper import start_early

        start_early()
    from cli.app import main as command_line

    try:
        command_line()
        status[0] = 0
    except SystemExit as done:
        status[0] = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        raise  # the interpreter prints a message code, then runs the exit handlers


def end_now(status: list[int]) -> None:
    """End the process with `status`, its output flushed, skipping the interpreter's teardown."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status[0])
