from __future__ import annotations

import pytest

from domain.errors import InvalidSignup
from domain.rules import SignupData, validate_signup

PASSWORD = "correct horse"


def errors_of(name: str, email: str, password: str, display_name: str | None) -> list[str]:
    """The fields ``validate_signup`` refuses, in the order it reports them."""
    with pytest.raises(InvalidSignup) as caught:
        validate_signup(name, email, password, display_name)
    return [e.field for e in caught.value.errors]


def test_valid_signup_is_normalised() -> None:
    data = validate_signup("  Ann Lee \t", " Ann@Example.COM ", PASSWORD, "  Annie  ")

    assert data == SignupData(
        name="Ann Lee", email="ann@example.com", display_name="Annie", password=PASSWORD
    )


def test_display_name_defaults_to_the_trimmed_name() -> None:
    data = validate_signup("  Ann  ", "ann@example.com", PASSWORD, None)

    assert data.display_name == "Ann"


@pytest.mark.parametrize("name", ["A", "n" * 255])
def test_name_of_1_to_255_characters_is_accepted(name: str) -> None:
    assert validate_signup(name, "ann@example.com", PASSWORD, None).name == name


@pytest.mark.parametrize("name", ["", "   ", "n" * 256])
def test_name_empty_or_too_long_is_refused(name: str) -> None:
    assert errors_of(name, "ann@example.com", PASSWORD, None) == ["name"]


def test_length_is_counted_after_trimming() -> None:
    name = "  " + "n" * 255 + "  "

    assert validate_signup(name, "ann@example.com", PASSWORD, None).name == "n" * 255


@pytest.mark.parametrize("name", ["Ann\x00Lee", "Ann\x1bLee", "Ann\x7fLee", "Ann\x85Lee"])
def test_control_characters_in_name_are_refused(name: str) -> None:
    assert errors_of(name, "ann@example.com", PASSWORD, None) == ["name"]


def test_control_characters_in_display_name_are_refused() -> None:
    assert errors_of("Ann", "ann@example.com", PASSWORD, "An\x01n") == ["display_name"]


def test_unicode_domain_is_accepted_and_normalised() -> None:
    assert validate_signup("Ann", "User@BÜCHER.de", PASSWORD, None).email == "user@bücher.de"


@pytest.mark.parametrize(
    "email", ["", "ann", "ann@", "@example.com", "ann@example", "ann@@example.com", "a b@x.com"]
)
def test_invalid_email_is_refused(email: str) -> None:
    assert errors_of("Ann", email, PASSWORD, None) == ["email"]


def test_password_shorter_than_8_characters_is_refused() -> None:
    assert errors_of("Ann", "ann@example.com", "seven77", None) == ["password"]


def test_password_of_exactly_72_bytes_of_multibyte_characters_is_accepted() -> None:
    password = "é" * 36
    assert len(password.encode()) == 72

    assert validate_signup("Ann", "ann@example.com", password, None).password == password


def test_password_of_73_bytes_is_refused() -> None:
    password = "é" * 36 + "a"
    assert len(password.encode()) == 73

    assert errors_of("Ann", "ann@example.com", password, None) == ["password"]


@pytest.mark.parametrize(
    ("name", "email", "password", "field"),
    [
        ("Ann\ud800", "ann@example.com", PASSWORD, "name"),
        ("Ann", "ann\ud800@example.com", PASSWORD, "email"),
        ("Ann", "ann@example.com", PASSWORD + "\ud800", "password"),
    ],
)
def test_lone_surrogate_is_refused(name: str, email: str, password: str, field: str) -> None:
    with pytest.raises(InvalidSignup) as caught:
        validate_signup(name, email, password, None)

    assert [(e.field, e.message) for e in caught.value.errors] == [
        (field, "must be valid Unicode text")
    ]


def test_every_broken_rule_is_reported_at_once() -> None:
    fields = errors_of("", "not-an-email", "short", "Bad\x00Name")

    assert fields == ["name", "display_name", "email", "password"]
