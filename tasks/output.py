"""The output edge: write a predictions table to a CSV or Parquet file or a SQL table, all or nothing.

A file is written to a temporary file beside the target and renamed over it, so a reader sees the
old file or the new one, never half of one. A SQL table is written under a temporary name and
renamed in the same transaction that drops the old one. `${VAR}` in a database URL is expanded
only here, and the password never appears in an error.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.config import expand_env
from core.errors import DataError
from core.scoring import output_kind
from core.secrets import mask, redact_url, secret_values


def write_file(table: pd.DataFrame, target: Path, kind: str) -> None:
    """Write `table` to a temporary file in the target's folder, then rename it over `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(handle)
    try:
        if kind == "csv":
            table.to_csv(partial, index=False)
        else:
            table.to_parquet(partial, index=False)
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)


def write_table(table: pd.DataFrame, url: str, name: str) -> None:
    """Replace SQL table `name` with `table` in one transaction (written as a temporary table first)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    staging = f"{name}_tmp_{uuid.uuid4().hex[:8]}"
    try:
        with engine.begin() as connection:
            table.to_sql(staging, connection, index=False)
            quote = connection.dialect.identifier_preparer.quote
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {quote(name)}"))
            connection.execute(sa.text(f"ALTER TABLE {quote(staging)} RENAME TO {quote(name)}"))
    finally:
        engine.dispose()


@task(name="write-predictions", cache_policy=NO_CACHE)
def write_predictions(table: pd.DataFrame, out: str, out_table: str) -> str:
    """Write the predictions to `out` (by suffix, or a SQL table `out_table` at a database URL).

    Returns:
        Where they went, without credentials.

    Raises:
        DataError: The output cannot be written (its message names the target and the reason).
    """
    kind = output_kind(out)
    secrets = secret_values(out, os.environ)
    target = expand_env(out, os.environ, "--out")
    shown = redact_url(out) + (f" (table {out_table})" if kind == "sql" else "")
    try:
        if kind == "sql":
            write_table(table, target, out_table)
        else:
            write_file(table, Path(target.removeprefix("file://")).expanduser(), kind)
    except Exception as exc:  # noqa: BLE001 - any failure may quote the expanded URL
        message = mask(str(exc).split("\n")[0][:300].replace(target, redact_url(target)), secrets)
        raise DataError(
            f"Writing the predictions to {shown} failed: {type(exc).__name__}: {message}",
            "Check that the folder or database is writable, and its URL, driver and credentials.",
        ) from None
    return shown
