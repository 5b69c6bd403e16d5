"""``/verify-email``: the link's landing page, the verification itself, and resends.

``POST /verify-email`` takes the token as JSON (an API client: JSON answers) or from the
landing page's form (a person: HTML answers); either way it travels as ``verify_email.v1``
through the command bus. ``POST /verify-email/resend`` answers ``202`` whatever the
address, so it tells nobody which addresses have accounts; the worker decides, out of
sight, whether a ``user.verification_requested.v1`` goes out.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson
from email_validator import EmailNotValidError
from loguru import logger
from starlette.requests import Request
from starlette.responses import Response

from api import pages
from api.body import is_form, parse_model, read_form, read_json
from api.commands import Answer, accepted, answer_from_outcome, dispatch
from api.problems import Problem, invalid
from api.schemas import ResendRequest, VerifyEmailRequest
from domain import tokens
from domain.errors import InvalidToken
from domain.ids import uuid7
from domain.model import RequestVerification, VerifyEmail
from domain.rules import normalise_email

if TYPE_CHECKING:
    from bootstrap import Web

RESENT_BODY = orjson.dumps(
    {
        "status": "accepted",
        "detail": "If an unverified account uses this address, a new verification message "
        "is on its way.",
    }
)


def _web(request: Request) -> Web:
    web: Web = request.state.web
    return web


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


def invalid_token() -> Problem:
    return Problem(
        400,
        "invalid-token",
        "Invalid or expired token",
        "The verification token is malformed, tampered with, expired, or not for this "
        "account's current address. Ask for a new one.",
    )


async def _verify(web: Web, token: str, request: Request) -> Answer:
    try:
        claims = tokens.read(web.settings.secret_key.get_secret_value(), token, now=time.time())
    except InvalidToken as exc:
        logger.info("verification.refused", token=tokens.fingerprint(token), reason=str(exc))
        raise invalid_token() from None
    command = VerifyEmail(uuid7(), claims.user_id, claims.email_digest)
    sent = await dispatch(
        web,
        command,
        request_id=request.state.request_id,
        correlation_id=request.state.correlation_id,
    )
    if sent.outcome is None:
        return accepted(str(command.command_id))
    return await answer_from_outcome(web, sent.outcome, created=False)


def _count(web: Web, answer: Answer) -> None:
    outcome = {200: "verified", 202: "accepted"}.get(answer.status, "invalid_token")
    web.metrics.verifications.inc({"outcome": outcome})


async def verify_email(request: Request) -> Response:
    if request.method != "POST":
        return await verify_email_page(request)
    web = _web(request)
    await web.rate_limiter.check("verify", _client(request))
    s = web.settings
    if is_form(request):
        # The landing page's button: a person, so the answer is a page too.
        fields = await read_form(request, s.max_body_bytes, s.body_read_timeout_seconds)
        try:
            answer = await _verify(web, fields.get("token", ""), request)
        except Problem as problem:
            if problem.status != 400:
                raise
            web.metrics.verifications.inc({"outcome": "invalid_token"})
            return pages.invalid_page()
        _count(web, answer)
        if answer.status == 202:
            return pages.pending_page()
        if answer.status != 200:
            return pages.invalid_page()
        return pages.verified_page(orjson.loads(answer.body)["email"])
    body = await read_json(request, s.max_body_bytes, s.body_read_timeout_seconds)
    parsed = parse_model(VerifyEmailRequest, body)
    try:
        answer = await _verify(web, parsed.token, request)
    except Problem:
        web.metrics.verifications.inc({"outcome": "invalid_token"})
        raise
    _count(web, answer)
    headers = {"Location": answer.location} if answer.location else None
    return Response(answer.body, answer.status, headers, media_type=answer.media_type)


async def verify_email_page(request: Request) -> Response:
    """The link in the mail: a page whose button POSTs the token. Nothing is verified by a
    GET, so a scanner following the link changes nothing."""
    token = request.query_params.get("token", "")
    if not token or len(token) > 256:
        return pages.invalid_page()
    return pages.confirm_page(token)


async def resend(request: Request) -> Response:
    web = _web(request)
    await web.rate_limiter.check("resend", _client(request))
    s = web.settings
    body = await read_json(request, s.max_body_bytes, s.body_read_timeout_seconds)
    parsed = parse_model(ResendRequest, body)
    try:
        email = normalise_email(parsed.email.strip())
    except EmailNotValidError as exc:
        raise invalid([{"pointer": "/email", "detail": str(exc)}]) from None
    # Per address, whoever asks: counted under the address's digest, never the address.
    if s.verification_resend_limit > 0 and await web.resend_limiter.allow(
        "resend", tokens.email_digest(email)
    ):
        await web.backlog.check()
        command = RequestVerification(uuid7(), email, datetime.now(UTC))
        await dispatch(
            web,
            command,
            request_id=request.state.request_id,
            correlation_id=request.state.correlation_id,
            wait=False,  # the answer must not depend on what the worker finds
        )
        web.metrics.resends.inc({"outcome": "enqueued"})
    else:
        web.metrics.resends.inc({"outcome": "limited"})
    return Response(RESENT_BODY, 202, media_type="application/json")
