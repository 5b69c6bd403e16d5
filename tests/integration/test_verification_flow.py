"""Email verification in one process: HTTP -> stream -> worker -> Postgres -> events stream,
reply; the landing page, the form, and resends."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from domain import tokens
from domain.handlers import INVALID_TOKEN, verify_email
from domain.handlers import sign_up as sign_up_handler
from domain.ids import uuid7
from domain.model import Applied, Rejected, SignUp, VerifyEmail
from settings import Settings
from storage.connections import connect_postgres
from storage.keys import Keys
from storage.users import PostgresUsers
from tests.integration.conftest import running_worker, until_acked, web_client
from tests.redis_typed import Entry, add, entries, get_json
from workers.consumer import Consumer

pytestmark = pytest.mark.anyio

SIGNED_UP = "user.signed_up.v1"
EMAIL_VERIFIED = "user.email_verified.v1"
REQUESTED = "user.verification_requested.v1"
# Every event carries these (storage/events.py), then its own data.
EVENT_FIELDS = {
    "event_id",
    "type",
    "user_id",
    "occurred_at",
    "command_id",
    "request_id",
    "correlation_id",
    "traceparent",
    "version",
}
SECRET_LIKE = re.compile(r"password|hash|token|secret", re.IGNORECASE)


def keys_of(settings: Settings) -> Keys:
    return Keys(settings.redis_namespace)


async def sign_up(client: httpx.AsyncClient, email: str | None = None) -> dict[str, Any]:
    created = await client.post(
        "/signup",
        json={
            "name": "Ann Lee",
            "email": email or f"{uuid.uuid4().hex}@Example.com",
            "password": "correct horse",
            "display_name": "Annie",
        },
    )
    assert created.status_code == 201, created.text
    user: dict[str, Any] = created.json()
    return user


def token_for(
    settings: Settings,
    user: dict[str, Any],
    *,
    email: str | None = None,
    now: float | None = None,
    ttl_seconds: int = 3600,
) -> str:
    return tokens.issue(
        settings.secret_key.get_secret_value(),
        uuid.UUID(user["id"]),
        email or user["email"],
        now=time.time() if now is None else now,
        ttl_seconds=ttl_seconds,
    )


async def events_of(
    r: redis.Redis, keys: Keys, user_id: str, kind: str | None = None
) -> list[Entry]:
    return [
        (entry_id, fields)
        for entry_id, fields in await entries(r, keys.events)
        if fields.get("user_id") == user_id and (kind is None or fields["type"] == kind)
    ]


async def read_back(client: httpx.AsyncClient, user_id: str) -> dict[str, Any]:
    response = await client.get(f"/users/{user_id}")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def assert_invalid_token(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/problems/invalid-token"
    assert problem["status"] == 400
    assert problem["title"]
    assert problem["detail"]


async def command_entries(r: redis.Redis, keys: Keys, kind: str) -> list[Entry]:
    return [(i, f) for i, f in await entries(r, keys.commands) if f.get("type") == kind]


# -- verifying ----------------------------------------------------------------------------


async def test_verify_then_again_and_read_it_back(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings, r: redis.Redis
) -> None:
    user = await sign_up(client)
    assert (user["email_verified"], user["email_verified_at"], user["version"]) == (False, None, 1)
    token = token_for(settings, user)

    verified = await client.post("/verify-email", json={"token": token})

    assert verified.status_code == 200, verified.text
    assert verified.headers["content-type"] == "application/json"
    document = verified.json()
    assert document["id"] == user["id"]
    assert document["email"] == user["email"]
    assert document["email_verified"] is True
    assert document["email_verified_at"] is not None
    assert document["version"] == 2

    again = await client.post("/verify-email", json={"token": token})

    assert again.status_code == 200, again.text
    assert again.json() == document
    assert await read_back(client, user["id"]) == document


async def test_verifying_appends_one_event_of_each_kind(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings, r: redis.Redis
) -> None:
    keys = keys_of(settings)
    user = await sign_up(client)
    [(_, signup_entry)] = await command_entries(r, keys, "signup.v1")
    token = token_for(settings, user)
    first = await client.post(
        "/verify-email",
        json={"token": token},
        headers={"X-Request-ID": "verify-req-1", "X-Correlation-ID": "verify-corr-1"},
    )
    assert first.status_code == 200
    assert (await client.post("/verify-email", json={"token": token})).status_code == 200
    await until_acked(r, keys)
    verify_commands = await command_entries(r, keys, "verify_email.v1")
    assert len(verify_commands) == 2

    events = await events_of(r, keys, user["id"])

    assert sorted(f["type"] for _, f in events) == [EMAIL_VERIFIED, SIGNED_UP]
    [(_, signed_up)] = [e for e in events if e[1]["type"] == SIGNED_UP]
    [(_, verified)] = [e for e in events if e[1]["type"] == EMAIL_VERIFIED]
    assert set(signed_up) == EVENT_FIELDS | {"email", "name", "display_name"}
    assert set(verified) == EVENT_FIELDS | {"email"}
    assert (signed_up["email"], signed_up["name"], signed_up["display_name"]) == (
        user["email"],
        "Ann Lee",
        "Annie",
    )
    assert signed_up["version"] == "1"
    assert signed_up["command_id"] == signup_entry["command_id"]
    assert signed_up["request_id"] == signup_entry["request_id"]
    assert signed_up["occurred_at"]
    assert signed_up["event_id"]
    assert verified["version"] == "2"
    assert verified["email"] == user["email"]
    # The first verification made the event; the second changed nothing.
    assert verified["command_id"] == verify_commands[0][1]["command_id"]
    assert verified["request_id"] == "verify-req-1"
    assert verified["correlation_id"] == "verify-corr-1"
    assert verified["occurred_at"] == first.json()["email_verified_at"]
    assert signed_up["event_id"] != verified["event_id"]
    for _, fields in events:
        assert all(isinstance(v, str) for v in fields.values())
        assert not [name for name in fields if SECRET_LIKE.search(name)]
        assert not [v for v in fields.values() if v.startswith("$2") or token in v]


@pytest.mark.parametrize("case", ["tampered", "expired", "another-email", "another-secret"])
async def test_a_bad_token_is_400_and_verifies_nothing(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings, r: redis.Redis, case: str
) -> None:
    keys = keys_of(settings)
    user = await sign_up(client)
    good = token_for(settings, user)
    payload, mac = good.split(".")
    bad = {
        "tampered": f"{payload[:-2]}{'B' if payload[-2] != 'B' else 'C'}{payload[-1]}.{mac}",
        "expired": token_for(settings, user, now=time.time() - 7200, ttl_seconds=3600),
        "another-email": token_for(settings, user, email=f"{uuid.uuid4().hex}@example.com"),
        "another-secret": tokens.issue(
            "not-the-secret", uuid.UUID(user["id"]), user["email"], now=time.time(), ttl_seconds=60
        ),
    }[case]

    response = await client.post("/verify-email", json={"token": bad})

    assert_invalid_token(response)
    await until_acked(r, keys)
    assert (await read_back(client, user["id"]))["email_verified"] is False
    assert await events_of(r, keys, user["id"], EMAIL_VERIFIED) == []
    # A token the web can refuse never reaches the stream; one for another address is
    # refused by the worker, which alone knows the account's current address.
    sent = await command_entries(r, keys, "verify_email.v1")
    assert len(sent) == (1 if case == "another-email" else 0)


async def test_a_token_for_an_account_that_does_not_exist_is_400(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings
) -> None:
    ghost = {"id": str(uuid7()), "email": f"{uuid.uuid4().hex}@example.com"}

    assert_invalid_token(
        await client.post("/verify-email", json={"token": token_for(settings, ghost)})
    )


@pytest.mark.parametrize("token", ["", "x", "a" * 300, "not.a.token"])
async def test_garbage_tokens_are_400(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings, r: redis.Redis, token: str
) -> None:
    assert_invalid_token(await client.post("/verify-email", json={"token": token}))
    assert await r.xlen(keys_of(settings).commands) == 0


# -- the link's landing page and its form ---------------------------------------------------


async def test_the_link_shows_a_form_and_verifies_nothing(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings, r: redis.Redis
) -> None:
    keys = keys_of(settings)
    user = await sign_up(client)
    token = token_for(settings, user)

    page = await client.get("/verify-email", params={"token": token})

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/verify-email">' in page.text
    assert f'<input type="hidden" name="token" value="{token}">' in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    await until_acked(r, keys)
    assert await command_entries(r, keys, "verify_email.v1") == []
    assert (await read_back(client, user["id"]))["email_verified"] is False


async def test_the_link_page_escapes_whatever_the_token_holds(client: httpx.AsyncClient) -> None:
    hostile = '"><script>alert(1)</script><input value="'

    page = await client.get("/verify-email", params={"token": hostile})

    assert page.status_code == 200
    assert "<script>" not in page.text
    assert 'value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;input value=&quot;"' in (
        page.text
    )
    assert "default-src 'none'" in page.headers["content-security-policy"]


@pytest.mark.parametrize("query", ["", "?token=", f"?token={'a' * 300}"])
async def test_a_link_without_a_usable_token_shows_an_error_page(
    client: httpx.AsyncClient, query: str
) -> None:
    page = await client.get(f"/verify-email{query}")

    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    assert "<form" not in page.text


async def test_the_form_verifies_and_answers_with_a_page(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings, r: redis.Redis
) -> None:
    keys = keys_of(settings)
    user = await sign_up(client)

    response = await client.post(
        "/verify-email",
        content=f"token={token_for(settings, user)}",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert user["email"] in response.text
    document = await read_back(client, user["id"])
    assert (document["email_verified"], document["version"]) == (True, 2)
    await until_acked(r, keys)
    assert len(await events_of(r, keys, user["id"], EMAIL_VERIFIED)) == 1


async def test_the_form_with_a_bad_token_answers_with_an_error_page(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings
) -> None:
    user = await sign_up(client)
    expired = token_for(settings, user, now=time.time() - 7200, ttl_seconds=3600)

    response = await client.post(
        "/verify-email",
        content=f"token={expired}",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert (await read_back(client, user["id"]))["email_verified"] is False


async def test_a_verification_the_worker_is_slow_on_is_202_and_completes_later(
    settings: Settings, r: redis.Redis
) -> None:
    quick = settings.model_copy(update={"reply_timeout_seconds": 0.3})
    async with web_client(quick) as client:
        async with running_worker(quick):
            user = await sign_up(client)

        sent = await client.post("/verify-email", json={"token": token_for(settings, user)})

        assert sent.status_code == 202, sent.text
        command_id = sent.json()["command_id"]
        assert sent.headers["location"] == f"/commands/{command_id}"
        assert (await client.get(f"/commands/{command_id}")).json()["status"] == "pending"
        async with running_worker(quick):
            with anyio.fail_after(10):
                while (await client.get(f"/commands/{command_id}")).json()["status"] == "pending":
                    await anyio.sleep(0.05)
        done = (await client.get(f"/commands/{command_id}")).json()
        assert done["status"] == "succeeded"
        assert (done["user"]["email_verified"], done["user"]["version"]) == (True, 2)
        assert (await read_back(client, user["id"]))["email_verified"] is True
    assert len(await events_of(r, keys_of(settings), user["id"], EMAIL_VERIFIED)) == 1


# -- redelivery -----------------------------------------------------------------------------


async def test_a_redelivered_verification_appends_no_second_event(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings, r: redis.Redis
) -> None:
    keys = keys_of(settings)
    user = await sign_up(client)
    assert (
        await client.post("/verify-email", json={"token": token_for(settings, user)})
    ).status_code == 200
    [(_, fields)] = await command_entries(r, keys, "verify_email.v1")

    await add(r, keys.commands, fields)  # the same command, delivered a second time
    await until_acked(r, keys)

    assert len(await events_of(r, keys, user["id"], EMAIL_VERIFIED)) == 1
    assert len(await command_entries(r, keys, "verify_email.v1")) == 2
    outcome = await get_json(r, keys.command(fields["command_id"]))
    assert outcome == {"status": "succeeded", "user_id": user["id"]}
    document = await read_back(client, user["id"])
    assert (document["email_verified"], document["version"]) == (True, 2)


# -- resends --------------------------------------------------------------------------------


async def resend(client: httpx.AsyncClient, email: str) -> None:
    response = await client.post("/verify-email/resend", json={"email": email})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"


async def requested_events(r: redis.Redis, keys: Keys) -> list[dict[str, str]]:
    return [f for _, f in await entries(r, keys.events) if f["type"] == REQUESTED]


async def test_a_resend_for_an_unknown_address_is_202_and_sends_nothing(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings, r: redis.Redis
) -> None:
    keys = keys_of(settings)
    await sign_up(client)  # someone else's account

    await resend(client, f"{uuid.uuid4().hex}@example.com")

    await until_acked(r, keys)
    assert len(await command_entries(r, keys, "request_verification.v1")) == 1
    assert await requested_events(r, keys) == []


async def test_a_resend_for_an_unverified_address_requests_one_verification(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings, r: redis.Redis
) -> None:
    keys = keys_of(settings)
    user = await sign_up(client)

    # Spelled as the person types it: the address is normalised first.
    await resend(client, user["email"].upper())

    await until_acked(r, keys)
    [event] = await requested_events(r, keys)
    assert set(event) == EVENT_FIELDS | {"email"}
    assert (event["user_id"], event["email"], event["version"]) == (user["id"], user["email"], "1")
    [(_, command)] = await command_entries(r, keys, "request_verification.v1")
    assert event["command_id"] == command["command_id"]
    assert command["email"] == user["email"]


async def test_a_resend_for_a_verified_address_sends_nothing(
    client: httpx.AsyncClient, worker: Consumer, settings: Settings, r: redis.Redis
) -> None:
    keys = keys_of(settings)
    user = await sign_up(client)
    assert (
        await client.post("/verify-email", json={"token": token_for(settings, user)})
    ).status_code == 200

    await resend(client, user["email"])

    await until_acked(r, keys)
    assert len(await command_entries(r, keys, "request_verification.v1")) == 1
    assert await requested_events(r, keys) == []


@pytest.fixture
async def limited_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with web_client(settings.model_copy(update={"verification_resend_limit": 2})) as c:
        yield c


async def test_resends_past_the_limit_are_202_and_send_nothing(
    limited_client: httpx.AsyncClient, worker: Consumer, settings: Settings, r: redis.Redis
) -> None:
    keys = keys_of(settings)
    user = await sign_up(limited_client)
    other = await sign_up(limited_client)

    for _ in range(2):
        await resend(limited_client, user["email"])
    await until_acked(r, keys)
    assert len(await requested_events(r, keys)) == 2

    for _ in range(3):
        await resend(limited_client, user["email"])
    await until_acked(r, keys)

    assert len(await requested_events(r, keys)) == 2
    assert len(await command_entries(r, keys, "request_verification.v1")) == 2
    # The limit is per address: another address still gets its message.
    await resend(limited_client, other["email"])
    await until_acked(r, keys)
    assert [e["user_id"] for e in await requested_events(r, keys)][-1] == other["id"]


async def test_a_resend_with_a_bad_address_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/verify-email/resend", json={"email": "not-an-address"})

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


# -- the store under the handler ------------------------------------------------------------


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await connect_postgres(database_url, min_size=1, max_size=2)
    yield p
    await p.close()


async def test_a_stale_token_ahead_in_a_batch_does_not_block_a_valid_one(
    pool: asyncpg.Pool,
) -> None:
    # Two commands for one account in one batch: the first from a token for an address the
    # account no longer has, the second from a token for its current one. Applied one by
    # one (as tests/unit/fakes.py's store does), the second verifies the address.
    users = PostgresUsers(pool)
    email = f"{uuid.uuid4().hex}@example.com"
    [created] = await sign_up_handler(
        [SignUp(uuid7(), uuid7(), "Ann", email, "Ann", "$2b$04$" + "a" * 53)], users
    )
    assert isinstance(created, Applied)
    assert created.user is not None
    user_id = created.user.id
    stale = VerifyEmail(uuid7(), user_id, tokens.email_digest("old-address@example.com"))
    valid = VerifyEmail(uuid7(), user_id, tokens.email_digest(email))

    refused, applied = await verify_email([stale, valid], users)

    assert isinstance(refused, Rejected)
    assert refused.reason == INVALID_TOKEN
    assert isinstance(applied, Applied)
    assert applied.user is not None
    assert applied.user.email_verified, "the batch's valid token verified nothing"
    assert len(applied.events) == 1
    row = await pool.fetchrow("SELECT email_verified_at, version FROM users WHERE id = $1", user_id)
    assert row is not None
    assert row["email_verified_at"] is not None
    assert row["version"] == 2
