"""PostgresUsers against the real Postgres: both models in one statement, conflicts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from domain.handlers import EMAIL_TAKEN, sign_up
from domain.ids import uuid7
from domain.model import Applied, Rejected, SignUp
from storage.connections import connect_postgres
from storage.migrate import apply_migrations
from storage.users import PostgresUsers

pytestmark = pytest.mark.anyio


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await connect_postgres(database_url, min_size=1, max_size=2)
    yield p
    await p.close()


def command(email: str, name: str = "Ann") -> SignUp:
    return SignUp(uuid7(), uuid7(), name, email, f"{name} D", "$2b$04$" + "x" * 53)


def email() -> str:
    return f"{uuid.uuid4().hex}@example.com"


async def test_batch_writes_both_models_once(pool: asyncpg.Pool) -> None:
    users = PostgresUsers(pool)
    a, b = command(email()), command(email(), "Bob")
    outcomes = await sign_up([a, b], users)
    assert [type(o) for o in outcomes] == [Applied, Applied]
    for c in (a, b):
        assert await pool.fetchval("SELECT count(*) FROM users WHERE id = $1", c.user_id) == 1
        row = await pool.fetchrow("SELECT * FROM users_read WHERE id = $1", c.user_id)
        assert row is not None
        assert (row["email"], row["display_name"]) == (c.email, c.display_name)


async def test_duplicate_email_fails_only_its_command(pool: asyncpg.Pool) -> None:
    shared = email()
    first, dup, other = command(shared), command(shared, "Eve"), command(email())
    outcomes = await sign_up([first, dup, other], PostgresUsers(pool))
    assert isinstance(outcomes[0], Applied)
    assert isinstance(outcomes[1], Rejected)
    assert outcomes[1].reason == EMAIL_TAKEN
    assert isinstance(outcomes[2], Applied)
    assert await pool.fetchval("SELECT count(*) FROM users WHERE email = $1", shared) == 1


async def test_redelivered_command_returns_original_user(pool: asyncpg.Pool) -> None:
    users = PostgresUsers(pool)
    c = command(email())
    [first] = await sign_up([c], users)
    [again] = await sign_up([c], users)
    assert isinstance(first, Applied)
    assert isinstance(again, Applied)
    assert again.user == first.user
    assert await pool.fetchval("SELECT count(*) FROM users WHERE id = $1", c.user_id) == 1


async def test_get_reads_the_read_model(pool: asyncpg.Pool) -> None:
    users = PostgresUsers(pool)
    c = command(email())
    await sign_up([c], users)
    user = await users.get(c.user_id)
    assert user is not None
    assert user.email == c.email
    assert await users.get(uuid7()) is None


async def test_migrations_are_safe_to_run_again(pool: asyncpg.Pool) -> None:
    assert await apply_migrations(pool) == []
    versions = await pool.fetch("SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in versions] == ["0001_users", "0002_versions_and_verification"]
