"""The bench's own databases and Redis namespace: made, filled, measured and removed."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import bcrypt
import redis

from bench.procs import ROOT, base_env, procfile

BULK_CHUNK = 50_000
BULK_PASSWORD_HASH = bcrypt.hashpw(b"bulk-loaded-user", bcrypt.gensalt(4)).decode()


def database_url(admin_url: str, name: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


async def _admin(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(admin_url: str, name: str) -> str:
    """A new, migrated database (``python -m storage.migrate``, the Procfile's release)."""
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    url = database_url(admin_url, name)
    done = subprocess.run(
        ["bash", "-c", f"exec {procfile()['release']}"],
        cwd=ROOT,
        env=base_env(DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"migrating {name} failed:\n{done.stdout}{done.stderr}")
    return url


def drop_database(admin_url: str, name: str) -> None:
    asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows
    finally:
        await conn.close()


def count_users(url: str) -> int:
    return int(asyncio.run(_fetch(url, "SELECT count(*) AS n FROM users"))[0]["n"])


def sample_ids(url: str, limit: int) -> list[str]:
    """Random ids of ``users_read`` (a bench query: it may scan, the service's may not)."""
    rows = asyncio.run(_fetch(url, "SELECT id FROM users_read ORDER BY random() LIMIT $1", limit))
    return [str(row["id"]) for row in rows]


@dataclass(frozen=True)
class ScanCounts:
    seq_scan: int
    idx_scan: int


def scan_counts(url: str) -> ScanCounts:
    """Sequential and index scans on ``users`` and ``users_read`` since the database began."""
    rows = asyncio.run(
        _fetch(
            url,
            "SELECT coalesce(sum(seq_scan), 0) AS seq, coalesce(sum(idx_scan), 0) AS idx"
            " FROM pg_stat_user_tables WHERE relname IN ('users', 'users_read')",
        )
    )
    return ScanCounts(int(rows[0]["seq"]), int(rows[0]["idx"]))


def _records(
    start: int, stop: int, tag: str, new_id: Callable[[], uuid.UUID], now: datetime
) -> Iterator[tuple[uuid.UUID, str, str, str, datetime]]:
    for i in range(start, stop):
        yield new_id(), "Bulk User", f"bulk-{tag}-{i}@example.com", "Bulk User", now


async def _bulk_load(url: str, rows: int, new_id: Callable[[], uuid.UUID]) -> int:
    conn = await asyncpg.connect(url)
    try:
        have = int(await conn.fetchval("SELECT count(*) FROM users"))
        tag = uuid.uuid4().hex[:8]
        now = datetime.now(UTC)
        for start in range(0, max(0, rows - have), BULK_CHUNK):
            stop = min(start + BULK_CHUNK, rows - have)
            chunk = list(_records(start, stop, tag, new_id, now))
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "users",
                    records=[(i, n, e, BULK_PASSWORD_HASH, t, t) for i, n, e, _, t in chunk],
                    columns=["id", "name", "email", "password_hash", "created_at", "updated_at"],
                )
                await conn.copy_records_to_table(
                    "users_read",
                    records=chunk,
                    columns=["id", "name", "email", "display_name", "created_at"],
                )
        await conn.execute("VACUUM ANALYZE users")
        await conn.execute("VACUUM ANALYZE users_read")
        return int(await conn.fetchval("SELECT count(*) FROM users"))
    finally:
        await conn.close()


def bulk_load(targets: list[tuple[str, Callable[[], uuid.UUID]]], rows: int) -> list[int]:
    """Fill each database with COPY until ``users`` has ``rows`` rows (both tables alike);
    the databases are loaded side by side. Returns the row counts."""

    async def all_of() -> list[int]:
        return list(await asyncio.gather(*(_bulk_load(url, rows, f) for url, f in targets)))

    return asyncio.run(all_of())


# Not per user: the events stream is counted on its own, per retained event.
EVENTS_KIND = "events"


@dataclass
class RedisUsage:
    users: int = 0
    keys: int = 0
    total_bytes: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    stream_length: int = 0
    stream_pending: int = 0
    events_bytes: int = 0
    events_length: int = 0
    mailer_read: int = 0

    @property
    def per_user(self) -> float:
        """Every key of the namespace but the events stream, over the read-model keys."""
        return self.total_bytes / self.users if self.users else 0.0

    @property
    def per_user_apart_stream(self) -> float:
        """As ``per_user``, less the commands stream: the acked entries it keeps are a fixed
        amount, spread thin only over many users."""
        stream = self.by_kind.get("commands", 0)
        return (self.total_bytes - stream) / self.users if self.users else 0.0

    @property
    def per_event(self) -> float:
        return self.events_bytes / self.events_length if self.events_length else 0.0


def _kind(namespace: str, key: str) -> str:
    rest = key.removeprefix(f"{namespace}:")
    return rest.split(":", 1)[0]


def redis_usage(redis_url: str, namespace: str) -> RedisUsage:
    """``MEMORY USAGE`` summed over the namespace's keys (``SCAN``), by kind of key, the
    events stream apart; users are the read-model keys; the commands stream's length and
    pending count; the events stream's length and how many of its entries the mailer read."""
    usage = RedisUsage()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        batch: list[str] = []

        def flush() -> None:
            pipe = client.pipeline(transaction=False)
            for key in batch:
                pipe.memory_usage(key, samples=0)
            for key, size in zip(batch, pipe.execute(), strict=True):
                kind = _kind(namespace, key)
                if kind == EVENTS_KIND:
                    usage.events_bytes += int(size or 0)
                    continue
                usage.by_kind[kind] += int(size or 0)
                usage.total_bytes += int(size or 0)
                usage.keys += 1
                if kind == "user":
                    usage.users += 1
            batch.clear()

        for key in client.scan_iter(match=f"{namespace}:*", count=1000):
            batch.append(str(key))
            if len(batch) >= 1000:
                flush()
        if batch:
            flush()
        stream = f"{namespace}:commands"
        usage.stream_length = int(client.xlen(stream))
        if usage.stream_length:
            for group in client.xinfo_groups(stream):
                usage.stream_pending += int(group["pending"])
        events = f"{namespace}:{EVENTS_KIND}"
        usage.events_length = int(client.xlen(events))
        if usage.events_length:
            for group in client.xinfo_groups(events):
                if group["name"] == f"{namespace}-mailer":
                    usage.mailer_read = int(group["entries-read"] or 0)
    finally:
        client.close()
    return usage


def delete_namespace(redis_url: str, namespace: str) -> int:
    client = redis.Redis.from_url(redis_url)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{namespace}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(client.unlink(*batch))
    finally:
        client.close()
    return deleted
