"""Prefect tasks of the search: one trial, the shared tuning data, and the runner trials fan out on.

Threads in this process by default; with `tuning.runner: dask`, prefect-dask's `DaskTaskRunner`
on an existing cluster or a local one. Which runner ran the trials never changes the models.
"""

from __future__ import annotations

import logging
import os

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from core.config import PipelineConfig, TuningConfig, expand_env
from core.errors import BadInputError
from core.search import Trial, TrialSpec, TuningData, fit_and_score, trials_at_once_on_threads

DASK_CONNECT_TIMEOUT = "20s"


@task(
    name="trial",
    cache_policy=NO_CACHE,
    persist_result=False,
    task_run_name="{spec.candidate}-round{spec.round}",
)
def run_trial(data: TuningData, config: PipelineConfig, spec: TrialSpec, threads: int | None = None) -> Trial:
    """Fit one configuration on the recent rows and score it on the validation window."""
    return fit_and_score(data, config, spec, threads)


@task(name="share-tuning-data", cache_policy=NO_CACHE, persist_result=False)
def share_tuning_data(data: TuningData) -> TuningData:
    """Hand the tuning data to the task runner once (a no-op on threads)."""
    return data


def tuning_task_runner(tuning: TuningConfig) -> TaskRunner:
    """The task runner the trials fan out through.

    Threads in this process by default; with `runner: dask`, prefect-dask's `DaskTaskRunner` on
    the cluster at `dask_address`, or on a local cluster of `dask_workers` processes (one thread
    each; Dask limits their OpenMP and BLAS threads to one).
    """
    if tuning.runner == "threads":
        return ThreadPoolTaskRunner(max_workers=trials_at_once_on_threads(tuning))
    from prefect_dask import DaskTaskRunner

    logging.getLogger("distributed").setLevel(logging.WARNING)  # not every worker start and stop
    if tuning.dask_address:
        return DaskTaskRunner(
            address=expand_env(tuning.dask_address, os.environ, "tuning.dask_address"),
            client_kwargs={"timeout": DASK_CONNECT_TIMEOUT},
        )
    workers = tuning.dask_workers or os.cpu_count() or 1
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "dashboard_address": None}
    )


def connect_task_runner(tuning: TuningConfig) -> None:
    """Connect the running flow's Dask runner now, before any trial; unreachable is bad input.

    prefect-dask connects lazily, so without this the first trial would fail with a bare timeout.
    """
    if tuning.runner != "dask":
        return
    try:
        get_run_context().task_runner.client  # noqa: B018 - the property connects
    except (OSError, TimeoutError) as exc:
        raise BadInputError(
            f"Could not connect to the Dask scheduler at {tuning.dask_address} ({exc})",
            "Start the scheduler and its workers, or fix --dask-address / tuning.dask_address "
            "(tcp://host:8786); drop it to tune on threads in this process.",
        ) from None
