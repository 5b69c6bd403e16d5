"""Routing workers' replies back to the requests waiting for them.

Each web process holds ONE pub/sub connection with one pattern subscription,
``{ns}:reply:{web_id}:*``, made (and confirmed) at start-up, before any request can
enqueue. A request's reply channel is ``{ns}:reply:{web_id}:{command_id}``: scoped to the
request, yet no subscribe round trip per request and no connection per request.

Pub/sub drops messages nobody hears (a reconnect, a slow start); the worker also stores
each outcome under the command's key, so a waiter that is woken by a reconnect, or that
reaches its deadline, reads that key before giving up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import anyio
import orjson
import redis.asyncio as redis
from anyio.abc import TaskStatus
from loguru import logger
from redis.exceptions import RedisError

from storage.keys import Keys
from storage.outcomes import settled


class ReplyListener:
    def __init__(self, client: redis.Redis, keys: Keys, web_id: str) -> None:
        self._client = client
        self._keys = keys
        self._prefix = keys.reply_prefix(web_id)
        # A waiter's future holds the reply, or None meaning "replies may have been lost
        # (reconnect): look at the outcome key".
        self._waiters: dict[str, asyncio.Future[str | None]] = {}

    def channel(self, command_id: str) -> str:
        return f"{self._prefix}{command_id}"

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled, reconnecting with backoff; started once subscribed."""
        started = False
        backoff = 0.05
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.psubscribe(f"{self._prefix}*")
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    if message["type"] == "psubscribe":
                        break
                backoff = 0.05
                if started:
                    logger.info("replies.resubscribed")
                    self._wake_all()
                else:
                    started = True
                    task_status.started()
                async for message in pubsub.listen():
                    if message["type"] == "pmessage":
                        self._deliver(message["channel"], message["data"])
            except (RedisError, OSError) as exc:
                if not started:
                    raise
                logger.warning("replies.disconnected", error=type(exc).__name__, retry_in=backoff)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with anyio.CancelScope(shield=True):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _deliver(self, channel: str, data: str) -> None:
        future = self._waiters.get(channel.removeprefix(self._prefix))
        if future is not None and not future.done():
            future.set_result(data)

    def _wake_all(self) -> None:
        for future in self._waiters.values():
            if not future.done():
                future.set_result(None)

    @contextmanager
    def expect(self, command_id: str) -> Iterator[None]:
        """Register interest in the reply before the command is enqueued."""
        self._waiters[command_id] = asyncio.get_running_loop().create_future()
        try:
            yield
        finally:
            del self._waiters[command_id]

    async def wait(self, command_id: str, within: float) -> dict[str, Any] | None:
        """The settled outcome, or None when the command is still pending at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            future = self._waiters[command_id]
            remaining = deadline - loop.time()
            if remaining > 0:
                await asyncio.wait({future}, timeout=remaining)
            if future.done() and (reply := future.result()) is not None:
                parsed: dict[str, Any] = orjson.loads(reply)
                return parsed
            # Woken by a reconnect, or out of time: the stored outcome is the truth.
            stored = await self._stored_outcome(command_id)
            if stored is not None or loop.time() >= deadline:
                return stored
            self._waiters[command_id] = loop.create_future()

    async def _stored_outcome(self, command_id: str) -> dict[str, Any] | None:
        try:
            document = cast(str | None, await self._client.get(self._keys.command(command_id)))
        except RedisError:
            return None
        return settled(document)
