"""The batch-scoring flow: wiring only. The logic lives in `core/scoring.py`, the edges in `tasks/`."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from core.config import DataConfig, PipelineConfig
from core.results import ScoreSummary
from core.scoring import (
    PREDICTION,
    full_precision,
    key_frame,
    output_target,
    prediction_stats,
    scoring_columns,
)
from core.tables import fingerprint
from tasks.ingest import ingest
from tasks.output import write_predictions
from tasks.redaction import protect_secrets
from tasks.registry import find_version, predict_batch
from tasks.settings import Settings, run_config
from tasks.tracking import log_values, tracked_run
from tasks.validate import validate


@flow(name="score")
def score_flow(
    config: PipelineConfig | str,
    out: str | None = None,
    data: DataConfig | None = None,
    version: str | None = None,
    out_table: str | None = None,
) -> ScoreSummary:
    """Score a batch with the champion (or `version`) and write the predictions to `out`.

    Args:
        config: The validated pipeline config, or the path of its file (read on the worker).
        out: A .csv / .parquet path or a SQLAlchemy URL (default: `score.out`).
        data: The rows to score (default: the config's source).
        version: A registered version number (default: the `champion` alias).
        out_table: The table written at a SQL `out` (default: `score.out_table`).

    Returns:
        The version used, the rows and fingerprint of the batch, where the predictions went and
        the statistics of their distribution.
    """
    config = run_config(config)
    protect_secrets(config)
    settings = Settings.from_environment()
    target = output_target(out, config)
    model = find_version(settings, config.name, version)
    schema = model.input_schema(config.target, config.time_column)

    # The batch, with the same checks as training (target optional)
    raw = ingest(full_precision(data or config.data), scoring_columns(config), settings)
    batch, _ = validate(raw, config, model.schema, require_target=False)
    keys = key_frame(raw, config.key_columns)
    data_sha256 = fingerprint(raw)

    # Predictions, written all or nothing, and their record in MLflow
    flow_run_id = str(flow_run.id) if flow_run.id else None
    tags = {"prefect_flow_run_id": flow_run_id or "", "model_version": model.version}
    with tracked_run(settings, config, config.scoring_experiment, f"score-{config.name}", tags) as run_id:
        predictions = predict_batch(settings, model, batch, keys, schema)
        stats = prediction_stats(predictions[PREDICTION], config.task)
        written = write_predictions(predictions, target, out_table or config.score.out_table)
        log_values(
            settings,
            run_id,
            params={"out": written, "rows": len(predictions)},
            metrics={"rows": len(predictions)},
            tags={"data_sha256": data_sha256, "data_rows": str(len(raw)), "model_name": config.name},
            artifacts={"predictions/stats.json": stats},
        )
    return ScoreSummary(
        model_name=config.name,
        model_version=model.version,
        rows=len(predictions),
        data_sha256=data_sha256,
        out=written,
        columns=list(predictions.columns),
        prediction_stats=stats,
        mlflow_run_id=run_id,
        prefect_flow_run_id=flow_run_id,
    )
