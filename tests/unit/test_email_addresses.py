"""What counts as one address: the normal form an email is stored (and made unique) under."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError

from domain.rules import normalise_email


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("user@Bücher.example", "user@bücher.example"),
        ("user@xn--bcher-kva.example", "user@bücher.example"),
        ("user@XN--BCHER-KVA.EXAMPLE", "user@bücher.example"),
        ("user@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com", "user@example.com"),  # full-width
        ('"John..Doe"@example.com', '"john..doe"@example.com'),
        ('"ann"@example.com', "ann@example.com"),  # needless quotes dropped
        ("A+Tag@example.com", "a+tag@example.com"),
        ("O'Brien@example.com", "o'brien@example.com"),
    ],
)
def test_spellings_of_one_address_share_one_normal_form(given: str, stored: str) -> None:
    assert normalise_email(given) == stored


@pytest.mark.parametrize(
    "email",
    [
        "Ann <ann@example.com>",  # a display name is not an address
        "ann@[127.0.0.1]",  # nor is a domain literal we could not mail
        "ann@ex\u00adample.com",  # soft hyphen: invisible, so a look-alike
        "ann@localhost",
        '"ann\x00"@example.com',
    ],
)
def test_forms_that_are_not_mailable_addresses_are_refused(email: str) -> None:
    with pytest.raises(EmailNotValidError):
        normalise_email(email)
