"""Hostile input against the real processes: broken encodings, absurd sizes and depths,
duplicate members, wrong types, odd but valid addresses, byte-exact password limits, bad
header bytes, header floods, slow bodies, unknown methods and path tricks.

Requests whose bytes matter are written to a socket as they are (httpx would encode,
normalise or refuse them). Where the app answers, the answer is a problem document of the
right type; where uvicorn answers first (a request it cannot parse), it is a 4xx or a
closed connection, never a 5xx and never a hang.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from storage.keys import Keys
from tests.e2e.conftest import Stack, running_stack
from tests.prometheus_text import parse, total

PROBLEM_JSON = "application/problem+json"
# Longer than this for one exchange is a hang.
ANSWER_WITHIN = 5.0


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict[str, Any]:
        assert self.headers["content-type"] == PROBLEM_JSON, self.headers
        document: dict[str, Any] = orjson.loads(self.body)
        assert document["status"] == self.status
        return document


def address(stack: Stack) -> tuple[str, int]:
    parts = urlsplit(stack.base_url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def compose(start: bytes, headers: list[bytes], body: bytes = b"") -> bytes:
    lines = [start, b"Host: test", b"Connection: close", *headers]
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


def post_signup(body: bytes, *headers: bytes) -> bytes:
    return compose(
        b"POST /signup HTTP/1.1",
        [b"Content-Type: application/json", b"Content-Length: %d" % len(body), *headers],
        body,
    )


def get(path: bytes, *headers: bytes) -> bytes:
    return compose(b"GET " + path + b" HTTP/1.1", list(headers))


def read_reply(sock: socket.socket) -> Reply | None:
    """The response on ``sock``, or None when the server closed it without one."""
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
    except (http.client.RemoteDisconnected, ConnectionResetError):
        return None
    headers = {name.lower(): value for name, value in response.getheaders()}
    return Reply(response.status, headers, response.read())


def exchange(stack: Stack, request: bytes, within: float = ANSWER_WITHIN) -> Reply | None:
    """Send ``request`` byte for byte; a socket timeout (the server hangs) fails the test."""
    with socket.create_connection(address(stack), timeout=within) as sock:
        # The server may answer (and close) before it has read everything, e.g. a 413.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return read_reply(sock)


def answer(stack: Stack, request: bytes) -> Reply:
    reply = exchange(stack, request)
    assert reply is not None, "the server closed the connection without an answer"
    return reply


def signup_json(**members: Any) -> dict[str, Any]:
    return {
        "name": "Ann Example",
        "email": f"{uuid.uuid4().hex}@example.com",
        "password": "correct horse battery",
        **members,
    }


def pointers(reply: Reply) -> set[str]:
    return {e["pointer"] for e in reply.problem()["errors"]}


def http_reply(response: httpx.Response) -> Reply:
    return Reply(response.status_code, dict(response.headers), response.content)


# --- Encodings, characters, sizes -------------------------------------------------------


def test_invalid_utf8_in_the_body_is_malformed_json(stack: Stack) -> None:
    body = b'{"name": "Ann \xff\xfe", "email": "ann@example.com", "password": "12345678"}'

    reply = answer(stack, post_signup(body))

    assert reply.status == 400
    assert reply.problem()["type"] == "/problems/malformed-json"


def test_a_raw_control_byte_inside_a_json_string_is_malformed_json(stack: Stack) -> None:
    # JSON allows control characters in strings only escaped.
    body = b'{"name": "Ann\x01", "email": "ann@example.com", "password": "12345678"}'

    reply = answer(stack, post_signup(body))

    assert reply.status == 400
    assert reply.problem()["type"] == "/problems/malformed-json"


@pytest.mark.parametrize("member", ["name", "display_name"])
@pytest.mark.parametrize(
    "text",
    ["Ann\x00Example", "Ann\x07", "\x1b[31mAnn", "Ann\x7f", "Ann\x85Example", "Ann\nExample"],
    ids=["nul", "bell", "ansi-escape", "del", "c1-next-line", "newline"],
)
def test_control_characters_in_names_are_refused(
    http: httpx.Client, member: str, text: str
) -> None:
    reply = http_reply(http.post("/signup", json=signup_json(**{member: text})))

    assert reply.status == 422
    assert reply.problem()["type"] == "/problems/validation-error"
    assert pointers(reply) == {f"/{member}"}


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("name", "n" * 10_000),
        ("display_name", "d" * 10_000),
        ("email", "e" * 9_988 + "@example.com"),
        ("password", "p" * 10_000),
    ],
    ids=["name", "display_name", "email", "password"],
)
def test_ten_thousand_character_fields_are_refused(
    http: httpx.Client, member: str, value: str
) -> None:
    reply = http_reply(http.post("/signup", json=signup_json(**{member: value})))

    assert reply.status == 422
    assert reply.problem()["type"] == "/problems/validation-error"
    assert pointers(reply) == {f"/{member}"}


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 32_000 + b"]" * 32_000,  # 64,000 bytes: far past orjson's 1,024 levels
        b"[" * 65_000,  # never closed
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        # orjson takes 1,000 levels; the duplicate-member check's parser does not.
        b"[" * 1_000 + b"]" * 1_000,
    ],
    ids=["32000-arrays", "65000-open-arrays", "10000-objects", "1000-arrays"],
)
def test_deeply_nested_json_is_malformed_never_a_crash(stack: Stack, body: bytes) -> None:
    assert len(body) <= 64 * 1024

    reply = answer(stack, post_signup(body))

    assert reply.status == 400
    assert reply.problem()["type"] == "/problems/malformed-json"
    assert answer(stack, get(b"/health")).status == 200


def test_shallow_nesting_the_parser_takes_is_still_not_a_signup(stack: Stack) -> None:
    reply = answer(stack, post_signup(b"[" * 500 + b"]" * 500))

    assert reply.status == 422
    assert reply.problem()["errors"] == [
        {"pointer": "", "detail": "The body must be a JSON object."}
    ]


# --- Size limits and framing ------------------------------------------------------------

OVERSIZED = orjson.dumps(signup_json(name="x" * 100 * 1024))


def test_a_body_over_64_kib_is_413(stack: Stack) -> None:
    reply = answer(stack, post_signup(OVERSIZED))

    assert reply.status == 413
    assert reply.problem()["type"] == "/problems/content-too-large"


def test_a_declared_length_over_the_limit_is_413_before_any_body_arrives(stack: Stack) -> None:
    # The header says 70,000 bytes; only two follow. The answer must not wait for the rest.
    request = compose(
        b"POST /signup HTTP/1.1",
        [b"Content-Type: application/json", b"Content-Length: 70000"],
        b"{}",
    )
    started = time.monotonic()

    reply = answer(stack, request)

    assert time.monotonic() - started < 2
    assert reply.status == 413
    assert reply.problem()["type"] == "/problems/content-too-large"


def test_a_content_length_shorter_than_the_body_reads_no_further(stack: Stack) -> None:
    # Declares 10 bytes, sends 100 KiB: the body is those 10 bytes (truncated JSON), and the
    # rest is never taken for a request of its own.
    request = compose(
        b"POST /signup HTTP/1.1",
        [b"Content-Type: application/json", b"Content-Length: 10"],
        OVERSIZED,
    )

    reply = answer(stack, request)

    assert reply.status == 400
    assert reply.problem()["type"] == "/problems/malformed-json"


def test_a_chunked_body_over_64_kib_without_content_length_is_413(stack: Stack) -> None:
    chunks = [OVERSIZED[i : i + 8192] for i in range(0, len(OVERSIZED), 8192)]
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    request = compose(
        b"POST /signup HTTP/1.1",
        [b"Content-Type: application/json", b"Transfer-Encoding: chunked"],
        body,
    )

    reply = answer(stack, request)

    assert reply.status == 413
    assert reply.problem()["type"] == "/problems/content-too-large"


@pytest.mark.parametrize(
    "framing",
    [
        [b"Content-Length: abc"],
        [b"Content-Length: -1"],
        [b"Content-Length: 2", b"Content-Length: 3"],
        [b"Content-Length: 2", b"Transfer-Encoding: chunked"],
    ],
    ids=["not-a-number", "negative", "two-lengths", "length-and-chunked"],
)
def test_ambiguous_framing_is_refused_by_the_server(stack: Stack, framing: list[bytes]) -> None:
    # Request smuggling needs two parsers to disagree on where a body ends; uvicorn refuses
    # to guess before the app sees anything.
    request = compose(
        b"POST /signup HTTP/1.1", [b"Content-Type: application/json", *framing], b"{}"
    )

    reply = exchange(stack, request)

    assert reply is None or reply.status == 400


def test_a_client_hanging_up_mid_body_is_not_counted_as_a_server_error(stack: Stack) -> None:
    def signup_statuses() -> dict[str, float]:
        samples = parse(httpx.get(f"{stack.base_url}/metrics").text)
        return {
            status: total(samples, "http_requests_total", route="/signup", status=status)
            for status in ("400", "500")
        }

    before = signup_statuses()
    with socket.create_connection(address(stack), timeout=ANSWER_WITHIN) as sock:
        request = compose(
            b"POST /signup HTTP/1.1",
            [b"Content-Type: application/json", b"Content-Length: 100"],
            b'{"name": "Ann',
        )
        sock.sendall(request)
        time.sleep(0.2)  # the app is reading the body when the client goes
    deadline = time.monotonic() + ANSWER_WITHIN
    while signup_statuses() == before and time.monotonic() < deadline:
        time.sleep(0.05)

    after = signup_statuses()
    assert after["500"] == before["500"]
    assert after["400"] == before["400"] + 1


# --- Duplicate members, wrong types ------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        b'{"name": "Ann", "email": "%(a)s", "email": "%(b)s", "password": "12345678"}',
        # The same name, once escaped: "em\\u0061il" is "email".
        b'{"name": "Ann", "email": "%(a)s", "em\\u0061il": "%(b)s", "password": "12345678"}',
        b'{"name": "Ann", "email": "%(a)s", "password": "12345678",'
        b' "x": {"email": "%(b)s", "email": "%(b)s"}}',
    ],
    ids=["top-level", "escaped-name", "nested"],
)
def test_a_member_named_twice_is_refused_and_nothing_is_created(
    stack: Stack, http: httpx.Client, template: bytes
) -> None:
    emails = {name: f"{uuid.uuid4().hex}@example.com" for name in ("a", "b")}

    reply = answer(
        stack, post_signup(template % {k.encode(): v.encode() for k, v in emails.items()})
    )

    assert reply.status == 400
    assert reply.problem()["type"] == "/problems/duplicate-member"
    for email in emails.values():  # neither address was taken
        again = http.post("/signup", json=signup_json(email=email))
        assert again.status_code == 201, again.text


@pytest.mark.parametrize("member", ["name", "email", "password", "display_name"])
@pytest.mark.parametrize(
    "value", [1, 1.5, True, None, {"a": "b"}, ["a"]], ids=lambda v: type(v).__name__
)
def test_a_non_string_where_a_string_belongs_is_422_at_its_pointer(
    http: httpx.Client, member: str, value: Any
) -> None:
    response = http.post("/signup", json=signup_json(**{member: value}))
    if member == "display_name" and value is None:
        # null means "not given": the display name defaults to the name.
        assert response.status_code == 201, response.text
        return
    reply = http_reply(response)

    assert reply.status == 422
    assert reply.problem()["type"] == "/problems/validation-error"
    assert pointers(reply) == {f"/{member}"}


# --- Addresses and passwords ------------------------------------------------------------


def test_a_unicode_domain_is_stored_normalised_and_its_punycode_spelling_is_taken(
    http: httpx.Client,
) -> None:
    local = f"user-{uuid.uuid4().hex[:12]}"

    created = http.post("/signup", json=signup_json(email=f"{local}@Bücher.example"))

    assert created.status_code == 201, created.text
    assert created.json()["email"] == f"{local}@bücher.example"
    assert http.get(created.headers["location"]).json()["email"] == f"{local}@bücher.example"
    again = http.post("/signup", json=signup_json(email=f"{local}@XN--BCHER-KVA.example"))
    assert again.status_code == 409
    assert again.json()["type"] == "/problems/email-taken"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ('"John..Doe.{t}"@example.com', '"john..doe.{t}"@example.com'),
        ("A+Tag.{t}@example.com", "a+tag.{t}@example.com"),
        ("O'Brien.{t}@example.com", "o'brien.{t}@example.com"),
        # Needless quotes are dropped: this is the plain address.
        ('"ann.{t}"@example.com', "ann.{t}@example.com"),
    ],
    ids=["quoted-double-dot", "plus-tag", "apostrophe", "needless-quotes"],
)
def test_odd_but_valid_local_parts_are_accepted(
    http: httpx.Client, given: str, stored: str
) -> None:
    tag = uuid.uuid4().hex[:12]

    created = http.post("/signup", json=signup_json(email=given.format(t=tag)))

    assert created.status_code == 201, created.text
    assert created.json()["email"] == stored.format(t=tag)
    again = http.post("/signup", json=signup_json(email=stored.format(t=tag).upper()))
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("password", "status"),
    [
        ("é" * 36, 201),  # 72 bytes of 2-byte characters
        ("€" * 24, 201),  # 72 bytes of 3-byte characters
        ("😀" * 18, 201),  # 72 bytes of 4-byte characters
        ("é" * 36 + "a", 422),  # 73 bytes
        ("😀" * 18 + "a", 422),  # 73 bytes, 19 characters
    ],
    ids=["72-bytes-2-byte", "72-bytes-3-byte", "72-bytes-4-byte", "73-bytes", "73-bytes-emoji"],
)
def test_the_password_limit_is_72_utf8_bytes(
    http: httpx.Client, password: str, status: int
) -> None:
    assert len(password.encode()) in (72, 73)

    response = http.post("/signup", json=signup_json(password=password))

    assert response.status_code == status, response.text
    if status == 422:
        assert pointers(http_reply(response)) == {"/password"}


# --- Header bytes and floods ------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [b"key\tkey", b"key key", b"key\xffkey", b"k" * 256],
    ids=["tab", "space", "obs-text-byte", "256-characters"],
)
def test_an_idempotency_key_the_server_passes_on_is_refused_by_the_app(
    stack: Stack, key: bytes
) -> None:
    reply = answer(stack, post_signup(b"{}", b"Idempotency-Key: " + key))

    assert reply.status == 400
    assert reply.problem()["type"] == "/problems/invalid-idempotency-key"


@pytest.mark.parametrize(
    "key", [b"key\x00key", b"key\x01key", b"key\x7fkey"], ids=["nul", "soh", "del"]
)
def test_an_idempotency_key_with_control_bytes_is_refused_by_the_server(
    stack: Stack, key: bytes
) -> None:
    # A field value may not hold control characters (RFC 9110, section 5.5): uvicorn
    # answers 400 itself, before the app.
    reply = answer(stack, post_signup(b"{}", b"Idempotency-Key: " + key))

    assert reply.status == 400


def flood(count: int, size: int) -> list[bytes]:
    return [b"X-Flood-%d: %s" % (i, b"v" * size) for i in range(count)]


@pytest.mark.parametrize(
    "headers",
    [flood(500, 8), flood(5_000, 8), flood(1, 100 * 1024)],
    ids=["500-headers", "5000-headers", "one-100-KiB-header"],
)
def test_a_header_flood_is_answered_or_cut_off_never_500_never_a_hang(
    stack: Stack, headers: list[bytes]
) -> None:
    reply = exchange(stack, get(b"/health", *headers))

    assert reply is None or reply.status < 500
    assert answer(stack, get(b"/health")).status == 200


def test_a_100_kib_header_is_refused(stack: Stack) -> None:
    reply = exchange(stack, get(b"/health", *flood(1, 100 * 1024)))

    assert reply is not None
    assert reply.status == 431


def test_a_100_kib_url_is_refused_by_the_server(stack: Stack) -> None:
    reply = exchange(stack, get(b"/health?" + b"q" * 100 * 1024))

    assert reply is None or reply.status in (400, 414)


# --- Slow bodies ------------------------------------------------------------------------

BODY_READ_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def slow_stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A web process of its own with a short body timeout, so the test waits seconds."""
    with running_stack(
        database_url,
        tmp_path_factory.mktemp("slow-body-logs"),
        workers=0,
        settings={"BODY_READ_TIMEOUT_SECONDS": str(BODY_READ_TIMEOUT)},
    ) as s:
        yield s


def trickle(stack: Stack, give_up: float) -> tuple[Reply | None, float, bytes]:
    """Declare a 100-byte body, send a byte of it every 0.25 s, then wait for the answer;
    the answer, when it came, and what the connection held after it."""
    with socket.create_connection(address(stack), timeout=give_up) as sock:
        started = time.monotonic()
        sock.sendall(
            compose(
                b"POST /signup HTTP/1.1",
                [b"Content-Type: application/json", b"Content-Length: 100"],
            )
        )
        # Quiet for the last half second: a byte arriving as the server closes would turn
        # its FIN into a reset, which may discard the answer before it is read.
        while time.monotonic() - started < BODY_READ_TIMEOUT - 0.5:
            time.sleep(0.25)
            sock.sendall(b" ")
        select.select([sock], [], [], give_up)
        reply = read_reply(sock)
        return reply, time.monotonic() - started, sock.recv(1)


def test_a_trickled_body_gets_408_and_does_not_hold_up_others(slow_stack: Stack) -> None:
    tricklers = 20
    with ThreadPoolExecutor(max_workers=tricklers) as pool:
        pending = [pool.submit(trickle, slow_stack, 10.0) for _ in range(tricklers)]
        time.sleep(0.5)  # every trickler is connected and sending
        health_times = []
        for _ in range(10):
            started = time.monotonic()
            assert answer(slow_stack, get(b"/health")).status == 200
            health_times.append(time.monotonic() - started)
            time.sleep(0.1)
        results = [p.result() for p in pending]

    assert max(health_times) < 0.5, health_times
    for reply, elapsed, after in results:
        assert reply is not None
        assert reply.status == 408
        assert reply.problem()["type"] == "/problems/request-timeout"
        assert reply.headers["connection"] == "close"
        assert after == b""  # and the server closed it
        # The bound is on the whole body: the last byte (at ~1.5 s) did not restart it.
        # (The server's clock starts a little before the client's: allow 0.1 s of skew.)
        assert BODY_READ_TIMEOUT - 0.1 <= elapsed < BODY_READ_TIMEOUT + 1


# --- Methods and paths ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        (b"DELETE", b"/signup", {"POST"}),
        (b"PUT", b"/signup", {"POST"}),
        (b"GET", b"/signup", {"POST"}),
        (b"OPTIONS", b"/signup", {"POST"}),
        (b"PROPFIND", b"/signup", {"POST"}),
        (b"POST", b"/health", {"GET", "HEAD"}),
        (b"TRACE", b"/health", {"GET", "HEAD"}),
    ],
)
def test_a_method_a_route_does_not_take_is_405(
    stack: Stack, method: bytes, path: bytes, allowed: set[str]
) -> None:
    reply = answer(stack, compose(method + b" " + path + b" HTTP/1.1", []))

    assert reply.status == 405
    assert reply.problem()["type"] == "/problems/method-not-allowed"
    assert set(reply.headers["allow"].split(", ")) == allowed


@pytest.mark.parametrize("method", [b"BREW", b"FOO-BAR"])
def test_a_method_the_server_does_not_know_is_never_a_500(stack: Stack, method: bytes) -> None:
    reply = exchange(stack, compose(method + b" /signup HTTP/1.1", []))

    # httptools refuses methods outside its table with 400; a parser that passed them on
    # would reach the router, which answers 405.
    assert reply is not None
    assert reply.status in (400, 405, 501)
    if reply.status == 405:
        assert reply.problem()["type"] == "/problems/method-not-allowed"


@pytest.fixture(scope="module")
def user_id(stack: Stack) -> str:
    created = httpx.post(f"{stack.base_url}/signup", json=signup_json(), timeout=30)
    assert created.status_code == 201, created.text
    value: str = created.json()["id"]
    return value


@pytest.fixture(scope="module")
def command_id(stack: Stack, user_id: str) -> str:
    r = stack.redis()
    try:
        key: str = next(iter(r.scan_iter(match=Keys(stack.namespace).command("*"))))
    finally:
        r.close()
    return key.rsplit(":", 1)[1]


def test_ids_are_read_as_issued_and_not_in_upper_case(
    stack: Stack, user_id: str, command_id: str
) -> None:
    # RFC 9562 reads UUIDs case-insensitively, but we issue lower case and one resource
    # has one URL: any other spelling is an unknown id.
    for kind, value in (("users", user_id), ("commands", command_id)):
        issued = answer(stack, get(f"/{kind}/{value}".encode()))
        upper = answer(stack, get(f"/{kind}/{value.upper()}".encode()))

        assert issued.status == 200, kind
        assert upper.status == 404, kind
        assert upper.problem()["type"] == "/problems/not-found"


@pytest.mark.parametrize(
    "path",
    [
        "/users/",
        "/users/..%2fsignup",
        "/users/../signup",
        "/users/%00",
        "/users/{id}%00",
        "/users/{id}/extra",
        "/users/{ID}",
        "//users/{id}",
        "/users/%7B{id}%7D",
    ],
)
def test_path_tricks_are_404_problems(stack: Stack, user_id: str, path: str) -> None:
    target = path.format(id=user_id, ID=user_id.upper()).encode()

    reply = answer(stack, get(target))

    assert reply.status == 404
    assert reply.problem()["type"] == "/problems/not-found"
