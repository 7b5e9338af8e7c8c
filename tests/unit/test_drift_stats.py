"""Unit tier for `core.drift_stats`: the NumPy tests equal Evidently's, summaries stay within their
documented error, merge like the data they summarise, and stream like a whole batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.drift import ColumnDrift, borderline_note
from core.drift_stats import (
    BINS_PER_STD,
    BoundedSample,
    ColumnSummary,
    StatResult,
    empty_like,
    evidently_test,
    exact_test,
    finite_values,
    reference_summary,
    summarise,
    summarise_stream,
    summary_test,
)
from core.tables import iter_file_batches

RNG = np.random.default_rng(15)


def numeric_pairs() -> dict[str, tuple[pd.Series, pd.Series]]:
    """Reference/batch pairs of numeric columns: continuous, ties, few values, NaN, tails."""
    n, m = 1500, 4000
    with_nan = RNG.gamma(2.0, 2.0, m)
    with_nan[::9] = np.nan
    return {
        "normal shifted": (RNG.normal(0, 1, n), RNG.normal(0.12, 1.1, m)),
        "normal same": (RNG.normal(0, 1, n), RNG.normal(0, 1, m)),
        "integer ties": (RNG.integers(0, 24, n), RNG.integers(0, 26, m)),
        "few values": (RNG.integers(0, 4, n), RNG.integers(0, 5, m)),
        "binary": (RNG.integers(0, 2, n), (RNG.random(m) < 0.6).astype(int)),
        "nan in batch": (RNG.gamma(2.0, 2.0, n), with_nan),
        "float32 lognormal": (
            RNG.lognormal(0, 1, n).astype("float32"),
            RNG.lognormal(0.2, 1, m).astype("float32"),
        ),
        "batch outside reference range": (RNG.uniform(0, 1, n), RNG.uniform(-0.5, 2.0, m)),
    }


def categorical_pairs() -> dict[str, tuple[pd.Series, pd.Series]]:
    n, m = 1500, 4000
    return {
        "unseen levels": (RNG.choice(list("abc"), n), RNG.choice(list("abcde"), m)),
        "level gone": (RNG.choice(list("abcd"), n), RNG.choice(list("ab"), m)),
        "two levels": (RNG.choice(["yes", "no"], n), RNG.choice(["yes", "no"], m, p=[0.6, 0.4])),
        "integers as categories": (RNG.integers(1, 5, n), RNG.integers(1, 5, m)),
        "missing values": (
            pd.Series(RNG.choice(["x", "y", None], n)),
            pd.Series(RNG.choice(["x", "y", None], m)),
        ),
    }


def both(name_pairs: dict, small: bool = False):
    for name, (reference, current) in name_pairs.items():
        reference, current = pd.Series(reference, name=name), pd.Series(current, name=name)
        if small:
            reference = reference.iloc[:600]  # <= 1,000 rows: Evidently's p-value tests
        yield name, finite_values(reference), finite_values(current)


@pytest.mark.parametrize("small", [False, True], ids=["distances", "p-values"])
@pytest.mark.parametrize("method", [None, "wasserstein", "jensenshannon", "ks", "psi"])
def test_numeric_tests_equal_evidentlys(method: str | None, small: bool) -> None:
    for name, reference, current in both(numeric_pairs(), small):
        ours = exact_test(reference, current, "numeric", method, None)
        theirs = evidently_test(reference, current, "numeric", method, None)
        assert ours.method == theirs.method, name
        assert ours.score == pytest.approx(theirs.score, rel=1e-9, abs=1e-12), name
        assert ours.drifted == theirs.drifted and ours.threshold == theirs.threshold, name


@pytest.mark.parametrize("small", [False, True], ids=["distances", "p-values"])
@pytest.mark.parametrize("method", [None, "jensenshannon", "chisquare", "z"])
def test_categorical_tests_equal_evidentlys(method: str | None, small: bool) -> None:
    for name, reference, current in both(categorical_pairs(), small):
        if method == "z" and len(set(reference) | set(current)) > 2:
            continue  # Evidently's Z test is for two values
        ours = exact_test(reference, current, "categorical", method, None)
        theirs = evidently_test(reference, current, "categorical", method, None)
        assert ours.method == theirs.method, name
        assert ours.score == pytest.approx(theirs.score, rel=1e-9, abs=1e-12), name
        assert ours.drifted == theirs.drifted, name


def assert_same(left: StatResult, right: StatResult) -> None:
    """Equal results, up to the order float sums were taken in."""
    assert (left.method, left.drifted, left.error_bound) == (right.method, right.drifted, right.error_bound)
    assert left.score == pytest.approx(right.score, rel=1e-12, abs=1e-15)


def summarised(reference: pd.Series, current: pd.Series, kind: str, parts: int = 1):
    ref = reference_summary(reference, kind)
    batch = empty_like({"c": ref})["c"]
    for chunk in np.array_split(current.to_numpy(), parts):
        batch.add(pd.Series(chunk))
    return ref, batch


def test_summary_wasserstein_stays_within_its_documented_bound() -> None:
    for name, reference, current in both(numeric_pairs()):
        continuous = pd.Series(reference.to_numpy(dtype=float) + RNG.normal(0, 1e-3, len(reference)))
        for ref_values in (reference, continuous):
            exact = exact_test(ref_values, current, "numeric", "wasserstein", None)
            ref, batch = summarised(ref_values, current, "numeric", parts=3)
            result = summary_test(ref, batch, "wasserstein", None)
            assert result.error_bound <= 1 / BINS_PER_STD + 1e-12
            assert abs(result.score - exact.score) <= result.error_bound + 1e-12, name
    # Exact value counts on both sides: no error at all.
    ref, batch = summarised(
        pd.Series(RNG.integers(0, 24, 1500)), pd.Series(RNG.integers(0, 24, 900)), "numeric"
    )
    assert summary_test(ref, batch, "wasserstein", None).error_bound == 0.0


def test_summary_wasserstein_error_on_continuous_data_is_far_below_the_bound() -> None:
    # The bound is the worst case (all of a bin's mass at one edge). On continuous data the mean of
    # the edge CDFs is off by much less; a grid off by one bin would be off by about the full bound.
    for shift in (0.0, 0.05, 0.3):
        reference = pd.Series(RNG.normal(0, 1, 1500))
        current = pd.Series(RNG.normal(shift, 1, 4000))
        exact = exact_test(reference, current, "numeric", "wasserstein", None)
        ref, batch = summarised(reference, current, "numeric", parts=2)
        result = summary_test(ref, batch, "wasserstein", None)
        assert abs(result.score - exact.score) <= result.error_bound / 10, shift


def test_count_tests_from_summaries_are_exact() -> None:
    for name, reference, current in both(categorical_pairs()):
        ref, batch = summarised(reference, current, "categorical", parts=4)
        for method in (None, "jensenshannon", "chisquare"):
            exact = exact_test(reference, current, "categorical", method, None)
            assert summary_test(ref, batch, method, None).score == pytest.approx(exact.score, rel=1e-12), name
    few = numeric_pairs()["few values"]
    ref, batch = summarised(pd.Series(few[0]), pd.Series(few[1]), "numeric", parts=3)
    exact = exact_test(pd.Series(few[0]), pd.Series(few[1]), "numeric", None, None)
    assert summary_test(ref, batch, None, None).method == exact.method == "jensenshannon"
    assert summary_test(ref, batch, None, None).score == pytest.approx(exact.score, rel=1e-12)


def test_jensenshannon_stays_exact_when_the_batch_has_too_many_values_to_count() -> None:
    reference = pd.Series(RNG.integers(0, 10, 1500).astype(float))
    current = pd.Series(np.concatenate([RNG.integers(0, 10, 3000), RNG.uniform(0, 10, 2000)]))
    ref, batch = summarised(reference, current, "numeric", parts=2)
    assert batch.counts is None  # more than EXACT_VALUES distinct values
    exact = exact_test(reference, current, "numeric", "jensenshannon", None)
    assert summary_test(ref, batch, "jensenshannon", None).score == pytest.approx(exact.score, rel=1e-12)


def test_merging_summaries_equals_summarising_the_concatenation() -> None:
    reference = pd.DataFrame(
        {"x": RNG.normal(size=1500), "k": RNG.integers(0, 7, 1500), "c": RNG.choice(list("pq"), 1500)}
    )
    kinds = {"x": "numeric", "k": "numeric", "c": "categorical"}
    ref = summarise(reference, kinds)
    first = pd.DataFrame(
        {"x": RNG.normal(0.2, 2, 700), "k": RNG.integers(0, 9, 700), "c": RNG.choice(list("pqr"), 700)}
    )
    second = pd.DataFrame(
        {"x": RNG.normal(5, 3, 300), "k": RNG.integers(0, 9, 300), "c": RNG.choice(list("pq"), 300)}
    )
    parts = [empty_like(ref), empty_like(ref)]
    for summaries, frame in zip(parts, (first, second), strict=True):
        for column in kinds:
            summaries[column].add(frame[column])
    whole = empty_like(ref)
    for column in kinds:
        whole[column].add(pd.concat([first[column], second[column]]))
        merged = parts[0][column].merge(parts[1][column])
        assert merged.rows == whole[column].rows == 1000
        assert merged.counts == whole[column].counts
        assert merged.below == pytest.approx(whole[column].below) and merged.above == pytest.approx(
            whole[column].above
        )
        if merged.bins is not None:
            assert np.array_equal(merged.bins, whole[column].bins)
        assert_same(
            summary_test(ref[column], merged, None, None),
            summary_test(ref[column], whole[column], None, None),
        )


def test_reference_summaries_survive_json() -> None:
    import json

    frame = pd.DataFrame(
        {"x": RNG.normal(size=1200), "s": RNG.choice([1, 2, 3], 1200), "c": RNG.choice(["a", "b"], 1200)}
    )
    kinds = {"x": "numeric", "s": "categorical", "c": "categorical"}
    for column, summary in summarise(frame, kinds).items():
        again = ColumnSummary.from_json(json.loads(json.dumps(summary.to_json())))
        assert again.counts == summary.counts and again.grid == summary.grid and again.std == summary.std, (
            column
        )
        if summary.bins is not None:
            assert np.array_equal(again.bins, summary.bins)


def test_a_score_within_the_error_of_its_threshold_is_borderline_not_drifted() -> None:
    near = StatResult("wasserstein", 0.1003, 0.1, True, error_bound=0.0005)
    far = StatResult("wasserstein", 0.1006, 0.1, True, error_bound=0.0005)
    exact = StatResult("wasserstein", 0.1, 0.1, True)
    assert near.borderline and not far.borderline and not exact.borderline
    below = StatResult("wasserstein", 0.0996, 0.1, False, error_bound=0.0005)
    assert below.borderline
    column = ColumnDrift.of("temp", "numeric", near)
    assert column.borderline and not column.drifted
    assert ColumnDrift.of("temp", "numeric", far).drifted
    note = borderline_note([column, ColumnDrift.of("hum", "numeric", far)])
    assert "temp (wasserstein 0.1003 vs 0.1)" in note and "hum" not in note
    assert borderline_note([ColumnDrift.of("hum", "numeric", far)]) is None


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_file_streamed_in_record_batches_equals_the_whole_batch(tmp_path: Path, suffix: str) -> None:
    reference = pd.DataFrame(
        {"x": RNG.normal(size=1500), "k": RNG.integers(0, 4, 1500), "c": RNG.choice(list("abc"), 1500)}
    )
    batch = pd.DataFrame(
        {"x": RNG.normal(0.15, 1.0, 5000), "k": RNG.integers(0, 5, 5000), "c": RNG.choice(list("abcd"), 5000)}
    )
    batch.loc[::11, "x"] = np.nan
    path = tmp_path / f"batch{suffix}"
    batch.to_parquet(path, index=False) if suffix == ".parquet" else batch.to_csv(path, index=False)
    kinds = {"x": "numeric", "k": "numeric", "c": "categorical"}
    ref = summarise(reference, kinds)
    types = {"x": "float64", "k": "float64", "c": "string"}
    chunks = list(iter_file_batches(path, list(kinds), types, rows=700))
    assert len(chunks) > 3 and sum(len(c) for c in chunks) == 5000
    streamed = summarise_stream(iter(chunks), lambda chunk: chunk, ref, 1000, seed=0)
    once = summarise_stream([batch], lambda chunk: chunk, ref, 1000, seed=0)
    assert streamed.rows == once.rows == 5000 and len(streamed.sample) == 1000
    for column, kind in kinds.items():
        from_stream = summary_test(ref[column], streamed.summaries[column], None, None)
        assert_same(from_stream, summary_test(ref[column], once.summaries[column], None, None))
        exact = exact_test(finite_values(reference[column]), finite_values(batch[column]), kind, None, None)
        assert from_stream.method == exact.method and from_stream.drifted == exact.drifted
        assert abs(from_stream.score - exact.score) <= from_stream.error_bound + 1e-12


def test_bounded_sample_keeps_a_uniform_sample_in_arrival_order() -> None:
    frame = pd.DataFrame({"i": np.arange(10_000)})
    sample = BoundedSample(500, seed=3)
    for start in range(0, 10_000, 1200):
        sample.add(frame.iloc[start : start + 1200])
    kept = sample.frame()["i"]
    assert len(kept) == 500 and kept.is_monotonic_increasing and kept.is_unique
    assert 0.4 < (kept < 5000).mean() < 0.6  # not the first rows only
    again = BoundedSample(500, seed=3)
    again.add(frame.iloc[:1200])
    for start in range(1200, 10_000, 1200):
        again.add(frame.iloc[start : start + 1200])
    assert again.frame()["i"].tolist() == kept.tolist()
