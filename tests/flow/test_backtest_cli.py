"""`retrain backtest` refuses bad arguments with exit 2 and a message naming the problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from conftest import synthetic_frame


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policies", "never,sometimes"], "unknown policy 'sometimes'"),
        (["--step", "400d", "--start", "2020-12-01"], "larger than the data after the start"),
        (["--start", "2015-01-01"], "outside the data"),
        (["--step", "fortnight"], "is not a duration"),
        (["--tune-trigger", "--step", "60d", "--start", "2020-10-01"], "needs at least 4 windows"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str, mlflow_store: str, tmp_path: Path) -> None:
    data = synthetic_frame(rows=400)
    data.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "c.yaml").write_text(
        "name: bt-bad\ntask: regression\ntarget: y\ntime_column: day\n"
        f"data:\n  source: {tmp_path / 'd.csv'}\n"
    )
    result = CliRunner().invoke(app, ["backtest", "--config", "c.yaml", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_tune_trigger_prints_the_drift_block_and_the_held_out_half(mlflow_store: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = 70 * 24
    temp, other = rng.uniform(0, 1, rows), rng.normal(size=rows)
    level = np.where(np.arange(rows) >= 50 * 24, 4.0, 0.0)  # the relation changes on day 50
    frame = pd.DataFrame(
        {
            "day": pd.date_range("2021-01-01", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S"),
            "temp": temp,
            "other": other,
            "y": 10 * temp + 2 * other + level + rng.normal(size=rows),
        }
    )
    frame.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "c.yaml").write_text(
        "name: bt-tune\ntask: regression\ntarget: y\ntime_column: day\n"
        f"data:\n  source: {tmp_path / 'd.csv'}\ncandidates:\n  linear: {{}}\n"
        "features:\n  datetime: false\n"
    )
    out = tmp_path / "bt"
    result = CliRunner().invoke(
        app,
        ["backtest", "--config", "c.yaml", "--start", "2021-01-22", "--step", "7d", "--tune-trigger"]
        + ["--out", str(out), "--json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["windows"] == 7
    assert list(summary["policies"]) == ["never", "every:7d", "every:14d", "every:28d", "every:56d", "drift"]
    drift = summary["policies"]["drift"]
    assert isinstance(drift["calendar_metric_at_same_retrains"], float)
    assert isinstance(drift["beats_calendar"], bool) and drift["retrains"] >= 1
    tuning = summary["tuning"]
    assert tuning["drift_yaml"].startswith("drift:\n  confidence: ")
    # 8 planned windows (the last, after the final hour, is empty and not scored): 4 and 4.
    assert tuning["search_windows"] == 4 and tuning["held_out_windows"] == 4
    assert set(tuning["held_out"]) == {
        "never",
        "every:7d",
        "every:14d",
        "every:28d",
        "every:56d",
        "drift (defaults)",
        "drift",
    }
    markdown = (out / "backtest.md").read_text()
    assert "```yaml\ndrift:\n  confidence:" in markdown and "Held-out half" in markdown
