"""The helper process that draws a run's test-window plots with matplotlib (see `tasks.helper_process`).

Importing matplotlib and drawing a figure costs most of a second of Python, which would hold the
interpreter while the model is being registered beside it. So the `log-plots` task predicts here
and hands the helper (`python -m tasks.plot_worker`) only the table of actual and predicted values
as JSON; the helper imports matplotlib on the other core and writes the PNG files.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.helper_process import HelperProcess

if TYPE_CHECKING:
    from core.plots import PlotTable


class PlotWorker(HelperProcess):
    """The plot helper of one run (a context manager: it never outlives the `log-plots` task)."""

    command = ("-m", "tasks.plot_worker")
    slow_import = "matplotlib.pyplot"

    def draw(self, table: PlotTable, out_dir: Path) -> list[Path] | None:
        """Have the helper draw `table` into `out_dir`; the files written, or None when it could
        not (the reason is in `self.failure`)."""
        done = self.folder / "written.json"
        request = {"table": asdict(table), "out_dir": str(out_dir), "written": str(done)}
        if not self.serve(request, done):
            return None
        return [Path(path) for path in json.loads(done.read_text())]
