"""RFC 9457 problem details: every error the API sends is ``application/problem+json``.

One exception type (``Problem``) carries an error to the edge; one handler per error family
turns it into a response, looked up by class ancestry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from loguru import logger
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from domain.errors import CommandNotFound, DomainError, InvalidSignup, UserNotFound

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error response: ``slug`` names its type, documented under ``/problems/{slug}``."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})

    def document(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"/problems/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        return body

    def body(self) -> bytes:
        return orjson.dumps(self.document())

    def response(self) -> Response:
        return Response(self.body(), self.status, self.headers, media_type=PROBLEM_JSON)


def pointer(field: str | int, *rest: str | int) -> str:
    """A JSON pointer (RFC 6901) to a member of the request body."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in (field, *rest)]
    return "/" + "/".join(parts)


def invalid(errors: list[dict[str, str]]) -> Problem:
    return Problem(
        422,
        "validation-error",
        "Your request is not valid",
        "One or more fields are invalid; see errors.",
        errors=errors,
    )


def unavailable(detail: str, retry_after: int = 1) -> Problem:
    return Problem(
        503,
        "service-unavailable",
        "Service unavailable",
        detail,
        headers={"Retry-After": str(retry_after)},
    )


def _from_domain(exc: DomainError) -> Problem:
    if isinstance(exc, InvalidSignup):
        return invalid([{"pointer": pointer(e.field), "detail": e.message} for e in exc.errors])
    if isinstance(exc, UserNotFound):
        return Problem(404, "not-found", "Not found", "No user has this id.")
    if isinstance(exc, CommandNotFound):
        return Problem(404, "not-found", "Not found", "No command has this id.")
    return Problem(400, "bad-request", "Bad request", str(exc))


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response()


async def on_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return _from_domain(exc).response()


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    titles = {404: "Not found", 405: "Method not allowed"}
    slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    title = titles.get(exc.status_code, "HTTP error")
    return Problem(exc.status_code, slug, title, str(exc.detail), headers=exc.headers).response()


async def on_redis_down(request: Request, exc: Exception) -> Response:
    logger.warning("redis.unavailable", error=type(exc).__name__)
    return unavailable("The command queue is unreachable; try again shortly.").response()


async def on_unexpected(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log (without local variables); the client sees no internals.
    logger.opt(exception=exc).error("request.failed")
    # Starlette answers this from its outermost layer, past the one that adds the ids to
    # responses: add them here, so the client can quote the id the log line carries.
    ids = {
        header: value
        for header, key in (("X-Request-ID", "request_id"), ("X-Correlation-ID", "correlation_id"))
        if (value := getattr(request.state, key, None)) is not None
    }
    return Problem(
        500, "internal-error", "Internal server error", "The server failed to answer.", headers=ids
    ).response()


EXCEPTION_HANDLERS = {
    Problem: on_problem,
    DomainError: on_domain_error,
    HTTPException: on_http_exception,
    RedisConnectionError: on_redis_down,
    RedisTimeoutError: on_redis_down,
    Exception: on_unexpected,
}
