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

import contextlib
import socket
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib
from loguru import logger

from workers.mailer.messages import Outgoing


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
    async def send(self, message: Outgoing) -> None: ...

    async def aclose(self) -> None: ...


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


# A connection idle for longer is closed rather than reused: servers drop idle clients
# (Postfix after 300 s, many after 60), and a send on a dropped one would be retried.
IDLE_REUSE_SECONDS = 20.0


class SmtpTransport:
    """Messages over kept-open SMTP connections, one transaction after another on each
    (RFC 5321 allows any number per session): connecting, EHLO, STARTTLS and AUTH once
    per connection, not once per message. At most as many connections as messages are
    sent at once (``MAILER_CONCURRENCY``)."""

    def __init__(self, server: SmtpServer, timeout: float) -> None:
        self._server = server
        self._timeout = timeout
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        # aiosmtplib would ask the resolver for this name (socket.getfqdn) per connection.
        self._local_hostname = socket.getfqdn()

    async def _connection(self) -> aiosmtplib.SMTP:
        now = time.monotonic()
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and now - since < IDLE_REUSE_SECONDS:
                return client
            client.close()
        s = self._server
        client = aiosmtplib.SMTP(
            hostname=s.hostname,
            port=s.port,
            username=s.username,
            password=s.password,
            use_tls=s.use_tls,
            start_tls=s.start_tls,
            timeout=self._timeout,
            local_hostname=self._local_hostname,
        )
        await client.connect()
        return client

    async def send(self, message: Outgoing) -> None:
        client: aiosmtplib.SMTP | None = None
        try:
            client = await self._connection()
            if message.smtputf8 and not client.supports_extension("smtputf8"):
                client.close()
                client = None
                raise Permanent(553, "the server cannot take an internationalised address")
            await _transaction(client, message)
        except Permanent:
            raise
        except (
            aiosmtplib.SMTPRecipientsRefused,
            aiosmtplib.SMTPRecipientRefused,
            aiosmtplib.SMTPDataError,
        ) as exc:
            _close(client)
            code = _code(exc) or 0
            if 500 <= code < 600:
                raise Permanent(code, getattr(exc, "message", "") or str(exc)) from exc
            raise Deferred(f"{code} {exc}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            _close(client)
            raise Transient(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            _close(client)  # cancelled mid-conversation: the connection's state is unknown
            raise
        self._idle.append((client, time.monotonic()))

    async def aclose(self) -> None:
        while self._idle:
            client, _ = self._idle.pop()
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
            client.close()


async def _transaction(client: aiosmtplib.SMTP, message: Outgoing) -> None:
    """MAIL, RCPT, DATA: what ``SMTP.sendmail`` does, less its work for arbitrary input
    (parsing both addresses again, rewriting line ends to count the size), a tenth of the
    mailer's CPU: the envelope here is two validated addresses and the data is CRLF."""
    encoding = "utf-8" if message.smtputf8 else "ascii"
    sender = message.sender.encode(encoding)
    options = [b"SMTPUTF8"] if message.smtputf8 else []
    reply = await client.execute_command(b"MAIL", b"FROM:<" + sender + b">", *options)
    if reply.code != 250:
        raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, message.sender)
    recipient = message.recipient.encode(encoding)
    reply = await client.execute_command(b"RCPT", b"TO:<" + recipient + b">")
    if reply.code not in (250, 251):
        raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, message.recipient)
    await client.data(message.data)


def _close(client: aiosmtplib.SMTP | None) -> None:
    if client is not None:
        client.close()


class LogTransport:
    """Development only: the message goes to the log, link included, instead of a server."""

    async def send(self, message: Outgoing) -> None:
        logger.warning(
            "mail.logged",
            note="SMTP_URL is unset: this message was logged, not sent",
            to=message.recipient,
            text=message.text,
        )

    async def aclose(self) -> None:
        return None
