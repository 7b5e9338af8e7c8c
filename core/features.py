"""Feature engineering as scikit-learn transformers.

The preprocessor lives inside every model pipeline, so the logged model takes raw columns and
inference and drift checks reuse exactly the fitted preprocessing. Calendar features come from the
time column with scikit-learn's and NumPy's own parts only: the timestamp (text or datetime) as
seconds, then periodic splines over the day, the week and the year (hour, day of week and weekend,
season), and a scaled trend.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, SplineTransformer, StandardScaler

from core.catalogue import fit_candidate
from core.config import PipelineConfig
from core.metrics import is_better, score
from core.validation import DataSchema

# Periods of the calendar splines, in seconds, and their knots per period.
CALENDAR_PERIODS = {"day": (86_400, 13), "week": (7 * 86_400, 8), "year": (365.25 * 86_400, 13)}
# The calendar probe fits boosting with this many iterations on at most this many recent rows.
PROBE_ITERATIONS, PROBE_ROWS = 100, 50_000


@dataclass(frozen=True)
class CalendarProbe:
    """Whether calendar features help: one boosting fit with and one without, on validation."""

    kept: bool
    metric: str
    with_calendar: float
    without_calendar: float


def calendar_features() -> Pipeline:
    """Timestamps (ISO text or datetime) to periodic day, week and year splines and a trend."""
    seconds = [
        (
            "as_datetime",
            FunctionTransformer(
                np.asarray, kw_args={"dtype": "datetime64[s]"}, feature_names_out="one-to-one"
            ),
        ),
        (
            "as_seconds",
            FunctionTransformer(np.asarray, kw_args={"dtype": "float64"}, feature_names_out="one-to-one"),
        ),
    ]
    periodic = [
        (
            name,
            SplineTransformer(
                degree=3, knots=np.linspace(0, period, knots)[:, None], extrapolation="periodic"
            ),
        )
        for name, (period, knots) in CALENDAR_PERIODS.items()
    ]
    union = FeatureUnion([*periodic, ("trend", StandardScaler())])
    return Pipeline([*seconds, ("calendar", union)])


def build_preprocessor(schema: DataSchema) -> ColumnTransformer:
    """An unfitted ColumnTransformer: scaled numerics, one-hot categoricals, calendar features."""
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    # Integer codes and text alike; a missing value is a category of its own, and a code a batch
    # sends as 2.0 (one missing value turns integers into floats) is the category 2.
    categorical = OneHotEncoder(handle_unknown="ignore", min_frequency=5, sparse_output=False)
    parts = [("numeric", numeric, schema.numeric), ("categorical", categorical, schema.categorical)]
    if schema.calendar and schema.time_column:
        parts.append(("calendar", calendar_features(), [schema.time_column]))
    return ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)


def probe_calendar(
    train: pd.DataFrame, validation: pd.DataFrame, schema: DataSchema, config: PipelineConfig
) -> tuple[DataSchema, CalendarProbe | None]:
    """Keep calendar features only when they improve a quick boosting fit on the validation window.

    Returns:
        The schema (with `calendar` set when kept) and the probe's scores (None when the config
        has no time column or `features.datetime` is off).
    """
    if not (config.time_column and config.features.datetime):
        return schema, None
    rows, metric = train.tail(PROBE_ROWS), config.metric.name
    scores = {}
    for calendar in (False, True):
        candidate = replace(schema, calendar=calendar)
        model = fit_candidate(
            rows,
            build_preprocessor(candidate),
            candidate,
            config.task,
            "hist_gradient_boosting",
            {"max_iter": PROBE_ITERATIONS},
            config.tuning.seed,
        )
        scores[calendar] = score(model, validation, candidate, config.task)[metric]
    kept = is_better(scores[True], scores[False], config.greater_is_better)
    return replace(schema, calendar=kept), CalendarProbe(kept, metric, scores[True], scores[False])
