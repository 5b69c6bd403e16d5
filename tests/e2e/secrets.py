"""Where a secret could leak: every Redis value under the stack's namespace (strings,
hashes, streams, dead letters included) and every log line of its processes."""

from __future__ import annotations

from collections.abc import Iterable

from tests.e2e.conftest import Stack
from tests.redis_typed import entries_sync


def redis_values(stack: Stack) -> dict[str, list[str]]:
    """Every value stored under the namespace, by key."""
    client = stack.redis()
    try:
        found: dict[str, list[str]] = {}
        for key in client.scan_iter(match=f"{stack.namespace}:*", count=1000):
            kind = client.type(key)
            if kind == "string":
                found[key] = [str(client.get(key) or "")]
            elif kind == "hash":
                found[key] = [str(v) for v in client.hgetall(key).values()]
            elif kind == "stream":
                found[key] = [v for _, f in entries_sync(client, key) for v in f.values()]
        return found
    finally:
        client.close()


def leaks(stack: Stack, secrets: Iterable[str]) -> list[str]:
    """Where any of ``secrets`` appears: Redis keys, or 'logs'."""
    secrets = [s for s in secrets if s]
    values = redis_values(stack)
    places = [
        f"{key}: {s!r} in {v!r}"
        for key, vs in values.items()
        for v in vs
        for s in secrets
        if s in v
    ]
    logs = stack.logs()
    places += [f"logs: {s!r}" for s in secrets if s in logs][:1]
    return places
