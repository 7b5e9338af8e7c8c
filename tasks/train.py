"""Prefect tasks that fit models: the baseline and the final refit of the winning candidate."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from core.catalogue import baseline_model, fit_candidate, fit_pipeline
from core.validation import DataSchema


@task(name="baseline", cache_policy=NO_CACHE)
def train_baseline(train: pd.DataFrame, schema: DataSchema, task_kind: str) -> Pipeline:
    """Fit the dummy baseline (mean / most frequent class) on `train`."""
    return fit_pipeline(baseline_model(task_kind), train, schema)


@task(name="refit", cache_policy=NO_CACHE)
def refit_best(
    train_full: pd.DataFrame,
    preprocessor: ColumnTransformer,
    schema: DataSchema,
    task_kind: str,
    candidate: str,
    params: dict[str, Any],
    seed: int,
) -> Pipeline:
    """Fit the winning candidate and params on the complete training data (train + validation)."""
    get_run_logger().info("Refitting %s %s on %d rows", candidate, params, len(train_full))
    return fit_candidate(train_full, preprocessor, schema, task_kind, candidate, params, seed)
