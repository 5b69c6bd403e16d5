"""The events stream's entry format, for the workers that append and the consumers that read.

Every entry has ``event_id``, ``type``, ``user_id``, ``version`` (the account's, after the
change), ``occurred_at``, the ``command_id``, ``request_id``, ``correlation_id`` and
``traceparent`` of the command that caused it, then the event's own data (for
``user.signed_up.v1``: ``email``, ``name``, ``display_name``). Never a password, a hash or a
token: the events are made from domain events, which hold none.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.model import EmailVerified, Event, UserSignedUp, VerificationRequested
from storage.fields import MalformedEntry, from_fields, to_fields

EVENT_TYPES: dict[str, type[Event]] = {
    "user.signed_up.v1": UserSignedUp,
    "user.email_verified.v1": EmailVerified,
    "user.verification_requested.v1": VerificationRequested,
}
_TYPE_NAMES = {kind: name for name, kind in EVENT_TYPES.items()}


def type_name(event: Event) -> str:
    return _TYPE_NAMES[type(event)]


@dataclass(frozen=True, slots=True)
class Cause:
    """What an event inherits from the command that caused it."""

    command_id: str
    request_id: str
    correlation_id: str
    traceparent: str


def encode(event_id: str, event: Event, cause: Cause) -> dict[str, str]:
    data = to_fields(event)
    fields = {
        "event_id": event_id,
        "type": type_name(event),
        "user_id": data.pop("user_id"),
        "version": data.pop("version"),
        "occurred_at": data.pop("occurred_at"),
        "command_id": cause.command_id,
        "request_id": cause.request_id,
        "correlation_id": cause.correlation_id,
        "traceparent": cause.traceparent,
    }
    fields.update(data)
    return fields


@dataclass(frozen=True, slots=True)
class Received:
    """An event as a consumer reads it: the domain event and what came with it."""

    event_id: str
    type: str
    event: Event
    cause: Cause


def decode(fields: dict[str, str]) -> Received:
    name = fields.get("type", "")
    kind = EVENT_TYPES.get(name)
    if kind is None:
        raise MalformedEntry(f"unknown event type {name!r}")
    return Received(
        event_id=fields.get("event_id", ""),
        type=name,
        event=from_fields(kind, fields),
        cause=Cause(
            fields.get("command_id", ""),
            fields.get("request_id", ""),
            fields.get("correlation_id", ""),
            fields.get("traceparent", ""),
        ),
    )
