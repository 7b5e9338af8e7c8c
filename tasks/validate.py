"""Prefect task that validates and types a raw table against the config."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.config import PipelineConfig
from core.validation import DataSchema, validate_table


@task(name="validate", cache_policy=NO_CACHE)
def validate(
    raw: pd.DataFrame,
    config: PipelineConfig,
    expected_schema: dict[str, str] | None = None,
    require_target: bool = True,
) -> tuple[pd.DataFrame, DataSchema]:
    """Validate and type the raw table as of now; see `core.validation.validate_table`."""
    frame, schema = validate_table(
        raw, config, expected_schema, require_target, now=pd.Timestamp.now(tz="UTC")
    )
    logger = get_run_logger()
    for note in schema.notes:
        logger.warning(note)
    logger.info(
        "Validated %d rows: %d numeric and %d categorical features",
        len(frame),
        len(schema.numeric),
        len(schema.categorical),
    )
    return frame, schema
