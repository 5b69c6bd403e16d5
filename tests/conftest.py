"""Fixtures shared by the tiers: a private Postgres database per test session and a private
Redis namespace per test, both removed afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import asyncpg
import pytest
import redis

from settings import Settings
from storage.connections import connect_postgres
from storage.migrate import apply_migrations

ADMIN_DATABASE_URL = os.environ.get(
    "TEST_ADMIN_DATABASE_URL", "postgresql://root@127.0.0.1:5432/postgres"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

_TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The folder is the tier: `pytest -m "not e2e"` runs the fast ones.
    for item in items:
        tier = Path(str(item.path)).parent.name
        if tier in ("integration", "e2e"):
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _url_for(database: str) -> str:
    base, _, _ = ADMIN_DATABASE_URL.rpartition("/")
    return f"{base}/{database}"


async def _create_database(name: str) -> None:
    conn = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    pool = await connect_postgres(_url_for(name), min_size=1, max_size=1)
    try:
        await apply_migrations(pool)
    finally:
        await pool.close()


async def _drop_database(name: str) -> None:
    conn = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A migrated database of this test session's own, dropped at the end."""
    name = f"signup_test_{uuid.uuid4().hex[:12]}"
    anyio.run(_create_database, name)
    try:
        yield _url_for(name)
    finally:
        anyio.run(_drop_database, name)


@pytest.fixture
def namespace() -> Iterator[str]:
    """A Redis namespace of this test's own; every key under it is deleted afterwards."""
    ns = f"test-{uuid.uuid4().hex[:12]}"
    yield ns
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{ns}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def settings(database_url: str, namespace: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=TEST_REDIS_URL,
        redis_namespace=namespace,
        bcrypt_rounds=4,
        reply_timeout_seconds=5.0,
        worker_block_ms=100,
        worker_name="test-worker",
        db_pool_max=4,
        signup_rate_limit=0,  # tests sign up many users from one address
    )
