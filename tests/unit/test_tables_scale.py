"""Large-data reading: only the configured columns, compact types, and a memory check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_config, synthetic_frame
from core.config import DataConfig
from core.errors import DataError
from core.tables import (
    PEAK_MEMORY_FACTOR,
    ColumnFilter,
    check_memory,
    columns_to_read,
    compact,
    estimated_frame_mb,
    file_header,
)
from core.validation import validate_table
from tasks.ingest import load_table


def wide_frame(rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "day": pd.date_range("2024-01-01", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M"),
            "small_int": rng.integers(0, 100, rows),
            "big_int": rng.integers(0, 10**12, rows),
            "ratio": rng.uniform(0, 1, rows),
            "color": rng.choice(["red", "green", "blue"], rows),
            "comment": [f"free text {i}" for i in range(rows)],
            "unused": rng.normal(size=rows),
            "y": rng.normal(size=rows) * 1000,
        }
    )


def test_compact_downcasts_losslessly_and_keeps_values() -> None:
    frame = wide_frame()
    before = frame.copy()
    small = compact(frame, protect=("y", "day"))
    pd.testing.assert_frame_equal(frame, before)  # the input is not modified
    assert small["small_int"].dtype == np.int8
    assert small["big_int"].dtype == np.int64  # does not fit a smaller integer
    assert small["ratio"].dtype == np.float32
    assert isinstance(small["color"].dtype, pd.CategoricalDtype)
    assert small["comment"].dtype == object  # every value distinct: not a category
    assert small["y"].dtype == np.float64 and small["day"].dtype == object  # protected
    assert (small["small_int"] == frame["small_int"]).all() and (small["big_int"] == frame["big_int"]).all()
    np.testing.assert_allclose(small["ratio"], frame["ratio"], rtol=1e-6)
    assert list(small["color"].astype(str)) == list(frame["color"])
    compacted = ["small_int", "ratio", "color"]
    assert (
        small[compacted].memory_usage(deep=True).sum() < 0.2 * frame[compacted].memory_usage(deep=True).sum()
    )


def test_columns_to_read_drops_and_keeps() -> None:
    header = list(wide_frame(5).columns)
    dropping = columns_to_read(make_config("x.csv", features={"drop": ["unused", "comment", "y"]}))
    assert dropping.select(header) == ["day", "small_int", "big_int", "ratio", "color", "y"]  # target kept
    listing = columns_to_read(make_config("x.csv", features={"numeric": ["ratio"], "categorical": ["color"]}))
    assert listing.select(header) == ["day", "ratio", "color", "y"]
    assert columns_to_read(make_config("x.csv")).select(header) == header


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_reads_only_selected_columns_with_compact_types(tmp_path: Path, suffix: str) -> None:
    frame = wide_frame()
    path = tmp_path / f"data{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, index=False)
    config = make_config(str(path), features={"drop": ["unused", "comment"]})
    loaded = load_table(config.data, columns_to_read(config))
    assert list(loaded.columns) == ["day", "small_int", "big_int", "ratio", "color", "y"]
    assert loaded["small_int"].dtype == np.int8 and loaded["ratio"].dtype == np.float32
    assert loaded["y"].dtype == np.float64
    np.testing.assert_allclose(loaded["y"], frame["y"])
    typed, schema = validate_table(loaded, config)
    assert schema.numeric == ["small_int", "big_int", "ratio"] and schema.categorical == ["color"]
    assert typed["day"].dtype.kind == "M"


def test_compact_dtypes_can_be_switched_off(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    wide_frame(50).to_csv(path, index=False)
    loaded = load_table(DataConfig(source=str(path), compact_dtypes=False))
    assert loaded["small_int"].dtype == np.int64 and loaded["ratio"].dtype == np.float64


def test_parquet_estimate_is_close_to_the_frame_in_memory(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"a": np.arange(200_000, dtype="int64"), "b": np.random.default_rng(0).random(200_000)}
    )
    path = tmp_path / "data.parquet"
    frame.to_parquet(path, index=False)
    actual_mb = frame.memory_usage().sum() / 2**20
    assert 0.5 * actual_mb < estimated_frame_mb(path, ["a", "b"], ["a", "b"]) < 2 * actual_mb
    assert estimated_frame_mb(path, ["a"], ["a", "b"]) < 0.7 * actual_mb  # only the selected column


def test_data_that_cannot_fit_is_refused_with_the_numbers(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    synthetic_frame(40_000).to_csv(path, index=False)
    size_mb = path.stat().st_size / 2**20
    with pytest.raises(DataError) as info:
        load_table(DataConfig(source=str(path), memory_limit_mb=1))
    message = str(info.value)
    assert f"The data file {path} (5 columns, about {size_mb:,.1f} MB once read)" in message
    assert (
        f"needs about {size_mb * PEAK_MEMORY_FACTOR:,.1f} MB to train on, "
        "but data.memory_limit_mb allows 1 MB" in message
    )
    assert "list only the columns you need" in message
    # The same file fits when the limit allows it: the check is about size, not format.
    check_memory(path, file_header(path), file_header(path), limit_mb=int(size_mb * PEAK_MEMORY_FACTOR) + 2)


def test_memory_check_uses_the_machine_when_no_limit_is_set(tmp_path: Path, monkeypatch) -> None:
    import core.tables as ingest

    path = tmp_path / "data.csv"
    synthetic_frame(2000).to_csv(path, index=False)
    monkeypatch.setattr(ingest, "available_memory_mb", lambda: 0.01)
    with pytest.raises(DataError, match="but this machine has 0 MB available"):
        load_table(DataConfig(source=str(path)))
    monkeypatch.undo()
    assert ingest.available_memory_mb() > 1  # the real reading


def test_column_filter_never_drops_protected_columns() -> None:
    chooser = ColumnFilter(keep=None, drop=("y", "x"), protect=("y",))
    assert chooser.select(["x", "y", "z"]) == ["y", "z"]
