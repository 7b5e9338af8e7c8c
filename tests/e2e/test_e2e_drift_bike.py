"""End to end on the real bike-sharing data: a 2011 champion, then 2011 and summer-2012 batches."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.app import app
from conftest import REPO, received_events, use_isolated_store

pytestmark = pytest.mark.slow
EVENT = "retrain.drift.detected"
DRIFT_KEYS = {
    "drift_detected",
    "share_drifted",
    "drifted_columns",
    "reasons",
    "performance",
    "event_emitted",
    "report_path",
    "mlflow_run_id",
}


@pytest.fixture(scope="module")
def bike_2011_champion(bike_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):
    """Workdir with a champion trained on 2011 only, and the batches to check."""
    work = tmp_path_factory.mktemp("drift-bike")
    patch = pytest.MonkeyPatch()
    use_isolated_store(patch, work)
    dates = pd.to_datetime(bike_frame["dteday"])
    bike_frame[dates < "2012-01-01"].to_csv(work / "y2011.csv", index=False)
    bike_frame[(dates >= "2011-02-01") & (dates < "2011-10-01")].sample(2000, random_state=0).to_csv(
        work / "inside.csv", index=False
    )
    bike_frame[(dates >= "2012-06-01") & (dates < "2012-09-01")].to_csv(work / "summer2012.csv", index=False)
    config = (
        (REPO / "configs" / "bike_sharing.yaml").read_text().replace("name: bike-demand", "name: bike-2011")
    )
    (work / "bike.yaml").write_text(config + "tuning:\n  n_trials: 4\n  subset_rows: 3000\n")
    runner = CliRunner()
    trained = runner.invoke(app, ["run", "--config", "bike.yaml", "--data", "y2011.csv", "--json"])
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout.strip().splitlines()[-1])["promoted"] is True
    yield work, runner
    patch.undo()


def check(runner: CliRunner, batch: str) -> dict:
    result = runner.invoke(app, ["drift", "--config", "bike.yaml", "--current", batch, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary) == DRIFT_KEYS
    return summary


def test_rows_from_inside_the_training_window_do_not_drift(bike_2011_champion) -> None:
    _, runner = bike_2011_champion
    summary = check(runner, "inside.csv")
    assert summary["drift_detected"] is False and summary["event_emitted"] is False
    assert summary["share_drifted"] < 0.5
    assert summary["performance"]["decay"] < 0.25
    assert received_events(EVENT, "retrain.model.bike-2011", expect=False) == []


def test_summer_2012_drifts_raises_the_event_and_writes_the_report(bike_2011_champion) -> None:
    _, runner = bike_2011_champion
    summary = check(runner, "summer2012.csv")
    assert summary["drift_detected"] is True and summary["event_emitted"] is True
    assert {"yr", "temp", "season"} <= set(summary["drifted_columns"])
    # 2012 demand grew: the 2011 champion underpredicts badly (the concept-drift signal).
    assert summary["performance"]["batch"] > 1.5 * summary["performance"]["champion_test"]
    report = Path(summary["report_path"])
    assert report.suffix == ".html" and report.stat().st_size > 50_000
    assert "Drift" in report.read_text(errors="ignore")[:2_000_000]
    events = received_events(EVENT, "retrain.model.bike-2011")
    assert len(events) == 1
    assert events[0]["payload"]["share_drifted"] == pytest.approx(summary["share_drifted"])
    assert events[0]["payload"]["report"] == report.as_uri()


def test_bad_current_batch_exits_2_naming_the_column(bike_2011_champion) -> None:
    work, runner = bike_2011_champion
    pd.read_csv(work / "summer2012.csv").drop(columns=["temp", "hum"]).to_csv(
        work / "broken.csv", index=False
    )
    result = runner.invoke(app, ["drift", "--config", "bike.yaml", "--current", "broken.csv"])
    assert result.exit_code == 2
    assert "'temp'" in result.output and "'hum'" in result.output
    missing = runner.invoke(app, ["drift", "--config", "bike.yaml", "--current", "nowhere.csv"])
    assert missing.exit_code == 2 and "does not exist" in missing.output
