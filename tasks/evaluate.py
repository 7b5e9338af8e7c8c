"""Prefect task that scores a fitted model on one window."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.pipeline import Pipeline

from core.metrics import score
from core.validation import DataSchema


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(model: Pipeline, frame: pd.DataFrame, schema: DataSchema, task_kind: str) -> dict[str, float]:
    """Score a fitted model on one window (the test window for the final model)."""
    return score(model, frame, schema, task_kind)
