"""JSON documents the worker writes and the web reads: the user (read model) and a
command's outcome.

An outcome travels twice. The reply published to the waiting request is complete (a
success carries the user's document, so the request answers without another read). The
copy kept under the command's key, for ``GET /commands/{id}``, a replay or a reply that
was missed, refers to the user by id instead: the read model already holds the document,
and a second copy would double the Redis memory each signup costs.
"""

from __future__ import annotations

from typing import Any

import orjson

from domain.model import Applied, Outcome, User

PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"


def user_document(user: User) -> dict[str, Any]:
    verified = user.email_verified_at
    return {
        "id": str(user.id),
        "name": user.name,
        "email": user.email,
        "display_name": user.display_name,
        "created_at": user.created_at.isoformat(),
        "email_verified": verified is not None,
        "email_verified_at": None if verified is None else verified.isoformat(),
        "version": user.version,
    }


def user_json(user: User) -> bytes:
    return orjson.dumps(user_document(user))


def settled(document: str | None) -> dict[str, Any] | None:
    """The outcome if the command is settled (succeeded or failed), else None."""
    if document is None:
        return None
    parsed: dict[str, Any] = orjson.loads(document)
    return None if parsed.get("status") == PENDING else parsed


PENDING_JSON = orjson.dumps({"status": PENDING})


def failed_json(reason: str, detail: str) -> bytes:
    return orjson.dumps({"status": FAILED, "reason": reason, "detail": detail})


def reply_json(outcome: Outcome) -> bytes:
    """The outcome as published to the waiting request."""
    if isinstance(outcome, Applied):
        if outcome.user is None:
            return orjson.dumps({"status": SUCCEEDED})
        return orjson.dumps({"status": SUCCEEDED, "user": user_document(outcome.user)})
    return failed_json(outcome.reason, outcome.detail)


def stored_json(outcome: Outcome) -> bytes:
    """The outcome as kept under the command's key: a success names the user."""
    if isinstance(outcome, Applied):
        if outcome.user is None:
            return orjson.dumps({"status": SUCCEEDED})
        return orjson.dumps({"status": SUCCEEDED, "user_id": str(outcome.user.id)})
    return failed_json(outcome.reason, outcome.detail)
