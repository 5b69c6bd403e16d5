from __future__ import annotations

import anyio
import pytest
from starlette.requests import Request
from starlette.types import Message

from api.body import read_json
from api.problems import Problem

pytestmark = pytest.mark.anyio

LIMIT = 64 * 1024
JSON_HEADERS = [(b"content-type", b"application/json")]


def request(*chunks: bytes, pause: float = 0.0, declared: int | None = None) -> Request:
    """A POST whose body arrives in ``chunks``, ``pause`` seconds apart."""
    headers = list(JSON_HEADERS)
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    pending = list(chunks)

    async def receive() -> Message:
        await anyio.sleep(pause)
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    scope = {"type": "http", "method": "POST", "path": "/signup", "headers": headers}
    return Request(scope, receive)


async def problem_of(req: Request, read_seconds: float = 5.0) -> Problem:
    with pytest.raises(Problem) as caught:
        await read_json(req, LIMIT, read_seconds)
    return caught.value


async def test_a_body_in_pieces_is_parsed_whole() -> None:
    req = request(b'{"name": ', b'"Ann"}')

    assert await read_json(req, LIMIT, 5.0) == {"name": "Ann"}


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1, "a": 2}',
        b'{"a": 1, "\\u0061": 2}',
        b'{"a": {"b": 1, "b": 1}}',
        b'[{"a": 1}, {"a": 1, "a": 1}]',
    ],
    ids=["top-level", "escaped", "nested", "in-array"],
)
async def test_a_member_named_twice_is_400(body: bytes) -> None:
    problem = await problem_of(request(body))

    assert problem.status == 400
    assert problem.slug == "duplicate-member"
    assert '"a"' in problem.detail or '"b"' in problem.detail


async def test_the_same_name_in_two_objects_is_fine() -> None:
    body = b'[{"a": 1}, {"a": 2}]'

    assert await read_json(request(body), LIMIT, 5.0) == [{"a": 1}, {"a": 2}]


async def test_a_long_duplicate_name_is_cut_in_the_detail() -> None:
    name = "n" * 10_000
    body = b'{"%s": 1, "%s": 2}' % (name.encode(), name.encode())

    problem = await problem_of(request(body))

    assert problem.slug == "duplicate-member"
    assert len(problem.detail) < 200


async def test_nesting_orjson_takes_but_the_check_cannot_is_400_not_a_crash() -> None:
    # 1,000 levels: within orjson's 1,024, past the standard library's recursion limit.
    problem = await problem_of(request(b"[" * 1000 + b"]" * 1000))

    assert problem.status == 400
    assert problem.slug == "malformed-json"
    assert "nested too deeply" in problem.detail


async def test_a_body_not_all_there_in_time_is_408_and_closes_the_connection() -> None:
    req = request(b"{", b"}", pause=0.3)

    problem = await problem_of(req, read_seconds=0.4)

    assert problem.status == 408
    assert problem.slug == "request-timeout"
    assert problem.headers == {"Connection": "close"}


async def test_the_time_bound_is_on_the_whole_body_not_on_each_piece() -> None:
    # Every piece comes well within the bound; all of them together do not.
    req = request(b"[", b"1", b",", b"2", b"]", pause=0.1)

    problem = await problem_of(req, read_seconds=0.35)

    assert problem.status == 408


async def test_a_client_hanging_up_mid_body_is_a_4xx_not_a_server_failure() -> None:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": b'{"na', "more_body": True}

    scope = {"type": "http", "method": "POST", "path": "/signup", "headers": JSON_HEADERS}

    problem = await problem_of(Request(scope, receive))

    assert problem.status == 400
    assert problem.slug == "incomplete-body"


async def test_a_declared_length_over_the_limit_is_413_without_reading() -> None:
    req = request(b"{}", pause=60, declared=LIMIT + 1)

    with anyio.fail_after(1):
        problem = await problem_of(req)

    assert problem.status == 413
