"""Backtest: argument checks, policy decisions, and the replay on real bike-sharing data."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from conftest import REPO, make_config, synthetic_frame
from flows.cli import app
from tasks.backtest import (
    ModelSpec,
    Policy,
    PolicyState,
    parse_duration,
    parse_policies,
    plan_windows,
    summarize,
    wants_retrain,
)
from tasks.errors import BadInputError
from tasks.validate import DataSchema


def test_parse_policies_and_durations() -> None:
    policies = parse_policies("never, every:28d,drift")
    assert [p.name for p in policies] == ["never", "every:28d", "drift"]
    assert policies[1].interval == pd.Timedelta(days=28)
    assert parse_duration("12h") == pd.Timedelta(hours=12)
    assert parse_duration("2w") == pd.Timedelta(days=14)
    with pytest.raises(BadInputError, match="unknown policy 'sometimes'"):
        parse_policies("never,sometimes")
    with pytest.raises(BadInputError, match="repeated"):
        parse_policies("never,never")
    for bad in ("7", "0d", "7y", "every"):
        with pytest.raises(BadInputError, match="is not a duration"):
            parse_duration(bad)


def test_plan_windows_default_start_and_errors() -> None:
    times = pd.Series(pd.date_range("2020-01-01", "2020-12-31", freq="D"))
    begin, windows = plan_windows(times, None, pd.Timedelta(days=7))
    assert begin == times.min() + (times.max() - times.min()) * 0.3
    assert windows[0][0] == begin and all(b - a == pd.Timedelta(days=7) for a, b in windows[:-1])
    assert pd.Timedelta(0) < windows[-1][1] - windows[-1][0] <= pd.Timedelta(days=7)
    assert windows[-1][1] == times.max() + pd.Timedelta(days=1)  # the last day is replayed too
    with pytest.raises(BadInputError, match="outside the data"):
        plan_windows(times, "2030-01-01", pd.Timedelta(days=7))
    with pytest.raises(BadInputError, match="outside the data"):
        plan_windows(times, "2019-01-01", pd.Timedelta(days=7))
    with pytest.raises(BadInputError, match="larger than the data after the start"):
        plan_windows(times, "2020-12-01", pd.Timedelta(days=60))
    with pytest.raises(BadInputError, match="is not a date"):
        plan_windows(times, "someday", pd.Timedelta(days=7))


def state(policy: Policy, trained_at: str) -> PolicyState:
    return PolicyState(
        policy,
        model=None,
        spec=ModelSpec("linear", {}, 1.0),
        reference=pd.DataFrame(),
        trained_at=pd.Timestamp(trained_at),
    )


def test_interval_and_never_decisions() -> None:
    schema = DataSchema("y", [], [])
    config = make_config("unused.csv")
    every = state(Policy("every:28d", pd.Timedelta(days=28)), "2020-01-01")
    assert not wants_retrain(every, pd.DataFrame(), 1.0, pd.Timestamp("2020-01-28"), schema, config)
    assert wants_retrain(every, pd.DataFrame(), 1.0, pd.Timestamp("2020-01-29"), schema, config)
    never = state(Policy("never"), "2020-01-01")
    assert not wants_retrain(never, pd.DataFrame(), 99.0, pd.Timestamp("2021-01-01"), schema, config)


def test_drift_policy_respects_the_cooldown() -> None:
    reference = synthetic_frame(rows=2000, seed=0)
    shifted = synthetic_frame(rows=300, seed=1).assign(x1=lambda f: f["x1"] + 5, x2=lambda f: f["x2"] + 8)
    schema = DataSchema("y", ["x1", "x2"], ["color"], "day")
    config = make_config("unused.csv", drift={"cooldown_hours": 48})
    drift = state(Policy("drift"), "2020-01-01")
    drift.reference = reference
    assert wants_retrain(drift, shifted, 1.0, pd.Timestamp("2020-02-01"), schema, config)
    assert not wants_retrain(drift, shifted, 1.0, pd.Timestamp("2020-02-02"), schema, config)  # cooling
    assert wants_retrain(drift, shifted, 1.0, pd.Timestamp("2020-02-04"), schema, config)
    calm = state(Policy("drift"), "2020-01-01")
    calm.reference = reference
    quiet = synthetic_frame(rows=300, seed=2)  # same distribution, metric as expected
    assert not wants_retrain(calm, quiet, 1.0, pd.Timestamp("2020-03-01"), schema, config)
    assert calm.verdicts == [False] and drift.verdicts == [True, True, True]


def test_summarize() -> None:
    table = pd.DataFrame(
        {
            "policy": ["never", "drift", "never", "drift"],
            "rmse": [2.0, 1.0, 4.0, 1.0],
            "retrained": [False, True, False, False],
            "train_seconds": [0.0, 1.5, 0.0, 0.0],
        }
    )
    assert summarize(table, "rmse") == {
        "never": {"mean_metric": 3.0, "retrains": 0, "train_seconds": 0.0},
        "drift": {"mean_metric": 1.0, "retrains": 1, "train_seconds": 1.5},
    }


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
            "2012-01-01",
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
    assert policies["every:28d"]["retrains"] == 13
    assert policies["drift"]["retrains"] >= 1
    assert policies["every:28d"]["mean_metric"] < policies["never"]["mean_metric"]
    assert policies["drift"]["mean_metric"] < policies["never"]["mean_metric"]

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
    assert len(table) == 3 * 53 and table["window_start"].min() == "2012-01-01"
    assert table.groupby("policy")["retrained"].sum().to_dict() == {
        p: v["retrains"] for p, v in policies.items()
    }
    width, height = png_size(Path(summary["plot"]))
    assert width >= 800 and height >= 400 and Path(summary["plot"]).stat().st_size > 30_000
    markdown = (out / "backtest.md").read_text()
    assert "| every:28d |" in markdown and "mean rmse" in markdown

    client = MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name("bike-demand-backtest")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(runs[0].info.run_id, "backtest")} == {
        "backtest/backtest.csv",
        "backtest/backtest.png",
        "backtest/backtest.md",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policies", "never,sometimes"], "unknown policy 'sometimes'"),
        (["--step", "400d", "--start", "2024-12-01"], "larger than the data after the start"),
        (["--start", "2015-01-01"], "outside the data"),
        (["--step", "fortnight"], "is not a duration"),
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
