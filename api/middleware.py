"""Request and correlation ids on every request, response and log line."""

from __future__ import annotations

import uuid

from loguru import logger
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_ID_LENGTH = 128


def _usable(value: str | None) -> str | None:
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
        request_id = _usable(headers.get("x-request-id")) or uuid.uuid4().hex
        correlation_id = _usable(headers.get("x-correlation-id")) or request_id
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
