"""The Redis read model: each user's JSON under ``Keys.user``, exactly the bytes
``GET /users/{id}`` answers with, so a read is one ``GET`` and no serialisation.

Postgres's ``users_read`` is the source of truth: a cache miss (or Redis being down) is
answered from it, and the cache is refilled when Redis is there.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import cast

import redis.asyncio as redis
from redis.exceptions import RedisError

from storage.keys import Keys
from storage.outcomes import user_json
from storage.users import PostgresUsers


async def read_user(
    client: redis.Redis, keys: Keys, users: PostgresUsers, user_id: uuid.UUID
) -> str | None:
    """The user's JSON document, or None when no user has this id."""
    key = keys.user(str(user_id))
    redis_up = True
    try:
        cached = cast(str | None, await client.get(key))
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
            await client.set(key, document)
    return document
