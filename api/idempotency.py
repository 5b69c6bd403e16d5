"""``Idempotency-Key`` records in Redis, shared by every web process.

A record is a hash under ``Keys.idempotency(method, path, key)`` that moves through three
states, each step one Lua script so no two requests can both win a race:

``reserved``   taken by a request that is validating and hashing; short lease, so a web
               process that dies here frees the key quickly.
``enqueued``   the command is on the stream (``XADD`` in the same script); kept for the
               full TTL, since the command will commit even if its web process dies.
``completed``  the final status and the exact body sent, for byte-identical replays.

The fingerprint covers method, path and the canonical body *without* the password: a
fast hash of a password stored in Redis could be brute-forced. The password is compared
instead with bcrypt against the hash kept in the record (the same hash the worker stores).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as redis

MAX_KEY_LENGTH = 255

RESERVED = "reserved"
ENQUEUED = "enqueued"
COMPLETED = "completed"

_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'state', 'reserved', 'token', ARGV[1], 'fp', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return false
end
return redis.call('HMGET', KEYS[1], 'state', 'fp', 'command_id', 'pw', 'status', 'body',
                  'location')
"""

# KEYS: record, stream, command outcome key. ARGV: token, command id, password hash,
# record TTL ms, pending outcome, outcome TTL ms, then the entry's field/value pairs.
_ENQUEUE = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1]
   or redis.call('HGET', KEYS[1], 'state') ~= 'reserved' then
  return false
end
redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[6], 'NX')
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 7))
redis.call('HSET', KEYS[1], 'state', 'enqueued', 'command_id', ARGV[2], 'pw', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return id
"""

_COMPLETE = """
if redis.call('HGET', KEYS[1], 'command_id') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'completed', 'status', ARGV[2], 'body', ARGV[3],
           'location', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1]
   and redis.call('HGET', KEYS[1], 'state') == 'reserved' then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class InvalidKey(ValueError):
    pass


def check_key(key: str) -> str:
    """The key as given, or InvalidKey when it is empty, too long or not printable ASCII."""
    if not key:
        raise InvalidKey("The Idempotency-Key header must not be empty.")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"The Idempotency-Key header must be at most {MAX_KEY_LENGTH} characters.")
    if not all(0x21 <= ord(c) <= 0x7E for c in key):
        raise InvalidKey("The Idempotency-Key header must be printable ASCII without spaces.")
    return key


def fingerprint(method: str, path: str, body: dict[str, Any]) -> str:
    public = {k: v for k, v in body.items() if k != "password"}
    canonical = orjson.dumps(public, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(f"{method} {path}\n".encode() + canonical).hexdigest()


@dataclass(frozen=True, slots=True)
class Record:
    state: str
    fingerprint: str
    command_id: str
    password_hash: str
    status: int
    body: str
    location: str


@dataclass(frozen=True, slots=True)
class Entry:
    """What to put on the stream once the key is ours."""

    stream: str
    fields: dict[str, str]
    outcome_key: str
    pending: bytes


class IdempotencyStore:
    def __init__(self, client: redis.Redis, *, ttl_seconds: int, lease_seconds: int) -> None:
        self._client = client
        self._ttl_ms = ttl_seconds * 1000
        self._lease_ms = lease_seconds * 1000
        self._reserve = client.register_script(_RESERVE)
        self._enqueue = client.register_script(_ENQUEUE)
        self._complete = client.register_script(_COMPLETE)
        self._release = client.register_script(_RELEASE)

    async def reserve(self, key: str, token: str, fp: str) -> Record | None:
        """Take the key (None), or return the record another request made under it."""
        found = await self._reserve(keys=[key], args=[token, fp, self._lease_ms])
        if found is None:
            return None
        state, fp_, command_id, pw, status, body, location = found
        return Record(
            state=state or "",
            fingerprint=fp_ or "",
            command_id=command_id or "",
            password_hash=pw or "",
            status=int(status or 0),
            body=body or "",
            location=location or "",
        )

    async def enqueue(
        self,
        key: str,
        token: str,
        command_id: str,
        password_hash: str,
        entry: Entry,
        *,
        outcome_ttl_ms: int,
    ) -> str | None:
        """Add the entry to the stream if the reservation is still ours; its stream id."""
        flat: list[str] = []
        for name, value in entry.fields.items():
            flat += (name, value)
        entry_id: str | None = await self._enqueue(
            keys=[key, entry.stream, entry.outcome_key],
            args=[
                token,
                command_id,
                password_hash,
                self._ttl_ms,
                entry.pending,
                outcome_ttl_ms,
                *flat,
            ],
        )
        return entry_id

    async def complete(
        self, key: str, command_id: str, status: int, body: bytes, location: str
    ) -> None:
        await self._complete(keys=[key], args=[command_id, status, body, location, self._ttl_ms])

    async def release(self, key: str, token: str) -> None:
        await self._release(keys=[key], args=[token])
