"""JSON documents the worker writes and the web reads: the user (read model) and a
command's outcome (stored under the command's key and published on its reply channel)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from domain.model import Outcome, SignupRejected, User, UserSignedUp

PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"


def user_document(user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "name": user.name,
        "email": user.email,
        "display_name": user.display_name,
        "created_at": user.created_at.isoformat(),
    }


def user_json(user: User) -> bytes:
    return orjson.dumps(user_document(user))


def final(document: str | None) -> str | None:
    """The stored outcome if the command is settled (succeeded or failed), else None."""
    if document is None or orjson.loads(document).get("status") == PENDING:
        return None
    return document


def pending_json(command_id: uuid.UUID | str) -> bytes:
    return orjson.dumps({"command_id": str(command_id), "status": PENDING})


def failed_json(command_id: uuid.UUID | str, reason: str, detail: str) -> bytes:
    return orjson.dumps(
        {"command_id": str(command_id), "status": FAILED, "reason": reason, "detail": detail}
    )


def outcome_json(outcome: Outcome) -> bytes:
    if isinstance(outcome, UserSignedUp):
        return orjson.dumps(
            {
                "command_id": str(outcome.command_id),
                "status": SUCCEEDED,
                "user": user_document(outcome.user),
            }
        )
    assert isinstance(outcome, SignupRejected)
    return failed_json(outcome.command_id, outcome.reason, outcome.detail)
