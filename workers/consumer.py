"""The worker's life: read commands from the stream through the consumer group, apply them to
Postgres in batches through the command bus, then settle each entry in one script: ack,
append its events, write the read model, outcome and reply (``storage.settle``).

Delivery is at least once; applying a command twice is harmless (see
``domain.handlers``), so the rule is simple: never ack what was not committed. Nothing here
names a command type: decoding is ``storage.streams``' registry, applying is the bus's.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import asyncpg
from loguru import logger
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError

from bootstrap import Worker
from domain import bus
from domain.handlers import COMMAND_HANDLERS
from domain.ids import uuid7
from domain.model import Applied, Outcome
from observability import logs, tracing
from observability.metrics import exposition
from storage import events, streams
from storage.outcomes import failed_json, reply_json, stored_json, user_json
from storage.settle import Settlement, settle
from workers.group import Backoff, Delivery, Group, every, observe_streams
from workers.housekeeping import trim_commands, trim_events

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
class Decoded:
    delivery: Delivery
    envelope: streams.Envelope


class Consumer:
    def __init__(self, worker: Worker) -> None:
        self.w = worker
        self.s = worker.settings
        self.keys = worker.keys
        self.name = worker.settings.worker_name
        self.stopping = anyio.Event()
        self._slots = anyio.Semaphore(worker.settings.worker_concurrency)
        self._outcome_ttl_ms = worker.settings.outcome_ttl_seconds * 1000
        self.group = Group(
            worker.redis,
            worker.stream_reader,
            streams=[self.keys.commands],
            group=self.keys.group,
            consumer=self.name,
            batch_size=self.s.worker_batch_size,
            claim_idle_ms=self.s.worker_claim_idle_ms,
        )

    # -- group and reads -------------------------------------------------------------

    async def ensure_group(self) -> None:
        await self.group.ensure()

    async def read(self, last_id: str, *, block: int | None) -> list[Delivery]:
        return await self.group.read(last_id, block=block)

    # -- processing -------------------------------------------------------------------

    async def process(self, deliveries: list[Delivery]) -> None:
        """Apply a batch and settle every entry in it (acked, or left pending on failure)."""
        started = time.time_ns()
        decoded: list[Decoded] = []
        for d in deliveries:
            try:
                decoded.append(Decoded(d, streams.decode(d.fields)))
            except streams.MalformedEntry as exc:
                await self.dead_letter(d, str(exc), reason="malformed")
        if not decoded:
            return
        m = self.w.metrics
        for entry in decoded:
            # An entry id's first part is the XADD time in ms: the wait needs no extra field.
            waited = started / 1e9 - int(entry.delivery.entry_id.split("-")[0]) / 1000
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
                    logger.opt(exception=True).error(
                        "command.failed", entry_id=entry.delivery.entry_id
                    )
        finally:
            m.in_progress.add({}, -len(decoded))

    async def _apply_and_settle(self, batch: list[Decoded], started: int) -> None:
        async with anyio.create_task_group() as tg:
            # However long the batch takes (an outage, a statement waiting on a lock), its
            # entries never look idle, so no other worker takes them meanwhile.
            tg.start_soon(self._keep_alive, [d.delivery for d in batch])
            outcomes = await self._apply(batch)
            applied = time.time_ns()
            appended = None if outcomes is None else await self._settle(batch, outcomes)
            tg.cancel_scope.cancel()
        if outcomes is not None and appended is not None:
            self._record(batch, outcomes, appended, (started, applied, time.time_ns()))

    async def _keep_alive(self, deliveries: list[Delivery]) -> None:
        period = self.s.worker_claim_idle_ms / 3000
        while True:
            await anyio.sleep(period)
            await self.group.keep_alive(deliveries)

    def _record(
        self,
        batch: list[Decoded],
        outcomes: list[Outcome],
        appended: list[int],
        times: tuple[int, int, int],
    ) -> None:
        """Metrics, spans and one log line per settled command."""
        started, applied, settled = times
        m = self.w.metrics
        tracer = self.w.tracer
        for d, outcome, n_events in zip(batch, outcomes, appended, strict=True):
            envelope = d.envelope
            result = "succeeded" if isinstance(outcome, Applied) else "rejected"
            m.processed.inc({"outcome": result})
            m.processing.observe({}, (settled - started) / 1e9)
            if n_events and isinstance(outcome, Applied):
                for event in outcome.events[:n_events]:
                    m.events_appended.inc({"type": events.type_name(event)})
            # A CONSUMER span per command, parented by the producer's context from the
            # entry; its children are the batch's Postgres statement and Redis writes.
            span = tracer.start_span(
                f"process {self.keys.commands}",
                context=tracing.extract(envelope.traceparent),
                kind=SpanKind.CONSUMER,
                start_time=started,
                attributes={
                    "messaging.system": "redis",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": self.keys.commands,
                    "messaging.consumer.group.name": self.keys.group,
                    "messaging.message.id": d.delivery.entry_id,
                    "messaging.batch.message_count": len(batch),
                    "signup.command": envelope.type,
                    "signup.outcome": result,
                    "signup.events_appended": n_events,
                },
            )
            parent = trace.set_span_in_context(span)
            # The batch's shared steps, recorded under each command's span after the fact.
            for name, system, operation, start, end in (
                ("postgres transaction", "postgresql", "INSERT", started, applied),
                ("read model update", "redis", "EVALSHA", applied, settled),
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
                command_id=str(envelope.command.command_id),
                command=envelope.type,
                request_id=envelope.request_id,
                correlation_id=envelope.correlation_id,
                trace_id=tracing.trace_id_of(envelope.traceparent),
                outcome=result,
                events=n_events,
            )
        m.last_processed.set({}, settled / 1e9)

    async def _apply(self, batch: list[Decoded]) -> list[Outcome] | None:
        """Outcomes of the batch, retrying through outages; None if stopping before that."""
        backoff = Backoff()
        commands = [d.envelope.command for d in batch]
        while True:
            try:
                return await bus.handle(commands, self.w.users, COMMAND_HANDLERS)
            except TRANSIENT_DB_ERRORS as exc:
                self.w.metrics.dependency_errors.inc({"dependency": "postgres"})
                logger.warning("postgres.unavailable", error=type(exc).__name__, batch=len(batch))
                if self.stopping.is_set():
                    return None
                await backoff.sleep()

    def _settlement(self, d: Decoded, outcome: Outcome) -> Settlement:
        envelope = d.envelope
        cid = str(envelope.command.command_id)
        settlement = Settlement(
            entry_id=d.delivery.entry_id,
            outcome_key=self.keys.command(cid),
            stored=stored_json(outcome),
            reply_channel=envelope.reply_channel,
            reply=reply_json(outcome) if envelope.reply_channel else b"",
        )
        if not isinstance(outcome, Applied):
            return settlement
        cause = events.Cause(
            cid, envelope.request_id, envelope.correlation_id, envelope.traceparent
        )
        settlement = dataclasses.replace(
            settlement, events=[events.encode(str(uuid7()), e, cause) for e in outcome.events]
        )
        if outcome.user is None:
            return settlement
        user = outcome.user
        return dataclasses.replace(
            settlement,
            user_key=self.keys.user(str(user.id)),
            version=user.version,
            document=user_json(user),
        )

    async def _settle(self, batch: list[Decoded], outcomes: list[Outcome]) -> list[int] | None:
        """Ack, events, read model, outcome and reply in one script: one round trip, all or
        nothing. How many events each entry appended; None if stopping before Redis took
        it (the entries stay pending)."""
        settlements = [self._settlement(d, o) for d, o in zip(batch, outcomes, strict=True)]
        backoff = Backoff()
        while True:
            try:
                return await settle(
                    self.w.commands,
                    stream=self.keys.commands,
                    events_stream=self.keys.events,
                    group=self.keys.group,
                    outcome_ttl_ms=self._outcome_ttl_ms,
                    batch=settlements,
                )
            except (RedisError, OSError) as exc:
                self.w.metrics.dependency_errors.inc({"dependency": "redis"})
                logger.warning("redis.unavailable", error=type(exc).__name__, batch=len(batch))
                if self.stopping.is_set():
                    return None
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
        fresh, poison = await self.group.over_delivered(deliveries, self.s.worker_max_deliveries)
        for d, times in poison:
            error = f"delivered {times} times without success"
            await self.dead_letter(d, error, reason="max_deliveries")
        if fresh:
            self.w.metrics.redeliveries.add({}, len(fresh))
            await self.process(fresh)

    async def reclaim(self) -> int:
        """Take over entries idle past the threshold on any consumer (a dead one, most
        likely) and process them; returns how many were taken."""
        taken = await self.group.reclaim(self.process_redelivered, self.stopping)
        self.w.metrics.reclaimed.add({}, taken)
        return taken

    async def _every(self, period: float, job: Callable[[], Awaitable[object]]) -> None:
        await every(period, job, self.stopping, self.w.metrics.dependency_errors)

    async def trim(self) -> int:
        removed = await trim_commands(self.w.redis, self.keys, self.s.stream_keep_entries)
        removed += await trim_events(
            self.w.redis, self.keys.events, self.s.events_retention_seconds
        )
        return removed

    # -- lifecycle --------------------------------------------------------------------

    async def drain_own_pending(self) -> None:
        """Finish what this consumer name held when it last stopped (an id instead of ``>``
        reads its own pending list, from after that id)."""
        async for deliveries in self.group.own_pending():
            if self.stopping.is_set():
                return
            logger.info("pending.resumed", count=len(deliveries))
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
        """The worker's /metrics, with the streams' length, lag and pending read now."""
        m = self.w.metrics
        await observe_streams(
            self.w.redis,
            m.streams,
            m.dependency_errors,
            [self.keys.commands, self.keys.events],
            [self.keys.deadletters],
        )
        return exposition(m.registry, m.process)

    def stop(self) -> None:
        """Stop reading; batches already read are finished (or left pending for reclaim)."""
        self.stopping.set()
        scope = getattr(self, "_read_scope", None)
        if scope is not None:
            scope.cancel()
