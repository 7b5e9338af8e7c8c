"""The model catalogue: the baseline and the built-in candidate algorithms, and how one is fitted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

if TYPE_CHECKING:
    from core.validation import DataSchema

BASELINE = "baseline"

# Built-in algorithms: (estimator class, fixed params, default search space) per task.
CATALOGUE: dict[str, dict[str, tuple[type[BaseEstimator], dict[str, Any], dict[str, list[Any]]]]] = {
    "regression": {
        "linear": (Ridge, {}, {"alpha": [0.01, 0.1, 1.0, 10.0, 100.0]}),
        "random_forest": (
            RandomForestRegressor,
            {"n_estimators": 100, "n_jobs": -1},
            {"max_depth": [8, 16, None], "min_samples_leaf": [1, 3, 10], "max_features": [0.5, 1.0]},
        ),
        "hist_gradient_boosting": (
            HistGradientBoostingRegressor,
            {"max_iter": 400, "early_stopping": False},
            {
                "learning_rate": [0.05, 0.1, 0.2],
                "max_leaf_nodes": [15, 31, 63],
                "min_samples_leaf": [10, 20, 50],
                "l2_regularization": [0.0, 1.0],
            },
        ),
    },
    "classification": {
        "logistic": (LogisticRegression, {"max_iter": 2000}, {"C": [0.01, 0.1, 1.0, 10.0]}),
        "random_forest": (
            RandomForestClassifier,
            {"n_estimators": 100, "n_jobs": -1},
            {"max_depth": [8, 16, None], "min_samples_leaf": [1, 3, 10], "max_features": ["sqrt", 0.5]},
        ),
        "hist_gradient_boosting": (
            HistGradientBoostingClassifier,
            {"max_iter": 400, "early_stopping": False},
            {
                "learning_rate": [0.05, 0.1, 0.2],
                "max_leaf_nodes": [15, 31, 63],
                "min_samples_leaf": [10, 20, 50],
            },
        ),
    },
}


# Candidates whose number of boosting iterations is chosen on the validation window (up to the
# catalogue's `max_iter`): the iterations found are kept for the final refit.
ITERATIONS_PARAM = {"hist_gradient_boosting": "max_iter"}

# Candidates made of independent trees: a halving round before the last fits 1/`halving_factor`
# of the trees (at least `FEWEST_EARLY_TREES`). A forest's validation score settles long before
# its last tree, so the early ranking costs a third; the last round and the refit fit them all.
ENSEMBLE_SIZE_PARAM = {"random_forest": "n_estimators"}
FEWEST_EARLY_TREES = 10


def early_round_params(task_kind: str, candidate: str, params: dict[str, Any], factor: int) -> dict[str, Any]:
    """`params` for a halving round before the last: a forest fits `factor` times fewer trees."""
    if candidate not in ENSEMBLE_SIZE_PARAM:
        return params
    size_param = ENSEMBLE_SIZE_PARAM[candidate]
    size = params.get(size_param, CATALOGUE[task_kind][candidate][1][size_param])
    return {**params, size_param: max(FEWEST_EARLY_TREES, round(size / factor))}


def baseline_model(task_kind: str) -> Pipeline:
    """The unfitted dummy baseline (mean / most frequent class).

    It ignores the features, so it takes the raw columns without the preprocessing, which would
    only cost time on large data.
    """
    return Pipeline([("model", make_estimator(task_kind, BASELINE, {}, seed=0))])


def search_space(
    task_kind: str, candidate: str, override: dict[str, list[Any]] | None
) -> dict[str, list[Any]]:
    """The values to try for `candidate`: the config's override or the built-in space."""
    return override if override else CATALOGUE[task_kind][candidate][2]


def make_estimator(task_kind: str, candidate: str, params: dict[str, Any], seed: int) -> BaseEstimator:
    """Instantiate a built-in algorithm with fixed, config and trial params."""
    if candidate == BASELINE:
        return (
            DummyRegressor(strategy="mean")
            if task_kind == "regression"
            else DummyClassifier(strategy="most_frequent")
        )
    estimator_class, fixed, _ = CATALOGUE[task_kind][candidate]
    estimator = estimator_class(**{**fixed, **params})
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=seed)
    return estimator


def make_pipeline(preprocessor: ColumnTransformer, estimator: BaseEstimator) -> Pipeline:
    """Preprocessing and model in one pipeline, so the logged model takes raw columns."""
    return Pipeline([("preprocess", clone(preprocessor)), ("model", estimator)])


def fit_pipeline(pipeline: Pipeline, frame: pd.DataFrame, schema: DataSchema) -> Pipeline:
    """Fit on the feature columns of `frame` against its target."""
    return pipeline.fit(frame[schema.model_inputs], frame[schema.target])


def fit_candidate(
    frame: pd.DataFrame,
    preprocessor: ColumnTransformer,
    schema: DataSchema,
    task_kind: str,
    candidate: str,
    params: dict[str, Any],
    seed: int,
) -> Pipeline:
    """Fit preprocessing and a built-in algorithm with `params` on `frame`."""
    estimator = make_estimator(task_kind, candidate, params, seed)
    return fit_pipeline(make_pipeline(preprocessor, estimator), frame, schema)
