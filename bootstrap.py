"""The one place that opens pools and clients and wires the objects that use them.

The web lifespan and the worker start-up call these; tests call them with test settings.
Nothing is opened at import time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import asyncpg
from opentelemetry import trace
from redis.asyncio import Redis

from api.backlog import Backlog
from api.idempotency import IdempotencyStore
from api.passwords import PasswordHasher
from api.ratelimit import RateLimiter
from api.replies import ReplyListener
from observability.metrics import MailerMetrics, WebMetrics, WorkerMetrics
from observability.tracing import TRACER_NAME
from settings import Settings
from storage.autopipeline import PipelinedRedis
from storage.connections import (
    CONNECT_TIMEOUT_SECONDS,
    check_redis,
    connect_postgres,
    redis_client,
)
from storage.keys import Keys
from storage.users import PostgresUsers
from workers.group import Group
from workers.mailer.mailer import MailerDeps
from workers.mailer.transport import LogTransport, SmtpTransport, Transport, parse_smtp_url

# Every non-blocking command takes milliseconds; a reply wait is not a socket read (it is a
# future), so a short socket timeout makes an outage answer 503 quickly.
SOCKET_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Web:
    settings: Settings
    keys: Keys
    web_id: str
    redis: Redis
    # The hot path's commands (reads, idempotency, enqueue, rate limit), auto-pipelined.
    commands: PipelinedRedis
    pool: asyncpg.Pool
    users: PostgresUsers
    replies: ReplyListener
    idempotency: IdempotencyStore
    hasher: PasswordHasher
    backlog: Backlog
    rate_limiter: RateLimiter
    # Verification resends per address per hour.
    resend_limiter: RateLimiter
    metrics: WebMetrics
    tracer: trace.Tracer
    started_at: float


@dataclass(frozen=True)
class Worker:
    settings: Settings
    keys: Keys
    redis: Redis
    # The batch loop's commands, auto-pipelined: XREADGROUP BLOCK on a connection of its
    # own (its timeout above the block), the settling MULTI on another.
    stream_reader: PipelinedRedis
    commands: PipelinedRedis
    pool: asyncpg.Pool
    users: PostgresUsers
    metrics: WorkerMetrics
    tracer: trace.Tracer


@asynccontextmanager
async def _redis(settings: Settings, socket_timeout: float) -> AsyncIterator[Redis]:
    client = redis_client(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        socket_timeout=socket_timeout,
    )
    try:
        await check_redis(client, settings.redis_url)
        yield client
    finally:
        await client.aclose()


@asynccontextmanager
async def _pipelined(settings: Settings, reply_within: float) -> AsyncIterator[PipelinedRedis]:
    client = PipelinedRedis(
        settings.redis_url, timeout=reply_within, connect_timeout=CONNECT_TIMEOUT_SECONDS
    )
    try:
        yield client
    finally:
        await client.aclose()


@asynccontextmanager
async def _postgres(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await connect_postgres(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    try:
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def open_web(
    settings: Settings, metrics: WebMetrics, tracer_provider: trace.TracerProvider
) -> AsyncIterator[Web]:
    """Everything one web process needs; the reply listener is subscribed on entry."""
    keys = Keys(settings.redis_namespace)
    web_id = uuid.uuid4().hex[:12]
    async with (
        _redis(settings, SOCKET_TIMEOUT_SECONDS) as client,
        _postgres(settings) as pool,
        _pipelined(settings, SOCKET_TIMEOUT_SECONDS) as commands,
        anyio.create_task_group() as tg,
    ):
        replies = ReplyListener(client, keys, web_id)
        await tg.start(replies.run)
        hasher = PasswordHasher(settings.bcrypt_rounds, settings.bcrypt_threads)
        try:
            yield Web(
                settings=settings,
                keys=keys,
                web_id=web_id,
                redis=client,
                commands=commands,
                pool=pool,
                users=PostgresUsers(pool),
                replies=replies,
                idempotency=IdempotencyStore(
                    commands,
                    ttl_seconds=settings.idempotency_ttl_seconds,
                    lease_seconds=settings.idempotency_lease_seconds,
                ),
                hasher=hasher,
                backlog=Backlog(client, keys, settings.max_backlog),
                rate_limiter=RateLimiter(
                    commands, keys, settings.signup_rate_limit, settings.signup_rate_window_seconds
                ),
                resend_limiter=RateLimiter(
                    commands, keys, settings.verification_resend_limit, 3600
                ),
                metrics=metrics,
                tracer=tracer_provider.get_tracer(TRACER_NAME),
                started_at=time.monotonic(),
            )
        finally:
            hasher.close()
        tg.cancel_scope.cancel()


@asynccontextmanager
async def open_worker(
    settings: Settings, tracer_provider: trace.TracerProvider | None = None
) -> AsyncIterator[Worker]:
    provider = tracer_provider or trace.NoOpTracerProvider()
    block_timeout = settings.worker_block_ms / 1000 + 5.0
    async with (
        _redis(settings, SOCKET_TIMEOUT_SECONDS) as client,
        _pipelined(settings, block_timeout) as stream_reader,
        _pipelined(settings, SOCKET_TIMEOUT_SECONDS) as commands,
        _postgres(settings) as pool,
    ):
        yield Worker(
            settings=settings,
            keys=Keys(settings.redis_namespace),
            redis=client,
            stream_reader=stream_reader,
            commands=commands,
            pool=pool,
            users=PostgresUsers(pool),
            metrics=WorkerMetrics(),
            tracer=provider.get_tracer(TRACER_NAME),
        )


@asynccontextmanager
async def open_mailer(
    settings: Settings, tracer_provider: trace.TracerProvider | None = None
) -> AsyncIterator[MailerDeps]:
    """What one mailer process needs: Redis, a reader of its own, and the transport
    (SMTP, or the log when SMTP_URL is unset)."""
    provider = tracer_provider or trace.NoOpTracerProvider()
    keys = Keys(settings.redis_namespace)
    block_timeout = settings.worker_block_ms / 1000 + 5.0
    smtp_url = settings.smtp_url
    transport: Transport = (
        LogTransport()
        if smtp_url is None
        else SmtpTransport(
            parse_smtp_url(smtp_url.get_secret_value()), settings.smtp_timeout_seconds
        )
    )
    async with (
        _redis(settings, SOCKET_TIMEOUT_SECONDS) as client,
        _pipelined(settings, block_timeout) as reader,
        _pipelined(settings, SOCKET_TIMEOUT_SECONDS) as commands,
    ):
        try:
            yield MailerDeps(
                settings=settings,
                keys=keys,
                group=Group(
                    client,
                    reader,
                    streams=[keys.events, keys.mailer_replays],
                    group=keys.mailer_group,
                    consumer=settings.worker_name,
                    batch_size=settings.worker_batch_size,
                    claim_idle_ms=settings.worker_claim_idle_ms,
                ),
                commands=commands,
                transport=transport,
                metrics=MailerMetrics(),
                tracer=provider.get_tracer(TRACER_NAME),
            )
        finally:
            await transport.aclose()
