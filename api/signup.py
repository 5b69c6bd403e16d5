"""The web side of a signup: reserve the idempotency key, hash, enqueue, wait for the reply.

The route hands a validated ``SignupData`` to ``submit_signup``; everything about the
command's journey from here to the HTTP answer is in this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from loguru import logger
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError

from api.idempotency import RESERVED, Entry, Record, fingerprint
from api.problems import PROBLEM_JSON, Problem
from domain.handlers import EMAIL_TAKEN
from domain.ids import uuid7
from domain.model import SignUp
from domain.rules import SignupData
from observability import tracing
from storage import streams
from storage.outcomes import FAILED, PENDING_JSON, SUCCEEDED, settled
from storage.read_model import read_user

if TYPE_CHECKING:
    from bootstrap import Web

SIGNUP_PATH = "/signup"
# Without an Idempotency-Key: the pending outcome and the entry, both or neither.
# KEYS: stream, command outcome key. ARGV: pending outcome, outcome TTL ms, field/value pairs.
_ENQUEUE = """
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2], 'NX')
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
"""
# How long a client should wait before retrying a key whose first request is in flight.
IN_FLIGHT_RETRY_AFTER = 1


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer, as stored for replays: status, exact body bytes, Location."""

    status: int
    body: bytes
    media_type: str = "application/json"
    location: str = ""
    replayed: bool = False
    retry_after: int | None = None


def _problem_answer(problem: Problem) -> Answer:
    return Answer(problem.status, problem.body(), PROBLEM_JSON, retry_after=None)


def outcome_problem(document: dict[str, Any]) -> Problem:
    """The problem a failed command's outcome stands for."""
    if document.get("reason") == EMAIL_TAKEN:
        return Problem(409, EMAIL_TAKEN, "Email already registered", document["detail"])
    return Problem(
        500, "command-failed", "The command could not be processed", document.get("detail", "")
    )


async def answer_from_outcome(web: Web, outcome: dict[str, Any]) -> Answer:
    """The answer a settled command stands for. A success published to the waiting request
    carries the user; the stored copy names it, and the read model has the document."""
    if outcome["status"] == FAILED:
        return _problem_answer(outcome_problem(outcome))
    assert outcome["status"] == SUCCEEDED
    if "user" in outcome:
        user = outcome["user"]
        return Answer(201, orjson.dumps(user), location=f"/users/{user['id']}")
    user_id = outcome["user_id"]
    document = await read_user(web.commands, web.keys, web.users, uuid.UUID(user_id))
    if document is None:
        raise LookupError(f"command succeeded but user {user_id} is in no read model")
    return Answer(201, document.encode(), location=f"/users/{user_id}")


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


def accepted(command_id: str) -> Answer:
    body = orjson.dumps({"command_id": command_id, "status": "pending"})
    return Answer(202, body, location=f"/commands/{command_id}")


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
    return _problem_answer(problem)


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
    answer = await answer_from_outcome(web, outcome)
    return dataclasses.replace(answer, replayed=True)


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
            request_id=request_id,
            correlation_id=correlation_id,
        )
        with web.replies.expect(cid):
            with web.tracer.start_as_current_span(
                f"send {web.keys.commands}",
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "redis",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": web.keys.commands,
                    "messaging.message.conversation_id": cid,
                },
            ) as span:
                # The entry carries this span's context, so the worker's span joins the trace.
                envelope = streams.Envelope(
                    command, web.replies.channel(cid), streams.now_iso(), tracing.inject()
                )
                entry = Entry(
                    stream=web.keys.commands,
                    fields=streams.encode(envelope),
                    outcome_key=web.keys.command(cid),
                    pending=PENDING_JSON,
                )
                entry_id = await _enqueue(web, entry, record_key, command)
                if entry_id is None:
                    # Our lease ran out before we enqueued and another request took the key.
                    return _in_flight()
                span.set_attribute("messaging.message.id", entry_id)
            enqueued = True
            web.metrics.enqueued.inc({})
            logger.debug("command.enqueued", command_id=cid, entry_id=entry_id)
            waited = time.perf_counter()
            document = await web.replies.wait(cid, within=web.settings.reply_timeout_seconds)
            web.metrics.reply_wait.observe({}, time.perf_counter() - waited)
    finally:
        if record_key and not enqueued:
            # Free the key for a retry now rather than when the lease runs out; if Redis
            # is down the lease does it.
            with anyio.CancelScope(shield=True), contextlib.suppress(RedisError):
                await web.idempotency.release(record_key, cid)

    if document is None:
        web.metrics.reply_timeouts.inc({})
        logger.info("command.reply_timeout", command_id=cid)
        return accepted(cid)
    return await answer_from_outcome(web, document)


async def _enqueue(web: Web, entry: Entry, record_key: str, command: SignUp) -> str | None:
    if record_key:
        return await web.idempotency.enqueue(
            record_key,
            str(command.command_id),
            str(command.user_id),
            command.password_hash,
            entry,
            outcome_ttl_ms=web.settings.outcome_ttl_seconds * 1000,
        )
    entry_id: str = await web.commands.script(
        _ENQUEUE,
        [entry.stream, entry.outcome_key],
        [entry.pending, web.settings.outcome_ttl_seconds * 1000, *entry.flat_fields()],
    )
    return entry_id
