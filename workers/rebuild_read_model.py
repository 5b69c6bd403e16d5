"""``python -m workers.rebuild_read_model``: refill the Redis read model from ``users_read``
(after Redis lost its data, or to warm a new Redis). Reads stay correct without it, since a
cache miss is answered from Postgres, but each miss costs a query until then."""

from __future__ import annotations

import sys

import anyio

from settings import load_settings
from storage.connections import (
    DependencyUnavailable,
    check_redis,
    connect_postgres,
    redis_client,
)
from storage.keys import Keys
from storage.read_model import rebuild


async def main() -> int:
    settings = load_settings()
    client = redis_client(settings.redis_url, max_connections=2, socket_timeout=10.0)
    try:
        await check_redis(client, settings.redis_url)
        pool = await connect_postgres(settings.database_url, min_size=1, max_size=1)
        try:
            written = await rebuild(client, Keys(settings.redis_namespace), pool)
        finally:
            await pool.close()
    except DependencyUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        await client.aclose()
    print(f"read model rebuilt: {written} users")
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
