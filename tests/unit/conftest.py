from __future__ import annotations

from collections.abc import AsyncIterator

import fakeredis
import pytest
from redis.asyncio import Redis


@pytest.fixture
async def fake_redis() -> AsyncIterator[Redis]:
    # A fresh in-memory server per test, so no state leaks between tests.
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()
