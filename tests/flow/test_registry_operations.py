"""Registry operations: `retrain models`, `retrain rollback`, retention and the identical rerun.

A champion is trained once for the module through the command line; the tests then add versions
and aliases around it in the same store. Each test says which state it starts from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import yaml
from click.testing import Result
from mlflow import MlflowClient
from sklearn.dummy import DummyRegressor
from typer.testing import CliRunner

import flows.rollback  # noqa: F401 - configures Prefect's logging now, not inside a CliRunner's streams
from cli.app import app
from conftest import cli_json, isolated_cli_store, make_config, synthetic_frame
from core.promotion import Decision, alias_history, next_history_seq
from core.results import ModelsListing, RollbackSummary, json_keys
from tasks.registry import ChampionInfo, promote, prune_versions
from tasks.settings import Settings

NAME = "registry-model"


@dataclass(frozen=True)
class Store:
    root: Path
    uri: str
    config: Path
    data: Path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    with isolated_cli_store(tmp_path_factory, "registry") as (root, uri):
        data = root / "data.csv"
        synthetic_frame(rows=300, seed=1).to_csv(data, index=False)
        raw = {
            "name": NAME,
            "task": "regression",
            "target": "y",
            "time_column": "day",
            "data": {"source": str(data)},
            "candidates": {"linear": {}},
            "split": {"min_rows": 10},
            "tuning": {"n_trials": 2, "subset_rows": 100},
            "features": {"datetime": False},
        }
        config = root / "config.yaml"
        config.write_text(yaml.safe_dump(raw, sort_keys=False))
        first = cli_json("run", "--config", str(config), "--json")
        assert first["promoted"] and first["model_version"] == "1"
        yield Store(root, uri, config, data)


def aliases(client: MlflowClient, name: str = NAME) -> dict[str, str]:
    return {alias: str(v) for alias, v in client.get_registered_model(name).aliases.items()}


def version_numbers(client: MlflowClient, name: str = NAME) -> list[str]:
    return sorted((str(v.version) for v in client.search_model_versions(f"name = '{name}'")), key=int)


def copy_of_champion(client: MlflowClient, **tags: str) -> str:
    """A new version made of version 1's model files and tags (as a later run's would be)."""
    champion = client.get_model_version(NAME, "1")
    copied = {**champion.tags, **tags}
    copied.pop("decision", None)
    return str(
        client.create_model_version(NAME, champion.source, run_id=champion.run_id, tags=copied).version
    )


def test_an_identical_rerun_registers_nothing(store: Store) -> None:
    """From: version 1 champion. The same data and config again: nothing trained or registered."""
    client = MlflowClient(store.uri)
    before = version_numbers(client)
    summary = cli_json("run", "--config", str(store.config), "--json")
    assert summary["registered"] is False and summary["promoted"] is False
    assert summary["decision"].startswith("identical to the champion: same data")
    assert summary["model_version"] == "1"
    assert version_numbers(client) == before
    assert client.get_run(summary["mlflow_run_id"]).data.tags["decision"] == "identical"
    # Another config (a different margin) is no longer the same model's recipe: it trains and registers.
    raw = yaml.safe_load(store.config.read_text())
    raw["promotion"] = {"min_improvement": 0.5}
    other = store.root / "other-margin.yaml"
    other.write_text(yaml.safe_dump(raw))
    retrained = cli_json("run", "--config", str(other), "--json")
    assert retrained["registered"] is True and int(retrained["model_version"]) > 1
    assert not retrained["promoted"] and "not better by the margin" in retrained["decision"]


def test_promote_then_roll_back_and_models_shows_the_history(store: Store) -> None:
    """From: version 1 champion. A new version is promoted, then rolled back."""
    client = MlflowClient(store.uri)
    settings = Settings.from_environment()
    first = str(client.get_model_version_by_alias(NAME, "champion").version)
    newer = copy_of_champion(client)
    compared = ChampionInfo(NAME, first, None, {}, {})
    assert promote(settings, NAME, newer, Decision(True, "better by the margin"), compared).promote
    assert aliases(client)["champion"] == newer and aliases(client)["previous-champion"] == first

    summary = cli_json("rollback", "--config", str(store.config), "--reason", "complaints about v2", "--json")
    assert set(summary) == set(json_keys(RollbackSummary))
    assert summary["champion_version"] == first and summary["rolled_back_from"] == newer
    assert aliases(client)["champion"] == first and aliases(client)["previous-champion"] == newer
    tag = json.loads(client.get_model_version(NAME, newer).tags["rolled_back"])
    assert tag["to"] == first and tag["reason"] == "complaints about v2"
    assert "promotion_in_progress" not in client.get_registered_model(NAME).tags

    listing = cli_json("models", "--config", str(store.config), "--json")
    assert set(listing) == set(json_keys(ModelsListing))
    moves = [(e["action"], e["version"], e["previous"]) for e in listing["history"]]
    assert moves == [("promoted", "1", None), ("promoted", newer, first), ("rolled back", first, newer)]
    assert [e["seq"] for e in listing["history"]] == [1, 2, 3]
    assert listing["history"][-1]["reason"] == "complaints about v2"
    rows = {row["version"]: row for row in listing["versions"]}
    assert [row["version"] for row in listing["versions"]] == sorted(rows, key=int, reverse=True)
    assert rows[first]["aliases"] == ["champion"] and rows[newer]["aliases"] == ["previous-champion"]
    assert rows["1"]["decision"] == "promoted" and rows["1"]["trigger"] == "manual"
    assert rows["1"]["test_metric"] == pytest.approx(
        float(client.get_model_version(NAME, "1").tags["test_rmse"])
    )
    shown = CliRunner().invoke(app, ["models", "--config", str(store.config)], env={"COLUMNS": "300"})
    assert shown.exit_code == 0 and "rolled back" in shown.stdout and "complaints about v2" in shown.stdout


def run_bad_rollback(store: Store, *args: str, expect: str) -> None:
    client = MlflowClient(store.uri)
    before = aliases(client)
    result = invoke("rollback", "--config", str(store.config), "--reason", "try", *args)
    stderr = " ".join(result.stderr.split())
    assert result.exit_code == 2, result.output
    assert stderr.startswith("Error: ") and expect in stderr, stderr
    assert aliases(client) == before


def test_rollback_to_a_missing_version_exits_2(store: Store) -> None:
    run_bad_rollback(store, "--to", "99", expect=f"Model '{NAME}' has no version 99")


def test_rollback_to_a_version_whose_schema_the_data_does_not_fit_exits_2(store: Store) -> None:
    """A version trained on an extra column `x3` that today's data does not have."""
    client = MlflowClient(store.uri)
    schema = {"x1": "numeric", "x2": "numeric", "x3": "numeric", "color": "categorical"}
    other = copy_of_champion(client, input_schema=json.dumps(schema), decision="rejected")
    run_bad_rollback(
        store,
        "--to",
        other,
        expect=f"Version {other} cannot be champion again: the current data does not fit",
    )
    run_bad_rollback(store, "--to", other, expect="['x3'] not in the data")


def test_retention_deletes_exactly_the_old_versions_without_an_alias(store: Store, tmp_path: Path) -> None:
    """A model of its own: ten versions, each with its own logged model files."""
    name = "retention-model"
    client = MlflowClient(store.uri)
    mlflow.set_tracking_uri(store.uri)
    experiment = client.create_experiment("retention", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    client.create_registered_model(name)
    model = DummyRegressor().fit([[0.0]], [0.0])
    files = {}
    for number in range(1, 11):
        info = mlflow.sklearn.log_model(
            model, name=f"model-{number}", run_id=run_id, pip_requirements=[], serialization_format="skops"
        )
        decision = {} if number == 2 else {"decision": "rejected"}  # v2's run has not decided yet
        version = client.create_model_version(
            name, info.model_uri, run_id=run_id, model_id=info.model_id, tags=decision
        )
        files[str(version.version)] = Path(
            client.get_logged_model(info.model_id).artifact_location.removeprefix("file://")
        )
    for alias, number in (("previous-champion", "1"), ("champion", "4"), ("challenger", "10")):
        client.set_registered_model_alias(name, alias, number)
    assert all(path.is_dir() for path in files.values())

    deleted = prune_versions(Settings.from_environment(), name, keep=4)

    # Kept: the 4 newest (7-10), the aliased 1 and 4, and 2, whose run may still promote it.
    assert deleted == ["3", "5", "6"]
    assert version_numbers(client, name) == ["1", "2", "4", "7", "8", "9", "10"]
    assert sorted((n for n, path in files.items() if not path.exists()), key=int) == deleted
    assert prune_versions(Settings.from_environment(), name, keep=4) == []


def test_retention_runs_after_every_retrain(store: Store, tmp_path: Path) -> None:
    """Retrain flow wiring: with keep_versions 1, the run deletes the unaliased older versions."""
    from flows.retrain import retrain_flow

    source = tmp_path / "data.csv"
    synthetic_frame(rows=300, seed=4).to_csv(source, index=False)
    config = make_config(
        source,
        name="kept-model",
        candidates={"linear": {}},
        tuning={"n_trials": 2, "subset_rows": 100},
        features={"datetime": False},
        registry={"keep_versions": 1},
        promotion={"min_improvement": 0.5},
    )
    assert retrain_flow(config).promoted  # v1: champion
    second = retrain_flow(config.model_copy(update={"tuning": config.tuning.model_copy(update={"seed": 1})}))
    assert second.deleted_versions == []  # v1 champion, v2 challenger
    third = retrain_flow(config.model_copy(update={"tuning": config.tuning.model_copy(update={"seed": 2})}))
    assert third.deleted_versions == ["2"]  # challenger moved to v3
    assert version_numbers(MlflowClient(store.uri), "kept-model") == ["1", "3"]


def test_a_rollback_stopped_by_a_crash_is_completed_or_undone(store: Store) -> None:
    """From: any champion. Intent records as a killed rollback leaves them, before and after the move."""
    from prefect import task

    from tasks.registry import PENDING_TAG, ROLLED_BACK, new_intent, repair_promotion

    repair = task(repair_promotion)  # logs to its run, as inside `recover`
    client = MlflowClient(store.uri)
    settings = Settings.from_environment()
    champion = str(client.get_model_version_by_alias(NAME, "champion").version)
    other = copy_of_champion(client, decision="rejected")
    before = client.get_registered_model(NAME).tags

    # Killed before the alias moved: undone, champion unchanged, no history entry
    intent = new_intent(settings, NAME, ROLLED_BACK, other, champion, "killed early")
    client.set_registered_model_tag(NAME, PENDING_TAG, json.dumps(intent))
    assert "stopped before it took effect" in repair(settings, NAME)
    tags = client.get_registered_model(NAME).tags
    assert PENDING_TAG not in tags and aliases(client)["champion"] == champion
    assert sorted(tags) == sorted(before)

    # Killed after `champion` moved: completed, with the history entry the intent numbered
    intent = new_intent(settings, NAME, ROLLED_BACK, other, champion, "killed late")
    client.set_registered_model_tag(NAME, PENDING_TAG, json.dumps(intent))
    client.set_registered_model_alias(NAME, "champion", other)
    assert "completed the alias move (rolled back)" in repair(settings, NAME)
    assert aliases(client)["champion"] == other and aliases(client)["previous-champion"] == champion
    history = alias_history(client.get_registered_model(NAME).tags)
    assert history[-1] == intent and history[-1]["seq"] == next_history_seq(before)
    assert json.loads(client.get_model_version(NAME, champion).tags["rolled_back"])["reason"] == "killed late"
    assert repair(settings, NAME) is None  # nothing left to repair, no second entry
    assert len(alias_history(client.get_registered_model(NAME).tags)) == len(history)
