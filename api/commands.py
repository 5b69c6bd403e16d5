"""The web's half of the command bus: put a command on the stream and wait for its reply.

Every route that changes state goes through ``dispatch``: a PRODUCER span whose context
travels in the entry, the pending outcome and the entry written in one script, the reply
awaited on this process's reply channel (``api.replies``), and the answer rebuilt from the
outcome. Nothing here names a command type.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from loguru import logger
from opentelemetry.trace import SpanKind

from api.idempotency import Entry
from api.problems import PROBLEM_JSON, Problem
from domain.handlers import EMAIL_TAKEN, INVALID_TOKEN
from domain.model import Command
from observability import tracing
from storage import streams
from storage.outcomes import FAILED, PENDING_JSON, SUCCEEDED
from storage.read_model import read_user

if TYPE_CHECKING:
    from bootstrap import Web

# Without an Idempotency-Key: the pending outcome and the entry, both or neither.
# KEYS: stream, command outcome key. ARGV: pending outcome, outcome TTL ms, field/value pairs.
_ENQUEUE = """
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2], 'NX')
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
"""

# A domain refusal's reason to the problem a client gets for it.
_REFUSALS = {
    EMAIL_TAKEN: (409, "Email already registered"),
    INVALID_TOKEN: (400, "Invalid or expired token"),
}


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer, as stored for replays: status, exact body bytes, Location."""

    status: int
    body: bytes
    media_type: str = "application/json"
    location: str = ""
    replayed: bool = False
    retry_after: int | None = None


def problem_answer(problem: Problem) -> Answer:
    return Answer(problem.status, problem.body(), PROBLEM_JSON, retry_after=None)


def outcome_problem(document: dict[str, Any]) -> Problem:
    """The problem a failed command's outcome stands for."""
    refusal = _REFUSALS.get(document.get("reason", ""))
    if refusal is not None:
        status, title = refusal
        return Problem(status, document["reason"], title, document["detail"])
    return Problem(
        500, "command-failed", "The command could not be processed", document.get("detail", "")
    )


async def answer_from_outcome(web: Web, outcome: dict[str, Any], *, created: bool) -> Answer:
    """The answer a settled command stands for: the user it left (``201`` + ``Location``
    when ``created``, else ``200``), or its problem. A success published to the waiting
    request carries the user; the stored copy names it, and the read model has it."""
    if outcome["status"] == FAILED:
        return problem_answer(outcome_problem(outcome))
    assert outcome["status"] == SUCCEEDED
    status = 201 if created else 200
    if "user" in outcome:
        user = outcome["user"]
        location = f"/users/{user['id']}" if created else ""
        return Answer(status, orjson.dumps(user), location=location)
    user_id = outcome["user_id"]
    document = await read_user(web.commands, web.keys, web.users, uuid.UUID(user_id))
    if document is None:
        raise LookupError(f"command succeeded but user {user_id} is in no read model")
    return Answer(status, document.encode(), location=f"/users/{user_id}" if created else "")


def accepted(command_id: str) -> Answer:
    body = orjson.dumps({"command_id": command_id, "status": "pending"})
    return Answer(202, body, location=f"/commands/{command_id}")


Enqueue = Callable[[Entry], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Dispatched:
    """``entry_id`` None: the enqueue step refused (an idempotency lease lost). ``outcome``
    None: no reply within the wait (the command is on its way)."""

    entry_id: str | None
    outcome: dict[str, Any] | None = None


async def plain_enqueue(web: Web, entry: Entry) -> str | None:
    entry_id: str = await web.commands.script(
        _ENQUEUE,
        [entry.stream, entry.outcome_key],
        [entry.pending, web.settings.outcome_ttl_seconds * 1000, *entry.flat_fields()],
    )
    return entry_id


async def dispatch(
    web: Web,
    command: Command,
    *,
    request_id: str,
    correlation_id: str,
    enqueue: Enqueue | None = None,
    wait: bool = True,
) -> Dispatched:
    """Enqueue ``command`` (through ``enqueue``, e.g. the idempotency script, or the plain
    one) and, when ``wait``, wait up to ``REPLY_TIMEOUT_SECONDS`` for its outcome."""
    cid = str(command.command_id)
    with web.replies.expect(cid) if wait else contextlib.nullcontext():
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
                command,
                web.replies.channel(cid) if wait else "",
                streams.now_iso(),
                tracing.inject(),
                request_id,
                correlation_id,
            )
            entry = Entry(
                stream=web.keys.commands,
                fields=streams.encode(envelope),
                outcome_key=web.keys.command(cid),
                pending=PENDING_JSON,
            )
            entry_id = await (enqueue(entry) if enqueue else plain_enqueue(web, entry))
            if entry_id is None:
                return Dispatched(None)
            span.set_attribute("messaging.message.id", entry_id)
        web.metrics.enqueued.inc({})
        logger.debug("command.enqueued", command_id=cid, entry_id=entry_id, type=envelope.type)
        if not wait:
            return Dispatched(entry_id)
        started = time.perf_counter()
        outcome = await web.replies.wait(cid, within=web.settings.reply_timeout_seconds)
        web.metrics.reply_wait.observe({}, time.perf_counter() - started)
    if outcome is None:
        web.metrics.reply_timeouts.inc({})
        logger.info("command.reply_timeout", command_id=cid)
    return Dispatched(entry_id, outcome)


def replayed(answer: Answer) -> Answer:
    return dataclasses.replace(answer, replayed=True)
