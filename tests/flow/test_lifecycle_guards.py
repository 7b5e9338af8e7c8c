"""Guards of the lifecycle, each checked against an independent computation on the same windows.

- Tuning trials are scored on the validation window, never the test window.
- The final model is fitted on train + validation, not on the training window alone.
- A promotion whose comparison went stale (another run moved `champion`) does not promote.

Each test fails when its guard is broken in the code (checked by planting the bug).
"""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline

from conftest import make_config, synthetic_frame, use_isolated_store
from core.features import build_preprocessor
from core.promotion import Decision
from core.split import split_frame
from core.validation import validate_table
from flows.retrain import retrain_flow
from tasks.registry import ChampionInfo, promote
from tasks.settings import Settings

ALPHAS = [0.01, 1.0, 100.0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """One retraining run of a Ridge-only config (shared by the module's tests, in its own store).

    Returns the config, its schema and windows, the summary and the store's URI.
    """
    root = tmp_path_factory.mktemp("guards")
    patch = pytest.MonkeyPatch()
    uri = use_isolated_store(patch, root)
    try:
        source = root / "data.csv"
        synthetic_frame(rows=500, seed=11).to_csv(source, index=False)
        config = make_config(
            source,
            candidates={"linear": {"search_space": {"alpha": ALPHAS}}},
            tuning={"strategy": "random", "subset_rows": 100, "n_trials": 3},
            features={"datetime": False},
        )
        summary = retrain_flow(config)
        frame, schema = validate_table(synthetic_frame(rows=500, seed=11), config)
        yield config, schema, split_frame(frame, config), summary, uri
    finally:
        patch.undo()


def ridge(schema, alpha: float) -> Pipeline:
    return Pipeline(
        [("preprocess", build_preprocessor(schema)), ("model", Ridge(alpha=alpha, random_state=42))]
    )


def rmse(model: Pipeline, window, schema) -> float:
    return float(np.sqrt(np.mean((model.predict(window[schema.features]) - window["y"]) ** 2)))


def test_trials_are_scored_on_the_validation_window(trained) -> None:
    config, schema, splits, summary, uri = trained
    client = MlflowClient(uri)
    trials = client.search_runs(
        [client.get_experiment_by_name(config.name).experiment_id], "tags.stage = 'tuning'"
    )
    assert len(trials) == len(ALPHAS)
    for trial in trials:
        alpha = float(trial.data.params["alpha"])
        model = ridge(schema, alpha).fit(splits.train[schema.features], splits.train["y"])
        on_validation, on_test = rmse(model, splits.validation, schema), rmse(model, splits.test, schema)
        # The pipeline reads floats as float32: equal to a few parts in a million
        assert trial.data.metrics["validation_rmse"] == pytest.approx(on_validation, rel=1e-5)
        assert abs(on_test - on_validation) > 1e-3 * on_validation  # the windows tell them apart


def test_the_final_model_is_fitted_on_train_and_validation(trained) -> None:
    config, schema, splits, summary, uri = trained
    alpha = float(summary.leaderboard[0]["best_params"].split("=")[1])
    mlflow.set_tracking_uri(uri)
    served = mlflow.sklearn.load_model(f"models:/{config.name}/{summary.model_version}")
    rows = splits.test[schema.features]
    on_all = ridge(schema, alpha).fit(splits.train_full[schema.features], splits.train_full["y"])
    on_train = ridge(schema, alpha).fit(splits.train[schema.features], splits.train["y"])
    np.testing.assert_allclose(served.predict(rows), on_all.predict(rows), rtol=1e-5)
    assert not np.allclose(served.predict(rows), on_train.predict(rows), rtol=1e-3)


def test_a_stale_promotion_does_not_move_the_champion(trained) -> None:
    config, _, _, summary, uri = trained
    client = MlflowClient(uri)
    source = client.get_model_version(config.name, summary.model_version).source
    newer = client.create_model_version(config.name, source).version  # another run's winner ...
    client.set_registered_model_alias(config.name, "champion", newer)  # ... promoted meanwhile
    ours = client.create_model_version(config.name, source).version
    compared_with = ChampionInfo(config.name, summary.model_version, None, {}, {})  # before the move
    settings = Settings.from_environment({"MLFLOW_TRACKING_URI": uri})
    decision = promote(settings, config.name, ours, Decision(True, "better"), compared_with)
    assert not decision.promote and "champion moved to version" in decision.reason
    assert client.get_model_version_by_alias(config.name, "champion").version == newer
    assert client.get_model_version(config.name, ours).tags["decision"] == "rejected"
