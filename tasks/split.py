"""Stage 3: cut train, validation and test windows that never intersect."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sklearn.model_selection import train_test_split

from tasks.config import PipelineConfig
from tasks.errors import DataError

WINDOWS = ("train", "validation", "test")


@dataclass(frozen=True)
class Splits:
    """The three windows; `test` is the most recent when there is a time column."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    time_column: str | None = None

    @cached_property
    def train_full(self) -> pd.DataFrame:
        """Train and validation together: the complete training data for the final fit.

        Built once: several steps read it at the same time, and large data should not be copied
        once per reader.
        """
        return pd.concat([self.train, self.validation])

    def describe(self) -> dict[str, dict[str, object]]:
        """Rows and time range of each window."""
        summary: dict[str, dict[str, object]] = {}
        for name in WINDOWS:
            window = getattr(self, name)
            info: dict[str, object] = {"rows": len(window)}
            if self.time_column:
                info["start"] = str(window[self.time_column].min())
                info["end"] = str(window[self.time_column].max())
            summary[name] = info
        return summary


def _time_cuts(times: pd.Series, fractions: tuple[float, float]) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Timestamps where validation and test start; rows sharing a timestamp stay together."""
    ordered = np.sort(times.to_numpy())
    n = len(ordered)
    validation_start = ordered[int(n * (1 - fractions[0] - fractions[1]))]
    test_start = ordered[int(n * (1 - fractions[1]))]
    return pd.Timestamp(validation_start), pd.Timestamp(test_start)


def assert_disjoint(splits: Splits) -> None:
    """Fail loudly if windows share rows or, in time order, overlap."""
    indexes = [set(getattr(splits, name).index) for name in WINDOWS]
    if indexes[0] & indexes[1] or indexes[0] & indexes[2] or indexes[1] & indexes[2]:
        raise AssertionError("train, validation and test windows share rows")
    if splits.time_column:
        column = splits.time_column
        if not (
            splits.train[column].max() < splits.validation[column].min()
            and splits.validation[column].max() < splits.test[column].min()
        ):
            raise AssertionError("time windows overlap: a later window has an earlier timestamp")


def split_frame(frame: pd.DataFrame, config: PipelineConfig) -> Splits:
    """Cut the windows: by time when `time_column` is set, else at random (stratified).

    Raises:
        DataError: A window would have fewer than `split.min_rows` rows.
    """
    fractions = (config.split.validation_fraction, config.split.test_fraction)
    if config.time_column:
        # Windows in time order: tuning takes the most recent training rows by position.
        frame = frame.sort_values(config.time_column, kind="stable")
        validation_start, test_start = _time_cuts(frame[config.time_column], fractions)
        times = frame[config.time_column]
        parts = (
            frame[times < validation_start],
            frame[(times >= validation_start) & (times < test_start)],
            frame[times >= test_start],
        )
    else:
        labels = frame[config.target] if config.task == "classification" else None
        seed = config.tuning.seed
        try:
            rest, test = train_test_split(frame, test_size=fractions[1], random_state=seed, stratify=labels)
            rest_labels = rest[config.target] if labels is not None else None
            train, validation = train_test_split(
                rest,
                test_size=fractions[0] / (1 - fractions[1]),
                random_state=seed,
                stratify=rest_labels,
            )
        except ValueError as exc:
            raise DataError(
                f"Cannot split {len(frame)} rows into train, validation and test ({exc})",
                "Provide more rows (at least a few per class).",
            ) from None
        parts = (train.sort_index(), validation.sort_index(), test.sort_index())
    splits = Splits(*parts, time_column=config.time_column)
    small = {n: len(getattr(splits, n)) for n in WINDOWS if len(getattr(splits, n)) < config.split.min_rows}
    if small:
        raise DataError(
            f"Too few rows for the split: {len(frame)} rows give windows of {small} rows, "
            f"below split.min_rows={config.split.min_rows}",
            "Provide more data (or distinct timestamps), or lower split.min_rows.",
        )
    assert_disjoint(splits)
    return splits


@task(name="split", cache_policy=NO_CACHE)
def split(frame: pd.DataFrame, config: PipelineConfig) -> Splits:
    """Cut train/validation/test windows and log their sizes and time ranges."""
    splits = split_frame(frame, config)
    logger = get_run_logger()
    for name, info in splits.describe().items():
        logger.info("%s window: %s", name, info)
    return splits
