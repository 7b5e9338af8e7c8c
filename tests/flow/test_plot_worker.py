"""Flow tier for the plots' helper process: it draws the same PNG as this process would, and when
it cannot, the `log-plots` task draws them itself; it never outlives the task."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from prefect import flow
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

from core.plots import draw_plots, plot_table
from core.validation import DataSchema
from tasks.plot_helper import PlotWorker
from tasks.settings import Settings
from tasks.tracking import log_plots

SCHEMA = DataSchema("y", ["a", "b"], [])


def fitted(task_kind: str) -> tuple[Pipeline, pd.DataFrame]:
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"a": rng.normal(size=600), "b": rng.uniform(size=600)})
    if task_kind == "regression":
        frame["y"] = 3 * frame["a"] + rng.normal(size=600)
        model = Pipeline([("model", Ridge())])
    else:
        frame["y"] = np.where(frame["a"] + rng.normal(scale=0.5, size=600) > 0, "repaid", "default")
        model = Pipeline([("model", LogisticRegression())])
    return model.fit(frame[["a", "b"]], frame["y"]), frame


@pytest.mark.parametrize("task_kind", ["regression", "classification"])
def test_the_helper_draws_the_same_png_as_this_process(task_kind: str, tmp_path: Path) -> None:
    model, frame = fitted(task_kind)
    table = plot_table(model, frame, SCHEMA, task_kind)
    with PlotWorker() as worker:
        drawn = worker.draw(table, tmp_path / "helper")
        assert worker.process is not None and worker.process.returncode == 0, worker.failure
    (here,) = draw_plots(table, tmp_path / "here")
    assert drawn is not None and [path.name for path in drawn] == [here.name]
    assert drawn[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert drawn[0].read_bytes() == here.read_bytes()


@flow
def plots_flow(settings: Settings, run_id: str, model: Pipeline, frame: pd.DataFrame) -> list[str]:
    return log_plots(settings, run_id, model, frame, SCHEMA, "regression")


def test_a_failing_helper_leaves_the_plots_to_the_task(
    mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PlotWorker, "command", ("-c", "import sys; print('broken helper'); sys.exit(3)"))
    spawned: list[PlotWorker] = []
    enter = PlotWorker.__enter__
    monkeypatch.setattr(PlotWorker, "__enter__", lambda self: spawned.append(self) or enter(self))
    monkeypatch.setattr(PlotWorker, "slow_import", "not.imported.here")  # as in a cold process
    model, frame = fitted("regression")
    run_id = mlflow.MlflowClient().create_run(mlflow.set_experiment("plots").experiment_id).info.run_id
    assert plots_flow(Settings.from_environment(), run_id, model, frame) == ["plots/predicted_vs_actual.png"]
    assert "exited with 3: broken helper" in spawned[0].failure
    logged = [item.path for item in mlflow.MlflowClient().list_artifacts(run_id, "plots")]
    assert logged == ["plots/predicted_vs_actual.png"]


def test_the_helper_never_outlives_its_task() -> None:
    with PlotWorker() as worker:
        folder, process = worker.folder, worker.process
        assert process is not None and process.poll() is None  # importing matplotlib, waiting
    assert process.poll() is not None
    assert not folder.exists()


def test_a_process_that_has_matplotlib_draws_the_plots_itself() -> None:
    import matplotlib.pyplot  # noqa: F401  (a warm process: a test session, a benchmark)

    with PlotWorker.for_this_process() as worker:
        assert worker.process is None
        model, frame = fitted("regression")
        assert worker.draw(plot_table(model, frame, SCHEMA, "regression"), Path("unused")) is None


def test_integer_classes_keep_their_numeric_order() -> None:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.uniform(size=300)})
    frame["y"] = rng.choice([2, 10, 1], size=300)
    model = Pipeline([("model", LogisticRegression())]).fit(frame[["a", "b"]], frame["y"])
    table = plot_table(model, frame, SCHEMA, "classification")
    assert table.labels == ["1", "2", "10"]  # not the text order "1", "10", "2"
    assert set(table.actual) == {"1", "2", "10"}
