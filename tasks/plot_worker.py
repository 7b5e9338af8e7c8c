"""The helper process that draws a run's plots (`python -m tasks.plot_worker`).

It imports matplotlib first, while the run registers its model, then reads one request (a JSON
line on standard input: the table of actual and predicted values, where to write), draws and
exits. It reads only JSON: nothing it is handed is code.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402, F401  (the slow import this process exists to take off the run's path)

from core.plots import PlotTable, draw_plots  # noqa: E402


def main() -> int:
    """Serve the one request on standard input; 0 when the plots and the list of them are written."""
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the run ended without asking for plots
    request = json.loads(line)
    paths = draw_plots(PlotTable(**request["table"]), Path(request["out_dir"]))
    Path(request["written"]).write_text(json.dumps([str(path) for path in paths]), encoding="utf-8")
    return 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # skip the interpreter's teardown once the files are written and closed
