"""A real SMTP server for the tests (aiosmtpd, as a process of its own) that keeps what it
receives (``tests/smtp_spool.py``), and can be stopped and started again on the same port
to play an outage. Shared by the
integration tier (an in-process mailer) and the e2e tier (the mailer process).

Recipients starting with ``refuse-`` are refused with a 550, and noted in ``refused``."""

from __future__ import annotations

import email
import email.policy
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio

from bench.procs import free_port

ROOT = Path(__file__).resolve().parents[1]

_LINK = re.compile(r"https?://\S+/verify-email\?token=[A-Za-z0-9_.%-]+")


@dataclass
class Received:
    envelope_to: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        content: str = body.get_content()
        return content

    @property
    def html(self) -> str:
        body = self.message.get_body(("html",))
        assert body is not None
        content: str = body.get_content()
        return content

    @property
    def link(self) -> str:
        found = _LINK.search(self.text)
        assert found is not None, self.text
        return found.group(0)

    @property
    def token(self) -> str:
        return parse_qs(urlsplit(self.link).query)["token"][0]


@dataclass
class SmtpSink:
    """The server runs as a process of its own, as a real one would: ``stop`` ends it
    (SIGTERM), ``start`` starts it again on the same port."""

    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="smtp-")))
    _process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self, within: float = 10) -> None:
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                f"127.0.0.1:{self.port}",
                "-c",
                "tests.smtp_spool.Spool",
                str(self.directory),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    if probe.recv(64).startswith(b"220"):
                        probe.sendall(b"QUIT\r\n")
                        return
            except OSError:
                if self._process.poll() is not None:
                    raise RuntimeError("the SMTP server exited at start") from None
            time.sleep(0.05)
        raise TimeoutError(f"the SMTP server did not answer within {within}s")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def received(self) -> list[Received]:
        found = []
        for path in sorted(self.directory.glob("*.json")):
            stored = json.loads(path.read_text())
            message = email.message_from_string(stored["message"], policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            found.append(Received(stored["to"], message))
        return found

    @property
    def refused(self) -> list[str]:
        path = self.directory / "refused"
        return path.read_text().splitlines() if path.exists() else []

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.envelope_to]

    def by_recipient(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.received:
            for address in r.envelope_to:
                counts[address] = counts.get(address, 0) + 1
        return counts

    def wait_for(self, address: str, count: int = 1, within: float = 30) -> list[Received]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = self.to(address)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise TimeoutError(f"{count} message(s) to {address} not received within {within}s")

    async def arrival(self, address: str, count: int = 1, within: float = 15) -> list[Received]:
        """``wait_for`` for a test whose event loop runs the mailer: it polls, never blocks."""
        with anyio.move_on_after(within):
            while len(found := self.to(address)) < count:
                await anyio.sleep(0.02)
            return found
        raise TimeoutError(f"{count} message(s) to {address} not received within {within}s")


@contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.remove()
