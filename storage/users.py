"""Postgres storage of users: the write model ``users`` and the read model ``users_read``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from domain.model import SignUp, User

# One statement writes both models, so they commit together. ON CONFLICT DO NOTHING
# covers both unique constraints: the id (a redelivered command) and the email (taken, also
# by an earlier command of the same batch, since rows are inserted in stream order).
_INSERT_BATCH = """
WITH input AS (
    SELECT *
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
        WITH ORDINALITY AS t(id, name, email, display_name, password_hash, ord)
), written AS (
    INSERT INTO users (id, name, email, password_hash)
    SELECT id, name, email, password_hash FROM input ORDER BY ord
    ON CONFLICT DO NOTHING
    RETURNING id, name, email, created_at
)
INSERT INTO users_read (id, name, email, display_name, created_at)
SELECT w.id, w.name, w.email, i.display_name, w.created_at
FROM written w JOIN input i USING (id)
RETURNING id, name, email, display_name, created_at
"""

_SELECT_MANY = """
SELECT id, name, email, display_name, created_at FROM users_read WHERE id = ANY($1::uuid[])
"""

SELECT_ALL = """
SELECT id, name, email, display_name, created_at FROM users_read ORDER BY id
"""

_SELECT_ONE = """
SELECT id, name, email, display_name, created_at FROM users_read WHERE id = $1
"""


def user_from_row(row: asyncpg.Record) -> User:
    return User(
        id=row["id"],
        name=row["name"],
        email=row["email"],
        display_name=row["display_name"],
        created_at=row["created_at"],
    )


class PostgresUsers:
    """The asyncpg implementation of ``domain.handlers.UserStore``, plus the read query."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add_many(self, commands: Sequence[SignUp]) -> dict[uuid.UUID, User]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                _INSERT_BATCH,
                [c.user_id for c in commands],
                [c.name for c in commands],
                [c.email for c in commands],
                [c.display_name for c in commands],
                [c.password_hash for c in commands],
            )
            users = {row["id"]: user_from_row(row) for row in rows}
            # Users not created now either exist from an earlier delivery of the same
            # command, or lost their email to another account.
            missing = [c.user_id for c in commands if c.user_id not in users]
            if missing:
                for row in await conn.fetch(_SELECT_MANY, missing):
                    users[row["id"]] = user_from_row(row)
        return users

    async def get(self, user_id: uuid.UUID) -> User | None:
        row = await self._pool.fetchrow(_SELECT_ONE, user_id)
        return None if row is None else user_from_row(row)
