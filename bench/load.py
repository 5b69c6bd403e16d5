"""Driving load with wrk and reading its result (one JSON line from the scripts' ``done()``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

WRK_DIR = Path(__file__).resolve().parent / "wrk"
RESULT_MARK = "BENCH_RESULT "
# A request waiting longer than this is a wrk timeout (an error), not a latency sample.
REQUEST_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def ensure_wrk() -> str:
    """The path of ``wrk``, installing Debian's package when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("[bench] wrk not found: installing it with apt-get", file=sys.stderr)
    apt = ["apt-get"] if os.geteuid() == 0 else ["sudo", "-n", "apt-get"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["update", "-qq"], ["install", "-y", "-qq", "wrk"]):
        done = subprocess.run(
            [*apt, *step], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"apt-get {' '.join(step)} failed:\n{done.stderr[-2000:]}")
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("apt-get installed wrk, but it is not on PATH")
    return found


def run_wrk(
    wrk: str,
    script: str,
    port: int,
    *,
    connections: int,
    seconds: int,
    args: list[str],
) -> Result:
    """One wrk run of ``bench/wrk/{script}.lua`` against ``http://127.0.0.1:{port}``."""
    threads = max(1, min(2, connections))
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={REQUEST_TIMEOUT_SECONDS}s",
        "-s",
        str(WRK_DIR / f"{script}.lua"),
        f"http://127.0.0.1:{port}",
        "--",
        *args,
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds + REQUEST_TIMEOUT_SECONDS + 30,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            data = json.loads(line.removeprefix(RESULT_MARK))
            return Result(
                requests=int(data["requests"]),
                seconds=int(data["duration_us"]) / 1e6,
                p50_ms=int(data["p50_us"]) / 1000,
                p99_ms=int(data["p99_us"]) / 1000,
                errors=int(data["errors"]),
            )
    raise RuntimeError(
        f"wrk gave no result (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    )
