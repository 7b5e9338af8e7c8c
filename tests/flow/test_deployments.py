"""The Python deployments and prefect.yaml define the same three deployments, both by config path."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_config
from core.config import PipelineConfig, load_config
from core.errors import ConfigError
from deployments import build_deployments, deployment_names

CONFIG = REPO / "configs" / "bike_sharing.yaml"


@pytest.fixture(scope="module")
def python_deployments() -> dict:
    return {d.name: d for d in build_deployments(load_config(CONFIG, os.environ), CONFIG)}


@pytest.fixture(scope="module")
def yaml_deployments() -> dict:
    document = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return {d["name"]: d for d in document["deployments"]}


def test_same_names(python_deployments: dict, yaml_deployments: dict) -> None:
    expected = set(deployment_names("bike-demand").values())
    assert set(python_deployments) == expected == set(yaml_deployments)


def test_entrypoints_are_the_same_flows(python_deployments: dict, yaml_deployments: dict) -> None:
    for name, spec in yaml_deployments.items():
        path, function = spec["entrypoint"].split(":")
        assert (REPO / path).is_file(), path
        flow_object = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), function)
        module, _, attribute = python_deployments[name].entrypoint.rpartition(".")
        assert getattr(importlib.import_module(module), attribute) is flow_object, name


def test_schedules_match(python_deployments: dict, yaml_deployments: dict) -> None:
    for name, spec in yaml_deployments.items():
        ours = [(s.schedule.cron, s.schedule.timezone) for s in python_deployments[name].schedules]
        theirs = [(s["cron"], s["timezone"]) for s in spec.get("schedules", [])]
        assert ours == theirs, name
    config = load_config(CONFIG, os.environ)
    assert yaml_deployments["bike-demand-scheduled"]["schedules"][0]["cron"] == config.schedule.cron
    assert yaml_deployments["bike-demand-drift-check"]["schedules"][0]["cron"] == config.drift.cron


def test_concurrency_limits_match(python_deployments: dict, yaml_deployments: dict) -> None:
    for name, spec in yaml_deployments.items():
        deployment = python_deployments[name]
        limit = spec.get("concurrency_limit")
        if limit is None:
            assert deployment.concurrency_limit is None, name
            continue
        assert deployment.concurrency_limit == limit["limit"] == 1
        assert deployment.concurrency_options.collision_strategy.value == limit["collision_strategy"]


def test_triggers_match(python_deployments: dict, yaml_deployments: dict) -> None:
    for name, spec in yaml_deployments.items():
        ours = python_deployments[name].triggers
        theirs = spec.get("triggers", [])
        assert len(ours) == len(theirs), name
        for trigger, declared in zip(ours, theirs, strict=True):
            assert trigger.expect == set(declared["expect"])
            assert trigger.match.root == declared["match"]
            assert trigger.parameters == declared["parameters"]
            assert trigger.name == declared["name"]
    on_drift = python_deployments["bike-demand-on-drift"].triggers[0]
    assert on_drift.expect == {"retrain.drift.detected"}
    assert on_drift.match.root == {"prefect.resource.id": "retrain.model.bike-demand"}


def test_parameters_match(python_deployments: dict, yaml_deployments: dict) -> None:
    for name, spec in yaml_deployments.items():
        ours = python_deployments[name].parameters
        theirs = dict(spec["parameters"])
        # Both name the same file, relative to the project directory the worker runs in.
        assert Path(ours["config"]) == (REPO / theirs.pop("config")).resolve() == CONFIG.resolve(), name
        assert {k: v for k, v in ours.items() if k != "config"} == theirs, name


def test_a_path_parameter_stays_a_path_and_a_dict_becomes_a_config() -> None:
    from flows.drift import drift_check_flow
    from flows.retrain import retrain_flow

    for flow_object in (retrain_flow, drift_check_flow):
        validated = flow_object.validate_parameters({"config": "configs/bike_sharing.yaml"})
        assert validated["config"] == "configs/bike_sharing.yaml"
    inline = load_config(CONFIG, os.environ).model_dump(mode="json")
    assert isinstance(retrain_flow.validate_parameters({"config": inline})["config"], PipelineConfig)


def test_a_run_reads_the_file_with_retrain_data_like_the_command(tmp_path: Path) -> None:
    from tasks.settings import run_config

    local = tmp_path / "hour.csv"
    from_file = run_config(str(CONFIG), {})
    assert from_file.data.source.startswith("https://")
    on_worker = run_config(str(CONFIG), {"RETRAIN_DATA": str(local)})
    assert on_worker.data.source == str(local) and on_worker.data.member is None
    assert on_worker.data.compact_dtypes == from_file.data.compact_dtypes
    assert on_worker.model_copy(update={"data": from_file.data}) == from_file
    given = make_config("x.csv")
    assert run_config(given, {"RETRAIN_DATA": str(local)}) is given  # a config object is used as given


def test_trigger_template_renders_the_reasons() -> None:
    from prefect.server.utilities.user_templates import render_user_template_sync

    from deployments.build import TRIGGER_TEMPLATE

    rendered = render_user_template_sync(
        TRIGGER_TEMPLATE, {"event": {"payload": {"reasons": ["7 of 12 features drifted", "decay 111%"]}}}
    )
    assert rendered == "drift alert: 7 of 12 features drifted; decay 111%"


def test_a_literal_password_is_refused_inline_and_never_stored_by_path(tmp_path: Path) -> None:
    literal = make_config("unused", data={"source": "postgresql://u:hunter22@db/x", "table": "t"})
    with pytest.raises(ConfigError, match="literal password"):
        build_deployments(literal)
    placeholder = make_config("unused", data={"source": "postgresql://u:${DB_PW}@db/x", "table": "t"})
    stored = build_deployments(placeholder)[0].parameters["config"]
    assert stored["data"]["source"] == "postgresql://u:${DB_PW}@db/x"
    # By path, Prefect stores only the file's name: the worker reads the secret from the file.
    path = tmp_path / "db.yaml"
    path.write_text(yaml.safe_dump(literal.model_dump(mode="python", exclude_none=True)))
    for deployment in build_deployments(literal, path):
        assert deployment.parameters["config"] == str(path.resolve())
        assert "hunter22" not in json.dumps(deployment.parameters)


def test_the_score_deployment_follows_score_cron_and_refuses_a_literal_password() -> None:
    on_demand = {d.name: d for d in build_deployments(make_config("unused"))}["test-model-score"]
    assert on_demand.schedules == [] and "out" not in on_demand.parameters
    scheduled = make_config("unused", score={"cron": "15 * * * *", "out": "postgresql://u:${PW}@db/x"})
    deployment = {d.name: d for d in build_deployments(scheduled)}["test-model-score"]
    assert [s.schedule.cron for s in deployment.schedules] == ["15 * * * *"]
    # The run writes to the score.out of the config it is given.
    assert deployment.parameters["config"]["score"]["out"] == "postgresql://u:${PW}@db/x"
    with pytest.raises(ConfigError, match="score.out holds a literal password"):
        build_deployments(make_config("unused", score={"out": "postgresql://u:hunter22@db/x"}))
