"""Stream trimming, backpressure, dead-letter tooling and read-model rebuild, on real Redis
and Postgres."""

from __future__ import annotations

import uuid

import anyio
import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from settings import Settings
from storage.keys import Keys
from storage.read_model import rebuild
from tests.integration.conftest import running_worker, web_client
from tests.redis_typed import add, entries
from workers import deadletters
from workers.housekeeping import trim_commands

pytestmark = pytest.mark.anyio


async def _fill(r: redis.Redis, keys: Keys, n: int) -> list[str]:
    await r.xgroup_create(keys.commands, keys.group, id="0", mkstream=True)
    return [await add(r, keys.commands, {"n": str(i)}) for i in range(n)]


async def test_trim_never_drops_unread_entries(r: redis.Redis, settings: Settings) -> None:
    keys = Keys(settings.redis_namespace)
    ids = await _fill(r, keys, 300)
    assert await trim_commands(r, keys, keep=10) == 0  # nothing read yet
    await r.xreadgroup(keys.group, "c1", {keys.commands: ">"}, count=200)
    await r.xack(keys.commands, keys.group, *ids[:200])
    await trim_commands(r, keys, keep=10)
    remaining = [e for e, _ in await entries(r, keys.commands)]
    assert set(ids[200:]) <= set(remaining)  # the 100 unread ones all stay
    assert len(remaining) < 300


async def test_trim_keeps_pending_entries(r: redis.Redis, settings: Settings) -> None:
    keys = Keys(settings.redis_namespace)
    ids = await _fill(r, keys, 500)
    await r.xreadgroup(keys.group, "c1", {keys.commands: ">"})
    await r.xack(keys.commands, keys.group, *ids[1:])  # ids[0] stays pending
    await trim_commands(r, keys, keep=10)
    remaining = [e for e, _ in await entries(r, keys.commands)]
    assert remaining[0] == ids[0]
    pending = await r.xpending(keys.commands, keys.group)
    assert pending["pending"] == 1


async def test_trim_bounds_a_fully_acked_stream(r: redis.Redis, settings: Settings) -> None:
    keys = Keys(settings.redis_namespace)
    ids = await _fill(r, keys, 2000)
    await r.xreadgroup(keys.group, "c1", {keys.commands: ">"})
    await r.xack(keys.commands, keys.group, *ids)
    await trim_commands(r, keys, keep=100)
    # Approximate trimming removes whole radix-tree nodes (100 entries by default).
    assert 100 <= await r.xlen(keys.commands) <= 200


async def test_backlog_over_the_limit_is_503(settings: Settings, r: redis.Redis) -> None:
    keys = Keys(settings.redis_namespace)
    await _fill(r, keys, 5)
    small = settings.model_copy(update={"max_backlog": 3})
    async with web_client(small) as client:
        response = await client.post(
            "/signup",
            json={"name": "Al", "email": f"{uuid.uuid4().hex}@example.com", "password": "pw123456"},
        )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["type"] == "/problems/service-unavailable"
    assert await r.xlen(keys.commands) == 5  # nothing more was enqueued


async def test_dead_letters_can_be_listed_replayed_and_dropped(
    settings: Settings, r: redis.Redis, client: httpx.AsyncClient
) -> None:
    keys = Keys(settings.redis_namespace)
    await r.xgroup_create(keys.commands, keys.group, id="0", mkstream=True)
    await add(
        r, keys.deadletters, {"original.type": "bogus", "error": "unknown", "entry_id": "1-0"}
    )
    await add(r, keys.deadletters, {"original.type": "bogus", "error": "again", "entry_id": "2-0"})
    commands = deadletters.letters(keys, "commands")
    lines = await deadletters.list_letters(r, commands, count=10)
    assert len(lines) == 2
    assert "error='unknown'" in lines[0]
    letters = await entries(r, keys.deadletters)
    assert await deadletters.replay(r, commands, letters[:1]) == 1
    [(_, replayed)] = await entries(r, keys.commands)
    assert replayed == {"type": "bogus"}
    assert await deadletters.drop(r, commands, letters[1:]) == 1
    assert await r.xlen(keys.deadletters) == 0


async def test_mailer_dead_letters_replay_to_the_mailer_alone(
    settings: Settings, r: redis.Redis
) -> None:
    keys = Keys(settings.redis_namespace)
    event = {"type": "user.signed_up.v1", "event_id": "e-1", "email": "ann@example.com"}
    await add(
        r,
        keys.mailer_deadletters,
        {**{f"original.{k}": v for k, v in event.items()}, "error": "550 no such user"},
    )
    mailer = deadletters.letters(keys, "mailer")
    [line] = await deadletters.list_letters(r, mailer, count=10)
    assert "event_id=e-1" in line
    assert "550 no such user" in line
    assert await deadletters.replay(r, mailer, await entries(r, keys.mailer_deadletters)) == 1
    [(_, replayed)] = await entries(r, keys.mailer_replays)
    assert replayed == event
    # Nothing went back on the events stream, which every other consumer reads.
    assert await r.exists(keys.events) == 0
    assert await r.xlen(keys.mailer_deadletters) == 0


async def test_read_model_rebuild_after_redis_lost_it(
    settings: Settings, r: redis.Redis, client: httpx.AsyncClient
) -> None:
    keys = Keys(settings.redis_namespace)
    async with running_worker(settings):
        ids = []
        for _ in range(3):
            response = await client.post(
                "/signup",
                json={"name": "Re", "email": f"{uuid.uuid4().hex}@x.org", "password": "pw123456"},
            )
            ids.append(response.json()["id"])
    await r.delete(*(keys.user(i) for i in ids))
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1)
    try:
        assert await rebuild(r, keys, pool) >= 3
    finally:
        await pool.close()
    for user_id in ids:
        assert await r.exists(keys.user(user_id)) == 1


async def test_requests_past_the_in_flight_cap_get_503(settings: Settings) -> None:
    capped = settings.model_copy(update={"max_in_flight_requests": 1, "reply_timeout_seconds": 1.0})
    async with web_client(capped) as client, anyio.create_task_group() as tg:
        slow: list[httpx.Response] = []

        async def waits_for_a_reply() -> None:
            body = {"name": "Sl", "email": f"{uuid.uuid4().hex}@x.org", "password": "pw123456"}
            slow.append(await client.post("/signup", json=body))

        tg.start_soon(waits_for_a_reply)  # no worker runs: it holds its slot ~1 s
        await anyio.sleep(0.3)
        refused = await client.get("/health")
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
    assert slow[0].status_code == 202
    async with web_client(capped) as client:
        assert (await client.get("/health")).status_code == 200


async def test_rate_limit_answers_429_with_retry_after(settings: Settings) -> None:
    limited = settings.model_copy(update={"signup_rate_limit": 2})
    async with web_client(limited) as client, running_worker(limited):
        statuses = []
        for _ in range(3):
            body = {"name": "Rt", "email": f"{uuid.uuid4().hex}@x.org", "password": "pw123456"}
            response = await client.post("/signup", json=body)
            statuses.append(response.status_code)
        assert statuses == [201, 201, 429]
        assert int(response.headers["retry-after"]) >= 1
