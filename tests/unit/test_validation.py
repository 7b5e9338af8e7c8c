"""Unit tests of `tasks/validate.py` `check_and_type`: one bad input per test, then the good path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_config, synthetic_frame
from core.errors import DataError
from core.validation import infer_columns, validate_table


def config(**overrides: object):
    return make_config("unused.csv", **overrides)


def frame(rows: int = 40, task: str = "regression") -> pd.DataFrame:
    return synthetic_frame(rows, seed=1, task=task)


def error_of(raw: pd.DataFrame, cfg, **kwargs: object) -> str:
    with pytest.raises(DataError) as info:
        validate_table(raw, cfg, **kwargs)
    return str(info.value)


def test_missing_target_column() -> None:
    message = error_of(frame().drop(columns="y"), config())
    assert "target column ['y'] not in the data" in message
    assert "(it has ['day', 'x1', 'x2', 'color'])" in message


def test_missing_time_column() -> None:
    message = error_of(frame().drop(columns="day"), config())
    assert "time column ['day'] not in the data" in message


def test_missing_declared_feature_column() -> None:
    cfg = config(features={"numeric": ["x1", "x3"], "categorical": ["color"]})
    message = error_of(frame(), cfg)
    assert "numeric feature column ['x3'] not in the data" in message
    assert "'x1'" not in message.split("(it has")[0]


def test_missing_declared_categorical_columns_plural() -> None:
    cfg = config(features={"categorical": ["shape", "size"]})
    message = error_of(frame(), cfg)
    assert "categorical feature columns ['shape', 'size'] not in the data" in message


def test_target_all_missing() -> None:
    raw = frame()
    raw["y"] = np.nan
    message = error_of(raw, config())
    assert "target 'y' is empty (all values are missing)" in message


def test_target_all_missing_as_text() -> None:
    raw = frame()
    raw["y"] = pd.Series([None] * len(raw), dtype=object)
    assert "target 'y' is empty" in error_of(raw, config())


def test_constant_target() -> None:
    raw = frame()
    raw["y"] = 7.5
    message = error_of(raw, config())
    assert "target 'y' is constant (7.5)" in message


def test_classification_target_with_one_class() -> None:
    raw = frame(task="classification")
    raw["y"] = "high"
    message = error_of(raw, config(task="classification"))
    assert "classification target 'y' has a single class" in message


def test_classification_single_class_after_dropping_missing() -> None:
    raw = frame(task="classification")
    raw["y"] = ["high"] * (len(raw) - 3) + [None] * 3
    assert "has a single class" in error_of(raw, config(task="classification"))


def test_non_numeric_values_in_a_numeric_column() -> None:
    raw = frame()
    raw["x2"] = raw["x2"].astype(object)
    raw.loc[[3, 7, 9], "x2"] = ["n/a", "oops", "n/a"]
    message = error_of(raw, config())
    assert "column 'x2' should be numeric but 3 values are not numbers (e.g. 'n/a', 'oops')" in message


def test_mostly_numeric_text_column_counts_as_numeric() -> None:
    raw = frame()
    raw["x2"] = [str(v) for v in raw["x2"]]
    raw.loc[5, "x2"] = "bad"
    message = error_of(raw, config())
    assert "column 'x2' should be numeric but 1 values are not numbers (e.g. 'bad')" in message


def test_text_column_of_numbers_is_typed_numeric() -> None:
    raw = frame()
    raw["x2"] = [f"{v:.3f}" for v in raw["x2"]]
    typed, schema = validate_table(raw, config())
    assert schema.numeric == ["x1", "x2"]
    assert typed["x2"].dtype == np.float64
    assert typed["x2"].tolist() == [float(f"{v:.3f}") for v in frame()["x2"]]


def test_non_numeric_regression_target() -> None:
    raw = frame()
    raw["y"] = raw["y"].astype(object)
    raw.loc[0, "y"] = "lots"
    message = error_of(raw, config())
    assert "column 'y' should be numeric but 1 values are not numbers (e.g. 'lots')" in message


def test_unparseable_time_column() -> None:
    raw = frame()
    raw.loc[[2, 4], "day"] = ["yesterday", "not a date"]
    message = error_of(raw, config())
    assert "time column 'day' has 2 values that are not dates (e.g. 'yesterday', 'not a date')" in message


def test_header_only() -> None:
    raw = frame().iloc[0:0]
    message = error_of(raw, config())
    assert "The data has no rows (only the header with 5 columns)" in message


def test_duplicated_column_names() -> None:
    raw = pd.concat([frame(), frame()[["x1"]]], axis=1)
    assert "repeats the column names ['x1']" in error_of(raw, config())


def test_no_feature_columns_left() -> None:
    raw = frame()[["day", "y"]]
    assert "no feature columns are left" in error_of(raw, config())


def test_several_problems_in_one_error() -> None:
    raw = frame().drop(columns="y")
    raw["x2"] = raw["x2"].astype(object)
    raw.loc[1, "x2"] = "?"
    raw.loc[3, "day"] = "someday"
    cfg = config(features={"numeric": ["x1", "x2", "x9"]})
    with pytest.raises(DataError) as info:
        validate_table(raw, cfg)
    message = str(info.value)
    assert message.startswith("The data does not fit the config: ")
    assert "target column ['y'] not in the data" in message
    assert "numeric feature column ['x9'] not in the data" in message
    assert "column 'x2' should be numeric but 1 values are not numbers (e.g. '?')" in message
    assert "time column 'day' has 1 values that are not dates (e.g. 'someday')" in message
    assert len(info.value.problems) == 1  # one paragraph, one error
    assert message.count("; ") == 3


def test_champion_schema_column_gone_and_type_changed() -> None:
    raw = frame().drop(columns="x2")
    expected = {"x1": "categorical", "x2": "numeric", "color": "categorical"}
    message = error_of(raw, config(), expected_schema=expected)
    assert "champion input column ['x2'] not in the data" in message
    assert "column 'x1' is numeric here but the champion expects categorical" in message
    assert "'color' is" not in message


def test_champion_expects_numeric_but_column_is_text() -> None:
    message = error_of(frame(), config(), expected_schema={"color": "numeric"})
    assert "column 'color' should be numeric but" in message


def test_rows_with_missing_target_are_dropped_and_noted() -> None:
    raw = frame()
    raw.loc[[0, 5, 6], "y"] = np.nan
    typed, schema = validate_table(raw, config())
    assert len(typed) == len(raw) - 3
    assert schema.dropped_target_rows == 3
    assert schema.notes == ["dropped 3 rows whose target 'y' is missing"]
    assert typed["y"].notna().all()
    assert typed["x1"].tolist() == raw["x1"].drop(index=[0, 5, 6]).tolist()
    assert list(typed.index) == list(range(len(raw) - 3))


def test_unlabelled_batch_when_target_not_required() -> None:
    raw = frame().drop(columns="y")
    typed, schema = validate_table(raw, config(), require_target=False)
    assert "y" not in typed.columns
    assert len(typed) == len(raw)
    assert schema.features == ["x1", "x2", "color"]


def test_input_frame_is_not_mutated() -> None:
    raw = frame()
    raw["x2"] = [f"{v:.4f}" for v in raw["x2"]]
    raw.loc[[1, 2], "y"] = np.nan
    before = raw.copy()
    typed, _ = validate_table(raw, config())
    pd.testing.assert_frame_equal(raw, before)
    assert raw["day"].dtype == object and raw["x2"].dtype == object
    assert typed["x2"].dtype == np.float64


def test_typed_output_and_schema() -> None:
    raw = frame()
    raw["flag"] = raw["x1"] > 0
    raw["unused"] = 1.0
    typed, schema = validate_table(raw, config(features={"drop": ["unused"]}))
    assert schema.target == "y" and schema.time_column == "day"
    assert schema.numeric == ["x1", "x2"]
    assert schema.categorical == ["color", "flag"]
    assert list(typed.columns) == ["day", "x1", "x2", "color", "flag", "y"]
    assert pd.api.types.is_datetime64_any_dtype(typed["day"])
    assert typed["day"].iloc[0] == pd.Timestamp("2020-01-01")
    assert schema.as_dict() == {
        "target": "y",
        "time_column": "day",
        "numeric": ["x1", "x2"],
        "categorical": ["color", "flag"],
        "calendar_features": False,  # decided later, on validation
    }


def test_inference_numeric_vs_categorical() -> None:
    raw = pd.DataFrame(
        {
            "ints": [1, 2, 3, 4],
            "floats": [0.5, 1.5, np.nan, 2.0],
            "text": ["a", "b", "a", None],
            "bools": [True, False, True, True],
            "num_text": ["1", "2", "x", "4"],  # 3 of 4 parse -> numeric
            "half_text": ["1", "2", "x", "y"],  # 2 of 4 is not more than half -> categorical
            "empty": [None, None, None, None],
            "y": [1.0, 2.0, 3.0, 4.0],
        }
    )
    numeric, categorical = infer_columns(raw, config(time_column=None), set())
    assert numeric == ["ints", "floats", "num_text"]
    assert categorical == ["text", "bools", "half_text", "empty"]


def test_declared_lists_override_inference() -> None:
    raw = frame()
    raw["code"] = [1, 2] * 20
    cfg = config(features={"numeric": ["x1"], "categorical": ["code"]})
    numeric, categorical = infer_columns(raw, cfg, set())
    # both lists given: only listed columns are features
    assert numeric == ["x1"]
    assert categorical == ["code"]
    cfg = config(features={"categorical": ["code"]})
    numeric, categorical = infer_columns(raw, cfg, set())
    assert numeric == ["x1", "x2"]
    assert categorical == ["color", "code"]
