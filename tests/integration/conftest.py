"""In-process web app and worker, against the real Postgres and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
import redis.asyncio as redis
from opentelemetry import trace
from starlette.types import Receive, Scope, Send

from api.app import create_app
from bootstrap import open_worker
from settings import Settings
from storage.keys import Keys
from workers.consumer import Consumer


@asynccontextmanager
async def web_client(
    settings: Settings, tracer_provider: trace.TracerProvider | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in this process, lifespan included."""
    app = create_app(settings, configure_logs=False, tracer_provider=tracer_provider)
    async with app.router.lifespan_context(app) as state:

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"] = dict(state or {})
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@asynccontextmanager
async def running_worker(
    settings: Settings, tracer_provider: trace.TracerProvider | None = None
) -> AsyncIterator[Consumer]:
    """A worker consuming in the background until the block exits (then stopped cleanly)."""
    async with open_worker(settings, tracer_provider) as worker, anyio.create_task_group() as tg:
        consumer = Consumer(worker)
        tg.start_soon(consumer.run)
        try:
            yield consumer
        finally:
            consumer.stop()


async def until_acked(r: redis.Redis, keys: Keys, within: float = 10) -> None:
    """Wait until the workers' group has read and acked everything on the commands stream."""
    with anyio.fail_after(within):
        while True:
            groups = await r.xinfo_groups(keys.commands)
            if groups and groups[0]["pending"] == 0 and groups[0]["lag"] == 0:
                return
            await anyio.sleep(0.05)


@pytest.fixture
async def r(settings: Settings) -> AsyncIterator[redis.Redis]:
    """A plain client on the test's Redis, for looking at keys and streams."""
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with web_client(settings) as c:
        yield c


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[Consumer]:
    async with running_worker(settings) as consumer:
        yield consumer
