"""Use cases, as plain functions that take their collaborators as arguments, and the one
registry of them (``COMMAND_HANDLERS``, at the end) that the bus dispatches through.

Every handler takes a batch of one command type and returns one outcome per command, in
order; applying a command again (a redelivery) yields the same outcome and the same events,
so the worker may append those events once, when it acks the entry.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from domain.model import (
    Applied,
    Command,
    EmailVerified,
    Outcome,
    Rejected,
    RequestVerification,
    SignUp,
    User,
    UserSignedUp,
    VerificationRequested,
    VerifyEmail,
)

EMAIL_TAKEN = "email-taken"
INVALID_TOKEN = "invalid-token"  # noqa: S105 (a refusal reason, not a secret)


@dataclass(frozen=True, slots=True)
class Verification:
    """What ``UserStore.verify_many`` found for one command: the user as it now is, and
    whether this very command is the one that verified the address (now or in an earlier
    delivery)."""

    user: User
    by_this_command: bool


class UserStore(Protocol):
    """The write side's storage of users (Postgres in production, a dict in unit tests)."""

    async def add_many(self, commands: Sequence[SignUp]) -> dict[uuid.UUID, User]:
        """Create the user of each command in the write and read models, atomically.

        A command whose user already exists (a redelivery) creates nothing; a command whose
        email belongs to another user creates nothing. Returns the users that exist, after
        the call, under the commands' user ids, whether created now or by an earlier
        delivery of the same command.
        """
        ...

    async def verify_many(self, commands: Sequence[VerifyEmail]) -> dict[uuid.UUID, Verification]:
        """Mark verified the address of each command's user whose current email matches
        the command's digest, recording which command did it. Returns, by command id, what
        each command found; a command whose user is gone or whose email no longer matches
        is absent."""
        ...

    async def find_by_emails(self, emails: Sequence[str]) -> dict[str, User]:
        """The users, by (normalised) email, of the addresses that have one."""
        ...


async def sign_up(commands: Sequence[SignUp], users: UserStore) -> list[Outcome]:
    """Apply a batch of signups; each gets its own outcome, and one refusal (a taken email)
    never fails its neighbours. Applying a command again yields the same outcome."""
    existing = await users.add_many(commands)
    outcomes: list[Outcome] = []
    for command in commands:
        user = existing.get(command.user_id)
        if user is None:
            detail = "an account with this email address already exists"
            outcomes.append(Rejected(command.command_id, EMAIL_TAKEN, detail))
            continue
        # The event tells what the command asked for and got, as of its version 1.
        event = UserSignedUp(
            user.id, 1, user.created_at, command.email, command.name, command.display_name
        )
        outcomes.append(Applied(command.command_id, user, (event,)))
    return outcomes


async def verify_email(commands: Sequence[VerifyEmail], users: UserStore) -> list[Outcome]:
    """Verify addresses; verifying one again is applied and changes nothing (no event)."""
    found = await users.verify_many(commands)
    outcomes: list[Outcome] = []
    for command in commands:
        result = found.get(command.command_id)
        if result is None:
            detail = "The token does not belong to a current account address."
            outcomes.append(Rejected(command.command_id, INVALID_TOKEN, detail))
            continue
        user = result.user
        events: tuple[EmailVerified, ...] = ()
        if result.by_this_command and user.email_verified_at is not None:
            events = (EmailVerified(user.id, user.version, user.email_verified_at, user.email),)
        outcomes.append(Applied(command.command_id, user, events))
    return outcomes


async def request_verification(
    commands: Sequence[RequestVerification], users: UserStore
) -> list[Outcome]:
    """A ``VerificationRequested`` for each address of an unverified account; the outcome
    names no user either way, so it tells nothing about which addresses have accounts."""
    found = await users.find_by_emails(sorted({c.email for c in commands}))
    outcomes: list[Outcome] = []
    for command in commands:
        user = found.get(command.email)
        events: tuple[VerificationRequested, ...] = ()
        if user is not None and not user.email_verified:
            events = (
                VerificationRequested(user.id, user.version, command.requested_at, user.email),
            )
        outcomes.append(Applied(command.command_id, None, events))
    return outcomes


Handler = Callable[[Sequence[Any], UserStore], Awaitable[list[Outcome]]]

# Command type to handler: the one registry the bus dispatches through.
COMMAND_HANDLERS: dict[type[Command], Handler] = {
    SignUp: sign_up,
    VerifyEmail: verify_email,
    RequestVerification: request_verification,
}
