"""Email-verification tokens: signed, not stored.

A token is ``base64url(payload) "." base64url(mac)``; the payload holds a format byte, a
purpose byte, the user id, the expiry (Unix seconds), a digest of the address it was
issued for and a random nonce, and the MAC is HMAC-SHA256 under a key derived from
``SECRET_KEY`` for this purpose alone.

Why signed rather than random tokens stored as a hash: nothing to store per token (Redis
memory per user stays flat, no table to sweep), any web process checks one with no
lookup, and a forged or expired token is refused before it reaches the stream. What a
stored token would add, revoking one, follows here from its binding: a token dies when
its address is verified (a second use changes nothing) or changes (the digest no longer
matches), and at its expiry.

The payload carries a digest of the address, not the address: links end up in browser
history and proxy logs. The digest is the first 16 bytes of SHA-256 of the normalised
address, which Postgres computes too (``storage.users``), so the worker compares it with
the account's current address in the same statement that verifies it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import uuid
from dataclasses import dataclass

from domain.errors import InvalidToken

_FORMAT = 1
_PURPOSE_VERIFY_EMAIL = 1
# format, purpose, user id, expires, email digest, nonce (so no two tokens are alike)
_LAYOUT = struct.Struct(">BB16sQ16s8s")


def email_digest(email: str) -> str:
    """The digest of a normalised address a token carries, in hex."""
    return hashlib.sha256(email.encode()).digest()[:16].hex()


def _key(secret: str) -> bytes:
    # A key of its own per purpose, so a MAC made for one use can never pass for another.
    return hmac.new(secret.encode(), b"signup-service/verify-email/v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: uuid.UUID
    expires_at: int
    email_digest: str


def issue(secret: str, user_id: uuid.UUID, email: str, *, now: float, ttl_seconds: int) -> str:
    payload = _LAYOUT.pack(
        _FORMAT,
        _PURPOSE_VERIFY_EMAIL,
        user_id.bytes,
        int(now) + ttl_seconds,
        bytes.fromhex(email_digest(email)),
        os.urandom(8),
    )
    mac = hmac.new(_key(secret), payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def read(secret: str, token: str, *, now: float) -> Claims:
    """The claims of a genuine, unexpired token; ``InvalidToken`` for anything else."""
    encoded, _, mac_text = token.partition(".")
    if not encoded or not mac_text or len(token) > 256 or not token.isascii():
        raise InvalidToken("malformed")
    try:
        payload, mac = _unb64(encoded), _unb64(mac_text)
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed") from None
    # One spelling per token: the decoder skips stray characters and unused bits, which
    # would give one token many spellings (and log fingerprints).
    if _b64(payload) != encoded or _b64(mac) != mac_text:
        raise InvalidToken("malformed")
    expected = hmac.new(_key(secret), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise InvalidToken("bad signature")
    if len(payload) != _LAYOUT.size:
        raise InvalidToken("malformed")
    fmt, purpose, user_id, expires_at, digest, _ = _LAYOUT.unpack(payload)
    if fmt != _FORMAT or purpose != _PURPOSE_VERIFY_EMAIL:
        raise InvalidToken("not a verification token")
    if now >= expires_at:
        raise InvalidToken("expired")
    return Claims(uuid.UUID(bytes=user_id), expires_at, digest.hex())


def fingerprint(token: str) -> str:
    """A short, one-way name for a token, fit for a log line (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]
