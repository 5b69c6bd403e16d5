"""Handing a message to the SMTP server (``aiosmtplib``), or, with no ``SMTP_URL``, to the
log, so the verification flow works on a laptop with no mail server (refused in
production, where ``SMTP_URL`` is required).

``SMTP_URL``: ``smtp://user:pass@host:port`` (STARTTLS when the server offers it),
``smtp+starttls://`` (STARTTLS required), ``smtps://`` (TLS from the first byte).
A refusal is sorted by what a retry can change: the recipient or the content refused with
a 5xx is ``Permanent`` (dead-lettered); with a 4xx it is ``Deferred`` (retried a few
times, then left for a later delivery); everything else, an unreachable or timing-out
server, a refused login, is ``Transient`` (retried until it works: a retry, or a fixed
setting, can change it, and dead-lettering every message over a wrong password would
lose them all).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib
from loguru import logger


class Transient(Exception):
    """Worth trying again later."""


class Deferred(Transient):
    """The server answered 4xx for this message: try again, but not forever in place."""


class Permanent(Exception):
    """The server refused this message for good (a 5xx about its recipient or content)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code} {detail}")
        self.code = code


class Transport(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


@dataclass(frozen=True, slots=True)
class SmtpServer:
    hostname: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool | None  # None: when offered


def parse_smtp_url(url: str) -> SmtpServer:
    parts = urlsplit(url)
    modes = {
        "smtp": (False, None, 25),
        "smtp+starttls": (False, True, 587),
        "smtps": (True, False, 465),
    }
    if parts.scheme not in modes or not parts.hostname:
        raise ValueError("SMTP_URL must be smtp://, smtp+starttls:// or smtps://host[:port]")
    use_tls, start_tls, default_port = modes[parts.scheme]
    return SmtpServer(
        hostname=parts.hostname,
        port=parts.port or default_port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=use_tls,
        start_tls=start_tls,
    )


def _code(exc: aiosmtplib.SMTPException) -> int | None:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        return exc.recipients[0].code
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code
    return None


class SmtpTransport:
    def __init__(self, server: SmtpServer, timeout: float) -> None:
        self._server = server
        self._timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        s = self._server
        try:
            await aiosmtplib.send(
                message,
                hostname=s.hostname,
                port=s.port,
                username=s.username,
                password=s.password,
                use_tls=s.use_tls,
                start_tls=s.start_tls,
                timeout=self._timeout,
            )
        except (
            aiosmtplib.SMTPRecipientsRefused,
            aiosmtplib.SMTPRecipientRefused,
            aiosmtplib.SMTPDataError,
        ) as exc:
            code = _code(exc) or 0
            if 500 <= code < 600:
                raise Permanent(code, getattr(exc, "message", "") or str(exc)) from exc
            raise Deferred(f"{code} {exc}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise Transient(f"{type(exc).__name__}: {exc}") from exc


class LogTransport:
    """Development only: the message goes to the log, link included, instead of a server."""

    async def send(self, message: EmailMessage) -> None:
        body = message.get_body(("plain",))
        logger.warning(
            "mail.logged",
            note="SMTP_URL is unset: this message was logged, not sent",
            to=str(message["To"]),
            subject=str(message["Subject"]),
            message_id=str(message["Message-ID"]),
            text=body.get_content() if body is not None else "",
        )
