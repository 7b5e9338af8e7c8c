"""Prefect task that chooses the features (calendar features only when they help) and names them."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sklearn.compose import ColumnTransformer

from core.config import PipelineConfig
from core.features import CalendarProbe, build_preprocessor, probe_calendar
from core.split import Splits
from core.validation import DataSchema


@task(name="features", cache_policy=NO_CACHE)
def fit_features(
    splits: Splits, schema: DataSchema, config: PipelineConfig
) -> tuple[ColumnTransformer, DataSchema, CalendarProbe | None]:
    """Probe calendar features on validation, then fit the preprocessor to name the features.

    Candidate pipelines clone the preprocessor, so each fit re-learns it from its own training
    rows; this fit on the most recent `tuning.subset_rows` rows only names the features.
    """
    logger = get_run_logger()
    schema, probe = probe_calendar(splits.train, splits.validation, schema, config)
    if probe:
        logger.info(
            "Calendar features from %s %s: validation %s %.4f with, %.4f without",
            config.time_column,
            "kept" if probe.kept else "left out",
            probe.metric,
            probe.with_calendar,
            probe.without_calendar,
        )
    rows = splits.train[schema.model_inputs].tail(config.tuning.subset_rows)
    preprocessor = build_preprocessor(schema).fit(rows)
    names = list(preprocessor.get_feature_names_out())
    logger.info("%d engineered features from %d columns", len(names), len(schema.model_inputs))
    return preprocessor, schema, probe
