"""The web side of a signup: reserve the idempotency key, hash, enqueue, wait for the reply.

The route hands a validated ``SignupData`` to ``submit_signup``; the key's lifecycle and
the replay of an earlier answer are here, the journey of the command itself is
``api.commands.dispatch``.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING, Any

import anyio
from redis.exceptions import RedisError

from api.commands import (
    Answer,
    accepted,
    answer_from_outcome,
    dispatch,
    problem_answer,
    replayed,
)
from api.idempotency import RESERVED, Entry, Record, fingerprint
from api.problems import PROBLEM_JSON, Problem
from domain.handlers import EMAIL_TAKEN
from domain.ids import uuid7
from domain.model import SignUp
from domain.rules import SignupData
from storage.outcomes import SUCCEEDED, settled
from storage.read_model import read_user

if TYPE_CHECKING:
    from bootstrap import Web

SIGNUP_PATH = "/signup"
# How long a client should wait before retrying a key whose first request is in flight.
IN_FLIGHT_RETRY_AFTER = 1


def _idempotency_outcome(answer: Answer) -> str:
    if answer.replayed:
        return "replayed"
    return "mismatch" if answer.status == 422 else "in_flight"


def signup_outcome(answer: Answer) -> str:
    """The ``signups_total`` label for an answer to POST /signup."""
    if answer.replayed:
        return "replayed"
    if answer.status == 409:
        return "email_taken" if EMAIL_TAKEN.encode() in answer.body else "in_flight"
    return _OUTCOMES.get(answer.status, "invalid")


_OUTCOMES = {201: "created", 202: "accepted", 500: "failed", 503: "unavailable"}


def _in_flight() -> Answer:
    problem = Problem(
        409,
        "request-in-flight",
        "A request with this Idempotency-Key is in progress",
        "Retry after the first request has finished.",
    )
    return Answer(409, problem.body(), PROBLEM_JSON, retry_after=IN_FLIGHT_RETRY_AFTER)


def _key_reused() -> Answer:
    problem = Problem(
        422,
        "idempotency-key-reused",
        "Idempotency-Key reused with a different request",
        "This key was used for a request with another body; use a new key.",
    )
    return problem_answer(problem)


async def _replay(web: Web, record: Record, password: str) -> Answer:
    """The answer to a request whose key another request already holds: rebuilt from what
    the first request's command left behind, byte for byte what it was answered."""
    if record.state == RESERVED:
        return _in_flight()
    if not await web.hasher.verify(password, record.password_hash):
        return _key_reused()
    stored: str | None = await web.commands.execute("GET", web.keys.command(record.command_id))
    outcome = settled(stored)
    if outcome is None and stored is None and record.user_id:
        # The outcome's TTL ran out before the key's: the user, if created, still is.
        document = await read_user(web.commands, web.keys, web.users, uuid.UUID(record.user_id))
        if document is not None:
            outcome = {"status": SUCCEEDED, "user_id": record.user_id}
    if outcome is None:
        # The first request timed out (202) or is still waiting for the worker.
        return _in_flight()
    return replayed(await answer_from_outcome(web, outcome, created=True))


async def submit_signup(
    web: Web,
    data: SignupData,
    body: dict[str, Any],
    idempotency_key: str | None,
    *,
    request_id: str,
    correlation_id: str,
) -> Answer:
    await web.backlog.check()
    command_id, user_id = uuid7(), uuid7()
    cid = str(command_id)
    record_key = ""
    if idempotency_key is not None:
        record_key = web.keys.idempotency("POST", SIGNUP_PATH, idempotency_key)
        fp = fingerprint("POST", SIGNUP_PATH, body)
        found = await web.idempotency.reserve(record_key, cid, fp)
        if found is not None:
            answer = (
                _key_reused()
                if found.fingerprint != fp
                else await _replay(web, found, data.password)
            )
            web.metrics.idempotency.inc({"outcome": _idempotency_outcome(answer)})
            return answer
        web.metrics.idempotency.inc({"outcome": "new"})

    enqueued = False
    try:
        command = SignUp(
            command_id=command_id,
            user_id=user_id,
            name=data.name,
            email=data.email,
            display_name=data.display_name,
            password_hash=await web.hasher.hash(data.password),
        )

        async def enqueue_keyed(entry: Entry) -> str | None:
            return await web.idempotency.enqueue(
                record_key,
                cid,
                str(user_id),
                command.password_hash,
                entry,
                outcome_ttl_ms=web.settings.outcome_ttl_seconds * 1000,
            )

        sent = await dispatch(
            web,
            command,
            request_id=request_id,
            correlation_id=correlation_id,
            enqueue=enqueue_keyed if record_key else None,
        )
        if sent.entry_id is None:
            # Our lease ran out before we enqueued and another request took the key.
            return _in_flight()
        enqueued = True
    finally:
        if record_key and not enqueued:
            # Free the key for a retry now rather than when the lease runs out; if Redis
            # is down the lease does it.
            with anyio.CancelScope(shield=True), contextlib.suppress(RedisError):
                await web.idempotency.release(record_key, cid)

    if sent.outcome is None:
        return accepted(cid)
    return await answer_from_outcome(web, sent.outcome, created=True)
