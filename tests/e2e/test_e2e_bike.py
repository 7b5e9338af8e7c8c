"""End to end on the real UCI Bike Sharing hourly data: quality, time order, promotion, lineage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from conftest import REPO, bike_config, use_isolated_store
from core.config import PipelineConfig
from flows.retrain import retrain_flow

pytestmark = pytest.mark.slow

FEATURES = {
    "season",
    "yr",
    "mnth",
    "hr",
    "holiday",
    "weekday",
    "workingday",
    "weathersit",
    "temp",
    "atemp",
    "hum",
    "windspeed",
}


@dataclass(frozen=True)
class TwoRuns:
    """Two runs on the same data (configs differing only in the promotion margin), in one MLflow store."""

    uri: str
    root: Path
    config: PipelineConfig
    first: dict[str, Any]
    second: dict[str, Any]
    champion_after_second: str


@pytest.fixture(scope="module")
def runs(bike_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoRuns]:
    root = tmp_path_factory.mktemp("bike")
    patch = pytest.MonkeyPatch()
    uri = use_isolated_store(patch, root)
    try:
        first = retrain_flow(bike_config(bike_csv))
        # Another margin, so not the champion's recipe again (that run would register nothing)
        config = bike_config(bike_csv, promotion={"min_improvement": 0.02})
        second = retrain_flow(config)
        champion = MlflowClient(uri).get_model_version_by_alias(config.name, "champion")
        yield TwoRuns(uri, root, config, first, second, str(champion.version))
    finally:
        patch.undo()


def download(runs: TwoRuns, run_id: str, path: str) -> Path:
    return Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=path,
            dst_path=str(runs.root / "downloads" / run_id),
            tracking_uri=runs.uri,
        )
    )


def test_first_run_promotes_a_model_far_better_than_the_baseline(runs: TwoRuns) -> None:
    first = runs.first
    assert first.promoted is True
    assert first.model_name == "bike-demand" and first.model_version == "1"
    assert first.champion_metrics is None
    metrics, baseline = first.metrics, first.baseline_metrics
    assert metrics["rmse"] <= 0.45 * baseline["rmse"], (metrics, baseline)
    assert metrics["r2"] >= 0.85, metrics
    assert metrics["mae"] < baseline["mae"]
    assert baseline["r2"] < 0.1  # the mean predictor explains next to nothing
    assert first.best_candidate in {"linear", "random_forest", "hist_gradient_boosting"}
    assert {row["candidate"] for row in first.leaderboard} == {
        "linear",
        "random_forest",
        "hist_gradient_boosting",
        "baseline",
    }
    # Candidates that reached the last round (all training rows) beat the mean predictor; one that
    # left the race earlier is listed after them and the baseline.
    train_rows = first.windows["train"]["rows"]
    ranks = {row["candidate"]: row["rank"] for row in first.leaderboard}
    finalists = [r["candidate"] for r in first.leaderboard if r["best_per_round"].endswith(f"@{train_rows}")]
    assert first.best_candidate in finalists
    assert all(ranks[name] < ranks["baseline"] for name in finalists)


def test_test_window_comes_after_training_and_validation(runs: TwoRuns, bike_frame: pd.DataFrame) -> None:
    windows = runs.first.windows
    assert sum(w["rows"] for w in windows.values()) == len(bike_frame)
    train_end, validation_start = (
        pd.Timestamp(windows["train"]["end"]),
        pd.Timestamp(windows["validation"]["start"]),
    )
    validation_end, test_start = (
        pd.Timestamp(windows["validation"]["end"]),
        pd.Timestamp(windows["test"]["start"]),
    )
    assert train_end < validation_start <= validation_end < test_start
    assert pd.Timestamp(windows["train"]["start"]) == pd.Timestamp(bike_frame["dteday"].min())
    assert pd.Timestamp(windows["test"]["end"]) == pd.Timestamp(bike_frame["dteday"].max())
    # The logged lineage says the same.
    logged = json.loads(download(runs, runs.first.mlflow_run_id, "lineage/windows.json").read_text())
    assert logged == windows
    # No test row precedes a training or validation row in the data itself.
    times = pd.to_datetime(bike_frame["dteday"])
    assert (times >= test_start).sum() == windows["test"]["rows"]
    assert ((times > train_end) & (times < validation_start)).sum() == 0


def test_second_run_keeps_the_champion_unless_better_by_the_margin(runs: TwoRuns) -> None:
    first, second = runs.first, runs.second
    assert second.model_version == "2"
    assert second.champion_version == "1"
    # The champion is scored on the same test window: the same numbers as when it was trained.
    assert second.champion_metrics == pytest.approx(first.metrics, rel=1e-9)
    new, old = second.metrics["rmse"], second.champion_metrics["rmse"]
    better_by_margin = (old - new) / old >= runs.config.promotion.min_improvement and new < old
    assert second.promoted is better_by_margin
    assert runs.champion_after_second == ("2" if better_by_margin else "1")
    client = MlflowClient(runs.uri)
    tag = client.get_model_version("bike-demand", "2").tags["decision"]
    assert tag == ("promoted" if better_by_margin else "rejected")
    assert str(client.get_model_version_by_alias("bike-demand", "challenger").version) == "2"


def test_same_seed_gives_identical_test_metrics(runs: TwoRuns) -> None:
    assert runs.first.metrics == runs.second.metrics
    assert runs.first.baseline_metrics == runs.second.baseline_metrics
    assert runs.first.leaderboard == runs.second.leaderboard
    # Identical metrics are no improvement: the champion stays.
    assert runs.second.promoted is False
    assert runs.champion_after_second == "1"


def test_registered_model_signature_and_reference_sample(runs: TwoRuns) -> None:
    client = MlflowClient(runs.uri)
    version = client.get_model_version("bike-demand", "1")
    info = mlflow.models.get_model_info("models:/bike-demand/1")
    assert info.signature is not None
    inputs = info.signature.inputs.input_names()
    schema = json.loads(version.tags["input_schema"])
    assert set(inputs) == FEATURES == set(schema)
    assert schema["season"] == schema["weathersit"] == "categorical"
    assert schema["temp"] == schema["hr"] == "numeric"

    reference_path = version.tags["reference_artifact"]
    assert reference_path == "reference/reference.parquet"
    reference = pd.read_parquet(download(runs, runs.first.mlflow_run_id, reference_path))
    train_rows = runs.first.windows["train"]["rows"] + runs.first.windows["validation"]["rows"]
    assert len(reference) == min(runs.config.mlflow.reference_rows, train_rows)
    assert len(reference) <= runs.config.mlflow.reference_rows
    assert "cnt" in reference.columns and FEATURES <= set(reference.columns)
    assert reference["cnt"].notna().all()
    assert reference["dteday"].max() < pd.Timestamp(runs.first.windows["test"]["start"])


def test_cli_subprocess_with_local_defaults(bike_csv: Path, tmp_path: Path) -> None:
    """A fresh directory, no MLflow or Prefect settings: ephemeral Prefect, `.retrain/mlflow.db`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_HOME", "RETRAIN_DATA"}
    }
    env["PYTHONPATH"] = str(REPO)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "run",
            "--config",
            str(REPO / "configs" / "bike_sharing.yaml"),
            "--data",
            str(bike_csv),
            "--json",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["promoted"] is True
    assert summary["model_name"] == "bike-demand" and summary["model_version"] == "1"
    assert summary["metrics"]["rmse"] < 0.45 * summary["baseline_metrics"]["rmse"]
    bad_lines = [line for line in output.splitlines() if "ERROR" in line or "Traceback" in line]
    assert bad_lines == [], output
    store = tmp_path / ".retrain" / "mlflow.db"
    assert store.is_file()
    assert (tmp_path / ".retrain" / "prefect").is_dir()
    client = MlflowClient(f"sqlite:///{store}")
    assert str(client.get_model_version_by_alias("bike-demand", "champion").version) == "1"
    assert client.get_run(summary["mlflow_run_id"]).info.status == "FINISHED"
