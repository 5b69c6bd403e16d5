"""Private Redis and Postgres servers that a test may stop and start, and a load driver.

The servers listen on free loopback ports, keep their data in a temporary directory, and
are removed when the test ends. Postgres refuses to run as root, so as root its cluster is
made and run by the ``postgres`` user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import asyncpg
import httpx
import redis

from bench.procs import free_port
from tests.e2e.conftest import ROOT
from tests.redis_typed import entries_sync

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _wait(check: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception:  # noqa: S110 - not up yet; try again until the deadline
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} not reached within {within}s")


class PrivateRedis:
    """redis-server with AOF (fsync always), so a stop/start keeps every acked write."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--maxmemory-policy",
                "noeviction",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            _wait(client.ping, 10, "redis up")
        finally:
            client.close()

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()  # SIGTERM: Redis fsyncs the AOF and exits
        self.process.wait(10)
        self.process = None


class PrivatePostgres:
    def __init__(self) -> None:
        self.port = free_port()
        # Not under pytest's tmp dir: its parents are private to root, and the server runs
        # as `postgres`.
        self.directory = Path(tempfile.mkdtemp(prefix="signup-pg-"))
        self.data = self.directory / "data"
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/signup"

    def _run(self, *args: str) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()

        async def create() -> None:
            conn = await asyncpg.connect(self.url.replace("/signup", "/postgres"))
            try:
                await conn.execute("CREATE DATABASE signup")
            finally:
                await conn.close()

        anyio.run(create)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory}"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    directory = Path(tempfile.mkdtemp(prefix="signup-redis-"))
    server = PrivateRedis(directory)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.process.kill()
            server.process.wait()
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.init()
        subprocess.run(
            [sys.executable, "-m", "storage.migrate"],
            env={**os.environ, "DATABASE_URL": server.url},
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield server
    finally:
        server.remove()


@dataclass
class Load:
    """Signups sent concurrently in a background thread; every answer is recorded."""

    base_url: str
    total: int
    concurrency: int
    results: list[tuple[str, int, float]] = field(default_factory=list)  # email, status, s
    _thread: threading.Thread | None = None

    @property
    def done(self) -> int:
        return len(self.results)

    def start(self) -> None:
        self._thread = threading.Thread(target=anyio.run, args=(self._run,), daemon=True)
        self._thread.start()

    def wait_for(self, answered: int, within: float = 60) -> None:
        _wait(lambda: self.done >= answered, within, f"{answered} answers")

    def join(self, within: float = 120) -> None:
        assert self._thread is not None
        self._thread.join(within)
        assert not self._thread.is_alive(), "load did not finish"

    async def _run(self) -> None:
        run = uuid.uuid4().hex[:8]
        emails = iter(f"load-{run}-{i}@example.com" for i in range(self.total))
        limits = httpx.Limits(max_connections=self.concurrency)
        async with (
            httpx.AsyncClient(base_url=self.base_url, timeout=30, limits=limits) as client,
            anyio.create_task_group() as tg,
        ):

            async def one_by_one() -> None:
                for email in emails:
                    body = {"name": "Load", "email": email, "password": "load-password"}
                    started = time.monotonic()
                    try:
                        status = (await client.post("/signup", json=body)).status_code
                    except httpx.HTTPError:
                        status = 0
                    self.results.append((email, status, time.monotonic() - started))

            for _ in range(self.concurrency):
                tg.start_soon(one_by_one)

    def accepted(self) -> list[str]:
        """Emails whose signup the service took on (201 or 202)."""
        return [email for email, status, _ in self.results if status in (201, 202)]

    def statuses(self) -> set[int]:
        return {status for _, status, _ in self.results}


def users_by_email(database_url: str, emails: list[str]) -> dict[str, int]:
    async def query() -> dict[str, int]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT email, count(*) AS n FROM users WHERE email = ANY($1) GROUP BY email",
                emails,
            )
        finally:
            await conn.close()
        return {r["email"]: r["n"] for r in rows}

    return anyio.run(query)


def wait_drained(client: redis.Redis, stream: str, group: str, within: float = 60) -> None:
    """Until the group has read everything and acked all it read."""

    def drained() -> bool:
        groups = client.xinfo_groups(stream)
        g = next(g for g in groups if g["name"] == group)
        return bool(g["pending"] == 0 and g["lag"] == 0)

    _wait(drained, within, "stream drained")


def dead_letters(client: redis.Redis, stream: str) -> int:
    return len(entries_sync(client, stream)) if client.exists(stream) else 0
