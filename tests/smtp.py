"""A real SMTP server for the tests (aiosmtpd, in a thread) that keeps what it receives,
and can be stopped and started again on the same port to play an outage. Shared by the
integration tier (an in-process mailer) and the e2e tier (the mailer process).

Recipients starting with ``refuse-`` are refused with a 550, and noted in ``refused``."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from bench.procs import free_port

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


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address.startswith("refuse-"):
            with self.sink.lock:
                self.sink.refused.append(address)
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.sink.lock:
            self.sink.received.append(Received(list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


class _Controller(Controller):
    """aiosmtpd's controller stops its loop with client connections still open, whose
    transports then warn when collected; this one closes them first, as a server that
    shuts down does (the client sees the connection drop)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: list[SMTP] = []

    def factory(self) -> SMTP:
        session: SMTP = super().factory()  # type: ignore[no-untyped-call]
        self.sessions.append(session)
        return session

    def stop(self, no_assert: bool = False) -> None:
        closed = threading.Event()

        def close_sessions() -> None:
            for session in self.sessions:
                if isinstance(session.transport, asyncio.Transport):
                    session.transport.abort()
            closed.set()

        self.loop.call_soon_threadsafe(close_sessions)
        closed.wait(5)
        # Give the loop a turn to run the connections' connection_lost.
        self.loop.call_soon_threadsafe(lambda: None)
        time.sleep(0.05)
        super().stop(no_assert)


@dataclass
class SmtpSink:
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    # Every RCPT refused with a 550, one entry per attempt.
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: _Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._controller = _Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if address in r.envelope_to]

    def by_recipient(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self.lock:
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
        sink.stop()
