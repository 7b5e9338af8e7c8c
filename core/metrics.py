"""Metrics: how well a fitted model does on a window, and which score is better."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.pipeline import Pipeline

from core.validation import DataSchema


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
    features, y_true = frame[schema.model_inputs], frame[schema.target]
    predictions = model.predict(features)
    if task_kind == "regression":
        return metrics_of(task_kind, y_true, predictions)
    proba = model.predict_proba(features) if hasattr(model, "predict_proba") else None
    return metrics_of(task_kind, y_true, predictions, proba, model.classes_)


def metrics_of(
    task_kind: str,
    y_true: pd.Series,
    predictions: np.ndarray,
    proba: np.ndarray | None = None,
    classes: np.ndarray | None = None,
) -> dict[str, float]:
    """All metrics of predictions (with class probabilities for classifiers) against the labels."""
    if task_kind == "regression":
        return regression_metrics(y_true, predictions)
    return classification_metrics(y_true, predictions, proba, classes)


def is_better(candidate: float, reference: float, greater_is_better: bool) -> bool:
    """Whether `candidate` beats `reference` on a metric with the given direction."""
    return candidate > reference if greater_is_better else candidate < reference
