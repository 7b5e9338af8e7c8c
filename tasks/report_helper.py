"""The helper process that draws a drift check's Evidently report: started, handed one request, reaped.

Importing Evidently takes seconds (it loads its whole package: UI, SDK, LLM and plotting code), and
the verdict never needs it. So the helper (`python -m tasks.report_worker`) is started when a check
begins, or earlier by the `retrain drift` command (`start_early`, before its own imports), and
imports Evidently on the other core while the check reads and tests the batch. The check then hands
it the reference and the batch's sample as Parquet files and collects the HTML file and Evidently's
JSON summary. This module imports only the standard library, so starting the helper costs nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from core.config import PipelineConfig
    from core.validation import DataSchema

# The helper's import and one report take seconds; far longer means it is stuck.
REPORT_TIMEOUT_S = 600


class ReportWorker:
    """The helper process of one check (a context manager: it never outlives the check)."""

    command = ("-m", "tasks.report_worker")

    def __init__(self, spawn: bool = True) -> None:
        self.spawn_helper = spawn
        self.folder = Path(tempfile.mkdtemp(prefix="retrain-report-"))
        self.log = self.folder / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.failure = "the helper process did not start"
        self.closed = False

    def __enter__(self) -> ReportWorker:
        early = _EARLY.pop() if _EARLY else None
        if (
            early is not None
            and self.spawn_helper
            and early.command == self.command
            and early.process.poll() is None
        ):
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder, self.log, self.process = early.folder, early.log, early.process
            return self
        if early is not None:
            early.__exit__(None, None, None)  # dead, or started for another helper command
        self.process = self.spawn() if self.spawn_helper else None
        return self

    @classmethod
    def for_this_process(cls) -> ReportWorker:
        """A helper, unless Evidently is already imported here (a warm process, such as a test
        session or a benchmark): then the report is drawn in this process, at no import cost."""
        worker = cls(spawn="evidently" not in sys.modules)
        if not worker.spawn_helper:
            worker.failure = "Evidently is already imported in this process"
        return worker

    def spawn(self) -> subprocess.Popen[bytes] | None:
        """The helper process, importing Evidently and then waiting for its request (None: it could
        not start, and the report is drawn in this process)."""
        # The helper imports this checkout's code, wherever the check runs from.
        project = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (project, os.environ.get("PYTHONPATH")) if p)
        try:
            with self.log.open("wb") as log:
                return subprocess.Popen(
                    [sys.executable, *self.command],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=log,
                    env={**os.environ, "PYTHONPATH": path},
                )
        except OSError:
            return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.closed = True  # the check is over: a report still being drawn is no longer wanted
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def draw(
        self,
        reference: pd.DataFrame,
        sample: pd.DataFrame,
        schema: DataSchema,
        config: PipelineConfig,
        html: Path,
    ) -> dict[str, Any] | None:
        """Have the helper draw the report into `html`; Evidently's JSON summary, or None when the
        helper could not (the reason is in `self.failure`)."""
        if self.process is None or self.process.stdin is None:
            return None
        columns = schema.features
        request = {
            "reference": str(self.folder / "reference.parquet"),
            "current": str(self.folder / "current.parquet"),
            "numeric": schema.numeric,
            "categorical": schema.categorical,
            "drift": config.drift.model_dump(mode="json"),
            "html": str(html),
            "details": str(self.folder / "details.json"),
        }
        reference[columns].to_parquet(request["reference"], index=False)
        sample[columns].to_parquet(request["current"], index=False)
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.close()
        except OSError:
            pass  # it has exited: its code and last words say why
        try:
            code = self.process.wait(timeout=REPORT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.failure = f"the helper process took over {REPORT_TIMEOUT_S} s"
            return None
        if code != 0 or not Path(request["details"]).is_file():
            tail = self.log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            self.failure = f"the helper process exited with {code}: {tail[0]}"
            return None
        return json.loads(Path(request["details"]).read_text())


# A helper the command line started before its imports, for the check it is about to run.
_EARLY: list[ReportWorker] = []


def start_early() -> None:
    """Start the next check's helper now (the `retrain drift` command, before its slow imports).

    A helper nobody adopts reads end-of-file on its standard input when this process exits, and
    exits too.
    """
    worker = ReportWorker()
    worker.process = worker.spawn()
    if worker.process is not None:
        _EARLY.append(worker)
