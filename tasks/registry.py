"""The MLflow registry edge: find and load the champion, register a version, move the aliases."""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
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
from core.promotion import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    Decision,
    alias_history,
    history_tag,
    next_history_seq,
    stale_comparison,
)
from core.results import ModelsListing, VersionRow
from core.scoring import predictions_table
from core.secrets import redact_url
from core.threads import on_one_openmp_thread
from core.trust import TRUSTED_MODEL_TYPES, check_model_types, model_building_blocks
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


def info_of(version: Any) -> ChampionInfo:
    """A registered version (MLflow's `ModelVersion`) with the input schema it was trained on."""
    schema = json.loads(version.tags.get("input_schema", "{}"))
    return ChampionInfo(version.name, str(version.version), version.run_id, schema, dict(version.tags))


@task(name="find-champion", **io_edge_options())
def find_champion(settings: Settings, name: str) -> ChampionInfo | None:
    """Read `<name>@champion` and the input schema it was trained on."""
    version = get_alias_version(settings, name, CHAMPION)
    return info_of(version) if version is not None else None


def version_info(settings: Settings, name: str, version: str | None) -> ChampionInfo:
    """Version `version` of model `name`, or its champion when `version` is None.

    Raises:
        BadInputError: There is no champion, or no such version.
    """
    where = redact_url(settings.tracking_uri)
    if version is None:
        found = get_alias_version(settings, name, CHAMPION)
        if found is None:
            raise BadInputError(
                f"No champion is registered for model '{name}' (no `models:/{name}@champion` in {where})",
                "Train one first with `retrain run --config <file>`, or name a version with --version N.",
            )
        return info_of(found)
    try:
        return info_of(client(settings).get_model_version(name, version))
    except MlflowException as exc:
        if exc.error_code not in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}:
            raise
    raise BadInputError(
        f"Model '{name}' has no version {version} in {where}",
        "List its versions with `retrain models --config <file>` and name one of them.",
    )


@task(name="find-model-version", **io_edge_options())
def find_version(settings: Settings, name: str, version: str | None) -> ChampionInfo:
    """The version to score with: `version`, or the champion; see `version_info`."""
    return version_info(settings, name, version)


_SKOPS_IMPORT = threading.Lock()


def skops_io() -> ModuleType:
    """`skops.io`, imported with its default trust cut to this pipeline's own building blocks.

    At import, skops lists the estimators it trusts by calling `sklearn.utils.all_estimators()`,
    which imports every scikit-learn module (0.3 s and some 400 modules, on every command that
    loads or saves a model). The models here are made only of `model_building_blocks()`, so skops
    is handed those instead: a quicker import and a narrower trust (a model naming any other
    estimator is refused). Once skops is imported, by this or anything else, it is returned as is.
    """
    with _SKOPS_IMPORT:
        if "skops.io" not in sys.modules:
            import sklearn.utils

            every_estimator = sklearn.utils.all_estimators
            blocks = [(cls.__name__, cls) for cls in model_building_blocks()]
            sklearn.utils.all_estimators = lambda *args, **kwargs: blocks
            try:
                importlib.import_module("skops.io")
            finally:
                sklearn.utils.all_estimators = every_estimator
    return sys.modules["skops.io"]


def load_champion_model(settings: Settings, champion: ChampionInfo) -> Pipeline:
    """The champion's fitted pipeline, loaded without ever unpickling.

    Only a skops file is read, and only when every type it names is on this pipeline's own trust
    list (`core.trust`), not the list stored beside the model.

    Raises:
        BadInputError: The model is pickled, or names a type this pipeline never builds.
    """
    skops = skops_io()
    from skops.io.exceptions import UntrustedTypesFoundException

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
        try:
            return skops.load(path, trusted=sorted(TRUSTED_MODEL_TYPES))
        except UntrustedTypesFoundException:
            check_model_types(skops.get_untrusted_types(file=path), label)  # names what is outside
            raise


@task(name="score-champion", **io_edge_options())
@on_one_openmp_thread
def score_champion(
    settings: Settings, champion: ChampionInfo | None, test: pd.DataFrame, schema: DataSchema, task_kind: str
) -> dict[str, float] | None:
    """The champion's metrics on the same test window as the challenger (None without one)."""
    if champion is None:
        return None
    model = load_champion_model(settings, champion)
    return score(model, test, champion.input_schema(schema.target, schema.time_column), task_kind)


@task(name="predict-batch", **io_edge_options())
def predict_batch(
    settings: Settings, model_info: ChampionInfo, batch: pd.DataFrame, keys: pd.DataFrame, schema: DataSchema
) -> pd.DataFrame:
    """The version's predictions for the batch beside its key columns (loaded safely, never unpickled)."""
    model = load_champion_model(settings, model_info)
    return predictions_table(model, batch, schema, keys)


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
@on_one_openmp_thread
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

    skops_io()  # before MLflow's save imports it the slow way

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
    move_champion(settings, name, new_intent(settings, name, PROMOTED, version, previous, decision.reason))


PROMOTED, ROLLED_BACK = "promoted", "rolled back"


def new_intent(
    settings: Settings, name: str, action: str, version: str, previous: str | None, reason: str
) -> dict[str, Any]:
    """The record of an alias move, numbered as the next alias-history entry (call under the lease)."""
    tags = client(settings).get_registered_model(name).tags
    return {
        "seq": next_history_seq(tags),
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "action": action,
        "version": version,
        "previous": previous,
        "reason": reason[:1000],
    }


def move_champion(settings: Settings, name: str, intent: dict[str, Any]) -> None:
    """Write the intent, move `champion` to its version, then finish (see `finish_promotion`)."""
    mlflow_client = client(settings)
    mlflow_client.set_registered_model_tag(name, PENDING_TAG, json.dumps(intent))
    reach(settings, "before-alias-writes")
    mlflow_client.set_registered_model_alias(name, CHAMPION, intent["version"])
    reach(settings, "between-alias-writes")
    finish_promotion(settings, name, intent)


def finish_promotion(settings: Settings, name: str, intent: dict[str, Any]) -> None:
    """The steps after `champion` moved: `previous-champion`, the version tags, the history entry,
    the intent removed.

    Each step can be repeated: the history entry's number was fixed in the intent, so a repair
    rewrites the same entry rather than appending a second one.
    """
    mlflow_client = client(settings)
    if intent["previous"]:
        mlflow_client.set_registered_model_alias(name, PREVIOUS, intent["previous"])
    if intent.get("action") == ROLLED_BACK:
        note = json.dumps({"at": intent["at"], "to": intent["version"], "reason": intent["reason"]})
        mlflow_client.set_model_version_tag(name, intent["previous"], "rolled_back", note)
    else:
        record_decision(settings, name, intent["version"], Decision(True, intent["reason"]))
    if "seq" in intent:
        mlflow_client.set_registered_model_tag(name, history_tag(intent["seq"]), json.dumps(intent))
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
    action = intent.get("action", PROMOTED)
    if champion is not None and str(champion.version) == intent["version"]:
        finish_promotion(settings, name, intent)
        note = f"completed the alias move ({action}) to version {intent['version']} that a crash interrupted"
    elif action == ROLLED_BACK:
        mlflow_client.delete_registered_model_tag(name, PENDING_TAG)
        note = (
            f"the rollback to version {intent['version']} stopped before it took effect; champion unchanged"
        )
    else:
        reason = "the run was stopped before its promotion took effect; champion unchanged"
        mlflow_client.set_model_version_tag(name, intent["version"], "decision", "interrupted")
        mlflow_client.set_model_version_tag(name, intent["version"], "decision_reason", reason)
        mlflow_client.delete_registered_model_tag(name, PENDING_TAG)
        note = f"version {intent['version']}: {reason}"
    get_run_logger().warning("Registry repaired: %s", note)
    return note


@task(name="find-rollback-target", **io_edge_options())
def rollback_target(settings: Settings, name: str, to: str | None) -> tuple[ChampionInfo, ChampionInfo]:
    """The champion now and the version a rollback brings back (`to`, else `previous-champion`).

    The target is loaded once the safe way, so a version this pipeline would refuse to load never
    becomes champion.

    Raises:
        BadInputError: No champion, no such version (or no previous champion), the target is the
            champion already, or it cannot be loaded safely.
    """
    champion = version_info(settings, name, None)
    if to is None:
        previous = get_alias_version(settings, name, PREVIOUS)
        if previous is None:
            raise BadInputError(
                f"Model '{name}' has no previous-champion to roll back to (version {champion.version} "
                "is the only champion it has had)",
                "Name the version to bring back with --to N (see `retrain models --config <file>`).",
            )
        target = info_of(previous)
    else:
        target = version_info(settings, name, to)
    if target.version == champion.version:
        raise BadInputError(
            f"Version {target.version} of model '{name}' is the champion already; nothing to roll back",
            "Name another version with --to N (see `retrain models --config <file>`).",
        )
    load_champion_model(settings, target)
    return champion, target


@task(name="roll-back", **io_edge_options())
def roll_back(settings: Settings, name: str, target: str, expected_champion: str, reason: str) -> str:
    """Move `champion` back to `target` and `previous-champion` to the version it replaces.

    Under the model's promotion lease, like a promotion, and with the same intent record, so a
    crash leaves either the old aliases or a move the next run completes. The rollback is tagged on
    the version it replaces (`rolled_back`) and appended to the alias history.

    Returns:
        The version that was champion.

    Raises:
        BadInputError: The champion moved since the target was checked.
    """
    from tasks.publish import api_target

    with promotion_lease(settings, name, api_target()):
        repair_promotion(settings, name)
        current = get_alias_version(settings, name, CHAMPION)
        current_version = str(current.version) if current else None
        if current_version == target:  # a retry after the first attempt moved the alias
            return expected_champion
        if current_version != expected_champion:
            raise BadInputError(
                f"The champion of model '{name}' moved to version {current_version} while this "
                f"rollback checked version {expected_champion}; nothing was changed",
                "Run the rollback again.",
            )
        intent = new_intent(settings, name, ROLLED_BACK, target, expected_champion, reason)
        move_champion(settings, name, intent)
    get_run_logger().info("Champion of %s rolled back from version %s to %s", name, expected_champion, target)
    return expected_champion


def run_trigger(mlflow_client: Any, run_id: str | None) -> str:
    """The `trigger` tag of a version's training run (versions registered before it was a version tag)."""
    if not run_id:
        return ""
    try:
        return mlflow_client.get_run(run_id).data.tags.get("trigger", "")
    except MlflowException:
        return ""


def versions_newest_first(settings: Settings, name: str) -> list[Any]:
    """Every registered version of model `name`, the newest first."""
    found = client(settings).search_model_versions(f"name = '{name}'")
    return sorted(found, key=lambda version: -int(version.version))


def list_versions(settings: Settings, name: str, metric: str) -> ModelsListing:
    """Every version of model `name` (newest first) with its aliases, decision and trigger, and the
    alias history.

    Raises:
        BadInputError: No model of that name is registered.
    """
    mlflow_client = client(settings)
    try:
        model = mlflow_client.get_registered_model(name)
    except MlflowException:
        raise BadInputError(
            f"No model '{name}' is registered in {redact_url(settings.tracking_uri)}",
            "Train one first with `retrain run --config <file>`.",
        ) from None
    aliases: dict[str, list[str]] = {}
    for alias, version in model.aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for version in versions_newest_first(settings, name):
        tags = version.tags
        test = tags.get(f"test_{metric}")
        created = datetime.fromtimestamp(version.creation_timestamp / 1000, tz=timezone.utc)
        rows.append(
            VersionRow(
                version=str(version.version),
                aliases=sorted(aliases.get(str(version.version), [])),
                test_metric=float(test) if test else None,
                decision=tags.get("decision", ""),
                reason=tags.get("decision_reason", ""),
                trigger=tags.get("trigger") or run_trigger(mlflow_client, version.run_id),
                created=created.isoformat(timespec="seconds"),
            )
        )
    return ModelsListing(name, metric, rows, alias_history(model.tags))


def delete_version(settings: Settings, name: str, version: Any) -> None:
    """Delete a version from the registry and its logged model's files from the artifact store."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    mlflow_client = client(settings)
    # The registry does not always return the id it was given; MLflow 3 sources name it too.
    source = version.source or ""
    model_id = version.model_id or (
        source.removeprefix("models:/") if source.startswith("models:/m-") else None
    )
    if model_id:
        logged = mlflow_client.get_logged_model(model_id)
        files = get_artifact_repository(logged.artifact_location, tracking_uri=settings.tracking_uri)
        files.delete_artifacts()
        mlflow_client.delete_logged_model(model_id)
    mlflow_client.delete_model_version(name, version.version)


@task(name="prune-versions", **io_edge_options())
def prune_versions(settings: Settings, name: str, keep: int) -> list[str]:
    """Delete the versions older than the newest `keep` that hold no alias, with their model files.

    Never deletes a version with an alias (champion, previous-champion, challenger), one without a
    decision yet (its run may still promote it) or one named by an unfinished alias move.

    Returns:
        The deleted version numbers, oldest first.
    """
    from tasks.publish import api_target

    mlflow_client = client(settings)
    deleted: list[str] = []
    with promotion_lease(settings, name, api_target()):
        model = mlflow_client.get_registered_model(name)
        pending = json.loads(model.tags.get(PENDING_TAG, "{}"))
        protected = {str(v) for v in model.aliases.values()} | {
            str(v) for v in (pending.get("version"), pending.get("previous")) if v
        }
        for version in reversed(versions_newest_first(settings, name)[keep:]):
            if str(version.version) in protected or "decision" not in version.tags:
                continue
            try:
                delete_version(settings, name, version)
            except MlflowException as exc:
                if exc.error_code != "PERMISSION_DENIED":
                    raise
                # A user with EDIT only (as in the Docker stack) may register but not delete.
                get_run_logger().warning(
                    "Retention skipped: the MLflow user may not delete versions (%s)", exc
                )
                break
            deleted.append(str(version.version))
    if deleted:
        get_run_logger().info("Deleted %d old versions of %s: %s", len(deleted), name, ", ".join(deleted))
    return deleted
