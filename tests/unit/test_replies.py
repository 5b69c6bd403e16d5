from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import orjson
import pytest
from redis.asyncio import Redis

from api.replies import ReplyListener
from storage.keys import Keys
from storage.outcomes import PENDING_JSON

KEYS = Keys("test")
CID = "01930000-0000-7000-8000-000000000001"


@pytest.fixture
async def listener(fake_redis: Redis) -> AsyncIterator[ReplyListener]:
    listener = ReplyListener(fake_redis, KEYS, "web1")
    async with anyio.create_task_group() as tg:
        await tg.start(listener.run)
        yield listener
        tg.cancel_scope.cancel()


def succeeded(command_id: str) -> dict[str, str]:
    return {"status": "succeeded", "user_id": f"user-of-{command_id}"}


def text(document: dict[str, str]) -> str:
    return orjson.dumps(document).decode()


@pytest.mark.anyio
async def test_reply_channels_are_scoped_to_the_web_process(fake_redis: Redis) -> None:
    listener = ReplyListener(fake_redis, KEYS, "web1")

    assert listener.channel(CID) == KEYS.reply_channel("web1", CID)


@pytest.mark.anyio
async def test_a_published_reply_reaches_its_waiter(
    listener: ReplyListener, fake_redis: Redis
) -> None:
    with listener.expect(CID):
        await fake_redis.publish(listener.channel(CID), text(succeeded(CID)))

        assert await listener.wait(CID, within=2) == succeeded(CID)
    assert listener.waiting == 0


@pytest.mark.anyio
async def test_a_reply_goes_only_to_its_own_waiter(
    listener: ReplyListener, fake_redis: Redis
) -> None:
    other = "01930000-0000-7000-8000-000000000002"
    with listener.expect(CID), listener.expect(other):
        await fake_redis.publish(listener.channel(other), text(succeeded(other)))
        await fake_redis.publish(listener.channel(CID), text(succeeded(CID)))

        assert await listener.wait(CID, within=2) == succeeded(CID)
        assert await listener.wait(other, within=2) == succeeded(other)


@pytest.mark.anyio
async def test_a_reply_on_another_web_processes_channel_is_not_heard(
    listener: ReplyListener, fake_redis: Redis
) -> None:
    with listener.expect(CID):
        await fake_redis.publish(KEYS.reply_channel("web2", CID), text(succeeded(CID)))

        assert await listener.wait(CID, within=0.2) is None


@pytest.mark.anyio
async def test_without_a_reply_the_stored_outcome_is_returned_at_the_deadline(
    listener: ReplyListener, fake_redis: Redis
) -> None:
    await fake_redis.set(KEYS.command(CID), text(succeeded(CID)))

    with listener.expect(CID):
        started = anyio.current_time()
        document = await listener.wait(CID, within=0.2)

    assert document == succeeded(CID)
    assert anyio.current_time() - started >= 0.2


@pytest.mark.anyio
async def test_a_pending_outcome_at_the_deadline_gives_none(
    listener: ReplyListener, fake_redis: Redis
) -> None:
    await fake_redis.set(KEYS.command(CID), PENDING_JSON)

    with listener.expect(CID):
        assert await listener.wait(CID, within=0.2) is None


@pytest.mark.anyio
async def test_no_outcome_at_all_at_the_deadline_gives_none(listener: ReplyListener) -> None:
    with listener.expect(CID):
        assert await listener.wait(CID, within=0.1) is None
