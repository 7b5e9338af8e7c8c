"""The source edge: read the configured table from a file, an http(s) URL or a SQL database.

Downloads are kept in the settings' cache folder; secrets from `${VAR}` are expanded only here,
where the source is opened, and never shown in an error.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
from prefect import task

from core.config import DataConfig, expand_env
from core.errors import BadInputError, DataError
from core.secrets import mask, redact_url, secret_values
from core.tables import ColumnFilter, compact, read_file, sha256_of, zip_member
from tasks.options import io_edge_options
from tasks.settings import Settings

DOWNLOAD_TIMEOUT_S = 60


def download(url: str, expected_sha256: str | None, member: str | None, cache_dir: Path) -> Path:
    """Download `url` once into `cache_dir`, unzip `member` if given, and verify its sha256.

    Raises:
        DataError: The download failed and no cached copy exists, or the checksum differs.
    """
    name = member or Path(url.split("?")[0]).name or "download"
    target = cache_dir / hashlib.sha256(url.encode()).hexdigest()[:16] / name
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
            payload = zip_member(payload, member, redact_url(url))
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


def read_sql(data: DataConfig, columns: ColumnFilter) -> pd.DataFrame:
    """Read a query or table through SQLAlchemy. The password is never shown in errors."""
    import sqlalchemy as sa

    if not (data.query or data.table):
        raise DataError(
            f"The SQL source {redact_url(data.source)} has neither data.query nor data.table",
            "Add one of them to the config.",
        )
    query = expand_env(data.query or f'SELECT * FROM "{data.table}"', os.environ, "data.query")
    url = expand_env(data.source, os.environ, "data.source")
    try:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as connection:
                frame = pd.read_sql(sa.text(query), connection)
        finally:
            engine.dispose()
    except (sa.exc.SQLAlchemyError, ImportError, ValueError) as exc:  # ValueError: malformed URL
        message = mask(str(exc).split("\n")[0][:300].replace(url, redact_url(url)))
        raise DataError(
            f"Reading from {redact_url(data.source)} failed: {message}",
            "Check the database URL, its driver, credentials (from ${VAR}) and the query.",
        ) from None
    frame = frame[columns.select(list(frame.columns)) or list(frame.columns)]
    return compact(frame, columns.protect) if data.compact_dtypes else frame


class SourceReadError(RuntimeError):
    """Reading the source failed for a reason that is not the user's input (retried)."""


def load_table(
    data: DataConfig, columns: ColumnFilter | None = None, settings: Settings | None = None
) -> pd.DataFrame:
    """Read the configured source into a DataFrame (the plain function behind `ingest`).

    Every error leaves here with the source's secrets masked (the `${VAR}` values it expands to
    and URL credentials) and without the original exception chained: Prefect stores the message
    in its states, logs and events.

    Args:
        data: The `data` section of the config.
        columns: Which columns to read (default: all).
        settings: Where the download cache is (default: read from the environment now).
    """
    secrets = secret_values(f"{data.source} {data.query or ''}", os.environ)
    try:
        return read_source(data, columns or ColumnFilter(), settings or Settings.from_environment())
    except BadInputError as exc:
        raise type(exc)([mask(p, secrets) for p in exc.problems], mask(exc.fix, secrets)) from None
    except Exception as exc:  # noqa: BLE001 - any failure may quote the expanded source
        raise SourceReadError(mask(f"{type(exc).__name__}: {exc}", secrets)) from None


def read_source(data: DataConfig, columns: ColumnFilter, settings: Settings) -> pd.DataFrame:
    """Expand the source's `${VAR}` values and read it (unmasked errors: see `load_table`)."""
    cache_dir = settings.cache_dir
    if data.is_sql:
        return read_sql(data, columns)
    source = expand_env(data.source, os.environ, "data.source")
    if source.startswith(("http://", "https://")):
        path = download(source, data.sha256, data.member, cache_dir)
    else:
        path = Path(source.removeprefix("file://")).expanduser()
        if data.member and path.suffix == ".zip" and path.is_file():
            extracted = cache_dir / sha256_of(path)[:16] / data.member
            extracted.parent.mkdir(parents=True, exist_ok=True)
            extracted.write_bytes(zip_member(path, data.member, str(path)))
            path = extracted
    return read_file(path, columns, data)


@task(name="ingest", **io_edge_options())
def ingest(
    data: DataConfig, columns: ColumnFilter | None = None, settings: Settings | None = None
) -> pd.DataFrame:
    """Read the raw table from the configured source.

    Args:
        data: The `data` section of the config.
        columns: Which columns to read (see `core.tables.columns_to_read`); default all.
        settings: Where the download cache is.

    Returns:
        The rows as read, with compact types unless `data.compact_dtypes` is false.
    """
    return load_table(data, columns, settings)
