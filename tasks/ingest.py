"""Stage 1: read the raw table from a file, an http(s) URL or a SQL database."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd
from prefect import task

from tasks.config import DataConfig, expand_env, redact_url, secret_values
from tasks.errors import BadInputError, DataError, io_edge_options

PARQUET_SUFFIXES = {".parquet", ".pq"}
DOWNLOAD_TIMEOUT_S = 60


def cache_dir() -> Path:
    """Where downloads are kept: `$RETRAIN_CACHE_DIR` or `.retrain/cache` in the working dir."""
    return Path(os.environ.get("RETRAIN_CACHE_DIR", Path(".retrain") / "cache"))


def sha256_of(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, expected_sha256: str | None, member: str | None) -> Path:
    """Download `url` once into the cache, unzip `member` if given, and verify its sha256.

    Raises:
        DataError: The download failed and no cached copy exists, or the checksum differs.
    """
    name = member or Path(url.split("?")[0]).name or "download"
    target = cache_dir() / hashlib.sha256(url.encode()).hexdigest()[:16] / name
    if not (target.is_file() and (expected_sha256 is None or sha256_of(target) == expected_sha256)):
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                payload = response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise DataError(
                f"Could not download {redact_url(url)} ({getattr(exc, 'reason', exc)}) and there "
                "is no cached copy",
                "Without network, pass a local copy with --data PATH or the RETRAIN_DATA "
                "environment variable.",
            ) from None
        if member:
            try:
                with zipfile.ZipFile(io.BytesIO(payload)) as archive:
                    matches = [n for n in archive.namelist() if Path(n).name == member]
                    if not matches:
                        raise DataError(
                            f"The archive {redact_url(url)} has no member named {member}",
                            "Fix data.member in the config.",
                        )
                    payload = archive.read(matches[0])
            except zipfile.BadZipFile:
                raise DataError(
                    f"{redact_url(url)} is not a zip archive but data.member is set",
                    "Remove data.member or point data.source at the archive.",
                ) from None
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".part")
        partial.write_bytes(payload)
        partial.replace(target)
    if expected_sha256 and sha256_of(target) != expected_sha256:
        actual = sha256_of(target)
        target.unlink()
        raise DataError(
            f"The file downloaded from {redact_url(url)} has sha256 {actual}, not the expected "
            f"{expected_sha256}",
            "The source changed or the download was corrupted: check data.source and data.sha256.",
        )
    return target


def _duplicated_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    seen: set[str] = set()
    return sorted({c for c in header if c in seen or seen.add(c)})


def read_file(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file, with clear errors for missing, empty or unreadable files."""
    if not path.exists():
        raise DataError(
            f"The data file {path} does not exist",
            "Check data.source in the config, or the path given with --data / RETRAIN_DATA.",
        )
    if path.is_dir() or path.stat().st_size == 0:
        raise DataError(f"The data file {path} is empty or a directory", "Point at a CSV or Parquet file.")
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            frame = pd.read_parquet(path)
        else:
            with path.open("rb") as handle:
                if b"\x00" in handle.read(8192):
                    raise DataError(
                        f"The data file {path} is binary, not CSV text",
                        "Use a .csv or .parquet file (Parquet needs the .parquet suffix).",
                    )
            duplicated = _duplicated_header(path)
            if duplicated:
                raise DataError(
                    f"The header of {path} repeats the column names {duplicated}",
                    "Rename the columns so that each name appears once.",
                )
            frame = pd.read_csv(path, low_memory=False)
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


def read_sql(data: DataConfig) -> pd.DataFrame:
    """Read a query or table through SQLAlchemy. The password is never shown in errors."""
    import sqlalchemy as sa

    if not (data.query or data.table):
        raise DataError(
            f"The SQL source {redact_url(data.source)} has neither data.query nor data.table",
            "Add one of them to the config.",
        )
    query = expand_env(data.query or f'SELECT * FROM "{data.table}"', "data.query")
    url = expand_env(data.source, "data.source")
    try:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as connection:
                return pd.read_sql(sa.text(query), connection)
        finally:
            engine.dispose()
    except (sa.exc.SQLAlchemyError, ImportError, ValueError) as exc:  # ValueError: malformed URL
        message = str(exc).split("\n")[0][:300].replace(url, redact_url(url))
        for value in secret_values(data.source):
            message = message.replace(value, "***")
        raise DataError(
            f"Reading from {redact_url(data.source)} failed: {message}",
            "Check the database URL, its driver, credentials (from ${VAR}) and the query.",
        ) from None


def load_table(data: DataConfig) -> pd.DataFrame:
    """Read the configured source into a DataFrame (the plain function behind `ingest`)."""
    if data.source.startswith(("http://", "https://")):
        path = download(expand_env(data.source, "data.source"), data.sha256, data.member)
    elif data.is_sql:
        return read_sql(data)
    else:
        path = Path(expand_env(data.source, "data.source").removeprefix("file://")).expanduser()
        if data.member and path.suffix == ".zip" and path.is_file():
            if not zipfile.is_zipfile(path):
                raise DataError(f"{path} is not a zip archive", "Point data.source at a valid .zip file.")
            with zipfile.ZipFile(path) as archive:
                matches = [n for n in archive.namelist() if Path(n).name == data.member]
                if not matches:
                    raise DataError(
                        f"The archive {path} has no member named {data.member}",
                        "Fix data.member in the config.",
                    )
                extracted = cache_dir() / sha256_of(path)[:16] / data.member
                extracted.parent.mkdir(parents=True, exist_ok=True)
                extracted.write_bytes(archive.read(matches[0]))
                path = extracted
    return read_file(path)


@task(name="ingest", **io_edge_options())
def ingest(data: DataConfig) -> pd.DataFrame:
    """Read the raw table from the configured source.

    Args:
        data: The `data` section of the config.

    Returns:
        The raw rows, as read.
    """
    return load_table(data)


def fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of a table's column names, dtypes and values: the same data gives the same hash."""
    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
