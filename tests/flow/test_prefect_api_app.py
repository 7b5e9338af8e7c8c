"""The Prefect server app `retrain` starts (`cli.prefect_api`), on Prefect's real API and SQLite.

A write that SQLite turns away ("database is locked") is planted once; through the project's app
the client gets its answer at once, through Prefect's own app a 503 (and its 2 s back-off).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import httpx
import pytest
import sqlalchemy.exc
from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_HOME, temporary_settings

from cli.prefect_api import PrefectServerApp


def fresh_prefect_database(tmp_path: Path) -> contextlib.AbstractContextManager:
    """Prefect settings for a home and SQLite database of their own under `tmp_path`."""
    database = f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}"
    return temporary_settings({PREFECT_HOME: str(tmp_path), PREFECT_API_DATABASE_CONNECTION_URL: database})


def post_flow_with_one_locked_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wrap: bool) -> tuple:
    """POST /api/flows/ once, its first database write refused as locked.

    Returns:
        The answer's status and JSON, whether the flow was stored, and the writes attempted.
    """
    from prefect.server import models
    from prefect.server.api.server import create_app

    name = f"retrain-{tmp_path.name}"
    real_create_flow = models.flows.create_flow
    writes = []

    async def locked_once(*args, **kwargs):
        writes.append(1)
        if len(writes) == 1:
            raise sqlalchemy.exc.OperationalError(
                "INSERT", {}, sqlite3.OperationalError("database is locked")
            )
        return await real_create_flow(*args, **kwargs)

    monkeypatch.setattr(models.flows, "create_flow", locked_once)

    async def exchange():
        app = create_app(ephemeral=True, webserver_only=True, ignore_cache=True)
        served = PrefectServerApp(app, delays=(0.01, 0.02)) if wrap else app
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=served, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                created = await client.post("/api/flows/", json={"name": name})
                listed = await client.post("/api/flows/filter", json={})
        return created.status_code, created.json(), name in [flow["name"] for flow in listed.json()]

    with fresh_prefect_database(tmp_path):
        status, body, stored = asyncio.run(exchange())
    return status, body, stored, len(writes)


def test_a_write_sqlite_turned_away_is_replayed_in_the_server(tmp_path, monkeypatch) -> None:
    status, body, stored, writes = post_flow_with_one_locked_write(tmp_path, monkeypatch, wrap=True)
    assert status in (200, 201) and body["name"].startswith("retrain-")
    assert stored and writes == 2


def test_prefects_own_app_answers_the_same_write_with_503(tmp_path, monkeypatch) -> None:
    status, _, stored, writes = post_flow_with_one_locked_write(tmp_path, monkeypatch, wrap=False)
    assert status == 503 and not stored and writes == 1


def test_prefects_app_starts_behind_the_warm_up_and_routes_at_once(tmp_path) -> None:
    from prefect.server.api.server import create_app

    app = PrefectServerApp(create_app(ephemeral=True, webserver_only=True, ignore_cache=True))

    async def start_and_stop() -> list[str]:
        incoming: asyncio.Queue = asyncio.Queue()
        await incoming.put({"type": "lifespan.startup"})
        sent: list[str] = []

        async def send(message: dict) -> None:
            sent.append(message["type"])
            if message["type"] == "lifespan.startup.complete":
                await incoming.put({"type": "lifespan.shutdown"})

        lifespan = app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, incoming.get, send)
        # Not a timing: a start-up that never completes would otherwise wait for shutdown forever.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lifespan, timeout=120)
        return sent

    with fresh_prefect_database(tmp_path):
        assert asyncio.run(start_and_stop()) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert app.warm_up_status == 404  # routed through every router, no route took it
