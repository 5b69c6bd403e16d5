"""``python -m workers.mailer``: one mailer process (scale with ``honcho start -c mailer=N``).

SIGTERM or SIGINT stops reading at once; messages in hand are finished within
``WORKER_SHUTDOWN_GRACE_SECONDS``, after which they are left pending, to be resumed by
this consumer name at its next start or reclaimed by another mailer.
"""

from __future__ import annotations

import sys

import anyio

from bootstrap import open_mailer
from settings import load_settings
from workers.mailer.mailer import Mailer
from workers.mailer.transport import parse_smtp_url
from workers.process import run_process


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
