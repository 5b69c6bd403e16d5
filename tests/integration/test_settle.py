"""The settling script against the real Redis: an entry's events are appended once, when
its ack acknowledged it, however often it is settled; the read model only moves forward."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import orjson
import pytest
import redis.asyncio as redis

from domain.ids import uuid7
from domain.model import SignUp, User
from settings import Settings
from storage import streams
from storage.autopipeline import PipelinedRedis
from storage.keys import Keys
from storage.outcomes import PENDING_JSON, user_json
from storage.read_model import put_user
from storage.settle import Settlement, settle
from tests.redis_typed import add, entries, get_json

pytestmark = pytest.mark.anyio

TTL_MS = 60_000
HASH = "$2b$04$" + "a" * 53


@pytest.fixture
async def commands(settings: Settings) -> AsyncIterator[PipelinedRedis]:
    client = PipelinedRedis(settings.redis_url, timeout=2, connect_timeout=2)
    yield client
    await client.aclose()


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.redis_namespace)


def user(version: int = 1, name: str = "Ann") -> User:
    return User(
        id=uuid7(),
        name=name,
        email=f"{uuid7().hex}@example.com",
        display_name=name,
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        version=version,
    )


def entry_fields() -> dict[str, str]:
    command = SignUp(uuid7(), uuid7(), "Ann", f"{uuid7().hex}@example.com", "Ann", HASH)
    return streams.encode(streams.Envelope(command, "", streams.now_iso()))


def event(command_id: str, n: int = 0) -> dict[str, str]:
    return {
        "event_id": str(uuid7()),
        "type": "user.signed_up.v1",
        "command_id": command_id,
        "n": str(n),
    }


def settlement(
    keys: Keys,
    entry_id: str,
    command_id: str,
    account: User,
    events: list[dict[str, str]],
    *,
    reply_channel: str = "",
) -> Settlement:
    document = user_json(account)
    return Settlement(
        entry_id=entry_id,
        outcome_key=keys.command(command_id),
        stored=orjson.dumps({"status": "succeeded", "user_id": str(account.id)}),
        reply_channel=reply_channel,
        reply=orjson.dumps({"status": "succeeded"}),
        user_key=keys.user(str(account.id)),
        version=account.version,
        document=document,
        events=events,
    )


async def _settle(commands: PipelinedRedis, keys: Keys, *batch: Settlement) -> list[int]:
    return await settle(
        commands,
        stream=keys.commands,
        events_stream=keys.events,
        group=keys.group,
        outcome_ttl_ms=TTL_MS,
        batch=list(batch),
    )


async def delivered(r: redis.Redis, keys: Keys, consumer: str = "A") -> tuple[str, dict[str, str]]:
    """One new entry, on the stream and read (pending) by ``consumer``."""
    fields = entry_fields()
    # The web writes the pending outcome with the entry.
    await r.set(keys.command(fields["command_id"]), PENDING_JSON, px=TTL_MS)
    entry_id = await add(r, keys.commands, fields)
    reply = await r.xreadgroup(keys.group, consumer, {keys.commands: ">"}, count=1)
    assert reply, "nothing delivered"
    return entry_id, fields


async def pending(r: redis.Redis, keys: Keys) -> int:
    summary = await r.xpending(keys.commands, keys.group)
    return int(summary["pending"])


@pytest.fixture
async def group(r: redis.Redis, keys: Keys) -> None:
    await r.xgroup_create(keys.commands, keys.group, id="0", mkstream=True)


@pytest.mark.usefixtures("group")
async def test_settling_acks_appends_and_writes_everything(
    r: redis.Redis, commands: PipelinedRedis, keys: Keys
) -> None:
    entry_id, fields = await delivered(r, keys)
    account = user()
    ev = event(fields["command_id"])

    appended = await _settle(
        commands, keys, settlement(keys, entry_id, fields["command_id"], account, [ev])
    )

    assert appended == [1]
    assert await pending(r, keys) == 0
    [(_, written)] = await entries(r, keys.events)
    assert written == ev
    outcome_key = keys.command(fields["command_id"])
    assert await get_json(r, outcome_key) == {"status": "succeeded", "user_id": str(account.id)}
    ttl = await r.pttl(outcome_key)
    assert 0 < ttl <= TTL_MS
    assert await r.get(keys.user(str(account.id))) == user_json(account).decode()


@pytest.mark.usefixtures("group")
async def test_settling_the_same_entry_again_appends_nothing(
    r: redis.Redis, commands: PipelinedRedis, keys: Keys
) -> None:
    entry_id, fields = await delivered(r, keys)
    account = user()
    first = settlement(keys, entry_id, fields["command_id"], account, [event(fields["command_id"])])
    assert await _settle(commands, keys, first) == [1]

    # A retry after a lost reply, or a second worker that also applied it: same entry, and
    # a different outcome and document, which must not land either.
    later = user(version=5, name="Changed")
    again = Settlement(
        entry_id=entry_id,
        outcome_key=first.outcome_key,
        stored=b'{"status":"failed","reason":"x","detail":"y"}',
        reply_channel="",
        reply=b"",
        user_key=first.user_key,
        version=later.version,
        document=user_json(later),
        events=[event(fields["command_id"], 1)],
    )

    assert await _settle(commands, keys, again) == [0]
    assert len(await entries(r, keys.events)) == 1
    assert (await get_json(r, first.outcome_key))["status"] == "succeeded"
    assert await r.get(first.user_key) == first.document.decode()


@pytest.mark.usefixtures("group")
async def test_a_reclaimed_entry_is_appended_by_whichever_worker_acks_first(
    r: redis.Redis, commands: PipelinedRedis, keys: Keys
) -> None:
    entry_id, fields = await delivered(r, keys, consumer="A")
    # B takes the entry over (XAUTOCLAIM after A looked dead) while A is still on it.
    claimed = await r.xclaim(
        keys.commands, keys.group, "B", min_idle_time=0, message_ids=[entry_id]
    )
    assert [c[0] for c in claimed] == [entry_id]
    account = user()
    by_a = settlement(keys, entry_id, fields["command_id"], account, [event(fields["command_id"])])
    by_b = settlement(keys, entry_id, fields["command_id"], account, [event(fields["command_id"])])

    assert await _settle(commands, keys, by_a) == [1]
    assert await _settle(commands, keys, by_b) == [0]
    assert len(await entries(r, keys.events)) == 1
    assert await pending(r, keys) == 0


@pytest.mark.usefixtures("group")
async def test_a_second_entry_of_a_succeeded_command_appends_nothing(
    r: redis.Redis, commands: PipelinedRedis, keys: Keys
) -> None:
    entry_id, fields = await delivered(r, keys)
    account = user()
    command_id = fields["command_id"]
    assert await _settle(
        commands, keys, settlement(keys, entry_id, command_id, account, [event(command_id)])
    ) == [1]

    # The same command added again as a new entry (a replayed dead letter, a hand XADD).
    second_id = await add(r, keys.commands, fields)
    assert await r.xreadgroup(keys.group, "A", {keys.commands: ">"})
    again = settlement(keys, second_id, command_id, account, [event(command_id, 1)])

    assert await _settle(commands, keys, again) == [0]
    assert len(await entries(r, keys.events)) == 1
    # It is acked all the same, and its outcome stays a success.
    assert await pending(r, keys) == 0
    assert (await get_json(r, keys.command(command_id)))["status"] == "succeeded"


@pytest.mark.usefixtures("group")
async def test_a_replayed_dead_letter_appends_its_events(
    r: redis.Redis, commands: PipelinedRedis, keys: Keys
) -> None:
    # A dead-lettered command's outcome is a failure; applied after all when replayed, it
    # appends its events then (the dead-lettered delivery appended none).
    entry_id, fields = await delivered(r, keys)
    failed = b'{"status":"failed","reason":"dead-lettered","detail":"x"}'
    await r.set(keys.command(fields["command_id"]), failed)
    account = user()

    appended = await _settle(
        commands, keys, settlement(keys, entry_id, fields["command_id"], account, [event("a")])
    )

    assert appended == [1]
    assert [f["command_id"] for _, f in await entries(r, keys.events)] == ["a"]
    assert (await get_json(r, keys.command(fields["command_id"])))["status"] == "succeeded"


@pytest.mark.usefixtures("group")
async def test_a_batch_settles_each_entry_on_its_own_in_stream_order(
    r: redis.Redis, commands: PipelinedRedis, keys: Keys
) -> None:
    one, f1 = await delivered(r, keys)
    two, f2 = await delivered(r, keys)
    three, f3 = await delivered(r, keys)
    # `two` was settled already (by another worker): the batch skips it alone.
    early = settlement(keys, two, f2["command_id"], user(), [event("early")])
    assert await _settle(commands, keys, early) == [1]
    refused = Settlement(
        entry_id=three,
        outcome_key=keys.command(f3["command_id"]),
        stored=b'{"status":"failed","reason":"email-taken","detail":"taken"}',
        reply_channel="",
        reply=b"",
    )

    appended = await _settle(
        commands,
        keys,
        settlement(keys, one, f1["command_id"], user(), [event("one", 0), event("one", 1)]),
        settlement(keys, two, f2["command_id"], user(), [event("two")]),
        refused,
    )

    assert appended == [2, 0, 0]
    written = [(f["command_id"], f["n"]) for _, f in await entries(r, keys.events)]
    assert written == [("early", "0"), ("one", "0"), ("one", "1")]
    assert await pending(r, keys) == 0
    assert (await get_json(r, keys.command(f3["command_id"])))["reason"] == "email-taken"


@pytest.mark.usefixtures("group")
async def test_the_reply_is_published_only_by_the_settling_that_acked(
    r: redis.Redis, commands: PipelinedRedis, keys: Keys
) -> None:
    entry_id, fields = await delivered(r, keys)
    channel = f"{keys.namespace}:reply:web1:{fields['command_id']}"
    account = user()
    s = settlement(keys, entry_id, fields["command_id"], account, [], reply_channel=channel)
    async with r.pubsub() as sub:
        await sub.subscribe(channel)
        subscribed = await sub.get_message(timeout=1)
        assert subscribed is not None
        assert subscribed["type"] == "subscribe"

        assert await _settle(commands, keys, s) == [0]  # no events, acked all the same
        message = await sub.get_message(ignore_subscribe_messages=True, timeout=2)
        assert message is not None
        assert message["data"] == '{"status":"succeeded"}'

        assert await _settle(commands, keys, s) == [0]
        with anyio.move_on_after(0.3):
            while True:
                late = await sub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                assert late is None, late
    assert await pending(r, keys) == 0
    assert await r.xlen(keys.events) == 0


@pytest.mark.usefixtures("group")
async def test_settling_never_moves_the_read_model_back(
    r: redis.Redis, commands: PipelinedRedis, keys: Keys
) -> None:
    newer = user(version=3, name="Newer")
    await put_user(commands, keys, newer)
    entry_id, fields = await delivered(r, keys)
    stale = settlement(keys, entry_id, fields["command_id"], user_with(newer, 2, "Stale"), [])

    assert await _settle(commands, keys, stale) == [0]

    assert await r.get(keys.user(str(newer.id))) == user_json(newer).decode()
    assert await pending(r, keys) == 0


def user_with(account: User, version: int, name: str) -> User:
    return User(
        id=account.id,
        name=name,
        email=account.email,
        display_name=name,
        created_at=account.created_at,
        version=version,
        email_verified_at=account.email_verified_at,
    )


# -- the read model's compare-and-set -----------------------------------------------------


async def test_put_user_never_goes_back_a_version(
    r: redis.Redis, commands: PipelinedRedis, keys: Keys
) -> None:
    v2 = user(version=2, name="Two")
    v1 = user_with(v2, 1, "One")

    assert await put_user(commands, keys, v2) is True
    assert await put_user(commands, keys, v1) is False

    assert await get_json(r, keys.user(str(v2.id))) == orjson.loads(user_json(v2))


async def test_put_user_at_the_same_version_leaves_the_document(
    r: redis.Redis, commands: PipelinedRedis, keys: Keys
) -> None:
    first = user(version=2, name="First")

    assert await put_user(commands, keys, first) is True
    assert await put_user(commands, keys, user_with(first, 2, "Second")) is False

    assert (await get_json(r, keys.user(str(first.id))))["name"] == "First"


async def test_put_user_moves_forward(r: redis.Redis, commands: PipelinedRedis, keys: Keys) -> None:
    v1 = user(version=1, name="One")
    v3 = user_with(v1, 3, "Three")

    assert await put_user(commands, keys, v1) is True
    assert await put_user(commands, keys, v3) is True

    assert await get_json(r, keys.user(str(v1.id))) == orjson.loads(user_json(v3))


@pytest.mark.parametrize(
    "old",
    [
        b'{"id":"x","name":"Before versions"}',
        b'{"id":"x","name":"Before versions","version":null}',
        b"not json at all",
    ],
)
async def test_a_document_without_a_version_is_overwritten(
    r: redis.Redis, commands: PipelinedRedis, keys: Keys, old: bytes
) -> None:
    account = user(version=1)
    await r.set(keys.user(str(account.id)), old)

    assert await put_user(commands, keys, account) is True

    assert await get_json(r, keys.user(str(account.id))) == orjson.loads(user_json(account))
