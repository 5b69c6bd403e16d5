"""Versioned SQL migrations, applied in file-name order; safe to run again and from several
processes at once (an advisory lock serialises them).

    python -m storage.migrate
"""

from __future__ import annotations

import sys
from importlib import resources

import anyio
import asyncpg

from settings import load_settings
from storage.connections import DependencyUnavailable, connect_postgres

# Any fixed number works; it only has to be the same for every migrating process.
_LOCK_ID = 0x5167_6E75_70


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("storage") / "migrations"
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name.removesuffix(".sql"), p.read_text(encoding="utf-8")) for p in files]


async def apply_migrations(pool: asyncpg.Pool) -> list[str]:
    """Apply every migration not yet recorded; return the versions applied now."""
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, sql in migration_files():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES ($1)", version
                    )
                applied_now.append(version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    return applied_now


async def _main() -> int:
    settings = load_settings()
    try:
        pool = await connect_postgres(settings.database_url, min_size=1, max_size=1)
    except DependencyUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        applied = await apply_migrations(pool)
    finally:
        await pool.close()
    print(f"migrations applied: {', '.join(applied)}" if applied else "migrations: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(_main))
