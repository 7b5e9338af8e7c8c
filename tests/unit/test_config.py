"""Unit tests of `tasks/config.py`: defaults, strict keys, env placeholders, redaction, loading."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from core.config import CANDIDATES, NOTIFY_EVENTS, CandidateConfig, expand_env, load_config, parse_config
from core.errors import BadInputError, ConfigError
from core.secrets import redact_url

REPO = Path(__file__).resolve().parents[2]


def minimal(**overrides: Any) -> dict[str, Any]:
    """The smallest valid config dict."""
    raw: dict[str, Any] = {
        "name": "m",
        "task": "regression",
        "target": "y",
        "data": {"source": "data.csv"},
    }
    raw.update(overrides)
    return raw


def test_minimal_regression_config_gets_defaults() -> None:
    config = parse_config(minimal())
    assert config.metric.name == "rmse"
    assert config.metric.direction == "minimize"
    assert config.greater_is_better is False
    assert list(config.candidates) == ["linear", "random_forest", "hist_gradient_boosting"]
    assert all(c == CandidateConfig() for c in config.candidates.values())
    assert config.time_column is None
    assert config.split.validation_fraction == 0.15
    assert config.split.test_fraction == 0.15
    assert config.split.min_rows == 30
    assert config.tuning.strategy == "successive_halving"
    assert config.tuning.n_trials == 6
    assert config.tuning.seed == 42
    assert config.promotion.min_improvement == 0.01
    assert config.promotion.must_beat_baseline is True
    assert config.experiment_name == "m"
    assert config.data.is_sql is False


def test_minimal_classification_config_gets_defaults() -> None:
    config = parse_config(minimal(task="classification"))
    assert config.metric.name == "f1_macro"
    assert config.metric.direction == "maximize"
    assert config.greater_is_better is True
    assert tuple(config.candidates) == CANDIDATES["classification"]
    assert "logistic" in config.candidates and "linear" not in config.candidates


@pytest.mark.parametrize(
    ("task", "metric", "direction"),
    [
        ("regression", "r2", "maximize"),
        ("regression", "mae", "minimize"),
        ("classification", "log_loss", "minimize"),
    ],
)
def test_metric_direction_defaults_to_the_metric(task: str, metric: str, direction: str) -> None:
    config = parse_config(minimal(task=task, metric={"name": metric}))
    assert config.metric.direction == direction
    assert config.greater_is_better is (direction == "maximize")


def test_explicit_direction_is_kept() -> None:
    config = parse_config(minimal(metric={"name": "rmse", "direction": "maximize"}))
    assert config.metric.direction == "maximize"


def test_metric_of_the_other_task_is_rejected() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(metric={"name": "accuracy"}))
    assert "'accuracy' is not a regression metric" in str(info.value)


def test_unknown_top_level_key_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(colour="blue"))
    assert "unknown key 'colour'" in str(info.value)


def test_unknown_nested_key_is_named_with_its_section() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(tuning={"foo": 1}))
    assert "unknown key 'tuning.foo'" in str(info.value)


def test_unknown_key_inside_a_candidate_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(candidates={"linear": {"grid": {"alpha": [1]}}}))
    assert "unknown key 'candidates.linear.grid'" in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    raw = minimal(tuning={"foo": 1}, split={"bar": 2})
    del raw["target"]
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "my.yaml")
    message = str(info.value)
    assert message.startswith("The config my.yaml is invalid: ")
    for expected in ("unknown key 'tuning.foo'", "unknown key 'split.bar'", "missing required key 'target'"):
        assert expected in message


def test_unknown_task_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(task="clustering"))
    assert "unknown task 'clustering'" in str(info.value)
    assert "'regression' or 'classification'" in str(info.value)


def test_unknown_candidate_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(candidates={"linear": {}, "xgboost": {}}))
    message = str(info.value)
    assert "unknown candidates ['xgboost']" in message
    assert "'regression'" in message


def test_classification_candidate_is_unknown_for_regression() -> None:
    with pytest.raises(ConfigError, match=r"unknown candidates \['logistic'\]"):
        parse_config(minimal(candidates={"logistic": {}}))


def test_empty_candidates_rejected() -> None:
    with pytest.raises(ConfigError, match="candidates is empty"):
        parse_config(minimal(candidates={}))


def test_explicit_candidates_are_kept_with_params() -> None:
    config = parse_config(
        minimal(
            candidates={"linear": {"params": {"fit_intercept": False}, "search_space": {"alpha": [1, 2]}}}
        )
    )
    assert list(config.candidates) == ["linear"]
    assert config.candidates["linear"].params == {"fit_intercept": False}
    assert config.candidates["linear"].search_space == {"alpha": [1, 2]}


@pytest.mark.parametrize("key", ["name", "task", "target", "data"])
def test_missing_required_key_is_named(key: str) -> None:
    raw = minimal()
    del raw[key]
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert f"missing required key '{key}'" in str(info.value)


def test_missing_data_source_is_named() -> None:
    with pytest.raises(ConfigError, match=r"missing required key 'data\.source'"):
        parse_config(minimal(data={"table": "t"}))


def test_blank_target_rejected() -> None:
    with pytest.raises(ConfigError, match="target is blank"):
        parse_config(minimal(target="  "))


def test_bad_name_pattern_rejected() -> None:
    with pytest.raises(ConfigError, match="'name'"):
        parse_config(minimal(name="has space"))


def test_split_fractions_too_large_rejected() -> None:
    with pytest.raises(ConfigError, match=r"validation_fraction \+ split.test_fraction must be below 0.8"):
        parse_config(minimal(split={"validation_fraction": 0.45, "test_fraction": 0.4}))


def test_out_of_range_values_name_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(tuning={"n_trials": 0, "subset_rows": 10}))
    assert "'tuning.n_trials'" in str(info.value)
    assert "'tuning.subset_rows'" in str(info.value)


def test_config_error_is_bad_input_with_a_fix() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(colour="x"))
    assert isinstance(info.value, BadInputError)
    assert info.value.fix and info.value.fix in str(info.value)


def test_is_sql_detects_sqlalchemy_urls() -> None:
    assert parse_config(minimal(data={"source": "sqlite:///x.db", "table": "t"})).data.is_sql
    assert parse_config(minimal(data={"source": "postgresql://u:p@h/db"})).data.is_sql
    for source in ("https://example.org/x.csv", "http://h/x.zip", "file:///tmp/x.csv", "/tmp/x.csv"):
        assert not parse_config(minimal(data={"source": source})).data.is_sql, source


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


YAML_WITH_SECRET = """
name: db-model
task: regression
target: y
data:
  source: postgresql+psycopg2://reader:${TEST_CFG_PASSWORD}@db.example:5432/sales
  query: SELECT * FROM t
"""


def test_env_placeholder_stays_unexpanded_in_loaded_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_CFG_PASSWORD", "hunter2-secret")
    config = load_config(write(tmp_path, YAML_WITH_SECRET), os.environ)
    assert config.data.source == "postgresql+psycopg2://reader:${TEST_CFG_PASSWORD}@db.example:5432/sales"
    assert "hunter2-secret" not in config.model_dump_json()
    assert "hunter2-secret" not in str(config.redacted())
    # expanding is done only where used
    assert (
        expand_env(config.data.source, os.environ)
        == "postgresql+psycopg2://reader:hunter2-secret@db.example:5432/sales"
    )


def test_unset_env_variable_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_CFG_PASSWORD", raising=False)
    path = write(tmp_path, YAML_WITH_SECRET)
    with pytest.raises(ConfigError) as info:
        load_config(path, os.environ)
    assert "not set: TEST_CFG_PASSWORD" in str(info.value)
    assert str(path) in str(info.value)


def test_expand_env_names_every_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_CFG_A", raising=False)
    monkeypatch.delenv("TEST_CFG_B", raising=False)
    monkeypatch.setenv("TEST_CFG_C", "c")
    with pytest.raises(ConfigError) as info:
        expand_env("${TEST_CFG_B}/${TEST_CFG_A}/${TEST_CFG_C}", os.environ, "data.source")
    assert "data.source refers to environment variables that are not set: TEST_CFG_A, TEST_CFG_B" in str(
        info.value
    )
    assert "TEST_CFG_C" not in str(info.value)


def test_redacted_masks_password_in_sqlalchemy_url() -> None:
    config = parse_config(
        minimal(data={"source": "postgresql+psycopg2://reader:s3cr3t@db.example:5432/sales", "table": "t"})
    )
    redacted = config.redacted()
    assert redacted["data"]["source"] == "postgresql+psycopg2://reader:***@db.example:5432/sales"
    assert "s3cr3t" not in str(redacted)
    # the config itself keeps the real value (it is needed to connect)
    assert "s3cr3t" in config.data.source


def test_redact_url_leaves_urls_without_password_alone() -> None:
    assert redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert redact_url("postgresql://reader@db/sales") == "postgresql://reader@db/sales"
    assert redact_url("mysql://u:p%40ss@h/db") == "mysql://u:***@h/db"


def test_fingerprint_is_stable_and_sensitive() -> None:
    a = parse_config(minimal(tuning={"seed": 1, "n_trials": 3}))
    b = parse_config(minimal(tuning={"n_trials": 3, "seed": 1}))
    c = parse_config(minimal(tuning={"seed": 2, "n_trials": 3}))
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    assert len(a.fingerprint()) == 64


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, os.environ)
    assert f"The config file {path} does not exist" in str(info.value)
    assert "--config" in str(info.value)


def test_load_config_not_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "name: [unclosed\ntask: regression\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, os.environ)
    assert f"The config file {path} is not valid YAML" in str(info.value)


def test_load_config_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00garbage")
    with pytest.raises(ConfigError) as info:
        load_config(path, os.environ)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", ""])
def test_load_config_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, os.environ)
    assert f"The config file {path} does not hold a mapping of settings" in str(info.value)


def test_load_config_invalid_content_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "name: m\ntask: regression\ntarget: y\ndata: {source: x.csv}\nfoo: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, os.environ)
    assert f"The config {path} is invalid: unknown key 'foo'" in str(info.value)


def test_bundled_bike_sharing_config_loads() -> None:
    config = load_config(REPO / "configs" / "bike_sharing.yaml", os.environ)
    assert config.name == "bike-demand"
    assert config.task == "regression"
    assert config.target == "cnt"
    assert config.time_column == "dteday"
    assert config.data.member == "hour.csv"
    assert config.data.sha256 == "e03de4ee4ef4dc376ac6e04bf829673c6269e8eba5c60fa121640fa2f829504f"
    assert config.data.source.startswith("https://")
    assert config.features.drop == ["instant", "casual", "registered"]
    assert config.features.categorical == ["season", "weathersit"]
    assert config.features.numeric is None
    assert config.metric.name == "rmse" and config.metric.direction == "minimize"
    assert tuple(config.candidates) == CANDIDATES["regression"]


def test_notify_defaults_to_every_event_and_masks_a_literal_url() -> None:
    config = parse_config(minimal(notify={"webhook_url": "https://hooks.example.com/T0/secret-path"}))
    assert config.notify.events == list(NOTIFY_EVENTS)
    assert config.redacted()["notify"]["webhook_url"] == "https://hooks.example.com/***"
    placeholder = parse_config(minimal(notify={"webhook_url": "${HOOK}", "events": ["promoted"] * 2}))
    assert placeholder.redacted()["notify"] == {"webhook_url": "${HOOK}", "events": ["promoted"]}
    # Where notifications go is not part of what a model is: the config's fingerprint ignores it.
    assert config.fingerprint() == placeholder.fingerprint() == parse_config(minimal()).fingerprint()


@pytest.mark.parametrize(
    ("notify", "named"),
    [
        ({"webhook_url": "${HOOK}", "events": ["drift"]}, "notify.events.0"),
        ({"webhook_url": "ftp://h/x"}, "notify.webhook_url"),
        ({"webhook_url": "${HOOK}", "events": []}, "notify.events"),
        ({"url": "${HOOK}"}, "notify.url"),
    ],
)
def test_bad_notify_settings_are_named(notify: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        parse_config(minimal(notify=notify))
