"""Request and correlation ids on every request, response and log line."""

from __future__ import annotations

import time
import uuid

from loguru import logger
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import Problem, unavailable
from observability import logs
from observability.metrics import WebMetrics

MAX_ID_LENGTH = 128
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def record_request(
    metrics: WebMetrics,
    method: str,
    route: str,
    status: int,
    elapsed: float,
    *,
    request_id: str,
    correlation_id: str,
) -> None:
    """Count and log one answered request."""
    method = method if method in _METHODS else "OTHER"
    metrics.answered.observe(route, method, status, elapsed)
    logs.info(
        "request.finished",
        request_id=request_id,
        correlation_id=correlation_id,
        method=method,
        route=route,
        status=status,
        duration_ms=round(elapsed * 1000, 2),
    )


class InFlight:
    """The requests one web process is serving, shared by the layers that admit them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.current = 0

    @property
    def full(self) -> bool:
        return self.current >= self.limit


def usable_id(value: str | None) -> str | None:
    # A client's id is echoed into headers and logs: only short, printable ASCII is kept.
    if value and len(value) <= MAX_ID_LENGTH and all(0x21 <= ord(c) <= 0x7E for c in value):
        return value
    return None


class RequestContextMiddleware:
    """Takes ``X-Request-ID`` from the request (or makes one), ``X-Correlation-ID`` likewise
    (defaulting to the request id), and puts both on the response and in the log context."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = usable_id(headers.get("x-request-id")) or uuid.uuid4().hex
        correlation_id = usable_id(headers.get("x-correlation-id")) or request_id
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["correlation_id"] = correlation_id

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["X-Request-ID"] = request_id
                out["X-Correlation-ID"] = correlation_id
            await send(message)

        with logger.contextualize(request_id=request_id, correlation_id=correlation_id):
            await self.app(scope, receive, send_with_ids)


class MetricsMiddleware:
    """HTTP request count, latency and in-flight gauge by route template, plus one access
    log line per request (uvicorn's own access log is off: it knows no request id)."""

    def __init__(self, app: ASGIApp, metrics: WebMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        m = self.metrics
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering
        m.in_flight.inc({})

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            elapsed = time.perf_counter() - started
            m.in_flight.dec({})
            # The template, never the raw path: ids in labels would explode cardinality.
            route = getattr(scope.get("route"), "path_format", None) or "unmatched"
            state = scope.get("state", {})
            record_request(
                m,
                scope["method"],
                route,
                status,
                elapsed,
                request_id=state.get("request_id", ""),
                correlation_id=state.get("correlation_id", ""),
            )


class InFlightLimitMiddleware:
    """Caps the requests one web process serves at once: past the cap, answer 503 at the
    door rather than queue work (and memory) without bound."""

    def __init__(self, app: ASGIApp, in_flight: InFlight) -> None:
        self.app = app
        self.in_flight = in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight.full:
            problem = unavailable("This server is at its limit of requests in flight.")
            await problem.response()(scope, receive, send)
            return
        self.in_flight.current += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight.current -= 1


class HeaderLimitMiddleware:
    """Refuses requests whose headers add up to more than ``limit`` bytes with 431.

    uvicorn's httptools parser takes headers of any size; this keeps an oversized header
    from reaching the app (the bytes were already read: only a proxy in front can stop
    that)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and sum(len(name) + len(value) for name, value in scope["headers"]) > self.limit
        ):
            problem = Problem(
                431,
                "headers-too-large",
                "Request header fields too large",
                f"The request's headers must add up to at most {self.limit} bytes.",
            )
            await problem.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)
