"""``Idempotency-Key`` records in Redis, shared by every web process.

A record is a small hash under ``Keys.idempotency(method, path, key)`` that moves through
two states, each step one Lua script so no two requests can both win a race:

``reserved``   taken by a request that is validating and hashing; short lease, so a web
               process that dies here frees the key quickly.
``enqueued``   the command is on the stream (``XADD`` in the same script); kept for the
               full TTL, since the command will commit even if its web process dies.

The record never copies a response. A replay is rebuilt from what the command left
behind: the user (read model, by the user id the record keeps) for a 201, the command's
outcome for a refusal. So every field stays under 64 bytes and Redis keeps the hash in its
compact listpack encoding: about 300 bytes a key, where a copied body made it 1 KB.

The fingerprint covers method, path and the canonical body *without* the password: a
fast hash of a password stored in Redis could be brute-forced. The password is compared
instead with bcrypt against the hash kept in the record (the same hash the worker stores).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from storage.autopipeline import Commands

MAX_KEY_LENGTH = 255

RESERVED = "reserved"
ENQUEUED = "enqueued"

# KEYS: record. ARGV: command id (the reservation's token), fingerprint, lease ms.
_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'state', 'reserved', 'command_id', ARGV[1], 'fp', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return false
end
return redis.call('HMGET', KEYS[1], 'state', 'fp', 'command_id', 'user_id', 'pw')
"""

# KEYS: record, stream, command outcome key. ARGV: command id, user id, password hash,
# record TTL ms, pending outcome, outcome TTL ms, then the entry's field/value pairs.
_ENQUEUE = """
if redis.call('HGET', KEYS[1], 'command_id') ~= ARGV[1]
   or redis.call('HGET', KEYS[1], 'state') ~= 'reserved' then
  return false
end
redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[6], 'NX')
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 7))
redis.call('HSET', KEYS[1], 'state', 'enqueued', 'user_id', ARGV[2], 'pw', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return id
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], 'command_id') == ARGV[1]
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
    # 128 bits: it only has to tell apart two bodies sent with the same key.
    return hashlib.blake2b(f"{method} {path}\n".encode() + canonical, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Record:
    state: str
    fingerprint: str
    command_id: str
    user_id: str
    password_hash: str


@dataclass(frozen=True, slots=True)
class Entry:
    """What to put on the stream once the key is ours."""

    stream: str
    fields: dict[str, str]
    outcome_key: str
    pending: bytes

    def flat_fields(self) -> list[str]:
        """The fields as ``XADD`` takes them, name and value in turn (a Lua script's ARGV)."""
        flat: list[str] = []
        for name, value in self.fields.items():
            flat += (name, value)
        return flat


class IdempotencyStore:
    def __init__(self, commands: Commands, *, ttl_seconds: int, lease_seconds: int) -> None:
        self._commands = commands
        self._ttl_ms = ttl_seconds * 1000
        self._lease_ms = lease_seconds * 1000

    async def reserve(self, key: str, command_id: str, fp: str) -> Record | None:
        """Take the key for this command (None), or return the record another request made."""
        found = await self._commands.script(_RESERVE, [key], [command_id, fp, self._lease_ms])
        if found is None:
            return None
        state, fp_, command_id_, user_id, pw = found
        return Record(
            state=state or "",
            fingerprint=fp_ or "",
            command_id=command_id_ or "",
            user_id=user_id or "",
            password_hash=pw or "",
        )

    async def enqueue(
        self,
        key: str,
        command_id: str,
        user_id: str,
        password_hash: str,
        entry: Entry,
        *,
        outcome_ttl_ms: int,
    ) -> str | None:
        """Add the entry to the stream if the reservation is still ours; its stream id."""
        entry_id: str | None = await self._commands.script(
            _ENQUEUE,
            [key, entry.stream, entry.outcome_key],
            [
                command_id,
                user_id,
                password_hash,
                self._ttl_ms,
                entry.pending,
                outcome_ttl_ms,
                *entry.flat_fields(),
            ],
        )
        return entry_id

    async def release(self, key: str, command_id: str) -> None:
        await self._commands.script(_RELEASE, [key], [command_id])
