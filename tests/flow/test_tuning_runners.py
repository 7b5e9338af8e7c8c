"""Tuning fan-out: threads by default, Dask on request, and the same models whichever ran them.

The Dask tests start real local clusters of two worker processes (no network beyond loopback).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner
from typer.testing import CliRunner

from cli.app import app
from conftest import make_config, synthetic_frame
from core.config import PipelineConfig
from core.errors import ConfigError
from flows.retrain import retrain_flow
from tasks.tune import tuning_task_runner

CANDIDATES = {
    "linear": {},
    "hist_gradient_boosting": {
        "params": {"max_iter": 30},
        "search_space": {"learning_rate": [0.05, 0.1, 0.3], "max_leaf_nodes": [7, 15]},
    },
}
THIS_PROCESS = f"{socket.gethostname()}/{os.getpid()}"


def runner_config(source: Path, name: str, **tuning: Any) -> PipelineConfig:
    return make_config(
        source,
        name=name,
        candidates=CANDIDATES,
        tuning={"n_trials": 6, "subset_rows": 400, "seed": 7, **tuning},
    )


def trial_runs(uri: str, parent_run_id: str) -> list[dict[str, Any]]:
    """What MLflow holds for each trial: the fields that must not depend on the runner."""
    client = MlflowClient(uri)
    runs = client.search_runs(
        [client.get_run(parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        max_results=500,
    )
    return sorted(
        (
            {
                "candidate": run.data.tags["candidate"],
                "params": run.data.params,
                "score": round(run.data.metrics["validation_rmse"], 9),
                "executor": run.data.tags["executor"],
            }
            for run in runs
        ),
        key=lambda trial: (trial["candidate"], sorted(trial["params"].items())),
    )


def without_executor(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in trial.items() if k != "executor"} for trial in trials]


def assert_same_models(first: dict[str, Any], second: dict[str, Any]) -> None:
    assert [(r["candidate"], r["best_params"], r["trials"]) for r in first.leaderboard] == [
        (r["candidate"], r["best_params"], r["trials"]) for r in second.leaderboard
    ]
    for a, b in zip(first.leaderboard, second.leaderboard, strict=True):
        assert a["validation_rmse"] == pytest.approx(b["validation_rmse"], rel=1e-9)
    assert first.best_candidate == second.best_candidate
    assert first.metrics == pytest.approx(second.metrics, rel=1e-9)
    # linear: its 5 alphas on 400 rows, then the best on all 490; boosting: 6 configurations on
    # 400 rows, where it misses the linear model's cut and leaves the race
    assert first.trials == second.trials == 5 + 1 + 6


def tags(uri: str, run_id: str) -> dict[str, str]:
    return MlflowClient(uri).get_run(run_id).data.tags


@pytest.mark.slow
def test_threads_and_an_existing_dask_cluster_give_the_same_leaderboard(
    tmp_path: Path, mlflow_store: str
) -> None:
    from distributed import Client, LocalCluster

    csv = tmp_path / "data.csv"
    synthetic_frame(700, seed=3).to_csv(csv, index=False)
    on_threads = retrain_flow(runner_config(csv, "runners-threads"))

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            worker_pids = set(client.run(os.getpid).values())
        config = runner_config(csv, "runners-dask", runner="dask", dask_address=cluster.scheduler_address)
        on_dask = retrain_flow(config)

    assert_same_models(on_threads, on_dask)
    threads_trials = trial_runs(mlflow_store, on_threads.mlflow_run_id)
    dask_trials = trial_runs(mlflow_store, on_dask.mlflow_run_id)
    assert without_executor(threads_trials) == without_executor(dask_trials)
    assert {t["executor"] for t in threads_trials} == {THIS_PROCESS}
    executors = {t["executor"] for t in dask_trials}
    assert {int(e.rsplit("/", 1)[1]) for e in executors} == worker_pids  # both workers took trials
    first, second = (
        tags(mlflow_store, on_threads.mlflow_run_id),
        tags(mlflow_store, on_dask.mlflow_run_id),
    )
    assert first["data_sha256"] == second["data_sha256"]


@pytest.mark.slow
def test_cli_dask_workers_runs_trials_on_a_local_cluster(tmp_path: Path, mlflow_store: str) -> None:
    from prefect.settings import PREFECT_API_URL

    csv = tmp_path / "data.csv"
    synthetic_frame(700, seed=3).to_csv(csv, index=False)
    config = tmp_path / "config.yaml"
    raw = runner_config(csv, "runners-cli").model_dump(mode="json")
    config.write_text(json.dumps(raw))
    os.environ["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    try:
        result = CliRunner().invoke(app, ["run", "--config", str(config), "--dask-workers", "2", "--json"])
    finally:
        del os.environ["PREFECT_API_URL"]
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    trials = trial_runs(mlflow_store, summary["mlflow_run_id"])
    executors = {t["executor"] for t in trials}
    assert len(executors) == 2 and THIS_PROCESS not in executors
    assert len(trials) == 5 + 1 + 6


def test_a_lone_trial_runs_in_the_flows_thread_on_every_core(
    tmp_path: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import tasks.tune

    seen: list[tuple[int, int | None, bool]] = []
    fit_and_score = tasks.tune.fit_and_score

    def recording(data: Any, config: Any, spec: Any, threads: int | None = None) -> Any:
        seen.append((spec.round, threads, threading.current_thread() is threading.main_thread()))
        return fit_and_score(data, config, spec, threads)

    monkeypatch.setattr(tasks.tune, "fit_and_score", recording)
    csv = tmp_path / "data.csv"
    synthetic_frame(700, seed=3).to_csv(csv, index=False)
    summary = retrain_flow(runner_config(csv, "runners-lone-trial"))
    # The first round's 11 trials share the runner's threads, one OpenMP thread each; the linear
    # model's lone trial on all rows runs in the flow's (main) thread with OpenMP left as is.
    assert sorted(seen) == [(0, 1, False)] * 11 + [(1, None, True)]
    assert summary.trials == 12


def test_runner_choice_follows_the_config(tmp_path: Path) -> None:
    threads = tuning_task_runner(runner_config(tmp_path, "x").tuning)
    assert isinstance(threads, ThreadPoolTaskRunner)
    assert threads._max_workers == (os.cpu_count() or 1)
    local = tuning_task_runner(runner_config(tmp_path, "x", runner="dask", dask_workers=3).tuning)
    assert isinstance(local, DaskTaskRunner) and local.cluster_kwargs["n_workers"] == 3
    remote = tuning_task_runner(
        runner_config(tmp_path, "x", runner="dask", dask_address="tcp://10.0.0.5:8786").tuning
    )
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"


@pytest.mark.parametrize(
    ("tuning", "message"),
    [
        ({"dask_address": "tcp://h:8786"}, "need tuning.runner: dask"),
        ({"runner": "dask", "dask_address": "tcp://h:8786", "dask_workers": 2}, "not both"),
        ({"runner": "dask", "dask_address": "h:8786"}, "is not a scheduler address"),
        ({"runner": "spark"}, "tuning.runner"),
    ],
)
def test_bad_runner_settings_are_config_errors(tmp_path: Path, tuning: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        runner_config(tmp_path, "x", **tuning)
