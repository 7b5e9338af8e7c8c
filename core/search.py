"""The hyperparameter search: successive halving (or random search) over the catalogue's candidates.

Each family's first round fits `tuning.subset_rows` recent training rows; every later round fits
more rows (geometrically), and the last one fits all training rows, so families are compared at
the size the final model has. Trials are scored on the validation window; the test window is
never part of it. Boosting chooses its number of iterations on the validation window too.

A round's trials are independent fits, so whoever runs them (a plain loop here, Prefect task
runners in `flows/tuning.py`) only has to return them in the order given: the ranking never
depends on which executor finished first.
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import ParameterGrid, ParameterSampler
from sklearn.pipeline import Pipeline

from core.catalogue import (
    ITERATIONS_PARAM,
    early_round_params,
    fit_candidate,
    make_estimator,
    search_space,
)
from core.config import PipelineConfig, TuningConfig
from core.metrics import is_better, metrics_of, score
from core.threads import openmp_threads
from core.validation import DataSchema

# Boosting stops after this many iterations without a lower loss on the validation window: in
# the last round, which sets the refit's iterations, and in the rounds before, which only rank.
BOOSTING_PATIENCE = 100
EARLY_ROUND_PATIENCE = 30


@dataclass(frozen=True)
class TrialSpec:
    """One configuration of one candidate to fit on the `rows` most recent training rows."""

    candidate: str
    params: dict[str, Any]
    round: int
    rows: int


@dataclass(frozen=True)
class Trial(TrialSpec):
    """A fitted and scored `TrialSpec`.

    Attributes:
        executor: The host/pid that ran it.
        iterations: For boosting, the number of iterations that scored best on validation.
    """

    score: float
    fit_seconds: float
    executor: str = ""
    iterations: int | None = None

    @property
    def chosen_params(self) -> dict[str, Any]:
        """The trial's params with the iterations it chose, as the final refit uses them."""
        if self.iterations is None:
            return self.params
        return {**self.params, ITERATIONS_PARAM[self.candidate]: self.iterations}


@dataclass(frozen=True)
class TuneResult:
    """The best configuration of one candidate and every trial behind it."""

    candidate: str
    best_params: dict[str, Any]
    best_score: float
    trials: list[Trial]

    @property
    def final_rows(self) -> int:
        """Training rows of the last round this candidate ran (0 without trials)."""
        return max((trial.rows for trial in self.trials), default=0)

    def best_by_round(self, greater_is_better: bool) -> list[tuple[int, float]]:
        """(training rows, best validation score) of each round this candidate ran."""
        rounds: dict[int, Trial] = {}
        for trial in self.trials:
            best = rounds.get(trial.round)
            if best is None or is_better(trial.score, best.score, greater_is_better):
                rounds[trial.round] = trial
        return [(rounds[r].rows, rounds[r].score) for r in sorted(rounds)]


@dataclass(frozen=True)
class TuningData:
    """What every trial reads: the training rows in time order (rounds take their tail), the
    validation window and the features. The test window is never part of it."""

    train: pd.DataFrame
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


def halving_schedule(
    n_configs: int, first_rows: int, full_rows: int, factor: int, strategy: str
) -> list[tuple[int, int]]:
    """(configurations kept, training rows) for each round.

    Each round keeps 1/`factor` of the configurations, and the rows grow geometrically from
    `first_rows` to `full_rows`, by at most `factor` a round when the configurations allow: a
    round on hardly more rows than the one before tells little and costs as much. The last round
    fits all training rows (with one configuration, or more when the rows run out first). Random
    search, or training rows no more than `first_rows`, is a single round on all rows.
    """
    if strategy == "random" or n_configs == 1 or full_rows <= first_rows:
        return [(n_configs, full_rows)]
    kept = [n_configs]
    while kept[-1] > 1:
        kept.append(max(1, kept[-1] // factor))
    rounds_for_rows = 1 + math.ceil(math.log(full_rows / first_rows, factor) - 1e-9)
    kept = kept[: max(2, rounds_for_rows)]
    last = len(kept) - 1
    return [
        (
            count,
            full_rows if index == last else round(first_rows * (full_rows / first_rows) ** (index / last)),
        )
        for index, count in enumerate(kept)
    ]


def fit_and_score(
    data: TuningData, config: PipelineConfig, spec: TrialSpec, threads: int | None = None
) -> Trial:
    """Fit one configuration on the recent rows and score it on the validation window.

    Boosting is scored along its iterations; the best point gives both the score and the
    iterations the final refit uses. A round before the last only ranks configurations, so it
    fits them cheaper: boosting stops after `EARLY_ROUND_PATIENCE` iterations without gain, and a
    forest grows a fraction of its trees (`core.catalogue.early_round_params`).
    """
    started = time.perf_counter()
    params = trial_params(config, spec, len(data.train))
    last_round = spec.rows >= len(data.train)
    iterations = None
    with openmp_threads(threads), warnings.catch_warnings():
        # On a Dask worker scikit-learn runs n_jobs=-1 models on one core, which is what we want.
        warnings.filterwarnings("ignore", message="Inside a Dask worker")
        rows = data.train.tail(spec.rows)
        if spec.candidate in ITERATIONS_PARAM:
            patience = BOOSTING_PATIENCE if last_round else EARLY_ROUND_PATIENCE
            model = fit_with_early_stopping(rows, data, config, spec.candidate, params, patience)
            iterations, value = best_iteration(model, data.validation, data.schema, config)
        else:
            model = fit_candidate(
                rows, data.preprocessor, data.schema, config.task, spec.candidate, params, config.tuning.seed
            )
            value = score(model, data.validation, data.schema, config.task)[config.metric.name]
    elapsed = time.perf_counter() - started
    executor = f"{socket.gethostname()}/{os.getpid()}"
    return Trial(spec.candidate, spec.params, spec.round, spec.rows, value, elapsed, executor, iterations)


def trial_params(config: PipelineConfig, spec: TrialSpec, full_rows: int) -> dict[str, Any]:
    """The params `spec` is fitted with: the candidate's config params and the trial's, with a
    forest's trees cut in a round before the last (on fewer than `full_rows` rows)."""
    params = {**config.candidates[spec.candidate].params, **spec.params}
    if spec.rows >= full_rows:
        return params
    return early_round_params(config.task, spec.candidate, params, config.tuning.halving_factor)


def fit_with_early_stopping(
    rows: pd.DataFrame,
    data: TuningData,
    config: PipelineConfig,
    candidate: str,
    params: dict[str, Any],
    patience: int = BOOSTING_PATIENCE,
) -> Pipeline:
    """Fit boosting with early stopping on the validation window (scikit-learn's `X_val`).

    Boosting stops after `patience` iterations without a lower validation loss, or at the
    configured `max_iter`.
    """
    inputs, target = data.schema.model_inputs, data.schema.target
    preprocessor = clone(data.preprocessor).fit(rows[inputs])
    stopping = {"early_stopping": True, "n_iter_no_change": patience, "scoring": "loss"}
    estimator = make_estimator(config.task, candidate, {**params, **stopping}, config.tuning.seed)
    estimator.fit(
        preprocessor.transform(rows[inputs]),
        rows[target],
        X_val=preprocessor.transform(data.validation[inputs]),
        y_val=data.validation[target],
    )
    return Pipeline([("preprocess", preprocessor), ("model", estimator)])


def best_iteration(
    model: Pipeline, validation: pd.DataFrame, schema: DataSchema, config: PipelineConfig
) -> tuple[int, float]:
    """The iterations with the lowest validation loss, and the primary metric of the model there."""
    estimator = model[-1]
    # validation_score_[0] is the score before the first tree
    iterations = max(1, int(np.argmax(estimator.validation_score_[1:])) + 1)
    features = model[:-1].transform(validation[schema.model_inputs])
    labels, metric = validation[schema.target], config.metric.name
    if config.task == "regression":
        stages = estimator.staged_predict(features)
    else:
        stages = estimator.staged_predict_proba(features)
    output = next(itertools.islice(stages, iterations - 1, None))
    if config.task == "regression":
        return iterations, metrics_of(config.task, labels, output)[metric]
    predicted = estimator.classes_[output.argmax(axis=1)]
    return iterations, metrics_of(config.task, labels, predicted, output, estimator.classes_)[metric]


def halving_search(full_rows: int, config: PipelineConfig, run_round: RoundRunner) -> list[TuneResult]:
    """Successive halving (or random search) for every candidate, one round at a time.

    The candidates race: after each round, the leading candidate keeps its best configurations,
    and another candidate goes on only with those of its configurations that would rank among
    them (see `advancing`); the others keep the best of the rounds they ran. With
    `tuning.time_budget_s`, no new round starts once the search has spent the budget; each
    candidate then keeps the best of its last round.

    Args:
        full_rows: Training rows available: the last round fits all of them.
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
        schedule = halving_schedule(
            len(configs), tuning.subset_rows, full_rows, tuning.halving_factor, tuning.strategy
        )
        plans[name] = (configs, schedule)
    ranked: dict[str, list[Trial]] = {}
    trials: dict[str, list[Trial]] = {name: [] for name in plans}
    going_on = {name: schedule[0][0] for name, (_, schedule) in plans.items()}
    started = time.perf_counter()
    for round_index in range(max(len(schedule) for _, schedule in plans.values())):
        if round_index and tuning.time_budget_s and time.perf_counter() - started > tuning.time_budget_s:
            break
        specs = []
        for name, count in going_on.items():
            rows = plans[name][1][round_index][1]
            order = [t.params for t in ranked[name]] if name in ranked else plans[name][0]
            specs += [TrialSpec(name, params, round_index, rows) for params in order[:count]]
        if not specs:
            break
        for name, group in _by_candidate(run_round(specs)).items():
            ranked[name] = sorted(group, key=lambda t: -t.score if config.greater_is_better else t.score)
            trials[name].extend(group)
        kept_next = {
            name: plans[name][1][round_index + 1][0]
            for name in going_on
            if round_index + 1 < len(plans[name][1])
        }
        going_on = advancing(ranked, kept_next, config.greater_is_better)
    return [
        TuneResult(
            name,
            {**config.candidates[name].params, **ranked[name][0].chosen_params},
            ranked[name][0].score,
            trials[name],
        )
        for name in plans
    ]


def advancing(ranked: dict[str, list[Trial]], kept_next: dict[str, int], greater: bool) -> dict[str, int]:
    """How many configurations of each candidate run the next round (candidates with none left out).

    Among the candidates whose latest round fitted the same rows, the leader (best score) keeps
    its `kept_next` best configurations. Another candidate's configuration goes on only when it
    scores at least as well as the worst of those: it would have made the cut in one ranking of
    them all. A candidate with no such configuration leaves the race.

    Args:
        ranked: Each candidate's trials of its latest round, best first.
        kept_next: Configurations each candidate with a next round would keep there.
        greater: Whether a higher score is better.
    """
    counts: dict[str, int] = {}
    by_rows: dict[int, list[str]] = {}
    for name in kept_next:
        by_rows.setdefault(ranked[name][0].rows, []).append(name)
    for names in by_rows.values():
        leader = names[0]
        for name in names[1:]:
            if is_better(ranked[name][0].score, ranked[leader][0].score, greater):
                leader = name
        bar = ranked[leader][: kept_next[leader]][-1].score
        # The leader's own kept configurations are all at least as good as the bar, its worst.
        for name in names:
            within = [t for t in ranked[name][: kept_next[name]] if not is_better(bar, t.score, greater)]
            if within:
                counts[name] = len(within)
    return counts


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
    data = TuningData(train, validation, preprocessor, schema)
    return halving_search(
        len(data.train), config, lambda specs: [fit_and_score(data, config, spec) for spec in specs]
    )


def best_of(results: list[TuneResult], greater_is_better: bool) -> TuneResult:
    """The candidate with the best validation score among those whose last round fitted the most
    rows, the size the final model has (first listed wins ties)."""
    final_rows = max(result.final_rows for result in results)
    finalists = [result for result in results if result.final_rows == final_rows]
    best = finalists[0]
    for result in finalists[1:]:
        if is_better(result.best_score, best.best_score, greater_is_better):
            best = result
    return best


def trials_at_once_on_threads(tuning: TuningConfig) -> int:
    """Threads of the threads runner: `tuning.max_workers`, else one per core."""
    return tuning.max_workers or os.cpu_count() or 1


def threads_per_trial(tuning: TuningConfig) -> int | None:
    """OpenMP threads of each trial on the threads runner: one (see `core.threads`).

    The runner runs `trials_at_once_on_threads` trials at once, so a full round uses every core.
    """
    return 1 if tuning.runner == "threads" else None
