"""Domain errors share one base class; the API maps each family to a status once."""

from __future__ import annotations

from dataclasses import dataclass


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""


@dataclass(frozen=True)
class FieldError:
    """One invalid field: ``field`` is the JSON member name, ``message`` says why."""

    field: str
    message: str


class InvalidSignup(DomainError):
    """The signup data breaks one or more rules."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class EmailTaken(DomainError):
    """Another account already uses this (normalised) email address."""

    def __init__(self, email: str) -> None:
        super().__init__("an account with this email address already exists")
        self.email = email


class UserNotFound(DomainError):
    def __init__(self, user_id: str) -> None:
        super().__init__(f"no user with id {user_id}")
        self.user_id = user_id


class CommandNotFound(DomainError):
    def __init__(self, command_id: str) -> None:
        super().__init__(f"no command with id {command_id}")
        self.command_id = command_id


class InvalidToken(DomainError):
    """A verification token that is malformed, forged, expired or for another purpose."""
