"""The retraining flow: wiring only. The logic lives in `tasks/`."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from tasks.config import PipelineConfig
from tasks.evaluate import evaluate, log_plots
from tasks.features import fit_features
from tasks.ingest import columns_to_read, fingerprint, ingest
from tasks.registry import compare, find_champion, promote, register_model, score_champion
from tasks.report import leaderboard, publish_summary
from tasks.split import split
from tasks.tracking import (
    fail_run_on_error,
    finish_run,
    log_reference_sample,
    log_values,
    start_run,
)
from tasks.train import refit_best, train_baseline
from tasks.tune import best_of, log_trials, tune_candidates
from tasks.validate import validate


@flow(name="retrain", log_prints=True)
def retrain_flow(config: PipelineConfig, trigger: str = "manual") -> dict[str, Any]:
    """Train, evaluate and maybe promote a new model version for `config.name`.

    Args:
        config: The validated pipeline config.
        trigger: Why this run started (manual, schedule, or the drift alert's reasons).

    Returns:
        The run summary: promotion, metrics of challenger, baseline and champion, and run ids.
    """
    flow_run_id = str(flow_run.id) if flow_run.id else None
    run_id = start_run(
        config,
        config.experiment_name,
        run_name=f"retrain-{config.name}",
        tags={"prefect_flow_run_id": flow_run_id or "", "trigger": trigger[:5000]},
    )
    with fail_run_on_error(run_id):
        # Ingest and validate against the champion's schema
        champion = find_champion(config.name)
        raw = ingest(config.data, columns_to_read(config))
        data_sha256, data_rows = fingerprint(raw), len(raw)
        frame, schema = validate(raw, config, champion.schema if champion else None)

        # Split by time and fit the features on the training window; on large data only the
        # windows stay in memory
        splits = split(frame, config)
        rows = len(frame)
        del raw, frame
        preprocessor = fit_features(splits, schema, config.tuning.subset_rows)
        log_values(
            run_id,
            params={"rows": rows, "windows": splits.describe(), "metric": config.metric.name},
            tags={"data_sha256": data_sha256, "data_rows": str(data_rows)},
            artifacts={"lineage/windows.json": splits.describe(), "lineage/schema.json": schema.as_dict()},
        )

        # I/O that needs only the windows runs in threads while the models train
        champion_scored = score_champion.submit(champion, splits.test, schema, config.task)
        reference = log_reference_sample.submit(
            run_id, splits.train_full, config.mlflow.reference_rows, config.tuning.seed
        )

        # Baseline; candidates tuned on recent rows against validation (trials fan out through
        # the tuning task runner), then the best refit on all training data
        baseline_on_train = train_baseline(splits.train, schema, config.task)
        results = tune_candidates(splits.train, splits.validation, preprocessor, schema, config)
        trials_logged = [log_trials.submit(run_id, config.metric.name, result) for result in results]
        best = best_of(results, config.greater_is_better)
        model = refit_best(
            splits.train_full,
            preprocessor,
            schema,
            config.task,
            best.candidate,
            best.best_params,
            config.tuning.seed,
        )
        # Registration (every final model is a new version) and plots run beside the evaluation
        registered = register_model.submit(
            run_id,
            model,
            config.name,
            splits.train_full,
            schema,
            tags={
                "data_sha256": data_sha256,
                "config_sha256": config.fingerprint(),
                "prefect_flow_run_id": flow_run_id or "",
                "reference_artifact": reference,
                "trained_until": str(splits.validation[config.time_column].max())
                if config.time_column
                else "",
            },
        )
        plots = log_plots.submit(run_id, model, splits.test, schema, config.task)
        baseline = train_baseline(splits.train_full, schema, config.task)

        # Evaluate once on the test window, with the baseline and the champion on the same rows
        metrics = evaluate(model, splits.test, schema, config.task)
        baseline_metrics = evaluate(baseline, splits.test, schema, config.task)
        champion_metrics = champion_scored.result()
        board = leaderboard(
            results,
            evaluate(baseline_on_train, splits.validation, schema, config.task),
            config.metric.name,
            config.greater_is_better,
        )
        log_values(
            run_id,
            params={"best_candidate": best.candidate, "best_params": best.best_params},
            metrics={
                "test": metrics,
                "baseline_test": baseline_metrics,
                "champion_test": champion_metrics or {},
            },
            artifacts={"leaderboard.json": board},
        )

        # Compare, and promote last
        decision = compare(config, metrics, baseline_metrics, champion_metrics)
        version = registered.result()
        decision = promote(
            config.name,
            version,
            decision,
            champion,
            tags={f"test_{config.metric.name}": f"{metrics[config.metric.name]:.6g}"},
        )
        summary = {
            "promoted": decision.promote,
            "model_name": config.name,
            "model_version": version,
            "decision": decision.reason,
            "metric": config.metric.name,
            "metrics": metrics,
            "baseline_metrics": baseline_metrics,
            "champion_metrics": champion_metrics,
            "champion_version": champion.version if champion else None,
            "best_candidate": best.candidate,
            "leaderboard": board,
            "windows": splits.describe(),
            "plots": plots.result(),
            "mlflow_run_id": run_id,
            "prefect_flow_run_id": flow_run_id,
            "trigger": trigger,
        }
        log_values(
            run_id,
            tags={"decision": "promoted" if decision.promote else "rejected", "model_version": version},
        )
        publish_summary(board, summary)
        summary["trials"] = sum(future.result() for future in trials_logged)
    finish_run(run_id)
    return summary
