"""Use cases, as plain functions that take their collaborators as arguments."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol

from domain.model import Outcome, SignUp, SignupRejected, User, UserSignedUp

EMAIL_TAKEN = "email-taken"


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


async def sign_up(commands: Sequence[SignUp], users: UserStore) -> list[Outcome]:
    """Apply a batch of signups; each gets its own outcome, and one refusal (a taken email)
    never fails its neighbours. Applying a command again yields the same outcome."""
    existing = await users.add_many(commands)
    outcomes: list[Outcome] = []
    for command in commands:
        user = existing.get(command.user_id)
        if user is not None:
            outcomes.append(UserSignedUp(command.command_id, user))
        else:
            outcomes.append(
                SignupRejected(
                    command.command_id,
                    EMAIL_TAKEN,
                    "an account with this email address already exists",
                )
            )
    return outcomes
