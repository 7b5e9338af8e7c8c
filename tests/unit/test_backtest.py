"""Backtest simulation: argument parsing, planning, policy decisions and the summary."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import make_config, synthetic_frame
from core.backtest import (
    ModelSpec,
    Policy,
    PolicyState,
    parse_duration,
    parse_policies,
    plan_windows,
    summarize,
    wants_retrain,
)
from core.errors import BadInputError
from core.results import PolicyResult
from core.validation import DataSchema


def test_parse_policies_and_durations() -> None:
    policies = parse_policies("never, every:28d,drift")
    assert [p.name for p in policies] == ["never", "every:28d", "drift"]
    assert policies[1].interval == pd.Timedelta(days=28)
    assert parse_duration("12h") == pd.Timedelta(hours=12)
    assert parse_duration("2w") == pd.Timedelta(days=14)
    with pytest.raises(BadInputError, match="unknown policy 'sometimes'"):
        parse_policies("never,sometimes")
    with pytest.raises(BadInputError, match="repeated"):
        parse_policies("never,never")
    for bad in ("7", "0d", "7y", "every"):
        with pytest.raises(BadInputError, match="is not a duration"):
            parse_duration(bad)


def test_plan_windows_default_start_and_errors() -> None:
    times = pd.Series(pd.date_range("2020-01-01", "2020-12-31", freq="D"))
    begin, windows = plan_windows(times, None, pd.Timedelta(days=7))
    assert begin == times.min() + (times.max() - times.min()) * 0.3
    assert windows[0][0] == begin and all(b - a == pd.Timedelta(days=7) for a, b in windows[:-1])
    assert pd.Timedelta(0) < windows[-1][1] - windows[-1][0] <= pd.Timedelta(days=7)
    assert windows[-1][1] == times.max() + pd.Timedelta(days=1)  # the last day is replayed too
    with pytest.raises(BadInputError, match="outside the data"):
        plan_windows(times, "2030-01-01", pd.Timedelta(days=7))
    with pytest.raises(BadInputError, match="outside the data"):
        plan_windows(times, "2019-01-01", pd.Timedelta(days=7))
    with pytest.raises(BadInputError, match="larger than the data after the start"):
        plan_windows(times, "2020-12-01", pd.Timedelta(days=60))
    with pytest.raises(BadInputError, match="is not a date"):
        plan_windows(times, "someday", pd.Timedelta(days=7))


def state(policy: Policy, trained_at: str) -> PolicyState:
    return PolicyState(
        policy,
        model=None,
        spec=ModelSpec("linear", {}, 1.0),
        reference=pd.DataFrame(),
        trained_at=pd.Timestamp(trained_at),
    )


def test_interval_and_never_decisions() -> None:
    schema = DataSchema("y", [], [])
    config = make_config("unused.csv")
    every = state(Policy("every:28d", pd.Timedelta(days=28)), "2020-01-01")
    assert not wants_retrain(every, pd.DataFrame(), 1.0, pd.Timestamp("2020-01-28"), schema, config)
    assert wants_retrain(every, pd.DataFrame(), 1.0, pd.Timestamp("2020-01-29"), schema, config)
    never = state(Policy("never"), "2020-01-01")
    assert not wants_retrain(never, pd.DataFrame(), 99.0, pd.Timestamp("2021-01-01"), schema, config)


def test_drift_policy_respects_the_cooldown() -> None:
    reference = synthetic_frame(rows=2000, seed=0)
    shifted = synthetic_frame(rows=300, seed=1).assign(x1=lambda f: f["x1"] + 5, x2=lambda f: f["x2"] + 8)
    schema = DataSchema("y", ["x1", "x2"], ["color"], "day")
    config = make_config("unused.csv", drift={"cooldown_hours": 48})
    drift = state(Policy("drift"), "2020-01-01")
    drift.reference = reference
    assert wants_retrain(drift, shifted, 1.0, pd.Timestamp("2020-02-01"), schema, config)
    assert not wants_retrain(drift, shifted, 1.0, pd.Timestamp("2020-02-02"), schema, config)  # cooling
    assert wants_retrain(drift, shifted, 1.0, pd.Timestamp("2020-02-04"), schema, config)
    calm = state(Policy("drift"), "2020-01-01")
    calm.reference = reference
    quiet = synthetic_frame(rows=300, seed=2)  # same distribution, metric as expected
    assert not wants_retrain(calm, quiet, 1.0, pd.Timestamp("2020-03-01"), schema, config)
    assert calm.verdicts == [False] and drift.verdicts == [True, True, True]


def test_summarize() -> None:
    table = pd.DataFrame(
        {
            "policy": ["never", "drift", "never", "drift"],
            "rmse": [2.0, 1.0, 4.0, 1.0],
            "retrained": [False, True, False, False],
            "train_seconds": [0.0, 1.5, 0.0, 0.0],
        }
    )
    assert summarize(table, "rmse") == {
        "never": PolicyResult(mean_metric=3.0, retrains=0, train_seconds=0.0),
        "drift": PolicyResult(mean_metric=1.0, retrains=1, train_seconds=1.5),
    }
