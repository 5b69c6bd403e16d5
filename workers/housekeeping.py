"""Keeping the commands stream bounded without ever dropping an entry the group still needs.

An entry may go once it is both delivered (at or before the group's last-delivered-id) and
acked (not in the pending list). The newest ``keep`` entries are kept whatever their state,
so ``redis-cli XRANGE`` still shows recent history. Trimming unread entries would also make
``XINFO GROUPS`` lag wrong, so unread entries are never trimmed.
"""

from __future__ import annotations

from typing import cast

import redis.asyncio as redis
from loguru import logger

from storage.keys import Keys


def _next_id(entry_id: str) -> str:
    ms, seq = entry_id.split("-")
    return f"{ms}-{int(seq) + 1}"


async def _oldest_pending(client: redis.Redis, stream: str, group: str) -> str | None:
    summary = await client.xpending(stream, group)
    return cast(str | None, summary.get("min")) if summary.get("pending") else None


async def trim_commands(client: redis.Redis, keys: Keys, keep: int) -> int:
    """Trim what the group no longer needs, keeping at least the newest ``keep`` entries;
    returns how many entries were removed."""
    groups = await client.xinfo_groups(keys.commands)
    if not groups:
        return 0  # no consumer group yet: nothing is known to be done with
    # The entry every group still needs: its oldest pending one, else the one after its
    # last delivered. Anything older than the oldest such entry over all groups can go.
    needed: list[tuple[int, int]] = []
    for g in groups:
        if g.get("lag") is None:
            return 0  # Redis can't count this group's unread entries: don't guess
        pending = await _oldest_pending(client, keys.commands, str(g["name"]))
        first = pending or _next_id(str(g["last-delivered-id"]))
        ms, seq = first.split("-")
        needed.append((int(ms), int(seq)))
    oldest_needed = "{}-{}".format(*min(needed))
    # Is everything still needed within the newest `keep` entries? Then a cheap MAXLEN
    # trim is safe; otherwise trim by id up to the oldest needed entry.
    tail = await client.xrange(keys.commands, min=oldest_needed, max="+", count=keep + 1)
    if len(tail or []) <= keep:
        removed = await client.xtrim(keys.commands, maxlen=keep, approximate=True)
    else:
        removed = await client.xtrim(keys.commands, minid=oldest_needed, approximate=False)
    if removed:
        logger.debug("stream.trimmed", stream=keys.commands, removed=removed)
    return int(removed)
