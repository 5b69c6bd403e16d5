"""``python -m storage.preflight``: can this machine reach Postgres and Redis?

Prints one line per unreachable service, naming its URL, and exits 1; silent and 0 when
both answer. The run command calls it first so a missing service is a sentence, not a
traceback.
"""

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


async def _main() -> int:
    settings = load_settings()
    failures: list[str] = []
    try:
        pool = await connect_postgres(settings.database_url, min_size=1, max_size=1)
        await pool.close()
    except DependencyUnavailable as exc:
        failures.append(str(exc))
    client = redis_client(settings.redis_url, max_connections=1, socket_timeout=5.0)
    try:
        await check_redis(client, settings.redis_url)
    except DependencyUnavailable as exc:
        failures.append(str(exc))
    finally:
        await client.aclose()
    for line in failures:
        print(line, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(anyio.run(_main))
