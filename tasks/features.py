"""Prefect task that fits the feature preprocessing to name the engineered features."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sklearn.compose import ColumnTransformer

from core.features import build_preprocessor
from core.split import Splits
from core.validation import DataSchema


@task(name="features", cache_policy=NO_CACHE)
def fit_features(splits: Splits, schema: DataSchema, rows: int) -> ColumnTransformer:
    """Fit the preprocessor on the `rows` most recent training rows and log the engineered features.

    Candidate pipelines clone it, so each fit re-learns it from its own training rows; this fit
    only names the features, and on large data a recent sample names them as well.
    """
    preprocessor = build_preprocessor(schema).fit(splits.train[schema.features].tail(rows))
    names = list(preprocessor.get_feature_names_out())
    get_run_logger().info("%d engineered features from %d columns", len(names), len(schema.features))
    return preprocessor
