"""Batch scoring: which columns to read, the predictions table, and the statistics of its predictions.

The statistics (quantiles and a histogram for regression, class shares for classification) are
what later checks compare a batch's predictions with (prediction drift).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from core.config import DataConfig, PipelineConfig
from core.errors import BadInputError, DataError
from core.tables import PARQUET_SUFFIXES, ColumnFilter, columns_to_read
from core.validation import DataSchema

PREDICTION = "prediction"
PROBABILITY_PREFIX = "probability_"
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
HISTOGRAM_BINS = 20
OUTPUT_FIX = (
    "Pass --out a path ending in .csv or .parquet, or a SQLAlchemy URL (sqlite:///scores.db, "
    "postgresql://...) with --out-table."
)


def output_kind(out: str) -> str:
    """`csv`, `parquet` or `sql`: how `out` is written, told by its suffix or URL scheme.

    Raises:
        BadInputError: Neither a known file suffix nor a database URL.
    """
    if "://" in out and not out.startswith(("http://", "https://", "file://")):
        return "sql"
    suffix = (
        "" if out.startswith(("http://", "https://")) else Path(out.removeprefix("file://")).suffix.lower()
    )
    if suffix == ".csv":
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise BadInputError(
        f"The output {out!r} is neither a .csv or .parquet file nor a database URL", OUTPUT_FIX
    )


def output_target(out: str | None, config: PipelineConfig) -> str:
    """Where predictions go: `out`, else `score.out`; checked before anything is read.

    Raises:
        BadInputError: Neither is set, or the target is neither a known file type nor a database URL.
    """
    target = out or config.score.out
    if not target:
        raise BadInputError(
            "No output was given for the predictions", "Pass --out PATH (or set score.out in the config)."
        )
    output_kind(target)
    return target


def full_precision(data: DataConfig) -> DataConfig:
    """The source read in the types `pd.read_csv` gives (no float32), so the predictions equal those
    of any MLflow client scoring the same file."""
    return data.model_copy(update={"compact_dtypes": False})


def scoring_columns(config: PipelineConfig) -> ColumnFilter:
    """The training columns of the config plus its key columns, which may be dropped features."""
    base = columns_to_read(config)
    keys = tuple(config.key_columns)
    keep = None if base.keep is None else (*base.keep, *keys)
    return ColumnFilter(keep, base.drop, (*base.protect, *keys))


def key_frame(raw: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The key columns of the rows as read (one row per input row, in order).

    Raises:
        DataError: A key column is missing or is named like an output column.
    """
    missing = [c for c in keys if c not in raw.columns]
    if missing:
        raise DataError(
            f"key column{'s' if len(missing) > 1 else ''} {missing} not in the data "
            f"(it has {list(raw.columns)[:20]})",
            "Fix score.key_columns in the config, or score data that has those columns.",
        )
    clashing = [c for c in keys if c == PREDICTION or c.startswith(PROBABILITY_PREFIX)]
    if clashing:
        raise DataError(
            f"key columns {clashing} clash with the output columns "
            f"({PREDICTION}, {PROBABILITY_PREFIX}<class>)",
            "Rename those key columns or leave them out of score.key_columns.",
        )
    return raw[keys].reset_index(drop=True)


def predictions_table(
    model: Pipeline, batch: pd.DataFrame, schema: DataSchema, keys: pd.DataFrame
) -> pd.DataFrame:
    """The key columns, `prediction`, and for a classifier one `probability_<class>` column per class.

    Args:
        model: The fitted pipeline.
        batch: The validated rows (same order as `keys`).
        schema: The model's input schema.
        keys: The key columns of the same rows.
    """
    features = batch[schema.model_inputs]
    table = keys.reset_index(drop=True).copy()
    table[PREDICTION] = model.predict(features)
    if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
        proba = model.predict_proba(features)
        for index, label in enumerate(model.classes_):
            table[f"{PROBABILITY_PREFIX}{label}"] = proba[:, index]
    return table


def prediction_stats(predictions: pd.Series, task_kind: str) -> dict[str, object]:
    """The distribution of a batch's predictions: quantiles and a histogram, or class shares."""
    rows = int(len(predictions))
    if task_kind == "classification":
        shares = predictions.astype(str).value_counts(normalize=True).sort_index()
        return {"task": task_kind, "rows": rows, "class_shares": {k: float(v) for k, v in shares.items()}}
    values = predictions.to_numpy(dtype="float64")
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
    return {
        "task": task_kind,
        "rows": rows,
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "quantiles": {str(q): float(np.quantile(values, q)) for q in QUANTILES},
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }
