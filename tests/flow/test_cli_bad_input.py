"""The command line on bad input: exit 2, one readable message, and the champion left alone.

A champion is trained once for the module; every bad-input test then checks that its alias still
points at the same version and that no version was registered.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import Result
from mlflow import MlflowClient
from typer.testing import CliRunner

import flows.retrain  # noqa: F401 - configures Prefect's logging now, not inside a CliRunner's streams
from cli.app import app
from conftest import REPO, synthetic_frame, use_isolated_store
from core.results import RetrainSummary, json_keys

MODEL = "cli-model"
GOOD_CONFIG: dict[str, Any] = {
    "name": MODEL,
    "task": "regression",
    "target": "y",
    "time_column": "day",
    "data": {"source": "set-by-the-fixture.csv"},
    "candidates": {
        "linear": {},
        "random_forest": {"params": {"n_estimators": 20}, "search_space": {"max_depth": [4, 8]}},
    },
    "tuning": {"n_trials": 3, "subset_rows": 500},
    "split": {"min_rows": 10},
}
DATA_FIX = "Fix the data or the config (target, time_column, features) and run again."


@dataclass(frozen=True)
class Store:
    """The module's MLflow store, its trained champion and the files the tests reuse."""

    root: Path
    uri: str
    config: Path
    good_csv: Path
    champion_version: str
    champion_output: str


def write_config(path: Path, **overrides: Any) -> Path:
    raw = {**GOOD_CONFIG, **overrides}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, ["run", *args])


def flat(text: str) -> str:
    """Whitespace-normalised text, so wrapped console output compares as one line."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A module-wide MLflow store with a champion trained once on a small synthetic table."""
    from prefect.settings import PREFECT_API_URL

    root = tmp_path_factory.mktemp("cli")
    patch = pytest.MonkeyPatch()
    uri = use_isolated_store(patch, root)
    # The harness's API, also for `use_local_defaults` and for subprocesses.
    patch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    try:
        good_csv = write_frame(synthetic_frame(), root / "good.csv")
        config = write_config(root / "good.yaml", data={"source": str(good_csv)})
        result = invoke("--config", str(config), "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["promoted"] is True and summary["model_version"] == "1"
        champion = MlflowClient(uri).get_model_version_by_alias(MODEL, "champion")
        yield Store(root, uri, config, good_csv, str(champion.version), result.stdout)
    finally:
        patch.undo()


def versions(store: Store, name: str = MODEL) -> list[str]:
    return sorted(str(v.version) for v in MlflowClient(store.uri).search_model_versions(f"name = '{name}'"))


def assert_champion_unchanged(store: Store, before: list[str]) -> None:
    client = MlflowClient(store.uri)
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == store.champion_version
    assert versions(store) == before, "a version was registered by a failed run"


def run_bad(store: Store, *args: str, expect: list[str]) -> str:
    """Run the CLI on bad input: exit 2, every fragment of `expect` in stderr, champion unchanged."""
    before = versions(store)
    result = invoke(*args)
    stderr = flat(result.stderr)
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}"
    assert stderr.startswith("Error: "), stderr
    for fragment in expect:
        assert fragment in stderr, f"{fragment!r} not in {stderr!r}"
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert_champion_unchanged(store, before)
    return stderr


def bad_data(store: Store, tmp_path: Path, frame: pd.DataFrame, *expect: str) -> str:
    csv = write_frame(frame, tmp_path / "bad.csv")
    return run_bad(store, "--config", str(store.config), "--data", str(csv), expect=list(expect))


def test_champion_fixture_output_is_json(store: Store) -> None:
    summary = json.loads(store.champion_output.strip().splitlines()[-1])
    assert summary["model_name"] == MODEL
    assert summary["champion_metrics"] is None
    assert summary["metrics"]["rmse"] < summary["baseline_metrics"]["rmse"]


# ---- bad data ------------------------------------------------------------------------------


def test_missing_target_column(store: Store, tmp_path: Path) -> None:
    frame = synthetic_frame().drop(columns=["y"])
    bad_data(store, tmp_path, frame, "target column ['y'] not in the data", DATA_FIX)


def test_missing_feature_column_required_by_champion(store: Store, tmp_path: Path) -> None:
    frame = synthetic_frame().drop(columns=["x2"])
    stderr = bad_data(store, tmp_path, frame, "champion input column ['x2'] not in the data", DATA_FIX)
    assert "'x1'" not in stderr.split("not in the data")[0]


def test_numeric_column_turned_to_text(store: Store, tmp_path: Path) -> None:
    frame = synthetic_frame()
    frame["x1"] = [f"level-{i % 4}" for i in range(len(frame))]
    bad_data(
        store,
        tmp_path,
        frame,
        "column 'x1' should be numeric but 400 values are not numbers",
        "'level-0', 'level-1', 'level-2'",
        DATA_FIX,
    )


def test_categorical_column_turned_to_numbers(store: Store, tmp_path: Path) -> None:
    frame = synthetic_frame()
    frame["color"] = range(len(frame))
    bad_data(store, tmp_path, frame, "column 'color' is numeric here but the champion expects categorical")


def test_empty_file(store: Store, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    run_bad(
        store,
        "--config",
        str(store.config),
        "--data",
        str(empty),
        expect=[f"The data file {empty} is empty", "Point at a CSV or Parquet file."],
    )


def test_header_only(store: Store, tmp_path: Path) -> None:
    frame = synthetic_frame().head(0)
    bad_data(
        store,
        tmp_path,
        frame,
        "The data has no rows (only the header with 5 columns)",
        "Point the config at a file or query that returns data.",
    )


def test_too_few_rows_for_the_split(store: Store, tmp_path: Path) -> None:
    bad_data(
        store,
        tmp_path,
        synthetic_frame(rows=40),
        "Too few rows for the split: 40 rows",
        "below split.min_rows=10",
        "lower split.min_rows",
    )


def test_target_all_missing(store: Store, tmp_path: Path) -> None:
    frame = synthetic_frame()
    frame["y"] = float("nan")
    bad_data(store, tmp_path, frame, "target 'y' is empty (all values are missing)", DATA_FIX)


def test_constant_target(store: Store, tmp_path: Path) -> None:
    frame = synthetic_frame()
    frame["y"] = 3.5
    bad_data(store, tmp_path, frame, "target 'y' is constant (3.5)", DATA_FIX)


def test_classification_target_with_one_class(store: Store, tmp_path: Path) -> None:
    frame = synthetic_frame(task="classification")
    frame["y"] = "high"
    csv = write_frame(frame, tmp_path / "one_class.csv")
    config = write_config(
        tmp_path / "clf.yaml",
        name="cli-clf",
        task="classification",
        data={"source": str(csv)},
        candidates={"logistic": {}},
    )
    run_bad(store, "--config", str(config), expect=["classification target 'y' has a single class", DATA_FIX])
    assert versions(store, "cli-clf") == []


def test_text_in_numeric_column(store: Store, tmp_path: Path) -> None:
    frame = synthetic_frame()
    frame["x2"] = frame["x2"].astype(object)
    frame.loc[[5, 17, 90], "x2"] = ["unknown", "twelve", "7,5"]
    bad_data(
        store,
        tmp_path,
        frame,
        "column 'x2' should be numeric but 3 values are not numbers (e.g. 'unknown', 'twelve', '7,5')",
        DATA_FIX,
    )


def test_unparseable_time_column(store: Store, tmp_path: Path) -> None:
    frame = synthetic_frame()
    frame.loc[[10, 11], "day"] = ["next tuesday", "2024-13-45"]
    bad_data(
        store,
        tmp_path,
        frame,
        "time column 'day' has 2 values that are not dates (e.g. 'next tuesday', '2024-13-45')",
        DATA_FIX,
    )


def test_duplicated_column_names(store: Store, tmp_path: Path) -> None:
    frame = synthetic_frame()
    csv = tmp_path / "dupes.csv"
    text = frame.to_csv(index=False).replace("day,x1,x2,color,y", "day,x1,x2,color,y,x1", 1)
    csv.write_text(text)
    run_bad(
        store,
        "--config",
        str(store.config),
        "--data",
        str(csv),
        expect=["repeats the column names ['x1']", "Rename the columns so that each name appears once."],
    )


def test_column_names_with_brackets_are_printed_verbatim(store: Store, tmp_path: Path) -> None:
    """Messages are plain text: `temp[c]` must not be read as console markup."""
    frame = synthetic_frame()
    frame["temp[c]"] = 1.0
    csv = tmp_path / "brackets.csv"
    csv.write_text(frame.to_csv(index=False).replace("temp[c]", "temp[c],temp[c]", 1))
    run_bad(
        store,
        "--config",
        str(store.config),
        "--data",
        str(csv),
        expect=["repeats the column names ['temp[c]']"],
    )
    frame = synthetic_frame().drop(columns=["y"]).rename(columns={"x1": "x[/b]"})
    bad_data(store, tmp_path, frame, "champion input column", "'day', 'x[/b]', 'x2', 'color'")


def test_binary_file(store: Store, tmp_path: Path) -> None:
    binary = tmp_path / "data.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    run_bad(
        store,
        "--config",
        str(store.config),
        "--data",
        str(binary),
        expect=[f"The data file {binary} is binary, not CSV text", "Use a .csv or .parquet file"],
    )


@pytest.mark.parametrize(
    "content",
    [
        bytes(random.Random(0).getrandbits(8) or 1 for _ in range(4096)),  # random bytes, no NUL
        synthetic_frame().rename(columns={"color": "col\u00e9r"}).to_csv(index=False).encode("latin-1"),
    ],
    ids=["random-bytes", "latin-1-header"],
)
def test_file_that_is_not_utf8_text(store: Store, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    run_bad(
        store,
        "--config",
        str(store.config),
        "--data",
        str(path),
        expect=[f"The data file {path} is not UTF-8 text", "Save the file as UTF-8 CSV"],
    )


def test_excel_utf8_export_with_a_byte_order_mark_is_read(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + synthetic_frame().to_csv(index=False).encode())
    result = invoke("--config", str(store.config), "--data", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["model_name"] == MODEL


@pytest.mark.parametrize("column", ["x2", "y"], ids=["feature", "target"])
def test_infinite_values(store: Store, tmp_path: Path, column: str) -> None:
    frame = synthetic_frame()
    frame.loc[[3, 7], column] = [np.inf, -np.inf]
    bad_data(store, tmp_path, frame, f"column '{column}' has 2 infinite values (inf or -inf)", DATA_FIX)


def test_corrupt_parquet_file(store: Store, tmp_path: Path) -> None:
    broken = tmp_path / "data.parquet"
    broken.write_text("this is not parquet\n")
    run_bad(
        store,
        "--config",
        str(store.config),
        "--data",
        str(broken),
        expect=[f"The data file {broken} cannot be read", "Check that it is a valid CSV or Parquet file."],
    )


def test_missing_data_path(store: Store, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "data.csv"
    run_bad(
        store,
        "--config",
        str(store.config),
        "--data",
        str(missing),
        expect=[f"The data file {missing} does not exist", "--data / RETRAIN_DATA"],
    )


def test_data_too_large_for_the_memory_limit(store: Store, tmp_path: Path) -> None:
    big = write_frame(synthetic_frame(60_000), tmp_path / "big.csv")
    config = write_config(tmp_path / "c.yaml", data={"source": str(big), "memory_limit_mb": 2})
    run_bad(
        store,
        "--config",
        str(config),
        expect=[
            f"The data file {big} (5 columns, about",
            "MB to train on, but data.memory_limit_mb allows 2 MB",
            "use a machine with more memory",
        ],
    )


def test_unreachable_dask_scheduler(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tasks.tune.DASK_CONNECT_TIMEOUT", "3s")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run_bad(
        store,
        "--config",
        str(store.config),
        "--dask-address",
        f"tcp://127.0.0.1:{port}",
        expect=[f"Could not connect to the Dask scheduler at tcp://127.0.0.1:{port}", "--dask-address"],
    )


# ---- bad config ----------------------------------------------------------------------------


def test_unknown_task(store: Store, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", task="forecasting", data={"source": str(store.good_csv)})
    run_bad(
        store,
        "--config",
        str(config),
        expect=[
            f"The config {config} is invalid",
            "unknown task 'forecasting' (use 'regression' or 'classification')",
            "Fix these keys",
        ],
    )


def test_unknown_config_keys(store: Store, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        learning_rate=0.1,
        data={"source": str(store.good_csv)},
        tuning={"n_trails": 3},
    )
    run_bad(
        store,
        "--config",
        str(config),
        expect=["unknown key 'learning_rate'", "unknown key 'tuning.n_trails'", "Fix these keys"],
    )


def test_missing_config_file(store: Store, tmp_path: Path) -> None:
    missing = tmp_path / "no-such.yaml"
    run_bad(
        store,
        "--config",
        str(missing),
        expect=[f"The config file {missing} does not exist", "Pass an existing YAML file with --config."],
    )


def test_unset_environment_variable(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETRAIN_TEST_UNSET_SOURCE", raising=False)
    config = write_config(tmp_path / "c.yaml", data={"source": "${RETRAIN_TEST_UNSET_SOURCE}"})
    run_bad(
        store,
        "--config",
        str(config),
        expect=[
            "refers to environment variables that are not set: RETRAIN_TEST_UNSET_SOURCE",
            "Export them before running",
        ],
    )


def test_retrain_data_overrides_config_source(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = tmp_path / "from-env.csv"
    monkeypatch.setenv("RETRAIN_DATA", str(from_env))
    stderr = run_bad(
        store, "--config", str(store.config), expect=[f"The data file {from_env} does not exist"]
    )
    assert str(store.good_csv) not in stderr


# ---- other outcomes ------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_tracking_server_is_exit_1(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    before = versions(store)
    started = time.monotonic()
    result = invoke("--config", str(store.config))
    assert time.monotonic() - started < 60
    assert result.exit_code == 1, result.output
    stderr = flat(result.stderr)
    assert stderr.startswith("Error: the run failed: MlflowException"), stderr
    assert f"127.0.0.1:{port}" in stderr
    assert "Traceback" not in result.output
    assert_champion_unchanged(store, before)


def test_json_summary_and_data_option_precedence(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--data` beats RETRAIN_DATA, which beats data.source; the last stdout line is the JSON."""
    # Another margin than the champion's config: the same recipe again would register nothing.
    config = write_config(
        tmp_path / "c.yaml",
        data={"source": str(tmp_path / "config-source.csv")},
        promotion={"min_improvement": 0.02},
    )
    monkeypatch.setenv("RETRAIN_DATA", str(tmp_path / "env-source.csv"))
    result = invoke("--config", str(config), "--data", str(store.good_csv), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary) == set(json_keys(RetrainSummary))
    # Same data and seed as the champion: the same model, not better by the margin.
    assert summary["promoted"] is False
    assert summary["model_name"] == MODEL
    assert int(summary["model_version"]) > int(store.champion_version)
    assert "not better by the margin, champion kept" in summary["decision"]
    assert summary["metrics"] == pytest.approx(summary["champion_metrics"])
    assert set(summary["metrics"]) == {"rmse", "mae", "r2", "mape"}
    assert summary["metrics"]["rmse"] < summary["baseline_metrics"]["rmse"]
    assert len(summary["mlflow_run_id"]) == 32
    client = MlflowClient(store.uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.tags["prefect_flow_run_id"] == summary["prefect_flow_run_id"]
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == store.champion_version


# ---- end to end in a subprocess ------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_subprocess_exit_code_and_traceback(store: Store, tmp_path: Path, debug: bool) -> None:
    csv = write_frame(synthetic_frame().drop(columns=["y"]), tmp_path / "no_target.csv")
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri, "PYTHONPATH": str(REPO)}
    before = versions(store)
    completed = subprocess.run(
        [sys.executable, "-m", "cli", "run", "--config", str(store.config), "--data", str(csv)]
        + (["--debug"] if debug else []),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 2, completed.stderr
    assert "target column ['y'] not in the data" in flat(completed.stderr)
    assert ("Traceback" in completed.stderr) is debug, completed.stderr
    if not debug:
        assert "DataError" not in completed.stderr, completed.stderr
        assert "Traceback" not in completed.stdout
    assert_champion_unchanged(store, before)
