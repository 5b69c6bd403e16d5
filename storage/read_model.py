"""The Redis read model: each user's JSON under ``Keys.user``, exactly the bytes
``GET /users/{id}`` answers with, so a read is one ``GET`` and no serialisation.

Reads go through the web's auto-pipelined connection (``storage.autopipeline``).
Postgres's ``users_read`` is the source of truth: a cache miss (or Redis being down) is
answered from it, and the cache is refilled when Redis is there.
"""

from __future__ import annotations

import contextlib
import uuid

import asyncpg
import redis.asyncio as redis
from redis.exceptions import RedisError

from domain.model import User
from storage.autopipeline import Commands
from storage.keys import Keys
from storage.outcomes import user_json
from storage.users import SELECT_ALL, PostgresUsers, user_from_row


async def read_user(
    commands: Commands, keys: Keys, users: PostgresUsers, user_id: uuid.UUID
) -> str | None:
    """The user's JSON document, or None when no user has this id."""
    key = keys.user(str(user_id))
    redis_up = True
    try:
        cached: str | None = await commands.execute("GET", key)
    except RedisError:
        cached, redis_up = None, False
    if cached is not None:
        return cached
    user = await users.get(user_id)
    if user is None:
        return None
    document = user_json(user).decode()
    if redis_up:
        with contextlib.suppress(RedisError):
            await commands.execute("SET", key, document)
    return document


async def rebuild(client: redis.Redis, keys: Keys, pool: asyncpg.Pool, batch: int = 1000) -> int:
    """Write every user of ``users_read`` into the Redis read model (e.g. after Redis lost
    its data); returns how many. Safe while the service runs: the values are the same."""
    written = 0
    async with pool.acquire() as conn, conn.transaction():
        pending: list[User] = []
        async for row in conn.cursor(SELECT_ALL, prefetch=batch):
            pending.append(user_from_row(row))
            if len(pending) >= batch:
                written += await _write(client, keys, pending)
                pending = []
        written += await _write(client, keys, pending)
    return written


async def _write(client: redis.Redis, keys: Keys, users: list[User]) -> int:
    if users:
        async with client.pipeline(transaction=False) as pipe:
            for user in users:
                pipe.set(keys.user(str(user.id)), user_json(user))
            await pipe.execute()
    return len(users)
