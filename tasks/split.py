"""Prefect task that cuts the train, validation and test windows."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.config import PipelineConfig
from core.split import Splits, split_frame


@task(name="split", cache_policy=NO_CACHE)
def split(frame: pd.DataFrame, config: PipelineConfig) -> Splits:
    """Cut train/validation/test windows and log their sizes and time ranges."""
    splits = split_frame(frame, config)
    logger = get_run_logger()
    for name, info in splits.describe().items():
        logger.info("%s window: %s", name, info)
    return splits
