from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.routing import Route

from api.openapi import openapi_document
from api.problems import PROBLEM_JSON, Problem, pointer
from api.routes import ROUTES


def test_problem_document_has_the_rfc_9457_members() -> None:
    problem = Problem(409, "email-taken", "Email already registered", "Use another address.")

    assert problem.document() == {
        "type": "/problems/email-taken",
        "title": "Email already registered",
        "status": 409,
        "detail": "Use another address.",
    }


def test_problem_errors_appear_only_when_given() -> None:
    errors = [{"pointer": "/name", "detail": "must not be empty"}]
    problem = Problem(422, "validation-error", "Invalid", "See errors.", errors=errors)

    assert problem.document()["errors"] == errors
    assert orjson.loads(problem.body()) == problem.document()


def test_problem_response_is_problem_json_with_its_status_and_headers() -> None:
    problem = Problem(503, "unavailable", "Unavailable", "Later.", headers={"Retry-After": "1"})

    response = problem.response()

    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["retry-after"] == "1"
    assert orjson.loads(bytes(response.body)) == problem.document()


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("name",), "/name"),
        (("a/b",), "/a~1b"),
        (("a~b",), "/a~0b"),
        # "~" is escaped first, so "~1" in a name is not mistaken for an escaped "/".
        (("~1",), "/~01"),
        (("errors", 0, "field"), "/errors/0/field"),
        (("",), "/"),
    ],
)
def test_pointer_escapes_tilde_and_slash(parts: tuple[str | int, ...], expected: str) -> None:
    assert pointer(*parts) == expected


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(openapi_document())
    return parsed


def test_openapi_is_version_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")


def test_every_route_is_documented_with_its_methods(document: dict[str, Any]) -> None:
    for route in ROUTES:
        assert isinstance(route, Route)
        assert route.path in document["paths"]
        documented = {m.upper() for m in document["paths"][route.path]}
        assert documented == (route.methods or set()) - {"HEAD"}


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_every_ref_resolves_to_a_component_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    found = list(refs(document))

    assert "#/components/schemas/SignupRequest" in found
    for ref in found:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def responses(document: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                yield path, method, status, response


def test_every_error_response_is_problem_json(document: dict[str, Any]) -> None:
    errors = [r for r in responses(document) if not r[2].startswith("2")]

    assert errors
    for path, method, status, response in errors:
        if (path, method, status) == ("/ready", "get", "503"):
            # A failed readiness probe answers with the checks, not a problem.
            assert list(response["content"]) == ["application/json"]
        elif (path, method) == ("/verify-email", "get"):
            # The link a person opens from a mail: an HTML page, not a problem.
            assert list(response["content"]) == ["text/html"]
        elif (path, method, status) == ("/verify-email", "post", "400"):
            # The same, answering that page's form.
            assert list(response["content"]) == [PROBLEM_JSON, "text/html"]
        else:
            assert list(response["content"]) == [PROBLEM_JSON], (path, method, status)
