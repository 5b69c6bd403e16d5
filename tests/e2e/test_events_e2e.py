"""The events stream under a race: one entry, two workers, one event."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from storage.keys import Keys
from tests.e2e.conftest import running_stack
from tests.e2e.faults import _wait, users_by_email, wait_drained
from tests.redis_typed import entries_sync

pytestmark = pytest.mark.timeout(120)

HOLD_SECONDS = 4


def test_a_reclaimed_entry_processed_by_two_workers_makes_one_user_and_one_event(
    database_url: str, tmp_path: Path
) -> None:
    settings = {"WORKER_CLAIM_IDLE_MS": "1000", "REPLY_TIMEOUT_SECONDS": "1"}
    with running_stack(database_url, tmp_path, workers=2, settings=settings) as stack:
        keys = Keys(stack.namespace)
        client = stack.redis()
        # Hold the users table: whichever worker reads the signup waits inside Postgres,
        # its entry pending, until the lock goes. Meanwhile that worker is frozen.
        holder = subprocess.Popen(
            [
                "psql",
                database_url,
                "-c",
                f"BEGIN; LOCK TABLE users IN SHARE MODE; SELECT pg_sleep({HOLD_SECONDS}); COMMIT;",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        frozen = ""
        try:
            time.sleep(0.5)  # the lock is taken
            email = f"race-{uuid.uuid4().hex[:8]}@example.com"
            body = {"name": "Race", "email": email, "password": "race-password"}
            answer = httpx.post(f"{stack.base_url}/signup", json=body, timeout=30)
            assert answer.status_code == 202  # the worker is stuck behind the lock

            def holder_known() -> bool:
                nonlocal frozen
                pending = client.xpending_range(keys.commands, keys.group, "-", "+", 10)
                frozen = str(pending[0]["consumer"]) if pending else ""
                return bool(frozen)

            _wait(holder_known, 5, "the entry delivered")
            stack.processes[frozen].send_signal(signal.SIGSTOP)

            def reclaimed() -> bool:
                pending = client.xpending_range(keys.commands, keys.group, "-", "+", 10)
                return not pending or str(pending[0]["consumer"]) != frozen

            _wait(reclaimed, 10, "the entry reclaimed by the other worker")
            holder.wait(timeout=HOLD_SECONDS + 5)
            wait_drained(client, keys.commands, keys.group, within=20)
        finally:
            if frozen:
                stack.processes[frozen].send_signal(signal.SIGCONT)
            holder.kill()
            holder.wait()
        command_id = answer.json()["command_id"]

        def both_applied() -> bool:
            return len(_applied_lines(stack.logs(), command_id)) == 2

        _wait(both_applied, 15, "both workers applied the command")
        lines = _applied_lines(stack.logs(), command_id)
        assert sorted(line["events"] for line in lines) == [0, 1]  # one appended, one not
        assert users_by_email(database_url, [email]) == {email: 1}
        outcome = json.loads(str(client.get(keys.command(command_id))))
        assert outcome["status"] == "succeeded"
        events = [
            f for _, f in entries_sync(client, keys.events) if f["user_id"] == outcome["user_id"]
        ]
        assert [f["type"] for f in events] == ["user.signed_up.v1"]
        assert events[0]["command_id"] == command_id
        client.close()


def _applied_lines(logs: str, command_id: str) -> list[dict[str, Any]]:
    found = []
    for text in logs.splitlines():
        if command_id in text and '"command.applied"' in text:
            found.append(json.loads(text))
    return found
