"""Shared fixtures: the real data, a Prefect test harness, and a throwaway MLflow store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

# One OpenMP thread per process: the integration tests run Prefect and MLflow servers beside the
# flows, and HistGradientBoosting's spinning thread pool slows down by 100x when cores are shared.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from core.config import PipelineConfig, parse_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def bike_data_path() -> Path:
    """The real UCI Bike Sharing hourly file: `$RETRAIN_TEST_DATA` or `../shared/data/`."""
    configured = os.environ.get("RETRAIN_TEST_DATA")
    path = Path(configured) if configured else REPO.parent / "shared" / "data" / "bike_sharing_hourly.csv"
    if not path.is_file():
        pytest.fail(f"The bike-sharing data is missing at {path}; set RETRAIN_TEST_DATA to hour.csv")
    return path


@pytest.fixture(scope="session")
def bike_csv() -> Path:
    """Path of the real bike-sharing CSV."""
    return bike_data_path()


@pytest.fixture(scope="session")
def bike_frame(bike_csv: Path) -> pd.DataFrame:
    """The real bike-sharing table (do not modify it in tests)."""
    return pd.read_csv(bike_csv)


@pytest.fixture(scope="session", autouse=True)
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One temporary Prefect API for the whole session."""
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite MLflow store; the test runs in `tmp_path` so `.retrain/` lands there."""
    return use_isolated_store(monkeypatch, tmp_path)


def use_isolated_store(patch: pytest.MonkeyPatch, root: Path) -> str:
    """Work in `root` with a fresh SQLite MLflow store and download cache there; returns the URI."""
    patch.chdir(root)
    import mlflow

    uri = f"sqlite:///{root / 'mlflow.db'}"
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    # MLflow's process-wide URIs, which an earlier test's run may have set, win over the variable.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    patch.setenv("RETRAIN_CACHE_DIR", str(root / "cache"))
    patch.delenv("RETRAIN_DATA", raising=False)
    return uri


def make_config(source: str | Path, **overrides: Any) -> PipelineConfig:
    """A small, fast config; `overrides` replace top-level sections or keys."""
    raw: dict[str, Any] = {
        "name": "test-model",
        "task": "regression",
        "target": "y",
        "time_column": "day",
        "data": {"source": str(source)},
        "tuning": {"n_trials": 3, "subset_rows": 500},
        "split": {"min_rows": 10},
    }
    raw.update(overrides)
    return parse_config(raw)


def bike_config(source: str | Path, **overrides: Any) -> PipelineConfig:
    """The bundled bike-sharing config on a local copy, with a smaller tuning budget."""
    import yaml

    raw = yaml.safe_load((REPO / "configs" / "bike_sharing.yaml").read_text())
    raw["data"] = {"source": str(source)}
    raw["tuning"] = {"n_trials": 4, "subset_rows": 4000}
    raw.update(overrides)
    return parse_config(raw)


def synthetic_frame(rows: int = 400, seed: int = 0, task: str = "regression") -> pd.DataFrame:
    """A small dated table with a learnable target `y` (numeric `x1`, `x2`, categorical `color`)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.uniform(0, 10, size=rows)
    color = rng.choice(["red", "green", "blue"], size=rows)
    signal = 3 * x1 + x2 + np.where(color == "red", 5.0, 0.0)
    y = signal + rng.normal(scale=0.5, size=rows)
    if task == "classification":
        y = np.where(signal > np.median(signal), "high", "low")
    return pd.DataFrame(
        {
            "day": pd.date_range("2020-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"),
            "x1": x1,
            "x2": x2,
            "color": color,
            "y": y,
        }
    )


def hourly_frame(rows: int = 3000, seed: int = 0, signal: bool = True) -> pd.DataFrame:
    """Hourly rows whose target follows the hour of day (when `signal`) plus a weak feature."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=rows, freq="h")
    x1 = rng.normal(size=rows)
    hourly = 10 * np.sin(2 * np.pi * times.hour / 24) if signal else 0.0
    return pd.DataFrame(
        {
            "day": times.strftime("%Y-%m-%d %H:%M:%S"),
            "x1": x1,
            "color": rng.choice(["red", "blue"], size=rows),
            "y": hourly + x1 + rng.normal(scale=0.5, size=rows),
        }
    )


def received_events(event: str, resource_id: str, timeout: float = 15.0, expect: bool = True) -> list[dict]:
    """Events the Prefect API really stored (read back through its /events/filter endpoint).

    Waits up to `timeout` seconds for at least one when `expect`, else drains and reads once.
    """
    import time

    from prefect.client.orchestration import get_client
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=10)
    body = {
        "filter": {
            "event": {"name": [event]},
            "resource": {"id": [resource_id]},
            "occurred": {"since": "2000-01-01T00:00:00Z"},
        },
        "limit": 50,
    }
    deadline = time.monotonic() + (timeout if expect else 2.0)
    with get_client(sync_client=True) as client:
        while True:
            response = client._client.post("/events/filter", json=body)
            response.raise_for_status()
            events = response.json()["events"]
            if (events and expect) or time.monotonic() > deadline:
                return events
            time.sleep(0.5)


def run_concurrently(commands: list[list[str]], env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    """Start every command at once and return each one's `--json` summary (exit 0 asserted)."""
    import json
    import subprocess

    started = [
        subprocess.Popen(c, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    summaries = []
    for process in started:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, f"{process.args} exited {process.returncode}:\n{err[-4000:]}"
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    return summaries


def assert_one_winner(summaries: list[dict[str, Any]], registry: Any, name: str) -> None:
    """Of identical runs that raced for a model without a champion, exactly one promoted.

    A loser either found its comparison stale (the champion moved while it ran), or, when it started
    after the winner promoted, compared against an identical model or registered nothing because
    its data and config were the champion's: none may win.
    """
    winners = [s for s in summaries if s["promoted"]]
    assert len(winners) == 1, [s["decision"] for s in summaries]
    losers = [s for s in summaries if not s["promoted"]]
    reasons = [s["decision"] for s in losers]
    expected = ("champion moved to version", "not better by the margin", "identical to the champion")
    assert all(any(e in r for e in expected) for r in reasons), reasons
    model = registry.get_registered_model(name)
    aliases = {alias: str(version) for alias, version in model.aliases.items()}
    assert aliases["champion"] == winners[0]["model_version"]
    assert "previous-champion" not in aliases
    decisions = {
        str(v.version): v.tags.get("decision") for v in registry.search_model_versions(f"name = '{name}'")
    }
    registered = [s for s in losers if s["registered"]]
    assert sorted(decisions.values()) == ["promoted"] + ["rejected"] * len(registered)


def write_tiny_cli_config(folder: Path, name: str, **extra: Any) -> Path:
    """A synthetic table and a fast linear-only config for `retrain` subprocesses, in `folder`."""
    import yaml

    synthetic_frame(rows=600).to_csv(folder / "data.csv", index=False)
    config = {
        "name": name,
        "task": "regression",
        "target": "y",
        "time_column": "day",
        "data": {"source": str(folder / "data.csv")},
        "candidates": {"linear": {}},
        "split": {"min_rows": 10},
        **extra,
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder / "config.yaml"


def cli_json(*args: str) -> dict[str, Any]:
    """Run `retrain <args>` in-process; exit 0 asserted, the last stdout line parsed as JSON."""
    import json

    from typer.testing import CliRunner

    from cli.app import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@contextmanager
def isolated_cli_store(tmp_path_factory: pytest.TempPathFactory, folder: str) -> Iterator[tuple[Path, str]]:
    """For a module fixture: a folder with its own MLflow store, seen by in-process `retrain` commands
    (on the session's Prefect API). Yields the folder and the store's URI; undone afterwards."""
    from prefect.settings import PREFECT_API_URL

    root = tmp_path_factory.mktemp(folder)
    patch = pytest.MonkeyPatch()
    uri = use_isolated_store(patch, root)
    patch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    try:
        yield root, uri
    finally:
        patch.undo()
