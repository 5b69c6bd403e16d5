"""Settling a batch of commands: one Lua script, one round trip, all or nothing.

For each entry, in stream order, the script acks it (``XACK``) and, only if that ack
acknowledged it now (``XACK`` answers 1; 0 when another consumer, racing on a reclaimed
entry, already did), appends the command's events to the events stream, moves the read
model forward (compare-and-set on the version), stores the outcome and publishes the
reply. So an event is appended exactly once per applied command: a redelivered entry, two
workers on one entry, or a retry of this script after a lost reply, append nothing more.

The same command can also reach the stream twice as two entries (a dead letter replayed
after all, or one re-added by hand): its events are appended only if its stored outcome
was not already a success, since a success is stored in the step that appended them.
``MULTI`` cannot branch on a reply; a script can.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.autopipeline import Arg, Commands
from storage.outcomes import PENDING_JSON
from storage.read_model import PUT_USER

# KEYS: commands stream, events stream, then per entry its outcome key and its user's
# read-model key (the outcome key again when the outcome names no user; it is not used).
# ARGV: group, outcome TTL ms, the pending outcome's bytes, then per entry: entry id,
# stored outcome, reply channel ('' for none), reply, version, document ('' for none),
# event count, and per event its field count followed by its field/value pairs.
# Returns, per entry, how many events it appended.
_SETTLE = (
    PUT_USER
    + """
local group, ttl, pending = ARGV[1], ARGV[2], ARGV[3]
local a = 4
local appended = {}
for i = 1, (#KEYS - 2) / 2 do
  local outcome_key, user_key = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local entry_id, stored, channel, reply, version, document =
    ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local events = tonumber(ARGV[a + 6])
  a = a + 7
  local acked = redis.call('XACK', KEYS[1], group, entry_id) == 1
  local fresh = acked
  if acked and events > 0 then
    local before = redis.call('GET', outcome_key)
    -- The usual case is the pending outcome the web wrote: no need to decode it.
    if before and before ~= pending then
      local ok, parsed = pcall(cjson.decode, before)
      fresh = not (ok and type(parsed) == 'table' and parsed['status'] == 'succeeded')
    end
  end
  local count = 0
  for _ = 1, events do
    local n = tonumber(ARGV[a])
    if fresh then
      redis.call('XADD', KEYS[2], '*', unpack(ARGV, a + 1, a + n))
      count = count + 1
    end
    a = a + 1 + n
  end
  if acked then
    if document ~= '' then
      put_user(user_key, version, document)
    end
    redis.call('SET', outcome_key, stored, 'PX', ttl)
    if channel ~= '' then
      redis.call('PUBLISH', channel, reply)
    end
  end
  appended[i] = count
end
return appended
"""
)


@dataclass(frozen=True, slots=True)
class Settlement:
    """What settling one entry writes."""

    entry_id: str
    outcome_key: str
    stored: bytes
    reply_channel: str
    reply: bytes
    user_key: str = ""
    version: int = 0
    document: bytes = b""
    events: Sequence[dict[str, str]] = ()


async def settle(
    commands: Commands,
    *,
    stream: str,
    events_stream: str,
    group: str,
    outcome_ttl_ms: int,
    batch: Sequence[Settlement],
) -> list[int]:
    """Ack, append, write and reply for the batch; how many events each entry appended."""
    keys = [stream, events_stream]
    args: list[Arg] = [group, outcome_ttl_ms, PENDING_JSON]
    for s in batch:
        keys += (s.outcome_key, s.user_key or s.outcome_key)
        args += (s.entry_id, s.stored, s.reply_channel, s.reply, s.version, s.document)
        args.append(len(s.events))
        for fields in s.events:
            args.append(2 * len(fields))
            for name, value in fields.items():
                args += (name, value)
    appended: list[int] = await commands.script(_SETTLE, keys, args)
    return [int(n) for n in appended]
