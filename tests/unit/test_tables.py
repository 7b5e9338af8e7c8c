"""Unit tests of `tasks/ingest.py`: files, a local HTTP server, SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import socket
import sqlite3
import threading
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import DataConfig
from core.errors import DataError
from core.tables import fingerprint, read_file
from tasks.ingest import download, load_table

SMALL_CSV = "day,x,y\n2024-01-01,1.5,10\n2024-01-02,2.5,20\n2024-01-03,3.5,30\n"


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Downloads and extracted members go to a fresh directory per test."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("RETRAIN_CACHE_DIR", str(cache))
    return cache


# --- files -----------------------------------------------------------------------------------


def test_read_csv(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(SMALL_CSV)
    frame = load_table(DataConfig(source=str(path)))
    assert list(frame.columns) == ["day", "x", "y"]
    assert len(frame) == 3
    assert frame["x"].tolist() == [1.5, 2.5, 3.5]
    assert frame["y"].tolist() == [10, 20, 30]


def test_read_csv_through_file_url(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(SMALL_CSV)
    frame = load_table(DataConfig(source=f"file://{path}"))
    assert frame["y"].sum() == 60


def test_read_parquet(tmp_path: Path) -> None:
    expected = pd.DataFrame({"a": [1, 2, 3, 4], "b": ["p", "q", None, "s"], "c": [0.5, np.nan, 1.5, 2.0]})
    path = tmp_path / "data.parquet"
    expected.to_parquet(path, index=False)
    frame = load_table(DataConfig(source=str(path)))
    pd.testing.assert_frame_equal(frame, expected, check_dtype=False, check_categorical=False)


def test_path_with_env_placeholder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data.csv").write_text(SMALL_CSV)
    monkeypatch.setenv("TEST_INGEST_DIR", str(tmp_path))
    frame = load_table(DataConfig(source="${TEST_INGEST_DIR}/data.csv"))
    assert len(frame) == 3


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.csv"
    with pytest.raises(DataError) as info:
        load_table(DataConfig(source=str(path)))
    assert f"The data file {path} does not exist" in str(info.value)
    assert "--data / RETRAIN_DATA" in str(info.value)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="is empty or a directory"):
        read_file(path)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is empty or a directory"):
        read_file(tmp_path)


def test_blank_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("\n\n\n")
    with pytest.raises(DataError, match="has no columns"):
        read_file(path)


def test_header_only_reads_zero_rows(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("day,x,y\n")
    frame = read_file(path)
    assert len(frame) == 0
    assert list(frame.columns) == ["day", "x", "y"]


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"PK\x03\x04\x00\x00\x01\x02" + bytes(range(256)) * 4)
    with pytest.raises(DataError) as info:
        read_file(path)
    assert "is binary, not CSV text" in str(info.value)
    assert "Parquet needs the .parquet suffix" in str(info.value)


def test_parquet_suffix_on_text_file(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    path.write_text(SMALL_CSV)
    with pytest.raises(DataError, match=r"cannot be read \(Arrow"):
        read_file(path)


def test_non_utf8_csv(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("name,v\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"is not UTF-8 text: it has bytes UTF-8 cannot read"):
        read_file(path)


def test_duplicated_header_names(tmp_path: Path) -> None:
    path = tmp_path / "dupes.csv"
    path.write_text("a,b,a,c,b\n1,2,3,4,5\n")
    with pytest.raises(DataError) as info:
        read_file(path)
    assert "repeats the column names ['a', 'b']" in str(info.value)
    assert "each name appears once" in str(info.value)


def test_local_zip_with_member(tmp_path: Path, cache_in_tmp: Path) -> None:
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("bundle/readme.txt", "not this one")
        handle.writestr("bundle/hour.csv", SMALL_CSV)
    frame = load_table(DataConfig(source=str(archive), member="hour.csv"))
    assert frame["y"].tolist() == [10, 20, 30]
    assert list(cache_in_tmp.rglob("hour.csv")), "the member is extracted into the cache dir"


def test_local_zip_without_the_member(tmp_path: Path) -> None:
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("day.csv", SMALL_CSV)
    with pytest.raises(DataError) as info:
        load_table(DataConfig(source=str(archive), member="hour.csv"))
    assert "no member named hour.csv" in str(info.value)


# --- http(s) ---------------------------------------------------------------------------------


def hour_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Readme.txt", "bike sharing")
        archive.writestr("day.csv", "d,v\n1,2\n")
        archive.writestr("hour.csv", SMALL_CSV)
    return buffer.getvalue()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base signature
        pass

    def do_GET(self) -> None:
        QuietHandler.requests.append(self.path)
        super().do_GET()


class LocalServer:
    """A `ThreadingHTTPServer` on 127.0.0.1 serving `root`."""

    def __init__(self, root: Path) -> None:
        QuietHandler.requests = []
        handler = functools.partial(QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LocalServer, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "bike.zip").write_bytes(hour_zip())
    (root / "plain.csv").write_text(SMALL_CSV)
    server = LocalServer(root)
    try:
        yield server, root
    finally:
        server.stop()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_url_zip_member_is_downloaded_verified_and_cached(served: tuple[LocalServer, Path]) -> None:
    server, _ = served
    url = server.url("bike.zip")
    data = DataConfig(source=url, member="hour.csv", sha256=hashlib.sha256(SMALL_CSV.encode()).hexdigest())
    frame = load_table(data)
    assert list(frame.columns) == ["day", "x", "y"]
    assert frame["y"].tolist() == [10, 20, 30]
    assert QuietHandler.requests == ["/bike.zip"]

    server.stop()  # no network any more: the cached, verified copy is used
    again = load_table(data)
    pd.testing.assert_frame_equal(again, frame)
    assert QuietHandler.requests == ["/bike.zip"]


def test_download_path_is_in_the_cache_dir(served: tuple[LocalServer, Path], cache_in_tmp: Path) -> None:
    server, _ = served
    path = download(server.url("bike.zip"), None, "hour.csv", cache_in_tmp)
    assert path.name == "hour.csv"
    assert path.parent.parent == cache_in_tmp
    assert path.read_text() == SMALL_CSV


def test_plain_csv_url_without_checksum(served: tuple[LocalServer, Path]) -> None:
    server, _ = served
    frame = load_table(DataConfig(source=server.url("plain.csv")))
    assert frame["x"].sum() == pytest.approx(7.5)


def test_wrong_sha256_is_rejected_and_not_cached(
    served: tuple[LocalServer, Path], cache_in_tmp: Path
) -> None:
    server, _ = served
    data = DataConfig(source=server.url("bike.zip"), member="hour.csv", sha256="0" * 64)
    with pytest.raises(DataError) as info:
        load_table(data)
    message = str(info.value)
    assert (
        f"has sha256 {hashlib.sha256(SMALL_CSV.encode()).hexdigest()}, not the expected {'0' * 64}" in message
    )
    assert "data.sha256" in message
    assert not list(cache_in_tmp.rglob("hour.csv")), "a file with the wrong checksum must not stay cached"


def test_member_missing_from_downloaded_zip(served: tuple[LocalServer, Path]) -> None:
    server, _ = served
    with pytest.raises(DataError, match=r"has no member named week\.csv"):
        load_table(DataConfig(source=server.url("bike.zip"), member="week.csv"))


def test_member_set_but_download_not_a_zip(served: tuple[LocalServer, Path]) -> None:
    server, _ = served
    with pytest.raises(DataError, match="is not a zip archive but data.member is set"):
        load_table(DataConfig(source=server.url("plain.csv"), member="hour.csv"))


def test_http_404_is_a_data_error(served: tuple[LocalServer, Path]) -> None:
    server, _ = served
    with pytest.raises(DataError, match="Could not download"):
        load_table(DataConfig(source=server.url("missing.zip"), member="hour.csv"))


def test_unreachable_url_without_cache() -> None:
    url = f"http://127.0.0.1:{closed_port()}/bike.zip"
    with pytest.raises(DataError) as info:
        load_table(DataConfig(source=url, member="hour.csv"))
    message = str(info.value)
    assert f"Could not download {url}" in message
    assert "there is no cached copy" in message
    assert "--data PATH or the RETRAIN_DATA environment variable" in message


# --- SQL -------------------------------------------------------------------------------------

ROWS = pd.DataFrame(
    {
        "day": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"],
        "x": [1.0, 2.0, 3.0, 4.0],
        "y": [1, 0, 1, 1],
    }
)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    path = tmp_path / "data.sqlite"
    with sqlite3.connect(path) as connection:
        ROWS.to_sql("rentals", connection, index=False)
    return f"sqlite:///{path}"


def test_sqlite_query(sqlite_url: str) -> None:
    frame = load_table(
        DataConfig(source=sqlite_url, query="SELECT day, x FROM rentals WHERE y = 1 ORDER BY day")
    )
    assert list(frame.columns) == ["day", "x"]
    assert frame["day"].tolist() == ["2024-01-01", "2024-01-03", "2024-01-04"]
    assert frame["x"].tolist() == [1.0, 3.0, 4.0]


def test_sqlite_table(sqlite_url: str) -> None:
    frame = load_table(DataConfig(source=sqlite_url, table="rentals"))
    pd.testing.assert_frame_equal(frame, ROWS, check_dtype=False)


def test_sql_without_query_or_table(sqlite_url: str) -> None:
    with pytest.raises(DataError, match="has neither data.query nor data.table"):
        load_table(DataConfig(source=sqlite_url))


def test_sqlite_missing_table_is_a_data_error(sqlite_url: str) -> None:
    with pytest.raises(DataError) as info:
        load_table(DataConfig(source=sqlite_url, table="nope"))
    assert "no such table: nope" in str(info.value)
    assert str(info.value).startswith(f"Reading from {sqlite_url} failed")


def test_unknown_sql_driver_is_a_data_error() -> None:
    with pytest.raises(DataError, match="Can't load plugin"):
        load_table(DataConfig(source="nosuchdb://u:p@127.0.0.1/x", table="t"))


def test_malformed_sql_url_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGTEST_PASSWORD", "malformed-secret-42")
    source = "postgresql+psycopg2://postgres:${PGTEST_PASSWORD}@127.0.0.1:notaport/db"
    with pytest.raises(DataError) as info:
        load_table(DataConfig(source=source, table="t"))
    assert "malformed-secret-42" not in str(info.value)
    assert "postgres:${PGTEST_PASSWORD}@127.0.0.1" in str(info.value)


@pytest.mark.filterwarnings("ignore:Query string argument")
def test_sql_error_never_shows_the_secret(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    secret = f"pw{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("TEST_SQL_SECRET", secret)
    # sqlite ignores the query string, so the URL still opens the file; the driver echoes the
    # missing table's name, which here is the secret value itself.
    source = sqlite_url + "?x=${TEST_SQL_SECRET}"
    with pytest.raises(DataError) as info:
        load_table(DataConfig(source=source, query=f"SELECT * FROM {secret}"))
    message = str(info.value)
    assert secret not in message
    assert "no such table: ***" in message


@pytest.fixture
def postgres_db() -> Iterator[str]:
    """A fresh PostgreSQL database on 127.0.0.1:5432, dropped afterwards."""
    sa = pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg2")
    name = f"retrain_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
def test_postgres_table_and_query(postgres_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{postgres_db}")
    try:
        ROWS.to_sql("rentals", engine, index=False)
    finally:
        engine.dispose()
    secret = f"pgsecret{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("PGTEST_PASSWORD", secret)
    source = f"postgresql+psycopg2://postgres:${{PGTEST_PASSWORD}}@127.0.0.1:5432/{postgres_db}"

    frame = load_table(DataConfig(source=source, table="rentals"))
    pd.testing.assert_frame_equal(frame, ROWS, check_dtype=False)

    queried = load_table(DataConfig(source=source, query="SELECT x FROM rentals WHERE y = 0"))
    assert queried["x"].tolist() == [2.0]

    with pytest.raises(DataError) as info:
        load_table(DataConfig(source=source, query=f"SELECT * FROM missing_{secret}"))
    message = str(info.value)
    assert secret not in message
    assert 'relation "missing_***" does not exist' in message
    assert f"postgres:${{PGTEST_PASSWORD}}@127.0.0.1:5432/{postgres_db}" in message


# --- fingerprint -----------------------------------------------------------------------------


def test_fingerprint_stable_for_equal_frames_and_sensitive_to_values() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [0.1, 0.2, 0.3]})
    same = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [0.1, 0.2, 0.3]}, index=[7, 8, 9])
    assert fingerprint(frame) == fingerprint(same) == fingerprint(frame.copy())
    changed = frame.copy()
    changed.loc[2, "c"] = 0.30000001
    assert fingerprint(changed) != fingerprint(frame)
    text_changed = frame.copy()
    text_changed.loc[0, "b"] = "X"
    assert fingerprint(text_changed) != fingerprint(frame)
    assert fingerprint(frame.rename(columns={"a": "A"})) != fingerprint(frame)
    assert fingerprint(frame.astype({"a": "float64"})) != fingerprint(frame)
    assert len(fingerprint(frame)) == 64
