"""The Prefect server app `retrain` starts (`cli.prefect_api`): its replay of 503s and its warm-up."""

from __future__ import annotations

import asyncio

from cli.prefect_api import PrefectServerApp

NO_WAIT = (0.0, 0.0, 0.0)


class ScriptedApp:
    """An ASGI app answering each attempt with the next status of `statuses`, echoing the body."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await send({"type": f"{scope['type']}.passed"})
            return
        # As a router mounted under /api does: a replay must not see the first attempt's scope.
        assert scope.get("root_path", "") == ""
        scope["root_path"] = "/api"
        message = await receive()
        self.bodies.append(message["body"])
        status = self.statuses[min(len(self.bodies), len(self.statuses)) - 1]
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"attempt %d" % len(self.bodies)})


def call(app, chunks: list[bytes], scope_type: str = "http") -> list[dict]:
    """Send a request of `chunks` (several `http.request` messages) and collect what goes out."""
    incoming = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(3600)  # a client that stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app({"type": scope_type}, receive, send))
    return sent


def test_a_locked_database_answer_is_retried_in_the_server_with_the_same_body() -> None:
    scripted = ScriptedApp([503, 503, 201])
    sent = call(PrefectServerApp(scripted, NO_WAIT), [b'{"name": ', b'"tune"}'])
    assert scripted.bodies == [b'{"name": "tune"}'] * 3
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [201]
    assert [m["body"] for m in sent if m["type"] == "http.response.body"] == [b"attempt 3"]


def test_a_database_that_stays_locked_hands_the_last_503_to_the_client() -> None:
    scripted = ScriptedApp([503])
    sent = call(PrefectServerApp(scripted, NO_WAIT), [b"{}"])
    assert len(scripted.bodies) == len(NO_WAIT) + 1
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [503]
    assert [m["body"] for m in sent if m["type"] == "http.response.body"] == [b"attempt 4"]


def test_other_answers_and_other_protocols_pass_through_once() -> None:
    for status in (200, 404, 500):
        scripted = ScriptedApp([status])
        sent = call(PrefectServerApp(scripted, NO_WAIT), [b"{}"])
        assert len(scripted.bodies) == 1
        assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [status]
    assert call(PrefectServerApp(ScriptedApp([503]), NO_WAIT), [], "websocket") == [
        {"type": "websocket.passed"}
    ]


class LifespanApp:
    """An ASGI app recording the requests it serves and reporting its start-up as complete."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.events.append(f"{scope['method']} {scope['path']}")
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await receive()
        self.events.append("startup")
        await send({"type": "lifespan.startup.complete"})


def test_the_server_routes_one_request_before_it_reports_itself_up() -> None:
    recorded = LifespanApp()
    sent = []

    async def receive() -> dict:
        return {"type": "lifespan.startup"}

    async def send(message: dict) -> None:
        sent.append((message["type"], list(recorded.events)))

    asyncio.run(PrefectServerApp(recorded, NO_WAIT)({"type": "lifespan", "state": {}}, receive, send))
    assert sent == [("lifespan.startup.complete", ["startup", "GET /api/retrain-warm-up"])]
