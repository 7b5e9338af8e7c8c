"""Unit tests of batch scoring (columns, output kinds, predictions table, statistics), the alias
history tags, the identical-run rule and the score / registry config sections."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

from conftest import make_config, synthetic_frame
from core.errors import BadInputError, ConfigError, DataError
from core.features import build_preprocessor
from core.promotion import alias_history, history_tag, next_history_seq, same_as_champion
from core.scoring import (
    full_precision,
    key_frame,
    output_kind,
    output_target,
    prediction_stats,
    predictions_table,
    scoring_columns,
)
from core.validation import validate_table


@pytest.mark.parametrize(
    ("out", "kind"),
    [
        ("scores/p.csv", "csv"),
        ("p.PARQUET", "parquet"),
        ("p.pq", "parquet"),
        ("file:///tmp/p.csv", "csv"),
        ("sqlite:///scores.db", "sql"),
        ("postgresql+psycopg2://u:${PW}@h/db", "sql"),
    ],
)
def test_output_kind_by_suffix_or_url(out: str, kind: str) -> None:
    assert output_kind(out) == kind


@pytest.mark.parametrize("out", ["p.xlsx", "p", "https://example.org/p.csv"])
def test_unknown_outputs_are_bad_input(out: str) -> None:
    with pytest.raises(BadInputError, match="neither a .csv or .parquet file nor a database URL"):
        output_kind(out)


def test_output_target_defaults_to_score_out_and_needs_one() -> None:
    assert output_target(None, make_config("d.csv", score={"out": "s.parquet"})) == "s.parquet"
    assert output_target("x.csv", make_config("d.csv", score={"out": "s.parquet"})) == "x.csv"
    with pytest.raises(BadInputError, match="No output was given"):
        output_target(None, make_config("d.csv"))


def test_key_columns_default_to_the_time_column_and_are_read_even_when_dropped() -> None:
    assert make_config("d.csv").key_columns == ["day"]
    assert make_config("d.csv", time_column=None).key_columns == []
    config = make_config("d.csv", score={"key_columns": ["id"]}, features={"drop": ["id", "x2"]})
    columns = scoring_columns(config)
    assert columns.select(["day", "id", "x1", "x2", "y"]) == ["day", "id", "x1", "y"]
    listed = make_config(
        "d.csv", features={"numeric": ["x1"], "categorical": ["color"]}, score={"key_columns": ["id"]}
    )
    assert scoring_columns(listed).select(["id", "day", "x1", "x2", "color", "y"]) == [
        "id",
        "day",
        "x1",
        "color",
        "y",
    ]


def test_scoring_reads_in_full_precision() -> None:
    data = make_config("d.csv").data
    assert data.compact_dtypes and not full_precision(data).compact_dtypes
    assert full_precision(data).source == data.source


def test_key_frame_refuses_missing_and_clashing_keys() -> None:
    raw = synthetic_frame(rows=5)
    assert key_frame(raw, ["day"])["day"].tolist() == raw["day"].tolist()
    with pytest.raises(DataError, match=r"key column \['id'\] not in the data"):
        key_frame(raw, ["id"])
    with pytest.raises(DataError, match="clash with the output columns"):
        key_frame(raw.assign(prediction=1), ["prediction"])


def fitted(task: str):
    config = make_config("d.csv", task=task, features={"datetime": False})
    frame, schema = validate_table(synthetic_frame(rows=120, task=task), config)
    estimator = Ridge() if task == "regression" else LogisticRegression()
    model = Pipeline([("preprocess", build_preprocessor(schema)), ("model", estimator)])
    return model.fit(frame[schema.features], frame["y"]), frame, schema


def test_predictions_table_regression_keeps_keys_and_row_order() -> None:
    model, frame, schema = fitted("regression")
    keys = frame[["day"]].iloc[::-1].reset_index(drop=True)
    batch = frame.iloc[::-1].reset_index(drop=True)
    table = predictions_table(model, batch, schema, keys)
    assert list(table.columns) == ["day", "prediction"]
    assert table["day"].tolist() == batch["day"].tolist()
    np.testing.assert_allclose(table["prediction"], model.predict(batch[schema.features]))


def test_predictions_table_classifier_has_one_probability_per_class() -> None:
    model, frame, schema = fitted("classification")
    table = predictions_table(model, frame, schema, frame[["day"]])
    assert list(table.columns) == ["day", "prediction", "probability_high", "probability_low"]
    np.testing.assert_allclose(table[["probability_high", "probability_low"]].sum(axis=1), 1.0)
    np.testing.assert_allclose(table["probability_high"], model.predict_proba(frame[schema.features])[:, 0])
    assert (table["prediction"] == np.where(table["probability_high"] > 0.5, "high", "low")).all()


def test_prediction_stats_regression_quantiles_and_histogram() -> None:
    values = pd.Series(np.arange(101, dtype=float))
    stats = prediction_stats(values, "regression")
    assert stats["rows"] == 101 and stats["min"] == 0 and stats["max"] == 100 and stats["mean"] == 50
    assert stats["quantiles"]["0.5"] == 50 and stats["quantiles"]["0.05"] == 5
    assert sum(stats["histogram"]["counts"]) == 101 and len(stats["histogram"]["edges"]) == 21
    json.dumps(stats)  # an artifact: plain JSON


def test_prediction_stats_classification_class_shares() -> None:
    stats = prediction_stats(pd.Series(["a", "b", "a", "a"]), "classification")
    assert stats == {"task": "classification", "rows": 4, "class_shares": {"a": 0.75, "b": 0.25}}


def test_alias_history_tags_are_numbered_in_order() -> None:
    tags = {"other": "x", history_tag(2): json.dumps({"seq": 2}), history_tag(10): json.dumps({"seq": 10})}
    assert history_tag(7) == "alias_history.000007"
    assert next_history_seq({}) == 1 and next_history_seq(tags) == 11
    assert [entry["seq"] for entry in alias_history(tags)] == [2, 10]


def test_same_as_champion_needs_both_fingerprints() -> None:
    tags = {"data_sha256": "d" * 64, "config_sha256": "c" * 64}
    assert "identical to the champion" in same_as_champion(tags, "d" * 64, "c" * 64)
    assert same_as_champion(tags, "e" * 64, "c" * 64) is None
    assert same_as_champion(tags, "d" * 64, "e" * 64) is None
    assert same_as_champion(None, "d" * 64, "c" * 64) is None
    assert same_as_champion({"config_sha256": "c" * 64}, "d" * 64, "c" * 64) is None


def test_score_and_registry_sections() -> None:
    config = make_config("d.csv")
    assert config.score.cron is None and config.score.out is None and config.score.out_table == "predictions"
    assert config.registry.keep_versions == 10
    assert config.scoring_experiment == "test-model-scoring"
    with pytest.raises(ConfigError, match="score.cron needs score.out"):
        make_config("d.csv", score={"cron": "0 * * * *"})
    with pytest.raises(ConfigError, match="keep_versions"):
        make_config("d.csv", registry={"keep_versions": 0})
    with pytest.raises(ConfigError, match="unknown key 'score.output'"):
        make_config("d.csv", score={"output": "x.csv"})


def test_scoring_and_retention_settings_leave_the_model_lineage_alone() -> None:
    base = make_config("d.csv").fingerprint()
    assert make_config("d.csv", score={"cron": "0 * * * *", "out": "s.csv"}).fingerprint() == base
    assert make_config("d.csv", registry={"keep_versions": 3}).fingerprint() == base
    assert make_config("d.csv", promotion={"min_improvement": 0.5}).fingerprint() != base


def test_a_literal_password_in_score_out_is_masked_in_what_leaves_the_process() -> None:
    config = make_config("d.csv", score={"out": "postgresql://u:hunter22@db/x"})
    assert config.redacted()["score"]["out"] == "postgresql://u:***@db/x"
    assert config.score.out == "postgresql://u:hunter22@db/x"
