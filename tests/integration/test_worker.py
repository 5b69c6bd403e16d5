"""The worker against the real Redis and Postgres: redelivery, dead letters, own PEL."""

from __future__ import annotations

import uuid

import anyio
import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from domain.ids import uuid7
from domain.model import SignUp
from settings import Settings
from storage import streams
from storage.keys import Keys
from tests.integration.conftest import running_worker, until_acked, web_client
from tests.redis_typed import add, entries, get_json
from workers.consumer import Consumer

pytestmark = pytest.mark.anyio


async def test_redelivered_command_creates_one_user(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings, r: redis.Redis
) -> None:
    keys = Keys(settings.redis_namespace)
    created = await client.post(
        "/signup",
        json={"name": "Ann", "email": f"{uuid.uuid4().hex}@example.com", "password": "pw123456"},
    )
    assert created.status_code == 201
    [(_, fields)] = await entries(r, keys.commands)
    await add(r, keys.commands, fields)  # the same command, delivered a second time
    await until_acked(r, keys)
    conn = await asyncpg.connect(settings.database_url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM users WHERE email = $1", created.json()["email"]
        )
    finally:
        await conn.close()
    assert count == 1
    outcome = await get_json(r, keys.command(fields["command_id"]))
    assert outcome["status"] == "succeeded"
    assert outcome["user_id"] == created.json()["id"]


async def test_malformed_entry_is_dead_lettered_and_the_worker_goes_on(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings, r: redis.Redis
) -> None:
    keys = Keys(settings.redis_namespace)
    bad_id = await add(r, keys.commands, {"type": "signup.v1", "command_id": "not-a-uuid"})
    await until_acked(r, keys)
    [(_, letter)] = await entries(r, keys.deadletters)
    assert letter["entry_id"] == bad_id
    assert letter["original.command_id"] == "not-a-uuid"
    assert "UUID" in letter["error"]
    after = await client.post(
        "/signup",
        json={"name": "Bo", "email": f"{uuid.uuid4().hex}@example.com", "password": "pw123456"},
    )
    assert after.status_code == 201


async def test_an_entry_that_is_not_utf8_is_dead_lettered(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings
) -> None:
    keys = Keys(settings.redis_namespace)
    raw = redis.Redis.from_url(settings.redis_url)  # bytes in, as redis-cli could send them
    try:
        added = await raw.xadd(keys.commands, {b"type": b"\xff\xfesignup"})
        bad_id = added.decode() if isinstance(added, bytes) else added
        await until_acked(raw, keys)
    finally:
        await raw.aclose()
    plain = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        [(_, letter)] = await entries(plain, keys.deadletters)
    finally:
        await plain.aclose()
    assert letter["entry_id"] == bad_id
    assert "unknown command type" in letter["error"]
    after = await client.post(
        "/signup",
        json={"name": "Bo", "email": f"{uuid.uuid4().hex}@example.com", "password": "pw123456"},
    )
    assert after.status_code == 201


async def test_worker_resumes_its_own_pending_entries(settings: Settings, r: redis.Redis) -> None:
    keys = Keys(settings.redis_namespace)
    quick = settings.model_copy(update={"reply_timeout_seconds": 0.2})
    async with running_worker(quick) as consumer:
        await consumer.ensure_group()
        consumer.stop()
    email = f"{uuid.uuid4().hex}@example.com"
    async with web_client(quick) as client:
        sent = await client.post(
            "/signup", json={"name": "Cy", "email": email, "password": "pw123456"}
        )
    assert sent.status_code == 202
    # Deliver to this consumer name without processing: as if it died mid-batch.
    delivered = await r.xreadgroup(keys.group, settings.worker_name, {keys.commands: ">"})
    assert delivered
    assert (await r.xinfo_groups(keys.commands))[0]["pending"] == 1
    async with running_worker(settings):
        await until_acked(r, keys)
    conn = await asyncpg.connect(settings.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM users WHERE email = $1", email) == 1
    finally:
        await conn.close()


async def test_a_command_postgres_refuses_is_dead_lettered_alone(
    settings: Settings, r: redis.Redis
) -> None:
    keys = Keys(settings.redis_namespace)
    fast = settings.model_copy(update={"worker_claim_idle_ms": 200, "worker_max_deliveries": 2})

    def entry(name: str) -> dict[str, str]:
        command = SignUp(
            uuid7(), uuid7(), name, f"{uuid.uuid4().hex}@x.org", name, "$2b$04$" + "a" * 53
        )
        return streams.encode(streams.Envelope(command, "", streams.now_iso()))

    bad, good = entry("x" * 300), entry("Good")  # users.name is varchar(255)
    await r.xgroup_create(keys.commands, keys.group, id="0", mkstream=True)
    await add(r, keys.commands, bad)
    await add(r, keys.commands, good)
    async with running_worker(fast):
        with anyio.fail_after(20):
            while await r.xlen(keys.deadletters) == 0:
                await anyio.sleep(0.05)
        await until_acked(r, keys)
    [(_, letter)] = await entries(r, keys.deadletters)
    assert letter["original.command_id"] == bad["command_id"]
    assert "delivered" in letter["error"]
    assert (await get_json(r, keys.command(bad["command_id"])))["status"] == "failed"
    assert (await get_json(r, keys.command(good["command_id"])))["status"] == "succeeded"
