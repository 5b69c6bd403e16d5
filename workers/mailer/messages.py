"""The verification message, from the templates beside this module (``string.Template``;
every value put into the HTML one is escaped)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from functools import cache
from importlib import resources
from string import Template
from urllib.parse import quote

SUBJECT = "Confirm your email address"


@cache
def _template(name: str) -> Template:
    return Template((resources.files("workers.mailer") / "templates" / name).read_text("utf-8"))


@dataclass(frozen=True, slots=True)
class Verification:
    """What a verification message says: to whom, and the link with its token."""

    message_id: str
    to: str
    greeting: str
    link: str
    hours: int


def verify_link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/verify-email?token={quote(token, safe='')}"


def compose(mail_from: str, v: Verification) -> EmailMessage:
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = Address(addr_spec=v.to)
    message["Subject"] = SUBJECT
    message["Date"] = formatdate(localtime=False)
    # One Message-ID per event: a message sent twice (the mailer died between the SMTP
    # server's acceptance and its ack) is recognisably the same one.
    message["Message-ID"] = v.message_id
    message["Auto-Submitted"] = "auto-generated"
    values = {"greeting": v.greeting, "email": v.to, "link": v.link, "hours": v.hours}
    message.set_content(_template("verify_email.txt").substitute(values))
    escaped = {k: html.escape(str(value), quote=True) for k, value in values.items()}
    message.add_alternative(_template("verify_email.html").substitute(escaped), subtype="html")
    return message
