"""Unit tests of the promotion decision `tasks.registry.decide` (no MLflow involved)."""

from __future__ import annotations

import pytest

from conftest import make_config
from core.promotion import Decision, decide_promotion


def rmse_config(min_improvement: float = 0.01, must_beat_baseline: bool = True):
    return make_config(
        "x.csv",
        promotion={"min_improvement": min_improvement, "must_beat_baseline": must_beat_baseline},
    )


def accuracy_config(min_improvement: float = 0.01):
    return make_config(
        "x.csv",
        task="classification",
        metric={"name": "accuracy"},
        promotion={"min_improvement": min_improvement},
    )


def test_promote_without_champion_when_beating_baseline() -> None:
    decision = decide_promotion(rmse_config(), {"rmse": 40.0}, {"rmse": 100.0}, None)
    assert decision == Decision(
        True, "no champion yet; challenger rmse 40.0000 beats the baseline's 100.0000"
    )


def test_reject_when_not_beating_baseline() -> None:
    decision = decide_promotion(rmse_config(), {"rmse": 120.5}, {"rmse": 100.0}, {"rmse": 200.0})
    assert decision.promote is False
    assert decision.reason == "challenger rmse 120.5000 does not beat the baseline's 100.0000"


def test_reject_when_equal_to_baseline() -> None:
    decision = decide_promotion(rmse_config(), {"rmse": 100.0}, {"rmse": 100.0}, None)
    assert decision.promote is False
    assert "does not beat the baseline's 100.0000" in decision.reason


def test_reject_worse_than_baseline_on_maximized_metric() -> None:
    decision = decide_promotion(accuracy_config(), {"accuracy": 0.55}, {"accuracy": 0.6}, None)
    assert decision == Decision(False, "challenger accuracy 0.5500 does not beat the baseline's 0.6000")


def test_baseline_check_can_be_switched_off() -> None:
    decision = decide_promotion(rmse_config(must_beat_baseline=False), {"rmse": 120.0}, {"rmse": 100.0}, None)
    assert decision.promote is True
    assert "120.0000" in decision.reason and "100.0000" in decision.reason
    assert decision.reason == (
        "no champion yet; challenger rmse 120.0000 does not beat (not required) the baseline's 100.0000"
    )


def test_minimize_margin_respected_both_ways() -> None:
    config = rmse_config(min_improvement=0.05)
    baseline = {"rmse": 100.0}
    # 10 -> 9.4 is 6% better: promoted
    promoted = decide_promotion(config, {"rmse": 9.4}, baseline, {"rmse": 10.0})
    assert promoted.promote is True
    assert promoted.reason == (
        "challenger rmse 9.4000 vs champion 10.0000 (+6.00%, margin 5.00%): better by the margin"
    )
    # 10 -> 9.6 is only 4% better: champion kept
    kept = decide_promotion(config, {"rmse": 9.6}, baseline, {"rmse": 10.0})
    assert kept.promote is False
    assert kept.reason == (
        "challenger rmse 9.6000 vs champion 10.0000 (+4.00%, margin 5.00%): not better by the margin, "
        "champion kept"
    )
    # worse than the champion
    worse = decide_promotion(config, {"rmse": 11.0}, baseline, {"rmse": 10.0})
    assert worse.promote is False
    assert "(-10.00%, margin 5.00%)" in worse.reason


def test_maximize_margin_respected_both_ways() -> None:
    config = accuracy_config(min_improvement=0.02)
    baseline = {"accuracy": 0.5}
    promoted = decide_promotion(config, {"accuracy": 0.83}, baseline, {"accuracy": 0.8})  # +3.75%
    assert promoted.promote is True
    assert "challenger accuracy 0.8300 vs champion 0.8000 (+3.75%, margin 2.00%)" in promoted.reason
    kept = decide_promotion(config, {"accuracy": 0.81}, baseline, {"accuracy": 0.8})  # +1.25%
    assert kept.promote is False
    assert "challenger accuracy 0.8100 vs champion 0.8000 (+1.25%, margin 2.00%)" in kept.reason
    assert kept.reason.endswith("champion kept")
    worse = decide_promotion(config, {"accuracy": 0.7}, baseline, {"accuracy": 0.8})
    assert worse.promote is False
    assert "(-12.50%" in worse.reason


def test_margin_reached_exactly_promotes() -> None:
    config = rmse_config(min_improvement=0.125)
    decision = decide_promotion(config, {"rmse": 7.0}, {"rmse": 100.0}, {"rmse": 8.0})  # exactly 1/8 better
    assert decision.promote is True
    assert "(+12.50%, margin 12.50%)" in decision.reason


def test_zero_margin_needs_a_strict_improvement() -> None:
    config = rmse_config(min_improvement=0.0)
    assert decide_promotion(config, {"rmse": 9.999}, {"rmse": 100.0}, {"rmse": 10.0}).promote is True
    assert decide_promotion(config, {"rmse": 10.0}, {"rmse": 100.0}, {"rmse": 10.0}).promote is False


def test_champion_metric_of_zero() -> None:
    config = make_config("x.csv", metric={"name": "r2"}, promotion={"min_improvement": 0.5})
    better = decide_promotion(config, {"r2": 0.3}, {"r2": -0.1}, {"r2": 0.0})
    assert better.promote is True
    same = decide_promotion(config, {"r2": 0.0}, {"r2": -0.1}, {"r2": 0.0})
    assert same.promote is False


@pytest.mark.parametrize("metric", ["rmse", "mae"])
def test_decision_uses_the_configured_metric(metric: str) -> None:
    config = make_config("x.csv", metric={"name": metric}, promotion={"min_improvement": 0.0})
    challenger = {"rmse": 5.0, "mae": 9.0}
    champion = {"rmse": 6.0, "mae": 8.0}
    decision = decide_promotion(config, challenger, {"rmse": 50.0, "mae": 50.0}, champion)
    assert decision.promote is (metric == "rmse")
    assert decision.reason.startswith(f"challenger {metric} ")
