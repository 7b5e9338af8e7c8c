"""Unit tier for drift: Evidently's tests on full data, the decision rules, sampling, batch selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.config import DriftConfig
from core.drift import (
    ColumnDrift,
    column_drift,
    detect_columns,
    drift_verdict,
    evidently_report,
    performance_decay,
    rows_after,
    time_stratified_sample,
)
from core.errors import DataError
from core.validation import DataSchema

SCHEMA = DataSchema("y", ["a", "b", "small"], ["color"], "day")


def frame(rows: int, seed: int, shift: float = 0.0, red_share: float = 1 / 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    others = (1 - red_share) / 2
    return pd.DataFrame(
        {
            "day": pd.date_range("2024-01-01", periods=rows, freq="h"),
            "a": rng.normal(shift, 1, rows),
            "b": rng.uniform(0, 10, rows),
            "small": rng.integers(0, 3, rows),
            "color": rng.choice(["red", "green", "blue"], rows, p=[red_share, others, others]),
            "y": rng.normal(size=rows),
        }
    )


def col(name: str, drifted: bool) -> ColumnDrift:
    return ColumnDrift(name, "numeric", "wasserstein", 0.5 if drifted else 0.01, 0.1, drifted)


def test_default_methods_follow_evidently_by_reference_size() -> None:
    big, small = frame(3000, 0), frame(500, 1)
    current = frame(2000, 2)
    assert column_drift(big["a"], current["a"], "numeric", None, None).method == "wasserstein"
    assert column_drift(big["small"], current["small"], "numeric", None, None).method == "jensenshannon"
    assert column_drift(big["color"], current["color"], "categorical", None, None).method == "jensenshannon"
    assert column_drift(small["a"], current["a"], "numeric", None, None).method == "ks"
    assert column_drift(small["color"], current["color"], "categorical", None, None).method == "chisquare"


def test_wasserstein_score_is_the_normed_distance() -> None:
    from scipy.stats import wasserstein_distance

    reference, current = frame(3000, 0), frame(3000, 1, shift=0.5)
    result = column_drift(reference["a"], current["a"], "numeric", None, None)
    expected = wasserstein_distance(reference["a"], current["a"]) / np.std(reference["a"])
    assert result.score == pytest.approx(expected)
    assert result.drifted is True and result.threshold == 0.1


def test_column_verdicts_agree_with_evidently_report() -> None:
    reference = frame(3000, 0)
    current = frame(4000, 1, shift=0.4, red_share=0.7)
    ours = {c.column: c for c in detect_columns(reference, current, SCHEMA, DriftConfig())}
    snapshot = evidently_report(reference, current, SCHEMA, DriftConfig())
    theirs = {
        m["config"]["column"]: m
        for m in snapshot.dict()["metrics"]
        if m["config"]["type"].endswith("ValueDrift")
    }
    assert set(theirs) == set(ours)
    for name, metric in theirs.items():
        assert ours[name].score == pytest.approx(metric["value"], rel=1e-6), name
        assert ours[name].drifted == (metric["value"] >= metric["config"]["threshold"]), name
    assert ours["a"].drifted and ours["color"].drifted and not ours["b"].drifted


def test_configured_method_and_threshold_per_column() -> None:
    reference, current = frame(3000, 0), frame(3000, 1, shift=0.05)
    config = DriftConfig(per_column_method={"a": "psi"}, per_column_threshold={"b": 0.5})
    results = {c.column: c for c in detect_columns(reference, current, SCHEMA, config)}
    assert results["a"].method == "psi"
    assert results["b"].threshold == 0.5 and results["b"].method == "wasserstein"


def test_empty_column_is_bad_input() -> None:
    reference = frame(300, 0)
    current = frame(300, 1).assign(a=np.nan)
    with pytest.raises(DataError, match="column 'a' has no values in the batch"):
        column_drift(reference["a"], current["a"], "numeric", None, None)


def test_share_rule_fires_at_threshold() -> None:
    columns = [col("a", True), col("b", True), col("c", False), col("d", False)]
    verdict = drift_verdict(columns, DriftConfig(share_threshold=0.5), None, [])
    assert verdict.drift_detected and verdict.share_drifted == 0.5
    assert verdict.drifted_columns == ["a", "b"]
    assert "2 of 4 features drifted (50% >= 50%): a, b" in verdict.reasons[0]
    assert not drift_verdict(columns, DriftConfig(share_threshold=0.75), None, []).drift_detected


def test_critical_column_alone_is_drift() -> None:
    columns = [col("a", True), col("b", False), col("c", False), col("d", False)]
    verdict = drift_verdict(columns, DriftConfig(critical_columns=["a"]), None, [])
    assert verdict.drift_detected and verdict.reasons == ["critical columns drifted: a"]
    assert not drift_verdict(columns, DriftConfig(critical_columns=["b"]), None, []).drift_detected


def test_performance_decay_rule() -> None:
    columns = [col("a", False), col("b", False)]
    assert drift_verdict(columns, DriftConfig(max_metric_decay=0.2), 0.3, []).drift_detected
    assert not drift_verdict(columns, DriftConfig(max_metric_decay=0.2), 0.1, []).drift_detected
    assert performance_decay(130.0, 100.0, greater_is_better=False) == pytest.approx(0.3)
    assert performance_decay(0.8, 0.9, greater_is_better=True) == pytest.approx(0.1 / 0.9)
    assert performance_decay(90.0, 100.0, greater_is_better=False) < 0


def test_k_of_n_needs_confirmation() -> None:
    columns = [col("a", True)]
    config = DriftConfig(confirmations=2, window=3)
    first = drift_verdict(columns, config, None, history=[False, False])
    assert not first.drift_detected and "not confirmed: drift in 1 of the last 3 checks" in first.reasons[-1]
    assert drift_verdict(columns, config, None, history=[False, True]).drift_detected


def test_no_rule_fired_still_gives_a_reason() -> None:
    verdict = drift_verdict([col("a", False), col("b", True), col("c", False)], DriftConfig(), None, [])
    assert not verdict.drift_detected
    assert verdict.reasons == ["1 of 3 features drifted (33%); no rule fired"]


def test_time_stratified_sample_spans_the_batch_in_order() -> None:
    batch = frame(10_000, 0).sample(frac=1.0, random_state=3)  # shuffled
    sample = time_stratified_sample(batch, "day", 100)
    assert len(sample) == 100
    assert sample["day"].is_monotonic_increasing
    assert sample["day"].iloc[0] == batch["day"].min() and sample["day"].iloc[-1] == batch["day"].max()
    assert time_stratified_sample(batch, "day", 20_000) is batch


def test_rows_after_training_window() -> None:
    data = frame(48, 0)
    newer = rows_after(data, "day", "2024-01-01 23:00:00")
    assert len(newer) == 24 and newer["day"].min() == pd.Timestamp("2024-01-02")
    with pytest.raises(DataError, match="no rows after the champion's training window"):
        rows_after(data, "day", "2030-01-01")
    with pytest.raises(DataError, match="--current"):
        rows_after(data, None, "2024-01-01")
