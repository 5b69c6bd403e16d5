"""Reading a JSON request body within limits: type, size, time, syntax."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any, TypeVar

import anyio
import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from api.problems import Problem, invalid, pointer

M = TypeVar("M", bound=BaseModel)

FORM = "application/x-www-form-urlencoded"
# Member names are echoed in the problem's detail; a hostile one may be 64 KiB long.
_SHOWN_NAME_MAX = 64


class _DuplicateMember(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _too_large(limit: int) -> Problem:
    return Problem(
        413, "content-too-large", "Content too large", f"The body must be at most {limit} bytes."
    )


def _malformed(detail: str) -> Problem:
    return Problem(400, "malformed-json", "Malformed JSON", detail)


def _unique_members(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise _DuplicateMember(name)
        seen.add(name)


def _check_unique_members(body: bytes) -> None:
    """Refuse an object that names a member twice.

    orjson silently keeps the last one, so ``{"email": "a@x", "email": "b@y"}`` would mean
    one thing to us and maybe another to a proxy, a WAF or a log reader that keeps the
    first. The standard library's parser reports every object's pairs before building it;
    it runs only on bodies orjson accepted (so valid UTF-8 of at most ``limit`` bytes), and
    its result is thrown away. Cost: about 10 µs for a signup body, about 3 ms for a
    64 KiB body of thousands of members (orjson itself takes 1-2 ms on those).
    """
    try:
        json.loads(body, object_pairs_hook=_unique_members)
    except _DuplicateMember as exc:
        shown = orjson.dumps(exc.name[:_SHOWN_NAME_MAX]).decode()
        raise Problem(
            400,
            "duplicate-member",
            "Duplicate JSON member",
            f"A member name appears twice in one object: {shown}.",
        ) from None
    except RecursionError:
        # orjson accepts up to 1024 levels; the standard library's C parser shares Python's
        # recursion limit and gives up earlier. No valid request nests at all.
        raise _malformed("The body is not valid JSON: nested too deeply.") from None


async def _read(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_form(request: Request) -> bool:
    return _media_type(request) == FORM


async def read_json(request: Request, limit: int, read_seconds: float) -> Any:
    """The parsed body, or a Problem: 415 not JSON, 413 over ``limit`` bytes, 408 not all
    there within ``read_seconds``, 400 cut short, not JSON or a member named twice."""
    media_type = _media_type(request)
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "Send the body as application/json.",
            headers={"Accept-Post": "application/json"},
        )
    body = await _read_within(request, limit, read_seconds)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _malformed(f"The body is not valid JSON: {exc}") from None
    _check_unique_members(body)
    return parsed


async def read_form(request: Request, limit: int, read_seconds: float) -> dict[str, str]:
    """An HTML form's fields (``application/x-www-form-urlencoded``), within the same limits
    as ``read_json``; a field named twice is a 400, as in JSON."""
    body = await _read_within(request, limit, read_seconds)
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("ascii"), keep_blank_values=True, strict_parsing=False, max_num_fields=16
        )
    except (UnicodeDecodeError, ValueError):
        raise Problem(400, "malformed-form", "Malformed form", "The form is not valid.") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise Problem(400, "malformed-form", "Malformed form", "A field appears twice.")
        fields[name] = value
    return fields


async def _read_within(request: Request, limit: int, read_seconds: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    try:
        # uvicorn times out idle connections between requests, never a body in progress:
        # without this, a client sending a byte a minute holds a connection (and this
        # task) for as long as it likes. The bound is on the whole body, not on each read,
        # so trickling faster does not help.
        with anyio.fail_after(read_seconds):
            return await _read(request, limit)
    except ClientDisconnect:
        # Nobody will read this answer, but a client hanging up mid-body is the client's
        # doing: it is logged and counted as a 4xx, not as a server failure (500).
        raise Problem(
            400,
            "incomplete-body",
            "Incomplete body",
            "The connection closed before the whole body arrived.",
        ) from None
    except TimeoutError:
        raise Problem(
            408,
            "request-timeout",
            "Request timeout",
            f"The body did not arrive within {read_seconds:g} seconds.",
            # The rest of the body may still be on its way: end the connection rather than
            # read it as the next request (RFC 9110, section 15.5.9).
            headers={"Connection": "close"},
        ) from None


def parse_model(model: type[M], body: Any) -> M:
    """``body`` (parsed JSON) as ``model``, or a 422 problem naming each invalid member."""
    if not isinstance(body, dict):
        raise invalid([{"pointer": "", "detail": "The body must be a JSON object."}])
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid(
            [
                {"pointer": pointer(*e["loc"]) if e["loc"] else "", "detail": e["msg"]}
                for e in exc.errors(include_url=False, include_input=False)
            ]
        ) from None
