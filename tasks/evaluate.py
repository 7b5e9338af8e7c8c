"""Stage 8: metrics on a window, plots, and the leaderboard."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn import metrics as skm
from sklearn.pipeline import Pipeline

from tasks.errors import io_edge_options
from tasks.tracking import client
from tasks.validate import DataSchema


def regression_metrics(y_true: pd.Series, y_pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, R² and MAPE (MAPE over rows whose actual value is not zero)."""
    nonzero = np.asarray(y_true) != 0
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y_true, y_pred))),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "r2": float(skm.r2_score(y_true, y_pred)),
        "mape": float(
            skm.mean_absolute_percentage_error(np.asarray(y_true)[nonzero], np.asarray(y_pred)[nonzero])
        )
        if nonzero.any()
        else float("nan"),
    }


def classification_metrics(
    y_true: pd.Series, y_pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray
) -> dict[str, float]:
    """Accuracy, macro F1, ROC AUC (one-vs-rest when multi-class) and log loss."""
    result = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "f1_macro": float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "roc_auc": float("nan"),
        "log_loss": float("nan"),
    }
    if proba is not None:
        result["log_loss"] = float(skm.log_loss(y_true, proba, labels=classes))
        if len(np.unique(y_true)) > 1:
            scores = proba[:, 1] if len(classes) == 2 else proba
            result["roc_auc"] = float(
                skm.roc_auc_score(y_true, scores, multi_class="ovr", labels=classes)
                if len(classes) > 2
                else skm.roc_auc_score(y_true, scores)
            )
    return result


def score(model: Pipeline, frame: pd.DataFrame, schema: DataSchema, task_kind: str) -> dict[str, float]:
    """All metrics of `model` on `frame` (which must hold the target)."""
    features, y_true = frame[schema.features], frame[schema.target]
    predictions = model.predict(features)
    if task_kind == "regression":
        return regression_metrics(y_true, predictions)
    proba = model.predict_proba(features) if hasattr(model, "predict_proba") else None
    return classification_metrics(y_true, predictions, proba, model.classes_)


def is_better(candidate: float, reference: float, greater_is_better: bool) -> bool:
    """Whether `candidate` beats `reference` on a metric with the given direction."""
    return candidate > reference if greater_is_better else candidate < reference


PLOT_ROWS = 20_000


def plot_predictions(
    model: Pipeline, frame: pd.DataFrame, schema: DataSchema, task_kind: str, out_dir: Path
) -> list[Path]:
    """Predicted vs actual and residuals (regression) or confusion matrix and ROC (classification),
    on at most `PLOT_ROWS` rows of `frame`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    # A plot of more points shows nothing more; drawing them takes seconds on large data.
    frame = frame.sample(n=min(PLOT_ROWS, len(frame)), random_state=0)
    features, y_true = frame[schema.features], frame[schema.target]
    predictions = model.predict(features)
    paths: list[Path] = []
    if task_kind == "regression":
        figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
        left.scatter(y_true, predictions, s=4, alpha=0.4)
        bounds = [min(y_true.min(), predictions.min()), max(y_true.max(), predictions.max())]
        left.plot(bounds, bounds, color="black", linewidth=1, label="perfect")
        left.set(xlabel=f"actual {schema.target}", ylabel="predicted", title="Predicted vs actual (test)")
        left.legend()
        right.hist(y_true - predictions, bins=60)
        right.set(xlabel="residual (actual - predicted)", ylabel="rows", title="Residuals (test)")
        paths.append(out_dir / "predicted_vs_actual.png")
    else:
        figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
        skm.ConfusionMatrixDisplay.from_predictions(y_true, predictions, ax=left, colorbar=False)
        left.set_title("Confusion matrix (test)")
        if hasattr(model, "predict_proba") and len(model.classes_) == 2:
            skm.RocCurveDisplay.from_predictions(
                y_true, model.predict_proba(features)[:, 1], pos_label=model.classes_[1], ax=right
            )
        right.set_title("ROC (test)")
        paths.append(out_dir / "confusion_matrix_roc.png")
    figure.tight_layout()
    figure.savefig(paths[0], dpi=110)
    plt.close(figure)
    return paths


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(model: Pipeline, frame: pd.DataFrame, schema: DataSchema, task_kind: str) -> dict[str, float]:
    """Score a fitted model on one window (the test window for the final model)."""
    return score(model, frame, schema, task_kind)


@task(name="log-plots", **io_edge_options())
def log_plots(
    run_id: str, model: Pipeline, test: pd.DataFrame, schema: DataSchema, task_kind: str
) -> list[str]:
    """Draw the test-window plots and log them under `plots/` of the run."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = plot_predictions(model, test, schema, task_kind, Path(tmp))
        mlflow_client = client()
        for path in paths:
            mlflow_client.log_artifact(run_id, str(path), "plots")
    return [f"plots/{p.name}" for p in paths]
