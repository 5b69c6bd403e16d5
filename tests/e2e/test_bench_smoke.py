"""The benchmark's smoke mode runs end to end, so ``python -m bench`` cannot silently rot.

No timing is asserted: only that every scenario produced numbers for the service and the
baseline, and that the Redis accounting was printed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The scenarios, named as the bench's table names them.
SCENARIOS = (
    "signup cost 4, c32",
    "signup cost 4, c128",
    "signup cost 12, c8",
    "read (cache hits), c32",
    "mixed 90% read / 10% signup, c32",
)


def _rows(stdout: str) -> list[list[str]]:
    rows = []
    for line in stdout.splitlines():
        if line.startswith("|") and not line.startswith("|-"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _rps(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        return 0.0


@pytest.mark.timeout(300)
def test_bench_smoke_prints_every_scenario_for_service_and_baseline() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-5000:]
    rows = _rows(done.stdout)
    assert rows, done.stdout
    header, body = rows[0], rows[1:]
    assert header[:3] == ["scenario", "layout", "req/s"]
    for scenario in SCENARIOS:
        mine = [row for row in body if row[0] == scenario]
        baseline = [row for row in mine if row[1].startswith("baseline")]
        service = [row for row in mine if row[1].startswith("service")]
        assert baseline, f"no baseline row for {scenario!r}:\n{done.stdout}"
        assert service, f"no service row for {scenario!r}:\n{done.stdout}"
        for row in baseline + service:
            assert _rps(row[2]) > 0, f"no throughput in {row}"
    assert re.search(r"^Redis memory per user: \d+ bytes", done.stdout, re.MULTILINE), done.stdout
    assert re.search(r"^commands stream length: \d+", done.stdout, re.MULTILINE), done.stdout
