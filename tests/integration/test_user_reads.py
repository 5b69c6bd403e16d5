"""``GET /users/{id}``: cache hits take the fast path (api/fastpath.py), everything else the
full Starlette stack; a client cannot tell the two apart."""

from __future__ import annotations

import uuid

import httpx
import pytest
import redis.asyncio as redis
from opentelemetry.sdk.trace import TracerProvider
from starlette.types import Receive, Scope, Send

from api.app import create_app
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


async def test_answers_outside_the_routes_carry_the_request_ids(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    huge = {"X-Padding": "x" * settings.max_header_bytes, "X-Request-ID": "big-1"}
    refused = await client.get("/health", headers=huge)
    assert refused.status_code == 431
    assert refused.headers["x-request-id"] == "big-1"
    assert refused.headers["x-correlation-id"] == "big-1"


async def test_an_unexpected_failure_is_a_500_problem_with_the_request_ids(
    settings: Settings,
) -> None:
    app = create_app(settings, configure_logs=False)
    async with app.router.lifespan_context(app) as state:
        assert state is not None
        web = state["web"]

        async def broken(user_id: uuid.UUID) -> None:
            raise RuntimeError("a bug")

        web.users.get = broken  # a miss goes to Postgres: make that fail unexpectedly

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"] = dict(state)
            await app(scope, receive, send)

        # Starlette re-raises after answering (for servers to log): take the answer.
        transport = httpx.ASGITransport(app=with_state, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            failed = await client.get(f"/users/{uuid.uuid4()}", headers={"X-Request-ID": "oops-1"})
    assert failed.status_code == 500
    assert failed.headers["content-type"] == "application/problem+json"
    assert failed.json()["type"] == "/problems/internal-error"
    assert "a bug" not in failed.text
    assert failed.headers["x-request-id"] == "oops-1"
    assert failed.headers["x-correlation-id"] == "oops-1"
