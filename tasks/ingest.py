"""The source edge: read the configured table from a file, an http(s) URL or a SQL database.

A drift batch of many rows from a local file or a SQL query is read in record batches instead
(`streams`, `iter_source_batches`).

Downloads are kept in the settings' cache folder; secrets from `${VAR}` are expanded only here,
where the source is opened, and never shown in an error.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from core.config import DataConfig, expand_env
from core.errors import BadInputError, DataError
from core.secrets import mask, redact_url, secret_values
from core.tables import (
    PARQUET_SUFFIXES,
    STREAM_BATCH_ROWS,
    ColumnFilter,
    compact,
    estimated_rows,
    iter_file_batches,
    read_file,
    sha256_of,
    zip_member,
)
from tasks.options import io_edge_options
from tasks.settings import Settings

DOWNLOAD_TIMEOUT_S = 60
# How much of a download is looked at to tell a data file from an error page.
SNIFF_BYTES = 1 << 16


def download(url: str, expected_sha256: str | None, member: str | None, cache_dir: Path) -> Path:
    """Download `url` into `cache_dir`, unzip `member` if given, and check what arrived.

    With `expected_sha256`, a cached copy with that checksum is used as it is. Without it, a cached
    copy is revalidated with the server's ETag / Last-Modified (kept beside it in a small JSON
    file): 304 keeps it, a new response replaces it, and an unreachable server leaves it in use
    with a warning. Only a data file is cached: CSV text, Parquet, or a zip holding `member`.

    Raises:
        DataError: The download failed and no cached copy exists, the checksum differs, or the
            server sent something that is not a data file (such as an HTML page).
    """
    name = member or Path(url.split("?")[0]).name or "download"
    target = cache_dir / hashlib.sha256(url.encode()).hexdigest()[:16] / name
    validators = target.with_name(target.name + ".http.json")
    if target.is_file() and expected_sha256 is not None and sha256_of(target) == expected_sha256:
        return target
    cached = target.is_file() and expected_sha256 is None
    headers = {}
    if cached:
        known = _read_validators(validators)
        if known.get("etag"):
            headers["If-None-Match"] = known["etag"]
        if known.get("last_modified"):
            headers["If-Modified-Since"] = known["last_modified"]
    try:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
            payload = response.read()
            fresh = {
                "etag": response.headers.get("ETag"),
                "last_modified": response.headers.get("Last-Modified"),
            }
    except urllib.error.HTTPError as exc:
        if cached and exc.code == 304:
            return target
        payload = None
        failure: object = f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        payload = None
        failure = getattr(exc, "reason", exc)
    if payload is None:
        if cached:
            _logger().warning(
                "Could not revalidate the cached download of %s (%s): using the cached copy",
                redact_url(url),
                failure,
            )
            return target
        raise DataError(
            f"Could not download {redact_url(url)} ({failure}) and there is no cached copy",
            "Without network, pass a local copy with --data PATH or the RETRAIN_DATA environment variable.",
        )
    not_data = _not_a_data_file(payload, None)
    if member and not not_data:
        payload = zip_member(payload, member, redact_url(url))
    if expected_sha256 is not None:
        actual = hashlib.sha256(payload).hexdigest()
        if actual != expected_sha256:
            target.unlink(missing_ok=True)
            raise DataError(
                f"The file downloaded from {redact_url(url)} has sha256 {actual}, not the expected "
                f"{expected_sha256}",
                "The source changed or the download was corrupted: check data.source and data.sha256.",
            )
    else:
        not_data = not_data or _not_a_data_file(payload, name)
        if not_data:
            raise DataError(
                f"The server at {redact_url(url)} returned something that is not a data file "
                f"({not_data}), so nothing is cached",
                "Check data.source (a login or error page instead of the file?) and data.member, or "
                "download the file yourself and pass it with --data PATH.",
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(target, payload)
    # After the data: validators newer than the file would let a 304 keep a stale copy.
    _write_atomically(validators, json.dumps({k: v for k, v in fresh.items() if v}).encode())
    return target


def _not_a_data_file(payload: bytes, name: str | None) -> str | None:
    """Why `payload` is not a data file named `name`, or None if it looks like one.

    With `name` None, only an HTML page is refused (before a zip is opened). A `.parquet` / `.pq`
    name needs Parquet's magic bytes; any other name CSV text whose header has several columns.
    """
    head = payload[:SNIFF_BYTES]
    text_start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text_start[:1] == b"<":
        return f"an HTML or XML page starting {text_start[:40].decode('utf-8', 'replace')!r}"
    if name is None:
        return None
    if Path(name).suffix.lower() in PARQUET_SUFFIXES:
        return None if payload[:4] == b"PAR1" else "not Parquet: no PAR1 magic bytes"
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=len(head) == len(payload))
    except UnicodeDecodeError:
        return "not UTF-8 text, so not a CSV file"
    header = next(csv.reader(io.StringIO(text)), [])
    if len(header) < 2:
        first_line = text.partition("\n")[0][:40]
        return f"not a CSV file: its first line {first_line!r} has fewer than two columns"
    return None


def _read_validators(path: Path) -> dict[str, str]:
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _write_atomically(path: Path, content: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(content)
    partial.replace(path)


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:  # called outside a flow run (tests, scripts)
        return logging.getLogger(__name__)


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


# A batch with more rows than this is streamed in record batches by the drift check.
STREAM_ABOVE_ROWS = 1_000_000


def local_path(data: DataConfig) -> Path | None:
    """The local file a file source names (no URL, no zip member), or None."""
    source = expand_env(data.source, os.environ, "data.source")
    if data.is_sql or data.member or source.startswith(("http://", "https://")):
        return None
    path = Path(source.removeprefix("file://")).expanduser()
    return path if path.is_file() and path.stat().st_size > 0 else None


def source_rows(data: DataConfig) -> int | None:
    """Rows of a local file (Parquet metadata, CSV estimate) or a SQL query (counted); None otherwise."""
    if data.is_sql:
        import sqlalchemy as sa

        with _sql_connection(data) as (connection, query):
            return int(connection.execute(sa.text(f"SELECT COUNT(*) FROM ({query}) AS counted")).scalar())
    path = local_path(data)
    return estimated_rows(path) if path is not None else None


@task(name="size-batch", cache_policy=NO_CACHE)
def streams(data: DataConfig) -> bool:
    """Whether the drift check streams this source: a local file or SQL query of many rows.

    A source that cannot be sized is read whole, which reports what is wrong with it.
    """
    try:
        rows = source_rows(data)
    except Exception:  # noqa: BLE001 - reported by the whole read
        return False
    return rows is not None and rows > STREAM_ABOVE_ROWS


class _sql_connection:
    """A connection to a SQL source and its query, with the password masked in every error."""

    def __init__(self, data: DataConfig) -> None:
        self.data = data

    def __enter__(self):  # noqa: ANN204
        import sqlalchemy as sa

        data = self.data
        if not (data.query or data.table):
            raise DataError(
                f"The SQL source {redact_url(data.source)} has neither data.query nor data.table",
                "Add one of them to the config.",
            )
        self.query = expand_env(data.query or f'SELECT * FROM "{data.table}"', os.environ, "data.query")
        self.url = expand_env(data.source, os.environ, "data.source")
        self.engine = sa.create_engine(self.url)
        self.connection = self.engine.connect().execution_options(stream_results=True)
        return self.connection, self.query

    def __exit__(self, *exc: object) -> None:
        self.connection.close()
        self.engine.dispose()


def iter_source_batches(
    data: DataConfig, columns: list[str], types: dict[str, str], settings: Settings
) -> Iterator[pd.DataFrame]:
    """The source's `columns` in record batches (files: see `iter_file_batches`; SQL: in chunks).

    Errors leave with the source's secrets masked, as in `load_table`.
    """
    secrets = secret_values(f"{data.source} {data.query or ''}", os.environ)
    try:
        if data.is_sql:
            import sqlalchemy as sa

            with _sql_connection(data) as (connection, query):
                for chunk in pd.read_sql(sa.text(query), connection, chunksize=STREAM_BATCH_ROWS):
                    yield chunk[[c for c in chunk.columns if c in set(columns)]]
        else:
            yield from iter_file_batches(local_path(data), columns, types, STREAM_BATCH_ROWS)
    except BadInputError as exc:
        raise type(exc)([mask(p, secrets) for p in exc.problems], mask(exc.fix, secrets)) from None
    except Exception as exc:  # noqa: BLE001 - any failure may quote the expanded source
        raise SourceReadError(mask(f"{type(exc).__name__}: {exc}", secrets)) from None
