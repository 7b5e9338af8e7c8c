"""The model-aware drift trigger: would a model refreshed on a batch's older rows beat the champion?

Covariate drift alone says little about whether retraining pays: a year of seasonal training data
makes every week look drifted, while the champion already knows every season. With labels, the
trigger asks the question retraining answers. It cuts the labelled batch in time (all of it, then
its newest half, quarter ..., so a late change is seen soon), refreshes the champion on each older
half in three cheap ways (its output recalibrated on those rows; the champion corrected by a small
booster fitted to its errors there, which sees a change local to some region of the features; and
its own recipe refitted on them alone), and scores each against the champion on the newer half.
Retraining helps when a challenger is better with the configured confidence (a paired moving-block
bootstrap over the newer rows, so neighbouring hours do not count as independent evidence) by at
least `drift.min_gain`. Every challenger sees only the older rows, as a retrain sees only the past.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline

from core.config import PipelineConfig
from core.validation import DataSchema

RESAMPLES = 400
# The challengers fitted on each suffix of the batch, cheapest first.
CHALLENGERS = ("recalibrated", "corrected", "refitted")
# The correcting booster needs this many older rows: fewer leave its early stopping nothing to hold
# out, and its errors would be noise.
CORRECTION_MIN_ROWS = 500
# The probe looks at the batch's newest rows only: enough to see a change, and its refit stays cheap
# on a million-row batch.
PROBE_ROWS = 20_000
_EPS = 1e-12


@dataclass(frozen=True)
class GainProbe:
    """The retrain-gain probe on one labelled batch: the better challenger against the champion."""

    metric: str
    challenger: str
    fit_rows: int
    scored_rows: int
    champion_metric: float
    challenger_metric: float
    gain: float
    gain_low: float
    confidence: float
    min_gain: float
    significant: bool

    def reason_line(self) -> str:
        """The probe's line in the verdict's reasons."""
        verdict = "retraining helps" if self.significant else "retraining would not help"
        return (
            f"retrain-gain probe: {verdict}: a {self.challenger} challenger fitted on "
            f"{self.fit_rows} older rows of the batch scores {self.metric} "
            f"{self.challenger_metric:.4g} against the champion's {self.champion_metric:.4g} "
            f"on the {self.scored_rows} newer rows "
            f"(gain {self.gain:+.1%}, {self.confidence:.0%} lower bound {self.gain_low:+.1%}, "
            f"needed > {self.min_gain:+.1%})"
        )


@dataclass(frozen=True)
class Predictions:
    """What a model says about some rows: labels or values, and class probabilities for classifiers."""

    values: np.ndarray
    proba: np.ndarray | None = None


def split_in_time(
    batch: pd.DataFrame, time_column: str | None, max_rows: int = PROBE_ROWS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The older and the newer half of the batch's newest `max_rows` rows (by `time_column`, else
    by row order)."""
    ordered = batch
    if time_column and time_column in batch:
        ordered = batch.iloc[np.argsort(pd.to_datetime(batch[time_column]).to_numpy(), kind="stable")]
    ordered = ordered.iloc[-max_rows:]
    half = len(ordered) // 2
    return ordered.iloc[:half], ordered.iloc[half:]


def predict(model: Pipeline, frame: pd.DataFrame, schema: DataSchema, task_kind: str) -> Predictions:
    """The model's predictions (and probabilities for classifiers) on `frame`."""
    features = frame[schema.model_inputs]
    if task_kind == "regression":
        return Predictions(np.asarray(model.predict(features), dtype=float))
    proba = model.predict_proba(features) if hasattr(model, "predict_proba") else None
    return Predictions(np.asarray(model.predict(features)), proba)


def in_champion_classes(proba_known: np.ndarray, known: np.ndarray, classes: np.ndarray) -> Predictions:
    """A challenger's probabilities over the classes it saw (`known`), laid out in the champion's
    `classes` (a class it never saw gets 0), and its labels."""
    proba = np.zeros((len(proba_known), len(classes)))
    for j, label in enumerate(known):
        proba[:, int(np.flatnonzero(classes == label)[0])] = proba_known[:, j]
    return Predictions(classes[np.argmax(proba, axis=1)], proba)


def recalibrate(
    champion_older: Predictions,
    champion_newer: Predictions,
    y_older: np.ndarray,
    classes: np.ndarray | None,
) -> Predictions | None:
    """The champion's output refitted to the older rows' labels, applied to the newer rows.

    Regression: a line from prediction to target. Classification: a logistic regression on the
    champion's log-probabilities. None when the older rows cannot fit one (a single class).
    """
    if classes is None:
        line = LinearRegression().fit(champion_older.values.reshape(-1, 1), y_older)
        return Predictions(line.predict(champion_newer.values.reshape(-1, 1)))
    if champion_older.proba is None or champion_newer.proba is None or len(np.unique(y_older)) < 2:
        return None
    logits = np.log(np.clip(champion_older.proba, _EPS, 1.0))
    calibrator = LogisticRegression(max_iter=1000).fit(logits, y_older)
    proba_known = calibrator.predict_proba(np.log(np.clip(champion_newer.proba, _EPS, 1.0)))
    return in_champion_classes(proba_known, calibrator.classes_, classes)


def correction_booster(
    task_kind: str, seed: int
) -> HistGradientBoostingRegressor | HistGradientBoostingClassifier:
    """The small, early-stopped booster that corrects the champion: shallow trees, large leaves."""
    settings = {
        "max_iter": 100,
        "max_leaf_nodes": 15,
        "min_samples_leaf": 40,
        "early_stopping": True,
        "validation_fraction": 0.2,
        "n_iter_no_change": 10,
        "random_state": seed,
    }
    if task_kind == "regression":
        return HistGradientBoostingRegressor(**settings)
    return HistGradientBoostingClassifier(**settings)


def correct(
    champion: Pipeline,
    older: pd.DataFrame,
    newer: pd.DataFrame,
    champion_older: Predictions,
    champion_newer: Predictions,
    schema: DataSchema,
    task_kind: str,
    seed: int,
) -> Predictions | None:
    """The champion plus a booster of its errors on the older rows, applied to the newer rows.

    The booster reads the champion's own preprocessed features. Regression: it learns the
    champion's residuals, added to its prediction. Classification: it learns the label from the
    features and the champion's log-probabilities. None when the champion is not a preprocessing
    pipeline, the older rows are fewer than `CORRECTION_MIN_ROWS` or hold a single class.
    """
    y = older[schema.target].to_numpy()
    if len(older) < CORRECTION_MIN_ROWS or not isinstance(champion, Pipeline) or len(champion.steps) < 2:
        return None
    features_older = np.asarray(champion[:-1].transform(older[schema.model_inputs]), dtype=float)
    features_newer = np.asarray(champion[:-1].transform(newer[schema.model_inputs]), dtype=float)
    booster = correction_booster(task_kind, seed)
    if task_kind == "regression":
        booster.fit(features_older, y.astype(float) - champion_older.values)
        return Predictions(champion_newer.values + booster.predict(features_newer))
    if champion_older.proba is None or champion_newer.proba is None or len(np.unique(y)) < 2:
        return None
    classes = np.asarray(champion.classes_)

    def with_logits(features: np.ndarray, proba: np.ndarray) -> np.ndarray:
        return np.hstack([features, np.log(np.clip(proba, _EPS, 1.0))])

    booster.fit(with_logits(features_older, champion_older.proba), y)
    proba_known = booster.predict_proba(with_logits(features_newer, champion_newer.proba))
    return in_champion_classes(proba_known, booster.classes_, classes)


def refit(
    champion: Pipeline, older: pd.DataFrame, newer: pd.DataFrame, schema: DataSchema, task_kind: str
) -> Predictions | None:
    """The champion's own recipe (preprocessing, algorithm, parameters) fitted on the older rows alone."""
    y = older[schema.target]
    if task_kind == "classification" and y.nunique() < 2:
        return None
    model = clone(champion).fit(older[schema.model_inputs], y)
    if task_kind == "classification" and len(model.classes_) != len(champion.classes_):
        return None  # fewer classes than the champion: probabilities do not line up
    return predict(model, newer, schema, task_kind)


def block_indices(rows: int, resamples: int, seed: int) -> np.ndarray:
    """Moving-block bootstrap positions (`resamples` x `rows`), blocks of about sqrt(rows) in time order."""
    block = max(1, round(np.sqrt(rows)))
    blocks = -(-rows // block)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, rows - block + 1, size=(resamples, blocks))
    return (starts[:, :, None] + np.arange(block)).reshape(resamples, -1)[:, :rows]


def metric_samples(
    metric: str, y: np.ndarray, predictions: Predictions, classes: np.ndarray | None, index: np.ndarray
) -> np.ndarray:
    """The metric on each resample (rows of `index`), vectorised."""
    p = predictions.values
    if metric in {"rmse", "mae", "mape", "r2"}:
        y, p = y.astype(float), p.astype(float)
        if metric == "rmse":
            return np.sqrt(((y - p) ** 2)[index].mean(axis=1))
        if metric == "mae":
            return np.abs(y - p)[index].mean(axis=1)
        if metric == "mape":
            nonzero = y != 0
            ape = np.where(nonzero, np.abs(y - p) / np.where(nonzero, np.abs(y), 1.0), 0.0)
            return ape[index].sum(axis=1) / np.maximum(nonzero[index].sum(axis=1), 1)
        yy = y[index]
        total = ((yy - yy.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        return 1.0 - ((yy - p[index]) ** 2).sum(axis=1) / np.maximum(total, _EPS)
    if metric == "accuracy":
        return (y == p)[index].mean(axis=1)
    if metric == "f1_macro":
        scores, present = np.zeros(index.shape[0]), np.zeros(index.shape[0])
        for label in classes if classes is not None else np.unique(y):
            truth, said = (y == label)[index], (p == label)[index]
            tp = (truth & said).sum(axis=1)
            wrong = (truth ^ said).sum(axis=1)
            seen = (tp + wrong) > 0
            scores += np.where(seen, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0)
            present += seen
        return scores / np.maximum(present, 1)
    if predictions.proba is None or classes is None:
        return np.full(index.shape[0], np.nan)
    position = np.searchsorted(classes, y) if np.all(np.sort(classes) == classes) else None
    if position is None:
        position = np.array([int(np.flatnonzero(classes == v)[0]) for v in y])
    if metric == "log_loss":
        losses = -np.log(np.clip(predictions.proba[np.arange(len(y)), position], _EPS, 1.0))
        return losses[index].mean(axis=1)
    from sklearn.metrics import roc_auc_score  # roc_auc: no vectorised form, one call per resample

    scores = predictions.proba[:, 1] if len(classes) == 2 else predictions.proba
    values = []
    for rows in index:
        try:
            values.append(
                roc_auc_score(y[rows], scores[rows], multi_class="ovr", labels=classes)
                if len(classes) > 2
                else roc_auc_score(y[rows], scores[rows])
            )
        except ValueError:  # a resample with one class
            values.append(np.nan)
    return np.asarray(values)


def relative_gain(champion: np.ndarray | float, challenger: np.ndarray | float, greater: bool) -> np.ndarray:
    """How much better the challenger is, relative to the champion (> 0: better)."""
    champion, challenger = np.asarray(champion, dtype=float), np.asarray(challenger, dtype=float)
    change = (challenger - champion) if greater else (champion - challenger)
    return change / np.maximum(np.abs(champion), _EPS)


@dataclass(frozen=True)
class ChallengerEvidence:
    """One challenger against the champion on the newer rows, with the gain of every resample."""

    name: str
    fit_rows: int
    scored_rows: int
    champion_metric: float
    challenger_metric: float
    gain: float
    gain_samples: np.ndarray


@dataclass(frozen=True)
class GainEvidence:
    """What the probe measured on one batch, before any confidence level is applied."""

    metric: str
    challengers: tuple[ChallengerEvidence, ...]


def compare(
    name: str,
    metric: str,
    greater: bool,
    y: np.ndarray,
    champion: Predictions,
    challenger: Predictions,
    classes: np.ndarray | None,
    index: np.ndarray,
    fit_rows: int,
) -> ChallengerEvidence:
    """One challenger against the champion: the metrics on all rows and the gain on each resample."""
    full = np.arange(len(y))[None, :]
    champion_value = float(metric_samples(metric, y, champion, classes, full)[0])
    challenger_value = float(metric_samples(metric, y, challenger, classes, full)[0])
    samples = relative_gain(
        metric_samples(metric, y, champion, classes, index),
        metric_samples(metric, y, challenger, classes, index),
        greater,
    )
    gain = float(relative_gain(champion_value, challenger_value, greater))
    return ChallengerEvidence(
        name, fit_rows, len(y), champion_value, challenger_value, gain, samples[np.isfinite(samples)]
    )


def suffix_lengths(rows: int, min_rows: int) -> list[int]:
    """The newest rows the probe cuts in two: all of them, then the newest half, quarter ... (>= min_rows).

    A change late in a long batch is only learnable from the rows after it: a shorter suffix puts
    them in its older half.
    """
    lengths = []
    while rows >= min_rows:
        lengths.append(rows)
        rows //= 2
    return lengths


@dataclass(frozen=True)
class ProbeRows:
    """A labelled batch in time order with the champion's predictions, cut into the probe's suffixes."""

    ordered: pd.DataFrame
    y: np.ndarray
    champion: Predictions
    classes: np.ndarray | None
    # (start, middle, bootstrap positions of the newer rows) per suffix: fit on [start, middle).
    suffixes: tuple[tuple[int, int, np.ndarray], ...]

    def champion_on(self, rows: slice) -> Predictions:
        """The champion's predictions on `rows`."""
        proba = None if self.champion.proba is None else self.champion.proba[rows]
        return Predictions(self.champion.values[rows], proba)


def probe_rows(
    champion: Pipeline, labelled: pd.DataFrame, schema: DataSchema, task_kind: str, min_rows: int, seed: int
) -> ProbeRows:
    """The probe's view of a labelled batch: time order, the champion's predictions, the suffixes."""
    ordered = pd.concat(split_in_time(labelled, schema.time_column))
    suffixes = []
    for length in suffix_lengths(len(ordered), min_rows):
        start, middle = len(ordered) - length, len(ordered) - length + length // 2
        suffixes.append((start, middle, block_indices(len(ordered) - middle, RESAMPLES, seed)))
    return ProbeRows(
        ordered,
        ordered[schema.target].to_numpy(),
        predict(champion, ordered, schema, task_kind),
        None if task_kind == "regression" else np.asarray(champion.classes_),
        tuple(suffixes),
    )


def challenge(
    name: str,
    champion: Pipeline,
    rows: ProbeRows,
    start: int,
    middle: int,
    schema: DataSchema,
    task_kind: str,
    seed: int,
) -> Predictions | None:
    """The newer rows' predictions of challenger `name` fitted on rows [start, middle)."""
    older, newer = slice(start, middle), slice(middle, None)
    if name == "recalibrated":
        return recalibrate(rows.champion_on(older), rows.champion_on(newer), rows.y[older], rows.classes)
    if name == "corrected":
        return correct(
            champion,
            rows.ordered.iloc[older],
            rows.ordered.iloc[newer],
            rows.champion_on(older),
            rows.champion_on(newer),
            schema,
            task_kind,
            seed,
        )
    return refit(champion, rows.ordered.iloc[older], rows.ordered.iloc[newer], schema, task_kind)


def measure_gain(
    champion: Pipeline,
    batch: pd.DataFrame,
    schema: DataSchema,
    task_kind: str,
    metric: str,
    greater: bool,
    min_rows: int,
    seed: int,
    stop_when_significant: tuple[float, float] | None = None,
) -> GainEvidence | None:
    """Every challenger against the champion on each suffix of a labelled batch; None below
    `min_rows` labels.

    The cheapest come first: recalibrations, then corrections, then refits. With
    `stop_when_significant` (confidence, min_gain), the later kinds are skipped once a challenger
    already clears the bar at the Bonferroni share of every planned challenger: the full evidence
    could only say "significant" too.
    """
    labelled = batch[batch[schema.target].notna()] if schema.target in batch else batch.iloc[:0]
    if len(labelled) < min_rows:
        return None
    rows = probe_rows(champion, labelled, schema, task_kind, min_rows, seed)
    found: list[ChallengerEvidence] = []
    for name in CHALLENGERS:
        if stop_when_significant and found:
            confidence, min_gain = stop_when_significant
            alpha = (1.0 - confidence) / (len(CHALLENGERS) * len(rows.suffixes))
            if any(lower_bound(evidence, alpha) > min_gain for evidence in found):
                break
        for start, middle, index in rows.suffixes:
            predictions = challenge(name, champion, rows, start, middle, schema, task_kind, seed)
            if predictions is not None:
                newer = slice(middle, None)
                found.append(
                    compare(
                        name,
                        metric,
                        greater,
                        rows.y[newer],
                        rows.champion_on(newer),
                        predictions,
                        rows.classes,
                        index,
                        middle - start,
                    )
                )
    return GainEvidence(metric, tuple(found)) if found else None


def lower_bound(challenger: ChallengerEvidence, alpha: float) -> float:
    """The challenger's one-sided lower confidence bound on the gain at error `alpha`."""
    samples = challenger.gain_samples
    return float(np.quantile(samples, alpha)) if samples.size else float("-inf")


def judge_gain(evidence: GainEvidence, confidence: float, min_gain: float) -> GainProbe:
    """The best challenger by its lower confidence bound, each tested at its Bonferroni share of the
    error (every challenger on every suffix)."""
    alpha = (1.0 - confidence) / len(evidence.challengers)
    best = max(evidence.challengers, key=lambda challenger: lower_bound(challenger, alpha))
    low = lower_bound(best, alpha)
    return GainProbe(
        metric=evidence.metric,
        challenger=best.name,
        fit_rows=best.fit_rows,
        scored_rows=best.scored_rows,
        champion_metric=best.champion_metric,
        challenger_metric=best.challenger_metric,
        gain=best.gain,
        gain_low=low,
        confidence=confidence,
        min_gain=min_gain,
        significant=bool(low > min_gain),
    )


def probe_batch(
    champion: Pipeline, batch: pd.DataFrame, schema: DataSchema, config: PipelineConfig
) -> GainProbe | None:
    """The probe with the config's settings (None when `drift.gain_probe` is off or labels are few)."""
    drift = config.drift
    if not drift.gain_probe:
        return None
    evidence = measure_gain(
        champion,
        batch,
        schema,
        config.task,
        config.metric.name,
        config.greater_is_better,
        drift.probe_min_rows,
        config.tuning.seed,
        stop_when_significant=(drift.confidence, drift.min_gain),
    )
    return judge_gain(evidence, drift.confidence, drift.min_gain) if evidence else None
