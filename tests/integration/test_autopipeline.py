"""The web's auto-pipelined Redis connection, against the real Redis (and sockets that
misbehave on purpose)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from storage.autopipeline import RETRY_AFTER_SECONDS, PipelinedRedis
from tests.conftest import TEST_REDIS_URL

pytestmark = pytest.mark.anyio


@pytest.fixture
async def commands() -> AsyncIterator[PipelinedRedis]:
    client = PipelinedRedis(TEST_REDIS_URL, timeout=2.0, connect_timeout=2.0)
    yield client
    await client.aclose()


async def test_concurrent_commands_each_get_their_own_reply(
    commands: PipelinedRedis, namespace: str
) -> None:
    keys = [f"{namespace}:k{i}" for i in range(500)]
    await asyncio.gather(*(commands.execute("SET", k, f"value {k} é") for k in keys))

    values = await asyncio.gather(*(commands.execute("GET", k) for k in keys))

    assert values == [f"value {k} é" for k in keys]
    assert await commands.execute("GET", f"{namespace}:missing") is None


async def test_an_error_reply_fails_only_its_own_command(
    commands: PipelinedRedis, namespace: str
) -> None:
    await commands.execute("SET", f"{namespace}:text", "not a number")

    results = await asyncio.gather(
        commands.execute("INCR", f"{namespace}:n"),
        commands.execute("INCR", f"{namespace}:text"),
        commands.execute("INCR", f"{namespace}:n"),
        return_exceptions=True,
    )

    assert results[0] == 1
    assert results[2] == 2
    assert isinstance(results[1], ResponseError)


async def test_a_script_runs_again_after_redis_forgot_it(
    commands: PipelinedRedis, namespace: str
) -> None:
    source = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
    assert await commands.script(source, [f"{namespace}:s"], [2]) == 2
    await commands.execute("SCRIPT", "FLUSH")

    assert await commands.script(source, [f"{namespace}:s"], [3]) == 5


async def test_the_database_index_of_the_url_is_used(namespace: str) -> None:
    url = TEST_REDIS_URL.rsplit("/", 1)[0] + "/3"
    commands = PipelinedRedis(url, timeout=2.0, connect_timeout=2.0)
    plain = redis.Redis.from_url(url, decode_responses=True)
    try:
        await commands.execute("SET", f"{namespace}:db", "three")
        assert await plain.get(f"{namespace}:db") == "three"
    finally:
        await plain.delete(f"{namespace}:db")
        await plain.aclose()
        await commands.aclose()


async def test_a_killed_connection_fails_and_the_next_command_reconnects(
    commands: PipelinedRedis, namespace: str
) -> None:
    client_id = await commands.execute("CLIENT", "ID")
    admin = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        await admin.client_kill_filter(_id=client_id)
    finally:
        await admin.aclose()
    await asyncio.sleep(0.05)  # let the loop see the connection close

    assert await commands.execute("SET", f"{namespace}:after", "yes") == "OK"
    assert await commands.execute("CLIENT", "ID") != client_id


async def test_a_cancelled_caller_does_not_shift_the_replies(
    commands: PipelinedRedis, namespace: str
) -> None:
    await commands.execute("SET", f"{namespace}:a", "A")
    await commands.execute("SET", f"{namespace}:b", "B")
    first = asyncio.create_task(commands.execute("GET", f"{namespace}:a"))
    await asyncio.sleep(0)  # queued and flushed, reply not read yet
    first.cancel()

    assert await commands.execute("GET", f"{namespace}:b") == "B"
    assert first.cancelled()


@asynccontextmanager
async def _silent_server() -> AsyncIterator[int]:
    """The port of a server that accepts connections and never answers (a hung Redis)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()


async def test_no_reply_in_time_fails_every_command_in_flight_then_fails_fast() -> None:
    async with _silent_server() as port:
        commands = PipelinedRedis(f"redis://127.0.0.1:{port}/0", timeout=0.2, connect_timeout=1)
        await _time_out_then_fail_fast(commands)


async def _time_out_then_fail_fast(commands: PipelinedRedis) -> None:
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(
            commands.execute("GET", "a"), commands.execute("GET", "b"), return_exceptions=True
        )
        assert all(isinstance(r, RedisTimeoutError) for r in results), results
        assert 0.2 <= loop.time() - started < 1.0

        # Right after, a command fails at once instead of waiting on the hung server again.
        started = loop.time()
        with pytest.raises(RedisConnectionError):
            await commands.execute("GET", "c")
        assert loop.time() - started < 0.05
    finally:
        await commands.aclose()


async def test_an_unreachable_redis_fails_fast_then_is_tried_again() -> None:
    async with _silent_server() as port:
        pass  # nothing listens on the port now
    commands = PipelinedRedis(f"redis://127.0.0.1:{port}/0", timeout=1.0, connect_timeout=1.0)
    try:
        with pytest.raises(RedisConnectionError, match="connecting"):
            await commands.execute("PING")
        with pytest.raises(RedisConnectionError, match="next attempt"):
            await commands.execute("PING")
        await asyncio.sleep(RETRY_AFTER_SECONDS)
        with pytest.raises(RedisConnectionError, match="connecting"):
            await commands.execute("PING")
    finally:
        await commands.aclose()


async def test_a_transaction_applies_its_commands_together(
    commands: PipelinedRedis, namespace: str
) -> None:
    others = [commands.execute("INCR", f"{namespace}:other") for _ in range(3)]
    replies, *counts = await asyncio.gather(
        commands.transaction(("SET", f"{namespace}:t1", "a"), ("INCR", f"{namespace}:t2")),
        *others,
    )

    assert replies == ["OK", 1]
    assert sorted(counts) == [1, 2, 3]
    assert await commands.execute("GET", f"{namespace}:t1") == "a"


async def test_a_transaction_refused_by_redis_applies_nothing(
    commands: PipelinedRedis, namespace: str
) -> None:
    with pytest.raises(ResponseError):
        await commands.transaction(("SET", f"{namespace}:t1", "a"), ("SET", f"{namespace}:t2"))

    assert await commands.execute("EXISTS", f"{namespace}:t1") == 0
    # The connection is still in step: the next reply is the next command's.
    assert await commands.execute("PING") == "PONG"


async def test_a_transaction_nobody_answers_times_out_as_a_whole() -> None:
    async with _silent_server() as port:
        commands = PipelinedRedis(f"redis://127.0.0.1:{port}/0", timeout=0.2, connect_timeout=1)
        try:
            with pytest.raises(RedisTimeoutError):
                await commands.transaction(("SET", "a", "1"), ("SET", "b", "2"))
        finally:
            await commands.aclose()
