"""Stage 6: tune each candidate on the most recent training rows, scored on the validation window."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import ParameterGrid, ParameterSampler

from tasks.config import CandidateConfig, PipelineConfig
from tasks.errors import io_edge_options
from tasks.evaluate import is_better, score
from tasks.tracking import log_trial_runs
from tasks.train import fit_candidate, search_space, spare_a_core
from tasks.validate import DataSchema


@dataclass(frozen=True)
class Trial:
    """One configuration fitted on `rows` recent training rows and scored on validation."""

    candidate: str
    params: dict[str, Any]
    round: int
    rows: int
    score: float
    fit_seconds: float


@dataclass(frozen=True)
class TuneResult:
    """The best configuration of one candidate and every trial behind it."""

    candidate: str
    best_params: dict[str, Any]
    best_score: float
    trials: list[Trial]


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


def search(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    preprocessor: ColumnTransformer,
    schema: DataSchema,
    config: PipelineConfig,
    candidate: str,
    candidate_config: CandidateConfig,
) -> TuneResult:
    """Successive halving (or random search) over the candidate's search space.

    Training rows are the most recent `tuning.subset_rows` of `train` (by position: `train` is in
    time order when the config has a time column); the test window is never used here.
    """
    tuning = config.tuning
    subset = train.tail(min(tuning.subset_rows, len(train)))
    space = search_space(config.task, candidate, candidate_config.search_space)
    configs = sample_configurations(space, tuning.n_trials, tuning.seed)
    trials: list[Trial] = []
    for round_index, (kept, rows) in enumerate(
        halving_schedule(len(configs), len(subset), tuning.halving_factor, tuning.strategy)
    ):
        configs = configs[:kept]
        round_trials = []
        for params in configs:
            started = time.perf_counter()
            model = fit_candidate(
                subset.tail(rows),
                preprocessor,
                schema,
                config.task,
                candidate,
                {**candidate_config.params, **params},
                tuning.seed,
            )
            value = score(model, validation, schema, config.task)[config.metric.name]
            round_trials.append(
                Trial(candidate, params, round_index, rows, value, time.perf_counter() - started)
            )
        ranked = sorted(round_trials, key=lambda t: -t.score if config.greater_is_better else t.score)
        configs = [t.params for t in ranked]
        trials.extend(round_trials)
    best = ranked[0]
    return TuneResult(candidate, {**candidate_config.params, **best.params}, best.score, trials)


def best_of(results: list[TuneResult], greater_is_better: bool) -> TuneResult:
    """The candidate with the best validation score (first listed wins ties)."""
    best = results[0]
    for result in results[1:]:
        if is_better(result.best_score, best.best_score, greater_is_better):
            best = result
    return best


@task(name="log-trials", **io_edge_options())
def log_trials(parent_run_id: str, metric: str, result: TuneResult) -> int:
    """Log every trial of a tuning result as a nested MLflow run of `parent_run_id`."""
    log_trial_runs(parent_run_id, metric, [asdict(t) for t in result.trials])
    return len(result.trials)


@task(name="tune", cache_policy=NO_CACHE)
def tune_candidate(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    preprocessor: ColumnTransformer,
    schema: DataSchema,
    config: PipelineConfig,
    candidate: str,
) -> TuneResult:
    """Tune one candidate (its trials are logged by `log_trials`)."""
    with spare_a_core():
        result = search(
            train, validation, preprocessor, schema, config, candidate, config.candidates[candidate]
        )
    get_run_logger().info(
        "%s: best validation %s %.4f with %s (%d trials)",
        candidate,
        config.metric.name,
        result.best_score,
        result.best_params,
        len(result.trials),
    )
    return result
