"""Unit tests of `tasks/split.py`: time and random windows, boundaries, sizes, disjointness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_config
from core.errors import DataError
from core.split import Splits, assert_disjoint, split_frame


def daily_table(days: int, rows_per_day: int, seed: int = 0, shuffle: bool = True) -> pd.DataFrame:
    """`rows_per_day` rows for each of `days` consecutive days (typed, as after validation)."""
    rng = np.random.default_rng(seed)
    day = np.repeat(pd.date_range("2024-03-01", periods=days, freq="D"), rows_per_day)
    frame = pd.DataFrame(
        {
            "day": day,
            "x1": rng.normal(size=len(day)),
            "color": rng.choice(["a", "b"], size=len(day)),
            "y": rng.normal(size=len(day)),
        }
    )
    if shuffle:
        frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return frame


def test_time_split_windows_are_disjoint_ordered_and_keep_days_together() -> None:
    # 25 days x 5 rows = 125 rows; the cuts fall at positions 87 and 106, i.e. inside day 17
    # and day 21: whole days move to the later window instead.
    frame = daily_table(days=25, rows_per_day=5)
    splits = split_frame(frame, make_config("x.csv"))
    first = pd.Timestamp("2024-03-01")
    assert len(splits.train) == 85 and len(splits.validation) == 20 and len(splits.test) == 20
    assert splits.train["day"].min() == first
    assert splits.train["day"].max() == first + pd.Timedelta(days=16)
    assert splits.validation["day"].min() == first + pd.Timedelta(days=17)
    assert splits.validation["day"].max() == first + pd.Timedelta(days=20)
    assert splits.test["day"].min() == first + pd.Timedelta(days=21)
    assert splits.test["day"].max() == frame["day"].max()  # the test window is the most recent

    windows = [splits.train, splits.validation, splits.test]
    for earlier, later in zip(windows, windows[1:], strict=False):
        assert earlier["day"].max() < later["day"].min()
        assert set(earlier["day"]).isdisjoint(set(later["day"]))
    index_sets = [set(w.index) for w in windows]
    assert sum(len(s) for s in index_sets) == len(frame)
    assert set().union(*index_sets) == set(frame.index)
    # every day's 5 rows are in one window
    for window in windows:
        assert (window.groupby("day").size() == 5).all()


def test_time_split_windows_are_in_time_order_even_when_input_is_not() -> None:
    """Tuning takes `train.tail(subset_rows)` as the most recent rows: train must be sorted."""
    frame = daily_table(days=40, rows_per_day=3, shuffle=True)
    assert not frame["day"].is_monotonic_increasing
    splits = split_frame(frame, make_config("x.csv"))
    for window in (splits.train, splits.validation, splits.test):
        assert window["day"].is_monotonic_increasing
    recent = splits.train.tail(30)
    assert recent["day"].min() == splits.train["day"].sort_values().iloc[-30]


def test_time_split_does_not_mutate_input() -> None:
    frame = daily_table(days=50, rows_per_day=2)
    before = frame.copy()
    split_frame(frame, make_config("x.csv"))
    pd.testing.assert_frame_equal(frame, before)


def test_time_split_rows_are_unchanged() -> None:
    frame = daily_table(days=50, rows_per_day=2)
    splits = split_frame(frame, make_config("x.csv"))
    together = pd.concat([splits.train, splits.validation, splits.test]).sort_index()
    pd.testing.assert_frame_equal(together, frame)
    pd.testing.assert_frame_equal(splits.train_full, pd.concat([splits.train, splits.validation]))


def test_time_split_describe() -> None:
    frame = daily_table(days=25, rows_per_day=5)
    described = split_frame(frame, make_config("x.csv")).describe()
    assert described == {
        "train": {"rows": 85, "start": "2024-03-01 00:00:00", "end": "2024-03-17 00:00:00"},
        "validation": {"rows": 20, "start": "2024-03-18 00:00:00", "end": "2024-03-21 00:00:00"},
        "test": {"rows": 20, "start": "2024-03-22 00:00:00", "end": "2024-03-25 00:00:00"},
    }


def test_too_few_rows_names_min_rows() -> None:
    frame = daily_table(days=40, rows_per_day=1)  # windows of 28, 6 and 6 rows
    with pytest.raises(DataError) as info:
        split_frame(frame, make_config("x.csv"))
    message = str(info.value)
    assert "40 rows give windows of {'validation': 6, 'test': 6} rows, below split.min_rows=10" in message
    assert "lower split.min_rows" in message


def test_one_timestamp_cannot_be_split() -> None:
    frame = daily_table(days=1, rows_per_day=200)
    with pytest.raises(DataError) as info:
        split_frame(frame, make_config("x.csv"))
    assert "{'train': 0, 'validation': 0}" in str(info.value)
    assert "split.min_rows=10" in str(info.value)


def test_min_rows_is_respected_exactly() -> None:
    frame = daily_table(days=100, rows_per_day=1)  # windows of 70, 15 and 15 rows
    splits = split_frame(frame, make_config("x.csv", split={"min_rows": 15}))
    assert [len(splits.train), len(splits.validation), len(splits.test)] == [70, 15, 15]
    with pytest.raises(DataError, match="split.min_rows=16"):
        split_frame(frame, make_config("x.csv", split={"min_rows": 16}))


def classification_table(rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "x1": rng.normal(size=rows),
            "color": rng.choice(["a", "b"], size=rows),
            "y": np.where(np.arange(rows) % 5 == 0, "rare", "common"),  # 20% rare
        }
    )


def test_random_split_is_stratified_for_classification() -> None:
    frame = classification_table(200)
    config = make_config("x.csv", task="classification", time_column=None)
    splits = split_frame(frame, config)
    # 15% of 200 is 30 test rows; validation is 0.15/0.85 of the other 170 rows, which sklearn
    # rounds up from 30.000000000000004 to 31.
    assert [len(splits.train), len(splits.validation), len(splits.test)] == [139, 31, 30]
    rare = [(w["y"] == "rare").sum() for w in (splits.train, splits.validation, splits.test)]
    assert rare == [28, 6, 6]  # 20% in each window (40 rare rows in all)
    assert_disjoint(splits)
    assert set(splits.train.index) | set(splits.validation.index) | set(splits.test.index) == set(frame.index)
    assert splits.time_column is None
    assert splits.describe() == {"train": {"rows": 139}, "validation": {"rows": 31}, "test": {"rows": 30}}


def test_random_split_is_reproducible_with_the_seed() -> None:
    frame = classification_table(200)
    config = make_config("x.csv", task="classification", time_column=None, tuning={"seed": 7})
    first, second = split_frame(frame, config), split_frame(frame, config)
    for name in ("train", "validation", "test"):
        assert list(getattr(first, name).index) == list(getattr(second, name).index)
    other = split_frame(
        frame, make_config("x.csv", task="classification", time_column=None, tuning={"seed": 8})
    )
    assert list(other.test.index) != list(first.test.index)


def test_random_split_regression_is_not_stratified_but_sized() -> None:
    frame = daily_table(days=100, rows_per_day=1).drop(columns="day")
    splits = split_frame(frame, make_config("x.csv", time_column=None))
    assert [len(splits.train), len(splits.validation), len(splits.test)] == [69, 16, 15]
    assert splits.train.index.is_monotonic_increasing


def test_random_split_class_too_rare_is_a_data_error() -> None:
    frame = classification_table(100)
    frame.loc[0, "y"] = "unique"
    config = make_config("x.csv", task="classification", time_column=None)
    with pytest.raises(DataError, match="Cannot split 100 rows into train, validation and test"):
        split_frame(frame, config)


def window(days: list[str], index: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"day": pd.to_datetime(days), "y": range(len(days))}, index=index)


def test_assert_disjoint_accepts_clean_windows() -> None:
    splits = Splits(
        window(["2024-01-01", "2024-01-02"], [0, 1]),
        window(["2024-01-03"], [2]),
        window(["2024-01-04"], [3]),
        time_column="day",
    )
    assert_disjoint(splits)  # no exception


def test_assert_disjoint_rejects_shared_rows() -> None:
    splits = Splits(
        window(["2024-01-01", "2024-01-02"], [0, 1]),
        window(["2024-01-03"], [1]),
        window(["2024-01-04"], [3]),
        time_column="day",
    )
    with pytest.raises(AssertionError, match="share rows"):
        assert_disjoint(splits)


@pytest.mark.parametrize(
    ("validation_day", "test_day"),
    [("2024-01-02", "2024-01-04"), ("2024-01-03", "2024-01-03"), ("2024-01-05", "2024-01-04")],
)
def test_assert_disjoint_rejects_overlapping_times(validation_day: str, test_day: str) -> None:
    splits = Splits(
        window(["2024-01-01", "2024-01-02"], [0, 1]),
        window([validation_day], [2]),
        window([test_day], [3]),
        time_column="day",
    )
    with pytest.raises(AssertionError, match="time windows overlap"):
        assert_disjoint(splits)
