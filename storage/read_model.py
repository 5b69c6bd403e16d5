"""The Redis read model: each user's JSON under ``Keys.user``, exactly the bytes
``GET /users/{id}`` answers with, so a read is one ``GET`` and no serialisation.

Every write is a compare-and-set on the document's ``version`` (``PUT_USER``, a Lua
function the settling script shares): a late, replayed or refilled write never overwrites
a newer document. Reads go through the web's auto-pipelined connection
(``storage.autopipeline``). Postgres's ``users_read`` is the source of truth: a cache miss
(or Redis being down) is answered from it, and the cache is refilled when Redis is there.
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

# put_user(key, version, document): 1 if written, 0 if the stored document is as new or
# newer. A document without a version (written before versions existed) is older.
PUT_USER = """
local function put_user(key, version, document)
  local current = redis.call('GET', key)
  if current then
    local ok, parsed = pcall(cjson.decode, current)
    if ok and type(parsed) == 'table' and tonumber(parsed['version'])
       and tonumber(parsed['version']) >= tonumber(version) then
      return 0
    end
  end
  redis.call('SET', key, document)
  return 1
end
"""
# KEYS: the user's key. ARGV: version, document.
_PUT = PUT_USER + "return put_user(KEYS[1], ARGV[1], ARGV[2])\n"


async def put_user(commands: Commands, keys: Keys, user: User) -> bool:
    written = await commands.script(
        _PUT, [keys.user(str(user.id))], [user.version, user_json(user)]
    )
    return bool(written)


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
    if redis_up:
        with contextlib.suppress(RedisError):
            await put_user(commands, keys, user)
    return user_json(user).decode()


async def rebuild(client: redis.Redis, keys: Keys, pool: asyncpg.Pool, batch: int = 1000) -> int:
    """Write every user of ``users_read`` into the Redis read model (e.g. after Redis lost
    its data); returns how many. Safe while the service runs: each write is a
    compare-and-set, so a document the workers moved on meanwhile is left alone."""
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
        script = client.register_script(_PUT)
        async with client.pipeline(transaction=False) as pipe:
            for user in users:
                await script(
                    keys=[keys.user(str(user.id))],
                    args=[user.version, user_json(user)],
                    client=pipe,
                )
            await pipe.execute()
    return len(users)
