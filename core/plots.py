"""Plots of a model's predictions on a window: predicted vs actual, residuals, confusion matrix, ROC."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn import metrics as skm
from sklearn.pipeline import Pipeline

from core.validation import DataSchema

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
    features, y_true = frame[schema.model_inputs], frame[schema.target]
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
