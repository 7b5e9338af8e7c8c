"""The retraining flow: wiring only. The logic lives in `core/`, the Prefect tasks in `tasks/`."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

from prefect import flow
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from core.config import PipelineConfig
from core.drift import summary_kinds
from core.promotion import same_as_champion
from core.results import RetrainSummary, leaderboard
from core.search import TuneResult, TuningData, best_of
from core.split import Splits
from core.tables import columns_to_read, fingerprint
from core.validation import DataSchema
from flows.tuning import tune_candidates
from tasks.evaluate import evaluate
from tasks.faults import reach
from tasks.features import fit_features
from tasks.ingest import ingest
from tasks.promote import compare
from tasks.publish import publish_summary
from tasks.recovery import recover
from tasks.redaction import protect_secrets
from tasks.registry import (
    ChampionInfo,
    find_champion,
    promote,
    prune_versions,
    register_model,
    score_champion,
)
from tasks.settings import Settings, run_config
from tasks.split import split
from tasks.tracking import (
    log_plots,
    log_reference_sample,
    log_training_data,
    log_trials,
    log_values,
    run_links,
    tracked_run,
)
from tasks.train import refit_best, train_baseline
from tasks.validate import validate


@dataclass(frozen=True)
class PreparedData:
    """The validated windows, their schema and features, and the fingerprint of the data read."""

    splits: Splits
    schema: DataSchema
    preprocessor: ColumnTransformer
    data_sha256: str


@dataclass(frozen=True)
class TrainedModels:
    """The tuning results, the final model and its baseline, and the I/O running beside them."""

    results: list[TuneResult]
    best: TuneResult
    model: Pipeline
    baseline_on_train: Pipeline
    trials_logged: PrefectFuture
    reference: PrefectFuture
    tuning_seconds: float


@flow(name="retrain", log_prints=True)
def retrain_flow(config: PipelineConfig | str, trigger: str = "manual") -> RetrainSummary:
    """Train, evaluate and maybe promote a new model version for `config.name`.

    Args:
        config: The validated pipeline config, or the path of its file (read on the worker, with
            `RETRAIN_DATA` applied).
        trigger: Why this run started (manual, schedule, or the drift alert's reasons).

    Returns:
        The run summary: promotion, metrics of challenger, baseline and champion, and run ids.
    """
    config = run_config(config)
    protect_secrets(config)
    settings = Settings.from_environment()
    recover(settings, config)
    flow_run_id = str(flow_run.id) if flow_run.id else None
    tags = {"prefect_flow_run_id": flow_run_id or "", "trigger": trigger[:5000]}
    with tracked_run(settings, config, config.experiment_name, f"retrain-{config.name}", tags) as run_id:
        champion = find_champion(settings, config.name)
        data = prepare_data(settings, config, run_id, champion)
        # Same data and config as the champion's: the same model again, so nothing is registered
        identical = same_as_champion(
            champion.tags if champion else None, data.data_sha256, config.fingerprint()
        )
        if identical and champion:
            return unchanged_summary(settings, config, run_id, champion, identical, flow_run_id, trigger)
        champion_scored = score_champion.submit(
            settings, champion, data.splits.test, data.schema, config.task
        )
        trained = train_models(settings, config, run_id, data)
        summary = evaluate_and_promote(
            settings, config, run_id, data, trained, champion, champion_scored, flow_run_id, trigger
        )
        # Retention last, once this run's version has its decision
        deleted = prune_versions(settings, config.name, config.registry.keep_versions)
        summary = replace(summary, deleted_versions=deleted)
    return summary


def prepare_data(
    settings: Settings, config: PipelineConfig, run_id: str, champion: ChampionInfo | None
) -> PreparedData:
    """Ingest, validate against the champion's schema, split by time and fit the features."""
    raw = ingest(config.data, columns_to_read(config), settings)
    data_sha256, data_rows = fingerprint(raw), len(raw)
    log_training_data(settings, run_id, config.data, raw, data_rows, data_sha256, config.target)
    frame, schema = validate(raw, config, champion.schema if champion else None)
    # On large data only the windows stay in memory
    splits = split(frame, config)
    rows = len(frame)
    del raw, frame
    preprocessor, schema, calendar = fit_features(splits, schema, config)
    schema_record = {**schema.as_dict(), "calendar_probe": asdict(calendar) if calendar else None}
    log_values(
        settings,
        run_id,
        params={"rows": rows, "windows": splits.describe(), "metric": config.metric.name},
        tags={"data_sha256": data_sha256, "data_rows": str(data_rows)},
        artifacts={"lineage/windows.json": splits.describe(), "lineage/schema.json": schema_record},
    )
    return PreparedData(splits, schema, preprocessor, data_sha256)


def train_models(
    settings: Settings, config: PipelineConfig, run_id: str, data: PreparedData
) -> TrainedModels:
    """Baseline; candidates tuned on recent rows against validation; the best refit on all training data."""
    splits, schema = data.splits, data.schema
    reference = log_reference_sample.submit(
        settings,
        run_id,
        splits.train_full,
        config.mlflow.reference_rows,
        config.tuning.seed,
        summary_kinds(schema, config.task),
    )
    baseline_on_train = train_baseline(splits.train, schema, config.task)
    tuning_rows = TuningData(splits.train, splits.validation, data.preprocessor, schema)
    started = time.perf_counter()
    reach(settings, "tuning")
    results = tune_candidates(tuning_rows, config)
    tuning_seconds = time.perf_counter() - started
    trials_logged = log_trials.submit(settings, run_id, config.metric.name, results)
    best = best_of(results, config.greater_is_better)
    model = refit_best(
        splits.train_full,
        data.preprocessor,
        schema,
        config.task,
        best.candidate,
        best.best_params,
        config.tuning.seed,
    )
    return TrainedModels(results, best, model, baseline_on_train, trials_logged, reference, tuning_seconds)


def register_challenger(
    settings: Settings,
    config: PipelineConfig,
    run_id: str,
    data: PreparedData,
    trained: TrainedModels,
    flow_run_id: str | None,
) -> tuple[PrefectFuture, PrefectFuture]:
    """Start registering the final model (every one is a new version) and drawing its plots."""
    splits = data.splits
    trained_until = str(splits.validation[config.time_column].max()) if config.time_column else ""
    version_tags = {
        "data_sha256": data.data_sha256,
        "config_sha256": config.fingerprint(),
        "prefect_flow_run_id": flow_run_id or "",
        "reference_artifact": trained.reference.result(),
        "trained_until": trained_until,
    }
    registered = register_model.submit(
        settings, run_id, trained.model, config.name, splits.train_full, data.schema, tags=version_tags
    )
    plots = log_plots.submit(settings, run_id, trained.model, splits.test, data.schema, config.task)
    return registered, plots


def evaluate_and_promote(
    settings: Settings,
    config: PipelineConfig,
    run_id: str,
    data: PreparedData,
    trained: TrainedModels,
    champion: ChampionInfo | None,
    champion_scored: PrefectFuture,
    flow_run_id: str | None,
    trigger: str,
) -> RetrainSummary:
    """Score the model once on the test window beside baseline and champion, decide, promote last."""
    splits, schema, metric = data.splits, data.schema, config.metric.name
    registered, plots = register_challenger(settings, config, run_id, data, trained, flow_run_id)
    baseline = train_baseline(splits.train_full, schema, config.task)
    metrics = evaluate(trained.model, splits.test, schema, config.task)
    baseline_metrics = evaluate(baseline, splits.test, schema, config.task)
    champion_metrics = champion_scored.result()
    baseline_validation = evaluate(trained.baseline_on_train, splits.validation, schema, config.task)
    board = leaderboard(trained.results, baseline_validation, metric, config.greater_is_better)
    decision = compare(config, metrics, baseline_metrics, champion_metrics)
    version = registered.result()
    version_tags = {f"test_{metric}": f"{metrics[metric]:.6g}", "trigger": trigger[:5000]}
    decision = promote(settings, config.name, version, decision, champion, tags=version_tags)
    log_values(
        settings,
        run_id,
        params={"best_candidate": trained.best.candidate, "best_params": trained.best.best_params},
        metrics={
            "test": metrics,
            "baseline_test": baseline_metrics,
            "champion_test": champion_metrics or {},
            "tuning_seconds": trained.tuning_seconds,
        },
        tags={"decision": "promoted" if decision.promote else "rejected", "model_version": version},
        artifacts={"leaderboard.json": board},
    )
    summary = RetrainSummary(
        promoted=decision.promote,
        model_name=config.name,
        model_version=version,
        decision=decision.reason,
        metrics=metrics,
        baseline_metrics=baseline_metrics,
        champion_metrics=champion_metrics,
        mlflow_run_id=run_id,
        prefect_flow_run_id=flow_run_id,
        metric=metric,
        champion_version=champion.version if champion else None,
        best_candidate=trained.best.candidate,
        leaderboard=board,
        windows=splits.describe(),
        plots=plots.result(),
        trigger=trigger,
        trials=trained.trials_logged.result(),
        tuning_seconds=round(trained.tuning_seconds, 3),
    )
    publish_summary(summary, links=run_links(settings, run_id, config.name, version))
    return summary


def unchanged_summary(
    settings: Settings,
    config: PipelineConfig,
    run_id: str,
    champion: ChampionInfo,
    reason: str,
    flow_run_id: str | None,
    trigger: str,
) -> RetrainSummary:
    """The run that would train the champion again: nothing trained or registered, and why."""
    log_values(settings, run_id, tags={"decision": "identical", "model_version": champion.version})
    summary = RetrainSummary(
        promoted=False,
        model_name=config.name,
        model_version=champion.version,
        decision=reason,
        metrics={},
        baseline_metrics={},
        champion_metrics=None,
        mlflow_run_id=run_id,
        prefect_flow_run_id=flow_run_id,
        registered=False,
        metric=config.metric.name,
        champion_version=champion.version,
        trigger=trigger,
    )
    publish_summary(summary, links=run_links(settings, run_id, config.name, champion.version))
    return summary
