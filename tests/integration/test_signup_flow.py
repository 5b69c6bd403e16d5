"""The whole command path in one process: HTTP -> stream -> worker -> Postgres -> reply."""

from __future__ import annotations

import uuid

import anyio
import httpx
import orjson
import pytest
import redis.asyncio as redis

from settings import Settings
from storage.keys import Keys
from tests.integration.conftest import running_worker, web_client
from tests.redis_typed import entries, get_json
from workers.consumer import Consumer

pytestmark = pytest.mark.anyio


def body(email: str | None = None, **extra: object) -> dict[str, object]:
    return {
        "name": "Ann",
        "email": email or f"{uuid.uuid4().hex}@Example.com",
        "password": "correct horse",
        **extra,
    }


async def test_signup_then_read_your_write(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings
) -> None:
    created = await client.post("/signup", json=body(display_name="Annie"))
    assert created.status_code == 201, created.text
    user = created.json()
    assert created.headers["location"] == f"/users/{user['id']}"
    assert user["email"].endswith("@example.com")
    assert user["display_name"] == "Annie"
    read = await client.get(f"/users/{user['id']}")
    assert read.status_code == 200
    assert read.content == created.content
    assert created.headers["x-request-id"]


async def test_cache_miss_is_answered_from_postgres_and_refilled(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings
) -> None:
    user = (await client.post("/signup", json=body())).json()
    keys = Keys(settings.redis_namespace)
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        assert await r.delete(keys.user(user["id"])) == 1
        read = await client.get(f"/users/{user['id']}")
        assert read.status_code == 200
        assert read.json() == user
        assert await get_json(r, keys.user(user["id"])) == user
    finally:
        await r.aclose()


async def test_duplicate_email_in_any_case_is_409(
    client: httpx.AsyncClient, worker: Consumer
) -> None:
    local = uuid.uuid4().hex
    assert (await client.post("/signup", json=body(f"{local}@example.com"))).status_code == 201
    dup = await client.post("/signup", json=body(f"{local.upper()}@EXAMPLE.com"))
    assert dup.status_code == 409
    assert dup.headers["content-type"] == "application/problem+json"
    assert dup.json()["type"] == "/problems/email-taken"


async def test_no_reply_in_time_is_202_and_the_command_completes_later(
    settings: Settings,
) -> None:
    quick = settings.model_copy(update={"reply_timeout_seconds": 0.3})
    async with web_client(quick) as client:
        sent = await client.post("/signup", json=body(), headers={"Idempotency-Key": "late-1"})
        assert sent.status_code == 202
        command_id = sent.json()["command_id"]
        assert sent.json()["status"] == "pending"
        assert sent.headers["location"] == f"/commands/{command_id}"
        pending = await client.get(f"/commands/{command_id}")
        assert pending.json()["status"] == "pending"
        in_flight = await client.post(
            "/signup",
            json=orjson.loads(sent.request.content),
            headers={"Idempotency-Key": "late-1"},
        )
        assert in_flight.status_code == 409
        assert in_flight.headers["retry-after"] == "1"

        async with running_worker(quick):
            with anyio.fail_after(10):
                while (await client.get(f"/commands/{command_id}")).json()["status"] == "pending":
                    await anyio.sleep(0.05)
        done = (await client.get(f"/commands/{command_id}")).json()
        assert done["status"] == "succeeded"
        # The key now replays the final outcome.
        replay = await client.post(
            "/signup",
            json=orjson.loads(sent.request.content),
            headers={"Idempotency-Key": "late-1"},
        )
        assert replay.status_code == 201
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == done["user"]


async def test_failed_command_status_carries_the_problem(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings
) -> None:
    email = f"{uuid.uuid4().hex}@example.com"
    await client.post("/signup", json=body(email))
    keys = Keys(settings.redis_namespace)
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        dup = await client.post("/signup", json=body(email))
        assert dup.status_code == 409
        # Find the failed command's id through the stream (the 409 body doesn't carry it).
        newest = await entries(r, keys.commands, newest_first=True)
        command_id = newest[0][1]["command_id"]
    finally:
        await r.aclose()
    status = (await client.get(f"/commands/{command_id}")).json()
    assert status["status"] == "failed"
    assert status["problem"]["status"] == 409


async def test_idempotent_replay_and_key_reuse(client: httpx.AsyncClient, worker: Consumer) -> None:
    payload = body()
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = await client.post("/signup", json=payload, headers=key)
    again = await client.post("/signup", json=payload, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    other = await client.post("/signup", json={**payload, "name": "Someone else"}, headers=key)
    assert other.status_code == 422
    assert other.json()["type"] == "/problems/idempotency-key-reused"
    wrong_password = await client.post(
        "/signup", json={**payload, "password": "another secret"}, headers=key
    )
    assert wrong_password.status_code == 422


async def test_a_refusal_replays_byte_for_byte(client: httpx.AsyncClient, worker: Consumer) -> None:
    email = f"{uuid.uuid4().hex}@example.com"
    assert (await client.post("/signup", json=body(email))).status_code == 201
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = await client.post("/signup", json=body(email), headers=key)
    again = await client.post("/signup", json=body(email), headers=key)
    assert first.status_code == again.status_code == 409
    assert again.content == first.content
    assert again.headers["content-type"] == "application/problem+json"
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_success_replays_after_its_outcome_expired(
    client: httpx.AsyncClient, worker: Consumer, r: redis.Redis, settings: Settings
) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    payload = body()
    first = await client.post("/signup", json=payload, headers=key)
    command_id = (await entries(r, Keys(settings.redis_namespace).commands, newest_first=True))[0][
        1
    ]["command_id"]
    # An operator may keep outcomes for less time than keys: the user is still there.
    assert await r.delete(Keys(settings.redis_namespace).command(command_id)) == 1
    again = await client.post("/signup", json=payload, headers=key)
    assert (again.status_code, again.content) == (201, first.content)
    assert again.headers["location"] == first.headers["location"]


async def test_a_keyed_signup_keeps_under_1_kib_in_redis(
    client: httpx.AsyncClient, worker: Consumer, r: redis.Redis, settings: Settings
) -> None:
    keys = Keys(settings.redis_namespace)
    idempotency_key = uuid.uuid4().hex
    created = await client.post(
        "/signup", json=body(), headers={"Idempotency-Key": idempotency_key}
    )
    assert created.status_code == 201
    command_id = (await entries(r, keys.commands, newest_first=True))[0][1]["command_id"]
    record = keys.idempotency("POST", "/signup", idempotency_key)
    kept = [keys.user(created.json()["id"]), keys.command(command_id), record]
    sizes = [int(await r.memory_usage(key) or 0) for key in kept]
    assert all(sizes), dict(zip(kept, sizes, strict=True))
    assert sum(sizes) <= 1024, dict(zip(kept, sizes, strict=True))
    # Small fields only: Redis keeps the record in its compact encoding.
    assert await r.object("encoding", record) == "listpack"


async def test_validation_error_is_not_stored_under_the_key(
    client: httpx.AsyncClient, worker: Consumer
) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    bad = await client.post("/signup", json=body(password="short"), headers=key)
    assert bad.status_code == 422
    fixed = await client.post("/signup", json=body(), headers=key)
    assert fixed.status_code == 201


@pytest.mark.parametrize(
    ("content", "headers", "status", "problem"),
    [
        (b'{"name": ', {"content-type": "application/json"}, 400, "malformed-json"),
        (
            b"name=ann",
            {"content-type": "application/x-www-form-urlencoded"},
            415,
            "unsupported-media-type",
        ),
        (b"[1, 2]", {"content-type": "application/json"}, 422, "validation-error"),
        (
            b"{" + b" " * 70_000 + b"}",
            {"content-type": "application/json"},
            413,
            "content-too-large",
        ),
        (
            orjson.dumps(body()),
            {"content-type": "application/json", "idempotency-key": ""},
            400,
            "invalid-idempotency-key",
        ),
        (
            orjson.dumps(body()),
            {"content-type": "application/json", "idempotency-key": "k" * 256},
            400,
            "invalid-idempotency-key",
        ),
    ],
)
async def test_bad_requests_get_problem_details(
    client: httpx.AsyncClient, content: bytes, headers: dict[str, str], status: int, problem: str
) -> None:
    response = await client.post("/signup", content=content, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    document = response.json()
    assert document["type"] == f"/problems/{problem}"
    assert document["status"] == status
    assert document["title"]
    assert document["detail"]


async def test_invalid_fields_are_each_named(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/signup", json={"name": " ", "email": "not-an-email", "password": "é" * 37}
    )
    assert response.status_code == 422
    pointers = {e["pointer"] for e in response.json()["errors"]}
    assert pointers == {"/name", "/email", "/password"}
    wrong_type = await client.post("/signup", json=body(name=42))
    assert wrong_type.status_code == 422
    assert wrong_type.json()["errors"][0]["pointer"] == "/name"


@pytest.mark.parametrize("path", ["/users/nope", f"/users/{uuid.uuid4()}", "/commands/x"])
async def test_unknown_ids_are_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_probes(client: httpx.AsyncClient) -> None:
    health = await client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "healthy"
    ready = await client.get("/ready")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert {"postgres", "redis", "cpu", "memory", "disk"} <= checks.keys()
    assert all(c["ok"] for c in checks.values())


async def test_request_ids_are_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/health", headers={"X-Request-ID": "req-1", "X-Correlation-ID": "corr-1"}
    )
    assert response.headers["x-request-id"] == "req-1"
    assert response.headers["x-correlation-id"] == "corr-1"
