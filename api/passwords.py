"""bcrypt hashing in a bounded thread pool, so the event loop never runs a hash and at most
``BCRYPT_THREADS`` hashes run at once.

A plain ``ThreadPoolExecutor`` rather than ``anyio.to_thread``: the hand-off is on every
signup, and anyio's (capacity limiter, worker queue, cancellation bookkeeping) cost about
70 µs of event-loop time per hash in a profile. A hash, once started, runs to the end
either way; a cancelled caller just stops waiting for it.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import bcrypt


class PasswordHasher:
    def __init__(self, rounds: int, threads: int) -> None:
        self._rounds = rounds
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="bcrypt")

    def _hash(self, password: str) -> str:
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(self._rounds)).decode()

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._hash, password)

    async def verify(self, password: str, password_hash: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, bcrypt.checkpw, password.encode(), password_hash.encode()
        )

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
