"""Rate limits in Redis, so every web process shares them: per client for ``POST /signup``
and the verification routes, per address for verification resends.

A fixed window: the first request of a client in a window creates a counter that expires
with the window; one Lua script increments and reads it, so concurrent requests on several
processes cannot both slip under the limit.
"""

from __future__ import annotations

import math

from api.problems import Problem
from storage.autopipeline import Commands
from storage.keys import Keys

_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return {n, redis.call('PTTL', KEYS[1])}
"""


class RateLimiter:
    def __init__(self, commands: Commands, keys: Keys, limit: int, window_seconds: int) -> None:
        self._commands = commands
        self._keys = keys
        self._limit = limit
        self._window_ms = window_seconds * 1000

    @property
    def enabled(self) -> bool:
        return self._limit > 0

    async def _hit(self, action: str, client_id: str) -> tuple[int, int]:
        count, ttl_ms = await self._commands.script(
            _HIT, [self._keys.rate(action, client_id)], [self._window_ms]
        )
        return int(count), int(ttl_ms)

    async def allow(self, action: str, client_id: str) -> bool:
        """Count one request; False past the limit (for callers that must not say so)."""
        if not self.enabled:
            return True
        count, _ = await self._hit(action, client_id)
        return count <= self._limit

    async def check(self, action: str, client_id: str) -> None:
        """Count one request; raise a 429 problem with Retry-After past the limit."""
        if not self.enabled:
            return
        count, ttl_ms = await self._hit(action, client_id)
        if count > self._limit:
            retry_after = max(1, math.ceil(int(ttl_ms) / 1000))
            raise Problem(
                429,
                "rate-limited",
                "Too many requests",
                f"At most {self._limit} requests of this kind per {self._window_ms // 1000} s "
                "from one client; try again later.",
                headers={"Retry-After": str(retry_after)},
            )
