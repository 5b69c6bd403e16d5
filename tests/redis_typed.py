"""Typed views of the few Redis replies tests read (redis-py's stubs type every reply as
bytes-or-str-or-None; these clients use ``decode_responses=True``)."""

from __future__ import annotations

from typing import Any, cast

import orjson
import redis
import redis.asyncio as aredis

Entry = tuple[str, dict[str, str]]


async def entries(client: aredis.Redis, stream: str, *, newest_first: bool = False) -> list[Entry]:
    reply = await (client.xrevrange(stream) if newest_first else client.xrange(stream))
    return cast(list[Entry], reply)


async def add(client: aredis.Redis, stream: str, fields: dict[str, str]) -> str:
    return cast(str, await client.xadd(stream, cast(Any, fields)))


async def get_json(client: aredis.Redis, key: str) -> Any:
    value = await client.get(key)
    assert value is not None, f"no key {key}"
    return orjson.loads(value)


def entries_sync(client: redis.Redis, stream: str) -> list[Entry]:
    return cast(list[Entry], client.xrange(stream))


def add_sync(client: redis.Redis, stream: str, fields: dict[str, str]) -> str:
    return cast(str, client.xadd(stream, cast(Any, fields)))
