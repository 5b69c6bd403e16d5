"""The per-request and per-command lines written without loguru's record building have the
shape of every other JSON line."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import orjson
import pytest
from loguru import logger

from observability import logs


@pytest.fixture
def configured() -> Iterator[None]:
    yield
    logger.remove()
    logs._json_lines = None


def _lines(text: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in text.splitlines()]


def test_a_direct_line_matches_a_loguru_line(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure_logging(json=True, level="INFO", service="svc")

    logger.info("request.finished", request_id="r-1", status=200)
    logs.info("request.finished", request_id="r-1", status=200)

    through_loguru, direct = _lines(capsys.readouterr().err)
    assert datetime.fromisoformat(str(direct.pop("ts"))).tzinfo is not None
    through_loguru.pop("ts")
    assert direct == through_loguru
    assert list(direct) == list(through_loguru)  # same key order, too
    assert direct["logger"] == __name__


def test_a_level_above_info_drops_the_line(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure_logging(json=True, level="WARNING", service="svc")

    logs.info("request.finished", status=200)

    assert capsys.readouterr().err == ""


def test_text_logs_go_through_loguru(configured: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging(json=False, level="INFO", service="svc")

    logs.info("command.applied", outcome="succeeded")

    err = capsys.readouterr().err
    assert "command.applied" in err
    assert "'outcome': 'succeeded'" in err
