"""Identifiers for users and commands.

UUIDv7 (RFC 9562): time-ordered, so new rows land at the right edge of the primary-key
B-tree instead of on random pages, which keeps inserts cheap as the table grows.
"""

from __future__ import annotations

import os
import re
import time
import uuid


def uuid7() -> uuid.UUID:
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= (rand >> 68) << 64 & (0xFFF << 64)  # 12 random bits (rand_a)
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # 62 random bits (rand_b)
    return uuid.UUID(int=value)


_CANONICAL = re.compile(r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}")


def is_canonical(text: str) -> bool:
    """``text`` is a UUID spelt the one way ids are issued (see ``parse_uuid``)."""
    return _CANONICAL.fullmatch(text) is not None


def parse_uuid(text: str) -> uuid.UUID | None:
    """The UUID in ``text``, or None unless it is spelt the one way ids are issued: the
    canonical 36-character, lower-case form. ``uuid.UUID`` alone would also take braces,
    ``urn:`` prefixes, missing dashes and upper case, giving one resource many URLs (and
    cache keys)."""
    return uuid.UUID(text) if is_canonical(text) else None
