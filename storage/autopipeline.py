"""One Redis connection that sends every command issued in the same turn of the event loop
as one write: auto-pipelining, for the web's hot path.

redis-py takes a pooled connection per command, writes the command, and holds that
connection until the reply is back: 32 concurrent reads cost 32 writes, 32 reads and the
pool's locking. Here the commands of one loop turn go out in one write and their replies
come back, in order, on the same socket (Redis answers a connection's commands in the
order they came), each resolving the oldest waiting future. On this project's 2-core
machine one uvicorn process serving a GET of a 200-byte value at 32 connections did about
11,000 requests a second through redis-py and 31,000 through this.

Scope: single commands, scripts (``EVALSHA``, loaded on ``NOSCRIPT``) and ``MULTI``
blocks, queued in one piece so no other caller's command can land inside one. No pub/sub.
A blocking command (``XREADGROUP BLOCK``) stalls every command queued behind it, so it
gets a connection of its own (the worker's reader), with ``timeout`` above the block.

Errors are redis-py's types, so callers handle one family (``RedisError``):

* an error reply raises ``ResponseError`` in its own caller only;
* a lost connection raises ``ConnectionError`` in every command in flight, and the next
  command connects again;
* no reply within ``timeout`` raises ``TimeoutError`` in every command in flight and drops
  the connection, so a late reply can never be taken for another command's.

After a failed connect, or a connection dropped for not answering, commands fail at once
for ``RETRY_AFTER_SECONDS`` rather than each waiting on a Redis that is down or hung; a
caller with a fallback (the read model's Postgres) then uses it without delay.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from typing import Any, Protocol, cast

import hiredis
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | bytes | int | float
RETRY_AFTER_SECONDS = 0.5


class Commands(Protocol):
    """What the web's hot path needs of Redis: a command, or a Lua script, at a time."""

    async def execute(self, *args: Arg) -> Any: ...

    async def script(self, source: str, keys: list[str], args: list[Arg]) -> Any: ...


def encode(args: tuple[Arg, ...]) -> bytes:
    """A command in RESP, the form ``redis-cli`` sends too."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = repr(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        # Replies decoded as UTF-8, like every other client of this service. Bytes that are
        # not UTF-8 (only a hand-made stream entry can hold them) become U+FFFD, so such an
        # entry is refused as malformed instead of breaking the connection at every read.
        self._reader = hiredis.Reader(replyError=ResponseError, encoding="utf-8", errors="replace")
        self._transport: asyncio.WriteTransport | None = None
        # Futures of the commands sent or about to be, oldest first, with when they were queued.
        self._waiters: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._unsent: list[bytes] = []
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False
        # When Redis stopped answering this connection, if it did.
        self.timed_out_at: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio's interface without subclassing it.
        self._transport = cast(asyncio.WriteTransport, transport)

    def send(self, command: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        if self.closed:
            future.set_exception(RedisConnectionError("Connection to Redis closed"))
            return future
        self._waiters.append((future, self._loop.time()))
        self._unsent.append(command)
        self._schedule()
        return future

    def send_block(self, commands: list[bytes]) -> list[asyncio.Future[Any]]:
        """Commands queued back to back: nothing another caller sends can come between."""
        if self.closed:
            return [self.send(command) for command in commands]
        futures: list[asyncio.Future[Any]] = []
        now = self._loop.time()
        for command in commands:
            future: asyncio.Future[Any] = self._loop.create_future()
            futures.append(future)
            self._waiters.append((future, now))
            self._unsent.append(command)
        self._schedule()
        return futures

    def _schedule(self) -> None:
        if not self._flush_scheduled:
            # Everything queued until the loop comes round again goes in the same write.
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        if self._timer is None:
            self._timer = self._loop.call_later(self._timeout, self._check_deadline)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._unsent and self._transport is not None and not self.closed:
            self._transport.write(b"".join(self._unsent))
        self._unsent.clear()

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._waiters:
            return
        oldest = self._waiters[0][1]
        if self._loop.time() - oldest >= self._timeout:
            self.timed_out_at = self._loop.time()
            self.fail(RedisTimeoutError(f"Redis did not answer within {self._timeout:g} s"))
            return
        self._timer = self._loop.call_at(oldest + self._timeout, self._check_deadline)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.fail(RedisConnectionError(f"Redis protocol error: {exc}"))
                return
            if reply is False:
                return
            if not self._waiters:
                self.fail(RedisConnectionError("Redis sent a reply nobody asked for"))
                return
            future, _ = self._waiters.popleft()
            if future.done():  # its caller was cancelled; the reply is still consumed
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"Connection to Redis lost: {exc or 'closed'}"))

    def fail(self, error: Exception) -> None:
        """Close the connection and raise ``error`` in every command still in flight."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._unsent.clear()
        while self._waiters:
            future, _ = self._waiters.popleft()
            if not future.done():
                future.set_exception(error)
        if self._transport is not None:
            self._transport.abort()
            self._transport = None


class PipelinedRedis:
    """Auto-pipelined commands on one connection, opened on first use and after a loss."""

    def __init__(self, url: str, *, timeout: float, connect_timeout: float) -> None:
        # redis-py's own URL rules (rediss://, unix://, ?db=), so one REDIS_URL means the same
        # thing to both clients.
        params: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        self._host: str = params.get("host", "localhost")
        self._port: int = int(params.get("port", 6379))
        self._path: str | None = params.get("path")
        self._db = int(params.get("db", 0) or 0)
        self._username: str | None = params.get("username")
        self._password: str | None = params.get("password")
        self._ssl = "SSL" in getattr(params.get("connection_class"), "__name__", "")
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._connection: _Connection | None = None
        self._connecting = asyncio.Lock()
        self._down_until = float("-inf")
        self._shas: dict[str, str] = {}

    async def execute(self, *args: Arg) -> Any:
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._connect()
        return await connection.send(encode(args))

    async def transaction(self, *commands: tuple[Arg, ...]) -> list[Any]:
        """``MULTI``, the commands, ``EXEC``: all or none applied, one round trip.
        Their replies, or the first error among them raised."""
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._connect()
        encoded = [b"*1\r\n$5\r\nMULTI\r\n", *(encode(c) for c in commands)]
        encoded.append(b"*1\r\n$4\r\nEXEC\r\n")
        futures = connection.send_block(encoded)
        error: Exception | None = None
        replies: Any = None
        for future in futures:  # every future awaited, so none holds an unseen error
            try:
                replies = await future
            except RedisError as exc:
                error = error or exc
        if error is not None:
            raise error
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return list(replies)

    async def script(self, source: str, keys: list[str], args: list[Arg]) -> Any:
        """Run a Lua script by its SHA1, sending its source only when Redis lacks it."""
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = hashlib.sha1(
                source.encode(), usedforsecurity=False
            ).hexdigest()
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self.execute("EVAL", source, len(keys), *keys, *args)

    async def _connect(self) -> _Connection:
        async with self._connecting:
            old = self._connection
            if old is not None and not old.closed:
                return old
            loop = asyncio.get_running_loop()
            if old is not None and old.timed_out_at is not None:
                self._down_until = max(self._down_until, old.timed_out_at + RETRY_AFTER_SECONDS)
            if loop.time() < self._down_until:
                raise RedisConnectionError("Redis is unreachable; the next attempt is due shortly")
            try:
                self._connection = await self._open()
            except RedisConnectionError:
                self._down_until = loop.time() + RETRY_AFTER_SECONDS
                raise
            return self._connection

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        connection: _Connection
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._path is not None:
                    _, connection = await loop.create_unix_connection(
                        lambda: _Connection(self._timeout), self._path
                    )
                else:
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self._timeout),
                        self._host,
                        self._port,
                        ssl=ssl.create_default_context() if self._ssl else None,
                    )
                await self._hello(connection)
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"Error connecting to Redis: {exc}") from exc
        return connection

    async def _hello(self, connection: _Connection) -> None:
        hello: list[tuple[Arg, ...]] = []
        if self._password is not None:
            auth = (self._username, self._password) if self._username else (self._password,)
            hello.append(("AUTH", *auth))
        if self._db:
            hello.append(("SELECT", self._db))
        try:
            for command in hello:
                await connection.send(encode(command))
        except BaseException as exc:
            connection.fail(RedisConnectionError(f"Redis refused the connection: {exc}"))
            raise

    async def aclose(self) -> None:
        if self._connection is not None:
            self._connection.fail(RedisConnectionError("Connection to Redis closed"))
            self._connection = None
