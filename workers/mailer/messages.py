"""The verification message, from the templates beside this module (``string.Template``;
every value put into the HTML one is escaped), as the bytes an SMTP server takes.

Built by hand rather than with ``email.message.EmailMessage``: the standard library's
policy machinery took about 3 ms of CPU a message (parsing back each header it was given,
then folding it again), where this takes tens of microseconds. The shape is fixed and
simple: a few ASCII headers (a non-ASCII sender name is RFC 2047-encoded once, a
non-ASCII recipient travels as UTF-8 under SMTPUTF8, RFC 6531/6532), and a
``multipart/alternative`` of the text and the HTML, each base64 in lines of 76.
"""

from __future__ import annotations

import base64
import html
import uuid
from dataclasses import dataclass
from email.utils import formataddr, formatdate, parseaddr
from functools import cache
from importlib import resources
from string import Template
from urllib.parse import quote

SUBJECT = "Confirm your email address"


@cache
def _template(name: str) -> Template:
    return Template((resources.files("workers.mailer") / "templates" / name).read_text("utf-8"))


@dataclass(frozen=True, slots=True)
class Sender:
    """``MAIL_FROM``, read once: the envelope address and the ``From:`` header."""

    address: str
    header: str

    @classmethod
    def parse(cls, mail_from: str) -> Sender:
        if "\r" in mail_from or "\n" in mail_from:
            raise ValueError("MAIL_FROM must be one line")
        name, address = parseaddr(mail_from)
        if "@" not in address:
            raise ValueError("MAIL_FROM must hold an email address")
        return cls(address, formataddr((name, address), charset="utf-8"))


@dataclass(frozen=True, slots=True)
class Verification:
    """What a verification message says: to whom, and the link with its token."""

    message_id: str
    to: str
    greeting: str
    link: str
    hours: int


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message as handed to the SMTP server: envelope and data."""

    sender: str
    recipient: str
    data: bytes
    smtputf8: bool

    @property
    def text(self) -> str:
        """The plain-text part (for the development log)."""
        marker = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64"
        start = self.data.index(b"\r\n\r\n", self.data.index(marker)) + 4
        end = self.data.index(b"\r\n--", start)
        return base64.b64decode(self.data[start:end]).decode()


def verify_link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/verify-email?token={quote(token, safe='')}"


def _part(subtype: str, body: str, boundary: str) -> bytes:
    head = (
        f"--{boundary}\r\nContent-Type: text/{subtype}; charset=utf-8\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    )
    return head.encode() + base64.encodebytes(body.encode()).replace(b"\n", b"\r\n")


def compose(sender: Sender, v: Verification) -> Outgoing:
    values = {"greeting": v.greeting, "email": v.to, "link": v.link, "hours": v.hours}
    text = _template("verify_email.txt").substitute(values)
    escaped = {k: html.escape(str(value), quote=True) for k, value in values.items()}
    page = _template("verify_email.html").substitute(escaped)
    boundary = f"=_{uuid.uuid4().hex}"
    head = (
        f"From: {sender.header}\r\n"
        f"To: {v.to}\r\n"
        f"Subject: {SUBJECT}\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        # One Message-ID per event: a message sent twice (the mailer died between the
        # SMTP server's acceptance and its ack) is recognisably the same one.
        f"Message-ID: {v.message_id}\r\n"
        "Auto-Submitted: auto-generated\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
    )
    data = b"".join(
        (
            head.encode(),
            _part("plain", text, boundary),
            _part("html", page, boundary),
            f"--{boundary}--\r\n".encode(),
        )
    )
    return Outgoing(sender.address, v.to, data, smtputf8=not v.to.isascii())
