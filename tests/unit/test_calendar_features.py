"""Calendar features from the time column: pure scikit-learn, periodic, and kept only when they help."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from conftest import hourly_frame, make_config
from core.features import build_preprocessor, calendar_features, probe_calendar
from core.validation import DataSchema, validate_table

SCHEMA = DataSchema("y", ["x1"], ["color"], "day")


def test_calendar_features_read_text_and_datetimes_alike_and_repeat_each_period() -> None:
    stamps = pd.Series(pd.to_datetime(["2024-03-01 06:00", "2024-03-08 06:00", "2024-07-01 18:30"]))
    fitted = calendar_features().fit(stamps.to_frame("day"))
    as_datetime = fitted.transform(stamps.to_frame("day"))
    as_text = fitted.transform(stamps.dt.strftime("%Y-%m-%d %H:%M:%S").to_frame("day"))
    np.testing.assert_allclose(as_datetime, as_text)
    names = list(fitted.get_feature_names_out(["day"]))
    day = [i for i, name in enumerate(names) if name.startswith("day__")]
    week = [i for i, name in enumerate(names) if name.startswith("week__")]
    # One week apart, same hour: the day and week splines agree, the trend does not
    np.testing.assert_allclose(as_datetime[0, day + week], as_datetime[1, day + week], atol=1e-9)
    assert as_datetime[0, names.index("trend__day")] < as_datetime[1, names.index("trend__day")]
    assert not np.allclose(as_datetime[0, day], as_datetime[2, day])  # another hour of the day


def test_the_preprocessor_with_calendar_features_is_made_of_library_parts_only() -> None:
    preprocessor = build_preprocessor(replace(SCHEMA, calendar=True))
    calendar = dict((name, part) for name, part, _ in preprocessor.transformers)["calendar"]
    modules = {type(step).__module__.split(".")[0] for _, step in calendar.steps}
    modules |= {type(part).__module__.split(".")[0] for _, part in calendar[-1].transformer_list}
    assert modules == {"sklearn"}
    assert {step.func.__module__ for _, step in calendar.steps[:2]} == {"numpy"}


def test_probe_keeps_calendar_features_when_the_target_follows_the_clock() -> None:
    frame, schema = validate_table(hourly_frame(), make_config("x.csv"))
    train, validation = frame.iloc[:2000], frame.iloc[2000:2500]
    chosen, probe = probe_calendar(train, validation, schema, make_config("x.csv"))
    assert probe is not None and probe.kept and chosen.calendar
    assert probe.with_calendar < 0.5 * probe.without_calendar  # rmse: the hour explains most of y
    assert chosen.model_inputs == ["x1", "color", "day"] and chosen.features == ["x1", "color"]


def test_probe_leaves_calendar_features_out_when_they_do_not_help() -> None:
    frame, schema = validate_table(hourly_frame(signal=False, seed=3), make_config("x.csv"))
    train, validation = frame.iloc[:2000], frame.iloc[2000:2500]
    chosen, probe = probe_calendar(train, validation, schema, make_config("x.csv"))
    assert probe is not None and not probe.kept and not chosen.calendar
    assert probe.with_calendar >= probe.without_calendar


def test_probe_is_off_without_a_time_column_or_when_disabled() -> None:
    frame, schema = validate_table(hourly_frame(), make_config("x.csv"))
    disabled = make_config("x.csv", features={"datetime": False})
    assert probe_calendar(frame, frame, schema, disabled) == (schema, None)
