"""Secrets never stored: failing URL, SQL and file sources leave no secret in Prefect or MLflow.

Each source carries a `${VAR}` secret (and one a literal password); the run fails as bad input,
and then the bytes of Prefect's database and MLflow's store are searched for the secrets.
"""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import make_config
from core.errors import BadInputError

SECRET = "s3cr3t-token-8f2a61"
LITERAL_PASSWORD = "literal-pw-4c9d0e"


class Forbidden(http.server.BaseHTTPRequestHandler):
    """Every request gets 403, as a signed URL that expired would."""

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.send_error(403, f"forbidden {self.path}")

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def forbidden_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forbidden)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def stored_bytes(*roots: Path) -> bytes:
    """Everything in the SQLite files (WAL included) and artifact files under `roots`."""
    return b"".join(p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file())


def prefect_database() -> Path:
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    return Path(PREFECT_API_DATABASE_CONNECTION_URL.value().split("///", 1)[1]).parent


def flush_prefect() -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)


def test_failing_sources_leave_no_secret_in_prefect_or_mlflow(
    mlflow_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forbidden_url: str
) -> None:
    from flows.retrain import retrain_flow

    monkeypatch.setenv("RETRAIN_SECRET", SECRET)
    sources = {
        "403 download": {"source": f"{forbidden_url}/${{RETRAIN_SECRET}}/hour.csv?token=${{RETRAIN_SECRET}}"},
        "refused download": {"source": "http://127.0.0.1:9/data.csv?sig=${RETRAIN_SECRET}"},
        "SQL query": {
            "source": f"sqlite:///{tmp_path / 'empty.db'}",
            "query": 'SELECT * FROM "missing_${RETRAIN_SECRET}"',
        },
        "SQL literal password": {
            "source": f"postgresql+psycopg2://postgres:{LITERAL_PASSWORD}@127.0.0.1:9/db",
            "table": "rentals",
        },
        "file": {"source": f"{tmp_path}/${{RETRAIN_SECRET}}/hour.csv"},
    }
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    logging.getLogger("prefect").addHandler(handler)
    try:
        for label, data in sources.items():
            with pytest.raises(BadInputError) as failure:
                retrain_flow(make_config("unused", data=data))
            message = str(failure.value)
            assert SECRET not in message and LITERAL_PASSWORD not in message, label
            assert "***" in message, (label, message)
    finally:
        logging.getLogger("prefect").removeHandler(handler)
    flush_prefect()

    assert records, "the failures were logged"
    assert not [r for r in records if SECRET in r or LITERAL_PASSWORD in r]
    stored = stored_bytes(prefect_database(), tmp_path)
    assert SECRET.encode() not in stored
    assert LITERAL_PASSWORD.encode() not in stored
    # The stores did record the runs: the search above read the right files.
    assert b"missing_" in stored and b"127.0.0.1:9" in stored
