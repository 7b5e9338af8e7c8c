"""The helper process that draws the Evidently HTML report (`python -m tasks.report_worker`).

It imports Evidently first, while the drift check it serves does its own work, then reads one
request (a JSON line on standard input: the Parquet files of the reference and the batch's sample,
the columns, the drift settings, where to write), draws the report and exits. It reads only data
files and JSON: nothing it is handed is code.
"""

from __future__ import annotations

import json
import os
import sys

import evidently  # noqa: F401  (the slow import this process exists to take off the check's path)
import pandas as pd

from core.config import DriftConfig
from core.drift import evidently_report
from core.validation import DataSchema


def main() -> int:
    """Serve the one request on standard input; 0 when the report and its JSON summary are written."""
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the check ended without asking for a report (a skipped batch, an error)
    request = json.loads(line)
    schema = DataSchema(target="", numeric=request["numeric"], categorical=request["categorical"])
    snapshot = evidently_report(
        pd.read_parquet(request["reference"]),
        pd.read_parquet(request["current"]),
        schema,
        DriftConfig.model_validate(request["drift"]),
    )
    snapshot.save_html(request["html"])
    with open(request["details"], "w", encoding="utf-8") as details:
        json.dump(snapshot.dict(), details, default=str)
    return 0


if __name__ == "__main__":
    status = main()
    # The check waits for this process to exit: skip the interpreter's teardown of Evidently's
    # modules (most of a second) once the files are written and closed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
