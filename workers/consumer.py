"""The worker's life: read commands from the stream through the consumer group, apply them to
Postgres in batches, write the read model, outcome and reply, and only then ``XACK``.

Delivery is at least once; applying a command twice is harmless (see
``domain.handlers.sign_up``), so the rule is simple: never ack what was not committed.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg
from loguru import logger
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError, ResponseError

from bootstrap import Worker
from domain.handlers import sign_up
from domain.model import Outcome, UserSignedUp
from observability import logs, tracing
from observability.metrics import exposition
from storage import streams
from storage.autopipeline import Arg
from storage.outcomes import failed_json, reply_json, stored_json, user_json
from workers.housekeeping import trim_commands

# Postgres or network faults that a retry can outlive; anything else is the command's fault.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.AdminShutdownError,
)
DEAD_LETTERED = "dead-lettered"


@dataclass(frozen=True, slots=True)
class Delivery:
    entry_id: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Decoded:
    entry_id: str
    envelope: streams.Envelope


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


class Consumer:
    def __init__(self, worker: Worker) -> None:
        self.w = worker
        self.s = worker.settings
        self.keys = worker.keys
        self.name = worker.settings.worker_name
        self.stopping = anyio.Event()
        self._slots = anyio.Semaphore(worker.settings.worker_concurrency)
        self._outcome_ttl_ms = worker.settings.outcome_ttl_seconds * 1000

    # -- group and reads -------------------------------------------------------------

    async def ensure_group(self) -> None:
        try:
            await self.w.redis.xgroup_create(
                self.keys.commands, self.keys.group, id="0", mkstream=True
            )
            logger.info("group.created", stream=self.keys.commands, group=self.keys.group)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, last_id: str, *, block: int | None) -> list[Delivery]:
        """One XREADGROUP; on NOGROUP (Redis lost its data) the group is made again."""
        command: list[str | int] = ["XREADGROUP", "GROUP", self.keys.group, self.name]
        command += ["COUNT", self.s.worker_batch_size]
        if block is not None:
            command += ["BLOCK", block]
        command += ["STREAMS", self.keys.commands, last_id]
        try:
            reply = await self.w.stream_reader.execute(*command)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            logger.warning("group.missing", stream=self.keys.commands)
            await self.ensure_group()
            return []
        if not reply:
            return []
        # [[stream, [[id, [field, value, ...]], ...]]]; a pending entry whose data was
        # trimmed comes back with no fields.
        entries: Sequence[Any] = reply[0][1]
        return [
            Delivery(entry_id, dict(zip(flat[::2], flat[1::2], strict=True)) if flat else {})
            for entry_id, flat in entries
        ]

    # -- processing -------------------------------------------------------------------

    async def process(self, deliveries: list[Delivery]) -> None:
        """Apply a batch and settle every entry in it (acked, or left pending on failure)."""
        started = time.time_ns()
        decoded: list[Decoded] = []
        for d in deliveries:
            try:
                decoded.append(Decoded(d.entry_id, streams.decode(d.fields)))
            except streams.MalformedEntry as exc:
                await self.dead_letter(d, str(exc), reason="malformed")
        if not decoded:
            return
        m = self.w.metrics
        for entry in decoded:
            # An entry id's first part is the XADD time in ms: the wait needs no extra field.
            waited = started / 1e9 - int(entry.entry_id.split("-")[0]) / 1000
            m.queue_wait.observe({}, max(waited, 0.0))
        m.in_progress.add({}, len(decoded))
        try:
            await self._apply_and_settle(decoded, started)
        except Exception:
            if len(decoded) == 1:
                raise
            # Not an outage but something about one command (a value Postgres refuses):
            # apply them one by one, so it can't fail, or later dead-letter, its neighbours.
            logger.opt(exception=True).warning("batch.failed", size=len(decoded))
            for entry in decoded:
                try:
                    await self._apply_and_settle([entry], time.time_ns())
                except Exception:
                    # Left pending, to be redelivered and in the end dead-lettered.
                    logger.opt(exception=True).error("command.failed", entry_id=entry.entry_id)
        finally:
            m.in_progress.add({}, -len(decoded))

    async def _apply_and_settle(self, batch: list[Decoded], started: int) -> None:
        outcomes = await self._apply(batch)
        applied = time.time_ns()
        if outcomes is not None and await self._settle(batch, outcomes):
            self._record(batch, outcomes, (started, applied, time.time_ns()))

    def _record(
        self, batch: list[Decoded], outcomes: list[Outcome], times: tuple[int, int, int]
    ) -> None:
        """Metrics, spans and one log line per settled command."""
        started, applied, settled = times
        m = self.w.metrics
        tracer = self.w.tracer
        for d, outcome in zip(batch, outcomes, strict=True):
            c = d.envelope.command
            result = "succeeded" if isinstance(outcome, UserSignedUp) else "rejected"
            m.processed.inc({"outcome": result})
            m.processing.observe({}, (settled - started) / 1e9)
            # A CONSUMER span per command, parented by the producer's context from the
            # entry; its children are the batch's Postgres statement and Redis writes.
            span = tracer.start_span(
                f"process {self.keys.commands}",
                context=tracing.extract(d.envelope.traceparent),
                kind=SpanKind.CONSUMER,
                start_time=started,
                attributes={
                    "messaging.system": "redis",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": self.keys.commands,
                    "messaging.consumer.group.name": self.keys.group,
                    "messaging.message.id": d.entry_id,
                    "messaging.batch.message_count": len(batch),
                    "signup.outcome": result,
                },
            )
            parent = trace.set_span_in_context(span)
            # The batch's shared steps, recorded under each command's span after the fact.
            for name, system, operation, start, end in (
                ("postgres transaction", "postgresql", "INSERT", started, applied),
                ("read model update", "redis", "MULTI", applied, settled),
            ):
                tracer.start_span(
                    name,
                    context=parent,
                    start_time=start,
                    attributes={"db.system.name": system, "db.operation.name": operation},
                ).end(end_time=end)
            span.end(end_time=settled)
            logs.info(
                "command.applied",
                command_id=str(c.command_id),
                request_id=c.request_id,
                correlation_id=c.correlation_id,
                trace_id=tracing.trace_id_of(d.envelope.traceparent),
                outcome=result,
            )
        m.last_processed.set({}, settled / 1e9)

    async def _apply(self, batch: list[Decoded]) -> list[Outcome] | None:
        """Outcomes of the batch, retrying through outages; None if stopping before that."""
        backoff = Backoff()
        refreshed = anyio.current_time()
        while True:
            try:
                return await sign_up([d.envelope.command for d in batch], self.w.users)
            except TRANSIENT_DB_ERRORS as exc:
                self.w.metrics.dependency_errors.inc({"dependency": "postgres"})
                logger.warning("postgres.unavailable", error=type(exc).__name__, batch=len(batch))
                if self.stopping.is_set():
                    return None
                await backoff.sleep()
                if anyio.current_time() - refreshed > self.s.worker_claim_idle_ms / 3000:
                    await self._keep_alive([d.entry_id for d in batch])
                    refreshed = anyio.current_time()

    async def _keep_alive(self, entry_ids: list[str]) -> None:
        """Reset the idle time of entries still being worked on, so no other worker reclaims
        them (JUSTID: the delivery count is left alone, so an outage is no poison)."""
        with contextlib.suppress(RedisError, OSError):
            await self.w.redis.xclaim(
                self.keys.commands, self.keys.group, self.name, 0, list[Any](entry_ids), justid=True
            )

    async def _settle(self, batch: list[Decoded], outcomes: list[Outcome]) -> bool:
        """Read model, outcome, reply and ack in one MULTI: one round trip, all or nothing.
        False if stopping before Redis took it (the entries stay pending)."""
        writes: list[tuple[Arg, ...]] = []
        for d, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, UserSignedUp):
                writes.append(
                    ("SET", self.keys.user(str(outcome.user.id)), user_json(outcome.user))
                )
            cid = str(d.envelope.command.command_id)
            ttl = self._outcome_ttl_ms
            writes.append(("SET", self.keys.command(cid), stored_json(outcome), "PX", ttl))
            if d.envelope.reply_channel:
                writes.append(("PUBLISH", d.envelope.reply_channel, reply_json(outcome)))
        writes.append(("XACK", self.keys.commands, self.keys.group, *(d.entry_id for d in batch)))
        backoff = Backoff()
        while True:
            try:
                await self.w.commands.transaction(*writes)
                return True
            except (RedisError, OSError) as exc:
                self.w.metrics.dependency_errors.inc({"dependency": "redis"})
                logger.warning("redis.unavailable", error=type(exc).__name__, batch=len(batch))
                if self.stopping.is_set():
                    return False
                await backoff.sleep()

    async def dead_letter(self, delivery: Delivery, error: str, *, reason: str) -> None:
        """Move an entry that cannot be processed to the dead-letter stream and ack it; tell
        its waiting request (if it can be told) that the command failed."""
        fields = {f"original.{k}": v for k, v in delivery.fields.items() if k != "password"}
        fields.update({"error": error, "entry_id": delivery.entry_id, "consumer": self.name})
        command_id = delivery.fields.get("command_id", "")
        reply_channel = delivery.fields.get("reply_channel", "")
        async with self.w.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.keys.deadletters,
                fields,  # type: ignore[arg-type]
                maxlen=self.s.deadletter_maxlen,
                approximate=True,
            )
            if command_id:
                failed = failed_json(DEAD_LETTERED, "The command could not be processed.")
                pipe.set(self.keys.command(command_id), failed, px=self._outcome_ttl_ms)
                if reply_channel:
                    pipe.publish(reply_channel, failed)
            pipe.xack(self.keys.commands, self.keys.group, delivery.entry_id)
            await pipe.execute()
        self.w.metrics.dead_letters.inc({"reason": reason})
        self.w.metrics.processed.inc({"outcome": "dead_lettered"})
        logger.error(
            "command.dead_lettered",
            entry_id=delivery.entry_id,
            command_id=command_id,
            request_id=delivery.fields.get("request_id", ""),
            correlation_id=delivery.fields.get("correlation_id", ""),
            trace_id=tracing.trace_id_of(delivery.fields.get("traceparent", "")),
            error=error,
        )

    async def process_redelivered(self, deliveries: list[Delivery]) -> None:
        """Process entries delivered before; those delivered too often are dead-lettered."""
        counts = await self._delivery_counts([d.entry_id for d in deliveries])
        fresh: list[Delivery] = []
        for d in deliveries:
            times = counts.get(d.entry_id, 0)
            if times > self.s.worker_max_deliveries:
                await self.dead_letter(
                    d, f"delivered {times} times without success", reason="max_deliveries"
                )
            else:
                fresh.append(d)
        if fresh:
            self.w.metrics.redeliveries.add({}, len(fresh))
            await self.process(fresh)

    async def _delivery_counts(self, entry_ids: list[str]) -> dict[str, int]:
        pending = await self.w.redis.xpending_range(
            self.keys.commands,
            self.keys.group,
            min=min(entry_ids),
            max=max(entry_ids),
            count=len(entry_ids) * 10,
            consumername=self.name,
        )
        return {str(p["message_id"]): int(p["times_delivered"]) for p in pending}

    async def reclaim(self) -> int:
        """Take over entries idle past the threshold on any consumer (a dead one, most
        likely) and process them; returns how many were taken."""
        cursor, taken = "0-0", 0
        while not self.stopping.is_set():
            reply = await self.w.redis.xautoclaim(
                self.keys.commands,
                self.keys.group,
                self.name,
                min_idle_time=self.s.worker_claim_idle_ms,
                start_id=cursor,
                count=self.s.worker_batch_size,
            )
            cursor, claimed = reply[0], reply[1]
            deliveries = [Delivery(entry_id, fields or {}) for entry_id, fields in claimed]
            if deliveries:
                taken += len(deliveries)
                self.w.metrics.reclaimed.add({}, len(deliveries))
                logger.warning("pending.reclaimed", count=len(deliveries))
                await self.process_redelivered(deliveries)
            if cursor == "0-0":
                break
        return taken

    async def _every(self, period: float, job: Callable[[], Awaitable[object]]) -> None:
        """Run ``job`` every ``period`` seconds until stopping; Redis faults are logged."""
        while not self.stopping.is_set():
            with anyio.move_on_after(period):
                await self.stopping.wait()
            if self.stopping.is_set():
                return
            try:
                await job()
            except (RedisError, OSError) as exc:
                self.w.metrics.dependency_errors.inc({"dependency": "redis"})
                logger.warning("redis.unavailable", error=type(exc).__name__, during=repr(job))
            except Exception:
                logger.opt(exception=True).error("housekeeping.failed", job=repr(job))

    async def trim(self) -> int:
        return await trim_commands(self.w.redis, self.keys, self.s.stream_keep_entries)

    # -- lifecycle --------------------------------------------------------------------

    async def drain_own_pending(self) -> None:
        """Finish what this consumer name held when it last stopped (an id instead of ``>``
        reads its own pending list, from after that id)."""
        after = "0"
        while not self.stopping.is_set():
            deliveries = await self.read(after, block=None)
            if not deliveries:
                return
            logger.info("pending.resumed", count=len(deliveries))
            after = deliveries[-1].entry_id  # what failed stays pending, for reclaim
            try:
                await self.process_redelivered(deliveries)
            except Exception:
                logger.opt(exception=True).error(
                    "command.failed", entry_ids=[d.entry_id for d in deliveries]
                )

    async def _process_and_release(self, deliveries: list[Delivery]) -> None:
        try:
            await self.process(deliveries)
        except Exception:
            # Left pending: redelivered after WORKER_CLAIM_IDLE_MS, dead-lettered once it has
            # failed WORKER_MAX_DELIVERIES times. The worker itself carries on.
            logger.opt(exception=True).error(
                "command.failed", entry_ids=[d.entry_id for d in deliveries]
            )
        finally:
            self._slots.release()

    async def run(self) -> None:
        """Read and process until ``stop()``; in-flight batches are finished before return."""
        await self.ensure_group()
        await self.drain_own_pending()
        backoff = Backoff()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._every, self.s.worker_claim_idle_ms / 2000, self.reclaim)
            tg.start_soon(self._every, self.s.stream_trim_interval_seconds, self.trim)
            while not self.stopping.is_set():
                await self._slots.acquire()
                try:
                    with anyio.CancelScope() as self._read_scope:
                        deliveries = await self.read(">", block=self.s.worker_block_ms)
                    backoff.reset()
                except (RedisError, OSError) as exc:
                    self._slots.release()
                    self.w.metrics.dependency_errors.inc({"dependency": "redis"})
                    logger.warning("redis.unavailable", error=type(exc).__name__)
                    await backoff.sleep()
                    continue
                if self._read_scope.cancelled_caught or not deliveries:
                    self._slots.release()
                    continue
                tg.start_soon(self._process_and_release, deliveries)
        logger.info("worker.drained", consumer=self.name)

    async def metrics_exposition(self) -> tuple[bytes, dict[str, str]]:
        """The worker's /metrics, with the stream's length, lag and pending read now."""
        m = self.w.metrics
        try:
            async with self.w.redis.pipeline(transaction=False) as pipe:
                pipe.xlen(self.keys.commands)
                pipe.xlen(self.keys.deadletters)
                pipe.xinfo_groups(self.keys.commands)
                length, dead, groups = await pipe.execute(raise_on_error=False)
            m.stream_length.set({"stream": self.keys.commands}, int(length))
            m.stream_length.set({"stream": self.keys.deadletters}, int(dead))
            for g in groups:
                labels = {"stream": self.keys.commands, "group": str(g["name"])}
                # lag is NULL when Redis cannot tell (e.g. after deletions): report pending only.
                if g.get("lag") is not None:
                    m.group_lag.set(labels, int(g["lag"]))
                m.group_pending.set(labels, int(g["pending"]))
        except (RedisError, OSError, TypeError, ValueError):
            m.dependency_errors.inc({"dependency": "redis"})
        return exposition(m.registry, m.process)

    def stop(self) -> None:
        """Stop reading; batches already read are finished (or left pending for reclaim)."""
        self.stopping.set()
        scope = getattr(self, "_read_scope", None)
        if scope is not None:
            scope.cancel()
