"""Keeping the streams bounded without ever dropping an entry a consumer group still needs.

An entry may go once every group on its stream has both received it (it is at or before
the group's last-delivered-id) and acked it (it is not in the group's pending list).
Trimming unread entries would also make ``XINFO GROUPS`` lag wrong, so they never go.

- The commands stream keeps its newest ``STREAM_KEEP_ENTRIES`` whatever their state, so
  ``redis-cli XRANGE`` still shows recent history.
- The events stream keeps ``EVENTS_RETENTION_SECONDS`` of history (``MINID``), for the
  consumers a downstream team adds later, and beyond that whatever a group has not read
  yet: a group that stops reading holds the stream (``stream_group_lag`` shows it; an
  abandoned group is removed with ``XGROUP DESTROY``).
"""

from __future__ import annotations

import time
from typing import cast

import redis.asyncio as redis
from loguru import logger

from storage.keys import Keys


def _next_id(entry_id: str) -> str:
    ms, seq = entry_id.split("-")
    return f"{ms}-{int(seq) + 1}"


def _parse(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


async def _oldest_pending(client: redis.Redis, stream: str, group: str) -> str | None:
    summary = await client.xpending(stream, group)
    return cast(str | None, summary.get("min")) if summary.get("pending") else None


async def oldest_needed(client: redis.Redis, stream: str) -> tuple[int, int] | None:
    """The oldest entry id any group on ``stream`` still needs: its oldest pending entry,
    else the one after its last delivered. ``(0, 0)`` when that cannot be told (a group's
    lag is unknown): nothing may go. None when the stream has no group."""
    groups = await client.xinfo_groups(stream)
    if not groups:
        return None
    needed: list[tuple[int, int]] = []
    for g in groups:
        if g.get("lag") is None:
            return (0, 0)  # Redis can't count this group's unread entries: don't guess
        pending = await _oldest_pending(client, stream, str(g["name"]))
        needed.append(_parse(pending or _next_id(str(g["last-delivered-id"]))))
    return min(needed)


async def trim_commands(client: redis.Redis, keys: Keys, keep: int) -> int:
    """Trim what the group no longer needs, keeping at least the newest ``keep`` entries;
    returns how many entries were removed."""
    needed = await oldest_needed(client, keys.commands)
    if needed is None or needed == (0, 0):
        return 0  # no consumer group yet: nothing is known to be done with
    oldest = "{}-{}".format(*needed)
    # Is everything still needed within the newest `keep` entries? Then a cheap MAXLEN
    # trim is safe; otherwise trim by id up to the oldest needed entry.
    tail = await client.xrange(keys.commands, min=oldest, max="+", count=keep + 1)
    if len(tail or []) <= keep:
        removed = await client.xtrim(keys.commands, maxlen=keep, approximate=True)
    else:
        removed = await client.xtrim(keys.commands, minid=oldest, approximate=False)
    if removed:
        logger.debug("stream.trimmed", stream=keys.commands, removed=removed)
    return int(removed)


async def trim_events(
    client: redis.Redis, stream: str, retention_seconds: float, *, now: float | None = None
) -> int:
    """Drop events older than the retention that every group has read and acked."""
    if not await client.exists(stream):
        return 0  # nothing appended yet
    cutoff = (int(((now if now is not None else time.time()) - retention_seconds) * 1000), 0)
    needed = await oldest_needed(client, stream)
    # Approximate (~): Redis drops whole nodes only, never an entry at or after MINID.
    minid = cutoff if needed is None else min(cutoff, needed)
    if minid <= (0, 0):
        return 0
    removed = int(await client.xtrim(stream, minid="{}-{}".format(*minid), approximate=True))
    if removed:
        logger.debug("stream.trimmed", stream=stream, removed=removed)
    return removed
