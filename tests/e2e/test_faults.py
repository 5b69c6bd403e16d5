"""Nothing lost, nothing doubled: crashes, shutdowns and outages under load, with the real
processes and private Redis/Postgres servers that the tests stop and start."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from storage.keys import Keys
from tests.e2e.conftest import Stack, running_stack
from tests.e2e.faults import (
    Load,
    dead_letters,
    private_postgres,
    private_redis,
    users_by_email,
    wait_drained,
)

pytestmark = pytest.mark.timeout(300)

# Reclaim quickly so a dead worker's entries move on within the test.
FAST_RECLAIM = {"WORKER_CLAIM_IDLE_MS": "1000", "REPLY_TIMEOUT_SECONDS": "3"}


def assert_each_accepted_signup_exists_once(stack: Stack, load: Load) -> None:
    accepted = load.accepted()
    assert accepted, "no signup was accepted"
    counts = users_by_email(stack.database_url, accepted)
    missing = [e for e in accepted if e not in counts]
    doubled = [e for e, n in counts.items() if n != 1]
    assert missing == [], f"{len(missing)} accepted signups are not in Postgres"
    assert doubled == []


def assert_settled(stack: Stack) -> None:
    keys = Keys(stack.namespace)
    client = stack.redis()
    try:
        wait_drained(client, keys.commands, keys.group)
        assert dead_letters(client, keys.deadletters) == 0
    finally:
        client.close()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path


def test_kill_9_a_worker_under_load(database_url: str, log_dir: Path) -> None:
    with running_stack(database_url, log_dir, settings=FAST_RECLAIM) as stack:
        load = Load(stack.base_url, total=1000, concurrency=32)
        load.start()
        load.wait_for(250)
        stack.stop("worker.1", signal.SIGKILL)
        load.join()
        assert load.statuses() <= {201, 202}, load.statuses()
        assert_settled(stack)
        assert_each_accepted_signup_exists_once(stack, load)
        assert len(load.accepted()) == 1000


def test_sigterm_a_worker_under_load(database_url: str, log_dir: Path) -> None:
    with running_stack(database_url, log_dir, settings=FAST_RECLAIM) as stack:
        load = Load(stack.base_url, total=600, concurrency=32)
        load.start()
        load.wait_for(150)
        started = time.monotonic()
        code = stack.stop("worker.1", signal.SIGTERM, within=10)
        took = time.monotonic() - started
        assert code == 0
        assert took < 5, f"worker took {took:.1f}s to stop (grace is 4s)"
        load.join()
        assert load.statuses() <= {201, 202}
        assert_settled(stack)
        assert_each_accepted_signup_exists_once(stack, load)


def test_redis_outage_answers_503_and_recovers(database_url: str, log_dir: Path) -> None:
    with (
        private_redis() as server,
        running_stack(database_url, log_dir, redis_url=server.url, settings=FAST_RECLAIM) as stack,
    ):
        load = Load(stack.base_url, total=800, concurrency=16)
        load.start()
        load.wait_for(100)
        server.stop()
        time.sleep(5)
        server.start()
        load.join()
        statuses = load.statuses()
        assert 503 in statuses, statuses
        assert statuses <= {201, 202, 503}, statuses
        # No request hung: the slowest waited about a reply timeout plus Redis's retries.
        assert max(seconds for _, _, seconds in load.results) < 10
        # Recovered without restarting anything: a new signup goes through.
        for name, process in stack.processes.items():
            assert process.poll() is None, f"{name} died"
        fresh = httpx.post(
            f"{stack.base_url}/signup",
            json={"name": "After", "email": f"{uuid.uuid4().hex}@x.org", "password": "pw123456"},
            timeout=30,
        )
        assert fresh.status_code == 201
        assert_settled(stack)
        assert_each_accepted_signup_exists_once(stack, load)


def test_postgres_outage_loses_nothing(log_dir: Path) -> None:
    with (
        private_postgres() as server,
        running_stack(server.url, log_dir, settings=FAST_RECLAIM) as stack,
    ):
        load = Load(stack.base_url, total=800, concurrency=16)
        load.start()
        load.wait_for(100)
        server.stop()
        not_ready = httpx.get(f"{stack.base_url}/ready", timeout=10)
        time.sleep(5)
        server.start()
        load.join()
        assert not_ready.status_code == 503
        assert not_ready.json()["checks"]["postgres"]["ok"] is False
        assert load.statuses() <= {201, 202}, load.statuses()
        assert 202 in load.statuses()  # some waited past the reply timeout
        assert_settled(stack)
        assert_each_accepted_signup_exists_once(stack, load)
        assert httpx.get(f"{stack.base_url}/ready", timeout=10).status_code == 200


def test_malformed_entry_from_redis_cli_is_dead_lettered(stack: Stack, http: httpx.Client) -> None:
    keys = Keys(stack.namespace)
    subprocess.run(
        [
            "redis-cli",
            "-u",
            stack.env["REDIS_URL"],
            "XADD",
            keys.commands,
            "*",
            "type",
            "signup.v1",
            "note",
            "typed by hand",
        ],
        check=True,
        capture_output=True,
    )
    client = stack.redis()
    try:
        wait_drained(client, keys.commands, keys.group)
        assert dead_letters(client, keys.deadletters) >= 1
    finally:
        client.close()
    signup = {"name": "Next", "email": f"{uuid.uuid4().hex}@x.org", "password": "pw123456"}
    assert http.post("/signup", json=signup).status_code == 201


@pytest.fixture
def trimming_stack(database_url: str, log_dir: Path) -> Iterator[Stack]:
    with running_stack(
        database_url,
        log_dir,
        settings={"STREAM_KEEP_ENTRIES": "1000", "STREAM_TRIM_INTERVAL_SECONDS": "0.5"},
    ) as stack:
        yield stack


def test_stream_is_trimmed_after_10000_signups(trimming_stack: Stack) -> None:
    stack = trimming_stack
    load = Load(stack.base_url, total=10_000, concurrency=64)
    load.start()
    load.join(within=280)
    assert load.statuses() <= {201, 202}
    keys = Keys(stack.namespace)
    client = stack.redis()
    try:
        wait_drained(client, keys.commands, keys.group)
        time.sleep(1.5)  # a trim period or two after the last ack
        length = client.xlen(keys.commands)
    finally:
        client.close()
    # The README's bound: STREAM_KEEP_ENTRIES plus at most one stream node (100 entries).
    assert length <= 1100, length
    assert_each_accepted_signup_exists_once(stack, load)
