"""The Prefect server app that `retrain` starts: Prefect's own, retrying what SQLite turned away.

On SQLite, Prefect's API answers 503 when a write meets another connection's write ("database is
locked": a transaction that read first cannot take the write lock, and SQLite does not wait for
it). Prefect's client then sleeps two seconds before it tries again. In a retraining run that
happens when the tuning subflow is created while the server is recording the task runs that just
finished: a two-second stall in about one run in four. This app retries such a request inside the
server after a few milliseconds instead, and hands the 503 on (to the client's own back-off) only
when the database stays locked. It also routes one request before it reports itself up, so the
command's first call does not wait while FastAPI builds Prefect's routers.

Run it as uvicorn's factory, in place of `prefect.server.api.server:create_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

# Waits before each retry inside the server, in seconds (1.55 s in all, below the client's 2 s).
RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8)
RETRYABLE_STATUS = 503


class PrefectServerApp:
    """Prefect's app behind two ASGI layers: a replay of what SQLite turned away, and a warm-up.

    An HTTP request the app answered with 503 is replayed after a short wait: its body is read
    once and replayed on every attempt. A response other than 503 (and the last attempt's 503)
    streams through unchanged; websockets pass through. Prefect answers 503 only for errors its
    client retries anyway, after the transaction rolled back, so a replay here is the client's
    own retry, made sooner. Before the lifespan reports the start-up complete, one request walks
    every router (see `warm_before_ready`).
    """

    def __init__(self, app: App, delays: tuple[float, ...] = RETRY_DELAYS_S) -> None:
        self.app = app
        self.delays = delays
        self.warm_up_status: int | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self.warm_before_ready(scope, send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:  # the client left before it had sent its request
            return
        for delay in (*self.delays, None):
            if not await self.attempt(scope, body, receive, send, retry_left=delay is not None):
                return
            await asyncio.sleep(delay)

    async def attempt(
        self, scope: MutableMapping[str, Any], body: bytes, receive: Receive, send: Send, retry_left: bool
    ) -> bool:
        """Run the app once on the buffered request; True when its 503 was held back for a retry."""
        delivered = False
        held_back = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # waits for the client to disconnect, as the app expects

        async def forward(message: Message) -> None:
            nonlocal held_back
            if message["type"] == "http.response.start" and retry_left:
                held_back = message["status"] == RETRYABLE_STATUS
            if not held_back:
                await send(message)

        try:
            # Routing writes into the scope (a mount's root path, path params): a copy per attempt.
            await self.app(dict(scope), replay, forward)
        except Exception:
            # Starlette raises the error again once its handler has answered (for the server's
            # log): a 503 held back for a retry is not the end of the request.
            if not held_back:
                raise
        return held_back

    async def note_status(self, message: Message) -> None:
        """`send` of the warm-up request: keeps its status (404 once every router was walked)."""
        if message["type"] == "http.response.start":
            self.warm_up_status = message["status"]

    def warm_before_ready(self, lifespan: MutableMapping[str, Any], send: Send) -> Send:
        """`send` of the lifespan, which first routes one request before it reports the server up.

        FastAPI builds its routers' request models at the first request that walks them, 0.6 s
        for Prefect's API on this 2-core machine; a command's first API call would wait for it.
        A request to a path no route takes walks them all while the command is still importing.
        """

        async def send_when_warm(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                # A task of its own, as uvicorn runs each request (Prefect's limiter counts per task).
                warm_up = asyncio.create_task(
                    self.app(warm_up_scope(lifespan), empty_request, self.note_status)
                )
                with contextlib.suppress(Exception):  # a server that starts cold still serves
                    await warm_up
            await send(message)

        return send_when_warm


def warm_up_scope(lifespan: MutableMapping[str, Any]) -> dict[str, Any]:
    """An HTTP scope for `GET /api/retrain-warm-up` (which no route takes), as uvicorn builds it."""
    path = "/api/retrain-warm-up"
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
        "state": dict(lifespan.get("state", {})),
    }


async def empty_request() -> Message:
    """`receive` of a request without a body."""
    return {"type": "http.request", "body": b"", "more_body": False}


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body (every `http.request` message until `more_body` is false).

    Returns:
        The body, or None when the client disconnected first.
    """
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def create_app() -> App:
    """Prefect's server app (API, UI and services as its settings say), wrapped in the retry."""
    from prefect.server.api.server import create_app as create_prefect_app

    return PrefectServerApp(create_prefect_app())
