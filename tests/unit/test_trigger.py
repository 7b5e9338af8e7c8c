"""The model-aware trigger on tiny frames: the retrain-gain probe, its bootstrap and the verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from conftest import make_config
from core.catalogue import fit_candidate
from core.config import DriftConfig
from core.drift import detect_columns, drift_verdict
from core.features import build_preprocessor
from core.trigger import (
    Predictions,
    block_indices,
    judge_gain,
    lower_bound,
    measure_gain,
    metric_samples,
    probe_batch,
    split_in_time,
    suffix_lengths,
)
from core.validation import DataSchema

SCHEMA = DataSchema("y", ["temp", "other"], [], "day")


def seasonal(rows: int, seed: int, low: float, high: float, shift: float = 0.0, start: str = "2020-01-01"):
    """Hourly rows whose target follows `temp` (a season's range [low, high]) plus `shift`."""
    rng = np.random.default_rng(seed)
    temp = rng.uniform(low, high, rows)
    other = rng.normal(size=rows)
    y = 10 * temp + 2 * other + shift + rng.normal(scale=1.0, size=rows)
    return pd.DataFrame(
        {"day": pd.date_range(start, periods=rows, freq="h"), "temp": temp, "other": other, "y": y}
    )


@pytest.fixture(scope="module")
def champion():
    """A linear champion trained on a whole year of seasons (temp from 0 to 1)."""
    year = seasonal(3000, 0, 0.0, 1.0)
    preprocessor = build_preprocessor(SCHEMA)
    return year, fit_candidate(year, preprocessor, SCHEMA, "regression", "linear", {}, 0)


def verdict_for(year: pd.DataFrame, model, batch: pd.DataFrame, drift: DriftConfig | None = None):
    config = make_config("unused.csv", drift=(drift or DriftConfig()).model_dump())
    columns = detect_columns(year, batch, SCHEMA, config.drift)
    probe = probe_batch(model, batch, SCHEMA, config)
    return columns, probe, drift_verdict(columns, config.drift, None, [], probe)


def test_seasonal_drift_with_the_same_relation_is_not_drift(champion) -> None:
    year, model = champion
    summer = seasonal(400, 1, 0.7, 1.0, start="2021-06-01")  # only hot hours: `temp` drifts
    columns, probe, verdict = verdict_for(year, model, summer)
    assert {c.column for c in columns if c.drifted} == {"temp"}
    assert probe is not None and not probe.significant
    assert not verdict.drift_detected
    assert verdict.drifted_columns == ["temp"]  # the drift is still reported
    assert "features drifted" in verdict.reasons[0] and "probe decides" in verdict.reasons[0]
    assert any("retraining would not help" in r for r in verdict.reasons)
    # The old feature rule would have fired on the same batch (one of two features drifted).
    without_probe = drift_verdict(columns, DriftConfig(), None, [], None)
    assert without_probe.drift_detected


def test_a_changed_relation_is_drift(champion) -> None:
    year, model = champion
    summer = seasonal(400, 1, 0.7, 1.0, shift=3.0, start="2021-06-01")  # same season, demand grew
    _, probe, verdict = verdict_for(year, model, summer)
    assert probe is not None and probe.significant and probe.gain_low > 0
    assert probe.challenger_metric < probe.champion_metric
    assert verdict.drift_detected
    assert verdict.reasons[0].startswith("1 of 2 features drifted")
    assert "retraining helps" in verdict.reasons[1]


def test_a_changed_relation_without_feature_drift_is_drift(champion) -> None:
    year, model = champion
    batch = seasonal(400, 2, 0.0, 1.0, shift=3.0, start="2021-01-01")
    columns, _, verdict = verdict_for(year, model, batch)
    assert not any(c.drifted for c in columns)
    assert verdict.drift_detected


def test_min_gain_and_confidence_raise_the_bar(champion) -> None:
    year, model = champion
    batch = seasonal(400, 3, 0.0, 1.0, shift=1.0, start="2021-01-01")
    _, probe, verdict = verdict_for(year, model, batch)
    assert probe.significant and verdict.drift_detected
    _, strict, verdict = verdict_for(year, model, batch, DriftConfig(min_gain=probe.gain + 0.01))
    assert not strict.significant and not verdict.drift_detected


def test_few_labels_fall_back_to_the_feature_rules(champion) -> None:
    year, model = champion
    summer = seasonal(40, 1, 0.7, 1.0, start="2021-06-01")
    _, probe, verdict = verdict_for(year, model, summer)
    assert probe is None
    assert verdict.drift_detected and ">= 50%)" in verdict.reasons[0]
    unlabelled = seasonal(400, 1, 0.7, 1.0).drop(columns="y")
    assert probe_batch(model, unlabelled, SCHEMA, make_config("unused.csv")) is None


def test_the_probe_is_off_when_configured(champion) -> None:
    _, model = champion
    batch = seasonal(400, 2, 0.0, 1.0, shift=3.0)
    config = make_config("unused.csv", drift={"gain_probe": False})
    assert probe_batch(model, batch, SCHEMA, config) is None


def test_critical_columns_still_alert_with_labels(champion) -> None:
    year, model = champion
    summer = seasonal(400, 1, 0.7, 1.0, start="2021-06-01")
    _, _, verdict = verdict_for(year, model, summer, DriftConfig(critical_columns=["temp"]))
    assert verdict.drift_detected and "critical columns drifted: temp" in verdict.reasons


def test_classifier_probe_sees_a_flipped_relation() -> None:
    schema = DataSchema("y", ["a", "b"], [], "day")
    rng = np.random.default_rng(0)

    def frame(rows: int, flip: bool, start: str) -> pd.DataFrame:
        a, b = rng.normal(size=rows), rng.normal(size=rows)
        y = np.where(a + 0.3 * rng.normal(size=rows) > 0, "yes", "no")
        if flip:
            y = np.where((b > 0.5) & (y == "yes"), "no", y)
        return pd.DataFrame({"day": pd.date_range(start, periods=rows, freq="h"), "a": a, "b": b, "y": y})

    train = frame(3000, False, "2020-01-01")
    model = fit_candidate(train, build_preprocessor(schema), schema, "classification", "logistic", {}, 0)
    config = make_config("unused.csv", task="classification", metric={"name": "f1_macro"})
    same = probe_batch(model, frame(800, False, "2021-01-01"), schema, config)
    changed = probe_batch(model, frame(800, True, "2021-01-01"), schema, config)
    assert not same.significant
    assert changed.significant and changed.challenger_metric > changed.champion_metric
    # On enough rows the correcting booster runs too; its classes line up with the champion's.
    evidence = measure_gain(
        model, frame(2000, True, "2021-01-01"), schema, "classification", "f1_macro", True, 60, 0
    )
    corrected = [c for c in evidence.challengers if c.name == "corrected"]
    assert corrected and max(c.gain for c in corrected) > 0.05


def test_a_change_in_one_corner_of_the_features_is_seen_by_the_correction_alone(champion) -> None:
    year, model = champion
    batch = seasonal(4000, 8, 0.0, 1.0, start="2021-01-01")
    corner = (batch["temp"] > 0.75) & (batch["other"] > 1.0)  # 4% of the rows
    batch.loc[corner, "y"] += 2.0
    config = make_config("unused.csv")
    probe = probe_batch(model, batch, SCHEMA, config)
    assert probe.significant and probe.challenger == "corrected"
    # A global line or a refit of the linear recipe cannot follow a change in a corner.
    evidence = measure_gain(model, batch, SCHEMA, "regression", "rmse", False, 60, 0)
    alpha = (1.0 - config.drift.confidence) / len(evidence.challengers)
    others = [c for c in evidence.challengers if c.name != "corrected"]
    assert others and all(lower_bound(c, alpha) <= config.drift.min_gain for c in others)
    # Calm rows of the same shape: the booster finds nothing to correct.
    assert not probe_batch(model, seasonal(4000, 8, 0.0, 1.0, start="2021-01-01"), SCHEMA, config).significant


def test_split_in_time_orders_by_the_time_column() -> None:
    batch = seasonal(10, 0, 0, 1).sample(frac=1.0, random_state=1)
    older, newer = split_in_time(batch, "day")
    assert len(older) == 5 and len(newer) == 5
    assert older["day"].max() < newer["day"].min()


def test_block_bootstrap_draws_contiguous_blocks() -> None:
    index = block_indices(100, 50, seed=0)
    assert index.shape == (50, 100) and index.min() >= 0 and index.max() < 100
    steps = np.diff(index[0].reshape(10, 10), axis=1)
    assert (steps == 1).all()  # blocks of sqrt(100) = 10 consecutive rows


@pytest.mark.parametrize(
    ("metric", "reference"),
    [
        ("rmse", lambda y, p, proba: np.sqrt(skm.mean_squared_error(y, p))),
        ("mae", lambda y, p, proba: skm.mean_absolute_error(y, p)),
        ("r2", lambda y, p, proba: skm.r2_score(y, p)),
        ("mape", lambda y, p, proba: skm.mean_absolute_percentage_error(y[y != 0], p[y != 0])),
    ],
)
def test_regression_metric_samples_match_scikit_learn(metric: str, reference) -> None:
    rng = np.random.default_rng(0)
    y = np.round(rng.normal(5, 2, 300))
    p = y + rng.normal(size=300)
    index = block_indices(300, 5, seed=1)
    got = metric_samples(metric, y, Predictions(p), None, index)
    assert got == pytest.approx([reference(y[i], p[i], None) for i in index])


@pytest.mark.parametrize("metric", ["accuracy", "f1_macro", "log_loss", "roc_auc"])
def test_classification_metric_samples_match_scikit_learn(metric: str) -> None:
    rng = np.random.default_rng(0)
    classes = np.array(["a", "b", "c"])
    y = rng.choice(classes, 300)
    proba = rng.dirichlet([1, 1, 1], 300)
    p = classes[proba.argmax(axis=1)]
    index = block_indices(300, 5, seed=1)
    expected = {
        "accuracy": lambda i: skm.accuracy_score(y[i], p[i]),
        "f1_macro": lambda i: skm.f1_score(y[i], p[i], average="macro"),
        "log_loss": lambda i: skm.log_loss(y[i], proba[i], labels=classes),
        "roc_auc": lambda i: skm.roc_auc_score(y[i], proba[i], multi_class="ovr", labels=classes),
    }[metric]
    got = metric_samples(metric, y, Predictions(p, proba), classes, index)
    assert got == pytest.approx([expected(i) for i in index])


def test_judge_uses_the_bonferroni_share_of_the_error(champion) -> None:
    _, model = champion
    batch = seasonal(400, 3, 0.0, 1.0, shift=1.0)
    evidence = measure_gain(model, batch, SCHEMA, "regression", "rmse", False, 60, 0)
    probe = judge_gain(evidence, 0.9, 0.0)
    best = next(c for c in evidence.challengers if (c.name, c.fit_rows) == (probe.challenger, probe.fit_rows))
    assert probe.gain_low == pytest.approx(np.quantile(best.gain_samples, 0.1 / len(evidence.challengers)))


def test_a_late_change_in_a_long_batch_is_seen_on_a_shorter_suffix(champion) -> None:
    year, model = champion
    calm = seasonal(1500, 4, 0.0, 1.0, start="2021-01-01")
    changed = seasonal(300, 5, 0.0, 1.0, shift=3.0, start=str(calm["day"].max() + pd.Timedelta(hours=1)))
    batch = pd.concat([calm, changed], ignore_index=True)
    assert suffix_lengths(len(batch), 60) == [1800, 900, 450, 225, 112]
    _, probe, verdict = verdict_for(year, model, batch)
    assert verdict.drift_detected
    assert probe.fit_rows + probe.scored_rows < 900  # the whole batch's halves could not tell


def test_the_refits_are_skipped_only_when_a_recalibration_alone_is_significant(
    champion, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.trigger as trigger

    _, model = champion
    refits = []
    original = trigger.refit
    monkeypatch.setattr(trigger, "refit", lambda *args: refits.append(1) or original(*args))
    shifted = seasonal(400, 6, 0.0, 1.0, shift=5.0)  # a level shift: recalibration sees it at once
    full = measure_gain(model, shifted, SCHEMA, "regression", "rmse", False, 60, 0)
    refits_full = len(refits)
    early = measure_gain(model, shifted, SCHEMA, "regression", "rmse", False, 60, 0, (0.95, 0.01))
    assert refits_full > 0 and len(refits) == refits_full  # no refit once the answer is known
    assert {c.name for c in early.challengers} == {"recalibrated"}
    assert judge_gain(early, 0.95, 0.01).significant and judge_gain(full, 0.95, 0.01).significant

    calm = seasonal(400, 7, 0.0, 1.0)  # nothing to gain: every challenger is needed for the "no"
    refits.clear()
    quiet = measure_gain(model, calm, SCHEMA, "regression", "rmse", False, 60, 0, (0.95, 0.01))
    assert len(refits) == len(suffix_lengths(400, 60))
    assert not judge_gain(quiet, 0.95, 0.01).significant
