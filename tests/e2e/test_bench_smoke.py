"""The benchmark's smoke mode runs end to end, so ``python -m bench`` cannot silently rot.

No timing is asserted: only that every scenario produced numbers for the service and the
baseline, the signups at cost 4 also for the service without its mailer, and that the
events + mailer share, the Redis accounting (per user, per retained event) and the
verdicts on them were printed as numbers.
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
# Where the service also runs without its mailer (the events + mailer line's reference).
NO_MAILER_SCENARIOS = ("signup cost 4, c32", "signup cost 4, c128")
NUMBER = r"(\d+(?:\.\d+)?)"


def _rows(stdout: str) -> list[list[str]]:
    rows = []
    for line in stdout.splitlines():
        if line.startswith("|") and not line.startswith("|-"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _figure(pattern: str, stdout: str) -> float:
    """The number ``pattern``'s first group matched on a line of its own (or the indented
    ``targets:`` list), as a float."""
    found = re.search(rf"^\s*{pattern}", stdout, re.MULTILINE)
    assert found, f"no line matching {pattern!r}:\n{stdout}"
    return float(found.group(1))


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
    for scenario in NO_MAILER_SCENARIOS:
        no_mailer = [r for r in body if r[0] == scenario and r[1].endswith(", no mailer")]
        assert no_mailer, f"no row without the mailer for {scenario!r}:\n{done.stdout}"
        assert _rps(no_mailer[0][2]) > 0, f"no throughput in {no_mailer[0]}"
    share = _figure(
        rf"events \+ mailer: signups at cost 4 are {NUMBER} % of service .*, no mailer \(.*"
        r" -> (?:MET|MISSED)$",
        done.stdout,
    )
    assert 0 < share < 1000, share
    assert _figure(rf"Redis memory per user: {NUMBER} bytes", done.stdout) > 0
    assert _figure(rf"commands stream length: {NUMBER}", done.stdout) >= 0
    assert _figure(rf"events stream: {NUMBER} bytes per retained event", done.stdout) > 0
    per_user = _figure(
        rf"Redis memory per signed-up user <= 1 KiB \(service .*?\): {NUMBER} B"
        r" .*-> (?:MET|MISSED)$",
        done.stdout,
    )
    assert per_user > 0
