"""Request and response shapes. The request model parses; the domain rules validate; the
response models exist to document the API (``/openapi.json``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.rules import NAME_MAX, PASSWORD_MAX_BYTES, PASSWORD_MIN_CHARS

# domain.rules refuses C0 and C1 control characters in names (ECMA-262 regex syntax).
_NO_CONTROL_CHARS = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"


class SignupRequest(BaseModel):
    # strict: a number where a string belongs is an error, not silently converted.
    model_config = ConfigDict(strict=True, extra="forbid")

    # Lengths are checked by domain.rules (after trimming, in UTF-8 bytes for the
    # password); the schema states them for clients.
    name: str = Field(
        description="1-255 characters after trimming, no control characters",
        json_schema_extra={"minLength": 1, "maxLength": NAME_MAX, "pattern": _NO_CONTROL_CHARS},
    )
    email: str = Field(
        description="normalised: IDNA domain, whole address lower-cased",
        # 254: the longest address SMTP can carry (RFC 5321 path limit), as email-validator
        # enforces.
        json_schema_extra={"format": "email", "maxLength": 254},
    )
    password: str = Field(
        description=f"at least {PASSWORD_MIN_CHARS} characters and at most "
        f"{PASSWORD_MAX_BYTES} bytes in UTF-8 (bcrypt's limit; longer is refused)",
        json_schema_extra={"minLength": PASSWORD_MIN_CHARS, "maxLength": PASSWORD_MAX_BYTES},
    )
    display_name: str | None = Field(
        default=None,
        description="1-255 characters after trimming, no control characters; defaults to name",
        json_schema_extra={"minLength": 1, "maxLength": NAME_MAX, "pattern": _NO_CONTROL_CHARS},
    )


class VerifyEmailRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    token: str = Field(
        description="The token from the verification link",
        json_schema_extra={"minLength": 1, "maxLength": 256},
    )


class ResendRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    email: str = Field(
        description="The address to send a new verification message to",
        json_schema_extra={"format": "email", "maxLength": 254},
    )


class ResendAccepted(BaseModel):
    status: Literal["accepted"]
    detail: str


class UserResponse(BaseModel):
    id: str = Field(json_schema_extra={"format": "uuid"})
    name: str
    email: str
    display_name: str
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    email_verified: bool
    email_verified_at: str | None = Field(json_schema_extra={"format": "date-time"})
    version: int = Field(description="Counts the account's changes; 1 when created", ge=1)


class CommandAccepted(BaseModel):
    command_id: str = Field(json_schema_extra={"format": "uuid"})
    status: Literal["pending"]


class FieldProblem(BaseModel):
    pointer: str = Field(description="JSON pointer (RFC 6901) into the request body")
    detail: str


class ProblemResponse(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = None


class CommandStatus(BaseModel):
    command_id: str = Field(json_schema_extra={"format": "uuid"})
    status: Literal["pending", "succeeded", "failed"]
    user: UserResponse | None = None
    problem: ProblemResponse | None = None


class HealthResponse(BaseModel):
    status: Literal["healthy"]
    service: str
    uptime_seconds: float


class Check(BaseModel):
    ok: bool
    detail: str | None = None
    latency_ms: float | None = None
    usage_percent: float | None = None


class ReadyResponse(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, Check]
