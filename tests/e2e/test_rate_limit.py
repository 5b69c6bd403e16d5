"""The signup rate limit is per client and shared by every web process."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from bench.procs import free_port
from tests.e2e.conftest import running_stack, wait_ready


def test_rate_limit_is_shared_by_two_web_processes(database_url: str, tmp_path: Path) -> None:
    settings = {"SIGNUP_RATE_LIMIT": "5", "SIGNUP_RATE_WINDOW_SECONDS": "60"}
    with running_stack(database_url, tmp_path, workers=1, settings=settings) as stack:
        second = free_port()
        stack.start("web.2", "web", second)
        wait_ready(f"http://127.0.0.1:{second}", stack.processes, within=30)
        webs = [stack.base_url, f"http://127.0.0.1:{second}"]
        statuses = []
        for i in range(8):
            body = {"name": "Rl", "email": f"{uuid.uuid4().hex}@x.org", "password": "pw123456"}
            response = httpx.post(f"{webs[i % 2]}/signup", json=body, timeout=30)
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["type"] == "/problems/rate-limited"
                assert 1 <= int(response.headers["retry-after"]) <= 60
        # Five signups in the window, counted across both processes; then 429 on either.
        assert statuses == [201] * 5 + [429] * 3
        # Other routes are not limited.
        assert httpx.get(f"{webs[1]}/health", timeout=5).status_code == 200
