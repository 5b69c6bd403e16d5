"""The mailer in this process, against the real Redis and a real SMTP server (aiosmtpd):
what each event comes to (a message, an ack, a dead letter), outages, reclaim, traces, logs."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

import anyio
import orjson
import pytest
import redis.asyncio as redis
from loguru import logger
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import SecretStr

from bootstrap import open_mailer
from domain import tokens
from domain.ids import uuid7
from domain.model import EmailVerified, UserSignedUp
from observability import logs
from settings import Settings
from storage import events
from storage.keys import Keys
from tests import prometheus_text
from tests.integration.conftest import running_worker, web_client
from tests.redis_typed import Entry, add, entries
from tests.smtp import SmtpSink, smtp_sink
from workers.mailer.mailer import Mailer

pytestmark = pytest.mark.anyio


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with smtp_sink() as s:
        yield s


@pytest.fixture
def mail_settings(settings: Settings, sink: SmtpSink) -> Settings:
    return settings.model_copy(
        update={
            "smtp_url": SecretStr(sink.url),
            "worker_claim_idle_ms": 500,
            "smtp_timeout_seconds": 5.0,
        }
    )


@asynccontextmanager
async def running_mailer(
    settings: Settings, tracer_provider: trace.TracerProvider | None = None
) -> AsyncIterator[Mailer]:
    """A mailer delivering in the background until the block exits; on exit it is stopped
    and every delivery it had in hand has finished."""
    async with open_mailer(settings, tracer_provider) as deps, anyio.create_task_group() as tg:
        mailer = Mailer(deps)
        tg.start_soon(mailer.run)
        try:
            yield mailer
        finally:
            mailer.stop()


def signed_up(
    email: str,
    *,
    user_id: uuid.UUID | None = None,
    display_name: str = "Mia Mail",
    request_id: str = "req-1",
    correlation_id: str = "corr-1",
) -> dict[str, str]:
    event = UserSignedUp(
        user_id=user_id or uuid7(),
        version=1,
        occurred_at=datetime.now(UTC),
        email=email,
        name="Mia",
        display_name=display_name,
    )
    cause = events.Cause(str(uuid7()), request_id, correlation_id, "")
    return events.encode(str(uuid7()), event, cause)


def address(prefix: str = "mia") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


async def until_drained(r: redis.Redis, keys: Keys, within: float = 10) -> None:
    """Until the mailer group has read every event and acked all it read."""
    with anyio.fail_after(within):
        while True:
            groups = [
                g for g in await r.xinfo_groups(keys.events) if g["name"] == keys.mailer_group
            ]
            if groups and groups[0]["pending"] == 0 and groups[0]["lag"] == 0:
                return
            await anyio.sleep(0.02)


async def pending(r: redis.Redis, keys: Keys) -> int:
    summary: dict[str, Any] = await r.xpending(keys.events, keys.mailer_group)
    return int(summary["pending"])


async def samples(mailer: Mailer) -> list[prometheus_text.Sample]:
    body, _ = await mailer.metrics_exposition()
    return prometheus_text.parse(body.decode())


async def test_a_signup_event_sends_one_message_whose_link_verifies_that_address(
    mail_settings: Settings, sink: SmtpSink, r: redis.Redis
) -> None:
    keys = Keys(mail_settings.redis_namespace)
    email, user_id = address(), uuid7()
    fields = signed_up(email, user_id=user_id)
    async with running_mailer(mail_settings):
        await add(r, keys.events, fields)
        [mail] = await sink.arrival(email)
        await until_drained(r, keys)
        assert await pending(r, keys) == 0
        assert sink.by_recipient() == {email: 1}

    assert mail.message["To"] == email
    assert mail.message["Subject"] == "Confirm your email address"
    ns = mail_settings.redis_namespace
    # Folded onto a line of its own when long: the parser keeps the folding space.
    assert mail.message["Message-ID"].strip() == f"<{fields['event_id']}@{ns}.signup-service>"
    assert mail.message.is_multipart()
    assert "Hello Mia Mail," in mail.text
    assert "Hello Mia Mail," in mail.html
    assert mail.link.startswith(f"{mail_settings.public_base_url}/verify-email?token=")
    assert mail.link in mail.html
    claims = tokens.read(mail_settings.secret_key.get_secret_value(), mail.token, now=time.time())
    assert claims.user_id == user_id
    assert claims.email_digest == tokens.email_digest(email)
    assert await entries(r, keys.mailer_deadletters) == []


async def test_events_that_call_for_no_message_are_acked_untouched(
    mail_settings: Settings, sink: SmtpSink, r: redis.Redis
) -> None:
    keys = Keys(mail_settings.redis_namespace)
    email = address()
    verified = EmailVerified(user_id=uuid7(), version=2, occurred_at=datetime.now(UTC), email=email)
    cause = events.Cause(str(uuid7()), "req-2", "corr-2", "")
    async with running_mailer(mail_settings) as mailer:
        await add(r, keys.events, events.encode(str(uuid7()), verified, cause))
        await add(r, keys.events, {"type": "user.deleted.v9", "event_id": "e-9", "email": email})
        await add(r, keys.events, {"no_type": "at all"})
        await until_drained(r, keys)
        seen = await samples(mailer)
    assert await pending(r, keys) == 0
    assert sink.received == []
    assert await entries(r, keys.mailer_deadletters) == []
    assert prometheus_text.total(seen, "mailer_events_total", type="user.email_verified.v1") == 1
    assert prometheus_text.total(seen, "mailer_events_total", type="other") == 2
    assert prometheus_text.total(seen, "emails_sent_total") == 0


async def test_a_signup_event_without_an_email_is_dead_lettered_as_malformed(
    mail_settings: Settings, sink: SmtpSink, r: redis.Redis
) -> None:
    keys = Keys(mail_settings.redis_namespace)
    fields = signed_up(address())
    del fields["email"]
    async with running_mailer(mail_settings):
        entry_id = await add(r, keys.events, fields)
        await until_drained(r, keys)
        letters = await entries(r, keys.mailer_deadletters)
    assert await pending(r, keys) == 0
    assert sink.received == []
    [(_, letter)] = letters
    assert letter["reason"] == "malformed"
    assert "email" in letter["error"]
    assert letter["entry_id"] == entry_id
    assert letter["stream"] == keys.events
    assert letter["original.event_id"] == fields["event_id"]
    assert letter["original.type"] == "user.signed_up.v1"


async def test_a_refused_recipient_is_dead_lettered_at_once(
    mail_settings: Settings, sink: SmtpSink, r: redis.Redis
) -> None:
    keys = Keys(mail_settings.redis_namespace)
    refused = address("refuse-me")
    fields = signed_up(refused)
    async with running_mailer(mail_settings) as mailer:
        entry_id = await add(r, keys.events, fields)
        await until_drained(r, keys)
        seen = await samples(mailer)
        letters = await entries(r, keys.mailer_deadletters)
        refusals = list(sink.refused)
    assert await pending(r, keys) == 0
    [(_, letter)] = letters
    assert letter["reason"] == "rejected"
    assert "550" in letter["error"]
    assert letter["entry_id"] == entry_id
    assert letter["original.email"] == refused
    assert sink.received == []
    assert refusals == [refused]  # one attempt: a 5xx is not retried
    assert prometheus_text.total(seen, "emails_sent_total", outcome="retried") == 0
    assert prometheus_text.total(seen, "emails_sent_total", outcome="dead_lettered") == 1
    assert prometheus_text.total(seen, "dead_letters_total", reason="rejected") == 1


async def times_delivered(r: redis.Redis, keys: Keys, entry_id: str) -> int:
    """How many times the mailer group has delivered an entry it still holds (0: none)."""
    held = await r.xpending_range(keys.events, keys.mailer_group, entry_id, entry_id, 1)
    return int(held[0]["times_delivered"]) if held else 0


def no_mail_event() -> dict[str, str]:
    verified = EmailVerified(uuid7(), 2, datetime.now(UTC), address("verified"))
    return events.encode(str(uuid7()), verified, events.Cause(str(uuid7()), "r", "c", ""))


async def test_a_message_sent_while_smtp_is_down_arrives_once_it_is_back(
    mail_settings: Settings, sink: SmtpSink, r: redis.Redis
) -> None:
    keys = Keys(mail_settings.redis_namespace)
    email = address()
    sink.stop()
    async with running_mailer(mail_settings) as mailer:
        entry_id = await add(r, keys.events, signed_up(email))
        with anyio.fail_after(5):
            while not prometheus_text.total(
                await samples(mailer), "emails_sent_total", outcome="retried"
            ):
                await anyio.sleep(0.02)
        # The outage goes on for 2 s, four times WORKER_CLAIM_IDLE_MS: the mailer retrying
        # keeps its entry from being taken over, so it is delivered to the group once.
        deliveries = set()
        with anyio.move_on_after(2):
            while True:
                deliveries.add(await times_delivered(r, keys, entry_id))
                await anyio.sleep(0.05)
        await anyio.to_thread.run_sync(sink.start)
        await sink.arrival(email, within=25)
        await until_drained(r, keys)
        seen = await samples(mailer)
        # Last, an event that calls for no message, so the batch in hand when the mailer
        # stops has nothing to send: the count below is the retried delivery's alone.
        await add(r, keys.events, no_mail_event())
        await until_drained(r, keys)
    # Stopped: every delivery the mailer had in hand is over, so the count is final.
    assert sink.by_recipient() == {email: 1}
    assert deliveries == {1}
    assert await pending(r, keys) == 0
    assert prometheus_text.total(seen, "emails_sent_total", outcome="retried") > 0
    assert prometheus_text.total(seen, "dependency_errors_total", dependency="smtp") > 0
    assert prometheus_text.total(seen, "emails_sent_total", outcome="sent") == 1
    assert await entries(r, keys.mailer_deadletters) == []


async def test_stopping_the_mailer_sends_nothing_again(
    mail_settings: Settings, sink: SmtpSink, r: redis.Redis
) -> None:
    """What the mailer read and acked before stop() is not delivered again by stopping."""
    # A long block: when stop() comes, the mailer is waiting in its next read.
    slow_reads = mail_settings.model_copy(update={"worker_block_ms": 5_000})
    keys = Keys(mail_settings.redis_namespace)
    email, malformed = address(), signed_up(address())
    del malformed["email"]
    async with running_mailer(slow_reads):
        await add(r, keys.events, malformed)
        await add(r, keys.events, signed_up(email))
        await sink.arrival(email)
        await until_drained(r, keys)
        assert sink.by_recipient() == {email: 1}
        assert len(await entries(r, keys.mailer_deadletters)) == 1
    # Everything it read was acked: stopping must not deliver any of it again.
    assert sink.by_recipient() == {email: 1}
    assert len(await entries(r, keys.mailer_deadletters)) == 1


async def test_a_dead_mailers_pending_event_is_reclaimed_and_mailed(
    mail_settings: Settings, sink: SmtpSink, r: redis.Redis
) -> None:
    keys = Keys(mail_settings.redis_namespace)
    email = address()
    await r.xgroup_create(keys.events, keys.mailer_group, id="0", mkstream=True)
    entry_id = await add(r, keys.events, signed_up(email))
    # Read and never acked: as a mailer killed mid-message leaves it.
    taken = await r.xreadgroup(keys.mailer_group, "dead-mailer", {keys.events: ">"}, count=10)
    batches = cast(list[tuple[str, list[Entry]]], taken)
    assert [e for _, batch in batches for e, _ in batch] == [entry_id]
    assert await pending(r, keys) == 1

    async with running_mailer(mail_settings):
        await sink.arrival(email)
        await until_drained(r, keys)
        assert sink.by_recipient() == {email: 1}
    assert await pending(r, keys) == 0
    consumers = {c["name"]: c for c in await r.xinfo_consumers(keys.events, keys.mailer_group)}
    assert consumers["dead-mailer"]["pending"] == 0


async def test_a_signups_mailer_spans_join_its_trace(
    mail_settings: Settings, sink: SmtpSink, r: redis.Redis
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    email = address()
    async with (
        web_client(mail_settings, tracer_provider=provider) as client,
        running_worker(mail_settings, tracer_provider=provider),
        running_mailer(mail_settings, tracer_provider=provider),
    ):
        response = await client.post(
            "/signup", json={"name": "Tia", "email": email, "password": "pw123456"}
        )
        assert response.status_code == 201
        await sink.arrival(email)
        ns = mail_settings.redis_namespace
        await until_drained(r, Keys(ns))
        spans = exporter.get_finished_spans()
    [server] = [s for s in spans if s.name == "POST /signup"]
    [producer] = [s for s in spans if s.name == f"send {ns}:commands"]
    [process] = [s for s in spans if s.name == f"process {ns}:events"]
    [smtp] = [s for s in spans if s.name == "smtp send"]

    assert process.kind == SpanKind.CONSUMER
    assert smtp.kind == SpanKind.CLIENT
    assert {s.context.trace_id for s in (server, producer, process, smtp)} == {
        server.context.trace_id
    }
    assert process.parent is not None
    assert process.parent.span_id == producer.context.span_id
    assert smtp.parent is not None
    assert smtp.parent.span_id == process.context.span_id
    attributes = dict(process.attributes or {})
    assert attributes["messaging.consumer.group.name"] == f"{ns}-mailer"
    assert attributes["signup.event"] == "user.signed_up.v1"
    assert attributes["signup.mail_outcome"] == "sent"
    token = sink.to(email)[0].token
    for span in spans:
        for value in (span.attributes or {}).values():
            assert token not in str(value)


async def test_a_signups_mail_link_verifies_the_account(
    mail_settings: Settings, sink: SmtpSink, r: redis.Redis
) -> None:
    keys = Keys(mail_settings.redis_namespace)
    email = address()
    async with (
        web_client(mail_settings) as client,
        running_worker(mail_settings),
        running_mailer(mail_settings),
    ):
        created = await client.post(
            "/signup", json={"name": "Vi", "email": email, "password": "pw123456"}
        )
        assert created.status_code == 201
        [mail] = await sink.arrival(email)
        verified = await client.post("/verify-email", json={"token": mail.token})
        assert verified.status_code == 200
        assert verified.json()["id"] == created.json()["id"]
        assert verified.json()["email_verified"] is True
        await until_drained(r, keys)
        assert sink.by_recipient() == {email: 1}  # the verification itself mails nothing
    assert [f["type"] for _, f in await entries(r, keys.events)] == [
        "user.signed_up.v1",
        "user.email_verified.v1",
    ]


async def test_the_sent_line_carries_the_events_ids_and_a_token_fingerprint(
    mail_settings: Settings, sink: SmtpSink, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "_json_lines", None)
    lines: list[str] = []
    handler = logger.add(lines.append, serialize=True, level="DEBUG")
    keys = Keys(mail_settings.redis_namespace)
    email = address()
    fields = signed_up(email, request_id="req-log-1", correlation_id="corr-log-1")
    try:
        async with running_mailer(mail_settings):
            await add(r, keys.events, fields)
            [mail] = await sink.arrival(email)
            await until_drained(r, keys)
            written = list(lines)
    finally:
        logger.remove(handler)
    records = [orjson.loads(str(line))["record"] for line in written]
    [sent] = [rec["extra"] for rec in records if rec["message"] == "mail.sent"]
    assert sent["request_id"] == "req-log-1"
    assert sent["correlation_id"] == "corr-log-1"
    assert sent["event_id"] == fields["event_id"]
    assert sent["user_id"] == fields["user_id"]
    assert sent["command_id"] == fields["command_id"]
    assert sent["event_type"] == "user.signed_up.v1"
    assert sent["token"] == tokens.fingerprint(mail.token)
    for line in lines:  # every line, the mailer's last ones included
        assert mail.token not in line
