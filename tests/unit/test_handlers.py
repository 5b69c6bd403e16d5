from __future__ import annotations

import pytest

from domain.handlers import EMAIL_TAKEN, sign_up
from domain.ids import uuid7
from domain.model import Applied, Rejected, SignUp
from tests.unit.fakes import FakeUserStore

HASH = "$2b$04$abcdefghijklmnopqrstuu5Yp9X5HqJ0Ykq9c4Zk8o6J1cS0d0fGa"


def command(email: str, name: str = "Ann") -> SignUp:
    return SignUp(
        command_id=uuid7(),
        user_id=uuid7(),
        name=name,
        email=email,
        display_name=name,
        password_hash=HASH,
    )


@pytest.mark.anyio
async def test_a_batch_creates_each_user() -> None:
    store = FakeUserStore()
    batch = [command("ann@example.com", "Ann"), command("bob@example.com", "Bob")]

    outcomes = await sign_up(batch, store)

    assert all(isinstance(o, Applied) for o in outcomes)
    assert [o.command_id for o in outcomes] == [c.command_id for c in batch]
    assert {u.email: (u.id, u.name) for u in store.users.values()} == {
        "ann@example.com": (batch[0].user_id, "Ann"),
        "bob@example.com": (batch[1].user_id, "Bob"),
    }


@pytest.mark.anyio
async def test_a_taken_email_fails_only_its_command() -> None:
    store = FakeUserStore()
    first = command("ann@example.com", "Ann")
    duplicate = command("ann@example.com", "Impostor")
    neighbour = command("bob@example.com", "Bob")

    outcomes = await sign_up([first, duplicate, neighbour], store)

    signed_up, rejected, after = outcomes
    assert isinstance(signed_up, Applied)
    assert signed_up.user is not None
    assert signed_up.user.id == first.user_id
    assert isinstance(rejected, Rejected)
    assert (rejected.command_id, rejected.reason) == (duplicate.command_id, EMAIL_TAKEN)
    assert isinstance(after, Applied)
    assert after.user is not None
    assert after.user.id == neighbour.user_id
    # Stream order wins: the earlier command keeps the email, the later one created nothing.
    assert set(store.users) == {first.user_id, neighbour.user_id}
    assert store.users[first.user_id].name == "Ann"


@pytest.mark.anyio
async def test_an_email_taken_by_an_earlier_batch_is_refused() -> None:
    store = FakeUserStore()
    await sign_up([command("ann@example.com")], store)
    late = command("ann@example.com", "Later")

    [outcome] = await sign_up([late], store)

    assert isinstance(outcome, Rejected)
    assert outcome.reason == EMAIL_TAKEN
    assert late.user_id not in store.users


@pytest.mark.anyio
async def test_a_redelivered_command_yields_the_same_user_and_creates_nothing() -> None:
    store = FakeUserStore()
    signup = command("ann@example.com")
    [first] = await sign_up([signup], store)
    users_before = dict(store.users)

    [again] = await sign_up([signup], store)

    assert isinstance(first, Applied)
    assert again == first
    assert store.users == users_before


@pytest.mark.anyio
async def test_a_command_delivered_twice_in_one_batch_succeeds_twice() -> None:
    store = FakeUserStore()
    signup = command("ann@example.com")

    first, second = await sign_up([signup, signup], store)

    assert isinstance(first, Applied)
    assert second == first
    assert list(store.users) == [signup.user_id]
