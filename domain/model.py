"""Commands (imperative), events (past tense) and the user the read side shows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class SignUp:
    """Create an account. The password is already hashed: plaintext never leaves the web."""

    command_id: uuid.UUID
    user_id: uuid.UUID
    name: str
    email: str
    display_name: str
    password_hash: str
    request_id: str = ""
    correlation_id: str = ""


@dataclass(frozen=True, slots=True)
class User:
    """The public view of an account (the read model's row)."""

    id: uuid.UUID
    name: str
    email: str
    display_name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class UserSignedUp:
    """The command committed: ``user`` exists in the write and read models."""

    command_id: uuid.UUID
    user: User


@dataclass(frozen=True, slots=True)
class SignupRejected:
    """The command was applied and refused by a domain rule (e.g. the email is taken)."""

    command_id: uuid.UUID
    reason: str
    detail: str


Outcome = UserSignedUp | SignupRejected
