"""The MLflow registry edge: find and load the champion, register a version, move the aliases."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from prefect import get_run_logger, task
from sklearn.pipeline import Pipeline

from core.errors import BadInputError
from core.metrics import score
from core.promotion import CHALLENGER, CHAMPION, PREVIOUS, Decision, stale_comparison
from core.trust import TRUSTED_MODEL_TYPES, check_model_types
from core.validation import DataSchema
from tasks.faults import reach
from tasks.locks import promotion_lease
from tasks.options import io_edge_options
from tasks.settings import Settings
from tasks.tracking import client


@dataclass(frozen=True)
class ChampionInfo:
    """The registered model version behind `models:/<name>@champion`."""

    name: str
    version: str
    run_id: str | None
    schema: dict[str, str]
    tags: dict[str, str]

    def input_schema(self, target: str, time_column: str | None = None) -> DataSchema:
        """The champion's input columns as a schema."""
        return DataSchema.from_input_kinds(self.schema, target, time_column)

    @property
    def uri(self) -> str:
        """The model URI pinned to this version (not the moving alias)."""
        return f"models:/{self.name}/{self.version}"


def get_alias_version(settings: Settings, name: str, alias: str) -> Any | None:
    """The model version an alias points at, or None when the model or alias does not exist."""
    try:
        return client(settings).get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}:
            return None
        raise


@task(name="find-champion", **io_edge_options())
def find_champion(settings: Settings, name: str) -> ChampionInfo | None:
    """Read `<name>@champion` and the input schema it was trained on."""
    version = get_alias_version(settings, name, CHAMPION)
    if version is None:
        return None
    schema = json.loads(version.tags.get("input_schema", "{}"))
    return ChampionInfo(name, str(version.version), version.run_id, schema, dict(version.tags))


def load_champion_model(settings: Settings, champion: ChampionInfo) -> Pipeline:
    """The champion's fitted pipeline, loaded without ever unpickling.

    Only a skops file is read, and only when every type it names is on this pipeline's own trust
    list (`core.trust`), not the list stored beside the model.

    Raises:
        BadInputError: The model is pickled, or names a type this pipeline never builds.
    """
    import skops.io

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    label = f"Version {champion.version} of model '{champion.name}'"
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=champion.uri, dst_path=tmp))
        flavor = yaml.safe_load((local / "MLmodel").read_text()).get("flavors", {}).get("sklearn", {})
        if flavor.get("serialization_format") != "skops":
            raise BadInputError(
                f"{label} is saved as {flavor.get('serialization_format') or 'no scikit-learn model'}, "
                "not skops; this pipeline never unpickles a model, since that could run code from it",
                "Point the alias at a version this pipeline trained, or delete the alias to train "
                "a new champion.",
            )
        path = local / flavor["pickled_model"]
        trusted = check_model_types(skops.io.get_untrusted_types(file=path), label)
        return skops.io.load(path, trusted=trusted)


@task(name="score-champion", **io_edge_options())
def score_champion(
    settings: Settings, champion: ChampionInfo | None, test: pd.DataFrame, schema: DataSchema, task_kind: str
) -> dict[str, float] | None:
    """The champion's metrics on the same test window as the challenger (None without one)."""
    if champion is None:
        return None
    model = load_champion_model(settings, champion)
    return score(model, test, champion.input_schema(schema.target, schema.time_column), task_kind)


def widen_for_signature(features: pd.DataFrame) -> pd.DataFrame:
    """The model inputs in the types `pd.read_csv` gives for the training file.

    Integers as int64, floats as float64, categories and timestamps as text: the compact types of
    training (float32, int8, category) would make MLflow refuse a caller's ordinary frame. The
    model parses a timestamp itself.
    """
    integers = features.select_dtypes("integer").columns
    floats = features.select_dtypes("floating").columns
    categories = features.select_dtypes("category").columns
    timestamps = features.select_dtypes("datetime").columns
    return features.astype(
        {c: "int64" for c in integers}
        | {c: "float64" for c in floats}
        | {c: object for c in categories}
        | {c: str for c in timestamps}
    )


def serving_requirements() -> list[str]:
    """The pinned packages a fresh environment needs to load and serve the model (not this project)."""
    from importlib import metadata

    packages = ("mlflow", "scikit-learn", "pandas", "numpy", "scipy", "skops")
    return [f"{package}=={metadata.version(package)}" for package in packages]


@task(name="register-model", **io_edge_options())
def register_model(
    settings: Settings,
    run_id: str,
    model: Pipeline,
    name: str,
    example: pd.DataFrame,
    schema: DataSchema,
    tags: dict[str, str],
) -> str:
    """Log the fitted pipeline (signature, input example) to the run and register a new version.

    The model is saved with skops, made of scikit-learn, NumPy and SciPy parts only, with pinned
    requirements, so any MLflow client loads and serves it without this project. The new version
    gets the `challenger` alias; `champion` moves only in `promote`.

    Returns:
        The new version number.
    """
    import mlflow.sklearn  # only registering needs the flavour (drift checks load with skops)

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    # The signature needs column types, not every row: a sample keeps logging quick.
    features = example[schema.model_inputs].sample(n=min(1000, len(example)), random_state=0)
    widened = widen_for_signature(features)
    signature = infer_signature(widened, model.predict(features))
    input_schema = schema.input_kinds()
    requirements = serving_requirements()

    mlflow_client = client(settings)
    # Logged against the run by id: `mlflow.start_run(run_id=...)` would end the flow's run early.
    mlflow.set_experiment(experiment_id=mlflow_client.get_run(run_id).info.experiment_id)
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=signature,
        input_example=widened.head(5),
        pip_requirements=requirements,
        skops_trusted_types=sorted(TRUSTED_MODEL_TYPES),
        run_id=run_id,
    )
    reach(settings, "after-model-logged")
    try:
        mlflow_client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = mlflow_client.create_model_version(
        name,
        info.model_uri,
        run_id=run_id,
        model_id=info.model_id,
        tags={**tags, "input_schema": json.dumps(input_schema)},
    )
    reach(settings, "after-version-registered")
    mlflow_client.set_registered_model_alias(name, CHALLENGER, version.version)
    return str(version.version)


PENDING_TAG = "promotion_in_progress"


@task(name="promote", **io_edge_options())
def promote(
    settings: Settings,
    name: str,
    version: str,
    decision: Decision,
    compared_with: ChampionInfo | None,
    tags: dict[str, str] | None = None,
) -> Decision:
    """Record the decision (and `tags`) on the version and, when promoting, move `champion` to it.

    Under the model's promotion lease, the champion alias is re-read: if another run moved it since
    this run compared against it, this run does not promote (its comparison is stale), so two
    concurrent runs cannot both win. The moves are crash-consistent (see `move_aliases`).
    """
    from tasks.publish import api_target

    mlflow_client = client(settings)
    for key, value in (tags or {}).items():
        mlflow_client.set_model_version_tag(name, version, key, value)
    with promotion_lease(settings, name, api_target()):
        repair_promotion(settings, name)
        # A retry of this task after a failure midway: the first attempt's outcome stands.
        recorded = mlflow_client.get_model_version(name, version).tags
        if recorded.get("decision") in {"promoted", "rejected"}:
            return Decision(recorded["decision"] == "promoted", recorded.get("decision_reason", ""))
        current = get_alias_version(settings, name, CHAMPION)
        reach(settings, "after-champion-reread")
        if decision.promote:
            expected = compared_with.version if compared_with else None
            decision = stale_comparison(expected, str(current.version) if current else None) or decision
        if decision.promote:
            move_aliases(settings, name, version, compared_with.version if compared_with else None, decision)
        else:
            record_decision(settings, name, version, decision)
    get_run_logger().info("Version %s: %s", version, decision.reason)
    return decision


def record_decision(settings: Settings, name: str, version: str, decision: Decision) -> None:
    """Tag the version with the decision and its reason."""
    mlflow_client = client(settings)
    mlflow_client.set_model_version_tag(name, version, "decision_reason", decision.reason)
    mlflow_client.set_model_version_tag(
        name, version, "decision", "promoted" if decision.promote else "rejected"
    )


def move_aliases(
    settings: Settings, name: str, version: str, previous: str | None, decision: Decision
) -> None:
    """Move `champion` to `version` and `previous-champion` to `previous`, then tag the decision.

    The intent is written on the registered model first and removed last, so a crash at any point
    leaves either the old state or a record that `repair_promotion` completes; the version is
    tagged `promoted` only after `champion` points at it.
    """
    mlflow_client = client(settings)
    intent = {"version": version, "previous": previous, "reason": decision.reason}
    mlflow_client.set_registered_model_tag(name, PENDING_TAG, json.dumps(intent))
    reach(settings, "before-alias-writes")
    mlflow_client.set_registered_model_alias(name, CHAMPION, version)
    reach(settings, "between-alias-writes")
    finish_promotion(settings, name, intent)


def finish_promotion(settings: Settings, name: str, intent: dict[str, Any]) -> None:
    """The steps after `champion` moved: `previous-champion`, the decision tags, the intent removed."""
    mlflow_client = client(settings)
    if intent["previous"]:
        mlflow_client.set_registered_model_alias(name, PREVIOUS, intent["previous"])
    record_decision(settings, name, intent["version"], Decision(True, intent["reason"]))
    mlflow_client.delete_registered_model_tag(name, PENDING_TAG)


def repair_promotion(settings: Settings, name: str) -> str | None:
    """Complete or undo a promotion a crash interrupted (call under the promotion lease).

    Returns:
        What was repaired, or None when nothing was pending.
    """
    mlflow_client = client(settings)
    try:
        tags = mlflow_client.get_registered_model(name).tags
    except MlflowException:
        return None
    if PENDING_TAG not in tags:
        return None
    intent = json.loads(tags[PENDING_TAG])
    champion = get_alias_version(settings, name, CHAMPION)
    if champion is not None and str(champion.version) == intent["version"]:
        finish_promotion(settings, name, intent)
        note = f"completed the promotion of version {intent['version']} that a crash interrupted"
    else:
        reason = "the run was stopped before its promotion took effect; champion unchanged"
        mlflow_client.set_model_version_tag(name, intent["version"], "decision", "interrupted")
        mlflow_client.set_model_version_tag(name, intent["version"], "decision_reason", reason)
        mlflow_client.delete_registered_model_tag(name, PENDING_TAG)
        note = f"version {intent['version']}: {reason}"
    get_run_logger().warning("Registry repaired: %s", note)
    return note
