"""The OpenAPI 3.1 document, built from the same pydantic models the API uses, so the
schemas cannot drift from the code."""

from __future__ import annotations

import functools
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.idempotency import MAX_KEY_LENGTH
from api.schemas import (
    CommandAccepted,
    CommandStatus,
    HealthResponse,
    ProblemResponse,
    ReadyResponse,
    ResendAccepted,
    ResendRequest,
    SignupRequest,
    UserResponse,
    VerifyEmailRequest,
)

_MODELS: list[type[BaseModel]] = [
    SignupRequest,
    VerifyEmailRequest,
    ResendRequest,
    ResendAccepted,
    UserResponse,
    CommandAccepted,
    CommandStatus,
    ProblemResponse,
    HealthResponse,
    ReadyResponse,
]

_ID_HEADERS = {
    "X-Request-ID": {
        "description": "The request's id (the client's, or a new one)",
        "schema": {"type": "string"},
    },
    "X-Correlation-ID": {
        "description": "Correlation id (defaults to the request id)",
        "schema": {"type": "string"},
    },
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str, **headers: Any) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {**_ID_HEADERS, **headers},
        "content": {"application/json": {"schema": _ref(model)}},
    }


def _problem(description: str, **headers: Any) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {**_ID_HEADERS, **headers},
        "content": {"application/problem+json": {"schema": _ref(ProblemResponse)}},
    }


def _html(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _ID_HEADERS,
        "content": {"text/html": {"schema": {"type": "string"}}},
    }


def _with_page(response: dict[str, Any]) -> dict[str, Any]:
    """The same response as an HTML page, for the landing page's form (a person)."""
    content = {**response["content"], "text/html": {"schema": {"type": "string"}}}
    return {**response, "content": content}


_LOCATION = {"description": "Where the resource can be read", "schema": {"type": "string"}}
_RETRY_AFTER = {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
_UNAVAILABLE = _problem(
    "Redis or Postgres is unreachable; retry later", **{"Retry-After": _RETRY_AFTER}
)

# Advisory: a value that is not 1-128 printable ASCII characters is ignored (replaced by a
# new id), never refused, so the schema states no limits that would imply a 4xx.
_ID_PARAMETERS = [
    {
        "name": "X-Request-ID",
        "in": "header",
        "required": False,
        "description": "Kept if 1-128 printable ASCII characters without spaces; "
        "otherwise ignored and a new id is made",
        "schema": {"type": "string"},
    },
    {
        "name": "X-Correlation-ID",
        "in": "header",
        "required": False,
        "description": "Kept if 1-128 printable ASCII characters without spaces; "
        "otherwise ignored (defaults to the request id)",
        "schema": {"type": "string"},
    },
]


def _uuid_path(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": "As issued: canonical lower-case UUID; any other spelling is 404",
        "schema": {
            "type": "string",
            "format": "uuid",
            "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        },
    }


def _paths() -> dict[str, Any]:
    return {
        "/signup": {
            "post": {
                "operationId": "signup",
                "summary": "Create an account",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "Retry-safe key: the same key and body within 24 h "
                        "replays the first answer.",
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_KEY_LENGTH,
                            # Printable ASCII without spaces (api.idempotency.check_key).
                            "pattern": "^[!-~]+$",
                        },
                    },
                    *_ID_PARAMETERS,
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(SignupRequest)}},
                },
                "responses": {
                    "201": _json(
                        UserResponse,
                        "Account created",
                        Location=_LOCATION,
                        **{"Idempotent-Replayed": {"schema": {"type": "string"}}},
                    ),
                    "202": _json(
                        CommandAccepted,
                        "Enqueued; the outcome was not ready in time. Poll Location.",
                        Location=_LOCATION,
                    ),
                    "400": _problem(
                        "Malformed JSON, a member named twice in one object, or an invalid "
                        "Idempotency-Key"
                    ),
                    "408": _problem(
                        "The body did not arrive within BODY_READ_TIMEOUT_SECONDS (10 s); "
                        "the connection is closed"
                    ),
                    "409": _problem(
                        "Email already registered, or the same Idempotency-Key is in flight",
                        **{"Retry-After": _RETRY_AFTER},
                    ),
                    "413": _problem("Body larger than 64 KiB"),
                    "415": _problem("Body is not application/json"),
                    "422": _problem(
                        "Invalid fields (see errors), or an Idempotency-Key "
                        "reused with another body"
                    ),
                    "429": _problem(
                        "Too many signups from this client", **{"Retry-After": _RETRY_AFTER}
                    ),
                    "500": _problem("The command could not be processed"),
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/users/{user_id}": {
            "get": {
                "operationId": "getUser",
                "summary": "Read a user (read model)",
                "parameters": [_uuid_path("user_id"), *_ID_PARAMETERS],
                "responses": {
                    "200": _json(UserResponse, "The user"),
                    "404": _problem("No user has this id"),
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/commands/{command_id}": {
            "get": {
                "operationId": "getCommand",
                "summary": "The outcome of a command",
                "parameters": [_uuid_path("command_id"), *_ID_PARAMETERS],
                "responses": {
                    "200": _json(
                        CommandStatus,
                        "pending, succeeded (with the user) or failed (with the problem)",
                    ),
                    "404": _problem("No command has this id (or its outcome has expired)"),
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/verify-email": {
            "get": {
                "operationId": "verifyEmailPage",
                "summary": "The verification link: an HTML page whose button POSTs the token "
                "(a GET verifies nothing, so mail scanners that follow links change nothing)",
                "parameters": [
                    {
                        "name": "token",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 256},
                    },
                    *_ID_PARAMETERS,
                ],
                "responses": {
                    "200": _html("The page with the button"),
                    "400": _html("No token, or one too long to be ours"),
                },
            },
            "post": {
                "operationId": "verifyEmail",
                "summary": "Verify an address with the token from its verification message",
                "description": "JSON in, JSON out. The landing page's form posts "
                "application/x-www-form-urlencoded (token=...) and gets an HTML page with "
                "the same status. Verifying an address again answers 200 and the same user.",
                "parameters": _ID_PARAMETERS,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref(VerifyEmailRequest)},
                        "application/x-www-form-urlencoded": {"schema": _ref(VerifyEmailRequest)},
                    },
                },
                "responses": {
                    "200": _with_page(_json(UserResponse, "Verified (now or before): the user")),
                    "202": _with_page(
                        _json(
                            CommandAccepted,
                            "Enqueued; the outcome was not ready in time. Poll Location.",
                            Location=_LOCATION,
                        )
                    ),
                    "400": _with_page(
                        _problem(
                            "Malformed JSON or form, or /problems/invalid-token: the token is "
                            "malformed, tampered with, expired, or for another address"
                        )
                    ),
                    "408": _problem("The body did not arrive in time"),
                    "413": _problem("Body larger than 64 KiB"),
                    "415": _problem("Body is neither JSON nor a form"),
                    "422": _problem("Invalid fields (see errors)"),
                    "429": _problem(
                        "Too many attempts from this client", **{"Retry-After": _RETRY_AFTER}
                    ),
                    "500": _problem("The command could not be processed"),
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/verify-email/resend": {
            "post": {
                "operationId": "resendVerification",
                "summary": "Send a new verification message",
                "description": "Always 202 for a valid address, known or not, verified or "
                "not, so the answer tells nothing about which addresses have accounts. At "
                "most VERIFICATION_RESEND_LIMIT (3) messages per address per hour.",
                "parameters": _ID_PARAMETERS,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(ResendRequest)}},
                },
                "responses": {
                    "202": _json(ResendAccepted, "Taken; a message follows if one is due"),
                    "400": _problem("Malformed JSON"),
                    "408": _problem("The body did not arrive in time"),
                    "413": _problem("Body larger than 64 KiB"),
                    "415": _problem("Body is not application/json"),
                    "422": _problem("Not an email address (see errors)"),
                    "429": _problem(
                        "Too many requests from this client", **{"Retry-After": _RETRY_AFTER}
                    ),
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness: the process is up (no dependency checks)",
                "parameters": _ID_PARAMETERS,
                "responses": {"200": _json(HealthResponse, "Alive")},
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "summary": "Readiness: Postgres, Redis, CPU, memory and disk",
                "parameters": _ID_PARAMETERS,
                "responses": {
                    "200": _json(ReadyResponse, "Ready for traffic"),
                    "503": _json(ReadyResponse, "Not ready: see the failing checks"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics of this web process (text exposition 0.0.4)",
                "parameters": _ID_PARAMETERS,
                "responses": {
                    "200": {
                        "description": "Metrics",
                        "headers": _ID_HEADERS,
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "parameters": _ID_PARAMETERS,
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1 document",
                        "headers": _ID_HEADERS,
                        "content": {"application/json": {}},
                    }
                },
            }
        },
    }


@functools.cache
def openapi_document() -> bytes:
    _, schemas = models_json_schema(
        [(m, "validation") for m in _MODELS], ref_template="#/components/schemas/{model}"
    )
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "Signup service",
            "version": "1.0.0",
            "description": "Signups travel web → Redis stream → worker → Postgres; errors "
            "are RFC 9457 problem details.",
        },
        "paths": _paths(),
        "components": {"schemas": schemas["$defs"]},
    }
    return orjson.dumps(document)
