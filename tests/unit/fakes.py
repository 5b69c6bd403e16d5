"""In-memory implementations of the domain's abstractions, for unit tests."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from domain.handlers import UserStore, Verification
from domain.model import SignUp, User, VerifyEmail
from domain.tokens import email_digest
from storage.autopipeline import Arg


class FakeCommands:
    """``storage.autopipeline.Commands`` over a fakeredis client: the same Lua scripts run
    on the fake server, with replies decoded as the real connection decodes them."""

    def __init__(self, client: Redis) -> None:
        self.client = client

    async def execute(self, *args: Arg) -> Any:
        return await self.client.execute_command(*args)  # type: ignore[no-untyped-call]

    async def script(self, source: str, keys: list[str], args: list[Arg]) -> Any:
        return await self.client.eval(source, len(keys), *keys, *args)


class FakeUserStore(UserStore):
    """``UserStore`` over a dict, with the Postgres constraints: ids and emails unique,
    commands applied in stream order (an earlier command of a batch wins an email)."""

    def __init__(self, users: Sequence[User] = ()) -> None:
        self.users: dict[uuid.UUID, User] = {u.id: u for u in users}
        self.password_hashes: dict[uuid.UUID, str] = {}
        # applied_commands: the command that changed a user, and the version it made.
        self.applied: dict[uuid.UUID, int] = {}

    async def add_many(self, commands: Sequence[SignUp]) -> dict[uuid.UUID, User]:
        taken = {u.email for u in self.users.values()}
        for command in commands:
            if command.user_id in self.users or command.email in taken:
                continue
            self.users[command.user_id] = User(
                id=command.user_id,
                name=command.name,
                email=command.email,
                display_name=command.display_name,
                created_at=datetime.now(UTC),
            )
            self.password_hashes[command.user_id] = command.password_hash
            taken.add(command.email)
        return {c.user_id: self.users[c.user_id] for c in commands if c.user_id in self.users}

    async def verify_many(self, commands: Sequence[VerifyEmail]) -> dict[uuid.UUID, Verification]:
        found: dict[uuid.UUID, Verification] = {}
        for command in commands:
            user = self.users.get(command.user_id)
            if user is None or email_digest(user.email) != command.email_digest:
                continue
            if user.email_verified_at is None:
                user = dataclasses.replace(
                    user, email_verified_at=datetime.now(UTC), version=user.version + 1
                )
                self.users[user.id] = user
                self.applied[command.command_id] = user.version
            found[command.command_id] = Verification(user, command.command_id in self.applied)
        return found

    async def find_by_emails(self, emails: Sequence[str]) -> dict[str, User]:
        wanted = set(emails)
        return {u.email: u for u in self.users.values() if u.email in wanted}
