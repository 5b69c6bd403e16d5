"""The README's "Try it" examples, run verbatim (only the host and port are changed)
against the real processes, and compared with the answers the README shows."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import orjson

from tests.e2e.conftest import ROOT, Stack, running_stack
from tests.e2e.faults import private_redis

FENCE = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def try_it_blocks() -> list[tuple[str, str | None]]:
    """(shell block, the http block right after it or None), in README order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Try it", 1)[1].split("\n## ", 1)[0]
    blocks = [(m.group(1), m.group(2)) for m in FENCE.finditer(section)]
    pairs: list[tuple[str, str | None]] = []
    for i, (lang, body) in enumerate(blocks):
        if lang == "sh":
            following = blocks[i + 1] if i + 1 < len(blocks) else None
            pairs.append((body, following[1] if following and following[0] == "http" else None))
    return pairs


def status_of(output: str) -> str:
    match = re.search(r"^HTTP/[\d.]+ (\d{3})", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def logged_token(stack: Stack, email: str, within: float = 15) -> str:
    """The token in the last verification message the mailer logged for ``email``, as the
    README tells a reader to copy it from ``make run``'s output."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for line in reversed(stack.logs().splitlines()):
            if '"mail.logged"' in line and email in line:
                text = orjson.loads(line)["text"]
                found = re.search(r"/verify-email\?token=([A-Za-z0-9_.%-]+)", text)
                assert found, text
                return found.group(1)
        time.sleep(0.1)
    raise TimeoutError(f"no logged message for {email}")


def test_readme_examples_work_as_written(stack: Stack, tmp_path: Path) -> None:
    pairs = try_it_blocks()
    assert len(pairs) >= 5
    host = stack.base_url.removeprefix("http://")
    env = dict(os.environ)
    for shell, expected in pairs:
        script = shell.replace("localhost:5000", host)
        if "$TOKEN" in shell:
            env["TOKEN"] = logged_token(stack, "ann@example.com")
        done = subprocess.run(
            ["bash", "-eu", "-c", script],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
            env=env,
        )
        assert done.returncode == 0, (shell, done.stderr)
        output = done.stdout.replace("\r\n", "\n")
        assert output.strip(), shell
        if expected is None:
            continue
        assert status_of(output) == status_of(expected), (shell, output)
        head, _, body = output.partition("\n\n")
        headers = {line.lower().split(":", 1)[0]: line.lower() for line in head.splitlines()}
        exp_head, _, exp_body = expected.strip().partition("\n\n")
        for line in exp_head.splitlines()[1:]:
            name = line.lower().split(":", 1)[0]
            if name == "location":
                assert headers[name].startswith("location: /users/"), output
            else:
                assert headers.get(name) == line.lower(), (line, output)
        if exp_body.strip():
            assert orjson.loads(body).keys() == orjson.loads(exp_body).keys(), output
            if any(word in exp_body for word in ("email-taken", "invalid-token", "accepted")):
                assert orjson.loads(body) == orjson.loads(exp_body)
            if "email_verified" in exp_body:
                want = orjson.loads(exp_body)["email_verified"]
                assert orjson.loads(body)["email_verified"] is want, output


def consume_lines() -> list[str]:
    """The README's redis-cli lines for consuming the events stream, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("**Consume it from your own service**", 1)[1]
    block = FENCE.search(section)
    assert block is not None
    assert block.group(1) == "sh"
    return [line.split("  #")[0].strip() for line in block.group(2).splitlines() if line.strip()]


def test_readme_events_consumer_works_as_written(database_url: str, tmp_path: Path) -> None:
    """On a Redis of its own with the default namespace, as a reader would have it; only
    redis-cli's port is set (a wrapper first in PATH)."""
    lines = consume_lines()
    assert lines[0].startswith("redis-cli XGROUP CREATE signup:events")
    with (
        private_redis() as server,
        running_stack(
            database_url,
            tmp_path,
            redis_url=server.url,
            settings={"REDIS_NAMESPACE": "signup"},
        ) as stack,
    ):
        wrapper = tmp_path / "readme-bin" / "redis-cli"
        wrapper.parent.mkdir()
        real = shutil.which("redis-cli")
        assert real is not None
        wrapper.write_text(f'#!/bin/sh\nexec {real} -p {server.port} "$@"\n')
        wrapper.chmod(0o755)
        env = {**os.environ, "PATH": f"{wrapper.parent}:{os.environ['PATH']}"}

        def run(line: str) -> str:
            done = subprocess.run(
                ["bash", "-eu", "-c", line], capture_output=True, text=True, timeout=30, env=env
            )
            assert done.returncode == 0, (line, done.stderr)
            assert "ERR" not in done.stdout, (line, done.stdout)
            return done.stdout

        assert run(lines[0]).strip() == "OK"
        email = f"reader-{uuid.uuid4().hex[:8]}@example.com"
        body = {"name": "Rea Der", "email": email, "password": "reader-password"}
        assert httpx.post(f"{stack.base_url}/signup", json=body, timeout=30).status_code == 201
        read = run(lines[1])
        assert "user.signed_up.v1" in read
        assert email in read
        for line in lines[2:]:
            run(line)
