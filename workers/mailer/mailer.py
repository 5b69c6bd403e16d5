"""The mailer's life: read the events stream through its own consumer group, send a
verification message for each ``user.signed_up.v1`` and ``user.verification_requested.v1``,
and ack an event only once the SMTP server has taken its message.

Guarantee: at least once. Every such event leads to a message the SMTP server accepted,
or to a dead letter saying why not. A message goes out twice only if the mailer dies (or
loses Redis) between the server's acceptance and the ack; both copies carry the same
``Message-ID``. SMTP unreachable, or a 4xx: retried with backoff, the entry kept from
being reclaimed meanwhile; nothing is lost. A 5xx refusal of the recipient or content:
dead-lettered at once with the reason. Events of other types are acked untouched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio
from loguru import logger
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError

from domain import tokens
from domain.model import UserSignedUp
from observability import logs, tracing
from observability.metrics import MailerMetrics, exposition
from settings import Settings
from storage import events
from storage.autopipeline import PipelinedRedis
from storage.fields import MalformedEntry
from storage.keys import Keys
from workers.group import Backoff, Delivery, Group, every, observe_streams
from workers.housekeeping import trim_events
from workers.mailer.messages import Outgoing, Sender, Verification, compose, verify_link
from workers.mailer.transport import Deferred, Permanent, Transient, Transport

# The events that call for a verification message.
MAILED = frozenset({"user.signed_up.v1", "user.verification_requested.v1"})
# A transient failure is retried in place, up to the cap between attempts.
RETRY_CAP_SECONDS = 30.0
# After a batch that was not full, how long events may gather before the next read.
LINGER_SECONDS = 0.2
# A 4xx for one message is retried this many times in place; then the entry is left
# pending, to be reclaimed after WORKER_CLAIM_IDLE_MS (each reclaim is a delivery, and
# WORKER_MAX_DELIVERIES of them dead-letter it), so one greylisting server holds no slot.
DEFERRED_ATTEMPTS = 3


@dataclass(frozen=True)
class MailerDeps:
    settings: Settings
    keys: Keys
    group: Group
    # Acks, auto-pipelined: the acks of messages sent at once share a write.
    commands: PipelinedRedis
    transport: Transport
    metrics: MailerMetrics
    tracer: trace.Tracer


class Mailer:
    def __init__(self, deps: MailerDeps) -> None:
        self.d = deps
        self.s = deps.settings
        self.keys = deps.keys
        self.group = deps.group
        self.stopping = anyio.Event()
        self._slots = anyio.Semaphore(deps.settings.mailer_concurrency)
        self._sender = Sender.parse(deps.settings.mail_from)

    # -- one event ---------------------------------------------------------------------

    async def deliver(self, d: Delivery) -> None:
        """Send what the event calls for and ack it; or dead-letter it; or, when stopping
        mid-retry, leave it pending for this name's next start or another mailer."""
        kind = d.fields.get("type", "")
        self.d.metrics.events_seen.inc({"type": kind if kind in events.EVENT_TYPES else "other"})
        if kind not in MAILED:
            await self._ack(d)
            return
        try:
            received = events.decode(d.fields)
        except MalformedEntry as exc:
            await self.dead_letter(d, str(exc), reason="malformed")
            return
        token = tokens.issue(
            self.s.secret_key.get_secret_value(),
            received.event.user_id,
            received.event.email,
            now=time.time(),
            ttl_seconds=self.s.verification_ttl_seconds,
        )
        event = received.event
        greeting = event.display_name if isinstance(event, UserSignedUp) else "there"
        message = compose(
            self._sender,
            Verification(
                message_id=f"<{received.event_id}@{self.s.redis_namespace}.signup-service>",
                to=event.email,
                greeting=greeting,
                link=verify_link(self.s.public_base_url, token),
                hours=max(1, self.s.verification_ttl_seconds // 3600),
            ),
        )
        span = self.d.tracer.start_span(
            f"process {d.stream}",
            context=tracing.extract(received.cause.traceparent),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "redis",
                "messaging.operation.type": "process",
                "messaging.destination.name": d.stream,
                "messaging.consumer.group.name": self.group.name,
                "messaging.message.id": d.entry_id,
                "signup.event": received.type,
            },
        )
        ids = {
            "event_id": received.event_id,
            "user_id": str(event.user_id),
            "command_id": received.cause.command_id,
            "request_id": received.cause.request_id,
            "correlation_id": received.cause.correlation_id,
            "trace_id": tracing.trace_id_of(received.cause.traceparent),
            "token": tokens.fingerprint(token),  # never the token itself
        }
        with trace.use_span(span, end_on_exit=True):
            outcome = await self._send(d, message, ids)
            span.set_attribute("signup.mail_outcome", outcome)
        if outcome == "sent":
            await self._ack(d)
            logs.info("mail.sent", **ids, event_type=received.type)

    async def _send(self, d: Delivery, message: Outgoing, ids: dict[str, str]) -> str:
        """'sent', 'dead_lettered', 'deferred' or 'abandoned' (stopping); the entry stays
        pending unless sent or dead-lettered."""
        m = self.d.metrics
        backoff = Backoff(base=0.2, cap=RETRY_CAP_SECONDS)
        deferred = 0
        while True:
            started = time.perf_counter()
            try:
                with self.d.tracer.start_as_current_span("smtp send", kind=SpanKind.CLIENT):
                    await self.d.transport.send(message)
            except Permanent as exc:
                await self.dead_letter(d, str(exc), reason="rejected")
                logger.error("mail.rejected", **ids, code=exc.code)
                return "dead_lettered"
            except Transient as exc:
                m.sent.inc({"outcome": "retried"})
                m.dependency_errors.inc({"dependency": "smtp"})
                logger.warning("mail.deferred", **ids, error=str(exc)[:200])
                if self.stopping.is_set():
                    return "abandoned"
                if isinstance(exc, Deferred):
                    deferred += 1
                    if deferred >= DEFERRED_ATTEMPTS:
                        return "deferred"
                with anyio.move_on_after(RETRY_CAP_SECONDS):
                    await backoff.sleep()
                continue
            m.send_seconds.observe({}, time.perf_counter() - started)
            m.sent.inc({"outcome": "sent" if self.s.smtp_url is not None else "logged"})
            return "sent"

    async def _keep_alive(self, held: dict[tuple[str, str], Delivery]) -> None:
        period = self.s.worker_claim_idle_ms / 3000
        while True:
            await anyio.sleep(period)
            if held:
                await self.group.keep_alive(list(held.values()))

    async def _ack(self, d: Delivery) -> None:
        backoff = Backoff()
        while True:
            try:
                await self.d.commands.execute("XACK", d.stream, self.group.name, d.entry_id)
                return
            except (RedisError, OSError) as exc:
                self.d.metrics.dependency_errors.inc({"dependency": "redis"})
                logger.warning("redis.unavailable", error=type(exc).__name__)
                if self.stopping.is_set():
                    return  # pending: sent again at the next start (same Message-ID)
                await backoff.sleep()

    async def dead_letter(self, d: Delivery, error: str, *, reason: str) -> None:
        """Move an event to the mailer's dead letters and ack it, in one MULTI."""
        fields = {f"original.{k}": v for k, v in d.fields.items()}
        fields.update(
            {
                "error": error,
                "reason": reason,
                "entry_id": d.entry_id,
                "stream": d.stream,
                "consumer": self.group.consumer,
            }
        )
        async with self.group.client.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.keys.mailer_deadletters,
                fields,  # type: ignore[arg-type]
                maxlen=self.s.deadletter_maxlen,
                approximate=True,
            )
            pipe.xack(d.stream, self.group.name, d.entry_id)
            await pipe.execute()
        self.d.metrics.dead_letters.inc({"reason": reason})
        self.d.metrics.sent.inc({"outcome": "dead_lettered"})
        logger.error(
            "mail.dead_lettered",
            entry_id=d.entry_id,
            event_id=d.fields.get("event_id", ""),
            request_id=d.fields.get("request_id", ""),
            correlation_id=d.fields.get("correlation_id", ""),
            reason=reason,
            error=error[:200],
        )

    # -- batches -----------------------------------------------------------------------

    async def _deliver_and_release(
        self, d: Delivery, held: dict[tuple[str, str], Delivery]
    ) -> None:
        try:
            await self.deliver(d)
        except Exception:
            # Left pending: reclaimed after WORKER_CLAIM_IDLE_MS, dead-lettered after
            # WORKER_MAX_DELIVERIES deliveries. The mailer itself carries on.
            logger.opt(exception=True).error("mail.failed", entry_id=d.entry_id)
        finally:
            del held[(d.stream, d.entry_id)]
            self._slots.release()

    async def handle(self, deliveries: list[Delivery]) -> None:
        """Deliver a batch, ``MAILER_CONCURRENCY`` messages at a time. Every entry of the
        batch is kept alive until it is done with, those still waiting for a turn
        included, however long the sends take (an outage, a server that hangs): none
        looks idle, so no reclaim, here or in another mailer, sends it a second time."""
        held = {(d.stream, d.entry_id): d for d in deliveries}
        async with anyio.create_task_group() as keeper:
            keeper.start_soon(self._keep_alive, held)
            async with anyio.create_task_group() as tg:
                for d in deliveries:
                    await self._slots.acquire()
                    tg.start_soon(self._deliver_and_release, d, held)
            keeper.cancel_scope.cancel()

    async def handle_redelivered(self, deliveries: list[Delivery]) -> None:
        fresh, poison = await self.group.over_delivered(deliveries, self.s.worker_max_deliveries)
        for d, times in poison:
            error = f"delivered {times} times without success"
            await self.dead_letter(d, error, reason="max_deliveries")
        await self.handle(fresh)

    async def reclaim(self) -> int:
        return await self.group.reclaim(self.handle_redelivered, self.stopping)

    async def trim_replays(self) -> int:
        # A replayed dead letter has no history worth keeping once the mailer took it.
        return await trim_events(self.group.client, self.keys.mailer_replays, 0)

    async def run(self) -> None:
        """Read and deliver until ``stop()``; messages in hand are finished first."""
        await self.group.ensure()
        async for deliveries in self.group.own_pending():
            if self.stopping.is_set():
                return
            logger.info("pending.resumed", count=len(deliveries))
            await self.handle_redelivered(deliveries)
        backoff = Backoff()
        errors = self.d.metrics.dependency_errors
        async with anyio.create_task_group() as tg:
            period = self.s.worker_claim_idle_ms / 2000
            tg.start_soon(every, period, self.reclaim, self.stopping, errors)
            period = self.s.stream_trim_interval_seconds
            tg.start_soon(every, period, self.trim_replays, self.stopping, errors)
            while not self.stopping.is_set():
                try:
                    with anyio.CancelScope() as self._read_scope:
                        deliveries = await self.group.read(">", block=self.s.worker_block_ms)
                    backoff.reset()
                except (RedisError, OSError) as exc:
                    errors.inc({"dependency": "redis"})
                    logger.warning("redis.unavailable", error=type(exc).__name__)
                    await backoff.sleep()
                    continue
                # A read cut short by stop() leaves nothing new in `deliveries`.
                if deliveries and not self._read_scope.cancelled_caught:
                    await self.handle(deliveries)
                    if len(deliveries) < self.s.worker_batch_size:
                        # Let the next events gather: one read and one wake-up for many,
                        # not one each, at the cost of a fraction of a second of a mail.
                        with anyio.move_on_after(LINGER_SECONDS):
                            await self.stopping.wait()
        logger.info("mailer.drained", consumer=self.group.consumer)

    async def metrics_exposition(self) -> tuple[bytes, dict[str, str]]:
        m = self.d.metrics
        await observe_streams(
            self.group.client,
            m.streams,
            m.dependency_errors,
            [self.keys.events],
            [self.keys.mailer_deadletters],
        )
        return exposition(m.registry, m.process)

    def stop(self) -> None:
        self.stopping.set()
        scope = getattr(self, "_read_scope", None)
        if scope is not None:
            scope.cancel()
