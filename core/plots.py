"""Plots of a model's predictions on a window: predicted vs actual, residuals, confusion matrix, ROC.

`plot_table` predicts (it needs the model); `draw_plots` draws from that table alone, with
matplotlib, so a helper process that has only the table can draw them (`tasks.plot_helper`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the helper process that draws imports only this module's drawing side
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from core.validation import DataSchema

PLOT_ROWS = 20_000


@dataclass(frozen=True)
class PlotTable:
    """What the plots show, as plain JSON values: actual and predicted values of sampled rows.

    Attributes:
        task_kind: "regression" or "classification".
        target: The target column's name (axis labels).
        actual: The actual values (class labels as text).
        predicted: The model's predictions (class labels as text).
        positive_scores: For a binary classifier, its probability of its second class.
        labels: The classifier's classes in its own order (numbers in numeric order), as text.
    """

    task_kind: str
    target: str
    actual: list[Any]
    predicted: list[Any]
    positive_scores: list[float] | None = None
    labels: list[str] | None = None


def plot_table(model: Pipeline, frame: pd.DataFrame, schema: DataSchema, task_kind: str) -> PlotTable:
    """The model's predictions on at most `PLOT_ROWS` rows of `frame`, beside the actual values."""
    # A plot of more points shows nothing more; drawing them takes seconds on large data.
    frame = frame.sample(n=min(PLOT_ROWS, len(frame)), random_state=0)
    features, actual = frame[schema.model_inputs], frame[schema.target]
    predicted = model.predict(features)
    if task_kind == "regression":
        return PlotTable(
            task_kind, schema.target, actual.astype(float).tolist(), predicted.astype(float).tolist()
        )
    scores = None
    if hasattr(model, "predict_proba") and len(model.classes_) == 2:
        scores = model.predict_proba(features)[:, 1].tolist()
    as_text = [str(label) for label in actual], [str(label) for label in predicted]
    labels = [str(label) for label in model.classes_] if hasattr(model, "classes_") else None
    return PlotTable(task_kind, schema.target, *as_text, scores, labels)


def draw_plots(table: PlotTable, out_dir: Path) -> list[Path]:
    """Predicted vs actual and residuals (regression) or confusion matrix and ROC (classification),
    as one PNG in `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    if table.task_kind == "regression":
        actual, predicted = np.asarray(table.actual), np.asarray(table.predicted)
        left.scatter(actual, predicted, s=4, alpha=0.4)
        bounds = [min(actual.min(), predicted.min()), max(actual.max(), predicted.max())]
        left.plot(bounds, bounds, color="black", linewidth=1, label="perfect")
        left.set(xlabel=f"actual {table.target}", ylabel="predicted", title="Predicted vs actual (test)")
        left.legend()
        right.hist(actual - predicted, bins=60)
        right.set(xlabel="residual (actual - predicted)", ylabel="rows", title="Residuals (test)")
        path = out_dir / "predicted_vs_actual.png"
    else:
        from sklearn import metrics as skm

        skm.ConfusionMatrixDisplay.from_predictions(
            table.actual, table.predicted, labels=table.labels, ax=left, colorbar=False
        )
        left.set_title("Confusion matrix (test)")
        if table.positive_scores is not None:
            skm.RocCurveDisplay.from_predictions(
                table.actual, table.positive_scores, pos_label=table.labels[1], ax=right
            )
        right.set_title("ROC (test)")
        path = out_dir / "confusion_matrix_roc.png"
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return [path]
