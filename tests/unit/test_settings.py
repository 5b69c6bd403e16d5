"""What production refuses to start with: the dev SECRET_KEY, a short one, and (the mailer)
no SMTP_URL or one it cannot use. Each refusal is one line and exit status 2."""

from __future__ import annotations

import secrets

import anyio
import pytest

import workers.mailer.__main__ as mailer_main
from settings import DEV_SECRET_KEY, load_settings

STRONG_KEY = secrets.token_urlsafe(36)  # 48 characters


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever the shell running the tests has set, these tests decide.
    for name in ("ENVIRONMENT", "SECRET_KEY", "SMTP_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("key", [DEV_SECRET_KEY, "x" * 31, ""], ids=["dev", "short", "empty"])
def test_production_refuses_a_weak_secret_key(
    key: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SECRET_KEY", key)

    with pytest.raises(SystemExit) as exited:
        load_settings()

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("invalid setting SECRET_KEY: ")
    assert len(err.splitlines()) == 1
    if key:
        assert key not in err  # the refusal does not print the key it refused


def test_production_refuses_the_dev_key_when_secret_key_is_unset(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")

    with pytest.raises(SystemExit) as exited:
        load_settings()

    assert exited.value.code == 2
    assert "invalid setting SECRET_KEY" in capsys.readouterr().err


def test_production_loads_with_a_strong_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SECRET_KEY", STRONG_KEY)

    settings = load_settings()

    assert len(STRONG_KEY) == 48
    assert settings.environment == "production"
    assert settings.secret_key.get_secret_value() == STRONG_KEY


def test_development_accepts_the_default_key() -> None:
    settings = load_settings()

    assert settings.environment == "development"
    assert settings.secret_key.get_secret_value() == DEV_SECRET_KEY
    assert settings.smtp_url is None


def test_the_mailer_refuses_production_without_smtp_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SECRET_KEY", STRONG_KEY)
    # Nothing listens here: a mailer that got as far as connecting would fail otherwise.
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")

    assert anyio.run(mailer_main.main) == 2

    err = capsys.readouterr().err
    assert err.startswith("invalid setting SMTP_URL: ")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://x",
        "http://mailer:hunter2@x",
        "smtp://",
        "mailto:someone@example.com",
        "smtp://host:99999",
    ],
)
@pytest.mark.parametrize("environment", ["development", "production"])
def test_the_mailer_refuses_an_smtp_url_it_cannot_use(
    url: str,
    environment: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ENVIRONMENT", environment)
    monkeypatch.setenv("SECRET_KEY", STRONG_KEY)
    monkeypatch.setenv("SMTP_URL", url)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")

    assert anyio.run(mailer_main.main) == 2

    err = capsys.readouterr().err
    assert err.startswith("invalid setting SMTP_URL: ")
    assert len(err.splitlines()) == 1
    assert "hunter2" not in err
