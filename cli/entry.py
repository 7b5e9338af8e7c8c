"""The `retrain` executable: starts a drift check's report helper first, then runs the command line.

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


def main() -> None:
    """Run the `retrain` command line."""
    arguments = sys.argv[1:]
    if arguments[:1] == ["drift"] and not {"--help", "-h"} & set(arguments):
        from tasks.report_helper import start_early

        start_early()
    status: list[int] = [1]
    # Registered first, so it runs last: after the exit handlers the libraries register on import.
    atexit.register(end_now, status)
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
