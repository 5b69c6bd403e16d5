"""Postgres storage of users: the write model ``users`` and the read model ``users_read``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from domain.handlers import Verification
from domain.model import SignUp, User, VerifyEmail

# The statements below are built from these constants only (no input reaches a string:
# every value is a $n parameter), hence S608 is off for this file (pyproject.toml).
_COLUMNS = "id, name, email, display_name, created_at, version, email_verified_at"

# One statement writes both models, so they commit together. ON CONFLICT DO NOTHING
# covers both unique constraints: the id (a redelivered command) and the email (taken, also
# by an earlier command of the same batch, since rows are inserted in stream order).
_INSERT_BATCH = f"""
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
RETURNING {_COLUMNS}
"""

# The digest a verification token carries (domain.tokens.email_digest), computed here.
_DIGEST = "substring(sha256(convert_to(u.email, 'UTF8')) FROM 1 FOR 16)"

# Of the commands whose token still matches an unverified account, one per user wins (the
# first in stream order): a stale token ahead in the batch must not shadow a valid one.
# The condition is repeated in the UPDATE itself, so of two workers verifying one user at
# once, the second finds it verified (READ COMMITTED re-checks the updated row).
_VERIFY_BATCH = f"""
WITH input AS (
    SELECT DISTINCT ON (t.user_id) t.command_id, t.user_id, t.digest
    FROM unnest($1::uuid[], $2::uuid[], $3::bytea[])
        WITH ORDINALITY AS t(command_id, user_id, digest, ord)
    JOIN users u ON u.id = t.user_id AND u.email_verified_at IS NULL AND {_DIGEST} = t.digest
    ORDER BY t.user_id, t.ord
), changed AS (
    UPDATE users u
    SET email_verified_at = now(), version = u.version + 1, updated_at = now()
    FROM input i
    WHERE u.id = i.user_id AND u.email_verified_at IS NULL AND {_DIGEST} = i.digest
    RETURNING u.id, u.version, u.email_verified_at, i.command_id
), read_side AS (
    UPDATE users_read r
    SET email_verified_at = c.email_verified_at, version = c.version
    FROM changed c
    WHERE r.id = c.id
)
INSERT INTO applied_commands (command_id, user_id, version)
SELECT command_id, id, version FROM changed
"""

# After the update, in the same transaction: each command's user if its address still
# matches, and whether the command is on record as the one that changed it.
_VERIFIED = f"""
SELECT i.command_id, a.command_id IS NOT NULL AS by_this_command,
       r.id, r.name, r.email, r.display_name, r.created_at, r.version, r.email_verified_at
FROM unnest($1::uuid[], $2::uuid[], $3::bytea[]) AS i(command_id, user_id, digest)
JOIN users u ON u.id = i.user_id AND {_DIGEST} = i.digest
JOIN users_read r ON r.id = i.user_id
LEFT JOIN applied_commands a ON a.command_id = i.command_id
"""

_SELECT_MANY = f"SELECT {_COLUMNS} FROM users_read WHERE id = ANY($1::uuid[])"
_SELECT_BY_EMAILS = f"SELECT {_COLUMNS} FROM users_read WHERE email = ANY($1::text[])"
SELECT_ALL = f"SELECT {_COLUMNS} FROM users_read ORDER BY id"
_SELECT_ONE = f"SELECT {_COLUMNS} FROM users_read WHERE id = $1"


def user_from_row(row: asyncpg.Record) -> User:
    return User(
        id=row["id"],
        name=row["name"],
        email=row["email"],
        display_name=row["display_name"],
        created_at=row["created_at"],
        version=row["version"],
        email_verified_at=row["email_verified_at"],
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

    async def verify_many(self, commands: Sequence[VerifyEmail]) -> dict[uuid.UUID, Verification]:
        args = (
            [c.command_id for c in commands],
            [c.user_id for c in commands],
            [bytes.fromhex(c.email_digest) for c in commands],
        )
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_VERIFY_BATCH, *args)
            rows = await conn.fetch(_VERIFIED, *args)
        return {
            row["command_id"]: Verification(user_from_row(row), row["by_this_command"])
            for row in rows
        }

    async def find_by_emails(self, emails: Sequence[str]) -> dict[str, User]:
        rows = await self._pool.fetch(_SELECT_BY_EMAILS, list(emails))
        return {row["email"]: user_from_row(row) for row in rows}

    async def get(self, user_id: uuid.UUID) -> User | None:
        row = await self._pool.fetchrow(_SELECT_ONE, user_id)
        return None if row is None else user_from_row(row)
