"""The helper process that draws a drift check's Evidently report (see `tasks.helper_process`).

Importing Evidently takes seconds (it loads its whole package: UI, SDK, LLM and plotting code), and
the verdict never needs it. So the helper (`python -m tasks.report_worker`) is started when a check
begins, or earlier by the `retrain drift` command (`start_early`, before its own imports), and
imports Evidently on the other core while the check reads and tests the batch. The check then hands
it the reference and the batch's sample as Parquet files and collects the HTML file and Evidently's
JSON summary. This module imports only the standard library, so starting the helper costs nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks import helper_process
from tasks.helper_process import HelperProcess

if TYPE_CHECKING:
    import pandas as pd

    from core.config import PipelineConfig
    from core.validation import DataSchema


class ReportWorker(HelperProcess):
    """The report helper of one check (a context manager: it never outlives the check)."""

    command = ("-m", "tasks.report_worker")
    slow_import = "evidently"

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
        if self.process is None:
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
        if not self.serve(request, Path(request["details"])):
            return None
        return json.loads(Path(request["details"]).read_text())


def start_early() -> None:
    """Start the next check's report helper now (the `retrain drift` command, before its imports)."""
    helper_process.start_early(ReportWorker)
