"""Flow tier for drift: a champion trained on synthetic data, then batches with and without drift.

The alert is checked where it lands: the events stored by the (test harness) Prefect API.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from conftest import make_config, received_events, synthetic_frame
from core.config import DataConfig
from core.errors import BadInputError, DataError
from flows.drift import drift_check_flow
from flows.retrain import retrain_flow

EVENT = "retrain.drift.detected"
FAST = {"linear": {}, "random_forest": {"params": {"n_estimators": 10}, "search_space": {"max_depth": [4]}}}


def write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def trained(mlflow_store: str, tmp_path: Path, request: pytest.FixtureRequest):
    """A champion trained on 1,500 synthetic rows; returns its config (model name unique per test)."""
    history = synthetic_frame(rows=1500, seed=1)
    name = f"drift-{request.node.name.replace('_', '-')}"[:60]
    config = make_config(write(history, tmp_path / "history.csv"), name=name, candidates=FAST)
    assert retrain_flow(config).promoted is True
    return config


def test_drifted_batch_raises_an_event_the_api_stores(trained, tmp_path: Path, mlflow_store: str) -> None:
    batch = synthetic_frame(rows=600, seed=7)
    batch["x1"] += 3.0
    batch["x2"] += 6.0
    batch["day"] = pd.date_range("2024-01-01", periods=len(batch), freq="D").strftime("%Y-%m-%d")
    result = drift_check_flow(trained, DataConfig(source=str(write(batch, tmp_path / "batch.csv"))))

    assert result.drift_detected is True and result.event_emitted is True
    assert set(result.drifted_columns) >= {"x1", "x2"}
    assert any("features drifted" in reason for reason in result.reasons)
    assert result.performance.decay > 0.25  # labelled batch: the shift breaks the champion
    events = received_events(EVENT, f"retrain.model.{trained.name}")
    assert len(events) == 1
    assert events[0]["resource"]["prefect.resource.name"] == trained.name
    assert events[0]["payload"]["reasons"] == result.reasons
    assert set(events[0]["payload"]["drifted_columns"]) == set(result.drifted_columns)
    assert Path(result.report_path).is_file() and Path(result.report_path).stat().st_size > 10_000

    client = MlflowClient(mlflow_store)
    run = client.get_run(result.mlflow_run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == f"{trained.name}-monitoring"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # not GenAI evaluation
    assert run.data.tags["mlflow.source.name"] == "prefect flow drift-check"
    assert run.data.tags["drift_detected"] == "true"
    assert run.data.metrics["drift_score.x1"] > 0.1
    names = {a.path for a in client.list_artifacts(result.mlflow_run_id, "drift")}
    assert {"drift/summary.json", "drift/evidently.json"} <= names
    assert any(n.endswith(".html") for n in names)

    key = trained.name.lower()
    with get_client(sync_client=True) as prefect:
        tables = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{key}-drift-columns"]))
        )
    assert tables, "the per-column drift table artifact is missing"
    rows = json.loads(tables[0].data) if isinstance(tables[0].data, str) else tables[0].data
    assert {row["column"] for row in rows} == {"x1", "x2", "color"}


def test_batch_like_the_training_data_is_quiet(trained, tmp_path: Path) -> None:
    batch = synthetic_frame(rows=600, seed=11).drop(columns=["y"])  # unlabelled, same distribution
    result = drift_check_flow(trained, DataConfig(source=str(write(batch, tmp_path / "batch.csv"))))
    assert result.drift_detected is False and result.event_emitted is False
    assert result.performance is None
    assert result.share_drifted < 0.5
    assert received_events(EVENT, f"retrain.model.{trained.name}", expect=False) == []


def test_same_batch_twice_is_skipped_and_says_so(trained, tmp_path: Path) -> None:
    from prefect.client.schemas.filters import ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    batch = write(synthetic_frame(rows=300, seed=5), tmp_path / "batch.csv")
    first = drift_check_flow(trained, DataConfig(source=str(batch)))
    state = drift_check_flow(trained, DataConfig(source=str(batch)), return_state=True)
    second = state.result()
    assert first.skipped is False
    assert second.skipped is True and second.mlflow_run_id == first.mlflow_run_id
    assert "was checked in run" in second.reasons[0]
    assert second.drift_detected == first.drift_detected and second.reasons[1:] == first.reasons
    # The skipped run's own trace in Prefect: a log line and its verdict artifact
    APILogHandler().flush()  # send the buffered log records now
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
        logs = prefect.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    (verdict,) = [a for a in artifacts if a.key == f"{trained.name.lower()}-drift"]
    assert "check skipped, batch already checked" in verdict.data and first.mlflow_run_id in verdict.data
    assert any(second.reasons[0] == log.message for log in logs), [log.message for log in logs]


def test_an_unfinished_check_of_the_batch_does_not_count(trained, mlflow_store: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    batch = write(synthetic_frame(rows=300, seed=6), tmp_path / "batch.csv")
    first = drift_check_flow(trained, DataConfig(source=str(batch)))
    # As if the process of the first check had been killed before it finished its run.
    MlflowClient(mlflow_store).update_run(first.mlflow_run_id, status="RUNNING")
    again = drift_check_flow(trained, DataConfig(source=str(batch)))
    assert again.skipped is False and again.mlflow_run_id != first.mlflow_run_id


def test_default_batch_is_the_rows_after_training(mlflow_store: str, tmp_path: Path) -> None:
    data = synthetic_frame(rows=1500, seed=2)
    source = write(data, tmp_path / "all.csv")
    config = make_config(source, name="drift-default-batch", candidates=FAST)
    training = data.iloc[:1000]
    write(training, source)
    windows = retrain_flow(config).windows
    write(data, source)  # 500 new rows arrive in the same source
    result = drift_check_flow(config)
    # Not trained on: the champion's test window and the 500 new rows.
    assert windows["test"]["rows"] > 0
    assert result.batch_rows == windows["test"]["rows"] + 500


def test_no_champion_tells_the_user_to_train_first(mlflow_store: str, tmp_path: Path) -> None:
    config = make_config(write(synthetic_frame(), tmp_path / "d.csv"), name="never-trained")
    with pytest.raises(BadInputError, match="Train one first with `retrain run"):
        drift_check_flow(config)


def test_batch_missing_a_feature_is_bad_input(trained, tmp_path: Path) -> None:
    batch = synthetic_frame(rows=200, seed=3).drop(columns=["x2"])
    with pytest.raises(DataError, match=r"champion input column.*\['x2'\]"):
        drift_check_flow(trained, DataConfig(source=str(write(batch, tmp_path / "batch.csv"))))


def test_alerts_within_the_cooldown_are_suppressed_and_shown(trained, tmp_path: Path) -> None:
    def drifted(seed: int) -> DataConfig:
        batch = synthetic_frame(rows=400, seed=seed)
        batch["x1"] += 4.0
        return DataConfig(source=str(write(batch, tmp_path / f"batch{seed}.csv")))

    first = drift_check_flow(trained, drifted(20))
    second = drift_check_flow(trained, drifted(21))  # a distinct drifted batch, within 6 hours
    assert first.drift_detected and first.event_emitted
    assert second.drift_detected and not second.event_emitted
    assert second.event_note.startswith("alert suppressed")
    assert len(received_events(EVENT, f"retrain.model.{trained.name}")) == 1
    key = trained.name.lower()
    with get_client(sync_client=True) as prefect:
        notes = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{key}-drift"]))
        )
    assert any("alert suppressed" in str(a.data) for a in notes)
    (suppressed,) = received_events("retrain.drift.suppressed", f"retrain.model.{trained.name}")
    assert (
        suppressed["payload"]["note"] == second.event_note
        and suppressed["payload"]["reasons"] == second.reasons
    )


def test_cooldown_window() -> None:
    from datetime import datetime, timedelta, timezone

    from core.drift import in_cooldown

    now = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    assert in_cooldown(now - timedelta(hours=5), 6, now)
    assert not in_cooldown(now - timedelta(hours=7), 6, now)
    assert not in_cooldown(None, 6, now)
    assert not in_cooldown(now - timedelta(minutes=1), 0, now)


def test_batch_from_a_sql_query(trained, tmp_path: Path) -> None:
    import sqlalchemy as sa

    batch = synthetic_frame(rows=300, seed=30)
    batch["x1"] += 3.0
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'batches.db'}")
    batch.to_sql("batch", engine, index=False)
    engine.dispose()
    source = DataConfig(source=f"sqlite:///{tmp_path / 'batches.db'}", query="SELECT * FROM batch")
    result = drift_check_flow(trained, source)
    assert result.batch_rows == 300
    assert "x1" in result.drifted_columns


def test_infinite_values_in_a_batch_are_bad_input(trained, tmp_path: Path) -> None:
    batch = synthetic_frame(rows=300, seed=4)
    batch.loc[5, "x1"] = float("inf")
    with pytest.raises(DataError, match=r"column 'x1' has 1 infinite values \(inf or -inf\)"):
        drift_check_flow(trained, DataConfig(source=str(write(batch, tmp_path / "batch.csv"))))
