"""Schemathesis against our own contract: every operation of the running stack's
``/openapi.json``, with generated valid and invalid requests, checked for server errors and
for status codes, content types and bodies the document does not promise.

Bounded (``FUZZ_EXAMPLES`` per operation, 25 by default, so the run stays well under a
minute) and derandomised, so a failure found here is found again on the next run. Raise
``FUZZ_EXAMPLES`` for a long local run.

Each operation is a Hypothesis test over ``APIOperation.as_strategy()`` rather than
``schemathesis.pytest.from_fixture(...).parametrize()``: the schema only exists once the
``stack`` fixture runs, and schemathesis' lazy loader (4.32) sets ``Function._nodeid``,
which pytest 9.2 no longer has.
"""

from __future__ import annotations

import os
import re
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.openapi import openapi_document
from tests.e2e.conftest import Stack
from tests.e2e.secrets import leaks

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
# Every password the fuzz run sent, for the secrets scan at the end of this module.
FUZZED_PASSWORDS: set[str] = set()
_HEXISH = re.compile(r"[0-9a-fA-F:.+ TZ-]*")
# Lower-case words may be the service's own vocabulary (a record's state "enqueued", an
# event name "request.finished"), legitimately stored and logged.
_WORDISH = re.compile(r"[a-z._-]*")

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


def _operations() -> list[tuple[str, str]]:
    # Collection needs the list before any process runs; the document is built by the same
    # code the web serves, and a test below checks the served one has the same operations.
    paths: dict[str, Any] = orjson.loads(openapi_document())["paths"]
    return sorted((method.upper(), path) for path, item in paths.items() for method in item)


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def api_schema(stack: Stack) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json", timeout=10)


def test_the_served_document_has_every_fuzzed_operation(
    api_schema: schemathesis.BaseSchema,
) -> None:
    paths: dict[str, Any] = api_schema.raw_schema["paths"]
    served = sorted((method.upper(), path) for path, item in paths.items() for method in item)
    assert served == OPERATIONS


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_keeps_its_contract(
    api_schema: schemathesis.BaseSchema, method: str, path: str
) -> None:
    operation = api_schema[path][method]
    cases = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=FUZZ_EXAMPLES,
        # The same examples every run: a failure here is a bug to fix, not a flaky test.
        derandomize=True,
        database=None,
        # Every example is a real HTTP round trip (a signup hashes a password).
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(cases)
    def run(case: schemathesis.Case[Any]) -> None:
        if isinstance(case.body, dict):
            password = case.body.get("password")
            others = [str(v) for k, v in case.body.items() if k != "password"]
            # Hypothesis reuses strings across fields: a password that is also (part of)
            # the email or name is stored there legitimately, so it proves nothing.
            if isinstance(password, str) and not any(password in o for o in others):
                FUZZED_PASSWORDS.add(password)
        case.call_and_validate(checks=CHECKS, timeout=30)

    run()


def test_no_fuzzed_password_is_stored_or_logged(stack: Stack) -> None:
    """After the fuzz run (the tests above, same stack): none of the passwords it sent is in
    Redis (stream, dead letters, idempotency records, outcomes) or in any log line."""
    # Short, plain-hex or plain-word strings could match ids, timestamps or the service's
    # own words by chance; the rest can't.
    distinctive = {
        p
        for p in FUZZED_PASSWORDS
        if len(p) >= 8 and not _HEXISH.fullmatch(p) and not _WORDISH.fullmatch(p)
    }
    if not distinctive:
        pytest.skip("run with the fuzz tests above: they produce the passwords to look for")
    assert leaks(stack, distinctive) == []
    assert "$2b$" not in stack.logs()
