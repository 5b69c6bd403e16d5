"""The real processes, started from the Procfile's own lines, on a free port, against this
session's database and a Redis namespace of their own."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from bench.procs import free_port, procfile
from tests.conftest import TEST_REDIS_URL

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    """web.1 and worker.1..N running as separate processes, as honcho would run them."""

    base_url: str
    namespace: str
    database_url: str
    log_dir: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def start(self, name: str, kind: str, port: int) -> None:
        env = {**self.env, "PORT": str(port), "HONCHO_PROCESS_NAME": name}
        self.ports[name] = port
        # The child keeps its own descriptor; the parent's copy is closed at once.
        with (self.log_dir / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                ["bash", "-c", f"exec {procfile()[kind]}"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, name: str, sig: int = signal.SIGTERM, within: float = 10) -> int:
        process = self.processes.pop(name)
        process.send_signal(sig)
        try:
            return process.wait(within)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.env["REDIS_URL"], decode_responses=True)


def wait_ready(url: str, processes: dict[str, subprocess.Popen[bytes]], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for name, p in processes.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode} during start-up")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {within}s")


@contextmanager
def running_stack(
    database_url: str,
    log_dir: Path,
    *,
    redis_url: str = TEST_REDIS_URL,
    workers: int = 2,
    mailers: int = 0,
    settings: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """web.1, worker.1..N and mailer.1..M from the Procfile, on free ports, in a namespace
    of their own (deleted afterwards); ``settings`` are extra environment variables."""
    namespace = f"e2e-{uuid.uuid4().hex[:12]}"
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_NAMESPACE": namespace,
        "BCRYPT_ROUNDS": "4",
        "LOG_JSON": "true",
        "LOG_LEVEL": "DEBUG",
        "WORKER_BLOCK_MS": "500",
        "PYTHONUNBUFFERED": "1",
        "SIGNUP_RATE_LIMIT": "0",  # the tests sign up many users from one address
        **(settings or {}),
    }
    s = Stack(f"http://127.0.0.1:{port}", namespace, database_url, log_dir, env)
    try:
        s.start("web.1", "web", port)
        for n in range(1, workers + 1):
            s.start(f"worker.{n}", "worker", free_port())
        for n in range(1, mailers + 1):
            s.start(f"mailer.{n}", "mailer", free_port())
        wait_ready(s.base_url, s.processes, within=30)
        yield s
    finally:
        for name in list(s.processes):
            s.stop(name)
        with contextlib.suppress(redis.RedisError):
            client = s.redis()
            keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()


@pytest.fixture(scope="session")
def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # With a mailer and no SMTP_URL, as `make run` has it: messages go to its log.
    with running_stack(database_url, tmp_path_factory.mktemp("e2e-logs"), mailers=1) as s:
        yield s


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        yield client
