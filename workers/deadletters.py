"""``python -m workers.deadletters``: look at, replay or drop dead-lettered entries.

    python -m workers.deadletters [--of commands|mailer] list [--count N]
    python -m workers.deadletters [--of commands|mailer] replay ID [ID ...] | --all
    python -m workers.deadletters [--of commands|mailer] drop ID [ID ...] | --all

``--of commands`` (the default): commands the workers could not apply. Replaying puts the
entry's original fields back on the commands stream (as a new entry) and removes it from
the dead letters; applying a command twice is harmless, so replaying one that did commit
creates nothing new (and appends no second event).

``--of mailer``: events whose message the SMTP server refused for good (or that failed too
often). Replaying hands the event to the mailer alone, through its replays stream: putting
it back on the events stream would deliver it to every other consumer a second time.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, cast

import anyio
import redis.asyncio as redis

from settings import load_settings
from storage.connections import DependencyUnavailable, check_redis, redis_client
from storage.keys import Keys

ORIGINAL = "original."

Entry = tuple[str, dict[str, str]]


@dataclass(frozen=True, slots=True)
class Letters:
    """A dead-letter stream, and where its replays go."""

    stream: str
    replay_to: str


def letters(keys: Keys, of: str) -> Letters:
    if of == "mailer":
        return Letters(keys.mailer_deadletters, keys.mailer_replays)
    return Letters(keys.deadletters, keys.commands)


async def _entries(
    client: redis.Redis, letters: Letters, ids: list[str], everything: bool
) -> list[Entry]:
    if everything:
        return cast(list[Entry], await client.xrange(letters.stream))
    found: list[Entry] = []
    for entry_id in ids:
        found += cast(list[Entry], await client.xrange(letters.stream, entry_id, entry_id))
    return found


def _original(fields: dict[str, str]) -> dict[str, str]:
    return {k.removeprefix(ORIGINAL): v for k, v in fields.items() if k.startswith(ORIGINAL)}


async def list_letters(client: redis.Redis, letters: Letters, count: int) -> list[str]:
    lines = []
    for entry_id, fields in cast(list[Entry], await client.xrange(letters.stream, count=count)):
        original = _original(fields)
        name = "event_id" if "event_id" in original else "command_id"
        lines.append(
            f"{entry_id}  error={fields.get('error', '')!r}  "
            f"{name}={original.get(name, '-')}  type={original.get('type', '-')}"
        )
    return lines


async def replay(client: redis.Redis, letters: Letters, entries: list[Entry]) -> int:
    for entry_id, fields in entries:
        async with client.pipeline(transaction=True) as pipe:
            pipe.xadd(letters.replay_to, cast(Any, _original(fields)))
            pipe.xdel(letters.stream, entry_id)
            await pipe.execute()
    return len(entries)


async def drop(client: redis.Redis, letters: Letters, entries: list[Entry]) -> int:
    if not entries:
        return 0
    return int(await client.xdel(letters.stream, *(e for e, _ in entries)))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers.deadletters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--of",
        choices=("commands", "mailer"),
        default="commands",
        help="whose dead letters: the workers' (commands) or the mailer's",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="show dead letters, oldest first")
    listing.add_argument("--count", type=int, default=100)
    for action in ("replay", "drop"):
        p = sub.add_parser(action, help=f"{action} the given dead letters")
        p.add_argument("ids", nargs="*")
        p.add_argument("--all", action="store_true", dest="everything")
    return parser


async def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings()
    chosen = letters(Keys(settings.redis_namespace), args.of)
    client = redis_client(settings.redis_url, max_connections=2, socket_timeout=5.0)
    try:
        await check_redis(client, settings.redis_url)
        if args.action == "list":
            for line in await list_letters(client, chosen, args.count):
                print(line)
            return 0
        if not args.ids and not args.everything:
            print("name dead-letter ids, or --all", file=sys.stderr)
            return 2
        entries = await _entries(client, chosen, args.ids, args.everything)
        done = await (replay if args.action == "replay" else drop)(client, chosen, entries)
        print(f"{args.action}: {done} entries")
        return 0
    except DependencyUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        await client.aclose()


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv[1:]))
