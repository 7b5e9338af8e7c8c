"""Validation: check a raw table against the config (and the champion's schema) and type it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.config import PipelineConfig
from core.errors import DataError
from core.split import rows_needed

NUMERIC_SHARE = 0.5  # a text column is numeric when more than this share of values parse


@dataclass(frozen=True)
class DataSchema:
    """The typed columns the model uses.

    Attributes:
        calendar: Whether the model also derives calendar features from `time_column` (then the
            time column is one of its inputs, though not a feature that drift checks test).
    """

    target: str
    numeric: list[str]
    categorical: list[str]
    time_column: str | None = None
    dropped_target_rows: int = 0
    notes: list[str] = field(default_factory=list)
    calendar: bool = False

    @property
    def features(self) -> list[str]:
        """All feature columns, numeric first."""
        return self.numeric + self.categorical

    @property
    def model_inputs(self) -> list[str]:
        """The columns the model reads: the features, and the time column for calendar features."""
        return self.features + ([self.time_column] if self.calendar and self.time_column else [])

    def input_kinds(self) -> dict[str, str]:
        """Each model input and its kind (`numeric`, `categorical` or `time`), as tagged on versions."""
        kinds = {c: "numeric" for c in self.numeric} | {c: "categorical" for c in self.categorical}
        return kinds | ({self.time_column: "time"} if self.calendar and self.time_column else {})

    @classmethod
    def from_input_kinds(cls, kinds: dict[str, str], target: str, time_column: str | None) -> DataSchema:
        """The schema of a registered model from its tagged input kinds (see `input_kinds`)."""
        tagged_time = [c for c, kind in kinds.items() if kind == "time"]
        return cls(
            target,
            [c for c, kind in kinds.items() if kind == "numeric"],
            [c for c, kind in kinds.items() if kind == "categorical"],
            tagged_time[0] if tagged_time else time_column,
            calendar=bool(tagged_time),
        )

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly description, logged with each run."""
        return {
            "target": self.target,
            "time_column": self.time_column,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "calendar_features": self.calendar,
        }


def _examples(values: pd.Series, limit: int = 3) -> str:
    return ", ".join(repr(v) for v in values.drop_duplicates().head(limit).tolist())


def _parses_as_numbers(column: pd.Series) -> pd.Series:
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(object)
    return pd.to_numeric(column, errors="coerce")


def aligned(moment: pd.Timestamp, times: pd.Series) -> pd.Timestamp:
    """`moment` in the form of `times` (timezone-aware or naive), so the two compare.

    A naive time on either side is taken as UTC.
    """
    moment = pd.Timestamp(moment)
    times_tz = getattr(times.dt, "tz", None) if pd.api.types.is_datetime64_any_dtype(times) else None
    if times_tz is not None:
        return moment.tz_localize("UTC") if moment.tzinfo is None else moment
    return moment.tz_convert("UTC").tz_localize(None) if moment.tzinfo is not None else moment


def parse_times(values: pd.Series) -> tuple[pd.Series, str | None, str | None]:
    """Parse a time column: dates with one UTC offset keep it, several offsets become UTC.

    Returns:
        The parsed times (NaT where a value is not a date), the problem if the column mixes dates
        with and without a UTC offset (which cannot be ordered), and a note if it was converted
        to UTC.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        return values, None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mixed offsets: pandas warns, and they are handled below
        try:
            parsed = pd.to_datetime(values, errors="coerce")
        except (ValueError, TypeError):
            parsed = None
        if parsed is not None and pd.api.types.is_datetime64_any_dtype(parsed) and not parsed.isna().any():
            return parsed, None, None
        # Slow path, on bad data only: parse each value on its own to see which carry an offset.
        each = pd.to_datetime(values, errors="coerce", format="mixed").astype(object)
    dates = each[each.notna()]
    aware = dates.map(lambda t: t.tzinfo is not None).astype(bool)
    if aware.any() and not aware.all():
        return (
            pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]"),
            f"mixes dates with a UTC offset (e.g. {_examples(values.loc[aware[aware].index])}) and "
            f"dates without one (e.g. {_examples(values.loc[aware[~aware].index])}), which cannot be "
            "ordered; write every date with its offset, or none",
            None,
        )
    if parsed is None or not pd.api.types.is_datetime64_any_dtype(parsed):
        offsets = sorted({t.strftime("%z") for t in dates.head(1000)})
        return (
            pd.to_datetime(values, errors="coerce", utc=True),
            None,
            f"has several UTC offsets (e.g. {', '.join(offsets[:3])}, as across daylight saving "
            "time): converted to UTC",
        )
    return parsed, None, None


def infer_columns(
    frame: pd.DataFrame, config: PipelineConfig, expected_numeric: set[str]
) -> tuple[list[str], list[str]]:
    """Split feature columns into numeric and categorical.

    A column is numeric when the config lists it so, when the champion's schema says so, or when
    most of its non-missing values parse as numbers.
    """
    excluded = {config.target, config.time_column, *config.features.drop}
    candidates = [c for c in frame.columns if c not in excluded]
    declared_num = config.features.numeric
    declared_cat = config.features.categorical
    numeric, categorical = [], []
    for column in candidates:
        if declared_cat is not None and column in declared_cat:
            categorical.append(column)
        elif declared_num is not None and column in declared_num:
            numeric.append(column)
        elif declared_num is not None and declared_cat is not None:
            continue  # both lists given: only listed columns are features
        elif column in expected_numeric or pd.api.types.is_numeric_dtype(frame[column]):
            if pd.api.types.is_bool_dtype(frame[column]):
                categorical.append(column)
            else:
                numeric.append(column)
        else:
            present = frame[column].dropna()
            share = _parses_as_numbers(present).notna().mean() if len(present) else 0.0
            (numeric if share > NUMERIC_SHARE else categorical).append(column)
    return numeric, categorical


def validate_table(
    raw: pd.DataFrame,
    config: PipelineConfig,
    expected_schema: dict[str, str] | None = None,
    require_target: bool = True,
    now: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, DataSchema]:
    """Validate the raw table and return a typed copy and its schema.

    Every problem found is collected and reported together in one `DataError`.

    Args:
        raw: The table as read; it is not modified.
        config: The pipeline config.
        expected_schema: The champion's input columns and their types ("numeric"/"categorical");
            a column gone or a type changed is bad input.
        require_target: False for unlabelled batches (drift checks).
        now: The current time (naive means UTC); rows dated after it plus `data.max_future` are
            bad input. None skips that check.

    Raises:
        DataError: The data cannot be used, with every reason.
    """
    problems: list[str] = []
    notes: list[str] = []
    if raw.columns.duplicated().any():
        dupes = sorted(set(raw.columns[raw.columns.duplicated()]))
        raise DataError(f"The data repeats the column names {dupes}", "Make each name unique.")
    if len(raw) == 0:
        raise DataError(
            f"The data has no rows (only the header with {len(raw.columns)} columns)",
            "Point the config at a file or query that returns data.",
        )
    frame = raw.copy()
    expected_schema = expected_schema or {}
    target = config.target
    required = {
        "target": [target] if require_target else [],
        "time": [config.time_column] if config.time_column else [],
        "numeric feature": config.features.numeric or [],
        "categorical feature": config.features.categorical or [],
        "champion input": list(expected_schema),
    }
    for role, columns in required.items():
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            problems.append(
                f"{role} column{'s' if len(missing) > 1 else ''} {missing} not in the data "
                f"(it has {list(frame.columns)[:20]})"
            )
    expected_numeric = {c for c, kind in expected_schema.items() if kind == "numeric"}
    numeric, categorical = infer_columns(frame, config, expected_numeric)
    for column, kind in expected_schema.items():
        actual = "numeric" if column in numeric else "categorical" if column in categorical else None
        if actual and actual != kind:
            problems.append(f"column '{column}' is {actual} here but the champion expects {kind}")
    if not numeric + categorical:
        problems.append("no feature columns are left after dropping target, time and drop columns")
    for column in [*numeric, *([target] if require_target and config.task == "regression" else [])]:
        if column not in frame.columns:
            continue
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            parsed = _parses_as_numbers(values)
            bad = values[parsed.isna() & values.notna()]
            if len(bad):
                problems.append(
                    f"column '{column}' should be numeric but {len(bad)} values are not numbers "
                    f"(e.g. {_examples(bad)})"
                )
            frame[column] = parsed
        infinite = int(np.isinf(frame[column].to_numpy(dtype="float64", na_value=np.nan)).sum())
        if infinite:
            problems.append(f"column '{column}' has {infinite} infinite values (inf or -inf)")
    if config.time_column and config.time_column in frame.columns:
        column = config.time_column
        parsed_time, time_problem, time_note = parse_times(frame[column])
        bad = frame[column][parsed_time.isna()]
        if time_problem:
            problems.append(f"time column '{column}' {time_problem}")
        elif len(bad):
            problems.append(
                f"time column '{column}' has {len(bad)} values that are not dates (e.g. {_examples(bad)})"
            )
        elif now is not None:
            limit = now + pd.Timedelta(config.data.max_future)
            late = frame[column][parsed_time > aligned(limit, parsed_time)]
            if len(late):
                problems.append(
                    f"time column '{column}' has {len(late)} row{'' if len(late) == 1 else 's'} dated "
                    f"after {limit.floor('s')} (now plus "
                    f"data.max_future={config.data.max_future}), e.g. {_examples(late.astype(str))}; "
                    "correct the dates, or raise data.max_future if such rows are expected"
                )
        if time_note:
            notes.append(f"time column '{column}' {time_note}")
        frame[column] = parsed_time
    dropped = 0
    if require_target and target in frame.columns and not problems:
        labels = frame[target]
        if labels.isna().all():
            problems.append(f"target '{target}' is empty (all values are missing)")
        else:
            dropped = int(labels.isna().sum())
            if dropped:
                notes.append(f"dropped {dropped} rows whose target '{target}' is missing")
                frame = frame[labels.notna()]
            distinct = frame[target].nunique()
            if len(frame) == 1:  # one row is constant too, but the number of rows is the problem
                needed = rows_needed(config.split)
                problems.append(
                    f"the data has only 1 row{' with a target' if dropped else ''}, and the split needs "
                    f"at least {needed} (split.min_rows={config.split.min_rows} in each of train, "
                    "validation and test)"
                )
            elif config.task == "classification" and distinct < 2:
                problems.append(f"classification target '{target}' has a single class")
            elif config.task == "regression" and distinct < 2:
                problems.append(f"target '{target}' is constant ({frame[target].tolist()[0]!r})")
    if problems:
        raise DataError(
            "The data does not fit the config: " + "; ".join(problems),
            "Fix the data or the config (target, time_column, features) and run again.",
        )
    keep = [c for c in [config.time_column, *numeric, *categorical, target] if c and c in frame]
    schema = DataSchema(target, numeric, categorical, config.time_column, dropped, notes)
    return frame[keep].reset_index(drop=True), schema
