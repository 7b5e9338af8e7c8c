"""Backtest simulation: argument parsing, planning, policy decisions and the summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import make_config, synthetic_frame
from core.backtest import (
    BacktestPlan,
    ModelSpec,
    Policy,
    PolicyState,
    ReplayCache,
    calendar_at,
    parse_duration,
    parse_policies,
    plan_windows,
    summarize,
    tune_trigger,
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
    # The feature rules decide here (no model to probe); the cooldown is the same for the probe.
    config = make_config("unused.csv", drift={"cooldown_hours": 48, "gain_probe": False})
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
        "never": PolicyResult(mean_metric=3.0, retrains=0, train_seconds=0.0, windows=2),
        "drift": PolicyResult(
            mean_metric=1.0,
            retrains=1,
            train_seconds=1.5,
            windows=2,
            calendar_metric_at_same_retrains=3.0,  # only `never`: the ladder's end holds
            beats_calendar=True,
        ),
    }


def test_calendar_is_interpolated_at_the_same_retrains() -> None:
    points = [(0, 120.0), (6, 80.0), (13, 64.0), (26, 60.0), (52, 58.0)]
    assert calendar_at(points, 13) == pytest.approx(64.0)
    assert calendar_at(points, 3) == pytest.approx(100.0)
    assert calendar_at(points, 20) == pytest.approx(64.0 - 4.0 * 7 / 13)
    assert calendar_at(points, 60) == pytest.approx(58.0)  # beyond the ladder: its end
    assert calendar_at([(4, 1.0), (4, 3.0), (0, 5.0)], 2) == pytest.approx(3.5)  # same count: mean
    assert calendar_at([], 3) is None


def test_trigger_is_compared_with_the_calendar_in_the_metric_direction() -> None:
    rows = []
    for policy, values, retrained in [
        ("never", [0.80, 0.80], [False, False]),
        ("every:7d", [0.90, 0.90], [True, True]),
        ("drift", [0.86, 0.86], [True, False]),
        ("every:14d", [0.84, 0.84], [False, True]),
    ]:
        rows += [
            {"policy": policy, "f1_macro": v, "retrained": r, "train_seconds": 0.0}
            for v, r in zip(values, retrained, strict=True)
        ]
    result = summarize(pd.DataFrame(rows), "f1_macro", greater=True)
    drift = result["drift"]
    assert drift.calendar_metric_at_same_retrains == pytest.approx(0.84)  # every:14d also retrained once
    assert drift.beats_calendar is True
    assert (
        result["every:14d"].beats_calendar is None
        and result["never"].calendar_metric_at_same_retrains is None
    )
    worse = summarize(pd.DataFrame(rows), "f1_macro", greater=False)["drift"]
    assert worse.beats_calendar is False  # the same numbers as a loss: higher is worse


def test_default_policies_are_the_calendar_ladder() -> None:
    assert BacktestPlan(step="7d").policies == ""
    assert [p.name for p in BacktestPlan(step="7d").policy_list] == [
        "never",
        "every:7d",
        "every:14d",
        "every:28d",
        "every:56d",
        "drift",
    ]
    assert [p.name for p in BacktestPlan(step="12h", policies="never,drift").policy_list] == [
        "never",
        "drift",
    ]
    assert Policy("every:14d").is_calendar and Policy("never").is_calendar and not Policy("drift").is_calendar


def hourly_history(days: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = days * 24
    temp, other = rng.uniform(0, 1, rows), rng.normal(size=rows)
    return pd.DataFrame(
        {
            "day": pd.date_range("2020-01-01", periods=rows, freq="h"),
            "temp": temp,
            "other": other,
            "y": 10 * temp + 2 * other + rng.normal(size=rows),
        }
    )


def test_trigger_search_never_sees_the_held_out_half() -> None:
    schema = DataSchema("y", ["temp", "other"], [], "day")
    config = make_config("unused.csv", candidates={"linear": {}})
    frame = hourly_history(90, seed=0)
    begin, windows = plan_windows(frame["day"], "2020-01-31", pd.Timedelta(days=7))
    calendar = parse_policies("never,every:7d,every:14d")
    spec = ModelSpec("linear", {}, 1.0)
    held_start = windows[len(windows) // 2][0]
    # The same history, but the held-out half's labels changed beyond recognition.
    changed = frame.copy()
    late = changed["day"] >= held_start
    changed.loc[late, "y"] = changed.loc[late, "y"] * -3 + 50
    first = tune_trigger(frame, schema, config, windows, calendar, spec, ReplayCache())
    second = tune_trigger(changed, schema, config, windows, calendar, spec, ReplayCache())
    assert first.held_out_start == held_start.date().isoformat()
    assert first.search_windows + first.held_out_windows == len(windows)
    assert first.tried == second.tried and first.settings == second.settings
    points = lambda result: {p: (v.mean_metric, v.retrains) for p, v in result.items()}  # noqa: E731
    assert points(first.search) == points(second.search)
    assert points(first.held_out) != points(second.held_out)  # scored after the search
    assert second.held_out["drift"].retrains >= 1  # the trigger fires on the changed half
    assert first.drift_yaml.startswith("drift:\n  confidence: ")
    assert len(first.tried) == 20
