"""The command bus over the real registry (with the in-memory user store), and the
verification handlers' semantics."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from domain.bus import UnknownCommand, handle
from domain.handlers import (
    COMMAND_HANDLERS,
    INVALID_TOKEN,
    Handler,
    UserStore,
    request_verification,
    sign_up,
    verify_email,
)
from domain.ids import uuid7
from domain.model import (
    Applied,
    Command,
    EmailVerified,
    Outcome,
    Rejected,
    RequestVerification,
    SignUp,
    User,
    UserSignedUp,
    VerificationRequested,
    VerifyEmail,
)
from domain.tokens import email_digest
from tests.unit.fakes import FakeUserStore

pytestmark = pytest.mark.anyio

HASH = "$2b$04$abcdefghijklmnopqrstuu5Yp9X5HqJ0Ykq9c4Zk8o6J1cS0d0fGa"
REQUESTED_AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def signup(email: str, name: str = "Ann", display_name: str | None = None) -> SignUp:
    return SignUp(uuid7(), uuid7(), name, email, display_name or name, HASH)


def verify(user_id: uuid.UUID, email: str) -> VerifyEmail:
    return VerifyEmail(uuid7(), user_id, email_digest(email))


def resend(email: str) -> RequestVerification:
    return RequestVerification(uuid7(), email, REQUESTED_AT)


async def signed_up(store: FakeUserStore, email: str) -> User:
    [outcome] = await sign_up([signup(email)], store)
    assert isinstance(outcome, Applied)
    assert outcome.user is not None
    return outcome.user


# -- the bus ------------------------------------------------------------------------------


class Recorder:
    """A registry whose handlers note each batch they get and apply it trivially."""

    def __init__(self) -> None:
        self.calls: list[tuple[type[Command], list[Command]]] = []

    def handler(self, kind: type[Command]) -> Handler:
        async def record(commands: Sequence[Command], users: UserStore) -> list[Outcome]:
            self.calls.append((kind, list(commands)))
            return [Applied(c.command_id, None) for c in commands]

        return record

    def registry(self) -> dict[type[Command], Handler]:
        return {kind: self.handler(kind) for kind in (SignUp, VerifyEmail, RequestVerification)}


def mixed_batch() -> list[Command]:
    return [
        signup("a@example.com"),
        verify(uuid7(), "x@example.com"),
        resend("r1@example.com"),
        signup("b@example.com"),
        resend("r2@example.com"),
        verify(uuid7(), "y@example.com"),
        signup("c@example.com"),
    ]


async def test_each_type_goes_to_its_handler_in_one_call_in_stream_order() -> None:
    recorder = Recorder()
    batch = mixed_batch()

    outcomes = await handle(batch, FakeUserStore(), recorder.registry())

    assert [o.command_id for o in outcomes] == [c.command_id for c in batch]
    kinds = [kind for kind, _ in recorder.calls]
    assert sorted(kinds, key=lambda k: k.__name__) == sorted(
        {SignUp, VerifyEmail, RequestVerification}, key=lambda k: k.__name__
    )
    for kind, commands in recorder.calls:
        assert commands == [c for c in batch if type(c) is kind]


async def test_a_mixed_batch_gets_its_outcomes_in_input_order() -> None:
    store = FakeUserStore()
    ann = await signed_up(store, "ann@example.com")
    bo = await signed_up(store, "bo@example.com")
    taken = signup("ann@example.com", "Impostor")
    new = signup("new@example.com", "Nia", "Nia N")
    batch: list[Command] = [
        verify(ann.id, "ann@example.com"),
        taken,
        resend("nobody@example.com"),
        new,
        verify(ann.id, "other@example.com"),
        resend(bo.email),
    ]

    outcomes = await handle(batch, store, COMMAND_HANDLERS)

    assert [o.command_id for o in outcomes] == [c.command_id for c in batch]
    verified, refused, quiet, created, wrong, requested = outcomes
    assert isinstance(verified, Applied)
    assert verified.user is not None
    assert verified.user.email_verified
    assert [type(e) for e in verified.events] == [EmailVerified]
    assert isinstance(refused, Rejected)
    assert refused.reason == "email-taken"
    assert quiet == Applied(batch[2].command_id, None, ())
    assert isinstance(created, Applied)
    assert created.user is not None
    assert created.user.id == new.user_id
    assert isinstance(wrong, Rejected)
    assert wrong.reason == INVALID_TOKEN
    assert isinstance(requested, Applied)
    assert requested.user is None
    assert [type(e) for e in requested.events] == [VerificationRequested]
    assert store.users[ann.id].email_verified


async def test_the_real_registry_has_a_handler_for_each_command_type() -> None:
    assert set(COMMAND_HANDLERS) == {SignUp, VerifyEmail, RequestVerification}


async def test_an_empty_batch_has_no_outcomes() -> None:
    assert await handle([], FakeUserStore(), COMMAND_HANDLERS) == []


async def test_a_type_without_a_handler_is_an_unknown_command() -> None:
    registry = {k: v for k, v in COMMAND_HANDLERS.items() if k is not VerifyEmail}

    with pytest.raises(UnknownCommand, match="VerifyEmail"):
        await handle(
            [signup("a@example.com"), verify(uuid7(), "a@example.com")], FakeUserStore(), registry
        )


# -- sign_up -------------------------------------------------------------------------------


async def test_a_signup_event_carries_the_account_as_created_at_version_1() -> None:
    store = FakeUserStore()
    command = signup("ann@example.com", "Ann Lee", "Annie")

    [outcome] = await sign_up([command], store)

    assert isinstance(outcome, Applied)
    assert outcome.user is not None
    assert outcome.user.version == 1
    assert not outcome.user.email_verified
    [event] = outcome.events
    assert event == UserSignedUp(
        user_id=command.user_id,
        version=1,
        occurred_at=outcome.user.created_at,
        email="ann@example.com",
        name="Ann Lee",
        display_name="Annie",
    )


async def test_a_refused_signup_has_no_event() -> None:
    store = FakeUserStore()
    await signed_up(store, "ann@example.com")

    [outcome] = await sign_up([signup("ann@example.com")], store)

    assert isinstance(outcome, Rejected)


# -- verify_email --------------------------------------------------------------------------


async def test_verifying_twice_is_applied_twice_with_one_event() -> None:
    store = FakeUserStore()
    user = await signed_up(store, "ann@example.com")
    first, second = verify(user.id, user.email), verify(user.id, user.email)

    [one] = await verify_email([first], store)
    [two] = await verify_email([second], store)

    assert isinstance(one, Applied)
    assert one.command_id == first.command_id
    assert one.user is not None
    assert one.user.email_verified
    assert one.user.version == 2
    assert one.user.email_verified_at is not None
    assert one.events == (EmailVerified(user.id, 2, one.user.email_verified_at, user.email),)
    assert isinstance(two, Applied)
    assert two.command_id == second.command_id
    assert two.events == ()
    assert two.user == one.user
    assert store.users[user.id] == one.user


async def test_a_redelivered_verification_yields_the_same_outcome_and_event() -> None:
    store = FakeUserStore()
    user = await signed_up(store, "ann@example.com")
    command = verify(user.id, user.email)

    [first] = await verify_email([command], store)
    [again] = await verify_email([command], store)

    assert isinstance(first, Applied)
    assert len(first.events) == 1
    assert again == first


async def test_two_verifications_in_one_batch_make_one_event() -> None:
    store = FakeUserStore()
    user = await signed_up(store, "ann@example.com")

    outcomes = await verify_email([verify(user.id, user.email), verify(user.id, user.email)], store)

    assert all(isinstance(o, Applied) for o in outcomes)
    assert sum(len(o.events) for o in outcomes if isinstance(o, Applied)) == 1


async def test_a_token_for_another_address_is_rejected_and_verifies_nothing() -> None:
    store = FakeUserStore()
    user = await signed_up(store, "ann@example.com")
    command = verify(user.id, "someone-else@example.com")

    [outcome] = await verify_email([command], store)

    assert isinstance(outcome, Rejected)
    assert (outcome.command_id, outcome.reason) == (command.command_id, INVALID_TOKEN)
    assert not store.users[user.id].email_verified
    assert store.users[user.id].version == 1


async def test_a_token_for_a_user_that_does_not_exist_is_rejected() -> None:
    [outcome] = await verify_email([verify(uuid7(), "ann@example.com")], FakeUserStore())

    assert isinstance(outcome, Rejected)
    assert outcome.reason == INVALID_TOKEN


# -- request_verification ------------------------------------------------------------------


async def test_a_resend_for_an_unknown_address_says_and_does_nothing() -> None:
    command = resend("nobody@example.com")

    [outcome] = await request_verification([command], FakeUserStore())

    assert outcome == Applied(command.command_id, None, ())


async def test_a_resend_for_a_verified_address_says_and_does_nothing() -> None:
    store = FakeUserStore()
    user = await signed_up(store, "ann@example.com")
    await verify_email([verify(user.id, user.email)], store)
    command = resend(user.email)

    [outcome] = await request_verification([command], store)

    assert outcome == Applied(command.command_id, None, ())


async def test_a_resend_for_an_unverified_address_requests_one_verification() -> None:
    store = FakeUserStore()
    user = await signed_up(store, "ann@example.com")
    command = resend(user.email)

    [outcome] = await request_verification([command], store)

    assert isinstance(outcome, Applied)
    assert outcome.user is None
    assert outcome.events == (VerificationRequested(user.id, 1, REQUESTED_AT, user.email),)


async def test_resends_in_one_batch_each_get_their_outcome() -> None:
    store = FakeUserStore()
    user = await signed_up(store, "ann@example.com")
    batch = [resend(user.email), resend("nobody@example.com"), resend(user.email)]

    outcomes = await request_verification(batch, store)

    assert [o.command_id for o in outcomes] == [c.command_id for c in batch]
    assert [len(o.events) for o in outcomes if isinstance(o, Applied)] == [1, 0, 1]


async def test_a_stale_token_ahead_in_a_batch_does_not_block_a_valid_one() -> None:
    store = FakeUserStore()
    user = await signed_up(store, "ann@example.com")
    stale, valid = verify(user.id, "old-address@example.com"), verify(user.id, user.email)

    refused, applied = await verify_email([stale, valid], store)

    assert isinstance(refused, Rejected)
    assert isinstance(applied, Applied)
    assert applied.user is not None
    assert applied.user.email_verified
    assert len(applied.events) == 1
