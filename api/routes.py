"""HTTP endpoints. Each one parses its input, hands it on, and shapes the answer."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import orjson
import psutil
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.body import parse_model, read_json
from api.commands import Answer, outcome_problem
from api.idempotency import InvalidKey, check_key
from api.openapi import openapi_document
from api.problems import Problem
from api.schemas import SignupRequest
from api.signup import signup_outcome, submit_signup
from api.verification import resend, verify_email
from domain.errors import CommandNotFound, DomainError, UserNotFound
from domain.ids import parse_uuid
from domain.rules import validate_signup
from observability.metrics import exposition
from storage.outcomes import FAILED, SUCCEEDED
from storage.read_model import read_user

if TYPE_CHECKING:
    from bootstrap import Web

JSON = "application/json"
# A readiness probe must answer even when a dependency hangs.
CHECK_TIMEOUT_SECONDS = 1.0


def _web(request: Request) -> Web:
    web: Web = request.state.web
    return web


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status, headers, media_type=JSON)


def _respond(answer: Answer) -> Response:
    headers: dict[str, str] = {}
    if answer.location:
        headers["Location"] = answer.location
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    if answer.retry_after is not None:
        headers["Retry-After"] = str(answer.retry_after)
    return Response(answer.body, answer.status, headers, media_type=answer.media_type)


async def signup(request: Request) -> Response:
    web = _web(request)
    try:
        answer = await _signup(request, web)
    except RedisError:
        web.metrics.signups.inc({"outcome": "unavailable"})
        raise
    except Problem as problem:
        outcome = "rate_limited" if problem.status == 429 else "invalid"
        web.metrics.signups.inc({"outcome": outcome})
        raise
    except DomainError:
        web.metrics.signups.inc({"outcome": "invalid"})
        raise
    web.metrics.signups.inc({"outcome": signup_outcome(answer)})
    return _respond(answer)


async def _signup(request: Request, web: Web) -> Answer:
    # First, before any parsing or hashing: a flood should cost as little as possible.
    await web.rate_limiter.check("signup", request.client.host if request.client else "-")
    key_header = request.headers.get("idempotency-key")
    try:
        key = None if key_header is None else check_key(key_header)
    except InvalidKey as exc:
        raise Problem(400, "invalid-idempotency-key", "Invalid Idempotency-Key", str(exc)) from None
    body = await read_json(
        request, web.settings.max_body_bytes, web.settings.body_read_timeout_seconds
    )
    parsed = parse_model(SignupRequest, body)
    data = validate_signup(parsed.name, parsed.email, parsed.password, parsed.display_name)
    return await submit_signup(
        web,
        data,
        body,
        key,
        request_id=request.state.request_id,
        correlation_id=request.state.correlation_id,
    )


async def get_user(request: Request) -> Response:
    web = _web(request)
    text = request.path_params["user_id"]
    user_id = parse_uuid(text)
    if user_id is None:
        raise UserNotFound(text)
    document = await read_user(web.commands, web.keys, web.users, user_id)
    if document is None:
        raise UserNotFound(text)
    return _json(document.encode())


async def get_command(request: Request) -> Response:
    web = _web(request)
    text = request.path_params["command_id"]
    command_id = parse_uuid(text)
    stored = (
        None if command_id is None else await web.commands.execute("GET", web.keys.command(text))
    )
    if stored is None:
        raise CommandNotFound(text)
    document = orjson.loads(stored)
    view: dict[str, Any] = {"command_id": text, "status": document["status"]}
    if document["status"] == SUCCEEDED and "user_id" in document:
        user = await read_user(web.commands, web.keys, web.users, uuid.UUID(document["user_id"]))
        view["user"] = None if user is None else orjson.Fragment(user)
    elif document["status"] == FAILED:
        view["problem"] = outcome_problem(document).document()
    return _json(orjson.dumps(view))


async def health(request: Request) -> Response:
    web = _web(request)
    body = {
        "status": "healthy",
        "service": web.settings.service_name,
        "uptime_seconds": round(time.monotonic() - web.started_at, 3),
    }
    return _json(orjson.dumps(body))


async def _timed(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
            await check()
    except Exception as exc:
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:200]}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _usage(percent: float, limit: float, name: str) -> dict[str, Any]:
    check: dict[str, Any] = {"ok": percent <= limit, "usage_percent": percent}
    if percent > limit:
        check["detail"] = f"{name} use {percent}% is above {limit}%"
    return check


async def ready(request: Request) -> Response:
    web = _web(request)
    s = web.settings
    checks = {
        "postgres": await _timed(lambda: web.pool.fetchval("SELECT 1")),
        "redis": await _timed(web.redis.ping),
        # interval=None compares with the previous call: no sleep inside a probe.
        "cpu": _usage(psutil.cpu_percent(interval=None), s.ready_max_cpu_percent, "CPU"),
        "memory": _usage(psutil.virtual_memory().percent, s.ready_max_memory_percent, "memory"),
        "disk": _usage(psutil.disk_usage("/").percent, s.ready_max_disk_percent, "disk"),
    }
    ok = all(c["ok"] for c in checks.values())
    body = {"status": "ready" if ok else "not_ready", "checks": checks}
    return _json(orjson.dumps(body), 200 if ok else 503)


async def openapi(request: Request) -> Response:
    return _json(openapi_document())


async def metrics(request: Request) -> Response:
    web = _web(request)
    content, headers = exposition(web.metrics.registry, web.metrics.process)
    return Response(content, 200, headers)


ROUTES = [
    Route("/signup", signup, methods=["POST"]),
    Route("/users/{user_id}", get_user, methods=["GET"]),
    Route("/commands/{command_id}", get_command, methods=["GET"]),
    Route("/verify-email", verify_email, methods=["GET", "POST"]),
    Route("/verify-email/resend", resend, methods=["POST"]),
    Route("/health", health, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
