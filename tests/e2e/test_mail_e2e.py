"""Verification by mail, end to end: the real web, workers and mailer processes from the
Procfile, and a real SMTP server (aiosmtpd) that the tests read, stop and start."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from domain import tokens
from settings import DEV_SECRET_KEY
from storage.keys import Keys
from tests.e2e.conftest import ROOT, Stack, running_stack
from tests.e2e.faults import Load, wait_drained
from tests.e2e.secrets import leaks
from tests.redis_typed import entries_sync
from tests.smtp import SmtpSink, smtp_sink

pytestmark = pytest.mark.timeout(300)

FAST = {"WORKER_CLAIM_IDLE_MS": "1000", "REPLY_TIMEOUT_SECONDS": "5"}


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    with smtp_sink() as s:
        yield s


@pytest.fixture(scope="module")
def mail_stack(
    database_url: str, sink: SmtpSink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    settings = {**FAST, "SMTP_URL": sink.url, "VERIFICATION_RESEND_LIMIT": "2"}
    log_dir = tmp_path_factory.mktemp("mail-logs")
    with running_stack(database_url, log_dir, workers=2, mailers=1, settings=settings) as stack:
        yield stack


@pytest.fixture
def http(mail_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mail_stack.base_url, timeout=30) as client:
        yield client


def _sign_up(http: httpx.Client, email: str, password: str = "mail-test-password") -> str:
    response = http.post("/signup", json={"name": "Mia Mail", "email": email, "password": password})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _events_of(stack: Stack, user_id: str) -> list[str]:
    client = stack.redis()
    try:
        keys = Keys(stack.namespace)
        return [f["type"] for _, f in entries_sync(client, keys.events) if f["user_id"] == user_id]
    finally:
        client.close()


def _drained(stack: Stack) -> None:
    keys = Keys(stack.namespace)
    client = stack.redis()
    try:
        wait_drained(client, keys.commands, keys.group)
        wait_drained(client, keys.events, keys.mailer_group)
    finally:
        client.close()


def test_sign_up_mail_link_verifies(mail_stack: Stack, sink: SmtpSink, http: httpx.Client) -> None:
    email = f"mia-{uuid.uuid4().hex[:8]}@example.com"
    user_id = _sign_up(http, email)

    [mail] = sink.wait_for(email)
    assert mail.message["Subject"] == "Confirm your email address"
    assert mail.message["To"] == email
    assert mail.link.startswith("http://localhost:5000/verify-email?token=")
    assert mail.link in mail.html  # the same link in both parts
    # The link's page (PUBLIC_BASE_URL is the default here: its path and query on this
    # stack) verifies nothing by itself, as mail scanners follow links...
    link = urlsplit(mail.link)
    page = http.get(f"{link.path}?{link.query}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'method="post" action="/verify-email"' in page.text
    assert http.get(f"/users/{user_id}").json()["email_verified"] is False
    # ...its button does: the form posts the token.
    done = http.post("/verify-email", data={"token": mail.token})
    assert done.status_code == 200
    assert email in done.text

    user = http.get(f"/users/{user_id}").json()
    assert user["email_verified"] is True
    assert user["email_verified_at"] is not None
    assert user["version"] == 2
    again = http.post("/verify-email", json={"token": mail.token})
    assert again.status_code == 200
    assert again.json() == user  # idempotent: the same user, nothing changed
    _drained(mail_stack)
    assert sorted(_events_of(mail_stack, user_id)) == [
        "user.email_verified.v1",
        "user.signed_up.v1",
    ]
    assert len(sink.to(email)) == 1  # exactly one message, no more after the verification


def test_bad_tokens_are_400(mail_stack: Stack, sink: SmtpSink, http: httpx.Client) -> None:
    email = f"tok-{uuid.uuid4().hex[:8]}@example.com"
    user_id = uuid.UUID(_sign_up(http, email))
    [mail] = sink.wait_for(email)
    good = mail.token
    payload, mac = good.split(".")
    tampered = f"{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{mac}"
    expired = tokens.issue(DEV_SECRET_KEY, user_id, email, now=time.time() - 7200, ttl_seconds=60)
    other_email = tokens.issue(
        DEV_SECRET_KEY, user_id, "someone-else@example.com", now=time.time(), ttl_seconds=3600
    )
    for token in (tampered, expired, other_email, "not-a-token", good + "x"):
        response = http.post("/verify-email", json={"token": token})
        assert response.status_code == 400, (token, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/invalid-token"
    assert http.get(f"/users/{user_id}").json()["email_verified"] is False


def test_resend_never_tells_and_is_limited(
    mail_stack: Stack, sink: SmtpSink, http: httpx.Client
) -> None:
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    known = f"again-{uuid.uuid4().hex[:8]}@example.com"
    _sign_up(http, known)
    sink.wait_for(known)
    answers = [http.post("/verify-email/resend", json={"email": unknown}) for _ in range(2)]
    # Limit 2 per hour in this stack: two resends go out, the third is answered alike.
    answers += [http.post("/verify-email/resend", json={"email": known}) for _ in range(3)]
    assert {a.status_code for a in answers} == {202}
    assert len({a.content for a in answers}) == 1  # the same answer, known or not
    _drained(mail_stack)
    time.sleep(0.5)  # the mailer acks after the server took the message
    assert sink.to(unknown) == []
    assert len(sink.to(known)) == 3  # the signup's, then two resends; the third is held back
    tokens_sent = {m.token for m in sink.to(known)}
    assert len(tokens_sent) == 3  # a fresh token each time


def test_no_password_hash_or_token_leaks(
    mail_stack: Stack, sink: SmtpSink, http: httpx.Client
) -> None:
    email = f"leak-{uuid.uuid4().hex[:8]}@example.com"
    password = f"leak-check-{uuid.uuid4().hex}"
    user_id = _sign_up(http, email, password)
    [mail] = sink.wait_for(email)
    assert http.post("/verify-email", json={"token": mail.token}).status_code == 200
    _drained(mail_stack)
    metrics = "".join(
        httpx.get(f"http://127.0.0.1:{port}/metrics").text
        for name, port in mail_stack.ports.items()
        if name in mail_stack.processes
    )
    client = mail_stack.redis()
    try:
        keys = Keys(mail_stack.namespace)
        [(_, command)] = [
            (i, f) for i, f in entries_sync(client, keys.commands) if f.get("email") == email
        ]
        password_hash = command["password_hash"]
        event_values = [
            v
            for _, f in entries_sync(client, keys.events)
            if f["user_id"] == user_id
            for v in f.values()
        ]
    finally:
        client.close()
    secrets = [password, password_hash, mail.token]
    assert not [s for s in secrets if any(s in v for v in event_values)]
    assert not [s for s in secrets if s in metrics]
    # Redis holds the hash in the command entry and idempotency records only: the token
    # and the password nowhere, and the logs none of the three.
    assert leaks(mail_stack, [password, mail.token]) == []
    assert password_hash not in mail_stack.logs()


def test_500_signups_through_a_mailer_kill_and_an_smtp_outage(
    database_url: str, tmp_path: Path
) -> None:
    with (
        smtp_sink() as sink,
        running_stack(
            database_url,
            tmp_path,
            workers=2,
            mailers=2,
            settings={**FAST, "SMTP_URL": sink.url},
        ) as stack,
    ):
        load = Load(stack.base_url, total=500, concurrency=16)
        load.start()
        load.wait_for(150)
        stack.stop("mailer.1", signal.SIGKILL)
        load.wait_for(250)
        sink.stop()
        time.sleep(5)
        sink.start()
        stack.start("mailer.1", "mailer", stack.ports["mailer.1"])
        load.join()
        accepted = load.accepted()
        assert len(accepted) == 500, load.statuses()
        _drained(stack)
        counts = sink.by_recipient()
        missing = [e for e in accepted if e not in counts]
        assert missing == [], f"{len(missing)} addresses got no verification message"
        assert max(counts[e] for e in accepted) <= 2
        client = stack.redis()
        try:
            keys = Keys(stack.namespace)
            groups = {g["name"]: g for g in client.xinfo_groups(keys.events)}
            assert groups[keys.mailer_group]["pending"] == 0
            assert groups[keys.mailer_group]["lag"] == 0
            signed_up = [
                f for _, f in entries_sync(client, keys.events) if f["type"] == "user.signed_up.v1"
            ]
            assert len(signed_up) == 500  # one event per signup, none doubled
        finally:
            client.close()


def test_a_refused_recipient_is_dead_lettered_for_the_cli(
    mail_stack: Stack, sink: SmtpSink, http: httpx.Client
) -> None:
    email = f"refuse-{uuid.uuid4().hex[:8]}@example.com"  # the sink answers 550 to these
    _sign_up(http, email)
    _drained(mail_stack)
    env = {**mail_stack.env}
    listing = subprocess.run(
        [sys.executable, "-m", "workers.deadletters", "--of", "mailer", "list"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    [line] = [ln for ln in listing.stdout.splitlines() if "550" in ln]
    assert "type=user.signed_up.v1" in line
    assert sink.to(email) == []
