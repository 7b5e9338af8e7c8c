"""Flow tier: `retrain_flow` end to end on small synthetic data, against MLflow and the Prefect API."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any
from uuid import UUID

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import StateType

from conftest import hourly_frame, make_config, received_events, synthetic_frame
from core.errors import DataError
from flows.retrain import retrain_flow

# Two quick candidates keep each flow run to a few seconds (the e2e tier runs all three).
FAST_CANDIDATES = {
    "linear": {},
    "random_forest": {"params": {"n_estimators": 20}, "search_space": {"max_depth": [4, 8]}},
}
REGRESSION_METRICS = {"rmse", "mae", "r2", "mape"}
CLASSIFICATION_METRICS = {"accuracy", "f1_macro", "roc_auc", "log_loss"}


def fast_config(source: str | Path, **overrides: Any):
    """`make_config` with the two quick candidates."""
    return make_config(source, **{"candidates": FAST_CANDIDATES, **overrides})


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def parent_runs(mlflow_client: MlflowClient, experiment: str) -> list[Any]:
    """Runs of `experiment` that are not nested trial runs."""
    exp = mlflow_client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} was not created"
    runs = mlflow_client.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def artifact_paths(mlflow_client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    """Every artifact file of a run, recursively."""
    found: set[str] = set()
    for item in mlflow_client.list_artifacts(run_id, path):
        if item.is_dir:
            found |= artifact_paths(mlflow_client, run_id, item.path)
        else:
            found.add(item.path)
    return found


def artifact_text(uri: str, run_id: str, path: str, tmp: Path) -> str:
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=path, dst_path=str(tmp), tracking_uri=uri
    )
    return Path(local).read_text()


@pytest.fixture
def synth_csv(tmp_path: Path) -> Path:
    return write_csv(synthetic_frame(), tmp_path / "data" / "synthetic.csv")


def test_first_run_promotes_and_records_lineage(
    mlflow_store: str, synth_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ui = "http://mlflow.example:5000"
    monkeypatch.setenv("RETRAIN_MLFLOW_UI_URL", ui)
    config = fast_config(synth_csv)
    summary = retrain_flow(config)

    # The summary
    assert summary.promoted is True
    assert summary.model_name == "test-model"
    assert summary.model_version == "1"
    assert summary.champion_metrics is None and summary.champion_version is None
    assert summary.decision.startswith("no champion yet")
    assert set(summary.metrics) == REGRESSION_METRICS
    assert set(summary.baseline_metrics) == REGRESSION_METRICS
    assert all(math.isfinite(v) for v in summary.metrics.values())
    assert summary.metrics["rmse"] < 0.5 * summary.baseline_metrics["rmse"]
    assert summary.metrics["mae"] < summary.baseline_metrics["mae"]
    assert summary.metrics["r2"] > 0.8 > summary.baseline_metrics["r2"]
    assert summary.best_candidate in FAST_CANDIDATES
    assert {row["candidate"] for row in summary.leaderboard} == {*FAST_CANDIDATES, "baseline"}
    assert [row["rank"] for row in summary.leaderboard] == [1, 2, 3]
    windows = summary.windows
    assert sum(w["rows"] for w in windows.values()) == 400
    assert windows["train"]["end"] < windows["validation"]["start"]
    assert windows["validation"]["end"] < windows["test"]["start"]

    # The MLflow parent run
    mlflow_client = MlflowClient(mlflow_store)
    run = mlflow_client.get_run(summary.mlflow_run_id)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["prefect_flow_run_id"] == summary.prefect_flow_run_id
    assert tags["config_sha256"] == config.fingerprint()
    assert len(tags["data_sha256"]) == 64 and int(tags["data_sha256"], 16) >= 0
    assert tags["data_rows"] == "400"
    assert tags["decision"] == "promoted" and tags["model_version"] == "1"
    assert run.data.params["best_candidate"] == summary.best_candidate
    assert run.data.metrics["test.rmse"] == pytest.approx(summary.metrics["rmse"])
    assert run.data.metrics["baseline_test.rmse"] == pytest.approx(summary.baseline_metrics["rmse"])
    assert [r.info.run_id for r in parent_runs(mlflow_client, "test-model")] == [run.info.run_id]
    # What the MLflow UI shows: a model-training experiment, the source and user, the training data
    experiment_id = run.info.experiment_id
    assert (
        mlflow_client.get_experiment(experiment_id).tags["mlflow.experimentKind"]
        == "custom_model_development"
    )
    assert tags["mlflow.source.name"] == "prefect flow retrain" and tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.user"]
    (training,) = run.inputs.dataset_inputs
    assert [(t.key, t.value) for t in training.tags] == [("mlflow.data.context", "training")]
    assert training.dataset.name == "synthetic.csv" and training.dataset.digest == tags["data_sha256"][:16]
    assert json.loads(training.dataset.source) == {"uri": synth_csv.resolve().as_uri()}
    assert json.loads(training.dataset.profile)["num_rows"] == 400
    assert {c["name"] for c in json.loads(training.dataset.schema)["mlflow_colspec"]} == {
        "day",
        "x1",
        "x2",
        "color",
        "y",
    }

    # Nested trial runs: one per trial, all children of the parent run
    trials = mlflow_client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'", max_results=1000
    )
    assert {t.data.tags["candidate"] for t in trials} == set(FAST_CANDIDATES)
    assert sum(row["trials"] for row in summary.leaderboard if row["candidate"] != "baseline") == len(trials)
    assert all(t.info.status == "FINISHED" and "validation_rmse" in t.data.metrics for t in trials)

    # Artifacts
    paths = artifact_paths(mlflow_client, run.info.run_id)
    for expected in (
        "config/config.yaml",
        "reference/reference.parquet",
        "leaderboard.json",
        "lineage/windows.json",
        "lineage/schema.json",
    ):
        assert expected in paths, f"{expected} missing from {sorted(paths)}"
    assert summary.plots == ["plots/predicted_vs_actual.png"]
    assert "plots/predicted_vs_actual.png" in paths
    logged_config = yaml.safe_load(
        artifact_text(mlflow_store, run.info.run_id, "config/config.yaml", tmp_path)
    )
    assert logged_config == config.redacted()
    board = json.loads(artifact_text(mlflow_store, run.info.run_id, "leaderboard.json", tmp_path))
    assert board == summary.leaderboard
    schema = json.loads(artifact_text(mlflow_store, run.info.run_id, "lineage/schema.json", tmp_path))
    probe = schema.pop("calendar_probe")
    calendar = schema.pop("calendar_features")
    assert schema == {"target": "y", "time_column": "day", "numeric": ["x1", "x2"], "categorical": ["color"]}
    assert probe["metric"] == "rmse" and probe["kept"] is calendar
    assert calendar is (probe["with_calendar"] < probe["without_calendar"])

    # The registry: version 1 is champion and challenger, with its decision recorded
    version = mlflow_client.get_model_version("test-model", "1")
    assert set(version.aliases) == {"champion", "challenger"}
    assert version.tags["decision"] == "promoted"
    assert version.tags["decision_reason"] == summary.decision
    assert version.tags["data_sha256"] == tags["data_sha256"]
    assert json.loads(version.tags["input_schema"]) == {
        "x1": "numeric",
        "x2": "numeric",
        "color": "categorical",
        **({"day": "time"} if calendar else {}),
    }
    assert version.run_id == run.info.run_id

    # Prefect: the flow run completed and published its leaderboard and decision
    with get_client(sync_client=True) as prefect_client:
        flow_run = prefect_client.read_flow_run(UUID(summary.prefect_flow_run_id))
        artifacts = prefect_client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(summary.prefect_flow_run_id)])
            )
        )
    assert flow_run.state is not None and flow_run.state.type == StateType.COMPLETED
    by_key = {a.key: a for a in artifacts}
    assert set(by_key) >= {"test-model-leaderboard", "test-model-decision"}
    assert by_key["test-model-leaderboard"].type == "table"
    table = by_key["test-model-leaderboard"].data
    table = json.loads(table) if isinstance(table, str) else table
    assert [row["candidate"] for row in table] == [row["candidate"] for row in summary.leaderboard]
    assert by_key["test-model-decision"].type == "markdown"
    assert "version 1: promoted to champion" in by_key["test-model-decision"].data
    assert summary.mlflow_run_id in by_key["test-model-decision"].data
    # ... linking the MLflow run and the model version
    run_url = f"{ui}/#/experiments/{experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning"
    assert f"[MLflow run]({run_url})" in by_key["test-model-decision"].data
    version_url = f"{ui}/#/models/test-model/versions/1?workflowType=machine_learning"
    assert f"[Model version 1]({version_url})" in by_key["test-model-decision"].data
    assert by_key["test-model-mlflow-run"].data == f"[MLflow run]({run_url})"  # a link artifact
    # The promotion is announced as a Prefect event (what notifications match)
    promoted = received_events("retrain.model.promoted", "retrain.model.test-model")
    assert any(
        e["payload"]["reason"] == summary.decision and e["payload"]["version"] == "1" for e in promoted
    )


def test_classification_run_reports_classification_metrics(mlflow_store: str, tmp_path: Path) -> None:
    csv = write_csv(synthetic_frame(task="classification"), tmp_path / "clf.csv")
    config = fast_config(
        csv,
        name="test-clf",
        task="classification",
        candidates={"logistic": {}, "random_forest": FAST_CANDIDATES["random_forest"]},
    )
    summary = retrain_flow(config)

    assert summary.promoted is True and summary.model_version == "1"
    assert summary.metric == "f1_macro"
    assert set(summary.metrics) == CLASSIFICATION_METRICS
    assert set(summary.baseline_metrics) == CLASSIFICATION_METRICS
    metrics, baseline = summary.metrics, summary.baseline_metrics
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert metrics["accuracy"] >= 0.85 and metrics["roc_auc"] >= 0.9
    assert metrics["f1_macro"] > baseline["f1_macro"] + 0.3
    assert metrics["log_loss"] < baseline["log_loss"]
    assert summary.plots == ["plots/confusion_matrix_roc.png"]
    mlflow_client = MlflowClient(mlflow_store)
    assert str(mlflow_client.get_model_version_by_alias("test-clf", "champion").version) == "1"
    model = mlflow.sklearn.load_model("models:/test-clf@champion")
    assert set(model.classes_) == {"high", "low"}


def test_run_that_does_not_beat_champion_by_margin_keeps_it(mlflow_store: str, synth_csv: Path) -> None:
    first = retrain_flow(fast_config(synth_csv))
    assert first.promoted is True and first.model_version == "1"

    # The same data and seed give the same model: no improvement, and the margin is 20%.
    second = retrain_flow(fast_config(synth_csv, promotion={"min_improvement": 0.2}))

    assert second.promoted is False
    assert second.model_version == "2"
    assert second.champion_version == "1"
    assert second.champion_metrics == pytest.approx(first.metrics)
    assert "not better by the margin, champion kept" in second.decision
    assert "margin 20.00%" in second.decision
    mlflow_client = MlflowClient(mlflow_store)
    assert str(mlflow_client.get_model_version_by_alias("test-model", "champion").version) == "1"
    assert str(mlflow_client.get_model_version_by_alias("test-model", "challenger").version) == "2"
    rejected = mlflow_client.get_model_version("test-model", "2")
    assert rejected.tags["decision"] == "rejected"
    assert rejected.tags["decision_reason"] == second.decision
    assert mlflow_client.get_model_version("test-model", "1").tags["decision"] == "promoted"
    assert mlflow_client.get_run(second.mlflow_run_id).data.tags["decision"] == "rejected"
    assert "previous-champion" not in mlflow_client.get_registered_model("test-model").aliases
    promoted = received_events("retrain.model.promoted", "retrain.model.test-model")
    assert not [e for e in promoted if e["payload"]["reason"] == second.decision]


def test_env_referenced_source_never_reaches_mlflow_or_prefect(
    mlflow_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = "hush-7f3c9a-marker"
    csv = write_csv(synthetic_frame(), tmp_path / marker / "data.csv")
    monkeypatch.setenv("SYNTH_PATH", str(csv))
    config = fast_config("${SYNTH_PATH}")
    summary = retrain_flow(config)
    assert summary.promoted is True  # the env var was expanded where the data is read

    mlflow_client = MlflowClient(mlflow_store)
    run = mlflow_client.get_run(summary.mlflow_run_id)
    logged = yaml.safe_load(
        artifact_text(mlflow_store, run.info.run_id, "config/config.yaml", tmp_path / "dl")
    )
    assert logged["data"]["source"] == "${SYNTH_PATH}"
    texts = {
        "params": json.dumps(run.data.params),
        "tags": json.dumps(run.data.tags),
        "version tags": json.dumps(mlflow_client.get_model_version("test-model", "1").tags),
    }
    for path in artifact_paths(mlflow_client, run.info.run_id):
        if path.endswith((".json", ".yaml")):
            texts[path] = artifact_text(mlflow_store, run.info.run_id, path, tmp_path / "dl")
    trials = mlflow_client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    texts["trial runs"] = json.dumps([(t.data.params, t.data.tags) for t in trials])
    assert "config/config.yaml" in texts and len(texts) > 6
    for where, text in texts.items():
        assert marker not in text, f"the expanded ${{SYNTH_PATH}} leaked into MLflow {where}"

    with get_client(sync_client=True) as prefect_client:
        flow_run = prefect_client.read_flow_run(UUID(summary.prefect_flow_run_id))
        logs = prefect_client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])), limit=200
        )
    parameters = json.dumps(flow_run.parameters, default=str)
    assert "${SYNTH_PATH}" in parameters
    assert marker not in parameters
    assert logs, "the flow run sent no logs to the API"
    assert not [log.message for log in logs if marker in log.message]


def test_failed_flow_marks_mlflow_run_failed(mlflow_store: str, tmp_path: Path) -> None:
    frame = synthetic_frame()
    frame["y"] = 7.0  # a constant target is bad data
    config = fast_config(write_csv(frame, tmp_path / "constant.csv"), name="broken-model")

    with pytest.raises(DataError, match=r"target 'y' is constant"):
        retrain_flow(config)

    mlflow_client = MlflowClient(mlflow_store)
    (run,) = parent_runs(mlflow_client, "broken-model")
    assert run.info.status == "FAILED"
    assert run.info.end_time is not None
    assert "decision" not in run.data.tags
    assert mlflow_client.search_registered_models(filter_string="name = 'broken-model'") == []
    with get_client(sync_client=True) as prefect_client:
        flow_run = prefect_client.read_flow_run(UUID(run.data.tags["prefect_flow_run_id"]))
    assert flow_run.state is not None and flow_run.state.type == StateType.FAILED


def test_model_trained_on_compact_types_serves_ordinary_frames(mlflow_store: str, synth_csv: Path) -> None:
    summary = retrain_flow(fast_config(synth_csv))
    served = mlflow.pyfunc.load_model(f"models:/test-model/{summary.model_version}")
    inputs = {name: kind.name for name, kind in served.metadata.get_input_schema().input_types_dict().items()}
    assert inputs == {"x1": "double", "x2": "double", "color": "string"}  # not float32 or category
    plain = pd.read_csv(synth_csv).tail(50)  # float64 and object, as callers send them
    direct = mlflow.sklearn.load_model(f"models:/test-model/{summary.model_version}")
    predicted = served.predict(plain[["x1", "x2", "color"]])
    assert list(predicted) == pytest.approx(list(direct.predict(plain[["x1", "x2", "color"]])))
    rmse = float(((predicted - plain["y"]) ** 2).mean() ** 0.5)
    assert rmse < 0.5 * plain["y"].std()


def test_calendar_model_serves_the_time_column_as_read_from_csv(mlflow_store: str, tmp_path: Path) -> None:
    frame = hourly_frame(rows=1500, seed=4)  # y follows the hour of day
    csv = write_csv(frame, tmp_path / "hourly.csv")
    summary = retrain_flow(
        fast_config(csv, candidates={"hist_gradient_boosting": {"params": {"max_iter": 100}}})
    )
    version = MlflowClient(mlflow_store).get_model_version("test-model", summary.model_version)
    assert json.loads(version.tags["input_schema"])["day"] == "time"  # the hour of day pays
    served = mlflow.pyfunc.load_model(f"models:/test-model/{summary.model_version}")
    inputs = {name: kind.name for name, kind in served.metadata.get_input_schema().input_types_dict().items()}
    assert inputs == {"x1": "double", "color": "string", "day": "string"}
    plain = pd.read_csv(csv).tail(200)  # `day` is text, as a caller's CSV gives it
    predicted = served.predict(plain[["x1", "color", "day"]])
    rmse = float(((predicted - plain["y"]) ** 2).mean() ** 0.5)
    assert rmse < 0.25 * plain["y"].std()  # without the hour the error would be most of y's spread
