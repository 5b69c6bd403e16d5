from __future__ import annotations

import time
import uuid

import pytest

from domain.ids import parse_uuid, uuid7
from domain.model import SignUp
from storage.streams import Envelope, MalformedEntry, decode, encode

SIGNUP_V1 = "signup.v1"

HASH = "$2b$04$abcdefghijklmnopqrstuu5Yp9X5HqJ0Ykq9c4Zk8o6J1cS0d0fGa"


def envelope(traceparent: str = "") -> Envelope:
    command = SignUp(
        command_id=uuid7(),
        user_id=uuid7(),
        name="Ann Lee",
        email="ann@bücher.de",
        display_name="Ann 🐍",
        password_hash=HASH,
    )
    return Envelope(
        command=command,
        reply_channel="signup:reply:web1:" + str(command.command_id),
        enqueued_at="2025-01-02T03:04:05.678+00:00",
        traceparent=traceparent,
        request_id="req-1",
        correlation_id="corr-1",
    )


@pytest.mark.parametrize(
    "traceparent", ["", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]
)
def test_encode_then_decode_gives_the_envelope_back(traceparent: str) -> None:
    original = envelope(traceparent)

    assert decode(encode(original)) == original


def test_every_field_is_a_flat_string() -> None:
    fields = encode(envelope("00-trace-01"))

    assert fields["type"] == SIGNUP_V1
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    assert fields["command_id"] == str(uuid.UUID(fields["command_id"]))
    assert fields["traceparent"] == "00-trace-01"


def test_an_empty_traceparent_is_left_out() -> None:
    assert "traceparent" not in encode(envelope())


def broken(**changes: str | None) -> dict[str, str]:
    fields = encode(envelope())
    for name, value in changes.items():
        if value is None:
            del fields[name]
        else:
            fields[name] = value
    return fields


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (broken(type="signup.v2"), "unknown command type"),
        (broken(type=None), "unknown command type"),
        (broken(email=None), "missing field 'email'"),
        # A missing UUID field is reported as "not a UUID" (the ValueError of the missing
        # field is caught by the UUID check); still a MalformedEntry, which is what counts.
        (broken(command_id=None), "'command_id'"),
        (broken(user_id="not-a-uuid"), "'user_id' is not a UUID"),
        (broken(command_id=""), "'command_id' is not a UUID"),
        (broken(password_hash="hunter2hunter2"), "not a bcrypt hash"),
    ],
)
def test_decode_refuses_malformed_entries(fields: dict[str, str], message: str) -> None:
    with pytest.raises(MalformedEntry, match=message):
        decode(fields)


def test_uuid7_has_version_7_and_the_rfc_variant() -> None:
    value = uuid7()

    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_uuid7_carries_the_current_unix_time_in_ms() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000

    assert before <= value.int >> 80 <= after


def test_uuid7s_are_time_ordered() -> None:
    values = []
    for _ in range(5):
        values.append(uuid7())
        time.sleep(0.002)

    assert values == sorted(values)
    assert values == sorted(values, key=str)
    assert len(set(values)) == len(values)


def test_uuid7s_made_in_one_ms_are_still_distinct() -> None:
    values = {uuid7() for _ in range(1000)}

    assert len(values) == 1000


def test_parse_uuid_accepts_the_canonical_form() -> None:
    value = uuid7()

    assert parse_uuid(str(value)) == value
    # Ids are issued lower-case; another spelling would give one resource two URLs.
    assert parse_uuid(str(value).upper()) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not-a-uuid",
        "0123456789abcdef0123456789abcdef",
        "{01234567-89ab-cdef-0123-456789abcdef}",
        "urn:uuid:01234567-89ab-cdef-0123-456789abcdef",
        "01234567-89ab-cdef-0123-456789abcdeg",
        "01234567-89ab-cdef-0123-456789abcdef0",
    ],
)
def test_parse_uuid_refuses_other_lengths_and_non_hex(text: str) -> None:
    assert parse_uuid(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "0123-4567-89ab-cdef-0123456789abcdef",  # hyphens in the wrong places
        "urn:0123456789abcdef0123456789abcdef",
        "+1234567-89ab-cdef-0123-456789abcdef",
        "0_234567-89ab-cdef-0123-456789abcdef",
        "{0123456789abcdef0123456789abcdef}",
    ],
)
def test_parse_uuid_refuses_other_spellings_of_a_valid_uuid(text: str) -> None:
    # uuid.UUID() alone drops every "-" and a "urn:" prefix, and int() takes "+" and "_".
    assert parse_uuid(text) is None
