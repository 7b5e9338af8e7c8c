"""The split: train, validation and test windows that never intersect (in time order when dated)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from core.config import PipelineConfig, SplitConfig
from core.errors import DataError

WINDOWS = ("train", "validation", "test")


@dataclass(frozen=True)
class Splits:
    """The three windows; `test` is the most recent when there is a time column."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    time_column: str | None = None
    # Time splits are slices of one sorted frame: train+validation is then a slice too, not a copy.
    sorted_train_full: pd.DataFrame | None = field(default=None, repr=False)

    @cached_property
    def train_full(self) -> pd.DataFrame:
        """Train and validation together: the complete training data for the final fit.

        Built once: several steps read it at the same time, and large data should not be copied
        once per reader.
        """
        if self.sorted_train_full is not None:
            return self.sorted_train_full
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


def _time_cuts(ordered: pd.Series, fractions: tuple[float, float]) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Timestamps where validation and test start in the sorted `ordered`; rows sharing a
    timestamp stay together."""
    n = len(ordered)
    validation_start = ordered.iloc[int(n * (1 - fractions[0] - fractions[1]))]
    test_start = ordered.iloc[int(n * (1 - fractions[1]))]
    return pd.Timestamp(validation_start), pd.Timestamp(test_start)


def rows_needed(split: SplitConfig) -> int:
    """Fewest rows that give each window `split.min_rows` rows (with distinct timestamps)."""
    fractions = (split.validation_fraction, split.test_fraction)
    smallest = min(*fractions, 1 - sum(fractions))
    return math.ceil(round(split.min_rows / smallest, 6))


def assert_disjoint(splits: Splits) -> None:
    """Fail loudly if windows share rows or, in time order, overlap."""
    labels = np.concatenate([getattr(splits, name).index.to_numpy() for name in WINDOWS])
    if pd.Index(labels).has_duplicates:  # each window's labels are unique (validate resets them)
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
        validation_row = int(times.searchsorted(validation_start, side="left"))
        test_row = int(times.searchsorted(test_start, side="left"))
        parts = (frame.iloc[:validation_row], frame.iloc[validation_row:test_row], frame.iloc[test_row:])
        train_full = frame.iloc[:test_row]
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
        train_full = None
    splits = Splits(*parts, time_column=config.time_column, sorted_train_full=train_full)
    small = {n: len(getattr(splits, n)) for n in WINDOWS if len(getattr(splits, n)) < config.split.min_rows}
    if small:
        raise DataError(
            f"Too few rows for the split: {len(frame)} rows give windows of {small} rows, "
            f"below split.min_rows={config.split.min_rows}",
            "Provide more data (or distinct timestamps), or lower split.min_rows.",
        )
    assert_disjoint(splits)
    return splits
