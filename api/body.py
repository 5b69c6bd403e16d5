"""Reading a JSON request body within limits: type, size, syntax."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from api.problems import Problem


def _too_large(limit: int) -> Problem:
    return Problem(
        413, "content-too-large", "Content too large", f"The body must be at most {limit} bytes."
    )


async def read_json(request: Request, limit: int) -> Any:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
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
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise Problem(
            400, "malformed-json", "Malformed JSON", f"The body is not valid JSON: {exc}"
        ) from None
