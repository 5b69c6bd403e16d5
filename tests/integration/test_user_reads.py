"""``GET /users/{id}``: cache hits take the fast path (api/fastpath.py), everything else the
full Starlette stack; a client cannot tell the two apart."""

from __future__ import annotations

import uuid

import httpx
import pytest
import redis.asyncio as redis
from opentelemetry.sdk.trace import TracerProvider

from settings import Settings
from storage.keys import Keys
from tests.integration.conftest import web_client
from tests.prometheus_text import parse, total
from workers.consumer import Consumer

pytestmark = pytest.mark.anyio


async def _signed_up(client: httpx.AsyncClient) -> dict[str, str]:
    created = await client.post(
        "/signup",
        json={"name": "Ann", "email": f"{uuid.uuid4().hex}@example.com", "password": "pw123456"},
    )
    assert created.status_code == 201
    user: dict[str, str] = created.json()
    return user


async def _reads_counted(client: httpx.AsyncClient, status: str) -> float:
    samples = parse((await client.get("/metrics")).text)
    return total(
        samples, "http_requests_total", route="/users/{user_id}", method="GET", status=status
    )


async def test_a_hit_is_answered_like_the_full_stack_answers_it(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings
) -> None:
    user = await _signed_up(client)
    before = await _reads_counted(client, "200")

    fast = await client.get(f"/users/{user['id']}", headers={"X-Request-ID": "read-1"})

    # Tracing on takes the full stack for every request.
    async with web_client(settings, tracer_provider=TracerProvider()) as full_client:
        full = await full_client.get(f"/users/{user['id']}", headers={"X-Request-ID": "read-1"})
    assert (
        (fast.status_code, fast.content)
        == (full.status_code, full.content)
        == (
            200,
            full.content,
        )
    )
    assert fast.json() == user
    for header in ("content-type", "content-length", "x-request-id", "x-correlation-id"):
        assert fast.headers[header] == full.headers[header], header
    assert fast.headers["x-correlation-id"] == "read-1"
    assert await _reads_counted(client, "200") == before + 1


async def test_a_hit_without_ids_gets_fresh_ones(
    client: httpx.AsyncClient, worker: Consumer
) -> None:
    user = await _signed_up(client)

    first = await client.get(f"/users/{user['id']}")
    second = await client.get(f"/users/{user['id']}", headers={"X-Correlation-ID": "flow-9"})

    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert first.headers["x-correlation-id"] == first.headers["x-request-id"]
    assert second.headers["x-correlation-id"] == "flow-9"


async def test_reads_the_fast_path_leaves_to_the_full_stack(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings, r: redis.Redis
) -> None:
    user = await _signed_up(client)
    before = await _reads_counted(client, "404")

    # Not the canonical spelling of an id: 404, as for any unknown id.
    shouted = await client.get(f"/users/{user['id'].upper()}")
    assert shouted.status_code == 404
    assert shouted.headers["content-type"] == "application/problem+json"
    assert (await client.get(f"/users/{uuid.uuid4()}")).status_code == 404
    assert await _reads_counted(client, "404") == before + 2

    # Headers over the limit: 431, even for a cached user.
    huge = {"X-Padding": "x" * settings.max_header_bytes}
    assert (await client.get(f"/users/{user['id']}", headers=huge)).status_code == 431

    # A miss is read from Postgres, once, and the cache refilled.
    assert await r.delete(Keys(settings.redis_namespace).user(user["id"])) == 1
    missed = await client.get(f"/users/{user['id']}")
    assert missed.status_code == 200
    assert missed.json() == user
    assert await r.exists(Keys(settings.redis_namespace).user(user["id"])) == 1
