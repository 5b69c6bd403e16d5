"""The commands stream's entry format: flat, readable string fields, one per line in
``redis-cli XRANGE``.

``type`` carries a version (``signup.v1``) so a later format can be rolled out while old
entries are still pending.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from domain.model import SignUp

SIGNUP_V1 = "signup.v1"


class MalformedEntry(ValueError):
    """A stream entry that is not a command this version understands."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A command plus what travels with it: where to reply, and trace context."""

    command: SignUp
    reply_channel: str
    enqueued_at: str
    traceparent: str = ""


def encode(envelope: Envelope) -> dict[str, str]:
    c = envelope.command
    fields = {
        "type": SIGNUP_V1,
        "command_id": str(c.command_id),
        "user_id": str(c.user_id),
        "name": c.name,
        "email": c.email,
        "display_name": c.display_name,
        "password_hash": c.password_hash,
        "request_id": c.request_id,
        "correlation_id": c.correlation_id,
        "reply_channel": envelope.reply_channel,
        "enqueued_at": envelope.enqueued_at,
    }
    if envelope.traceparent:
        fields["traceparent"] = envelope.traceparent
    return fields


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _field(fields: dict[str, str], name: str) -> str:
    value = fields.get(name)
    if value is None:
        raise MalformedEntry(f"missing field {name!r}")
    return value


def _uuid(fields: dict[str, str], name: str) -> uuid.UUID:
    value = _field(fields, name)
    try:
        return uuid.UUID(value)
    except ValueError:
        raise MalformedEntry(f"field {name!r} is not a UUID") from None


def decode(fields: dict[str, str]) -> Envelope:
    kind = fields.get("type")
    if kind != SIGNUP_V1:
        raise MalformedEntry(f"unknown command type {kind!r}")
    command = SignUp(
        command_id=_uuid(fields, "command_id"),
        user_id=_uuid(fields, "user_id"),
        name=_field(fields, "name"),
        email=_field(fields, "email"),
        display_name=_field(fields, "display_name"),
        password_hash=_field(fields, "password_hash"),
        request_id=fields.get("request_id", ""),
        correlation_id=fields.get("correlation_id", ""),
    )
    if not command.password_hash.startswith("$2"):
        raise MalformedEntry("field 'password_hash' is not a bcrypt hash")
    return Envelope(
        command=command,
        reply_channel=fields.get("reply_channel", ""),
        enqueued_at=fields.get("enqueued_at", ""),
        traceparent=fields.get("traceparent", ""),
    )
