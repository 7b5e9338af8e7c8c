"""Reading tables: a CSV or Parquet file, only the columns the config needs, in compact types.

Also the memory check before a read, zip members, and the fingerprint of a table's content.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.config import DataConfig, PipelineConfig
from core.errors import BadInputError, DataError

PARQUET_SUFFIXES = {".parquet", ".pq"}
# Peak memory of a run per MB of the estimated frame (the CSV text of the columns read): the
# parse buffers while reading, then the encoded float64 features of the final fit. Measured
# 5.3x at 3M rows (benchmarks/scale.py); a little headroom on top.
PEAK_MEMORY_FACTOR = 6
# Text columns with at most this share of distinct values are stored as categories.
CATEGORY_MAX_DISTINCT_SHARE = 0.5
MB = 1 << 20


@dataclass(frozen=True)
class ColumnFilter:
    """Which columns to read: only `keep` when the config lists every column, never `drop`."""

    keep: tuple[str, ...] | None = None
    drop: tuple[str, ...] = ()
    protect: tuple[str, ...] = ()

    def select(self, header: list[str]) -> list[str]:
        """The columns of `header` to read, in file order."""
        wanted = [c for c in header if c not in self.drop or c in self.protect]
        return wanted if self.keep is None else [c for c in wanted if c in self.keep]


def columns_to_read(config: PipelineConfig) -> ColumnFilter:
    """The config's columns: target, time and features, or everything but `features.drop`."""
    fixed = tuple(c for c in (config.target, config.time_column) if c)
    features = config.features
    keep = None
    if features.numeric is not None and features.categorical is not None:
        keep = (*fixed, *features.numeric, *features.categorical)
    return ColumnFilter(keep, tuple(features.drop), protect=fixed)


def available_memory_mb() -> float:
    """Memory this process may still use: the smaller of the machine's and its cgroup's."""
    import psutil

    available = psutil.virtual_memory().available
    limit, used = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    try:
        if limit.read_text().strip() != "max":
            available = min(available, int(limit.read_text()) - int(used.read_text()))
    except (OSError, ValueError):
        pass
    return available / MB


def estimated_frame_mb(path: Path, columns: list[str], header: list[str]) -> float:
    """Memory the selected columns take once read, estimated without reading the rows.

    Parquet: the uncompressed size of their column chunks. CSV: their share of the text.
    """
    if path.suffix.lower() in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        metadata = pq.ParquetFile(path).metadata
        wanted = set(columns)
        total = 0
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for index in range(row_group.num_columns):
                chunk = row_group.column(index)
                if chunk.path_in_schema.split(".")[0] in wanted:
                    total += chunk.total_uncompressed_size
        return total / MB
    return path.stat().st_size * len(columns) / max(1, len(header)) / MB


def check_memory(path: Path, columns: list[str], header: list[str], limit_mb: int | None) -> None:
    """Refuse, with the numbers, a file that would not fit in memory while training.

    Raises:
        DataError: The estimated peak exceeds `limit_mb` or the memory available.
    """
    frame_mb = estimated_frame_mb(path, columns, header)
    needed = frame_mb * PEAK_MEMORY_FACTOR
    available = limit_mb if limit_mb is not None else available_memory_mb()
    if needed > available:
        allowed = (
            f"data.memory_limit_mb allows {limit_mb} MB"
            if limit_mb is not None
            else f"this machine has {available:,.0f} MB available"
        )
        raise DataError(
            f"The data file {path} ({len(columns)} columns, about {frame_mb:,.1f} MB once read) needs "
            f"about {needed:,.1f} MB to train on, but {allowed}",
            "Read fewer rows (a smaller extract, or a SQL source with a query), list only the columns "
            "you need in features.numeric and features.categorical, or use a machine with more "
            "memory (data.memory_limit_mb sets the limit).",
        )


def compact(frame: pd.DataFrame, protect: tuple[str, ...] = ()) -> pd.DataFrame:
    """A copy with the smallest lossless integer types, float32 floats and categorical text.

    Columns in `protect` (target, time) keep their floats and text as they are.
    """
    columns = {name: compact_column(values, name in protect) for name, values in frame.items()}
    return pd.DataFrame(columns, index=frame.index)


def compact_column(values: pd.Series, protected: bool = False) -> pd.Series:
    """One column in its compact type (see `compact`)."""
    if pd.api.types.is_bool_dtype(values):
        return values
    if pd.api.types.is_integer_dtype(values):
        return pd.to_numeric(values, downcast="integer")
    if pd.api.types.is_float_dtype(values) and not protected:
        return pd.to_numeric(values, downcast="float")
    if values.dtype == object and not protected and _few_distinct(values):
        return values.astype("category")
    return values


def compact_arrow_frame(frame: pd.DataFrame, protect: tuple[str, ...]) -> pd.DataFrame:
    """Arrow-backed columns as compact NumPy columns, converted one at a time.

    The whole table never exists as int64/float64 NumPy columns next to the Arrow buffers, which
    would double the memory a large read needs.
    """
    import pyarrow as pa

    columns = {}
    for name in list(frame.columns):
        values = pa.array(frame.pop(name).array).to_pandas(date_as_object=False)
        columns[name] = compact_column(values, name in protect)
    return pd.DataFrame(columns)


def holds_bytes(values: pd.Series) -> bool:
    """Whether a text column holds undecoded bytes (an all-text column is told in one C pass)."""
    if pd.api.types.infer_dtype(values, skipna=True) in {"string", "empty"}:
        return False
    return bool(values.map(type).eq(bytes).any())


def _few_distinct(values: pd.Series) -> bool:
    """Text only, with few distinct values (each distinct value is looked at once, not each row)."""
    present = values.dropna()
    distinct = present.unique()
    return (
        len(present) > 0
        and len(distinct) <= CATEGORY_MAX_DISTINCT_SHARE * len(present)
        and all(type(value) is str for value in distinct)
    )


def sha256_of(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _repeated_names(header: list[str]) -> list[str]:
    seen: set[str] = set()
    return sorted({c for c in header if c in seen or seen.add(c)})


def file_header(path: Path) -> list[str]:
    """Column names of a CSV or Parquet file, read without the rows."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    # utf-8-sig: an Excel "CSV UTF-8" export starts with a byte-order mark, which is no part of a name
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return next(csv.reader(handle), [])
    except UnicodeDecodeError:
        raise DataError(
            f"The data file {path} is not UTF-8 text: it has bytes UTF-8 cannot read (a Latin-1 or "
            "other legacy export, or not a CSV file at all)",
            'Save the file as UTF-8 CSV ("CSV UTF-8" in Excel) and run again.',
        ) from None


def read_file(
    path: Path, columns: ColumnFilter | None = None, data: DataConfig | None = None
) -> pd.DataFrame:
    """Read a CSV or Parquet file, with clear errors for missing, empty, unreadable or too large files.

    Reads with pyarrow, only the columns `columns` selects, and (by default) compacts the types.
    """
    data = data or DataConfig(source=str(path))
    columns = columns or ColumnFilter()
    if not path.exists():
        raise DataError(
            f"The data file {path} does not exist",
            "Check data.source in the config, or the path given with --data / RETRAIN_DATA.",
        )
    if path.is_dir() or path.stat().st_size == 0:
        raise DataError(f"The data file {path} is empty or a directory", "Point at a CSV or Parquet file.")
    try:
        if path.suffix.lower() not in PARQUET_SUFFIXES:
            with path.open("rb") as handle:
                if b"\x00" in handle.read(8192):
                    raise DataError(
                        f"The data file {path} is binary, not CSV text",
                        "Use a .csv or .parquet file (Parquet needs the .parquet suffix).",
                    )
        header = file_header(path)
        duplicated = _repeated_names(header) if path.suffix.lower() not in PARQUET_SUFFIXES else []
        if duplicated:
            raise DataError(
                f"The header of {path} repeats the column names {duplicated}",
                "Rename the columns so that each name appears once.",
            )
        if not header:
            raise DataError(f"The data file {path} has no columns", "Point at a non-empty CSV file.")
        selected = columns.select(header) or header
        check_memory(path, selected, header, data.memory_limit_mb)
        backend = {"dtype_backend": "pyarrow"} if data.compact_dtypes else {}
        if path.suffix.lower() in PARQUET_SUFFIXES:
            frame = pd.read_parquet(path, columns=selected, **backend)
        else:
            frame = pd.read_csv(path, engine="pyarrow", usecols=selected, **backend)
        frame = compact_arrow_frame(frame, columns.protect) if data.compact_dtypes else frame
        release_arrow_memory()
        undecoded = [c for c in frame.select_dtypes(object) if holds_bytes(frame[c])]
        if undecoded:
            raise UnicodeDecodeError("utf-8", b"", 0, 1, f"columns {undecoded} are not UTF-8 text")
    except BadInputError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"The data file {path} has no columns", "Point at a non-empty CSV file.") from None
    except (UnicodeDecodeError, pd.errors.ParserError, OSError, ValueError) as exc:
        raise DataError(
            f"The data file {path} cannot be read ({type(exc).__name__}: {str(exc)[:200]})",
            "Check that it is a valid CSV or Parquet file.",
        ) from None
    return frame


def release_arrow_memory() -> None:
    """Hand pyarrow's freed read buffers back to the system.

    Its allocator keeps them otherwise: after reading 1M rows of CSV the process held about
    280 MB more than the frame it returned, for the rest of the run.
    """
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of a table's column names, dtypes and values: the same data gives the same hash."""
    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def zip_member(archive: Path | bytes, member: str, shown_as: str) -> bytes:
    """The bytes of the file named `member` (at any depth) in a zip archive.

    Args:
        archive: The archive's path, or its bytes as downloaded.
        member: The file name to find, as in `data.member`.
        shown_as: How to name the archive in an error (a path, or a URL without its password).

    Raises:
        DataError: Not a zip archive, no member of that name, or one whose path leaves the archive
            (with '..' or absolute).
    """
    try:
        with zipfile.ZipFile(io.BytesIO(archive) if isinstance(archive, bytes) else archive) as opened:
            matches = [n for n in opened.namelist() if Path(n.replace("\\", "/")).name == member]
            if not matches:
                raise DataError(
                    f"The archive {shown_as} has no member named {member}", "Fix data.member in the config."
                )
            escaping = [n for n in matches if _leaves_archive(n)]
            if escaping:
                raise DataError(
                    f"The archive {shown_as} holds {member} as {escaping[0]!r}, a path outside the "
                    "archive: members with '..' or absolute paths are not read",
                    "data.member names a plain file inside the archive: repack the archive with "
                    "plain paths, or extract the file yourself and pass it with --data PATH.",
                )
            return opened.read(matches[0])
    except zipfile.BadZipFile:
        raise DataError(
            f"{shown_as} is not a zip archive but data.member is set",
            "Remove data.member or point data.source at the archive.",
        ) from None


def _leaves_archive(name: str) -> bool:
    """Whether a member's path has a '..' part or is absolute (also in Windows form)."""
    path = name.replace("\\", "/")
    return ".." in path.split("/") or path.startswith("/") or (len(path) > 1 and path[1] == ":")


# Rows per record batch when a batch is streamed: a few tens of MB per batch for a dozen columns.
STREAM_BATCH_ROWS = 262_144
# Text lines of a CSV file looked at to estimate its rows.
SNIFF_LINE_BYTES = 1 << 16


def estimated_rows(path: Path) -> int:
    """Rows of a Parquet file (its metadata) or a CSV file (its size over the mean line length)."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with path.open("rb") as handle:
        head = handle.read(SNIFF_LINE_BYTES)
    lines = max(1, head.count(b"\n"))
    return int(path.stat().st_size / (len(head) / lines))


def arrow_type(kind: str):  # noqa: ANN201 - a pyarrow DataType
    """The pyarrow type of a column kind: `float64`, `int64`, `bool` or `string`."""
    import pyarrow as pa

    return {"float64": pa.float64(), "int64": pa.int64(), "bool": pa.bool_()}.get(kind, pa.string())


def iter_file_batches(
    path: Path, columns: list[str], types: dict[str, str], rows: int = STREAM_BATCH_ROWS
) -> Iterator[pd.DataFrame]:
    """The selected columns of a CSV or Parquet file, `rows` rows at a time.

    Parquet is read by row batches in its own types (memory: about one row group). CSV is parsed
    block by block with the given `types` (see `arrow_type`; columns not named are inferred), so
    a block cannot change a column's type half-way through the file.

    Raises:
        DataError: A value does not parse as its column's type, or the file cannot be read.
    """
    import pyarrow as pa

    header = file_header(path)
    selected = [c for c in header if c in set(columns)]
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            # Parquet decodes a whole row group at once; without pre-buffering and with a small read
            # buffer that group is all it holds (pre-buffering added about 400 MB on 1M-row groups).
            opened = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
            batches = opened.iter_batches(batch_size=rows, columns=selected, use_threads=False)
        else:
            import pyarrow.csv as pa_csv

            convert = pa_csv.ConvertOptions(
                include_columns=selected,
                column_types={c: arrow_type(types[c]) for c in selected if c in types},
            )
            # A block of about `rows` rows (and of several of the longest lines seen at the start).
            with path.open("rb") as handle:
                head = handle.read(SNIFF_LINE_BYTES)
            longest = max((len(line) for line in head.split(b"\n")), default=0)
            mean = len(head) / max(1, head.count(b"\n"))
            block = max(1 << 14, 4 * longest, int(mean * rows))
            batches = pa_csv.open_csv(
                path, read_options=pa_csv.ReadOptions(block_size=block), convert_options=convert
            )
        for batch in batches:
            frame = batch.to_pandas()
            del batch
            release_arrow_memory()
            yield frame
    except pa.ArrowInvalid as exc:
        raise DataError(
            f"The data file {path} has a value that does not fit its column's type ({str(exc)[:200]})",
            "Fix the value in the file: every feature column needs values of the champion's type.",
        ) from None
    except (OSError, pa.ArrowException) as exc:
        raise DataError(
            f"The data file {path} cannot be read ({type(exc).__name__}: {str(exc)[:200]})",
            "Check that it is a valid CSV or Parquet file.",
        ) from None
