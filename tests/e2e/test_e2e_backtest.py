"""End to end: `retrain backtest` replays half a year of real bike-sharing data and logs the evidence."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from cli.app import app
from conftest import REPO


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", header[16:24])


@pytest.mark.slow
def test_bike_sharing_policies_beat_never(bike_csv: Path, mlflow_store: str, tmp_path: Path) -> None:
    config = (REPO / "configs" / "bike_sharing.yaml").read_text() + (
        "candidates:\n  hist_gradient_boosting:\n    params: {max_iter: 150}\n"
        "tuning:\n  n_trials: 3\n  subset_rows: 4000\n"
    )
    (tmp_path / "bike.yaml").write_text(config)
    out = tmp_path / "bt"
    result = CliRunner().invoke(
        app,
        [
            "backtest",
            "--config",
            "bike.yaml",
            "--data",
            str(bike_csv),
            "--start",
            "2012-07-01",
            "--step",
            "7d",
            "--policies",
            "never,every:28d,drift",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    policies = summary["policies"]
    assert summary["metric"] == "rmse"
    assert policies["never"]["retrains"] == 0
    # 27 weekly windows from 2012-07-01; every 28 days retrains after every fourth window.
    assert policies["every:28d"]["retrains"] == (27 - 1) // 4
    assert summary["windows"] == 27
    assert policies["every:28d"]["mean_metric"] < policies["never"]["mean_metric"]
    # The trigger is placed against the calendar (never and every:28d) at its own retrain count.
    drift = policies["drift"]
    assert 1 <= drift["retrains"] <= 27 // 2
    calendar = [(0, policies["never"]["mean_metric"]), (6, policies["every:28d"]["mean_metric"])]
    expected = calendar[0][1] + (calendar[1][1] - calendar[0][1]) * min(drift["retrains"], 6) / 6
    assert drift["calendar_metric_at_same_retrains"] == pytest.approx(expected)
    assert drift["beats_calendar"] is (drift["mean_metric"] < expected)
    assert drift["mean_metric"] < policies["never"]["mean_metric"]
    assert policies["never"]["beats_calendar"] is None

    table = pd.read_csv(summary["table"])
    assert list(table.columns) == [
        "window_start",
        "window_end",
        "policy",
        "rows",
        "rmse",
        "retrained",
        "train_seconds",
    ]
    assert len(table) == 3 * 27 and table["window_start"].min() == "2012-07-01"
    assert table.groupby("policy")["retrained"].sum().to_dict() == {
        p: v["retrains"] for p, v in policies.items()
    }
    width, height = png_size(Path(summary["plot"]))
    assert width >= 800 and height >= 400 and Path(summary["plot"]).stat().st_size > 30_000
    markdown = (out / "backtest.md").read_text()
    assert "| every:28d |" in markdown and "mean rmse" in markdown
    assert "calendar at same retrains" in markdown

    client = MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name("bike-demand-backtest")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(runs[0].info.run_id, "backtest")} == {
        "backtest/backtest.csv",
        "backtest/backtest.png",
        "backtest/backtest.md",
    }
