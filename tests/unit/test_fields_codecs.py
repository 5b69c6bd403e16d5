"""Stream formats built on ``storage.fields``: every command type of the commands stream and
every event type of the events stream, encoded and decoded back."""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.ids import uuid7
from domain.model import (
    Command,
    EmailVerified,
    Event,
    RequestVerification,
    SignUp,
    UserSignedUp,
    VerificationRequested,
    VerifyEmail,
)
from domain.tokens import email_digest
from storage import events, streams
from storage.fields import MalformedEntry, from_fields, to_fields

HASH = "$2b$04$abcdefghijklmnopqrstuu5Yp9X5HqJ0Ykq9c4Zk8o6J1cS0d0fGa"
WHEN = datetime(2026, 12, 1, 23, 10, 8, 123456, tzinfo=UTC)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

# The fields every commands-stream entry has besides its command's own.
ENVELOPE_FIELDS = {"type", "request_id", "correlation_id", "reply_channel", "enqueued_at"}
# The fields every events-stream entry has (storage/events.py), before the event's own data.
EVENT_FIELDS = [
    "event_id",
    "type",
    "user_id",
    "version",
    "occurred_at",
    "command_id",
    "request_id",
    "correlation_id",
    "traceparent",
]
SECRET_LIKE = re.compile(r"password|hash|token|secret|digest", re.IGNORECASE)


def sample_commands() -> dict[type[Command], Command]:
    return {
        SignUp: SignUp(uuid7(), uuid7(), "Ann Lee", "ann@bücher.de", "Ann 🐍", HASH),
        VerifyEmail: VerifyEmail(uuid7(), uuid7(), email_digest("ann@example.com")),
        RequestVerification: RequestVerification(uuid7(), "ann@example.com", WHEN),
    }


def sample_events() -> dict[type[Event], Event]:
    user_id = uuid7()
    return {
        UserSignedUp: UserSignedUp(user_id, 1, WHEN, "ann@bücher.de", "Ann Lee", "Ann 🐍"),
        EmailVerified: EmailVerified(user_id, 2, WHEN + timedelta(minutes=3), "ann@bücher.de"),
        VerificationRequested: VerificationRequested(
            user_id, 1, WHEN.astimezone(timezone(timedelta(hours=2))), "ann@bücher.de"
        ),
    }


def envelope(command: Command, traceparent: str = TRACEPARENT) -> streams.Envelope:
    return streams.Envelope(
        command=command,
        reply_channel=f"signup:reply:web1:{command.command_id}",
        enqueued_at="2026-12-01T23:10:08.123+00:00",
        traceparent=traceparent,
        request_id="req-1",
        correlation_id="corr-1",
    )


def cause() -> events.Cause:
    return events.Cause(str(uuid7()), "req-1", "corr-1", TRACEPARENT)


# -- commands -----------------------------------------------------------------------------


def test_the_samples_cover_every_registered_command_type() -> None:
    assert set(sample_commands()) == set(streams.COMMAND_TYPES.values())


@pytest.mark.parametrize("name", sorted(streams.COMMAND_TYPES))
@pytest.mark.parametrize("traceparent", ["", TRACEPARENT])
def test_each_command_type_round_trips(name: str, traceparent: str) -> None:
    original = envelope(sample_commands()[streams.COMMAND_TYPES[name]], traceparent)

    fields = streams.encode(original)

    assert fields["type"] == name
    assert original.type == name
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    assert streams.decode(fields) == original


@pytest.mark.parametrize("name", sorted(streams.COMMAND_TYPES))
def test_an_entry_holds_the_commands_fields_and_the_envelopes_only(name: str) -> None:
    kind = streams.COMMAND_TYPES[name]

    fields = streams.encode(envelope(sample_commands()[kind]))

    own = {f.name for f in dataclasses.fields(kind)}
    assert set(fields) == own | ENVELOPE_FIELDS | {"traceparent"}
    # A command field named like an envelope field would be overwritten by it.
    assert not own & (ENVELOPE_FIELDS | {"traceparent"})


@pytest.mark.parametrize(
    "bad_digest",
    [
        "",
        "abc",
        "0" * 31,
        "0" * 33,
        "A" * 32,  # upper case: the digest is always written in lower case
        "g" * 32,
        " " + "0" * 31,
        "0" * 32 + "\n",
    ],
)
def test_a_verify_email_entry_with_a_bad_digest_is_malformed(bad_digest: str) -> None:
    fields = streams.encode(envelope(sample_commands()[VerifyEmail]))
    fields["email_digest"] = bad_digest

    with pytest.raises(MalformedEntry, match="email_digest"):
        streams.decode(fields)


@pytest.mark.parametrize("name", sorted(streams.COMMAND_TYPES))
def test_an_entry_missing_a_command_field_is_malformed(name: str) -> None:
    kind = streams.COMMAND_TYPES[name]
    for field in dataclasses.fields(kind):
        fields = streams.encode(envelope(sample_commands()[kind]))
        del fields[field.name]

        with pytest.raises(MalformedEntry):
            streams.decode(fields)


def test_a_request_verification_with_a_bad_time_is_malformed() -> None:
    fields = streams.encode(envelope(sample_commands()[RequestVerification]))
    fields["requested_at"] = "yesterday"

    with pytest.raises(MalformedEntry, match="'requested_at' is not a ISO 8601 time"):
        streams.decode(fields)


@pytest.mark.parametrize("kind", ["", "signup", "signup.v2", "verify_email.v2", "SIGNUP.V1"])
def test_an_unknown_command_type_is_malformed(kind: str) -> None:
    fields = streams.encode(envelope(sample_commands()[SignUp]))
    fields["type"] = kind

    with pytest.raises(MalformedEntry, match="unknown command type"):
        streams.decode(fields)


def test_an_entry_without_a_type_is_malformed() -> None:
    fields = streams.encode(envelope(sample_commands()[VerifyEmail]))
    del fields["type"]

    with pytest.raises(MalformedEntry, match="unknown command type"):
        streams.decode(fields)


# -- events -------------------------------------------------------------------------------


def test_the_samples_cover_every_registered_event_type() -> None:
    assert set(sample_events()) == set(events.EVENT_TYPES.values())


@pytest.mark.parametrize("name", sorted(events.EVENT_TYPES))
def test_each_event_type_round_trips(name: str) -> None:
    event = sample_events()[events.EVENT_TYPES[name]]
    why = cause()
    event_id = str(uuid7())

    fields = events.encode(event_id, event, why)

    assert fields["type"] == name
    assert events.type_name(event) == name
    assert events.decode(fields) == events.Received(event_id, name, event, why)


@pytest.mark.parametrize("name", sorted(events.EVENT_TYPES))
def test_an_event_is_flat_strings_in_the_documented_order(name: str) -> None:
    kind = events.EVENT_TYPES[name]
    event = sample_events()[kind]
    why = cause()

    fields = events.encode("ev-1", event, why)

    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    own = [f.name for f in dataclasses.fields(kind)]
    data = [n for n in own if n not in ("user_id", "version", "occurred_at")]
    assert list(fields) == EVENT_FIELDS + data
    assert fields["event_id"] == "ev-1"
    assert fields["user_id"] == str(event.user_id)
    assert fields["version"] == str(event.version)
    assert datetime.fromisoformat(fields["occurred_at"]) == event.occurred_at
    assert (
        fields["command_id"],
        fields["request_id"],
        fields["correlation_id"],
        fields["traceparent"],
    ) == (why.command_id, why.request_id, why.correlation_id, why.traceparent)
    # An event's own field named like an envelope field would overwrite it.
    assert not set(data) & set(EVENT_FIELDS)


def test_a_signed_up_event_carries_the_accounts_public_fields() -> None:
    event = sample_events()[UserSignedUp]

    fields = events.encode("ev-1", event, cause())

    assert (fields["email"], fields["name"], fields["display_name"]) == (
        "ann@bücher.de",
        "Ann Lee",
        "Ann 🐍",
    )


@pytest.mark.parametrize("kind", list(events.EVENT_TYPES.values()))
def test_no_event_holds_a_password_hash_or_token(kind: type[Event]) -> None:
    fields = events.encode(str(uuid7()), sample_events()[kind], cause())

    assert not [name for name in fields if SECRET_LIKE.search(name)]
    assert not [f.name for f in dataclasses.fields(kind) if SECRET_LIKE.search(f.name)]
    assert not [v for v in fields.values() if v.startswith("$2")]


@pytest.mark.parametrize("kind", ["", "user.signed_up.v2", "user.deleted.v1"])
def test_an_unknown_event_type_is_malformed(kind: str) -> None:
    fields = events.encode("ev-1", sample_events()[UserSignedUp], cause())
    fields["type"] = kind

    with pytest.raises(MalformedEntry, match="unknown event type"):
        events.decode(fields)


def test_an_event_with_a_bad_version_is_malformed() -> None:
    fields = events.encode("ev-1", sample_events()[EmailVerified], cause())
    fields["version"] = "two"

    with pytest.raises(MalformedEntry, match="'version' is not a integer"):
        events.decode(fields)


# -- the field codec itself ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sample:
    id: uuid.UUID
    count: int
    at: datetime
    text: str


def test_fields_round_trip_each_supported_type() -> None:
    value = Sample(uuid.uuid4(), -42, WHEN, "line one\nline two ☃")

    fields = to_fields(value)

    assert fields == {
        "id": str(value.id),
        "count": "-42",
        "at": WHEN.isoformat(),
        "text": "line one\nline two ☃",
    }
    assert from_fields(Sample, fields) == value
    assert from_fields(Sample, {**fields, "extra": "ignored"}) == value


def test_a_missing_field_is_named() -> None:
    fields = to_fields(Sample(uuid.uuid4(), 1, WHEN, "x"))
    del fields["text"]

    with pytest.raises(MalformedEntry, match="missing field 'text'"):
        from_fields(Sample, fields)
