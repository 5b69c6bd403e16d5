"""``python -m workers.mailer``: one mailer process (scale with ``honcho start -c mailer=N``).

SIGTERM or SIGINT stops reading at once; messages in hand are finished within
``WORKER_SHUTDOWN_GRACE_SECONDS``, after which they are left pending, to be resumed by
this consumer name at its next start or reclaimed by another mailer.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import anyio

from bootstrap import open_mailer
from settings import load_settings
from workers.mailer.mailer import Mailer
from workers.mailer.messages import Sender
from workers.mailer.transport import parse_smtp_url
from workers.process import run_process


def run_in_background() -> None:
    """Take only the CPU time nothing else wants: SCHED_IDLE (a task that wakes up
    preempts this one at once) and nice 19. With Linux's autogroups (on in most
    distributions) the scheduler shares the CPU between sessions first, so a mailer that
    leads its own session (as honcho, the bench and the tests start it) lowers its
    session's priority too; one that shares a session with other processes leaves theirs
    alone."""
    os.nice(19 - os.nice(0))
    with contextlib.suppress(OSError, AttributeError):  # not Linux: nice alone
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    autogroup = Path("/proc/self/autogroup")
    if os.getsid(0) == os.getpid() and autogroup.exists():
        with contextlib.suppress(OSError):
            autogroup.write_text("19")


async def main() -> int:
    settings = load_settings()
    if settings.smtp_url is None and settings.environment == "production":
        print("invalid setting SMTP_URL: required when ENVIRONMENT=production", file=sys.stderr)
        return 2
    if settings.smtp_url is not None:
        try:
            parse_smtp_url(settings.smtp_url.get_secret_value())
        except ValueError as exc:
            print(f"invalid setting SMTP_URL: {exc}", file=sys.stderr)
            return 2
    try:
        Sender.parse(settings.mail_from)
    except ValueError as exc:
        print(f"invalid setting MAIL_FROM: {exc}", file=sys.stderr)
        return 2
    if settings.mailer_background:
        run_in_background()
    return await run_process(
        settings,
        "mailer",
        open_mailer,
        Mailer,
        lambda deps: {
            "consumer": deps.group.consumer,
            "streams": deps.group.streams,
            "smtp": settings.smtp_url is not None,
        },
    )


if __name__ == "__main__":
    sys.exit(anyio.run(main, backend_options={"use_uvloop": True}))
