"""bcrypt hashing in a bounded thread pool, so the event loop never runs a hash and at most
``BCRYPT_THREADS`` hashes run at once."""

from __future__ import annotations

import anyio
import anyio.to_thread
import bcrypt


class PasswordHasher:
    def __init__(self, rounds: int, threads: int) -> None:
        self._rounds = rounds
        self._limiter = anyio.CapacityLimiter(threads)

    def _hash(self, password: str) -> str:
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(self._rounds)).decode()

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hash, password, limiter=self._limiter)

    async def verify(self, password: str, password_hash: str) -> bool:
        return await anyio.to_thread.run_sync(
            bcrypt.checkpw, password.encode(), password_hash.encode(), limiter=self._limiter
        )
