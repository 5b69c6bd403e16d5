"""The command bus: a batch of mixed commands in, one outcome per command out, in order.

Commands are grouped by type so each type's commands are applied together (one statement
per type and batch); the loop knows no type, only the registry it is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from domain.handlers import Handler, UserStore
from domain.model import Command, Outcome


class UnknownCommand(LookupError):
    """A command type with no handler."""


async def handle(
    commands: Sequence[Command], users: UserStore, handlers: Mapping[type[Command], Handler]
) -> list[Outcome]:
    by_type: dict[type[Command], list[int]] = {}
    for index, command in enumerate(commands):
        by_type.setdefault(type(command), []).append(index)
    outcomes: list[Outcome | None] = [None] * len(commands)
    for kind, indexes in by_type.items():
        handler = handlers.get(kind)
        if handler is None:
            raise UnknownCommand(kind.__name__)
        for index, outcome in zip(
            indexes, await handler([commands[i] for i in indexes], users), strict=True
        ):
            outcomes[index] = outcome
    assert all(o is not None for o in outcomes)
    return [o for o in outcomes if o is not None]
