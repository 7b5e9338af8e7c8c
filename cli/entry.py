"""The `retrain` executable: starts a drift check's report helper first, then loads the command line.

The command line's own imports (scikit-learn, pandas, Prefect, MLflow) take seconds. A drift check
also needs Evidently for its HTML report, which takes seconds more, so `retrain drift` starts the
report's helper process (`tasks.report_helper`, standard library only) before anything else: the
helper imports Evidently on the other core while this process imports the rest.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run the `retrain` command line."""
    arguments = sys.argv[1:]
    if arguments[:1] == ["drift"] and not {"--help", "-h"} & set(arguments):
        from tasks.report_helper import start_early

        start_early()
    from cli.app import main as command_line

    command_line()
