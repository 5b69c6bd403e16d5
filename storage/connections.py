"""Opening Postgres pools and Redis clients, and saying clearly when one is unreachable."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

CONNECT_TIMEOUT_SECONDS = 5.0
POOL_WAIT_SECONDS = 5.0


class DependencyUnavailable(RuntimeError):
    """Postgres or Redis could not be reached; the message is one line naming the URL."""


def redact(url: str) -> str:
    """``url`` without its password, fit for a log line or an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Nothing to undo when a connection goes back to the pool: the service sets no session
    state (no SET, LISTEN, advisory locks or open cursors). asyncpg still rolls back an open
    transaction itself; its default reset would add a round trip to every release."""


async def connect_postgres(url: str, *, min_size: int, max_size: int) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=CONNECT_TIMEOUT_SECONDS,
            reset=_keep_session,
        )
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DependencyUnavailable(
            f"cannot reach Postgres at {redact(url)}: {_reason(exc)}"
        ) from exc
    return pool


def redis_client(url: str, *, max_connections: int, socket_timeout: float | None) -> redis.Redis:
    """A client whose connections come from one bounded pool.

    The pool *waits* (up to ``POOL_WAIT_SECONDS``) for a free connection when all are busy;
    redis-py's default pool raises at once instead, turning a burst into errors.
    ``socket_timeout`` must exceed any ``BLOCK`` time used on the client, or redis-py
    times out the socket under a long blocking read.
    """
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT_SECONDS,
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=2),
    )
    return redis.Redis.from_pool(pool)


async def check_redis(client: redis.Redis, url: str) -> None:
    try:
        await client.ping()
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise DependencyUnavailable(f"cannot reach Redis at {redact(url)}: {_reason(exc)}") from exc
