"""Commands (imperative), events (past tense), outcomes, and the user the read side shows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

# -- commands: what the web asks the workers to do ---------------------------------------


@dataclass(frozen=True, slots=True)
class SignUp:
    """Create an account. The password is already hashed: plaintext never leaves the web."""

    command_id: uuid.UUID
    user_id: uuid.UUID
    name: str
    email: str
    display_name: str
    password_hash: str


@dataclass(frozen=True, slots=True)
class VerifyEmail:
    """Mark the user's address verified, if it is still the address the token was issued
    for (``email_digest``: see ``domain.tokens.email_digest``)."""

    command_id: uuid.UUID
    user_id: uuid.UUID
    email_digest: str


@dataclass(frozen=True, slots=True)
class RequestVerification:
    """Send a fresh verification message to ``email`` if an unverified account uses it.
    Whether one does is never told back: the outcome is the same either way."""

    command_id: uuid.UUID
    email: str
    requested_at: datetime


Command = SignUp | VerifyEmail | RequestVerification


# -- the read side's view of an account ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    """The public view of an account (the read model's row). ``version`` counts the
    changes the account went through (1 when created); read-model writes never go back."""

    id: uuid.UUID
    name: str
    email: str
    display_name: str
    created_at: datetime
    version: int = 1
    email_verified_at: datetime | None = None

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None


# -- events: what happened, appended to the events stream --------------------------------


@dataclass(frozen=True, slots=True)
class UserSignedUp:
    user_id: uuid.UUID
    version: int
    occurred_at: datetime
    email: str
    name: str
    display_name: str


@dataclass(frozen=True, slots=True)
class EmailVerified:
    user_id: uuid.UUID
    version: int
    occurred_at: datetime
    email: str


@dataclass(frozen=True, slots=True)
class VerificationRequested:
    user_id: uuid.UUID
    version: int
    occurred_at: datetime
    email: str


Event = UserSignedUp | EmailVerified | VerificationRequested


# -- outcomes: what applying one command came to ------------------------------------------


@dataclass(frozen=True, slots=True)
class Applied:
    """The command is applied. ``user`` is the account as it now is (None when the command
    must not say, e.g. a resend for an address that may be unknown); ``events`` what
    changed because of it (empty when nothing did, e.g. an address verified twice)."""

    command_id: uuid.UUID
    user: User | None
    events: tuple[Event, ...] = ()


@dataclass(frozen=True, slots=True)
class Rejected:
    """The command was applied and refused by a domain rule (e.g. the email is taken)."""

    command_id: uuid.UUID
    reason: str
    detail: str


Outcome = Applied | Rejected
