from __future__ import annotations

from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from api.idempotency import (
    ENQUEUED,
    MAX_KEY_LENGTH,
    RESERVED,
    Entry,
    IdempotencyStore,
    InvalidKey,
    check_key,
    fingerprint,
)
from storage.keys import Keys
from storage.outcomes import PENDING_JSON
from tests.unit.fakes import FakeCommands

TTL_SECONDS = 3600
LEASE_SECONDS = 30
OUTCOME_TTL_MS = 600_000
KEYS = Keys("test")
RECORD = KEYS.idempotency("POST", "/signup", "key-1")
FP = fingerprint("POST", "/signup", {"name": "Ann", "email": "ann@example.com"})
CID = "01930000-0000-7000-8000-000000000001"
OTHER_CID = "01930000-0000-7000-8000-000000000002"
USER_ID = "01930000-0000-7000-8000-0000000000aa"
PW_HASH = "$2b$04$abcdefghijklmnopqrstuu5Yp9X5HqJ0Ykq9c4Zk8o6J1cS0d0fGa"


@pytest.fixture
def store(fake_redis: Redis) -> IdempotencyStore:
    return IdempotencyStore(
        FakeCommands(fake_redis), ttl_seconds=TTL_SECONDS, lease_seconds=LEASE_SECONDS
    )


def entry() -> Entry:
    return Entry(
        stream=KEYS.commands,
        fields={"type": "signup.v1", "command_id": CID, "name": "Ann"},
        outcome_key=KEYS.command(CID),
        pending=PENDING_JSON,
    )


async def enqueue(store: IdempotencyStore, command_id: str = CID) -> str | None:
    return await store.enqueue(
        RECORD, command_id, USER_ID, PW_HASH, entry(), outcome_ttl_ms=OUTCOME_TTL_MS
    )


async def ttl_ms(client: Redis, key: str) -> int:
    ttl: int = await client.pttl(key)
    return ttl


def within(ttl: int, expected_ms: int) -> bool:
    """The TTL was set to ``expected_ms`` a moment ago."""
    return expected_ms - 5_000 < ttl <= expected_ms


@pytest.mark.anyio
async def test_first_reserve_takes_the_key_and_the_second_sees_the_reservation(
    store: IdempotencyStore,
) -> None:
    assert await store.reserve(RECORD, CID, FP) is None

    found = await store.reserve(RECORD, OTHER_CID, "another-fp")

    assert found is not None
    assert (found.state, found.fingerprint, found.command_id) == (RESERVED, FP, CID)


@pytest.mark.anyio
async def test_a_reservation_lives_for_the_lease(
    store: IdempotencyStore, fake_redis: Redis
) -> None:
    await store.reserve(RECORD, CID, FP)

    assert within(await ttl_ms(fake_redis, RECORD), LEASE_SECONDS * 1000)


@pytest.mark.anyio
async def test_enqueue_adds_one_entry_and_records_the_command(
    store: IdempotencyStore, fake_redis: Redis
) -> None:
    await store.reserve(RECORD, CID, FP)

    entry_id = await enqueue(store)

    entries = await fake_redis.xrange(KEYS.commands)
    assert entries == [(entry_id, entry().fields)]
    found = await store.reserve(RECORD, OTHER_CID, FP)
    assert found is not None
    assert (found.state, found.command_id, found.user_id, found.password_hash) == (
        ENQUEUED,
        CID,
        USER_ID,
        PW_HASH,
    )
    assert await fake_redis.get(KEYS.command(CID)) == PENDING_JSON.decode()
    assert within(await ttl_ms(fake_redis, KEYS.command(CID)), OUTCOME_TTL_MS)
    assert within(await ttl_ms(fake_redis, RECORD), TTL_SECONDS * 1000)


@pytest.mark.anyio
async def test_enqueue_keeps_an_outcome_already_stored(
    store: IdempotencyStore, fake_redis: Redis
) -> None:
    done = orjson.dumps({"command_id": CID, "status": "succeeded"}).decode()
    await fake_redis.set(KEYS.command(CID), done)
    await store.reserve(RECORD, CID, FP)

    await enqueue(store)

    assert await fake_redis.get(KEYS.command(CID)) == done


@pytest.mark.anyio
@pytest.mark.parametrize("reserved_by", [OTHER_CID, None])
async def test_enqueue_without_the_reservation_adds_nothing(
    store: IdempotencyStore, fake_redis: Redis, reserved_by: str | None
) -> None:
    if reserved_by is not None:
        await store.reserve(RECORD, reserved_by, FP)

    assert await enqueue(store) is None

    assert await fake_redis.xlen(KEYS.commands) == 0
    assert await fake_redis.exists(KEYS.command(CID)) == 0


@pytest.mark.anyio
async def test_enqueue_twice_adds_one_entry(store: IdempotencyStore, fake_redis: Redis) -> None:
    await store.reserve(RECORD, CID, FP)
    await enqueue(store)

    assert await enqueue(store) is None

    assert await fake_redis.xlen(KEYS.commands) == 1


@pytest.mark.anyio
async def test_an_enqueued_record_stays_compact(store: IdempotencyStore, fake_redis: Redis) -> None:
    await store.reserve(RECORD, CID, FP)
    await enqueue(store)

    # Every field under 64 bytes: Redis keeps the hash as a listpack, not a hashtable.
    record = await fake_redis.hgetall(RECORD)
    assert set(record) == {"state", "command_id", "fp", "user_id", "pw"}
    assert max(len(str(value).encode()) for value in record.values()) <= 64


@pytest.mark.anyio
async def test_release_frees_our_own_reservation(
    store: IdempotencyStore, fake_redis: Redis
) -> None:
    await store.reserve(RECORD, CID, FP)

    await store.release(RECORD, CID)

    assert await fake_redis.exists(RECORD) == 0
    assert await store.reserve(RECORD, OTHER_CID, FP) is None


@pytest.mark.anyio
async def test_release_with_another_token_keeps_the_reservation(
    store: IdempotencyStore, fake_redis: Redis
) -> None:
    await store.reserve(RECORD, CID, FP)

    await store.release(RECORD, OTHER_CID)

    assert await fake_redis.hget(RECORD, "command_id") == CID


@pytest.mark.anyio
async def test_release_after_enqueue_keeps_the_record(
    store: IdempotencyStore, fake_redis: Redis
) -> None:
    await store.reserve(RECORD, CID, FP)
    await enqueue(store)

    await store.release(RECORD, CID)

    assert await fake_redis.hget(RECORD, "state") == ENQUEUED


@pytest.mark.parametrize("key", ["", "k" * (MAX_KEY_LENGTH + 1), "a b", "a\tb", "a\x00b", "é"])
def test_check_key_refuses_empty_long_and_unprintable_keys(key: str) -> None:
    with pytest.raises(InvalidKey):
        check_key(key)


@pytest.mark.parametrize("key", ["k", "~" * MAX_KEY_LENGTH, "".join(map(chr, range(0x21, 0x7F)))])
def test_check_key_accepts_printable_ascii_up_to_255(key: str) -> None:
    assert check_key(key) == key


BODY: dict[str, Any] = {"name": "Ann", "email": "ann@example.com", "password": "secret-1"}


def test_fingerprint_ignores_member_order() -> None:
    reordered = dict(reversed(list(BODY.items())))

    assert fingerprint("POST", "/signup", reordered) == fingerprint("POST", "/signup", BODY)


def test_fingerprint_ignores_the_password() -> None:
    other_password = {**BODY, "password": "other-password"}

    assert fingerprint("POST", "/signup", other_password) == fingerprint("POST", "/signup", BODY)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/signup", {**BODY, "name": "Bob"}),
        ("POST", "/signup", {**BODY, "display_name": "Annie"}),
        ("POST", "/signup", {**BODY, "display_name": None}),
        ("PUT", "/signup", BODY),
        ("POST", "/other", BODY),
    ],
)
def test_fingerprint_differs_on_anything_but_the_password(
    method: str, path: str, body: dict[str, Any]
) -> None:
    assert fingerprint(method, path, body) != fingerprint("POST", "/signup", BODY)
