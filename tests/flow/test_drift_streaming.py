"""Flow tier for streamed drift checks: a large batch read in record batches gives the verdict the
whole batch gives, and its bad values are still bad input.

The streaming threshold and the record-batch size are lowered so that small files stream.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from conftest import make_config, synthetic_frame
from core.config import DataConfig
from core.errors import DataError
from flows.drift import drift_check_flow
from flows.retrain import retrain_flow

FAST = {"linear": {}}


@pytest.fixture
def trained(mlflow_store: str, tmp_path: Path, request: pytest.FixtureRequest):
    """A champion trained on 1,500 synthetic rows (a reference of more than 1,000 rows)."""
    history = synthetic_frame(rows=1500, seed=1)
    history.to_csv(tmp_path / "history.csv", index=False)
    name = f"stream-{request.node.name.replace('_', '-')}"[:60]
    config = make_config(tmp_path / "history.csv", name=name, candidates=FAST)
    assert retrain_flow(config).promoted is True
    return config


def streaming(monkeypatch: pytest.MonkeyPatch, batch_rows: int = 256) -> None:
    import tasks.ingest

    monkeypatch.setattr(tasks.ingest, "STREAM_ABOVE_ROWS", 100)
    monkeypatch.setattr(tasks.ingest, "STREAM_BATCH_ROWS", batch_rows)


def shifted_batch(rows: int, seed: int) -> pd.DataFrame:
    batch = synthetic_frame(rows=rows, seed=seed)
    batch["x1"] += 0.4
    batch["day"] = pd.date_range("2024-01-01", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S")
    return batch


def test_streamed_batch_gives_the_whole_batch_verdict(
    trained, tmp_path: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = shifted_batch(2000, seed=8)
    batch.to_csv(tmp_path / "batch.csv", index=False)
    whole = drift_check_flow(trained, DataConfig(source=str(tmp_path / "batch.csv")))

    streaming(monkeypatch)
    client = MlflowClient(mlflow_store)
    batch.to_parquet(tmp_path / "batch.parquet", index=False)
    for name in ("batch.parquet", "batch.csv"):
        streamed = drift_check_flow(trained, DataConfig(source=str(tmp_path / name)))
        assert streamed.skipped is False
        assert streamed.batch_rows == whole.batch_rows == 2000
        assert streamed.drifted_columns == whole.drifted_columns and "x1" in whole.drifted_columns
        assert streamed.drift_detected == whole.drift_detected
        for exact, summarised in zip(whole.columns, streamed.columns, strict=True):
            assert summarised["method"] == exact["method"]
            assert summarised["score"] == pytest.approx(exact["score"], abs=1e-3)
            assert summarised["borderline"] is False
        # x1 is continuous: its streamed score comes from the grid, a hair off the exact one.
        scores = [client.get_run(r.mlflow_run_id).data.metrics["drift_score.x1"] for r in (whole, streamed)]
        assert scores[0] != scores[1] and scores[0] == pytest.approx(scores[1], abs=1e-3)
        assert streamed.target_drift["score"] == pytest.approx(whole.target_drift["score"], abs=1e-3)
        # The bounded sample holds all 2,000 rows here, so the champion's metric is the same.
        assert streamed.performance.batch == pytest.approx(whole.performance.batch, rel=1e-4)
    # The reference summaries were logged beside the reference sample in the champion's run.
    champion = client.get_model_version_by_alias(trained.name, "champion")
    logged = {a.path for a in client.list_artifacts(champion.run_id, "reference")}
    assert logged == {"reference/reference.parquet", "reference/summary.json"}


def test_bad_values_in_a_later_record_batch_are_bad_input(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    streaming(monkeypatch)
    batch = shifted_batch(1200, seed=9)
    batch.loc[1100, "x1"] = float("inf")
    batch.to_parquet(tmp_path / "inf.parquet", index=False)
    with pytest.raises(DataError, match=r"column 'x1' has 1 infinite values"):
        drift_check_flow(trained, DataConfig(source=str(tmp_path / "inf.parquet")))

    text = shifted_batch(1200, seed=9).astype({"x1": object})
    text.loc[1100, "x1"] = "not a number"
    text.to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(DataError, match=r"does not fit its column's type.*not a number"):
        drift_check_flow(trained, DataConfig(source=str(tmp_path / "text.csv")))
