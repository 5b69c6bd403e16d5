"""Which reads the fast path answers itself, and which it hands to the full stack."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis
from starlette.types import Message, Receive, Scope, Send

from api.fastpath import UserReadFastPath
from api.middleware import InFlight
from observability.metrics import WebMetrics
from storage.keys import Keys
from tests.unit.fakes import FakeCommands

pytestmark = pytest.mark.anyio

USER_ID = "01930000-0000-7000-8000-0000000000aa"
DOCUMENT = '{"id":"01930000-0000-7000-8000-0000000000aa","name":"Ann"}'


@dataclass
class FakeWeb:
    commands: FakeCommands
    keys: Keys


class FullStack:
    """Stands in for the Starlette app behind the fast path: answers 299 and counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _get(
    fast: UserReadFastPath, web: FakeWeb, path: str, headers: list[tuple[bytes, bytes]]
) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": headers,
        "state": {"web": web},
    }
    await fast(scope, receive, send)
    return sent


@pytest.fixture
async def web(fake_redis: Redis) -> FakeWeb:
    keys = Keys("test")
    await fake_redis.set(keys.user(USER_ID), DOCUMENT)
    return FakeWeb(FakeCommands(fake_redis), keys)


@pytest.mark.parametrize(
    ("path", "headers", "answered_by_fast_path"),
    [
        (f"/users/{USER_ID}", [(b"x-request-id", b"r-1")], True),
        (f"/users/{USER_ID.upper()}", [], False),
        ("/users/01930000-0000-7000-8000-0000000000bb", [], False),  # a miss
        (f"/users/{USER_ID}/x", [], False),
        (f"/users/{USER_ID}", [(b"x-padding", b"x" * 2000)], False),  # over the header limit
        ("/health", [], False),
    ],
)
async def test_only_hits_are_answered_here(
    web: FakeWeb, path: str, headers: list[tuple[bytes, bytes]], answered_by_fast_path: bool
) -> None:
    full = FullStack()
    fast = UserReadFastPath(full, WebMetrics(), InFlight(10), header_limit=1024)

    sent = await _get(fast, web, path, headers)

    assert full.calls == (0 if answered_by_fast_path else 1)
    if answered_by_fast_path:
        start, body = sent
        assert start["status"] == 200
        assert dict(start["headers"])[b"x-request-id"] == b"r-1"
        assert body["body"] == DOCUMENT.encode()


async def test_a_full_server_hands_reads_to_the_stack_that_refuses_them(web: FakeWeb) -> None:
    full = FullStack()
    in_flight = InFlight(1)
    in_flight.current = 1
    fast = UserReadFastPath(full, WebMetrics(), in_flight, header_limit=1024)

    await _get(fast, web, f"/users/{USER_ID}", [])

    assert full.calls == 1
