"""A worker's own ``/metrics`` (and ``/health``) on ``$PORT``: a minimal HTTP/1.0 responder.

A whole ASGI server would install its own signal handlers inside the worker; Prometheus
and a liveness probe need only a GET answered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import SocketStream, TaskStatus
from loguru import logger

MAX_REQUEST_HEAD = 8192
READ_TIMEOUT_SECONDS = 5.0

Render = Callable[[], Awaitable[tuple[bytes, dict[str, str]]]]


def _response(status: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _handle(stream: SocketStream, render: Render) -> None:
    async with stream:
        head = b""
        with anyio.move_on_after(READ_TIMEOUT_SECONDS):
            while b"\r\n\r\n" not in head and len(head) < MAX_REQUEST_HEAD:
                try:
                    head += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
        parts = head.split(b" ", 2)
        method, path = (parts[0], parts[1].split(b"?")[0]) if len(parts) == 3 else (b"", b"")
        if method != b"GET":
            reply = _response("405 Method Not Allowed", b"", "text/plain")
        elif path == b"/metrics":
            content, headers = await render()
            reply = _response("200 OK", content, headers.get("Content-Type", "text/plain"))
        elif path == b"/health":
            reply = _response("200 OK", b'{"status":"healthy"}', "application/json")
        else:
            reply = _response("404 Not Found", b"", "text/plain")
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await stream.send(reply)


async def serve_metrics(
    host: str,
    port: int,
    render: Render,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    logger.info("metrics.listening", host=host, port=port)
    task_status.started()

    async def handle(stream: SocketStream) -> None:
        try:
            await _handle(stream, render)
        except Exception:
            logger.opt(exception=True).warning("metrics.request_failed")

    await listener.serve(handle)
