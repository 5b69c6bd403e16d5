"""The signup rules: what a valid name, email, password and display name are.

Each check returns the normalised value or adds a FieldError; ``validate_signup`` reports
every broken rule at once so a client can fix them all in one round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from domain.errors import FieldError, InvalidSignup

NAME_MAX = 255
PASSWORD_MIN_CHARS = 8
# bcrypt only reads the first 72 bytes; a longer password would be silently truncated, so
# it is refused instead.
PASSWORD_MAX_BYTES = 72


@dataclass(frozen=True, slots=True)
class SignupData:
    """Validated, normalised signup input (the password still in plaintext)."""

    name: str
    email: str
    display_name: str
    password: str


def _has_control_chars(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


def _is_valid_unicode(text: str) -> bool:
    # JSON allows lone surrogate escapes ("\ud800"); they cannot be stored or hashed.
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _check_text(field: str, value: str, errors: list[FieldError]) -> str:
    text = value.strip()
    if not _is_valid_unicode(text):
        errors.append(FieldError(field, "must be valid Unicode text"))
    elif not text:
        errors.append(FieldError(field, "must not be empty"))
    elif len(text) > NAME_MAX:
        errors.append(FieldError(field, f"must be at most {NAME_MAX} characters"))
    elif _has_control_chars(text):
        errors.append(FieldError(field, "must not contain control characters"))
    return text


def normalise_email(value: str) -> str:
    """The canonical form of an address: IDNA-normalised domain, whole address lower-cased.

    Lower-casing the local part too is a product decision: ``Ann@Example.com`` and
    ``ann@example.com`` are one account. Quoted local parts (``"john..doe"@example.com``)
    are valid addresses (RFC 5322) and accepted; needless quotes are dropped, so
    ``"ann"@example.com`` is ``ann@example.com``. A punycode domain and its Unicode
    spelling normalise alike (``xn--bcher-kva.example`` is ``bücher.example``).
    """
    result = validate_email(value, check_deliverability=False, allow_quoted_local=True)
    return result.normalized.lower()


def validate_signup(name: str, email: str, password: str, display_name: str | None) -> SignupData:
    errors: list[FieldError] = []
    clean_name = _check_text("name", name, errors)
    clean_display = (
        clean_name if display_name is None else _check_text("display_name", display_name, errors)
    )
    clean_email = ""
    if not _is_valid_unicode(email):
        errors.append(FieldError("email", "must be valid Unicode text"))
    else:
        try:
            clean_email = normalise_email(email.strip())
        except EmailNotValidError as exc:
            errors.append(FieldError("email", str(exc)))
    if not _is_valid_unicode(password):
        errors.append(FieldError("password", "must be valid Unicode text"))
    elif len(password) < PASSWORD_MIN_CHARS:
        errors.append(FieldError("password", f"must be at least {PASSWORD_MIN_CHARS} characters"))
    elif len(password.encode("utf-8")) > PASSWORD_MAX_BYTES:
        errors.append(
            FieldError("password", f"must be at most {PASSWORD_MAX_BYTES} bytes in UTF-8")
        )
    elif "\x00" in password:
        errors.append(FieldError("password", "must not contain NUL characters"))
    if errors:
        raise InvalidSignup(errors)
    return SignupData(clean_name, clean_email, clean_display, password)
