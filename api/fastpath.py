"""``GET /users/{id}`` cache hits, answered without Starlette's request machinery.

Reads are most of the traffic, and a hit is one Redis ``GET`` whose value is the response
body. Through Starlette that ``GET`` was the smaller part of the cost: a ``Request`` and
``Headers`` object, routing, and four middleware layers each wrapping ``send``. Here a
hit is served in one function that does what those layers do for it: request and
correlation ids, the header-size and in-flight limits, metrics and the access line, the
same response headers.

Everything else goes down the full stack, which answers it as it always has: an id that
is not canonical (404), a cache miss (read from Postgres and refilled), Redis trouble
(Postgres fallback), oversized headers (431), a full server (503). With tracing on the
app leaves this layer out, so every request gets its server span.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import TYPE_CHECKING

from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from api.middleware import InFlight, record_request, usable_id
from domain.ids import is_canonical
from observability.metrics import WebMetrics

if TYPE_CHECKING:
    from bootstrap import Web

PREFIX = "/users/"
ROUTE = "/users/{user_id}"


class UserReadFastPath:
    def __init__(
        self, app: ASGIApp, metrics: WebMetrics, in_flight: InFlight, header_limit: int
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.in_flight = in_flight
        self.header_limit = header_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not path.startswith(PREFIX)
            or not is_canonical(user_id := path[len(PREFIX) :])
            or self.in_flight.full
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = correlation_id = None
        size = 0
        for name, value in scope["headers"]:
            size += len(name) + len(value)
            if name == b"x-request-id":
                request_id = usable_id(value.decode("latin-1"))
            elif name == b"x-correlation-id":
                correlation_id = usable_id(value.decode("latin-1"))
        if size > self.header_limit:
            await self.app(scope, receive, send)
            return
        web: Web = scope["state"]["web"]
        document: str | None = None
        self.in_flight.current += 1
        self.metrics.in_flight.inc({})
        try:
            with contextlib.suppress(RedisError):
                document = await web.commands.execute("GET", web.keys.user(user_id))
            if document is not None:
                request_id = request_id or uuid.uuid4().hex
                correlation_id = correlation_id or request_id
                await _answer(send, document.encode(), request_id, correlation_id)
        finally:
            self.in_flight.current -= 1
            self.metrics.in_flight.dec({})
        if document is None:
            await self.app(scope, receive, send)
            return
        record_request(
            self.metrics,
            "GET",
            ROUTE,
            200,
            time.perf_counter() - started,
            request_id=request_id or "",
            correlation_id=correlation_id or "",
        )


async def _answer(send: Send, body: bytes, request_id: str, correlation_id: str) -> None:
    # The headers Starlette's Response would send, plus the ids RequestContextMiddleware adds.
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-length", b"%d" % len(body)),
                (b"content-type", b"application/json"),
                (b"x-request-id", request_id.encode()),
                (b"x-correlation-id", correlation_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
