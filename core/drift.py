"""The drift rules: per-column tests of a batch against the champion's reference, and the verdict.

The verdict runs Evidently's per-column statistical tests (the ones `DataDriftPreset` picks,
reproduced in NumPy by `core.drift_stats`) on the complete batch, or on its mergeable summaries when
the batch is streamed. The HTML report, whose cost grows faster than linearly with rows, is drawn
from a time-stratified sample of `drift.report_rows` rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from core.config import DriftConfig
from core.drift_stats import (
    BINNED_BY_VALUE,
    LARGE_REFERENCE,
    STREAMABLE,
    ColumnSummary,
    StatResult,
    exact_test,
    finite_values,
    in_threads,
    summary_test,
)
from core.errors import DataError
from core.trigger import GainProbe
from core.validation import DataSchema, aligned, parse_times


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift test.

    Attributes:
        borderline: The score came from a streamed batch's summary and lies within its error bound
            of the threshold, so the decision could go either way; such a column is not counted as
            drifted, and the verdict names it.
    """

    column: str
    kind: str
    method: str
    score: float
    threshold: float
    drifted: bool
    borderline: bool = False

    @classmethod
    def of(cls, column: str, kind: str, result: StatResult) -> ColumnDrift:
        """The column's record of a test result (a borderline one is not counted as drifted)."""
        borderline = result.borderline
        return cls(
            column,
            kind,
            result.method,
            float(result.score),
            float(result.threshold),
            bool(result.drifted and not borderline),
            borderline,
        )


@dataclass(frozen=True)
class DriftVerdict:
    """Whether the batch drifted, with every reason."""

    drift_detected: bool
    share_drifted: float
    drifted_columns: list[str]
    reasons: list[str]


def column_drift(
    reference: pd.Series, current: pd.Series, kind: str, method: str | None, threshold: float | None
) -> ColumnDrift:
    """Evidently's test for one column (its default choice when `method` is None)."""
    reference, current = finite_values(reference), finite_values(current)
    if reference.empty or current.empty:
        raise DataError(
            f"column '{current.name}' has no values in the {'reference' if reference.empty else 'batch'}",
            "Check the batch: every feature needs some values to test for drift.",
        )
    return ColumnDrift.of(str(current.name), kind, exact_test(reference, current, kind, method, threshold))


def feature_kinds(schema: DataSchema) -> list[tuple[str, str]]:
    """Each feature with its kind, numeric first."""
    return [(c, "numeric") for c in schema.numeric] + [(c, "categorical") for c in schema.categorical]


def detect_columns(
    reference: pd.DataFrame, current: pd.DataFrame, schema: DataSchema, drift: DriftConfig
) -> list[ColumnDrift]:
    """Drift test of every feature of the schema, each with its configured or default method.

    The columns are tested on one thread per core.
    """
    return in_threads(
        column_drift,
        [
            (
                reference[c],
                current[c],
                kind,
                drift.per_column_method.get(c, drift.method),
                drift.per_column_threshold.get(c, drift.threshold),
            )
            for c, kind in feature_kinds(schema)
        ],
    )


def summary_drift(
    column: str, reference: ColumnSummary, current: ColumnSummary, method: str | None, threshold: float | None
) -> ColumnDrift:
    """One column's test from the reference's and the streamed batch's summaries."""
    if reference.rows == 0 or current.rows == 0:
        raise DataError(
            f"column '{column}' has no values in the {'reference' if reference.rows == 0 else 'batch'}",
            "Check the batch: every feature needs some values to test for drift.",
        )
    return ColumnDrift.of(column, reference.kind, summary_test(reference, current, method, threshold))


def detect_columns_summarised(
    reference: dict[str, ColumnSummary],
    current: dict[str, ColumnSummary],
    schema: DataSchema,
    drift: DriftConfig,
) -> list[ColumnDrift]:
    """`detect_columns` from summaries of a streamed batch (see `core.drift_stats`)."""
    return [
        summary_drift(
            c,
            reference[c],
            current[c],
            drift.per_column_method.get(c, drift.method),
            drift.per_column_threshold.get(c, drift.threshold),
        )
        for c, _ in feature_kinds(schema)
    ]


def target_drift(
    reference: pd.DataFrame, current: pd.DataFrame, schema: DataSchema, task_kind: str
) -> ColumnDrift | None:
    """Drift of the target, when the batch has labels."""
    if schema.target not in current or current[schema.target].notna().sum() == 0:
        return None
    kind = "numeric" if task_kind == "regression" else "categorical"
    return column_drift(reference[schema.target], current[schema.target], kind, None, None)


def borderline_note(columns: list[ColumnDrift]) -> str | None:
    """The verdict's line on borderline columns, or None when there are none."""
    near = [c for c in columns if c.borderline]
    if not near:
        return None
    listed = ", ".join(f"{c.column} ({c.method} {c.score:.4f} vs {c.threshold:g})" for c in near)
    return (
        f"borderline (score within the streamed summary's error of the threshold, not counted as "
        f"drifted): {listed}"
    )


def performance_decay(batch_metric: float, test_metric: float, greater_is_better: bool) -> float:
    """Relative worsening of a metric from the champion's test window to the batch (>0 is worse)."""
    change = (test_metric - batch_metric) if greater_is_better else (batch_metric - test_metric)
    return change / abs(test_metric) if test_metric else float("inf") if change > 0 else 0.0


def drift_verdict(
    columns: list[ColumnDrift],
    drift: DriftConfig,
    decay: float | None,
    history: list[bool],
    probe: GainProbe | None = None,
) -> DriftVerdict:
    """Drift when retraining would help, or, without labels, when enough features drift.

    On a labelled batch the retrain-gain probe (`core.trigger`) decides: feature drift and the
    metric's decay are reported, but a batch whose drift the champion already handles is not drift.
    Without a probe (no labels, too few, or `drift.gain_probe: false`): drift when enough features
    drift or the metric decays by more than `drift.max_metric_decay`. A drifted critical column is
    drift either way. With `drift.confirmations` k of `drift.window` n, drift must also have been
    found in at least k of the last n checks, this one included (`history` holds earlier verdicts,
    newest first).
    """
    drifted = [c.column for c in columns if c.drifted]
    share = len(drifted) / len(columns) if columns else 0.0
    reasons = []
    if probe is not None:
        reasons.append(
            f"{len(drifted)} of {len(columns)} features drifted ({share:.0%})"
            + (f": {', '.join(drifted)}" if drifted else "")
            + "; the batch has labels, so the retrain-gain probe decides"
        )
        if probe.significant:
            reasons.append(probe.reason_line())
    elif share >= drift.share_threshold:
        reasons.append(
            f"{len(drifted)} of {len(columns)} features drifted "
            f"({share:.0%} >= {drift.share_threshold:.0%}): {', '.join(drifted)}"
        )
    critical = [c for c in drift.critical_columns if c in drifted]
    if critical:
        reasons.append(f"critical columns drifted: {', '.join(critical)}")
    if probe is None and decay is not None and decay > drift.max_metric_decay:
        reasons.append(
            f"champion's metric decayed by {decay:.0%} (> {drift.max_metric_decay:.0%}) on the batch"
        )
    detected = bool(critical) or (probe.significant if probe is not None else bool(reasons))
    if probe is not None:
        if not probe.significant:
            reasons.append(probe.reason_line())
        if decay is not None:
            reasons.append(
                f"champion's metric {'decayed' if decay > 0 else 'improved'} by {abs(decay):.0%} on the batch"
            )
    if detected and drift.confirmations > 1:
        recent = [detected, *history[: drift.window - 1]]
        if sum(recent) < drift.confirmations:
            reasons.append(
                f"not confirmed: drift in {sum(recent)} of the last {len(recent)} checks, "
                f"{drift.confirmations} needed"
            )
            detected = False
    if not reasons:
        reasons.append(f"{len(drifted)} of {len(columns)} features drifted ({share:.0%}); no rule fired")
    return DriftVerdict(detected, share, drifted, reasons)


def time_stratified_sample(frame: pd.DataFrame, time_column: str | None, rows: int) -> pd.DataFrame:
    """Up to `rows` rows spread evenly over the batch in time order (deterministic)."""
    if len(frame) <= rows:
        return frame
    positions = np.linspace(0, len(frame) - 1, rows).round().astype(int)
    if time_column and time_column in frame:
        # Only the chosen rows are taken: reordering a whole million-row frame costs more than its sort.
        positions = np.argsort(frame[time_column].to_numpy(), kind="stable")[positions]
    return frame.iloc[positions]


def evidently_report(
    reference: pd.DataFrame, current: pd.DataFrame, schema: DataSchema, drift: DriftConfig
) -> Any:
    """Evidently's DataDriftPreset with tests, configured like the verdict (current data first)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=schema.numeric, categorical_columns=schema.categorical)
    preset = DataDriftPreset(
        columns=schema.features,
        drift_share=drift.share_threshold,
        method=drift.method,
        threshold=drift.threshold,
        per_column_method=drift.per_column_method or None,
        per_column_threshold=drift.per_column_threshold or None,
    )
    columns = schema.features
    return Report([preset], include_tests=True).run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )


def rows_after(
    frame: pd.DataFrame, time_column: str | None, trained_until: str | None, allow_empty: bool = False
) -> pd.DataFrame:
    """Rows newer than the champion's training window.

    A time column with a UTC offset and a naive `trained_until` (or the reverse) compare with the
    naive one taken as UTC. `allow_empty` is for one record batch of a streamed source.

    Raises:
        DataError: Nothing is newer (unless `allow_empty`), the source has no time column to tell,
            or its dates mix values with and without a UTC offset.
    """
    if not time_column or not trained_until:
        raise DataError(
            "Cannot tell which rows are new: the config has no time_column or the champion has no "
            "trained_until tag",
            "Pass the batch to check with --current.",
        )
    times, problem, _ = parse_times(frame[time_column])
    if problem:
        raise DataError(f"The time column '{time_column}' {problem}", "Fix the dates in the data source.")
    newer = frame[times > aligned(pd.Timestamp(trained_until), times)]
    if newer.empty and not allow_empty:
        raise no_newer_rows(trained_until)
    return newer


def no_newer_rows(trained_until: str | None) -> DataError:
    """The bad input of a source with no rows after the champion's training window."""
    return DataError(
        f"The data source has no rows after the champion's training window (ends {trained_until})",
        "Wait for new data or pass a batch with --current.",
    )


def streamable(reference: pd.DataFrame, schema: DataSchema, drift: DriftConfig) -> bool:
    """Whether every feature's test can run on summaries of a streamed batch.

    Evidently's defaults can with a reference of more than 1,000 rows (distances); of the configured
    methods, Wasserstein, and Jensen-Shannon, chi-square and Z on value counts can.
    """
    if len(reference) <= LARGE_REFERENCE:
        return False
    for column, kind in feature_kinds(schema):
        method = drift.per_column_method.get(column, drift.method)
        if method is not None and method not in STREAMABLE:
            return False
        if method in {"chisquare", "z"} and kind == "numeric":
            return False  # exact counts of a batch's numeric values are kept only while they are few
        if method == "jensenshannon" and kind == "numeric" and reference[column].nunique() > BINNED_BY_VALUE:
            return False
    return True


def summary_kinds(schema: DataSchema, task_kind: str) -> dict[str, str]:
    """The columns a reference summary covers: every feature and the target, with their kinds."""
    target = "numeric" if task_kind == "regression" else "categorical"
    return dict(feature_kinds(schema)) | {schema.target: target}


def summarised_target(
    reference: dict[str, ColumnSummary], current: dict[str, ColumnSummary], schema: DataSchema
) -> ColumnDrift | None:
    """Drift of the target from summaries, when the streamed batch has labels."""
    if (
        schema.target not in reference
        or current.get(schema.target) is None
        or not current[schema.target].rows
    ):
        return None
    return summary_drift(schema.target, reference[schema.target], current[schema.target], None, None)


def columns_table(columns: list[ColumnDrift]) -> list[dict[str, Any]]:
    """Rows for the Prefect table artifact and the JSON summary."""
    return [{**asdict(c), "score": round(c.score, 5)} for c in columns]


def in_cooldown(last_alert_at: datetime | None, cooldown_hours: float, now: datetime) -> bool:
    """Whether an alert sent at `last_alert_at` still silences new ones."""
    return last_alert_at is not None and now - last_alert_at < timedelta(hours=cooldown_hours)


def reference_sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """The capped sample of training rows a model's drift checks compare against."""
    return frame.sample(n=min(max_rows, len(frame)), random_state=seed).sort_index()
