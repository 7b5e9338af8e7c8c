"""`retrain backtest` refuses bad arguments with exit 2 and a message naming the problem."""

from __future__ import annotations

from pathlib import Path

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
