"""Over HTTP against the real web and worker processes."""

from __future__ import annotations

import signal
import uuid
from concurrent.futures import ThreadPoolExecutor

import anyio
import asyncpg
import httpx
import pytest

from bench.procs import free_port
from storage.keys import Keys
from tests.e2e.conftest import Stack
from tests.e2e.secrets import leaks, redis_values
from tests.redis_typed import add_sync, entries_sync

PASSWORD = "plaintext-sentinel-Zq9"  # searched for in Redis and the logs afterwards


def payload(email: str | None = None) -> dict[str, str]:
    return {
        "name": "Ann Example",
        "email": email or f"{uuid.uuid4().hex}@Example.com",
        "password": PASSWORD,
    }


def count_users(stack: Stack, email: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(stack.database_url)
        try:
            n: int = await conn.fetchval("SELECT count(*) FROM users WHERE email = $1", email)
            return n
        finally:
            await conn.close()

    return anyio.run(count)


def test_signup_then_read(http: httpx.Client) -> None:
    created = http.post("/signup", json=payload())
    assert created.status_code == 201, created.text
    user = created.json()
    assert set(user) == {
        "id",
        "name",
        "email",
        "display_name",
        "created_at",
        "email_verified",
        "email_verified_at",
        "version",
    }
    assert (user["email_verified"], user["email_verified_at"], user["version"]) == (False, None, 1)
    read = http.get(created.headers["location"])
    assert read.status_code == 200
    assert read.json() == user


def test_duplicate_email_any_case_is_409(http: httpx.Client) -> None:
    local = uuid.uuid4().hex
    assert http.post("/signup", json=payload(f"{local}@example.com")).status_code == 201
    dup = http.post("/signup", json=payload(f"{local.upper()}@Example.COM"))
    assert dup.status_code == 409
    assert dup.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"name": "A", "email": "x", "password": "short"}', "application/json", 422),
        (b'{"name": "A",', "application/json", 400),
        (b"{" + b" " * (64 * 1024) + b"}", "application/json", 413),
        (b"name=A", "text/plain", 415),
    ],
)
def test_bad_input(http: httpx.Client, content: bytes, content_type: str, status: int) -> None:
    response = http.post("/signup", content=content, headers={"content-type": content_type})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


def test_idempotent_replay_and_reuse(http: httpx.Client) -> None:
    body = payload()
    key = {"Idempotency-Key": f"e2e-{uuid.uuid4()}"}
    first = http.post("/signup", json=body, headers=key)
    replay = http.post("/signup", json=body, headers=key)
    assert first.status_code == replay.status_code == 201
    assert replay.content == first.content
    assert replay.headers["idempotent-replayed"] == "true"
    reused = http.post("/signup", json={**body, "name": "Other"}, headers=key)
    assert reused.status_code == 422


def test_fifty_concurrent_requests_with_one_key(stack: Stack, http: httpx.Client) -> None:
    body = payload()
    key = {"Idempotency-Key": f"race-{uuid.uuid4()}"}
    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(
            pool.map(lambda _: http.post("/signup", json=body, headers=key), range(50))
        )
    statuses = [r.status_code for r in responses]
    fresh_201 = [
        r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers
    ]
    assert len(fresh_201) == 1, statuses
    assert set(statuses) <= {201, 409}, statuses
    for r in responses:
        if r.status_code == 201:
            assert r.content == fresh_201[0].content
        else:
            assert r.json()["type"] == "/problems/request-in-flight"
    assert count_users(stack, body["email"].lower()) == 1


def test_redelivered_command_creates_one_user(stack: Stack, http: httpx.Client) -> None:
    body = payload()
    assert http.post("/signup", json=body).status_code == 201
    keys = Keys(stack.namespace)
    r = stack.redis()
    try:
        [fields] = [
            f for _, f in entries_sync(r, keys.commands) if f.get("email") == body["email"].lower()
        ]
        add_sync(r, keys.commands, fields)
        anyio.run(_until_acked, stack)
    finally:
        r.close()
    assert count_users(stack, body["email"].lower()) == 1


async def _until_acked(stack: Stack) -> None:
    keys = Keys(stack.namespace)
    client = stack.redis()
    try:
        with anyio.fail_after(10):
            while True:
                group = client.xinfo_groups(keys.commands)[0]
                if group["pending"] == 0 and group["lag"] == 0:
                    return
                await anyio.sleep(0.05)
    finally:
        client.close()


def test_worker_exits_cleanly_on_sigterm(stack: Stack) -> None:
    stack.start("worker.9", "worker", free_port())
    anyio.run(anyio.sleep, 1.5)
    assert stack.stop("worker.9", signal.SIGTERM, within=5) == 0


def test_no_plaintext_password_in_redis_or_logs(stack: Stack, http: httpx.Client) -> None:
    # Make sure at least one signup of this run went through before scanning.
    assert http.post("/signup", json=payload()).status_code == 201
    values = redis_values(stack)
    assert Keys(stack.namespace).commands in values  # the scan saw the stream
    assert leaks(stack, [PASSWORD]) == []
    logs = stack.logs()
    assert "command.applied" in logs
    assert "command.enqueued" in logs
    assert "$2b$" not in logs  # no bcrypt hash either
