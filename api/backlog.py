"""Backpressure: when the workers fall behind, refuse new commands instead of piling them up.

The backlog is the consumer group's lag (entries not yet delivered) plus pending (delivered,
not acked). It is read with one ``XINFO GROUPS`` at most every ``REFRESH_SECONDS`` per web
process, not per request.
"""

from __future__ import annotations

import time

import redis.asyncio as redis
from redis.exceptions import ResponseError

from api.problems import unavailable
from storage.keys import Keys

REFRESH_SECONDS = 0.5


class Backlog:
    def __init__(self, client: redis.Redis, keys: Keys, limit: int) -> None:
        self._client = client
        self._keys = keys
        self._limit = limit
        self._value = 0
        self._read_at = float("-inf")

    async def size(self) -> int:
        now = time.monotonic()
        if now - self._read_at >= REFRESH_SECONDS:
            self._read_at = now
            try:
                groups = await self._client.xinfo_groups(self._keys.commands)
            except ResponseError:
                groups = []  # no stream yet: nothing is waiting
            group = next((g for g in groups if g["name"] == self._keys.group), None)
            self._value = 0 if group is None else int(group["lag"] or 0) + int(group["pending"])
        return self._value

    async def check(self) -> None:
        """Raise a 503 problem with Retry-After when the backlog is over the limit."""
        backlog = await self.size()
        if backlog > self._limit:
            raise unavailable(
                f"The workers are {backlog} commands behind; try again shortly.", retry_after=2
            )
