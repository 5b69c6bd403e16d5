"""One consumer group's mechanics, shared by every process that reads a stream through one:
the command workers, the mailer (and the events stream's later consumers).

Create the group (at ``0``, with ``MKSTREAM``; ``BUSYGROUP`` is fine), read new entries
(``>``) or this consumer's own pending ones (an id), take over entries idle on a dead
consumer (``XAUTOCLAIM``), count deliveries (``XPENDING``) to spot poison, keep what is
still being worked on from being taken (``XCLAIM … JUSTID``), and recreate the group on
``NOGROUP`` (Redis came back empty). Several streams can be read under one group name at
once (the mailer reads the events and its own replays).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import redis.asyncio as redis
from aioprometheus.collectors import Counter
from loguru import logger
from redis.exceptions import RedisError, ResponseError

from observability.metrics import StreamGauges
from storage.autopipeline import Arg, PipelinedRedis


@dataclass(frozen=True, slots=True)
class Delivery:
    stream: str
    entry_id: str
    fields: dict[str, str]


class Backoff:
    """Exponential backoff with full jitter, capped."""

    def __init__(self, base: float = 0.05, cap: float = 2.0) -> None:
        self._base, self._cap, self._attempt = base, cap, 0

    async def sleep(self) -> None:
        delay = min(self._cap, self._base * 2**self._attempt)
        self._attempt += 1
        await anyio.sleep(random.uniform(0, delay))

    def reset(self) -> None:
        self._attempt = 0


class Group:
    def __init__(
        self,
        client: redis.Redis,
        reader: PipelinedRedis,
        *,
        streams: Sequence[str],
        group: str,
        consumer: str,
        batch_size: int,
        claim_idle_ms: int,
    ) -> None:
        self.client = client
        # XREADGROUP BLOCK stalls whatever shares its connection: the reader is its own.
        self.reader = reader
        self.streams = list(streams)
        self.name = group
        self.consumer = consumer
        self.batch_size = batch_size
        self.claim_idle_ms = claim_idle_ms

    async def ensure(self) -> None:
        for stream in self.streams:
            try:
                await self.client.xgroup_create(stream, self.name, id="0", mkstream=True)
                logger.info("group.created", stream=stream, group=self.name)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read(self, last_id: str, *, block: int | None) -> list[Delivery]:
        """One XREADGROUP over every stream: new entries (``>``) or this consumer's own
        pending ones after ``last_id``; on NOGROUP the group is made again."""
        return await self._read(self.streams, [last_id] * len(self.streams), block)

    async def _read(
        self, streams: Sequence[str], after: Sequence[str], block: int | None
    ) -> list[Delivery]:
        command: list[Arg] = ["XREADGROUP", "GROUP", self.name, self.consumer]
        command += ["COUNT", self.batch_size]
        if block is not None:
            command += ["BLOCK", block]
        command += ["STREAMS", *streams, *after]
        try:
            reply = await self.reader.execute(*command)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            logger.warning("group.missing", streams=self.streams, group=self.name)
            await self.ensure()
            return []
        if not reply:
            return []
        # [[stream, [[id, [field, value, ...]], ...]], ...]; a pending entry whose data was
        # trimmed comes back with no fields.
        deliveries: list[Delivery] = []
        for stream, entries in reply:
            for entry_id, flat in entries:
                fields = dict(zip(flat[::2], flat[1::2], strict=True)) if flat else {}
                deliveries.append(Delivery(stream, entry_id, fields))
        return deliveries

    async def own_pending(self) -> AsyncIterator[list[Delivery]]:
        """What this consumer name held when it last stopped, a batch at a time. Entries
        the caller leaves unacked stay pending (for reclaim): reading goes on after them."""
        for stream in self.streams:
            after = "0"
            while deliveries := await self._read([stream], [after], None):
                after = deliveries[-1].entry_id
                yield deliveries

    async def stale(self) -> AsyncIterator[list[Delivery]]:
        """Entries idle past ``claim_idle_ms`` on any consumer, now this one's."""
        for stream in self.streams:
            cursor = "0-0"
            while True:
                reply = await self.client.xautoclaim(
                    stream,
                    self.name,
                    self.consumer,
                    min_idle_time=self.claim_idle_ms,
                    start_id=cursor,
                    count=self.batch_size,
                )
                cursor, claimed = reply[0], reply[1]
                if claimed:
                    yield [Delivery(stream, entry_id, fields or {}) for entry_id, fields in claimed]
                if cursor == "0-0":
                    break

    async def reclaim(
        self, handle: Callable[[list[Delivery]], Awaitable[object]], stopping: anyio.Event
    ) -> int:
        """Take over entries idle past ``claim_idle_ms`` on any consumer (a dead one, most
        likely) and hand them to ``handle`` a page at a time; how many were taken."""
        taken = 0
        async for deliveries in self.stale():
            taken += len(deliveries)
            logger.warning("pending.reclaimed", count=len(deliveries))
            await handle(deliveries)
            if stopping.is_set():
                break
        return taken

    async def delivery_counts(self, deliveries: Sequence[Delivery]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for stream in {d.stream for d in deliveries}:
            ids = [d.entry_id for d in deliveries if d.stream == stream]
            pending = await self.client.xpending_range(
                stream,
                self.name,
                min=min(ids),
                max=max(ids),
                count=len(ids) * 10,
                consumername=self.consumer,
            )
            counts.update({str(p["message_id"]): int(p["times_delivered"]) for p in pending})
        return counts

    async def over_delivered(
        self, deliveries: Sequence[Delivery], limit: int
    ) -> tuple[list[Delivery], list[tuple[Delivery, int]]]:
        """Entries delivered before, split into those to try again and those delivered
        more than ``limit`` times (with the count): poison, for the dead letters."""
        counts = await self.delivery_counts(deliveries)
        again: list[Delivery] = []
        poison: list[tuple[Delivery, int]] = []
        for d in deliveries:
            times = counts.get(d.entry_id, 0)
            if times > limit:
                poison.append((d, times))
            else:
                again.append(d)
        return again, poison

    async def keep_alive(self, deliveries: Sequence[Delivery]) -> None:
        """Reset the idle time of entries still being worked on, so no other consumer
        reclaims them (JUSTID: the delivery count is left alone, so an outage is no poison)."""
        with contextlib.suppress(RedisError, OSError):
            for stream in {d.stream for d in deliveries}:
                ids: list[Any] = [d.entry_id for d in deliveries if d.stream == stream]
                await self.client.xclaim(stream, self.name, self.consumer, 0, ids, justid=True)


async def every(
    period: float,
    job: Callable[[], Awaitable[object]],
    stopping: anyio.Event,
    dependency_errors: Counter,
) -> None:
    """Run ``job`` every ``period`` seconds until ``stopping``; Redis faults are logged."""
    while not stopping.is_set():
        with anyio.move_on_after(period):
            await stopping.wait()
        if stopping.is_set():
            return
        try:
            await job()
        except (RedisError, OSError) as exc:
            dependency_errors.inc({"dependency": "redis"})
            logger.warning("redis.unavailable", error=type(exc).__name__, during=repr(job))
        except Exception:
            logger.opt(exception=True).error("housekeeping.failed", job=repr(job))


async def observe_streams(
    client: redis.Redis,
    gauges: StreamGauges,
    errors: Counter,
    grouped: Sequence[str],
    plain: Sequence[str],
) -> None:
    """Set the stream gauges: the length of every stream, and the lag and pending count of
    every consumer group on the ``grouped`` ones (downstream teams' groups included)."""
    try:
        async with client.pipeline(transaction=False) as pipe:
            for stream in (*grouped, *plain):
                pipe.xlen(stream)
            for stream in grouped:
                pipe.xinfo_groups(stream)
            replies = await pipe.execute(raise_on_error=False)
        streams = (*grouped, *plain)
        for stream, length in zip(streams, replies[: len(streams)], strict=True):
            if not isinstance(length, Exception):
                gauges.length.set({"stream": stream}, int(length))
        for stream, groups in zip(grouped, replies[len(streams) :], strict=True):
            if isinstance(groups, Exception):
                continue  # no such stream yet
            for g in groups:
                labels = {"stream": stream, "group": str(g["name"])}
                # lag is NULL when Redis cannot tell (e.g. after deletions): pending only.
                if g.get("lag") is not None:
                    gauges.lag.set(labels, int(g["lag"]))
                gauges.pending.set(labels, int(g["pending"]))
    except (RedisError, OSError, TypeError, ValueError):
        errors.inc({"dependency": "redis"})
