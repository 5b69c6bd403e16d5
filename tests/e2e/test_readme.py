"""The README's "Try it" examples, run verbatim (only the host and port are changed)
against the real processes, and compared with the answers the README shows."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import orjson

from tests.e2e.conftest import ROOT, Stack

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


def test_readme_examples_work_as_written(stack: Stack, tmp_path: Path) -> None:
    pairs = try_it_blocks()
    assert len(pairs) >= 5
    host = stack.base_url.removeprefix("http://")
    for shell, expected in pairs:
        script = shell.replace("localhost:5000", host)
        done = subprocess.run(
            ["bash", "-eu", "-c", script],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
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
            if "email-taken" in exp_body:
                assert orjson.loads(body) == orjson.loads(exp_body)
