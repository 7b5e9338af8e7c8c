"""Flow tier for the drift report's helper process: it draws Evidently's report, and when it cannot,
the check draws the report itself; it never outlives the check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect import flow

from conftest import make_config
from core.drift import evidently_report
from core.validation import DataSchema
from tasks.report import write_report
from tasks.report_helper import ReportWorker

SCHEMA = DataSchema("y", ["a", "b"], ["color"], "day")


def frame(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.normal(shift, 1, rows),
            "b": rng.uniform(0, 10, rows),
            "color": rng.choice(["red", "green", "blue"], rows),
            "day": pd.date_range("2024-01-01", periods=rows, freq="h"),
            "y": rng.normal(0, 1, rows),
        }
    )


def drift_values(details: dict) -> list[float]:
    """The value of every metric of Evidently's JSON summary, in its order."""
    return [
        float(m["value"]["share"]) if isinstance(m["value"], dict) else float(m["value"])
        for m in details["metrics"]
    ]


@flow
def report_flow(worker: ReportWorker, reference: pd.DataFrame, batch: pd.DataFrame, config, out: Path):
    return write_report(worker, reference, batch, SCHEMA, config, out)


def test_the_helper_draws_the_same_report_as_this_process(tmp_path: Path) -> None:
    config = make_config(tmp_path / "unused.csv", name="report-helper")
    reference, batch = frame(1500, 1), frame(800, 2, shift=1.0)
    with ReportWorker() as worker:
        path, details = report_flow(worker, reference, batch, config, tmp_path / "reports")
        assert worker.process is not None and worker.process.returncode == 0, worker.failure
    assert path.is_file() and path.stat().st_size > 10_000
    assert details["report_rows"] == 800
    in_process = evidently_report(reference, batch, SCHEMA, config.drift).dict()
    assert drift_values(details["evidently"]) == pytest.approx(drift_values(in_process))
    assert drift_values(in_process)[0] > 0  # the shifted column drifts: the comparison is not empty


def test_a_failing_helper_leaves_the_report_to_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ReportWorker, "command", ("-c", "import sys; print('broken helper'); sys.exit(3)"))
    config = make_config(tmp_path / "unused.csv", name="report-fallback")
    with ReportWorker() as worker:
        path, details = report_flow(worker, frame(1500, 1), frame(800, 2), config, tmp_path / "reports")
    assert "exited with 3: broken helper" in worker.failure
    assert path.is_file() and path.stat().st_size > 10_000
    assert details["evidently"]["metrics"]


def test_the_helper_never_outlives_its_check(tmp_path: Path) -> None:
    with ReportWorker() as worker:
        folder, process = worker.folder, worker.process
        assert process is not None and process.poll() is None  # importing Evidently, waiting
    assert process.poll() is not None
    assert not folder.exists()


def test_a_process_that_has_evidently_draws_the_report_itself(tmp_path: Path) -> None:
    import evidently  # noqa: F401  (a warm process: a test session, a benchmark)

    config = make_config(tmp_path / "unused.csv", name="report-warm")
    with ReportWorker.for_this_process() as worker:
        assert worker.process is None  # no second Evidently import in a helper
        path, details = report_flow(worker, frame(1500, 1), frame(800, 2), config, tmp_path / "reports")
    assert path.is_file() and details["evidently"]["metrics"]
