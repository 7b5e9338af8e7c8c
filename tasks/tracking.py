"""The MLflow tracking edge: the run of each flow as one context manager, and what is logged to it.

MLflow's active run is thread-local and Prefect runs tasks in threads, so everything here takes
run ids explicitly and talks to `MlflowClient`.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from prefect import get_run_logger, task
from sklearn.pipeline import Pipeline

from core.config import DataConfig, PipelineConfig
from core.drift import reference_sample
from core.drift_stats import summarise
from core.plots import draw_plots, plot_table
from core.search import TuneResult
from core.secrets import redact_url
from core.threads import on_one_openmp_thread
from core.validation import DataSchema
from tasks.options import io_edge_options
from tasks.plot_helper import PlotWorker
from tasks.settings import Settings

PROCESS_TAG = "retrain.process"
# MLflow 3's UI shows an experiment of this kind as model training (runs, models), not GenAI.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# MLflow 3.17's UI keeps one GenAI / model-training switch for all experiments (GenAI by default);
# this query parameter of a link selects the model-training view.
TRAINING_VIEW = "workflowType=machine_learning"
# Rows of the training data MLflow infers the dataset input's schema from (its digest is ours).
DATASET_SCHEMA_ROWS = 1000
# The reference sample's column summaries, beside it in the run that trained a model version.
REFERENCE_SUMMARY = "reference/summary.json"
TRACKED_PACKAGES = ("prefect", "mlflow", "scikit-learn", "pandas", "numpy", "evidently", "retrain-pipeline")


def import_tracking_store(settings: Settings) -> None:
    """Import MLflow's SQL stores when the tracking URI is a database (half a second), so the
    first MLflow call of a flow does not; nothing else is opened or created."""
    if settings.tracking_is_local:
        import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401 - the import is the work
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def client(settings: Settings) -> MlflowClient:
    """A client for the tracking store and registry of `settings`.

    MLflow creates a new local database's tables when a client first opens it, with no lock of
    its own: two runs started together on a fresh SQLite file both create them and one fails
    ("table ... already exists"). So the first client of a local store in this process is made
    under an exclusive `flock`, which the kernel releases if its holder dies.
    """
    uri = settings.tracking_uri
    if not settings.tracking_is_local or uri in _INITIALISED_STORES:
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    folder = settings.state_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "mlflow-store.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            mlflow_client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            mlflow_client.search_experiments(max_results=1)
            mlflow_client.search_registered_models(max_results=1)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    _INITIALISED_STORES.add(uri)
    return mlflow_client


# Local stores whose tables this process has seen created (see `client`).
_INITIALISED_STORES: set[str] = set()


def ensure_experiment(settings: Settings, mlflow_client: MlflowClient, name: str) -> str:
    """The id of experiment `name`, created on first use (artifacts under the state folder when local)."""
    key, kind = EXPERIMENT_KIND
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.tags.get(key) != kind:  # created by an earlier version of the pipeline
            mlflow_client.set_experiment_tag(experiment.experiment_id, key, kind)
        return experiment.experiment_id
    location = None
    if settings.tracking_is_local:
        location = (settings.state_dir / "artifacts" / name).as_uri()
    return mlflow_client.create_experiment(name, artifact_location=location, tags={key: kind})


def source_tags() -> dict[str, str]:
    """MLflow's own source and user tags: which deployment (or command) and which user ran this."""
    import getpass

    from mlflow.utils.mlflow_tags import MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER
    from prefect.context import FlowRunContext
    from prefect.runtime import deployment, flow_run

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, as in some containers
        user = "unknown"
    # `deployment.name` asks the API for the flow run (a fifth of a second) even when the run in
    # hand says it has no deployment.
    context = FlowRunContext.get()
    local = context is not None and context.flow_run is not None and context.flow_run.deployment_id is None
    deployed = None if local else deployment.name
    return {
        MLFLOW_SOURCE_NAME: f"prefect deployment {deployed}"
        if deployed
        else f"prefect flow {flow_run.flow_name}",
        MLFLOW_SOURCE_TYPE: "JOB" if deployed else "LOCAL",
        MLFLOW_USER: user,
    }


def this_process() -> str:
    """`<host>:<pid>`: lets a later run tell whether a run left RUNNING lost its process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape a run's result."""
    versions = {}
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> str | None:
    """The commit of the working directory's git checkout, when there is one."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() or None if completed.returncode == 0 else None


def log_json(mlflow_client: MlflowClient, run_id: str, payload: Any, artifact_file: str) -> None:
    """Write `payload` as JSON (or YAML by suffix) into the run's artifacts."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        if path.suffix in {".yaml", ".yml"}:
            path.write_text(yaml.safe_dump(payload, sort_keys=False))
        else:
            path.write_text(json.dumps(payload, indent=2, default=str))
        parent = str(Path(artifact_file).parent)
        mlflow_client.log_artifact(run_id, str(path), None if parent == "." else parent)


@task(name="start-mlflow-run", **io_edge_options())
def start_run(
    settings: Settings, config: PipelineConfig, experiment: str, run_name: str, tags: dict[str, str]
) -> str:
    """Create the flow's MLflow run with its lineage tags and the redacted config artifact."""
    mlflow_client = client(settings)
    experiment_id = ensure_experiment(settings, mlflow_client, experiment)
    commit = git_commit()
    lineage = {
        "config_sha256": config.fingerprint(),
        "model_name": config.name,
        PROCESS_TAG: this_process(),
        **({"git_commit": commit} if commit else {}),
        **{f"version.{k}": v for k, v in package_versions().items()},
        **source_tags(),
        **tags,
    }
    run = mlflow_client.create_run(experiment_id, run_name=run_name, tags=lineage)
    run_id = run.info.run_id
    log_json(mlflow_client, run_id, config.redacted(), "config/config.yaml")
    log_json(mlflow_client, run_id, package_versions(), "lineage/packages.json")
    return run_id


def _flatten(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(name, value))
        else:
            flat[name] = value
    return flat


@task(name="log-to-mlflow", **io_edge_options())
def log_values(
    settings: Settings,
    run_id: str,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    artifacts: dict[str, Any] | None = None,
    files: list[Path] | None = None,
    files_dir: str = "plots",
) -> None:
    """Log flattened params, metrics and tags, JSON artifacts (by file name) and files (to `files_dir`)."""
    mlflow_client = client(settings)
    now = int(time.time() * 1000)
    mlflow_client.log_batch(
        run_id,
        metrics=[
            Metric(k, float(v), now, 0)
            for k, v in _flatten("", metrics or {}).items()
            if v is not None and v == v  # skips NaN
        ],
        params=[Param(k, str(v)[:6000]) for k, v in _flatten("", params or {}).items()],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )
    for artifact_file, payload in (artifacts or {}).items():
        log_json(mlflow_client, run_id, payload, artifact_file)
    for path in files or []:
        mlflow_client.log_artifact(run_id, str(path), files_dir)


def dataset_source(data: DataConfig) -> tuple[str, str, str]:
    """The dataset's name, MLflow source type and source JSON, credentials masked."""
    location = redact_url(data.source)
    if data.is_sql:
        name = data.table or "query"
        return (
            name,
            "sql",
            json.dumps(
                {"uri": location, "table": data.table, "query": data.query and redact_url(data.query)}
            ),
        )
    name = data.member or Path(location.split("?")[0]).name or location
    if location.startswith(("http://", "https://")):
        return name, "http", json.dumps({"url": location})
    return name, "local", json.dumps({"uri": Path(location).resolve().as_uri()})


@task(name="log-training-data", **io_edge_options())
def log_training_data(
    settings: Settings, run_id: str, data: DataConfig, head: pd.DataFrame, rows: int, digest: str, target: str
) -> None:
    """Log the data read as the run's MLflow dataset input (context `training`).

    The schema is inferred from the first rows only and the digest is the pipeline's own
    fingerprint, so this stays cheap on any size; the profile counts every row.
    """
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    name, source_type, source = dataset_source(data)
    sample = head.head(DATASET_SCHEMA_ROWS)
    described = from_pandas(
        sample, targets=target if target in sample else None, digest=digest[:16]
    ).to_dict()
    dataset = Dataset(
        name=name,
        digest=digest[:16],
        source_type=source_type,
        source=source,
        schema=described.get("schema"),
        profile=json.dumps({"num_rows": rows, "num_elements": rows * sample.shape[1]}),
    )
    context = InputTag(MLFLOW_DATASET_CONTEXT, "training")
    client(settings).log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[context])])


@task(name="mlflow-links", **io_edge_options())
def run_links(
    settings: Settings,
    run_id: str | None,
    model_name: str | None = None,
    version: str | None = None,
    report: str | None = None,
) -> dict[str, str]:
    """Links into the MLflow UI: the run, the model version and an artifact of the run (`report`).

    Empty without an MLflow UI (a local store: set RETRAIN_MLFLOW_UI_URL to the `mlflow ui` address).
    """
    if not settings.mlflow_ui_url or not run_id:
        return {}
    base = redact_url(settings.mlflow_ui_url)
    experiment_id = client(settings).get_run(run_id).info.experiment_id
    run_url = f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_VIEW}"
    links = {"MLflow run": run_url}
    if model_name and version:
        links[f"Model version {version}"] = f"{base}/#/models/{model_name}/versions/{version}?{TRAINING_VIEW}"
    if report:
        links["HTML report"] = f"{base}/get-artifact?path={report}&run_uuid={run_id}"
    return links


@task(name="log-trials", **io_edge_options())
def log_trials(settings: Settings, parent_run_id: str, metric: str, results: list[TuneResult]) -> int:
    """Log every trial of the tuning results as a nested MLflow run of `parent_run_id`.

    One task writes them all, one after another: tasks writing at once to a SQLite store wait
    for each other's locks.

    Returns:
        How many trials were logged.
    """
    mlflow_client = client(settings)
    experiment_id = mlflow_client.get_run(parent_run_id).info.experiment_id
    trials = [(index, trial) for result in results for index, trial in enumerate(result.trials)]
    for index, trial in trials:
        run = mlflow_client.create_run(
            experiment_id,
            run_name=f"{trial.candidate}-r{trial.round}-t{index}",
            tags={
                "mlflow.parentRunId": parent_run_id,
                "candidate": trial.candidate,
                "stage": "tuning",
                "executor": trial.executor,
                PROCESS_TAG: this_process(),
            },
        )
        now = int(time.time() * 1000)
        mlflow_client.log_batch(
            run.info.run_id,
            metrics=[
                Metric(f"validation_{metric}", float(trial.score), now, 0),
                Metric("fit_seconds", float(trial.fit_seconds), now, 0),
            ],
            params=[Param(k, str(v)) for k, v in trial.params.items()]
            + [Param("train_rows", str(trial.rows)), Param("round", str(trial.round))],
        )
        mlflow_client.set_terminated(run.info.run_id, "FINISHED")
    return len(trials)


@task(name="log-reference-sample", **io_edge_options())
def log_reference_sample(
    settings: Settings,
    run_id: str,
    train: pd.DataFrame,
    max_rows: int,
    seed: int,
    kinds: dict[str, str] | None = None,
) -> str:
    """Log a capped sample of the training rows (features and target) for later drift checks.

    Beside it, `reference/summary.json`: the sample's column summaries (`kinds`: column to
    "numeric" or "categorical"), against which a streamed batch is tested.

    Returns:
        The artifact path of the Parquet file within the run.
    """
    sample = reference_sample(train, max_rows, seed)
    mlflow_client = client(settings)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reference.parquet"
        sample.to_parquet(path, index=False)
        mlflow_client.log_artifact(run_id, str(path), "reference")
    if kinds:
        summaries = {c: s.to_json() for c, s in summarise(sample, kinds).items()}
        log_json(mlflow_client, run_id, summaries, REFERENCE_SUMMARY)
    return "reference/reference.parquet"


@task(name="log-plots", **io_edge_options())
@on_one_openmp_thread
def log_plots(
    settings: Settings, run_id: str, model: Pipeline, test: pd.DataFrame, schema: DataSchema, task_kind: str
) -> list[str]:
    """Draw the test-window plots and log them under `plots/` of the run.

    The predictions are made here; the drawing is done by a helper process (`tasks.plot_helper`),
    or here when it cannot.
    """
    with tempfile.TemporaryDirectory() as tmp, PlotWorker.for_this_process() as worker:
        table = plot_table(model, test, schema, task_kind)
        paths = worker.draw(table, Path(tmp))
        if paths is None:
            log = get_run_logger().info if worker.process is None else get_run_logger().warning
            log("Drawing the plots in this process: %s", worker.failure)
            paths = draw_plots(table, Path(tmp))
        mlflow_client = client(settings)
        for path in paths:
            mlflow_client.log_artifact(run_id, str(path), "plots")
    return [f"plots/{p.name}" for p in paths]


@task(name="finish-mlflow-run", **io_edge_options())
def finish_run(settings: Settings, run_id: str, status: str = "FINISHED") -> None:
    """Mark the run FINISHED or FAILED."""
    client(settings).set_terminated(run_id, status)


@contextmanager
def tracked_run(
    settings: Settings, config: PipelineConfig, experiment: str, run_name: str, tags: dict[str, str]
) -> Iterator[str]:
    """The MLflow run of one flow run: created with its lineage, yields its id, then FINISHED.

    A failure inside the block marks the run FAILED and is raised again.
    """
    run_id = start_run(settings, config, experiment, run_name, tags)
    try:
        yield run_id
    except BaseException:
        try:
            client(settings).set_terminated(run_id, "FAILED")
        finally:
            raise
    finish_run(settings, run_id)
