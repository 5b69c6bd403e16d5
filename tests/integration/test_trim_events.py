"""Trimming the events stream by age, never past what a consumer group still needs."""

from __future__ import annotations

import time
from typing import cast

import pytest
import redis.asyncio as redis

from settings import Settings
from storage.keys import Keys
from tests.redis_typed import Entry, add, entries
from workers.housekeeping import trim_events

pytestmark = pytest.mark.anyio

RETENTION = 3600.0
LATER = time.time() + 2 * RETENTION  # every entry added now is past the retention then


@pytest.fixture
def stream(settings: Settings) -> str:
    return Keys(settings.redis_namespace).events


async def append(r: redis.Redis, stream: str, n: int) -> list[str]:
    return [await add(r, stream, {"type": "user.signed_up.v1", "n": str(i)}) for i in range(n)]


async def read(
    r: redis.Redis, stream: str, group: str, consumer: str, count: int | None = None
) -> list[str]:
    """Deliver new entries to ``consumer`` (pending until acked); their ids."""
    reply = await r.xreadgroup(group, consumer, {stream: ">"}, count=count)
    return [
        entry_id for _, batch in cast(list[tuple[str, list[Entry]]], reply) for entry_id, _ in batch
    ]


async def ids(r: redis.Redis, stream: str) -> list[str]:
    return [entry_id for entry_id, _ in await entries(r, stream)]


async def test_a_stream_that_does_not_exist_is_left_alone(r: redis.Redis, stream: str) -> None:
    assert await trim_events(r, stream, RETENTION, now=LATER) == 0
    assert not await r.exists(stream)


async def test_without_a_group_entries_within_the_retention_stay(
    r: redis.Redis, stream: str
) -> None:
    added = await append(r, stream, 5)

    assert await trim_events(r, stream, RETENTION) == 0
    assert await trim_events(r, stream, RETENTION, now=time.time() + RETENTION / 2) == 0

    assert await ids(r, stream) == added


async def test_without_a_group_entries_past_the_retention_go(r: redis.Redis, stream: str) -> None:
    await append(r, stream, 5)

    assert await trim_events(r, stream, RETENTION, now=LATER) == 5

    assert await r.xlen(stream) == 0


async def test_a_group_that_has_not_read_them_keeps_them(r: redis.Redis, stream: str) -> None:
    added = await append(r, stream, 5)
    await r.xgroup_create(stream, "mailer", id="0")

    assert await trim_events(r, stream, RETENTION, now=LATER) == 0

    assert await ids(r, stream) == added


async def test_entries_read_but_not_acked_stay_until_acked(r: redis.Redis, stream: str) -> None:
    added = await append(r, stream, 5)
    await r.xgroup_create(stream, "mailer", id="0")
    assert await read(r, stream, "mailer", "m1") == added

    assert await trim_events(r, stream, RETENTION, now=LATER) == 0
    assert await ids(r, stream) == added

    await r.xack(stream, "mailer", *added)

    assert await trim_events(r, stream, RETENTION, now=LATER) == 5
    assert await r.xlen(stream) == 0


async def test_entries_read_and_acked_but_within_the_retention_stay(
    r: redis.Redis, stream: str
) -> None:
    added = await append(r, stream, 5)
    await r.xgroup_create(stream, "mailer", id="0")
    assert await read(r, stream, "mailer", "m1") == added
    await r.xack(stream, "mailer", *added)

    assert await trim_events(r, stream, RETENTION) == 0

    assert await ids(r, stream) == added


async def test_every_group_must_be_done_with_an_entry(r: redis.Redis, stream: str) -> None:
    added = await append(r, stream, 5)
    await r.xgroup_create(stream, "mailer", id="0")
    await r.xgroup_create(stream, "webhooks", id="0")
    assert await read(r, stream, "mailer", "m1") == added
    await r.xack(stream, "mailer", *added)

    assert await trim_events(r, stream, RETENTION, now=LATER) == 0
    assert await ids(r, stream) == added

    assert await read(r, stream, "webhooks", "w1") == added
    await r.xack(stream, "webhooks", *added)

    assert await trim_events(r, stream, RETENTION, now=LATER) == 5
    assert await r.xlen(stream) == 0


async def test_a_group_created_after_the_entries_does_not_hold_them(
    r: redis.Redis, stream: str
) -> None:
    # `$`: the group starts from new entries; what came before is no business of its.
    await append(r, stream, 5)
    await r.xgroup_create(stream, "late", id="$")

    assert await trim_events(r, stream, RETENTION, now=LATER) == 5


async def test_never_past_the_oldest_pending_entry(r: redis.Redis, stream: str) -> None:
    # Enough entries for several of Redis's 100-entry nodes: whole nodes before the first
    # pending entry may go, never that entry or one after it.
    added = await append(r, stream, 350)
    await r.xgroup_create(stream, "mailer", id="0")
    assert await read(r, stream, "mailer", "m1") == added
    await r.xack(stream, "mailer", *added[:150])

    removed = await trim_events(r, stream, RETENTION, now=LATER)

    left = await ids(r, stream)
    assert left == added[removed:]
    assert removed > 0
    assert set(added[150:]) <= set(left)

    await r.xack(stream, "mailer", *added[150:])

    assert await trim_events(r, stream, RETENTION, now=LATER) == len(left)
    assert await r.xlen(stream) == 0


async def test_never_past_the_oldest_unread_entry(r: redis.Redis, stream: str) -> None:
    added = await append(r, stream, 350)
    await r.xgroup_create(stream, "mailer", id="0")
    assert await read(r, stream, "mailer", "m1", count=220) == added[:220]
    await r.xack(stream, "mailer", *added[:220])

    removed = await trim_events(r, stream, RETENTION, now=LATER)

    left = await ids(r, stream)
    assert left == added[removed:]
    assert 0 < removed <= 220
    # The group's lag still counts what it has not read.
    [info] = await r.xinfo_groups(stream)
    assert info["lag"] == 130
