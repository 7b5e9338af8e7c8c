"""Prefect tasks that validate and type a raw table against the config (and a registered version's schema)."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.config import PipelineConfig
from core.errors import DataError
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


@task(name="check-data-fits-version", cache_policy=NO_CACHE)
def check_fits_version(
    raw: pd.DataFrame, config: PipelineConfig, version: str, schema: dict[str, str]
) -> None:
    """Refuse a version whose input schema the current data does not fit (bad input, exit 2)."""
    try:
        validate_table(raw, config, schema, require_target=False, now=pd.Timestamp.now(tz="UTC"))
    except DataError as exc:
        raise DataError(
            [
                f"Version {version} cannot be champion again: the current data does not fit its input schema",
                *exc.problems,
            ],
            "Roll back to a version trained on data like today's (see `retrain models --config <file>`), "
            "or retrain.",
        ) from None
