"""The hyperparameter search: successive halving (or random search) over the catalogue's candidates.

Trials are tuned on the most recent training rows and scored on the validation window; the test
window is never part of it. A round's trials are independent fits, so whoever runs them (a plain
loop here, Prefect task runners in `flows/tuning.py`) only has to return them in the order given:
the ranking never depends on which executor finished first.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import ParameterGrid, ParameterSampler

from core.catalogue import fit_candidate, search_space
from core.config import PipelineConfig, TuningConfig
from core.metrics import is_better, score
from core.validation import DataSchema


@dataclass(frozen=True)
class TrialSpec:
    """One configuration of one candidate to fit on the `rows` most recent tuning rows."""

    candidate: str
    params: dict[str, Any]
    round: int
    rows: int


@dataclass(frozen=True)
class Trial(TrialSpec):
    """A fitted and scored `TrialSpec`; `executor` is the host/pid that ran it."""

    score: float
    fit_seconds: float
    executor: str = ""


@dataclass(frozen=True)
class TuneResult:
    """The best configuration of one candidate and every trial behind it."""

    candidate: str
    best_params: dict[str, Any]
    best_score: float
    trials: list[Trial]


@dataclass(frozen=True)
class TuningData:
    """What every trial reads: the recent training rows, the validation window and the features."""

    subset: pd.DataFrame
    validation: pd.DataFrame
    preprocessor: ColumnTransformer
    schema: DataSchema


RoundRunner = Callable[[list[TrialSpec]], list[Trial]]


def sample_configurations(space: dict[str, list[Any]], n_trials: int, seed: int) -> list[dict[str, Any]]:
    """The whole grid when it is small enough, else `n_trials` random draws from it."""
    grid = ParameterGrid(space)
    if len(grid) <= n_trials:
        return list(grid)
    return list(ParameterSampler(space, n_iter=n_trials, random_state=seed))


def halving_schedule(n_configs: int, subset_rows: int, factor: int, strategy: str) -> list[tuple[int, int]]:
    """(configurations kept, training rows) for each round; random search is a single round."""
    if strategy == "random" or n_configs == 1:
        return [(n_configs, subset_rows)]
    kept = [n_configs]
    while kept[-1] > 1:
        kept.append(max(1, kept[-1] // factor))
    rounds = len(kept)
    return [
        (count, min(subset_rows, max(30, subset_rows // factor ** (rounds - 1 - index))))
        for index, count in enumerate(kept)
    ]


def tuning_data(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    preprocessor: ColumnTransformer,
    schema: DataSchema,
    subset_rows: int,
) -> TuningData:
    """The most recent `subset_rows` of `train` (in time order when there is a time column).

    The test window is never part of it.
    """
    return TuningData(train.tail(min(subset_rows, len(train))), validation, preprocessor, schema)


@contextmanager
def openmp_threads(limit: int | None) -> Iterator[None]:
    """Limit OpenMP threads in this thread while trials share the cores (None: leave as is)."""
    if limit is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=limit, user_api="openmp"):
        yield


def fit_and_score(
    data: TuningData, config: PipelineConfig, spec: TrialSpec, threads: int | None = None
) -> Trial:
    """Fit one configuration on the recent rows and score it on the validation window."""
    started = time.perf_counter()
    params = {**config.candidates[spec.candidate].params, **spec.params}
    with openmp_threads(threads), warnings.catch_warnings():
        # On a Dask worker scikit-learn runs n_jobs=-1 models on one core, which is what we want.
        warnings.filterwarnings("ignore", message="Inside a Dask worker")
        model = fit_candidate(
            data.subset.tail(spec.rows),
            data.preprocessor,
            data.schema,
            config.task,
            spec.candidate,
            params,
            config.tuning.seed,
        )
        value = score(model, data.validation, data.schema, config.task)[config.metric.name]
    elapsed = time.perf_counter() - started
    executor = f"{socket.gethostname()}/{os.getpid()}"
    return Trial(spec.candidate, spec.params, spec.round, spec.rows, value, elapsed, executor)


def halving_search(subset_rows: int, config: PipelineConfig, run_round: RoundRunner) -> list[TuneResult]:
    """Successive halving (or random search) for every candidate, one round at a time.

    Args:
        subset_rows: Rows available for tuning.
        config: The pipeline config (candidates, their spaces, `tuning`, metric).
        run_round: Fits and scores a round's trials, returning them in the order given.

    Returns:
        One result per candidate, in config order.
    """
    tuning = config.tuning
    plans: dict[str, tuple[list[dict[str, Any]], list[tuple[int, int]]]] = {}
    for name, candidate in config.candidates.items():
        space = search_space(config.task, name, candidate.search_space)
        configs = sample_configurations(space, tuning.n_trials, tuning.seed)
        plans[name] = (
            configs,
            halving_schedule(len(configs), subset_rows, tuning.halving_factor, tuning.strategy),
        )
    ranked: dict[str, list[Trial]] = {}
    trials: dict[str, list[Trial]] = {name: [] for name in plans}
    for round_index in range(max(len(schedule) for _, schedule in plans.values())):
        specs = []
        for name, (configs, schedule) in plans.items():
            if round_index < len(schedule):
                kept, rows = schedule[round_index]
                order = [t.params for t in ranked[name]] if name in ranked else configs
                specs += [TrialSpec(name, params, round_index, rows) for params in order[:kept]]
        for name, group in _by_candidate(run_round(specs)).items():
            ranked[name] = sorted(group, key=lambda t: -t.score if config.greater_is_better else t.score)
            trials[name].extend(group)
    return [
        TuneResult(
            name,
            {**config.candidates[name].params, **ranked[name][0].params},
            ranked[name][0].score,
            trials[name],
        )
        for name in plans
    ]


def _by_candidate(trials: list[Trial]) -> dict[str, list[Trial]]:
    groups: dict[str, list[Trial]] = {}
    for trial in trials:
        groups.setdefault(trial.candidate, []).append(trial)
    return groups


def search(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    preprocessor: ColumnTransformer,
    schema: DataSchema,
    config: PipelineConfig,
) -> list[TuneResult]:
    """Tune every candidate in this thread, one trial after another (no orchestrator needed)."""
    data = tuning_data(train, validation, preprocessor, schema, config.tuning.subset_rows)
    return halving_search(
        len(data.subset), config, lambda specs: [fit_and_score(data, config, spec) for spec in specs]
    )


def best_of(results: list[TuneResult], greater_is_better: bool) -> TuneResult:
    """The candidate with the best validation score (first listed wins ties)."""
    best = results[0]
    for result in results[1:]:
        if is_better(result.best_score, best.best_score, greater_is_better):
            best = result
    return best


def trials_at_once_on_threads(tuning: TuningConfig) -> int:
    """Threads of the threads runner: `tuning.max_workers`, else one per core."""
    return tuning.max_workers or os.cpu_count() or 1


def threads_per_trial(tuning: TuningConfig, trials_in_round: int) -> int | None:
    """OpenMP threads for each trial on the threads runner, so trials at once share the cores."""
    if tuning.runner != "threads":
        return None
    at_once = max(1, min(trials_at_once_on_threads(tuning), trials_in_round))
    return max(1, (os.cpu_count() or 1) // at_once)
