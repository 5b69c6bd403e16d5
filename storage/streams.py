"""The commands stream's entry format: flat, readable string fields, one per line in
``redis-cli XRANGE``.

``type`` carries a version (``signup.v1``) so a later format can be rolled out while old
entries are still pending. ``COMMAND_TYPES`` is the registry: a new command is one line
here (its fields are its dataclass's, see ``storage.fields``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from domain.model import Command, RequestVerification, SignUp, VerifyEmail
from storage.fields import MalformedEntry, from_fields, to_fields

__all__ = ["COMMAND_TYPES", "Envelope", "MalformedEntry", "decode", "encode", "now_iso"]

COMMAND_TYPES: dict[str, type[Command]] = {
    "signup.v1": SignUp,
    "verify_email.v1": VerifyEmail,
    "request_verification.v1": RequestVerification,
}
_TYPE_NAMES = {kind: name for name, kind in COMMAND_TYPES.items()}
_DIGEST = re.compile(r"[0-9a-f]{32}")


def _check_signup(command: SignUp) -> None:
    if not command.password_hash.startswith("$2"):
        raise MalformedEntry("field 'password_hash' is not a bcrypt hash")


def _check_verify(command: VerifyEmail) -> None:
    if _DIGEST.fullmatch(command.email_digest) is None:
        raise MalformedEntry("field 'email_digest' is not 32 hex digits")


# Checks beyond "each field parses", for the types that need one.
_CHECKS: dict[type[Command], Callable[[object], None]] = {
    SignUp: _check_signup,  # type: ignore[dict-item]
    VerifyEmail: _check_verify,  # type: ignore[dict-item]
}


@dataclass(frozen=True, slots=True)
class Envelope:
    """A command plus what travels with it: where to reply, the ids that tie its log lines
    and events to the request, and trace context."""

    command: Command
    reply_channel: str
    enqueued_at: str
    traceparent: str = ""
    request_id: str = ""
    correlation_id: str = ""

    @property
    def type(self) -> str:
        return _TYPE_NAMES[type(self.command)]


def encode(envelope: Envelope) -> dict[str, str]:
    fields = {"type": envelope.type, **to_fields(envelope.command)}
    fields.update(
        request_id=envelope.request_id,
        correlation_id=envelope.correlation_id,
        reply_channel=envelope.reply_channel,
        enqueued_at=envelope.enqueued_at,
    )
    if envelope.traceparent:
        fields["traceparent"] = envelope.traceparent
    return fields


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def decode(fields: dict[str, str]) -> Envelope:
    kind = COMMAND_TYPES.get(fields.get("type", ""))
    if kind is None:
        # A newer web ahead of this worker, or a hand-typed entry: dead-lettered, not fatal.
        raise MalformedEntry(f"unknown command type {fields.get('type')!r}")
    command = from_fields(kind, fields)
    check = _CHECKS.get(kind)
    if check is not None:
        check(command)
    return Envelope(
        command=command,
        reply_channel=fields.get("reply_channel", ""),
        enqueued_at=fields.get("enqueued_at", ""),
        traceparent=fields.get("traceparent", ""),
        request_id=fields.get("request_id", ""),
        correlation_id=fields.get("correlation_id", ""),
    )
