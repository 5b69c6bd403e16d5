"""The yardstick: the seed's design, plainly, in one process. Not part of the service.

``uvicorn --factory bench.baseline:create_app`` serves it. What the seed did:

* ``POST /signup`` validates (pydantic, email-validator), hashes with bcrypt in a thread,
  and writes ``users`` and ``users_read`` in ONE asyncpg transaction inside the request;
* ``Idempotency-Key`` replays come from an in-memory dict (24 h), so they are per process;
* ``GET /users/{id}`` reads ``users_read`` by primary key;
* every response carries ``X-Request-ID``.

The schema is the service's own (``python -m storage.migrate``). Settings from the
environment: ``DATABASE_URL``, ``BCRYPT_ROUNDS`` (default 12), ``PORT`` (uvicorn's), and the
pool size ``DB_POOL_MIN`` / ``DB_POOL_MAX`` (1 / 10, the service's defaults).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio.to_thread
import asyncpg
import bcrypt
import orjson
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

IDEMPOTENCY_TTL_SECONDS = 86_400

_INSERT_USER = """
INSERT INTO users (id, name, email, password_hash) VALUES ($1, $2, $3, $4)
RETURNING created_at
"""
_INSERT_READ = """
INSERT INTO users_read (id, name, email, display_name, created_at) VALUES ($1, $2, $3, $4, $5)
"""
_SELECT_READ = """
SELECT id, name, email, display_name, created_at FROM users_read WHERE id = $1
"""


class SignupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    email: str = Field(max_length=320)
    password: str = Field(min_length=8, max_length=72)
    display_name: str | None = Field(default=None, max_length=255)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        try:
            return validate_email(value, check_deliverability=False).normalized.lower()
        except EmailNotValidError as exc:
            raise ValueError(str(exc)) from None


@dataclass
class State:
    rounds: int
    pool: asyncpg.Pool | None = None
    # Idempotency-Key -> (stored at, status, body, Location).
    idempotency: dict[str, tuple[float, int, bytes, str]] = field(default_factory=dict)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _problem(status: int, title: str, detail: Any) -> Response:
    body = {"title": title, "status": status, "detail": detail}
    return Response(orjson.dumps(body), status, media_type="application/problem+json")


def _user_document(
    user_id: uuid.UUID, name: str, email: str, display_name: str, created_at: datetime
) -> dict[str, str]:
    return {
        "id": str(user_id),
        "name": name,
        "email": email,
        "display_name": display_name,
        "created_at": created_at.isoformat(),
    }


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app() -> Starlette:
    database_url = os.environ.get("DATABASE_URL", "postgresql://root@127.0.0.1:5432/root")
    state = State(rounds=int(os.environ.get("BCRYPT_ROUNDS", "12")))
    pool_min = int(os.environ.get("DB_POOL_MIN", "1"))
    pool_max = int(os.environ.get("DB_POOL_MAX", "10"))

    def pool() -> asyncpg.Pool:
        assert state.pool is not None
        return state.pool

    def hash_password(password: str) -> str:
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(state.rounds)).decode()

    async def signup(request: Request) -> Response:
        key = request.headers.get("idempotency-key")
        if key is not None:
            stored = state.idempotency.get(key)
            if stored is not None and time.monotonic() - stored[0] < IDEMPOTENCY_TTL_SECONDS:
                _, status, body, location = stored
                headers = {"Idempotent-Replayed": "true"}
                if location:
                    headers["Location"] = location
                return Response(body, status, headers, media_type="application/json")
        try:
            data = SignupIn.model_validate(orjson.loads(await request.body()))
        except orjson.JSONDecodeError:
            return _problem(400, "Malformed JSON", "The body is not valid JSON.")
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            return _problem(422, "Invalid request", errors)
        password_hash = await anyio.to_thread.run_sync(hash_password, data.password)
        user_id = uuid.uuid4()
        display_name = data.display_name or data.name
        async with pool().acquire() as conn:
            try:
                async with conn.transaction():
                    created_at = await conn.fetchval(
                        _INSERT_USER, user_id, data.name, data.email, password_hash
                    )
                    await conn.execute(
                        _INSERT_READ, user_id, data.name, data.email, display_name, created_at
                    )
            except asyncpg.UniqueViolationError:
                return _problem(409, "Email already registered", "The email is taken.")
        body = orjson.dumps(
            _user_document(user_id, data.name, data.email, display_name, created_at)
        )
        location = f"/users/{user_id}"
        if key is not None:
            state.idempotency[key] = (time.monotonic(), 201, body, location)
        return Response(body, 201, {"Location": location}, media_type="application/json")

    async def get_user(request: Request) -> Response:
        try:
            user_id = uuid.UUID(request.path_params["user_id"])
        except ValueError:
            return _problem(404, "Not found", "No such user.")
        row = await pool().fetchrow(_SELECT_READ, user_id)
        if row is None:
            return _problem(404, "Not found", "No such user.")
        return _json(
            _user_document(
                row["id"], row["name"], row["email"], row["display_name"], row["created_at"]
            )
        )

    async def health(request: Request) -> Response:
        return _json({"status": "healthy", "service": "baseline"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.pool = await asyncpg.create_pool(database_url, min_size=pool_min, max_size=pool_max)
        try:
            yield
        finally:
            await state.pool.close()

    return Starlette(
        routes=[
            Route("/signup", signup, methods=["POST"]),
            Route("/users/{user_id}", get_user, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        middleware=[Middleware(RequestIdMiddleware)],
        lifespan=lifespan,
    )
