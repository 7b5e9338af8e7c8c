"""Unit tests of features, training, tuning and evaluation on tiny synthetic frames."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

import core.search
from conftest import make_config, synthetic_frame
from core.catalogue import CATALOGUE, fit_pipeline, make_estimator, make_pipeline, search_space
from core.config import PipelineConfig
from core.features import build_preprocessor
from core.metrics import classification_metrics, is_better, regression_metrics, score
from core.search import (
    BOOSTING_PATIENCE,
    EARLY_ROUND_PATIENCE,
    RoundRunner,
    Trial,
    TrialSpec,
    TuneResult,
    TuningData,
    best_iteration,
    best_of,
    fit_and_score,
    fit_with_early_stopping,
    halving_schedule,
    halving_search,
    sample_configurations,
    search,
)
from core.validation import DataSchema
from tasks.train import train_baseline

SCHEMA = DataSchema(target="y", numeric=["x1", "x2"], categorical=["color"], time_column="day")


# --- preprocessing -------------------------------------------------------------------------


def test_categories_of_any_type_are_one_hot_encoded_with_missing_values_as_categories() -> None:
    schema = DataSchema("y", [], ["season", "kind", "flag"])
    frame = pd.DataFrame(
        {
            "season": [1, 2, 3, 4] * 5,
            "kind": pd.Categorical(["a", "b", None, "a"] * 5),
            "flag": [True, False, None, True] * 5,
        }
    )
    preprocessor = build_preprocessor(schema).fit(frame)
    names = list(preprocessor.get_feature_names_out())
    assert names == [
        "season_1", "season_2", "season_3", "season_4",
        "kind_a", "kind_b", "kind_nan",
        "flag_False", "flag_True", "flag_None",
    ]  # fmt: skip
    # The caller's types: integers as int64 or (with a gap) floats, text as plain objects
    batch = pd.DataFrame({"season": [2.0, np.nan], "kind": ["b", "zzz"], "flag": [False, True]})
    assert preprocessor.transform(batch).tolist() == [
        [0, 1, 0, 0, 0, 1, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 1, 0],  # a missing code and an unseen label encode as nothing
    ]


def test_one_hot_of_integer_codes_survives_a_missing_value() -> None:
    schema = DataSchema("y", ["x1"], ["season"])
    train = pd.DataFrame({"x1": np.arange(40.0), "season": [1, 2, 3, 4] * 10})
    preprocessor = build_preprocessor(schema).fit(train)
    batch = pd.DataFrame({"x1": [0.0, 1.0, 2.0], "season": [3, np.nan, 1]})
    one_hot = preprocessor.transform(batch)[:, 1:]
    assert one_hot.tolist() == [[0, 0, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]]


# --- build_preprocessor ----------------------------------------------------------------------


def test_preprocessor_output_width_and_scaling() -> None:
    frame = synthetic_frame(400, seed=0)
    preprocessor = build_preprocessor(SCHEMA).fit(frame[SCHEMA.features])
    names = list(preprocessor.get_feature_names_out())
    assert names == ["x1", "x2", "color_blue", "color_green", "color_red"]
    out = preprocessor.transform(frame[SCHEMA.features])
    assert out.shape == (400, 5)
    np.testing.assert_allclose(out[:, :2].mean(axis=0), [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(out[:, :2].std(axis=0), [1.0, 1.0], atol=1e-12)
    np.testing.assert_array_equal(out[:, 4], (frame["color"] == "red").to_numpy(dtype=float))
    np.testing.assert_array_equal(out[:, 2:].sum(axis=1), np.ones(400))


def test_preprocessor_groups_rare_categories_and_ignores_unknown() -> None:
    frame = synthetic_frame(100, seed=0)
    frame.loc[:3, "color"] = "purple"  # 4 rows: below min_frequency=5
    frame.loc[4, "x1"] = np.nan
    preprocessor = build_preprocessor(SCHEMA).fit(frame[SCHEMA.features])
    names = list(preprocessor.get_feature_names_out())
    assert names == ["x1", "x2", "color_blue", "color_green", "color_red", "color_infrequent_sklearn"]
    out = preprocessor.transform(frame[SCHEMA.features])
    assert out.shape == (100, 6)
    assert out[:4, 5].tolist() == [1.0] * 4
    assert not np.isnan(out).any()  # the missing x1 is imputed
    unseen = pd.DataFrame({"x1": [0.0], "x2": [1.0], "color": ["teal"]})
    assert preprocessor.transform(unseen)[0, 2:].tolist() == [0.0, 0.0, 0.0, 0.0]  # ignored


# --- estimators ------------------------------------------------------------------------------


def test_make_estimator_random_forest_seed_fixed_and_params() -> None:
    estimator = make_estimator("regression", "random_forest", {"max_depth": 4}, seed=7)
    assert isinstance(estimator, RandomForestRegressor)
    assert estimator.random_state == 7
    assert estimator.max_depth == 4
    assert estimator.n_estimators == 100 and estimator.n_jobs == -1
    overridden = make_estimator("regression", "random_forest", {"n_estimators": 5}, seed=1)
    assert overridden.n_estimators == 5 and overridden.random_state == 1


def test_make_estimator_per_candidate() -> None:
    ridge = make_estimator("regression", "linear", {"alpha": 3.0}, seed=11)
    assert isinstance(ridge, Ridge) and ridge.alpha == 3.0 and ridge.random_state == 11
    hgb = make_estimator("regression", "hist_gradient_boosting", {"learning_rate": 0.2}, seed=5)
    assert isinstance(hgb, HistGradientBoostingRegressor)
    assert (hgb.learning_rate, hgb.max_iter, hgb.early_stopping, hgb.random_state) == (0.2, 400, False, 5)
    logistic = make_estimator("classification", "logistic", {"C": 0.5}, seed=3)
    assert isinstance(logistic, LogisticRegression)
    assert (logistic.C, logistic.max_iter, logistic.random_state) == (0.5, 2000, 3)
    forest = make_estimator("classification", "random_forest", {}, seed=2)
    assert isinstance(forest, RandomForestClassifier) and forest.random_state == 2


def test_make_estimator_baseline() -> None:
    regressor = make_estimator("regression", "baseline", {}, seed=0)
    classifier = make_estimator("classification", "baseline", {}, seed=0)
    assert isinstance(regressor, DummyRegressor) and regressor.strategy == "mean"
    assert isinstance(classifier, DummyClassifier) and classifier.strategy == "most_frequent"


def test_make_estimator_unknown_candidate() -> None:
    with pytest.raises(KeyError):
        make_estimator("regression", "logistic", {}, seed=0)


def test_search_space_override_or_builtin() -> None:
    assert search_space("regression", "linear", None) == CATALOGUE["regression"]["linear"][2]
    assert search_space("regression", "linear", {}) == {"alpha": [0.01, 0.1, 1.0, 10.0, 100.0]}
    assert search_space("regression", "linear", {"alpha": [5]}) == {"alpha": [5]}


def test_same_seed_same_forest() -> None:
    frame = synthetic_frame(120, seed=4)
    preprocessor = build_preprocessor(SCHEMA)
    predictions = []
    for seed in (3, 3, 4):
        estimator = make_estimator("regression", "random_forest", {"n_estimators": 5, "n_jobs": 1}, seed)
        model = fit_pipeline(make_pipeline(preprocessor, estimator), frame, SCHEMA)
        predictions.append(model.predict(frame[SCHEMA.features]))
    np.testing.assert_array_equal(predictions[0], predictions[1])
    assert not np.array_equal(predictions[0], predictions[2])


def test_make_pipeline_clones_the_preprocessor() -> None:
    preprocessor = build_preprocessor(SCHEMA)
    pipeline = make_pipeline(preprocessor, Ridge())
    assert pipeline.named_steps["preprocess"] is not preprocessor
    fit_pipeline(pipeline, synthetic_frame(50), SCHEMA)
    assert not hasattr(preprocessor, "transformers_")  # the original stays unfitted


def test_baseline_predicts_the_training_mean() -> None:
    train = synthetic_frame(60, seed=2)
    other = synthetic_frame(10, seed=9)
    model = train_baseline.fn(train, SCHEMA, "regression")
    expected = sum(train["y"]) / len(train)
    np.testing.assert_allclose(model.predict(other[SCHEMA.features]), [expected] * 10, rtol=1e-12)


def test_classification_baseline_predicts_the_majority() -> None:
    train = synthetic_frame(60, seed=2, task="classification")
    train.loc[:40, "y"] = "low"
    model = train_baseline.fn(train, SCHEMA, "classification")
    assert set(model.predict(train[SCHEMA.features])) == {"low"}


# --- tuning ----------------------------------------------------------------------------------


def test_halving_schedule_random_is_one_round_on_all_rows() -> None:
    assert halving_schedule(8, 5000, 12000, 3, "random") == [(8, 12000)]
    assert halving_schedule(1, 700, 900, 3, "successive_halving") == [(1, 900)]


@pytest.mark.parametrize(
    ("n_configs", "first_rows", "full_rows", "factor", "expected"),
    [
        (8, 5000, 12000, 3, [(8, 5000), (2, 12000)]),  # rows grow by at most the factor a round
        (8, 5000, 70000, 3, [(8, 5000), (2, 18708), (1, 70000)]),
        (9, 100, 900, 3, [(9, 100), (3, 300), (1, 900)]),
        (27, 100, 2700, 3, [(27, 100), (9, 300), (3, 900), (1, 2700)]),
        (16, 100, 1600, 2, [(16, 100), (8, 200), (4, 400), (2, 800), (1, 1600)]),
        (2, 300, 900, 3, [(2, 300), (1, 900)]),
        (8, 5000, 3000, 3, [(8, 3000)]),  # never more than the rows available, and no refit of the same
        (4, 300, 900, 3, [(4, 300), (1, 900)]),  # no round refits the same single configuration
    ],
)
def test_halving_schedule_shapes(
    n_configs: int, first_rows: int, full_rows: int, factor: int, expected: list
) -> None:
    assert halving_schedule(n_configs, first_rows, full_rows, factor, "successive_halving") == expected


@pytest.mark.parametrize("n_configs", [2, 3, 5, 8, 10, 30, 100])
def test_halving_schedule_properties(n_configs: int) -> None:
    schedule = halving_schedule(n_configs, 500, 3000, 3, "successive_halving")
    kept = [k for k, _ in schedule]
    rows = [r for _, r in schedule]
    assert kept[0] == n_configs
    assert all(a > b for a, b in zip(kept, kept[1:], strict=False))  # each round drops configurations
    assert all(a < b for a, b in zip(rows, rows[1:], strict=False))
    assert rows[0] == 500 and rows[-1] == 3000  # the first rung is subset_rows, the last all rows
    assert all(b == max(1, a // 3) for a, b in zip(kept, kept[1:], strict=False))
    # Down to one configuration, or the rows grew by at most the factor each round (6x in 2 rounds)
    assert kept[-1] == 1 or len(schedule) == 3


def test_sample_configurations_whole_grid_when_small() -> None:
    space = {"a": [1, 2], "b": ["x", "y"]}
    expected = [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    assert sample_configurations(space, 4, seed=0) == expected
    assert sample_configurations(space, 50, seed=0) == expected


def test_sample_configurations_draws_n_reproducibly() -> None:
    space = {"a": [1, 2, 3], "b": [4, 5, 6], "c": [7, 8]}  # 18 configurations
    first = sample_configurations(space, 5, seed=42)
    assert len(first) == 5
    assert len({tuple(sorted(c.items())) for c in first}) == 5  # without replacement
    for config in first:
        assert set(config) == {"a", "b", "c"}
        assert config["a"] in space["a"] and config["b"] in space["b"] and config["c"] in space["c"]
    assert sample_configurations(space, 5, seed=42) == first
    assert sample_configurations(space, 5, seed=43) != first


def rmse(y_true: pd.Series, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y_true, dtype=float) - y_pred) ** 2)))


def independent_score(
    train_rows: pd.DataFrame, validation: pd.DataFrame, alpha: float, seed: int = 42
) -> float:
    pipeline = Pipeline([("preprocess", build_preprocessor(SCHEMA)), ("model", Ridge(alpha=alpha))])
    pipeline.fit(train_rows[SCHEMA.features], train_rows["y"])
    return rmse(validation["y"], pipeline.predict(validation[SCHEMA.features]))


def test_search_picks_the_better_alpha() -> None:
    frame = synthetic_frame(300, seed=5)
    train, validation = frame.iloc[:200], frame.iloc[200:]
    config = make_config(
        "x.csv",
        candidates={"linear": {"search_space": {"alpha": [10000.0, 0.01]}}},
        tuning={"strategy": "random", "n_trials": 3, "subset_rows": 500},
    )
    (result,) = search(train, validation, build_preprocessor(SCHEMA), SCHEMA, config)
    small, large = independent_score(train, validation, 0.01), independent_score(train, validation, 10000.0)
    assert small < large / 2  # the heavily regularised model is clearly worse
    assert result.candidate == "linear"
    assert result.best_params == {"alpha": 0.01}
    assert result.best_score == pytest.approx(small, rel=1e-9)
    by_alpha = {t.params["alpha"]: t for t in result.trials}
    assert by_alpha[10000.0].score == pytest.approx(large, rel=1e-9)
    assert {t.rows for t in result.trials} == {200}
    assert {t.round for t in result.trials} == {0}


def test_search_maximize_metric_picks_the_larger_score() -> None:
    frame = synthetic_frame(300, seed=5)
    train, validation = frame.iloc[:200], frame.iloc[200:]
    config = make_config(
        "x.csv",
        metric={"name": "r2"},
        candidates={
            "linear": {"params": {"fit_intercept": True}, "search_space": {"alpha": [10000.0, 0.01]}}
        },
        tuning={"strategy": "random", "subset_rows": 500},
    )
    (result,) = search(train, validation, build_preprocessor(SCHEMA), SCHEMA, config)
    assert result.best_params == {"fit_intercept": True, "alpha": 0.01}
    assert result.best_score == max(t.score for t in result.trials)


def test_rounds_fit_more_recent_rows_and_the_last_fits_all_training_rows() -> None:
    frame = synthetic_frame(400, seed=6)
    train, validation = frame.iloc[:300].copy(), frame.iloc[300:]
    config = make_config(
        "x.csv",
        candidates={"linear": {}},
        tuning={"strategy": "successive_halving", "n_trials": 3, "subset_rows": 50, "seed": 1},
    )
    (result,) = search(train, validation, build_preprocessor(SCHEMA), SCHEMA, config)
    # 3 of the 5 built-in alphas on the 50 most recent rows, then the best of them on all 300
    assert [(t.round, t.rows) for t in result.trials] == [(0, 50)] * 3 + [(1, 300)]
    for trial in result.trials:
        expected = independent_score(train.tail(trial.rows), validation, trial.params["alpha"])
        assert trial.score == pytest.approx(expected, rel=1e-9)
    assert result.trials[-1].params == min(result.trials[:3], key=lambda t: t.score).params
    assert result.best_params == result.trials[-1].params
    assert result.best_score == result.trials[-1].score  # chosen at the final model's size
    assert result.best_by_round(False) == [
        (50, min(t.score for t in result.trials[:3])),
        (300, result.best_score),
    ]


def test_early_rounds_grow_a_third_of_the_trees_and_the_last_round_all_of_them() -> None:
    frame = synthetic_frame(400, seed=6)
    train, validation = frame.iloc[:300], frame.iloc[300:]
    config = make_config(
        "x.csv",
        candidates={
            "random_forest": {"params": {"n_estimators": 30}, "search_space": {"max_depth": [2, 3, 4]}}
        },
        tuning={"n_trials": 3, "subset_rows": 50, "seed": 1},
    )
    (result,) = search(train, validation, build_preprocessor(SCHEMA), SCHEMA, config)
    assert [(t.round, t.rows) for t in result.trials] == [(0, 50)] * 3 + [(1, 300)]

    def forest_rmse(rows: int, trees: int, max_depth: int) -> float:
        forest = RandomForestRegressor(n_estimators=trees, max_depth=max_depth, random_state=1, n_jobs=-1)
        model = make_pipeline(build_preprocessor(SCHEMA), forest).fit(
            train.tail(rows)[SCHEMA.features], train.tail(rows)["y"]
        )
        return rmse(validation["y"], model.predict(validation[SCHEMA.features]))

    for trial in result.trials:
        trees = 30 if trial.rows == 300 else 10  # 30 / halving_factor 3
        assert trial.score == pytest.approx(
            forest_rmse(trial.rows, trees, trial.params["max_depth"]), rel=1e-9
        )
    assert result.best_params["n_estimators"] == 30  # the refit grows every tree


def test_early_rounds_stop_boosting_sooner_than_the_last_round(monkeypatch: pytest.MonkeyPatch) -> None:
    train, validation, config = boosting_split()
    config = config.model_copy(update={"tuning": config.tuning.model_copy(update={"subset_rows": 100})})
    data = TuningData(train, validation, build_preprocessor(SCHEMA), SCHEMA)
    patience_by_rows = {}
    fit = core.search.fit_with_early_stopping

    def recording_fit(rows: pd.DataFrame, *args: object, **kwargs: object) -> Pipeline:
        patience_by_rows[len(rows)] = args[4] if len(args) > 4 else kwargs.get("patience")
        return fit(rows, *args, **kwargs)

    monkeypatch.setattr(core.search, "fit_with_early_stopping", recording_fit)
    for rows in (100, len(train)):
        spec = TrialSpec("hist_gradient_boosting", {"learning_rate": 0.5}, 0, rows)
        fit_and_score(data, config, spec)
    assert patience_by_rows == {100: EARLY_ROUND_PATIENCE, len(train): BOOSTING_PATIENCE}


def boosting_split(seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame, PipelineConfig]:
    frame = synthetic_frame(300, seed=seed)
    frame["y"] = frame["y"] + np.random.default_rng(seed).normal(scale=3.0, size=len(frame))  # noisy
    config = make_config(
        "x.csv",
        candidates={
            "hist_gradient_boosting": {
                "params": {"max_iter": 60, "min_samples_leaf": 5},
                "search_space": {"learning_rate": [0.5]},
            }
        },
        tuning={"strategy": "random", "subset_rows": 500},
    )
    return frame.iloc[:200], frame.iloc[200:], config


def test_boosting_chooses_its_iterations_on_validation() -> None:
    train, validation, config = boosting_split()
    (result,) = search(train, validation, build_preprocessor(SCHEMA), SCHEMA, config)
    (trial,) = result.trials
    # Independently: the validation RMSE after each iteration of the same fit
    model = Pipeline(
        [
            ("preprocess", build_preprocessor(SCHEMA)),
            (
                "model",
                make_estimator(
                    "regression",
                    "hist_gradient_boosting",
                    {**result.trials[0].params, "max_iter": 60, "min_samples_leaf": 5},
                    42,
                ),
            ),
        ]
    ).fit(train[SCHEMA.features], train["y"])
    curve = [
        rmse(validation["y"], p)
        for p in model[-1].staged_predict(model[:-1].transform(validation[SCHEMA.features]))
    ]
    best = int(np.argmin(curve)) + 1
    assert best < 60  # the noisy target makes the last iterations overfit
    assert trial.iterations == best
    assert trial.score == pytest.approx(curve[best - 1], rel=1e-9)
    assert result.best_params["max_iter"] == best  # the refit uses the iterations found


def test_boosting_stops_growing_when_validation_stops_improving() -> None:
    train, validation, config = boosting_split()
    data = TuningData(train, validation, build_preprocessor(SCHEMA), SCHEMA)
    params = {"max_iter": 400, "min_samples_leaf": 5, "learning_rate": 0.5}
    model = fit_with_early_stopping(train, data, config, "hist_gradient_boosting", params)
    iterations, _ = best_iteration(model, validation, SCHEMA, config)
    # Stopped BOOSTING_PATIENCE iterations after the best one, far before the cap of 400
    assert model[-1].n_iter_ < 400
    assert model[-1].n_iter_ - iterations <= BOOSTING_PATIENCE + 1


def test_time_budget_stops_starting_rounds() -> None:
    frame = synthetic_frame(400, seed=6)
    train, validation = frame.iloc[:300], frame.iloc[300:]
    config = make_config(
        "x.csv",
        candidates={"linear": {}},
        tuning={"n_trials": 3, "subset_rows": 50, "time_budget_s": 1e-9},
    )
    (result,) = search(train, validation, build_preprocessor(SCHEMA), SCHEMA, config)
    assert {t.round for t in result.trials} == {0}  # the first round always runs, then the budget is spent
    assert result.best_score == min(t.score for t in result.trials)


def test_best_of_respects_direction_and_ties() -> None:
    results = [
        TuneResult("linear", {}, 2.0, []),
        TuneResult("random_forest", {}, 1.0, []),
        TuneResult("hist_gradient_boosting", {}, 1.0, []),
    ]
    assert best_of(results, greater_is_better=False).candidate == "random_forest"
    assert best_of(results, greater_is_better=True).candidate == "linear"


# --- evaluation ------------------------------------------------------------------------------


def test_regression_metrics_by_hand() -> None:
    y_true = pd.Series([1.0, 2.0, 0.0, 4.0])
    y_pred = np.array([2.0, 2.0, 1.0, 2.0])
    result = regression_metrics(y_true, y_pred)
    # errors 1, 0, 1, -2: squared mean 6/4; absolute mean 4/4
    assert result["rmse"] == pytest.approx(math.sqrt(1.5))
    assert result["mae"] == pytest.approx(1.0)
    # mean 1.75; total sum of squares 8.75; residual sum of squares 6
    assert result["r2"] == pytest.approx(1 - 6 / 8.75)
    # rows with a zero actual are left out: (1/1 + 0/2 + 2/4) / 3
    assert result["mape"] == pytest.approx(0.5)
    assert set(result) == {"rmse", "mae", "r2", "mape"}


def test_regression_mape_is_nan_when_all_actuals_are_zero() -> None:
    result = regression_metrics(pd.Series([0.0, 0.0]), np.array([1.0, -1.0]))
    assert math.isnan(result["mape"])
    assert result["rmse"] == pytest.approx(1.0)


def test_classification_metrics_tiny_example() -> None:
    y_true = pd.Series(["a", "a", "b", "b"])
    y_pred = np.array(["a", "b", "b", "b"])
    proba = np.array([[0.8, 0.2], [0.4, 0.6], [0.3, 0.7], [0.1, 0.9]])
    result = classification_metrics(y_true, y_pred, proba, np.array(["a", "b"]))
    assert result["accuracy"] == pytest.approx(0.75)
    # class a: precision 1, recall 1/2 -> F1 2/3; class b: precision 2/3, recall 1 -> F1 0.8
    assert result["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert result["roc_auc"] == pytest.approx(1.0)  # every b scores above every a
    expected_log_loss = -(math.log(0.8) + math.log(0.4) + math.log(0.7) + math.log(0.9)) / 4
    assert result["log_loss"] == pytest.approx(expected_log_loss)


def test_classification_metrics_without_probabilities_or_second_class() -> None:
    result = classification_metrics(pd.Series([1, 0, 1]), np.array([1, 1, 1]), None, np.array([0, 1]))
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert math.isnan(result["roc_auc"]) and math.isnan(result["log_loss"])
    one_class = classification_metrics(
        pd.Series([1, 1]), np.array([1, 0]), np.array([[0.2, 0.8], [0.6, 0.4]]), np.array([0, 1])
    )
    assert math.isnan(one_class["roc_auc"])
    assert one_class["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.4)) / 2)


def test_classification_metrics_multiclass_auc() -> None:
    y_true = pd.Series(["a", "b", "c", "a", "b", "c"])
    proba = np.array(
        [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1], [0.1, 0.1, 0.8]]
    )
    y_pred = np.array(["a", "b", "c", "a", "b", "c"])
    result = classification_metrics(y_true, y_pred, proba, np.array(["a", "b", "c"]))
    assert result["accuracy"] == 1.0 and result["f1_macro"] == 1.0
    assert result["roc_auc"] == pytest.approx(1.0)


def test_score_on_a_fitted_pipeline() -> None:
    frame = synthetic_frame(200, seed=8)
    model = fit_pipeline(
        make_pipeline(build_preprocessor(SCHEMA), Ridge(alpha=1.0)), frame.iloc[:150], SCHEMA
    )
    test = frame.iloc[150:]
    result = score(model, test, SCHEMA, "regression")
    assert result["rmse"] == pytest.approx(rmse(test["y"], model.predict(test[SCHEMA.features])))
    assert result["rmse"] < 1.0  # the target is linear with noise 0.5


def test_score_classification_uses_probabilities() -> None:
    frame = synthetic_frame(300, seed=8, task="classification")
    estimator = clone(make_estimator("classification", "logistic", {}, seed=0))
    model = fit_pipeline(make_pipeline(build_preprocessor(SCHEMA), estimator), frame.iloc[:200], SCHEMA)
    result = score(model, frame.iloc[200:], SCHEMA, "classification")
    assert result["accuracy"] > 0.85
    assert not math.isnan(result["roc_auc"]) and not math.isnan(result["log_loss"])


def test_is_better() -> None:
    assert is_better(1.0, 2.0, greater_is_better=False)
    assert not is_better(2.0, 1.0, greater_is_better=False)
    assert is_better(0.9, 0.8, greater_is_better=True)
    assert not is_better(0.8, 0.9, greater_is_better=True)
    assert not is_better(1.0, 1.0, greater_is_better=True)
    assert not is_better(1.0, 1.0, greater_is_better=False)


def race_config(**tuning: object) -> PipelineConfig:
    """Two candidates of six configurations each: rounds of 6, 2 and 1 on 50, 150 and 450 rows."""
    return make_config(
        "x.csv",
        candidates={
            "linear": {"search_space": {"alpha": [1, 2, 3, 4, 5, 6]}},
            "random_forest": {"search_space": {"max_depth": [1, 2, 3, 4, 5, 6]}},
        },
        tuning={"n_trials": 6, "subset_rows": 50, **tuning},
    )


def scripted_round(scores: dict[str, object]) -> RoundRunner:
    """A round runner whose scores are `scores[candidate](param value, rows)` (RMSE: lower wins)."""

    def run_round(specs: list[TrialSpec]) -> list[Trial]:
        return [
            Trial(
                s.candidate, s.params, s.round, s.rows, scores[s.candidate](*s.params.values(), s.rows), 0.0
            )
            for s in specs
        ]

    return run_round


def test_a_candidate_that_falls_behind_stops_and_cannot_win_on_fewer_rows() -> None:
    # The linear model leads on 50 rows (10.1, then 10.2 kept) and scores 30 on all 450 rows; the
    # forest's best on 50 rows (21) misses the leader's cut, so it stops there, and its 21 on 50
    # rows may not beat the finalist's 30 on all rows.
    scores = {
        "linear": lambda alpha, rows: 30.0 if rows == 450 else 10 + alpha / 10,
        "random_forest": lambda depth, rows: 1.0 if rows == 450 else 20 + depth,
    }
    linear, forest = halving_search(450, race_config(), scripted_round(scores))
    assert {t.rows for t in forest.trials} == {50} and len(forest.trials) == 6
    assert [rows for rows, _ in linear.best_by_round(False)] == [50, 150, 450]
    assert (linear.final_rows, forest.final_rows) == (450, 50)
    assert best_of([linear, forest], greater_is_better=False) is linear


def test_a_candidate_within_the_leaders_cut_stays_in_the_race() -> None:
    # The forest's best on 50 rows (10.15) would make the leader's cut of two (10.1 and 10.2).
    scores = {
        "linear": lambda alpha, rows: 10 + alpha / 10,
        "random_forest": lambda depth, rows: 10.05 + depth / 10 if rows == 50 else 5.0,
    }
    linear, forest = halving_search(450, race_config(), scripted_round(scores))
    assert [rows for rows, _ in forest.best_by_round(False)] == [50, 150, 450]
    assert best_of([linear, forest], greater_is_better=False) is forest


def test_a_trailing_candidate_goes_on_only_with_its_configurations_within_the_leaders_cut() -> None:
    # On 50 rows the linear model leads and keeps 10.1 and 10.2. Of the forest's two best, only
    # depth 1 (10.15) would make that cut; depth 2 (10.25) would not, so it is not fitted on 150.
    scores = {
        "linear": lambda alpha, rows: 10 + alpha / 10,
        "random_forest": lambda depth, rows: 10.05 + depth / 10 if rows == 50 else 5.0 + depth,
    }
    linear, forest = halving_search(450, race_config(), scripted_round(scores))
    second_round = [t for t in forest.trials if t.rows == 150]
    assert [t.params for t in second_round] == [{"max_depth": 1}]
    assert len([t for t in linear.trials if t.rows == 150]) == 2
    assert forest.best_params == {"max_depth": 1} and forest.final_rows == 450


def test_the_leaderboard_lists_a_candidate_that_left_the_race_after_the_finalists() -> None:
    from core.results import leaderboard

    scores = {
        "linear": lambda alpha, rows: 30.0 if rows == 450 else 10 + alpha / 10,
        "random_forest": lambda depth, rows: 20 + depth,
    }
    results = halving_search(450, race_config(), scripted_round(scores))
    board = leaderboard(results, {"rmse": 40.0}, "rmse", greater=False)
    # The forest's 21 on 50 rows is lower than the linear model's 30 on all rows, yet it is last.
    assert [row["candidate"] for row in board] == ["linear", "baseline", "random_forest"]
    assert board[-1]["best_per_round"] == "21@50"
