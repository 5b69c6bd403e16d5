"""Starting and stopping the processes under test, from the Procfile's own command lines.

Every process is started in a session (and so a process group) of its own: the bench
stops it, and anything it started (uvicorn's workers), by that group's id, never by name.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
STOP_WITHIN_SECONDS = 10.0


def procfile(root: Path = ROOT) -> dict[str, str]:
    """The Procfile's lines as ``{name: command}`` (of the checkout at ``root``)."""
    lines = (root / "Procfile").read_text().splitlines()
    entries = (line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {name.strip(): command.strip() for name, command in entries}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def base_env(**extra: str) -> dict[str, str]:
    """This environment, with the venv's bin first on PATH (the Procfile says ``python``)."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOST": LOOPBACK,
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (its own, not its children's)."""
        try:
            stat = Path(f"/proc/{self.popen.pid}/stat").read_text()
        except OSError:
            return 0.0
        # After the parenthesised command: state, then utime and stime at 12 and 13.
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Processes:
    """Every process the bench started and has not stopped yet."""

    log_dir: Path
    running: list[Proc] = field(default_factory=list)

    def start(self, name: str, command: str, env: dict[str, str], cwd: Path = ROOT) -> Proc:
        """``command`` run by bash in ``cwd`` (a checkout: ``python -m`` and uvicorn import
        the code from there)."""
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log_path)
        self.running.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        """SIGTERM to the process group, SIGKILL after ``STOP_WITHIN_SECONDS``."""
        if proc in self.running:
            self.running.remove(proc)
        _signal_group(proc.popen, signal.SIGTERM)
        try:
            proc.popen.wait(STOP_WITHIN_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(proc.popen, signal.SIGKILL)
            proc.popen.wait(STOP_WITHIN_SECONDS)
        # uvicorn's workers may outlive their supervisor by a moment.
        _signal_group(proc.popen, signal.SIGKILL)

    def stop_all(self) -> None:
        for proc in list(reversed(self.running)):
            try:
                self.stop(proc)
            except Exception as exc:  # keep stopping the others
                print(f"[bench] could not stop {proc.name}: {exc}", file=sys.stderr)


def _signal_group(popen: subprocess.Popen[bytes], sig: int) -> None:
    # The process is the leader of its own session, so its group id is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, sig)


def http_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def smtp_greets(port: int, timeout: float = 1.0) -> bool:
    """Whether an SMTP server on ``port`` sends its 220 greeting."""
    try:
        # Connecting reads the greeting; leaving the block says QUIT.
        with smtplib.SMTP(LOOPBACK, port, timeout=timeout):
            pass
    except (OSError, smtplib.SMTPException):
        return False
    return True


def wait_until(ready: Callable[[], bool], what: str, procs: list[Proc], within: float) -> None:
    """Until ``ready()``; fails when one of ``procs`` exits or time runs out."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(
                    f"{proc.name} exited with {proc.popen.returncode} during start-up:\n"
                    f"{proc.tail()}"
                )
        if ready():
            return
        time.sleep(0.1)
    tails = "\n".join(f"--- {p.name}\n{p.tail()}" for p in procs)
    raise RuntimeError(f"{what}: still not after {within}s\n{tails}")


def wait_http(port: int, path: str, procs: list[Proc], within: float) -> None:
    """Until ``GET path`` answers 200; fails when a process exits or time runs out."""
    wait_until(
        lambda: http_status(port, path) == 200, f"GET {path} on port {port} = 200", procs, within
    )
