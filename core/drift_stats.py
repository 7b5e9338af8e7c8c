"""Per-column drift statistics: Evidently's tests in NumPy, and mergeable summaries for streaming.

Exact tests. `exact_test` reproduces the tests `DataDriftPreset` picks (Evidently's
`legacy/calculations/stattests`): normed Wasserstein distance, Jensen-Shannon distance (binned as
Evidently bins: value counts over the union of values, or a Sturges histogram of both samples for a
numeric column with more than 20 reference values), K-S, chi-square and Z tests, with Evidently's
default choice among them. Evidently sorts twice and counts values in Python dicts; here a
column's batch is sorted once, merged with the sorted reference in linear time, and the columns
are spread over threads (NumPy's sorts release the GIL).

Summaries. A `ColumnSummary` holds what the tests need from a column and adds up over record
batches (`merge`), so a batch of any size is tested in bounded memory:

- categoricals (and numerics with at most `EXACT_VALUES` distinct values): exact value counts;
- numerics: counts on a fixed grid from the reference minimum, bin width `h` =
  std(reference) / `BINS_PER_STD`, plus the count and sum of the values below and above it.

The normed Wasserstein distance is W1 = integral of |F_ref(x) - F_cur(x)| dx / std(ref). Inside a bin
[e, e + h) each CDF lies between its values at the two edges, so using their mean for each is off by
at most half the bin's mass (p_ref + p_cur) / 2 at every x; summed over bins the integral is off by
at most h * (1 + 1) / 2 = h. Outside the grid the reference CDF is 0 (below) or 1 (above) and the
integral is exact from the count and sum of the values there. So the score's error is at most
h / std(ref) = 1 / `BINS_PER_STD` (`ColumnSummary.error_bound`), and 0 when both sides have exact
value counts. A column whose score is within that error of its threshold is `borderline`.
Jensen-Shannon, chi-square and Z need only value counts and are exact from summaries.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

# Evidently's rules (legacy/calculations/stattests/registry.py and utils.py).
LARGE_REFERENCE = 1000  # reference rows above which distances replace p-value tests
FEW_VALUES = 5  # numeric columns with at most this many values (both samples) are tested as categories
BINNED_BY_VALUE = 20  # Jensen-Shannon bins a numeric column by value up to this many reference values
DISTANCES = {"wasserstein", "jensenshannon"}
THRESHOLDS = {"wasserstein": 0.1, "jensenshannon": 0.1, "ks": 0.05, "chisquare": 0.05, "z": 0.05}
# The tests summaries answer: value counts for all but Wasserstein, the grid for Wasserstein.
STREAMABLE = {"wasserstein", "jensenshannon", "chisquare", "z"}

BINS_PER_STD = 2000  # grid bin width std(ref) / 2000: normed Wasserstein error at most 0.0005
MAX_BINS = 1 << 18  # a reference spanning more than MAX_BINS / BINS_PER_STD stds gets wider bins
EXACT_VALUES = 1000  # distinct values kept exactly per numeric column


# --------------------------------------------------------------------------- exact tests


def finite_values(values: pd.Series) -> pd.Series:
    """The values a test sees: missing and infinite ones dropped (as Evidently does)."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        if isinstance(values.dtype, np.dtype) and values.dtype.kind in "iu":
            return values  # NumPy integers are never missing nor infinite
        array = values.to_numpy(dtype="float64" if values.dtype.kind not in "f" else None, na_value=np.nan)
        return pd.Series(array[np.isfinite(array)], name=values.name)
    return values.dropna()


def default_method(reference_rows: int, n_values: int, kind: str) -> str:
    """Evidently's default test for a column (`_get_default_stattest`)."""
    if reference_rows <= LARGE_REFERENCE:
        if kind == "numeric" and n_values > FEW_VALUES:
            return "ks"
        return "chisquare" if n_values > 2 else "z"
    if kind == "numeric" and n_values > FEW_VALUES:
        return "wasserstein"
    return "jensenshannon"


def drifted(method: str, score: float, threshold: float) -> bool:
    """Evidently's decision: distances drift at or above the threshold, p-values below it (K-S at it)."""
    if method in DISTANCES:
        return score >= threshold
    return score <= threshold if method == "ks" else score < threshold


def wasserstein_sorted(reference: np.ndarray, current: np.ndarray) -> float:
    """W1 of two sorted float64 samples: scipy's integral of |F_ref - F_cur| over merged breakpoints.

    Each sample is first reduced to its distinct values and cumulative shares (linear, on sorted
    data), so a discrete column costs its distinct values; the reference's values are then inserted
    into the batch's at their sorted positions (linear, no second sort).
    """
    ref_values, ref_cdf = sorted_cdf(reference)
    cur_values, cur_cdf = sorted_cdf(current)
    position = np.searchsorted(cur_values, ref_values, "right")
    values = np.insert(cur_values, position, ref_values)
    at_cur = np.insert(cur_cdf, position, np.concatenate([[0.0], cur_cdf])[position])
    ref_at_cur = np.concatenate([[0.0], ref_cdf])[np.searchsorted(ref_values, cur_values, "right")]
    at_ref = np.insert(ref_at_cur, position, ref_cdf)
    return float(np.sum(np.abs(at_ref[:-1] - at_cur[:-1]) * np.diff(values)))


def sorted_cdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a sorted array and the share of values at or below each."""
    if values.size == 0:
        return values, values
    starts = np.flatnonzero(np.diff(values, prepend=np.nan) != 0)
    return values[starts], np.append(starts[1:], values.size) / values.size


def sorted_float64(values: pd.Series) -> np.ndarray:
    """A column's values sorted in their own type (radix sort for small integers), as float64."""
    array = values.to_numpy()
    small_integer = array.dtype.kind in "iub" and array.dtype.itemsize <= 2
    return np.sort(array, kind="stable" if small_integer else None).astype("float64")


def wasserstein_norm(reference: pd.Series, distance: float) -> float:
    """Evidently's norm: the reference's standard deviation (in its own type), at least 0.001."""
    return distance / max(float(np.std(reference)), 0.001)


def jensenshannon_counts(reference: np.ndarray, current: np.ndarray, other: float = 0.0) -> float:
    """Jensen-Shannon distance (natural log, as scipy) of counts on the same keys.

    `other` is the batch's count on keys the reference never has: each such key adds
    q * log(2) / 2 to the divergence whatever the split, so their total is enough.
    """
    p = reference / reference.sum()
    total = current.sum() + other
    q, q_other = current / total, other / total
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(p / m), 0.0).sum()
        right = np.where(q > 0, q * np.log(q / m), 0.0).sum() + q_other * math.log(2)
    return float(math.sqrt(max((left + right) / 2, 0.0)))


def chisquare_pvalue(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently's chi-square: observed batch counts against reference counts scaled to the batch."""
    from scipy.stats import chisquare

    expected = reference * (current.sum() / reference.sum())
    return float(chisquare(current, expected)[1])


def z_pvalue(keys: list[Any], reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently's Z test of the share of the first (sorted) value."""
    from scipy.stats import norm

    if len(keys) == 1:
        return 1.0
    first = keys.index(sorted(keys)[0])
    n1, n2 = reference.sum(), current.sum()
    p1, p2 = (n1 - reference[first]) / n1, (n2 - current[first]) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - norm.cdf(np.abs(z))))


def value_counts(values: pd.Series) -> dict[Any, int]:
    """Exact counts of each present value."""
    counts = values.value_counts(sort=False)
    return {key: count for key, count in zip(counts.index.tolist(), counts.tolist(), strict=True) if count}


def aligned_counts(reference: dict[Any, int], current: dict[Any, int]) -> tuple[list, np.ndarray, np.ndarray]:
    """Counts of both samples on the union of their values."""
    keys = list(reference) + [k for k in current if k not in reference]
    ref = np.array([reference.get(k, 0) for k in keys], dtype="float64")
    cur = np.array([current.get(k, 0) for k in keys], dtype="float64")
    return keys, ref, cur


def count_test(method: str, reference: dict[Any, int], current: dict[Any, int]) -> float:
    """Jensen-Shannon, chi-square or Z on exact value counts."""
    keys, ref, cur = aligned_counts(reference, current)
    if method == "jensenshannon":
        return jensenshannon_counts(ref, cur)
    if method == "chisquare":
        return chisquare_pvalue(ref, cur)
    return z_pvalue(keys, ref, cur)


def sturges_jensenshannon(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently's Jensen-Shannon for a numeric column with many values: Sturges bins of both."""
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
    ref = np.histogram(reference, edges)[0] / reference.size
    cur = np.histogram(current, edges)[0] / current.size
    return jensenshannon_counts(ref, cur)


@dataclass(frozen=True)
class StatResult:
    """One column's test: method, score, threshold, decision and the score's error bound."""

    method: str
    score: float
    threshold: float
    drifted: bool
    error_bound: float = 0.0

    @property
    def borderline(self) -> bool:
        """Whether the score is within its error bound of the threshold (the decision could flip)."""
        return self.error_bound > 0 and abs(self.score - self.threshold) <= self.error_bound


def exact_test(
    reference: pd.Series, current: pd.Series, kind: str, method: str | None, threshold: float | None
) -> StatResult:
    """Evidently's test of one column on finite values (its default choice when `method` is None).

    Methods other than wasserstein, jensenshannon, ks, chisquare and z are run by Evidently itself.
    """
    if method not in (None, *THRESHOLDS):
        return evidently_test(reference, current, kind, method, threshold)
    if kind == "numeric":
        ref, cur = sorted_float64(reference), sorted_float64(current)
        if method is None:
            method = default_method(ref.size, distinct_sorted(ref, cur, FEW_VALUES + 1), kind)
        if method == "wasserstein":
            score = wasserstein_norm(reference, wasserstein_sorted(ref, cur))
        elif method == "ks":
            from scipy.stats import ks_2samp

            score = float(ks_2samp(ref, cur)[1])
        elif (
            method == "jensenshannon" and distinct_sorted(ref, ref[:0], BINNED_BY_VALUE + 1) > BINNED_BY_VALUE
        ):  # noqa: E501
            score = sturges_jensenshannon(ref, cur)
        else:
            score = count_test(method, sorted_counts(ref), sorted_counts(cur))
    else:
        if method is None:
            n_values = len(set(reference.unique()) | set(current.unique()))
            method = default_method(len(reference), n_values, kind)
        if method not in ("jensenshannon", "chisquare", "z"):
            return evidently_test(reference, current, kind, method, threshold)
        score = count_test(method, value_counts(reference), value_counts(current))
    actual = THRESHOLDS[method] if threshold is None else threshold
    return StatResult(method, score, actual, drifted(method, score, actual))


def distinct_sorted(reference: np.ndarray, current: np.ndarray, enough: int) -> int:
    """Distinct values of two sorted samples together, counted up to `enough`."""
    counts = []
    for values in (reference, current):
        changes = np.flatnonzero(np.diff(values)) if values.size else values[:0]
        if changes.size >= enough:
            return enough
        counts.append(np.append(values[changes], values[-1:]) if values.size else values)
    return min(enough, np.unique(np.concatenate(counts)).size)


def sorted_counts(values: np.ndarray) -> dict[float, int]:
    """Exact counts of a sorted float array's values."""
    starts = np.flatnonzero(np.diff(values, prepend=np.nan) != 0) if values.size else values[:0].astype(int)
    counts = np.diff(np.append(starts, values.size))
    return dict(zip(values[starts].tolist(), counts.tolist(), strict=True))


def evidently_test(
    reference: pd.Series, current: pd.Series, kind: str, method: str | None, threshold: float | None
) -> StatResult:
    """Any other test, run by Evidently's own registry."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Numerical if kind == "numeric" else ColumnType.Categorical
    stattest = get_stattest(reference, current, column_type, method)
    result = stattest(reference, current, column_type, threshold)
    return StatResult(
        stattest.name, float(result.drift_score), float(result.actual_threshold), bool(result.drifted)
    )


def in_threads(function: Callable[..., Any], jobs: Iterable[tuple]) -> list[Any]:
    """`function(*job)` for every job, on one thread per core (NumPy releases the GIL while sorting)."""
    jobs = list(jobs)
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers <= 1:
        return [function(*job) for job in jobs]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda job: function(*job), jobs))


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Grid:
    """Fixed bins [low + k * width, low + (k + 1) * width) for k < bins, from the reference."""

    low: float
    width: float
    bins: int

    @property
    def high(self) -> float:
        """The grid's upper end (above every reference value)."""
        return self.low + self.bins * self.width

    @classmethod
    def for_reference(cls, values: np.ndarray) -> Grid:
        """Bins of std(ref) / BINS_PER_STD from the reference minimum, past its maximum."""
        norm = max(float(np.std(values)), 0.001) if values.size else 1.0
        low = float(values.min()) if values.size else 0.0
        span = float(values.max()) - low if values.size else 0.0
        width = norm / BINS_PER_STD
        bins = int(span / width) + 1
        if bins > MAX_BINS:
            width, bins = span / (MAX_BINS - 1), MAX_BINS
        while low + bins * width <= low + span:  # rounding: the top value must fall inside
            bins += 1
        return cls(low, width, bins)


@dataclass
class ColumnSummary:
    """Mergeable statistics of one column: exact counts, or a grid histogram with its tails.

    Attributes:
        kind: "numeric" or "categorical".
        rows: Finite values seen.
        counts: Exact count of each value (categoricals always; numerics while they have at
            most `EXACT_VALUES` distinct values, else None).
        grid: The numeric grid (None for categoricals).
        bins: Count per grid bin (numerics).
        below / above: Count and sum of the values under the grid's low end / at or over its high end.
        std: The column's standard deviation (set for reference summaries: Evidently's norm).
        keys / keyed: A batch's exact counts at the reference's values (`keys`, sorted), kept even
            when its own distinct values are too many to count (not stored in JSON).
    """

    kind: str
    rows: int = 0
    counts: dict[Any, int] | None = field(default_factory=dict)
    grid: Grid | None = None
    bins: np.ndarray | None = None
    below: tuple[int, float] = (0, 0.0)
    above: tuple[int, float] = (0, 0.0)
    std: float | None = None
    keys: np.ndarray | None = None
    keyed: np.ndarray | None = None

    @classmethod
    def empty(cls, kind: str, grid: Grid | None) -> ColumnSummary:
        """A summary of no values on `grid` (numerics) to add batches to."""
        bins = np.zeros(grid.bins, dtype="int64") if grid is not None else None
        return cls(kind, grid=grid, bins=bins)

    def add(self, values: pd.Series) -> ColumnSummary:
        """This summary plus the finite values of one record batch (in place; returns self)."""
        values = finite_values(values)
        self.rows += len(values)
        if self.kind == "categorical":
            self.counts = merge_counts(self.counts, value_counts(values), None)
            return self
        array = values.to_numpy(dtype="float64")
        grid = self.grid
        index = np.floor((array - grid.low) / grid.width)
        low, high = index < 0, index >= grid.bins
        inside = ~(low | high)
        self.bins += np.bincount(index[inside].astype("int64"), minlength=grid.bins)
        self.below = (self.below[0] + int(low.sum()), self.below[1] + float(array[low].sum()))
        self.above = (self.above[0] + int(high.sum()), self.above[1] + float(array[high].sum()))
        if self.counts is not None:
            self.counts = merge_counts(self.counts, sorted_counts(np.sort(array)), EXACT_VALUES)
        if self.keys is not None:
            position = np.minimum(np.searchsorted(self.keys, array), self.keys.size - 1)
            match = self.keys[position] == array
            self.keyed = self.keyed + np.bincount(position[match], minlength=self.keys.size)
        return self

    def merge(self, other: ColumnSummary) -> ColumnSummary:
        """The summary of both summaries' values (same kind and grid)."""
        if self.grid != other.grid:
            raise ValueError("summaries on different grids do not merge")
        return replace(
            self,
            rows=self.rows + other.rows,
            counts=merge_counts(self.counts, other.counts, EXACT_VALUES if self.kind == "numeric" else None),
            bins=None if self.bins is None else self.bins + other.bins,
            below=(self.below[0] + other.below[0], self.below[1] + other.below[1]),
            above=(self.above[0] + other.above[0], self.above[1] + other.above[1]),
            keyed=None if self.keyed is None else self.keyed + other.keyed,
        )

    def error_bound(self, current: ColumnSummary) -> float:
        """Largest error of the normed Wasserstein distance from these summaries (0 when exact)."""
        if self.counts is not None and current.counts is not None:
            return 0.0
        return self.grid.width / max(self.std or 0.0, 0.001)

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly form (grid bins stored sparsely)."""
        record: dict[str, Any] = {"kind": self.kind, "rows": self.rows, "std": self.std}
        record["counts"] = None if self.counts is None else [[k, v] for k, v in self.counts.items()]
        if self.grid is not None:
            occupied = np.flatnonzero(self.bins)
            record |= {
                "grid": [self.grid.low, self.grid.width, self.grid.bins],
                "bins": [occupied.tolist(), self.bins[occupied].tolist()],
                "below": list(self.below),
                "above": list(self.above),
            }
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> ColumnSummary:
        """The summary `to_json` wrote."""
        counts = None if record["counts"] is None else {k: v for k, v in record["counts"]}
        summary = cls(record["kind"], record["rows"], counts, std=record.get("std"))
        if record.get("grid"):
            low, width, size = record["grid"]
            summary.grid = Grid(float(low), float(width), int(size))
            summary.bins = np.zeros(int(size), dtype="int64")
            index, count = record["bins"]
            summary.bins[np.asarray(index, dtype="int64")] = np.asarray(count, dtype="int64")
            summary.below, summary.above = tuple(record["below"]), tuple(record["above"])
        return summary


def merge_counts(
    left: dict[Any, int] | None, right: dict[Any, int] | None, cap: int | None
) -> dict[Any, int] | None:
    """The sum of two value counts; None (not exact any more) past `cap` distinct values."""
    if left is None or right is None:
        return None
    merged = dict(left)
    for key, count in right.items():
        merged[key] = merged.get(key, 0) + count
    return None if cap is not None and len(merged) > cap else merged


def reference_summary(values: pd.Series, kind: str) -> ColumnSummary:
    """The summary of a reference column, with its grid (numerics) and standard deviation."""
    values = finite_values(values)
    if kind == "categorical":
        return ColumnSummary.empty(kind, None).add(values)
    array = values.to_numpy(dtype="float64")
    summary = ColumnSummary.empty(kind, Grid.for_reference(array)).add(values)
    summary.std = float(np.std(values)) if array.size else 0.0  # in the column's type, as Evidently
    return summary


def summarise(frame: pd.DataFrame, kinds: dict[str, str]) -> dict[str, ColumnSummary]:
    """Reference summaries of the columns of `kinds` present in `frame`."""
    return {c: reference_summary(frame[c], kind) for c, kind in kinds.items() if c in frame}


def empty_like(reference: dict[str, ColumnSummary]) -> dict[str, ColumnSummary]:
    """Empty batch summaries on the grids of the reference's."""
    summaries = {}
    for column, ref in reference.items():
        summary = ColumnSummary.empty(ref.kind, ref.grid)
        if ref.kind == "numeric" and ref.counts is None:
            summary.counts = None  # the reference has too many values for exact counts to matter
        elif ref.kind == "numeric" and ref.counts:
            summary.keys = np.array(sorted(ref.counts), dtype="float64")
            summary.keyed = np.zeros(summary.keys.size, dtype="int64")
        summaries[column] = summary
    return summaries


def add_batch(summaries: dict[str, ColumnSummary], frame: pd.DataFrame) -> None:
    """Add one record batch to every column's summary (columns on threads)."""
    in_threads(lambda column: summaries[column].add(frame[column]), [(c,) for c in summaries if c in frame])


def grid_wasserstein(reference: ColumnSummary, current: ColumnSummary) -> float:
    """W1 from the grid histograms and exact tails (see the module docstring for the bound)."""
    grid = reference.grid
    cdf_ref = np.concatenate([[0], np.cumsum(reference.bins)]) / max(reference.rows, 1)
    cdf_cur = (current.below[0] + np.concatenate([[0], np.cumsum(current.bins)])) / max(current.rows, 1)
    difference = cdf_ref - cdf_cur  # at the bin edges
    inside = float(np.sum(np.abs((difference[:-1] + difference[1:]) / 2)) * grid.width)
    rows = max(current.rows, 1)
    below = (current.below[0] * grid.low - current.below[1]) / rows
    above = (current.above[1] - current.above[0] * grid.high) / rows
    return inside + below + above


def summary_test(
    reference: ColumnSummary, current: ColumnSummary, method: str | None, threshold: float | None
) -> StatResult:
    """A column's test from summaries: exact for counts, within `error_bound` for Wasserstein.

    Raises:
        ValueError: `method` is not one summaries answer (see `STREAMABLE`).
    """
    numeric = reference.kind == "numeric"
    exact = reference.counts is not None and current.counts is not None
    if method is None:
        n_values = len(set(reference.counts) | set(current.counts)) if exact else EXACT_VALUES + 1
        method = default_method(reference.rows, n_values, reference.kind)
    if method not in STREAMABLE:
        raise ValueError(f"the {method} test needs every value, not a summary")
    bound = 0.0
    if method == "wasserstein":
        if exact:
            keys = sorted(set(reference.counts) | set(current.counts))
            ref = np.array(keys, dtype="float64")
            distance = weighted_wasserstein(ref, reference.counts, current.counts)
        else:
            distance, bound = grid_wasserstein(reference, current), reference.error_bound(current)
        score = distance / max(reference.std or 0.0, 0.001)
    elif numeric and (reference.counts is None or len(reference.counts) > BINNED_BY_VALUE):
        raise ValueError("Jensen-Shannon with Sturges bins needs every value, not a summary")
    elif exact:
        score = count_test(method, reference.counts, current.counts)
    elif method == "jensenshannon" and current.keyed is not None:
        # More distinct batch values than kept: its counts at the reference's values are exact, and
        # Jensen-Shannon needs only the total of the rest.
        ref = np.array([reference.counts[k] for k in current.keys.tolist()], dtype="float64")
        at_keys = current.keyed.astype("float64")
        score = jensenshannon_counts(ref, at_keys, current.rows - at_keys.sum())
    else:
        raise ValueError(f"the {method} test needs exact counts of the batch's values")
    actual = THRESHOLDS[method] if threshold is None else threshold
    return StatResult(method, score, actual, drifted(method, score, actual), bound)


def weighted_wasserstein(values: np.ndarray, reference: dict, current: dict) -> float:
    """W1 of two distributions given as exact counts on sorted `values`."""
    ref = np.array([reference.get(v, 0) for v in values.tolist()], dtype="float64")
    cur = np.array([current.get(v, 0) for v in values.tolist()], dtype="float64")
    cdf = np.cumsum(ref)[:-1] / ref.sum() - np.cumsum(cur)[:-1] / cur.sum()
    return float(np.sum(np.abs(cdf) * np.diff(values)))


# --------------------------------------------------------------------------- streams


class BoundedSample:
    """A uniform sample of at most `rows` rows of a stream of frames, in the order they came.

    Each row draws a seeded random key; the sample is the rows with the smallest keys so far, so it
    never holds more than `rows` rows plus one record batch.
    """

    def __init__(self, rows: int, seed: int) -> None:
        self.rows = rows
        self._random = np.random.default_rng(seed)
        self._held: pd.DataFrame | None = None
        self._seen = 0

    def add(self, frame: pd.DataFrame) -> None:
        """Offer one record batch's rows to the sample."""
        keyed = frame.reset_index(drop=True).assign(
            _key=self._random.random(len(frame)), _order=np.arange(self._seen, self._seen + len(frame))
        )
        self._seen += len(frame)
        if self._held is not None and len(self._held) >= self.rows:
            keyed = keyed[keyed["_key"] < self._held["_key"].max()]  # only these can enter
        held = keyed if self._held is None else pd.concat([self._held, keyed], ignore_index=True)
        self._held = held.nsmallest(self.rows, "_key") if len(held) > self.rows else held

    def frame(self) -> pd.DataFrame:
        """The sampled rows in arrival order."""
        if self._held is None:
            return pd.DataFrame()
        return self._held.sort_values("_order").drop(columns=["_key", "_order"]).reset_index(drop=True)


@dataclass(frozen=True)
class StreamedBatch:
    """What a streamed batch leaves: column summaries, a bounded sample, its size and fingerprint."""

    summaries: dict[str, ColumnSummary]
    sample: pd.DataFrame
    rows: int
    sha256: str


def summarise_stream(
    chunks: Iterable[pd.DataFrame],
    check: Callable[[pd.DataFrame], pd.DataFrame],
    reference: dict[str, ColumnSummary],
    sample_rows: int,
    seed: int,
) -> StreamedBatch:
    """Summaries of every record batch `check` keeps and types, on the reference's grids.

    Args:
        chunks: The raw record batches, as read.
        check: Selects and validates one raw record batch (it may raise bad input).
        reference: The reference's summaries (their columns are the ones summarised).
        sample_rows: Rows kept as a uniform sample (report and performance).
        seed: Seed of the sample.
    """
    import hashlib

    summaries = empty_like(reference)
    sample = BoundedSample(sample_rows, seed)
    digest = hashlib.sha256()
    rows = 0
    for chunk in chunks:
        typed = check(chunk)
        if typed.empty:
            continue
        digest.update(pd.util.hash_pandas_object(typed, index=False).to_numpy().tobytes())
        add_batch(summaries, typed)
        sample.add(typed)
        rows += len(typed)
    return StreamedBatch(summaries, sample.frame(), rows, digest.hexdigest())
