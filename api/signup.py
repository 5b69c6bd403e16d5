"""The web side of a signup: reserve the idempotency key, hash, enqueue, wait for the reply.

The route hands a validated ``SignupData`` to ``submit_signup``; everything about the
command's journey from here to the HTTP answer is in this module.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import anyio
import orjson
from loguru import logger
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError

from api.idempotency import COMPLETED, RESERVED, Entry, Record, fingerprint
from api.problems import PROBLEM_JSON, Problem
from domain.handlers import EMAIL_TAKEN
from domain.ids import uuid7
from domain.model import SignUp
from domain.rules import SignupData
from observability import tracing
from storage import streams
from storage.outcomes import FAILED, SUCCEEDED, final, pending_json

if TYPE_CHECKING:
    from bootstrap import Web

SIGNUP_PATH = "/signup"
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


def answer_from_outcome(document_text: str) -> Answer:
    document = orjson.loads(document_text)
    if document["status"] == SUCCEEDED:
        user = document["user"]
        return Answer(201, orjson.dumps(user), location=f"/users/{user['id']}")
    assert document["status"] == FAILED
    return _problem_answer(outcome_problem(document))


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


async def _replay(web: Web, key: str, record: Record, password: str) -> Answer:
    """The answer to a request whose key another request already holds."""
    if record.state == RESERVED:
        return _in_flight()
    if not await web.hasher.verify(password, record.password_hash):
        return _key_reused()
    if record.state == COMPLETED:
        return Answer(
            record.status,
            record.body.encode(),
            PROBLEM_JSON if record.status >= 400 else "application/json",
            record.location,
            replayed=True,
        )
    # Enqueued: the first request timed out (202) or is still waiting; the worker may
    # have finished since.
    document = final(cast(str | None, await web.redis.get(web.keys.command(record.command_id))))
    if document is None:
        return _in_flight()
    answer = answer_from_outcome(document)
    await web.idempotency.complete(
        key, record.command_id, answer.status, answer.body, answer.location
    )
    return Answer(answer.status, answer.body, answer.media_type, answer.location, replayed=True)


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
    token = cid
    record_key = ""
    if idempotency_key is not None:
        record_key = web.keys.idempotency("POST", SIGNUP_PATH, idempotency_key)
        fp = fingerprint("POST", SIGNUP_PATH, body)
        found = await web.idempotency.reserve(record_key, token, fp)
        if found is not None:
            answer = (
                _key_reused()
                if found.fingerprint != fp
                else await _replay(web, record_key, found, data.password)
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
                    pending=pending_json(cid),
                )
                entry_id = await _enqueue(web, entry, record_key, token, command)
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
                await web.idempotency.release(record_key, token)

    if document is None:
        web.metrics.reply_timeouts.inc({})
        logger.info("command.reply_timeout", command_id=cid)
        return accepted(cid)
    answer = answer_from_outcome(document)
    if record_key:
        await web.idempotency.complete(record_key, cid, answer.status, answer.body, answer.location)
    return answer


async def _enqueue(
    web: Web, entry: Entry, record_key: str, token: str, command: SignUp
) -> str | None:
    if record_key:
        return await web.idempotency.enqueue(
            record_key,
            token,
            str(command.command_id),
            command.password_hash,
            entry,
            outcome_ttl_ms=web.settings.outcome_ttl_seconds * 1000,
        )
    async with web.redis.pipeline(transaction=True) as pipe:
        pipe.set(entry.outcome_key, entry.pending, px=web.settings.outcome_ttl_seconds * 1000)
        pipe.xadd(entry.stream, entry.fields)  # type: ignore[arg-type]
        _, entry_id = await pipe.execute()
    return str(entry_id)
